//! Fuzz check: the server's `ToClient` frame body, as a caller (`worker
//! call`, `Client`) decodes it. Invariants: see `worker_request`.

use syncomm_worker::ToClient;

use crate::worker_request::{decode_and_reencode, Held};

/// Runs the parser on `data` and asserts its invariants.
pub fn check(data: &[u8]) {
    if let Some(msg) = decode_and_reencode::<ToClient>(data) {
        let mut held = Held::default();
        match &msg {
            ToClient::Answer(resp) => crate::worker_response::hold(&mut held, resp),
            ToClient::ConnectionError(why) => held.text(why),
        }
        held.assert_within(data);
    }
}

#[cfg(test)]
mod tests {
    /// Every seed is a real frame body that decodes.
    #[test]
    fn seeds_decode() {
        crate::worker_request::seeds_decode::<syncomm_worker::ToClient>("worker_to_client");
    }
}

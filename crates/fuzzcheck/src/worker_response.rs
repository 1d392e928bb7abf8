//! Fuzz check: a child's `Response` frame body, as the server decodes it.
//! Invariants: see `worker_request`.

use syncomm_worker::Response;

use crate::worker_request::{decode_and_reencode, Held};

/// Runs the parser on `data` and asserts its invariants.
pub fn check(data: &[u8]) {
    if let Some(resp) = decode_and_reencode::<Response>(data) {
        let mut held = Held::default();
        hold(&mut held, &resp);
        held.assert_within(data);
    }
}

pub(crate) fn hold(held: &mut Held, resp: &Response) {
    match &resp.result {
        Ok(v) => held.value(v, 1),
        Err(e) => held.text(&e.message),
    }
}

#[cfg(test)]
mod tests {
    /// Every seed is a real frame body that decodes.
    #[test]
    fn seeds_decode() {
        crate::worker_request::seeds_decode::<syncomm_worker::Response>("worker_response");
    }
}

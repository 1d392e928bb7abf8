//! Fuzz check: a caller's (or the server's) `Request` frame body, as the
//! server and a child decode it (`syncomm_common::frame::decode_body`, the
//! one place every frame body is decoded).
//!
//! Invariants, shared with the other worker message checks:
//! - decoding never panics; a failure is `FrameError::Malformed`;
//! - a decoded message re-encodes to at most as many bytes, to exactly the
//!   input when the lengths match (bincode accepts over-long varints, so a
//!   longer input may re-encode shorter), and the re-encoding decodes to the
//!   same message;
//! - what it holds is bounded by the input: text bytes ≤ input length,
//!   values ≤ input length / 2 and ≤ `MAX_VALUES`, nesting ≤ `MAX_DEPTH`,
//!   each list's capacity ≤ max(2 × its length, `MAX_PREALLOC`).

use std::fmt::Debug;

use serde::de::DeserializeOwned;
use serde::Serialize;
use syncomm_common::frame::{self, FrameError, HEADER_LEN};
use syncomm_worker::protocol::{MAX_DEPTH, MAX_PREALLOC, MAX_VALUES};
use syncomm_worker::{Request, Value};

/// Runs the parser on `data` and asserts its invariants.
pub fn check(data: &[u8]) {
    if let Some(req) = decode_and_reencode::<Request>(data) {
        let mut held = Held::default();
        held.text(&req.function);
        held.list(&req.args, 0);
        held.assert_within(data);
    }
}

/// Decodes `data` as a `T`; on success checks the re-encoding invariants and
/// returns the message.
pub(crate) fn decode_and_reencode<T>(data: &[u8]) -> Option<T>
where
    T: DeserializeOwned + Serialize + PartialEq + Debug,
{
    let msg = match frame::decode_body::<T>(data) {
        Ok(msg) => msg,
        Err(FrameError::Malformed(_)) => return None,
        Err(e) => panic!("decoding a body failed other than as malformed: {e}"),
    };
    let wire = frame::encode_frame(&msg).expect("a decoded message encodes");
    let again = &wire[HEADER_LEN..];
    assert!(
        again.len() <= data.len(),
        "re-encoded longer: {} > {}",
        again.len(),
        data.len()
    );
    if again.len() == data.len() {
        assert_eq!(again, data, "same length, different bytes");
    }
    let back: T = frame::decode_body(again).expect("the re-encoding decodes");
    assert_eq!(back, msg);
    Some(msg)
}

/// What a decoded message holds, to compare with the input's size.
#[derive(Default)]
pub(crate) struct Held {
    text: usize,
    values: usize,
    depth: usize,
}

impl Held {
    pub(crate) fn text(&mut self, t: &str) {
        self.text += t.len();
    }

    /// A list whose items are at level `depth + 1`.
    #[allow(clippy::ptr_arg)] // its capacity is checked
    pub(crate) fn list(&mut self, items: &Vec<Value>, depth: usize) {
        assert!(
            items.len() <= MAX_PREALLOC || items.capacity() <= 2 * items.len(),
            "a list of {} items holds room for {}",
            items.len(),
            items.capacity()
        );
        if items.len() <= MAX_PREALLOC {
            assert!(items.capacity() <= 2 * MAX_PREALLOC);
        }
        for v in items {
            self.value(v, depth + 1);
        }
    }

    /// A value at level `depth` (1 for an argument or a result).
    pub(crate) fn value(&mut self, v: &Value, depth: usize) {
        self.values += 1;
        self.depth = self.depth.max(depth);
        match v {
            Value::Text(t) => self.text(t),
            Value::List(items) => self.list(items, depth),
            Value::Bool(_) | Value::Int(_) | Value::UInt(_) => {}
        }
    }

    pub(crate) fn assert_within(&self, data: &[u8]) {
        assert!(self.text <= data.len(), "{} bytes of text", self.text);
        assert!(
            self.values <= data.len() / 2 && self.values <= MAX_VALUES,
            "{} values from {} bytes",
            self.values,
            data.len()
        );
        assert!(self.depth <= MAX_DEPTH, "nested {} deep", self.depth);
    }
}

/// Asserts that every seed of `target` decodes as a `T` (test helper).
#[cfg(test)]
pub(crate) fn seeds_decode<T: DeserializeOwned>(target: &str) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("the seed folder") {
        let path = entry.unwrap().path();
        if path.file_name().is_some_and(|n| n == ".keep") {
            continue;
        }
        let data = std::fs::read(&path).unwrap();
        if let Err(e) = frame::decode_body::<T>(&data) {
            panic!("{}: {e}", path.display());
        }
        n += 1;
    }
    assert!(n > 0);
}

#[cfg(test)]
mod tests {
    /// Every seed is a real frame body that decodes.
    #[test]
    fn seeds_decode() {
        crate::worker_request::seeds_decode::<syncomm_worker::Request>("worker_request");
    }
}

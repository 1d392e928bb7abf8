//! JSON lines with one envelope: every `--json` line of every program is one
//! object that starts with the same four fields,
//!
//! ```text
//! {"program":"consumer","event":"found","pid":4242,"ts_ms":1767225600123, ...}
//! ```
//!
//! - `program`: the program's name (`consumer`, `worker`, `syncomm`...);
//! - `event`: what the line reports, in snake_case (`found`, `error`...);
//! - `pid`: the process that wrote the line (any other pid is `*_pid`);
//! - `ts_ms`: when, in milliseconds since the Unix epoch (an integer);
//!
//! then the event's own fields, in the order the program adds them. The
//! conventions for those fields (docs/JSON.md has them all, with each
//! program's events): keys in snake_case; a time carries its unit in the
//! key (`elapsed_ms`, `wakeup_ns`, `timeout_ms`); milliseconds are rounded
//! to 3 decimals ([`ms`]), other floats to at most 3 ([`round`]); values
//! that name a state or a kind are snake_case words; signals are numbers.
//!
//! This is the one place lines are built: the binaries reach it through
//! `syncomm_cli::output` (which adds the `--json` switch and the `error`
//! event), and the libraries that write lines themselves (the ping server's
//! request log, the ping client, `syncomm top`, the log sink's note) call it
//! directly, since they may not depend on `syncomm-cli`.

use std::io::{self, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// The envelope's keys, first in every line, in this order.
pub const ENVELOPE: [&str; 4] = ["program", "event", "pid", "ts_ms"];

/// One JSON line being built: the envelope, then fields.
#[derive(Debug, Clone)]
pub struct Line {
    buf: String,
}

impl Line {
    /// A line for `event` of `program`, written by this process now.
    pub fn new(program: &str, event: &str) -> Line {
        Line::stamped(program, event, std::process::id(), now_ms())
    }

    /// A line with a given pid and time (tests, and lines written for
    /// another process).
    pub fn stamped(program: &str, event: &str, pid: u32, ts_ms: u64) -> Line {
        debug_assert!(is_snake_case(event), "event {event:?} is not snake_case");
        let mut buf = String::with_capacity(128);
        buf.push_str("{\"program\":");
        push_json(&mut buf, &program);
        buf.push_str(",\"event\":");
        push_json(&mut buf, &event);
        buf.push_str(&format!(",\"pid\":{pid},\"ts_ms\":{ts_ms}"));
        Line { buf }
    }

    /// Adds `key: value`. The key must be snake_case and not one of the
    /// envelope's (such a key is left out: the line stays valid JSON).
    pub fn field(mut self, key: &str, value: impl Serialize) -> Line {
        self.add(key, &value);
        self
    }

    /// Adds `key: value` when `value` is `Some`, nothing when it is `None`.
    pub fn field_opt<T: Serialize>(self, key: &str, value: Option<T>) -> Line {
        match value {
            Some(v) => self.field(key, v),
            None => self,
        }
    }

    /// Adds a duration as `key` in milliseconds, rounded to 3 decimals; the
    /// key must end in `_ms`.
    pub fn ms(self, key: &str, d: Duration) -> Line {
        debug_assert!(key.ends_with("_ms"), "{key:?} holds milliseconds");
        self.field(key, ms(d))
    }

    /// Adds every field of `value`, which must serialize as an object (a
    /// struct or a map); anything else is left out.
    pub fn fields(mut self, value: &impl Serialize) -> Line {
        match serde_json::to_value(value) {
            Ok(serde_json::Value::Object(map)) => {
                for (k, v) in &map {
                    self.add(k, v);
                }
            }
            other => debug_assert!(false, "fields() of a non-object: {other:?}"),
        }
        self
    }

    /// Adds `key: value` in place.
    pub fn add(&mut self, key: &str, value: &impl Serialize) {
        debug_assert!(is_snake_case(key), "key {key:?} is not snake_case");
        if ENVELOPE.contains(&key) {
            debug_assert!(false, "key {key:?} belongs to the envelope");
            return;
        }
        self.buf.push(',');
        push_json(&mut self.buf, &key);
        self.buf.push(':');
        push_json(&mut self.buf, value);
    }

    /// The line: the object and its newline.
    pub fn into_string(mut self) -> String {
        self.buf.push_str("}\n");
        self.buf
    }

    /// Writes the line to `out` and flushes it.
    pub fn write_to(self, out: &mut dyn Write) -> io::Result<()> {
        out.write_all(self.into_string().as_bytes())?;
        out.flush()
    }
}

fn push_json(buf: &mut String, value: &(impl Serialize + ?Sized)) {
    match serde_json::to_string(value) {
        Ok(s) => buf.push_str(&s),
        // Only a map with non-string keys can fail; none is written here.
        Err(_) => buf.push_str("null"),
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A duration in milliseconds, rounded to 3 decimals (1 µs).
pub fn ms(d: Duration) -> f64 {
    round(d.as_secs_f64() * 1e3, 3)
}

/// `x` rounded to `decimals` decimals (at most 3 in any line); a value that
/// is not finite stays as it is (it is written as `null`).
pub fn round(x: f64, decimals: u32) -> f64 {
    if !x.is_finite() {
        return x;
    }
    let f = 10f64.powi(decimals.min(9) as i32);
    (x * f).round() / f
}

/// Whether `s` is a snake_case word: `a-z`, `0-9` and `_`, starting with a
/// letter, no `__`, not ending in `_`.
pub fn is_snake_case(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
        && !s.contains("__")
        && !s.ends_with('_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_first_then_fields_in_order() {
        let line = Line::stamped("consumer", "found", 42, 1000)
            .field("value", 22)
            .field("recent", [1, 22])
            .ms("elapsed_ms", Duration::from_micros(1_234_567))
            .into_string();
        assert_eq!(
            line,
            "{\"program\":\"consumer\",\"event\":\"found\",\"pid\":42,\"ts_ms\":1000,\
             \"value\":22,\"recent\":[1,22],\"elapsed_ms\":1234.567}\n"
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["event"], "found");
    }

    #[test]
    fn fields_of_a_struct_and_rounding() {
        #[derive(Serialize)]
        struct S {
            a: u32,
            b: Option<String>,
        }
        let line = Line::stamped("p", "e", 1, 2)
            .fields(&S { a: 1, b: None })
            .field("x_per_s", round(2.0 / 3.0, 1))
            .into_string();
        assert!(
            line.ends_with(",\"a\":1,\"b\":null,\"x_per_s\":0.7}\n"),
            "{line}"
        );
        assert_eq!(ms(Duration::from_nanos(1_500)), 0.002);
        assert!(round(f64::NAN, 3).is_nan());
    }

    #[test]
    fn snake_case() {
        for ok in ["a", "ts_ms", "p99_ms", "log_dropped"] {
            assert!(is_snake_case(ok), "{ok}");
        }
        for bad in ["", "A", "reader-left", "_a", "a_", "a__b", "rateUnit", "9a"] {
            assert!(!is_snake_case(bad), "{bad}");
        }
    }
}

//! Fuzz check: a duration option (`250ms`, `1.5s`, ...), read by
//! [`syncomm_common::duration::parse_duration`], the parser every program uses.
//!
//! Invariants:
//! - it never panics, and its error is one line;
//! - a success is at most [`MAX_DURATION`], formats ([`format_duration`]) to a
//!   short text that parses back to the same value, and agrees with a
//!   floating-point reading of the same text to within a nanosecond (plus
//!   f64 rounding); it is zero exactly when every digit is zero;
//! - spelling the same number differently (a trailing `0` after the decimal
//!   point, a leading `0`) gives the same result;
//! - `inf` and `infinity`, in any case, are [`MAX_DURATION`].

use std::time::Duration;

use syncomm_common::duration::{format_duration, parse_duration, MAX_DURATION};

/// Runs the parser on `data` and asserts its invariants.
pub fn check(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let result = parse_duration(&text);
    match &result {
        Ok(d) => check_success(&text, *d),
        Err(e) => {
            let message = e.to_string();
            assert!(!message.contains('\n'), "error is one line: {message}");
        }
    }
    // The same number spelled differently reads the same.
    let t = text.trim();
    let end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(end);
    if num.bytes().any(|b| b.is_ascii_digit()) && num.matches('.').count() <= 1 {
        let padded = if num.contains('.') {
            format!("{num}0{unit}")
        } else {
            format!("{num}.0{unit}")
        };
        assert_eq!(
            same(&parse_duration(&padded)),
            same(&result),
            "{t:?} vs {padded:?}"
        );
        let leading = format!("0{num}{unit}");
        assert_eq!(
            same(&parse_duration(&leading)),
            same(&result),
            "{t:?} vs {leading:?}"
        );
    }
}

/// The value, or whether the error was "too large" (the other errors differ
/// only in their wording).
fn same(r: &Result<Duration, syncomm_common::duration::DurationError>) -> Result<Duration, bool> {
    r.as_ref().map(|d| *d).map_err(|e| e.is_too_large())
}

fn check_success(text: &str, d: Duration) {
    assert!(d <= MAX_DURATION, "{text:?} gave {d:?}, above the maximum");
    let shown = format_duration(d);
    assert!(shown.len() <= 24, "{d:?} formats long: {shown}");
    assert_eq!(
        parse_duration(&shown).ok(),
        Some(d),
        "{text:?} -> {d:?} -> {shown:?} does not parse back"
    );

    let t = text.trim();
    if t.eq_ignore_ascii_case("inf") || t.eq_ignore_ascii_case("infinity") {
        assert_eq!(d, MAX_DURATION, "{text:?} is no limit");
        return;
    }
    let end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(end);
    let all_zero = num.bytes().all(|b| b == b'0' || b == b'.');
    assert_eq!(d.is_zero(), all_zero, "{text:?} gave {d:?}");
    let per_unit = match unit {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        other => panic!("{text:?} accepted with unit {other:?}"),
    };
    let approx: f64 = num.parse::<f64>().expect("accepted digits parse as f64") * per_unit;
    let got = d.as_secs_f64();
    let tolerance = 1.5e-9 + approx * 1e-12;
    assert!(
        (got - approx).abs() <= tolerance,
        "{text:?} gave {got} s, about {approx} s expected"
    );
}

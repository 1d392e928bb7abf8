//! Durations on the command line: `250ms`, `1.5s`, `2m`, `1h`; a bare number
//! means seconds (as `timeout(1)` and `sleep(1)` read it).
//!
//! Every program reads its durations with [`parse_duration`], so every one
//! has the same range: from 0 to [`MAX_DURATION`] (100 years), exactly to the
//! nanosecond.
//! - A value above the maximum is refused (a usage error naming the
//!   maximum), never clamped silently: a deadline of 100 years is already
//!   "never" for any run, and with this bound `Instant::now() + d` cannot
//!   overflow (the monotonic clock would need to be near 292 billion years).
//! - The number is read exactly in decimal (no floating point), and a
//!   fraction of a nanosecond is rounded **up**: a nonzero value is never
//!   read as zero (which most programs take as "no limit"), so
//!   `0.0000000001` is 1 ns, as `timeout(1)` treats it as a deadline that has
//!   already passed.
//! - `inf` (or `infinity`) is accepted by every duration option and means
//!   "no limit": it reads as [`MAX_DURATION`].
//!
//! What `0` means depends on what the option bounds (docs/DURATIONS.md has
//! the table of every option): a wait for someone else (`--timeout` of
//! consumer, monitor, gate, discover; `--drain-timeout`) with `0` checks once
//! and does not wait; a limit on something running (guard's DURATION and
//! `-k`, `--task-timeout`, `--idle-timeout`, `worker call --timeout`,
//! `ping-client -W`) with `0` is no limit, as `timeout 0` is
//! ([`limit`] reads it so); a pause between steps with `0` is no pause, except
//! a screen refresh, which must be at least [`MIN_REFRESH`]
//! ([`parse_refresh`]).

use std::time::Duration;

/// The longest duration accepted: 100 years of 365.25 days (`36525d`).
pub const MAX_DURATION: Duration = Duration::from_secs(36_525 * 86_400);

/// [`MAX_DURATION`] in words, for messages and help texts.
pub const MAX_DURATION_TEXT: &str = "100 years (36525d)";

/// Why a string is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid duration {given:?}: {why} (examples: 250ms, 1.5s, 2m, 1h; a bare number is seconds)"
)]
pub struct DurationError {
    given: String,
    why: &'static str,
}

const TOO_LARGE: &str = "it is longer than the maximum, 100 years (36525d)";

impl DurationError {
    /// Whether the string was a well-formed duration above [`MAX_DURATION`].
    pub fn is_too_large(&self) -> bool {
        self.why == TOO_LARGE
    }
}

/// Nanoseconds per unit, for each unit accepted.
fn unit_nanos(unit: &str) -> Option<u128> {
    Some(match unit {
        "ns" => 1,
        "us" | "µs" => 1_000,
        "ms" => 1_000_000,
        "" | "s" => 1_000_000_000,
        "m" => 60 * 1_000_000_000,
        "h" => 3_600 * 1_000_000_000,
        "d" => 86_400 * 1_000_000_000,
        _ => return None,
    })
}

/// The shortest refresh interval of a live display (`monitor --interval`,
/// `syncomm top --interval`): shorter would only burn a CPU redrawing.
pub const MIN_REFRESH: Duration = Duration::from_millis(1);

/// A limit on something running, as given on the command line: `0` and
/// `inf` (anything at [`MAX_DURATION`]) are no limit.
pub fn limit(d: Option<Duration>) -> Option<Duration> {
    d.filter(|d| !d.is_zero() && *d < MAX_DURATION)
}

/// Parses a refresh interval: a duration of at least [`MIN_REFRESH`].
pub fn parse_refresh(s: &str) -> Result<Duration, DurationError> {
    let d = parse_duration(s)?;
    if d < MIN_REFRESH {
        return Err(DurationError {
            given: s.to_owned(),
            why: "a refresh interval must be at least 1ms",
        });
    }
    Ok(d)
}

/// Parses a duration such as `250ms`, `1.5s`, `2m`, `3h`, `1d`, `10us`, `5ns` or `7`.
///
/// The number is decimal digits with at most one `.` (`.5` and `5.` too),
/// then an optional unit: `ns`, `us` (or `µs`), `ms`, `s` (the default), `m`,
/// `h`, `d`; or `inf`/`infinity`, read as [`MAX_DURATION`]. Surrounding
/// whitespace is ignored. A fraction of a nanosecond is
/// rounded up to the next whole nanosecond; a value above [`MAX_DURATION`] is
/// refused ([`DurationError::is_too_large`]).
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let fail = |why| {
        Err(DurationError {
            given: s.to_owned(),
            why,
        })
    };
    let t = s.trim();
    if t.eq_ignore_ascii_case("inf") || t.eq_ignore_ascii_case("infinity") {
        return Ok(MAX_DURATION);
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() || num == "." {
        return fail("it does not start with a number");
    }
    let (int, frac) = match num.split_once('.') {
        Some((_, frac)) if frac.contains('.') => {
            return fail("the number has more than one decimal point")
        }
        Some((int, frac)) => (int, frac),
        None => (num, ""),
    };
    let Some(unit) = unit_nanos(unit) else {
        return fail("the unit is not one of ns, us, ms, s, m, h, d");
    };
    let max = MAX_DURATION.as_nanos();

    // The whole part: more than 20 significant digits exceeds the maximum in
    // any unit (10^20 ns is over 3,000 years), and 20 digits times the
    // largest unit still fits in a u128.
    let int = int.trim_start_matches('0');
    if int.len() > 20 {
        return fail(TOO_LARGE);
    }
    let whole: u128 = int.bytes().fold(0, |v, b| v * 10 + u128::from(b - b'0'));
    let mut nanos = whole * unit;

    // The fraction times the unit, by long multiplication from the last
    // digit: `carry` ends as the whole nanoseconds, and any nonzero digit
    // shifted out below them is a fraction of a nanosecond (rounded up).
    let mut carry: u128 = 0;
    let mut below_one_ns = false;
    for b in frac.bytes().rev() {
        carry += u128::from(b - b'0') * unit;
        below_one_ns |= carry % 10 != 0;
        carry /= 10;
    }
    nanos += carry + u128::from(below_one_ns);

    if nanos > max {
        return fail(TOO_LARGE);
    }
    // Below the maximum, so the seconds fit in a u64.
    Ok(Duration::new(
        (nanos / 1_000_000_000) as u64,
        (nanos % 1_000_000_000) as u32,
    ))
}

/// Formats a duration compactly and exactly for messages: `250ms`, `1.5s`,
/// `12µs`, `1.000000001s`. [`parse_duration`] reads the text back to the
/// same duration.
pub fn format_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    let (unit, name) = match ns {
        0 => return "0s".to_owned(),
        n if n < 1_000 => return format!("{n}ns"),
        n if n < 1_000_000 => (1_000, "µs"),
        n if n < 1_000_000_000 => (1_000_000, "ms"),
        _ => (1_000_000_000, "s"),
    };
    let (whole, frac) = (ns / unit, ns % unit);
    if frac == 0 {
        return format!("{whole}{name}");
    }
    let width = unit.ilog10() as usize;
    let digits = format!("{frac:0width$}");
    format!("{whole}.{}{name}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inf_is_no_limit_and_refreshes_have_a_floor() {
        for t in ["inf", "INF", " infinity ", "Infinity"] {
            assert_eq!(parse_duration(t), Ok(MAX_DURATION), "{t}");
        }
        assert!(parse_duration("infinit").is_err());
        assert_eq!(limit(Some(Duration::ZERO)), None);
        assert_eq!(limit(Some(MAX_DURATION)), None);
        assert_eq!(limit(None), None);
        assert_eq!(
            limit(Some(Duration::from_secs(2))),
            Some(Duration::from_secs(2))
        );
        assert!(parse_refresh("0").is_err());
        assert!(parse_refresh("0.999ms").is_err());
        assert_eq!(parse_refresh("1ms"), Ok(MIN_REFRESH));
    }

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("7").unwrap(), Duration::from_secs(7));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("1d").unwrap(), Duration::from_secs(86400));
        assert_eq!(parse_duration("10us").unwrap(), Duration::from_micros(10));
        assert_eq!(parse_duration("10µs").unwrap(), Duration::from_micros(10));
        assert_eq!(parse_duration(".5").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("5.").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration(" 3ns ").unwrap(), Duration::from_nanos(3));
        assert_eq!(parse_duration("0.1m").unwrap(), Duration::from_secs(6));
        assert_eq!(parse_duration("1.000000001").unwrap(), Duration::new(1, 1));
    }

    #[test]
    fn exact_where_floating_point_is_not() {
        // 0.3 s is not a binary fraction; read exactly it is 300,000,000 ns.
        assert_eq!(parse_duration("0.3").unwrap(), Duration::from_millis(300));
        assert_eq!(
            parse_duration("2.675ms").unwrap(),
            Duration::from_nanos(2_675_000)
        );
        assert_eq!(
            parse_duration("0000000000000000000000001s").unwrap(),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn a_fraction_of_a_nanosecond_rounds_up() {
        for tiny in ["0.0000000001", "0.1ns", "0.000000000000000000000000001s"] {
            assert_eq!(
                parse_duration(tiny).unwrap(),
                Duration::from_nanos(1),
                "{tiny}"
            );
        }
        assert_eq!(parse_duration("1.5ns").unwrap(), Duration::from_nanos(2));
        assert_eq!(
            parse_duration("0.0000000010").unwrap(),
            Duration::from_nanos(1)
        );
        assert_eq!(parse_duration("0.000").unwrap(), Duration::ZERO);
    }

    #[test]
    fn the_maximum_is_100_years() {
        assert_eq!(parse_duration("36525d").unwrap(), MAX_DURATION);
        assert_eq!(parse_duration("3155760000").unwrap(), MAX_DURATION);
        for over in [
            "36525.000000000000001d",
            "3155760000.000000001",
            "36526d",
            "9223372036854775000",
            "18446744073709551616",
            "99999999999999999999999999999999999999999",
            "1e999",
        ] {
            let err = parse_duration(over).unwrap_err();
            if over != "1e999" {
                assert!(err.is_too_large(), "{over}: {err}");
                assert!(err.to_string().contains("100 years"), "{over}: {err}");
            }
        }
        // The maximum can be added to the clock.
        let _ = std::time::Instant::now() + MAX_DURATION;
        let _ = std::time::SystemTime::now() + MAX_DURATION;
    }

    #[test]
    fn refuses_nonsense() {
        for bad in [
            "", "ms", "-1", "1x", "1.2.3", "abc", "1e999", "nan", ".", "+1", "1 s", "1sm",
            "infinite",
        ] {
            let err = parse_duration(bad).unwrap_err();
            assert!(err.to_string().contains("invalid duration"), "{bad}: {err}");
            assert!(!err.is_too_large(), "{bad}");
        }
    }

    #[test]
    fn formats_compactly() {
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_duration(Duration::from_micros(12)), "12µs");
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(Duration::from_nanos(999)), "999ns");
        assert_eq!(format_duration(Duration::new(1, 1)), "1.000000001s");
        assert_eq!(
            format_duration(Duration::from_nanos(1_234_567)),
            "1.234567ms"
        );
        assert_eq!(format_duration(MAX_DURATION), "3155760000s");
    }

    #[test]
    fn format_parses_back() {
        for ns in [
            0u64,
            1,
            999,
            1_000,
            1_001,
            999_999,
            1_000_000,
            123_456_789,
            1_000_000_000,
            1_000_000_001,
            59_999_999_999,
            MAX_DURATION.as_nanos() as u64,
        ] {
            let d = Duration::from_nanos(ns);
            assert_eq!(parse_duration(&format_duration(d)).unwrap(), d, "{ns}");
        }
    }
}

//! Durations on the command line: `250ms`, `1.5s`, `2m`, `1h`; a bare number
//! means seconds (as `timeout(1)` and `sleep(1)` read it).

use std::time::Duration;

/// Why a string is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid duration {given:?}: {why} (examples: 250ms, 1.5s, 2m, 1h; a bare number is seconds)"
)]
pub struct DurationError {
    given: String,
    why: &'static str,
}

/// Parses a duration such as `250ms`, `1.5s`, `2m`, `3h`, `1d`, `10us`, `5ns` or `7`.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let fail = |why| {
        Err(DurationError {
            given: s.to_owned(),
            why,
        })
    };
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() || num == "." {
        return fail("it does not start with a number");
    }
    if num.matches('.').count() > 1 {
        return fail("the number has more than one decimal point");
    }
    let value: f64 = match num.parse() {
        Ok(v) => v,
        Err(_) => return fail("the number does not parse"),
    };
    let seconds_per_unit = match unit {
        "" | "s" => 1.0,
        "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        "ns" => 1e-9,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        _ => return fail("the unit is not one of ns, us, ms, s, m, h, d"),
    };
    let secs = value * seconds_per_unit;
    if !secs.is_finite() || secs > u64::MAX as f64 / 2.0 {
        return fail("it is too large");
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Formats a duration compactly for messages: `250ms`, `1.5s`, `12µs`.
pub fn format_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        "0s".to_owned()
    } else if ns < 1_000 {
        format!("{ns}ns")
    } else if ns < 1_000_000 {
        format!("{}µs", trim_float(ns as f64 / 1e3))
    } else if ns < 1_000_000_000 {
        format!("{}ms", trim_float(ns as f64 / 1e6))
    } else {
        format!("{}s", trim_float(ns as f64 / 1e9))
    }
}

fn trim_float(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(parse_duration(".5").unwrap(), Duration::from_millis(500));
    }

    #[test]
    fn refuses_nonsense() {
        for bad in ["", "ms", "-1", "1x", "1.2.3", "abc", "1e999", "nan"] {
            let err = parse_duration(bad).unwrap_err().to_string();
            assert!(err.contains("invalid duration"), "{bad}: {err}");
        }
    }

    #[test]
    fn formats_compactly() {
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_duration(Duration::from_micros(12)), "12µs");
    }
}

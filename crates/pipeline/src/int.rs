//! Fast, checked 64-bit integer parsing and formatting for the integer stages.
//!
//! The integer stages handle millions of records a second, so they neither
//! allocate nor go through `str::parse`/`format!` per record: [`parse_i64`]
//! reads ASCII digits straight from the line's bytes and [`format_i64_line`] writes
//! digits into a small stack buffer. Both are checked: a number outside the
//! `i64` range is an error, never a wrap.

/// Why a record is not a 64-bit integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntError {
    /// Not an optional sign followed by decimal digits.
    NotAnInteger,
    /// Digits, but outside `i64::MIN..=i64::MAX`.
    OutOfRange,
}

/// Parses `bytes` (surrounding ASCII spaces, tabs and a `\r` allowed) as an `i64`.
#[inline(always)]
pub fn parse_i64(bytes: &[u8]) -> Result<i64, IntError> {
    let s = trim_ascii(bytes);
    let (negative, digits) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() {
        return Err(IntError::NotAnInteger);
    }
    // Accumulate as a negative number: its range includes i64::MIN.
    let mut acc: i64 = 0;
    let mut overflow = false;
    for &b in digits {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return Err(IntError::NotAnInteger);
        }
        match acc
            .checked_mul(10)
            .and_then(|v| v.checked_sub(i64::from(d)))
        {
            Some(v) => acc = v,
            None => overflow = true, // keep scanning: a later letter makes it "not an integer"
        }
    }
    if overflow {
        return Err(IntError::OutOfRange);
    }
    if negative {
        Ok(acc)
    } else {
        acc.checked_neg().ok_or(IntError::OutOfRange)
    }
}

/// The longest decimal `i64`: `-9223372036854775808`.
pub const MAX_DIGITS: usize = 20;

/// Room for the longest `i64`, its newline, and padding so that callers can
/// copy a fixed-size block (a few wide moves, no `memcpy` call).
pub const LINE_BUF: usize = 24;

/// "00" to "99": two digits per division, as `itoa` does.
const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// How many decimal digits `n` has (1 for 0).
#[inline(always)]
fn digit_count(n: u64) -> usize {
    let mut digits = 1;
    let mut bound = 10u64;
    while digits < 20 && n >= bound {
        digits += 1;
        bound = bound.saturating_mul(10);
    }
    digits
}

/// Writes `v` in decimal followed by `\n` at the start of `buf`; returns the
/// length written (digits, sign and newline).
#[inline(always)]
pub fn format_i64_line(v: i64, buf: &mut [u8; LINE_BUF]) -> usize {
    let mut n = v.unsigned_abs();
    let sign = usize::from(v < 0);
    let digits = digit_count(n);
    buf[0] = b'-';
    let mut i = sign + digits;
    buf[i] = b'\n';
    while n >= 100 {
        let pair = (n % 100) as usize * 2;
        n /= 100;
        i -= 2;
        buf[i..i + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    }
    if n >= 10 {
        let pair = n as usize * 2;
        buf[i - 2..i].copy_from_slice(&PAIRS[pair..pair + 2]);
    } else {
        buf[i - 1] = b'0' + n as u8;
    }
    sign + digits + 1
}

/// `bytes` without leading and trailing ASCII blanks (space, tab, `\r`).
pub fn trim_ascii(bytes: &[u8]) -> &[u8] {
    let blank = |b: &u8| matches!(b, b' ' | b'\t' | b'\r');
    let start = bytes.iter().position(|b| !blank(b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !blank(b))
        .map_or(start, |e| e + 1);
    &bytes[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_it_should() {
        assert_eq!(parse_i64(b"0"), Ok(0));
        assert_eq!(parse_i64(b"42"), Ok(42));
        assert_eq!(parse_i64(b" -17\r"), Ok(-17));
        assert_eq!(parse_i64(b"+5"), Ok(5));
        assert_eq!(parse_i64(b"9223372036854775807"), Ok(i64::MAX));
        assert_eq!(parse_i64(b"-9223372036854775808"), Ok(i64::MIN));
    }

    #[test]
    fn refuses_what_it_should() {
        for bad in [
            &b""[..],
            b"-",
            b"abc",
            b"1 2",
            b"1.5",
            b"12a",
            b"--1",
            b"0x10",
        ] {
            assert_eq!(parse_i64(bad), Err(IntError::NotAnInteger), "{bad:?}");
        }
        assert_eq!(parse_i64(b"9223372036854775808"), Err(IntError::OutOfRange));
        assert_eq!(
            parse_i64(b"-9223372036854775809"),
            Err(IntError::OutOfRange)
        );
        assert_eq!(
            parse_i64(b"99999999999999999999999x"),
            Err(IntError::NotAnInteger)
        );
    }

    #[test]
    fn formats_every_edge() {
        let mut buf = [0u8; LINE_BUF];
        for v in [
            0,
            1,
            -1,
            9,
            10,
            -10,
            99,
            100,
            -101,
            12345,
            1_000_000,
            i64::MAX,
            i64::MIN,
        ] {
            let n = format_i64_line(v, &mut buf);
            assert_eq!(&buf[..n], format!("{v}\n").as_bytes());
        }
    }
}

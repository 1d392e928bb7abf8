//! `--json` output: one JSON object per line on stdout, for scripts.

use std::io::{self, Write};

use serde::Serialize;

/// Writes `value` as one line of JSON to `out` and flushes it.
pub fn write_json_line<W: Write, T: Serialize + ?Sized>(out: &mut W, value: &T) -> io::Result<()> {
    serde_json::to_writer(&mut *out, value).map_err(io::Error::other)?;
    out.write_all(b"\n")?;
    out.flush()
}

/// Prints `value` as one line of JSON on stdout.
pub fn print_json<T: Serialize + ?Sized>(value: &T) -> io::Result<()> {
    write_json_line(&mut io::stdout().lock(), value)
}

/// Prints `value` as one line of JSON on stderr (summaries that must not mix
/// with a program's data on stdout).
pub fn eprint_json<T: Serialize + ?Sized>(value: &T) -> io::Result<()> {
    write_json_line(&mut io::stderr().lock(), value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_object_per_line() {
        #[derive(Serialize)]
        struct S {
            a: u32,
        }
        let mut out = Vec::new();
        write_json_line(&mut out, &S { a: 1 }).unwrap();
        write_json_line(&mut out, &S { a: 2 }).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "{\"a\":1}\n{\"a\":2}\n");
    }
}

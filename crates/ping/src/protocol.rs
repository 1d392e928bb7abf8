//! The line protocol, shared by the server and the client.
//!
//! A request is one line ending in `\n` (a `\r` before it is ignored, so
//! `nc -C` and telnet work too):
//!
//! | request | answer |
//! |---|---|
//! | `ping` | `pong` |
//! | `ping PAYLOAD` | `pong PAYLOAD` (the bytes after the space, echoed unchanged) |
//! | anything else | `error: unknown request` (the connection stays open) |
//! | a line over [`MAX_LINE`] bytes | `error: line too long`, then the server closes |
//!
//! Past `--max-conns` a new connection gets [`BUSY`] and is closed; a client
//! silent for the idle timeout gets [`IDLE`] and is closed.

/// The longest request line accepted, in bytes, without its `\n`: 64 KiB.
pub const MAX_LINE: usize = 64 * 1024;

/// The largest payload a `ping PAYLOAD` line can carry.
pub const MAX_PAYLOAD: usize = MAX_LINE - b"ping ".len();

/// Answer to a line that is not a request.
pub const UNKNOWN: &[u8] = b"error: unknown request\n";
/// Answer to a line over [`MAX_LINE`] bytes; the connection is closed after it.
pub const TOO_LONG: &[u8] = b"error: line too long\n";
/// Answer to a connection past `--max-conns`; it is closed after it.
pub const BUSY: &[u8] = b"error: server busy\n";
/// Sent to a connection dropped for being silent too long.
pub const IDLE: &[u8] = b"error: idle timeout\n";

/// A parsed request line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request<'a> {
    /// `ping`, with the payload after `ping ` if there is one.
    Ping(Option<&'a [u8]>),
    /// Any other line.
    Unknown,
}

/// Parses one line (without its `\n`; a trailing `\r` is dropped here).
pub fn parse_request(line: &[u8]) -> Request<'_> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    match line.strip_prefix(b"ping") {
        Some([]) => Request::Ping(None),
        Some([b' ', payload @ ..]) => Request::Ping(Some(payload)),
        _ => Request::Unknown,
    }
}

/// Appends the answer to `req` (with its `\n`) to `out`.
pub fn write_reply(req: Request<'_>, out: &mut Vec<u8>) {
    match req {
        Request::Ping(None) => out.extend_from_slice(b"pong\n"),
        Request::Ping(Some(payload)) => {
            out.extend_from_slice(b"pong ");
            out.extend_from_slice(payload);
            out.push(b'\n');
        }
        Request::Unknown => out.extend_from_slice(UNKNOWN),
    }
}

/// Appends the request line `ping` or `ping PAYLOAD` (with its `\n`) to `out`.
pub fn write_ping(payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b"ping");
    if !payload.is_empty() {
        out.push(b' ');
        out.extend_from_slice(payload);
    }
    out.push(b'\n');
}

/// The answer the server gives to `ping PAYLOAD` (with its `\n`).
pub fn expected_pong(payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(payload.len() + 6);
    write_reply(
        Request::Ping((!payload.is_empty()).then_some(payload)),
        &mut v,
    );
    v
}

/// The request line for a payload of `payload_len` bytes (see
/// [`make_payload`]) and the exact answer a server owes it: what a client
/// sends and checks on every ping.
pub fn exchange(payload_len: usize) -> (Vec<u8>, Vec<u8>) {
    let payload = make_payload(payload_len);
    let mut request = Vec::with_capacity(payload_len + 6);
    write_ping(&payload, &mut request);
    (request, expected_pong(&payload))
}

/// A printable payload of `len` bytes (`abc...xyzabc...`), for `-s`.
pub fn make_payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| b'a' + (i % 26) as u8).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(line: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        write_reply(parse_request(line), &mut v);
        v
    }

    #[test]
    fn ping_and_payload() {
        assert_eq!(answer(b"ping"), b"pong\n");
        assert_eq!(answer(b"ping\r"), b"pong\n");
        assert_eq!(answer(b"ping hello world"), b"pong hello world\n");
        assert_eq!(answer(b"ping "), b"pong \n");
        assert_eq!(answer(b"ping \xff\x00"), b"pong \xff\x00\n");
    }

    #[test]
    fn everything_else_is_unknown() {
        for bad in [&b""[..], b"pong", b"pingx", b"PING", b" ping", b"\x00\x01"] {
            assert_eq!(answer(bad), UNKNOWN, "{bad:?}");
        }
    }

    #[test]
    fn client_side_matches_server_side() {
        let p = make_payload(30);
        let mut req = Vec::new();
        write_ping(&p, &mut req);
        assert_eq!(answer(&req[..req.len() - 1]), expected_pong(&p));
        assert_eq!(expected_pong(b""), b"pong\n");
    }
}

//! The caller's side: connect to a pool by name and call functions, one at
//! a time or many in flight on one connection.
//!
//! ```no_run
//! use syncomm_worker::{Client, Value};
//! let dir = syncomm_common::rundir::RunDir::open("/tmp/syncomm-example").unwrap();
//! let name = syncomm_common::Name::new("default").unwrap();
//! let mut client = Client::connect(&dir, &name)?;
//! let five = client.call("add", &[Value::Int(2), Value::Int(3)])?;
//! assert_eq!(five, Ok(Value::Int(5)));
//!
//! // Pipelined: send many, then collect the answers (matched by id).
//! let ids: Vec<u64> = (0..100)
//!     .map(|i| client.send("neg", &[Value::Int(i)]))
//!     .collect::<Result<_, _>>()?;
//! for _ in &ids {
//!     let (id, result) = client.recv()?;
//!     assert!(ids.contains(&id) && result.is_ok());
//! }
//! # Ok::<(), syncomm_worker::ClientError>(())
//! ```

use std::collections::HashMap;
use std::io::{self, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use interprocess::local_socket::traits::Stream as _;
use interprocess::local_socket::{GenericFilePath, Stream, ToFsName};
use serde::Serialize;
use syncomm_common::frame::{self, FrameError};
use syncomm_common::rundir::RunDir;
use syncomm_common::Name;

use crate::protocol::{CallError, ToClient, Value};

/// A call's outcome: the value, or the error the pool reported.
pub type CallResult = Result<Value, CallError>;

/// Why talking to the server failed (as opposed to a call failing).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nobody serves the name.
    #[error("no server is serving {name} (start one with `worker serve --name {name}`)")]
    NoServer {
        /// The name.
        name: String,
        /// The socket path tried.
        path: PathBuf,
    },
    /// The server refused what we sent and closed the connection.
    #[error("the server closed the connection: {0}")]
    Refused(String),
    /// The connection ended with calls unanswered.
    #[error("the server closed the connection with {n} {} unanswered", if *.0 == 1 { "call" } else { "calls" }, n = .0)]
    Closed(usize),
    /// No answer within the timeout.
    #[error("no answer within {0}")]
    Timeout(String),
    /// The server sent something that is not a frame of an answer (cut,
    /// over the size limit, undecodable, nested too deep).
    #[error("the server sent a bad answer: {0}")]
    BadAnswer(#[source] FrameError),
    /// A frame error on the socket.
    #[error("{0}")]
    Frame(#[from] FrameError),
    /// Another I/O error.
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// A request borrowed from the caller's data; encodes exactly like
/// [`crate::Request`] (serde writes `&str` and `String`, `&[T]` and `Vec<T>`
/// alike), so `send` copies nothing.
#[derive(Serialize)]
struct RequestRef<'a> {
    id: u64,
    function: &'a str,
    args: &'a [Value],
}

/// A connection to a pool.
pub struct Client {
    writer: UnixStream,
    reader: BufReader<UnixStream>,
    out: Vec<u8>,
    next_id: u64,
    in_flight: usize,
    /// Answers received while waiting for another one.
    early: HashMap<u64, CallResult>,
    timeout: Option<Duration>,
    /// The largest answer body accepted.
    max_answer: u32,
}

impl Client {
    /// Connects to the pool serving `name`.
    pub fn connect(dir: &RunDir, name: &Name) -> Result<Client, ClientError> {
        let path = crate::server::socket_path(dir, name);
        Client::connect_path(&path).map_err(|e| match e {
            ClientError::Io(io)
                if matches!(
                    io.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
                ) =>
            {
                ClientError::NoServer {
                    name: name.to_string(),
                    path,
                }
            }
            other => other,
        })
    }

    /// Connects to the pool listening at `path`.
    pub fn connect_path(path: &Path) -> Result<Client, ClientError> {
        let stream = Stream::connect(path.to_fs_name::<GenericFilePath>()?)?;
        let Stream::UdSocket(stream) = stream;
        let writer = stream.inner().try_clone()?;
        let reader = BufReader::with_capacity(64 * 1024, stream.inner().try_clone()?);
        Ok(Client {
            writer,
            reader,
            out: Vec::new(),
            next_id: 0,
            in_flight: 0,
            early: HashMap::new(),
            timeout: None,
            max_answer: crate::protocol::max_answer(frame::DEFAULT_MAX_FRAME),
        })
    }

    /// Bounds each wait for an answer (`None`: wait as long as it takes).
    pub fn set_timeout(&mut self, timeout: Option<Duration>) -> Result<(), ClientError> {
        self.reader.get_ref().set_read_timeout(timeout)?;
        self.timeout = timeout;
        Ok(())
    }

    /// Bounds the answer frames accepted (default: what a server with the
    /// default `--max-frame` can send, [`crate::protocol::max_answer`]). A
    /// larger or undecodable answer is a [`ClientError::Frame`].
    pub fn set_max_answer(&mut self, max: u32) {
        self.max_answer = max;
    }

    /// Queues a call and returns its request id. Calls are written when the
    /// buffer is large, on [`Client::flush`], or on [`Client::recv`].
    pub fn send(&mut self, function: &str, args: &[Value]) -> Result<u64, ClientError> {
        self.next_id += 1;
        let id = self.next_id;
        frame::encode_frame_into(&RequestRef { id, function, args }, &mut self.out)?;
        self.in_flight += 1;
        if self.out.len() >= 64 * 1024 {
            self.flush()?;
        }
        Ok(id)
    }

    /// Writes the queued calls.
    pub fn flush(&mut self) -> Result<(), ClientError> {
        if !self.out.is_empty() {
            self.writer.write_all(&self.out)?;
            self.out.clear();
        }
        Ok(())
    }

    /// Calls sent and not yet received.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// The next answer, whichever call it is for: `(request id, outcome)`.
    pub fn recv(&mut self) -> Result<(u64, CallResult), ClientError> {
        if let Some(&id) = self.early.keys().next() {
            let result = self.early.remove(&id).expect("key present");
            self.in_flight -= 1;
            return Ok((id, result));
        }
        self.recv_wire()
    }

    /// Reads one answer from the socket.
    fn recv_wire(&mut self) -> Result<(u64, CallResult), ClientError> {
        self.flush()?;
        match frame::read_frame::<_, ToClient>(&mut self.reader, self.max_answer) {
            Ok(Some(ToClient::Answer(resp))) => {
                self.in_flight = self.in_flight.saturating_sub(1);
                Ok((resp.id, resp.result))
            }
            Ok(Some(ToClient::ConnectionError(why))) => Err(ClientError::Refused(why)),
            Ok(None) => Err(ClientError::Closed(self.in_flight)),
            Err(FrameError::Io(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                let t = self.timeout.unwrap_or_default();
                Err(ClientError::Timeout(
                    syncomm_common::duration::format_duration(t),
                ))
            }
            Err(e) if e.is_protocol_error() => Err(ClientError::BadAnswer(e)),
            Err(e) => Err(e.into()),
        }
    }

    /// Waits for the answer to request `id`, keeping others for later.
    pub fn wait_for(&mut self, id: u64) -> Result<CallResult, ClientError> {
        if let Some(result) = self.early.remove(&id) {
            self.in_flight -= 1;
            return Ok(result);
        }
        loop {
            let (got, result) = self.recv_wire()?;
            if got == id {
                return Ok(result);
            }
            self.early.insert(got, result);
            self.in_flight += 1; // still counted until handed out
        }
    }

    /// Calls `function` and waits for its outcome.
    pub fn call(&mut self, function: &str, args: &[Value]) -> Result<CallResult, ClientError> {
        let id = self.send(function, args)?;
        self.wait_for(id)
    }

    /// Writes raw bytes on the connection (for tests of a server's defences).
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.flush()?;
        self.writer.write_all(bytes)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Request;

    #[test]
    fn borrowed_request_encodes_like_the_owned_one() {
        let args = vec![Value::Int(2), Value::Text("x".into())];
        let a = frame::encode_frame(&RequestRef {
            id: 7,
            function: "add",
            args: &args,
        })
        .unwrap();
        let b = frame::encode_frame(&Request {
            id: 7,
            function: "add".into(),
            args,
        })
        .unwrap();
        assert_eq!(a, b);
    }
}

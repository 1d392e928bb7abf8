//! The messages that travel between callers, the server and its children.
//!
//! Every message is one frame (`syncomm_common::frame`): a little-endian `u32`
//! length, then the bincode 2 body of one of these types.
//!
//! ```text
//! caller ──Request──▶ server ──Request──▶ child (stdin pipe)
//! caller ◀─ToClient── server ◀─Response── child (stdout pipe)
//! ```
//!
//! The same [`Request`] and [`Response`] types are used on the socket and on
//! the pipes, so the server forwards calls without translating them; it only
//! swaps the caller's request id for its own job id on the way to a child.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A value passed to or returned by a function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Value {
    /// `true` or `false`.
    Bool(bool),
    /// A signed 64-bit integer.
    Int(i64),
    /// An unsigned 64-bit integer (for results past `i64::MAX`, such as `fib 93`).
    UInt(u64),
    /// UTF-8 text.
    Text(String),
    /// A list of values.
    List(Vec<Value>),
}

impl Value {
    /// Guesses the value a command-line word stands for: an integer if it is
    /// one, `true`/`false`, else text.
    pub fn guess(word: &str) -> Value {
        if let Ok(i) = word.parse::<i64>() {
            Value::Int(i)
        } else if let Ok(u) = word.parse::<u64>() {
            Value::UInt(u)
        } else if word == "true" || word == "false" {
            Value::Bool(word == "true")
        } else {
            Value::Text(word.to_owned())
        }
    }

    /// A short description for error messages: `int 5`, `text "x"`.
    pub fn describe(&self) -> String {
        match self {
            Value::Bool(b) => format!("bool {b}"),
            Value::Int(i) => format!("int {i}"),
            Value::UInt(u) => format!("uint {u}"),
            Value::Text(t) if t.chars().count() > 20 => {
                format!("text {:?}...", t.chars().take(20).collect::<String>())
            }
            Value::Text(t) => format!("text {t:?}"),
            Value::List(v) => format!("list of {}", v.len()),
        }
    }
}

/// Values print the way a shell user wants them: `5`, `true`, the text
/// itself, a list as its items separated by spaces.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::UInt(u) => write!(f, "{u}"),
            Value::Text(t) => f.write_str(t),
            Value::List(items) => {
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    write!(f, "{item}")?;
                }
                Ok(())
            }
        }
    }
}

/// One call: run `function` on `args`. Sent by a caller to the server and by
/// the server to a child.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Chosen by the sender; the answer carries it back.
    pub id: u64,
    /// The function's name in the registry.
    pub function: String,
    /// Its arguments.
    pub args: Vec<Value>,
}

/// The answer to one [`Request`]. Sent by a child to the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// The request's id.
    pub id: u64,
    /// The function's result, or why there is none.
    pub result: Result<Value, CallError>,
}

/// What the server sends to a caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToClient {
    /// The answer to one of the caller's requests.
    Answer(Response),
    /// The caller broke the protocol (garbage, oversize frame, undecodable
    /// body); the server closes the connection after this message.
    ConnectionError(String),
}

/// Why a call has no result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct CallError {
    /// The kind of failure.
    pub kind: CallErrorKind,
    /// One line saying what went wrong.
    pub message: String,
}

/// Kinds of [`CallError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CallErrorKind {
    /// No function has that name.
    UnknownFunction,
    /// Wrong number or types of arguments.
    BadArguments,
    /// The function returned an error (division by zero, overflow, ...).
    Failed,
    /// The function panicked; the child caught it and lives on.
    Panicked,
    /// The child running the call died (signal or exit).
    WorkerDied,
    /// The call ran past `--task-timeout`; its child was killed and replaced.
    Timeout,
    /// The server is shutting down and takes no new calls.
    ShuttingDown,
}

impl CallError {
    /// An error of `kind` saying `message`.
    pub fn new(kind: CallErrorKind, message: impl Into<String>) -> CallError {
        CallError {
            kind,
            message: message.into(),
        }
    }
}

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

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, EnumAccess, SeqAccess, VariantAccess};
use serde::{Deserialize, Serialize};

/// The deepest a [`Value`] may be nested when decoded: an argument or a
/// result is at level 1, the items of a list at level 1 are at level 2, and
/// so on. No real call comes near it; a deeper frame is malformed (decoding
/// recurses once per level, so this bounds the stack it uses).
pub const MAX_DEPTH: usize = 64;

/// The most items a decoded list reserves room for before they arrive: the
/// declared length is only a claim (each item takes at least 2 bytes of the
/// frame, so growth past this is paid for by bytes received).
pub const MAX_PREALLOC: usize = 16;

/// The most values one decoded message may hold, lists and their items
/// counted (a result of `factor` holds at most 65; no function takes a
/// list). It bounds what decoding allocates for values (a few bytes of frame
/// per 32-byte [`Value`]) to a few MiB whatever the frame's size.
pub const MAX_VALUES: usize = 1 << 16;

/// A value passed to or returned by a function.
///
/// `Deserialize` is written by hand (same format as the derived one) to
/// enforce [`MAX_DEPTH`], [`MAX_VALUES`] and [`MAX_PREALLOC`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
        let left = Cell::new(MAX_VALUES);
        ValueSeed {
            depth: 1,
            left: &left,
        }
        .deserialize(d)
    }
}

/// Decodes one [`Value`] at nesting level `depth`; `left` counts down the
/// values the message may still hold.
struct ValueSeed<'a> {
    depth: usize,
    left: &'a Cell<usize>,
}

const VARIANTS: &[&str] = &["Bool", "Int", "UInt", "Text", "List"];

#[derive(Deserialize)]
#[serde(variant_identifier)]
enum Tag {
    Bool,
    Int,
    UInt,
    Text,
    List,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        if self.depth > MAX_DEPTH {
            return Err(de::Error::custom(format!(
                "values nested deeper than {MAX_DEPTH} levels"
            )));
        }
        match self.left.get().checked_sub(1) {
            Some(n) => self.left.set(n),
            None => {
                return Err(de::Error::custom(format!(
                    "more than {MAX_VALUES} values in one message"
                )))
            }
        }
        d.deserialize_enum("Value", VARIANTS, self)
    }
}

impl<'de> de::Visitor<'de> for ValueSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a worker value")
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Value, A::Error> {
        let (tag, variant) = data.variant::<Tag>()?;
        match tag {
            Tag::Bool => variant.newtype_variant().map(Value::Bool),
            Tag::Int => variant.newtype_variant().map(Value::Int),
            Tag::UInt => variant.newtype_variant().map(Value::UInt),
            Tag::Text => variant.newtype_variant().map(Value::Text),
            Tag::List => variant
                .newtype_variant_seed(ListSeed {
                    depth: self.depth,
                    left: self.left,
                })
                .map(Value::List),
        }
    }
}

/// Decodes a list whose items are at level `depth + 1`, reserving room for
/// at most [`MAX_PREALLOC`] of them up front.
struct ListSeed<'a> {
    depth: usize,
    left: &'a Cell<usize>,
}

impl<'de> DeserializeSeed<'de> for ListSeed<'_> {
    type Value = Vec<Value>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<Value>, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> de::Visitor<'de> for ListSeed<'_> {
    type Value = Vec<Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of worker values")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Value>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(MAX_PREALLOC));
        while let Some(item) = seq.next_element_seed(ValueSeed {
            depth: self.depth + 1,
            left: self.left,
        })? {
            items.push(item);
        }
        Ok(items)
    }
}

/// A request's arguments: a list at level 0 (each argument is at level 1).
fn deserialize_args<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Value>, D::Error> {
    let left = Cell::new(MAX_VALUES);
    ListSeed {
        depth: 0,
        left: &left,
    }
    .deserialize(d)
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
    #[serde(deserialize_with = "deserialize_args")]
    pub args: Vec<Value>,
}

/// The largest answer frame body a server started with `--max-frame
/// max_frame` can legitimately send (a result may be a few times larger than
/// its request: upper-casing can triple a text): what the server accepts
/// from its children and a caller accepts from the server.
pub fn max_answer(max_frame: u32) -> u32 {
    max_frame.saturating_mul(4).saturating_add(4096)
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

impl CallErrorKind {
    /// The kind as one snake_case word (`worker call --json` names it so).
    pub fn as_str(self) -> &'static str {
        match self {
            CallErrorKind::UnknownFunction => "unknown_function",
            CallErrorKind::BadArguments => "bad_arguments",
            CallErrorKind::Failed => "failed",
            CallErrorKind::Panicked => "panicked",
            CallErrorKind::WorkerDied => "worker_died",
            CallErrorKind::Timeout => "timeout",
            CallErrorKind::ShuttingDown => "shutting_down",
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use syncomm_common::frame::{self, FrameError, HEADER_LEN};

    fn body<T: Serialize>(msg: &T) -> Vec<u8> {
        frame::encode_frame(msg).unwrap()[HEADER_LEN..].to_vec()
    }

    fn nested(levels: usize) -> Value {
        let mut v = Value::Int(1);
        for _ in 1..levels {
            v = Value::List(vec![v]);
        }
        v
    }

    /// Every kind of value, nested up to the limit, decodes to itself.
    #[test]
    fn values_round_trip_up_to_the_depth_limit() {
        let req = Request {
            id: 9,
            function: "f".into(),
            args: vec![
                Value::Bool(true),
                Value::Int(-5),
                Value::UInt(u64::MAX),
                Value::Text("héllo".into()),
                Value::List(vec![]),
                nested(MAX_DEPTH),
            ],
        };
        assert_eq!(frame::decode_body::<Request>(&body(&req)).unwrap(), req);
        let resp = Response {
            id: 1,
            result: Ok(nested(MAX_DEPTH)),
        };
        assert_eq!(frame::decode_body::<Response>(&body(&resp)).unwrap(), resp);
        let to = ToClient::Answer(Response {
            id: 2,
            result: Err(CallError::new(CallErrorKind::Timeout, "slow")),
        });
        assert_eq!(frame::decode_body::<ToClient>(&body(&to)).unwrap(), to);
    }

    /// One level past the limit is malformed, in every message type; a
    /// nesting of a million levels (which used to overflow the stack) too.
    #[test]
    fn deeper_than_the_limit_is_malformed() {
        let deep = nested(MAX_DEPTH + 1);
        let req = Request {
            id: 1,
            function: "f".into(),
            args: vec![deep.clone()],
        };
        let err = frame::decode_body::<Request>(&body(&req)).unwrap_err();
        assert!(matches!(err, FrameError::Malformed(_)), "{err}");
        assert!(err.to_string().contains("nested deeper than 64"), "{err}");
        let resp = Response {
            id: 1,
            result: Ok(deep),
        };
        assert!(frame::decode_body::<Response>(&body(&resp)).is_err());
        assert!(frame::decode_body::<ToClient>(&body(&ToClient::Answer(resp))).is_err());
        // Built by hand (encoding it would recurse too): List(List(List(...))).
        let mut wire = vec![1u8, 1, b'f', 1]; // id, "f", one argument
        for _ in 0..1_000_000 {
            wire.extend_from_slice(&[4, 1]); // List, one item
        }
        wire.extend_from_slice(&[1, 0]); // Int 0
        let err = frame::decode_body::<Request>(&wire).unwrap_err();
        assert!(err.to_string().contains("nested deeper"), "{err}");
    }

    /// Lists declaring a huge length reserve only a little room each: 64
    /// levels of lists each claiming 2^60 items, in a body of ~200 bytes,
    /// fail fast without preallocating per level.
    #[test]
    fn declared_huge_lists_are_malformed() {
        let mut wire = vec![1u8, 1, b'f', 1];
        for _ in 0..MAX_DEPTH - 1 {
            wire.extend_from_slice(&[4, 0xfd]);
            wire.extend_from_slice(&(1u64 << 60).to_le_bytes());
        }
        let err = frame::decode_body::<Request>(&wire).unwrap_err();
        assert!(matches!(err, FrameError::Malformed(_)), "{err}");
        // The arguments themselves declared huge.
        let mut wire = vec![1u8, 1, b'f', 0xfd];
        wire.extend_from_slice(&(1u64 << 60).to_le_bytes());
        assert!(frame::decode_body::<Request>(&wire).is_err());
        // More values than a message may hold (all small, well-formed).
        let ok = Request {
            id: 1,
            function: "f".into(),
            args: vec![
                Value::List(vec![Value::Bool(true); MAX_VALUES - 2]),
                Value::Int(1),
            ],
        };
        assert_eq!(frame::decode_body::<Request>(&body(&ok)).unwrap(), ok);
        let over = Request {
            id: 1,
            function: "f".into(),
            args: vec![Value::List(vec![Value::Bool(true); MAX_VALUES])],
        };
        let err = frame::decode_body::<Request>(&body(&over)).unwrap_err();
        assert!(err.to_string().contains("more than 65536 values"), "{err}");
        // A text argument declared huge.
        let mut wire = vec![1u8, 1, b'f', 1, 3, 0xfd];
        wire.extend_from_slice(&(1u64 << 50).to_le_bytes());
        assert!(frame::decode_body::<Request>(&wire).is_err());
    }
}

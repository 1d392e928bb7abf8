//! # syncomm-worker
//!
//! A supervised pool of worker processes that any process can send function
//! calls to: the seed's "send functions to a worker process" (an in-queue of
//! `(function, args)` and an out-queue of results), made into a service.
//!
//! ## The mechanism
//! ```text
//!  worker call ─┐                 ┌─ stdin pipe ──▶ worker --stdio (child 1)
//!  worker call ─┼─ local socket ─▶│  serve        ◀── stdout pipe ─┘
//!  Client     ──┘  (frames)       └─ stdin pipe ──▶ worker --stdio (child 2) ...
//! ```
//! - [`protocol`]: the messages ([`Request`], [`Response`], [`ToClient`]),
//!   each one frame: a little-endian `u32` length + a bincode 2 body.
//! - [`registry`]: the ONE table of functions, with their signatures.
//! - [`child`]: the child loop: read a request from stdin, run it, write the
//!   response to stdout; a panic becomes an error result.
//! - [`server`]: one `poll(2)` loop over the socket, the connections and the
//!   children's pipes; hands calls to children, notices dead ones, replaces
//!   them, re-sends the calls they had not started.
//! - [`client`]: [`Client`]: `call`, or `send`/`recv` with many calls in flight.
//! - [`wire`]: frame buffers for non-blocking descriptors.
//!
//! ## Why these crates
//! - `interprocess`: the local socket (a Unix-domain socket on Linux), created 0600.
//! - `serde` + `bincode` 2: the frame bodies (DESIGN.md).
//! - `nix`: `poll(2)`, `prctl(PR_SET_PDEATHSIG)`, `kill(2)`, `SO_PEERCRED`.
#![deny(missing_docs)]

pub mod child;
pub mod client;
pub mod protocol;
pub mod registry;
pub mod server;
pub mod wire;

pub use client::{CallResult, Client, ClientError};
pub use protocol::{CallError, CallErrorKind, Request, Response, ToClient, Value};
pub use server::{Config, ServeError, Server};

//! # syncomm-admin
//!
//! What `syncomm ls|clean|top` do: find every object the syncomm programs
//! create — in the runtime directory (board links, gate files, discover
//! registries, worker and ping sockets and status records) and outside it
//! (board segments in `/dev/shm`, gate System V semaphore sets) — decide
//! whether each is `live`, `stale` (its owner died), `orphan` (a kernel
//! object whose file is gone, or a file whose kernel object is gone) or
//! `foreign` (not ours: listed, never touched), remove the stale and orphaned
//! ones, and watch the live ones.
//!
//! Kernel objects are traced to their runtime directory and name by the
//! attribution record they carry ([`syncomm_common::attribution`]), so an
//! object whose directory was deleted is still found (for the current user).
//!
//! ## Modules
//! - [`model`]: objects, kinds, states.
//! - [`scan`](mod@scan): the enumeration.
//! - [`clean`](mod@clean): removal, re-checking each object at the moment it is removed.
//! - [`top`](mod@top): the live view.
//! - [`leaks`]: what a test run left behind (the end-of-suite leak check).
#![deny(missing_docs)]

pub mod clean;
pub mod leaks;
pub mod model;
pub mod scan;
pub mod top;

pub use model::{Kind, Listing, Object, State};
pub use scan::{scan, Scope};

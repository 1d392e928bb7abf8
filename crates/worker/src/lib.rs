//! # syncomm-worker
//!
//! (being built; see the issue for this scenario)
#![deny(missing_docs)]

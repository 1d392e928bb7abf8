//! Benchmarks of the ping scenario (being built).

use crate::{Ctx, Figure};

/// Measures the ping scenario's figures.
pub fn run(_ctx: &Ctx) -> anyhow::Result<Vec<Figure>> {
    Ok(Vec::new())
}

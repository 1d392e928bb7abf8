//! Benchmarks of the scribe scenario (being built).

use crate::{Ctx, Figure};

/// Measures the scribe scenario's figures.
pub fn run(_ctx: &Ctx) -> anyhow::Result<Vec<Figure>> {
    Ok(Vec::new())
}

//! Benchmarks of the gate scenario (being built).

use crate::{Ctx, Figure};

/// Measures the gate scenario's figures.
pub fn run(_ctx: &Ctx) -> anyhow::Result<Vec<Figure>> {
    Ok(Vec::new())
}

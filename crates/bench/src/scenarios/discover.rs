//! Benchmarks of the discover scenario (being built).

use crate::{Ctx, Figure};

/// Measures the discover scenario's figures.
pub fn run(_ctx: &Ctx) -> anyhow::Result<Vec<Figure>> {
    Ok(Vec::new())
}

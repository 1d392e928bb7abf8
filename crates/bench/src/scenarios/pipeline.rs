//! Benchmarks of the pipeline scenario (being built).

use crate::{Ctx, Figure};

/// Measures the pipeline scenario's figures.
pub fn run(_ctx: &Ctx) -> anyhow::Result<Vec<Figure>> {
    Ok(Vec::new())
}

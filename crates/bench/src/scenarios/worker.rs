//! Benchmarks of the worker scenario (being built).

use crate::{Ctx, Figure};

/// Measures the worker scenario's figures.
pub fn run(_ctx: &Ctx) -> anyhow::Result<Vec<Figure>> {
    Ok(Vec::new())
}

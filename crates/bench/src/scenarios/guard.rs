//! Benchmarks of the guard scenario (being built).

use crate::{Ctx, Figure};

/// Measures the guard scenario's figures.
pub fn run(_ctx: &Ctx) -> anyhow::Result<Vec<Figure>> {
    Ok(Vec::new())
}

//! Benchmarks of the notify scenario (being built).

use crate::{Ctx, Figure};

/// Measures the notify scenario's figures.
pub fn run(_ctx: &Ctx) -> anyhow::Result<Vec<Figure>> {
    Ok(Vec::new())
}

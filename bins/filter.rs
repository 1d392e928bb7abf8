//! `filter`: not yet built (placeholder so the workspace compiles).
use std::process::ExitCode;

fn main() -> ExitCode {
    syncomm_common::run("filter", || {
        Err(syncomm_common::Fail::failed("not built yet").into())
    })
}

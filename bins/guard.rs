//! `guard`: not yet built (placeholder so the workspace compiles).
use std::process::ExitCode;

fn main() -> ExitCode {
    syncomm_common::run("guard", || {
        Err(syncomm_common::Fail::failed("not built yet").into())
    })
}

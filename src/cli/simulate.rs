//! `witness simulate`: runs the RTSP camera simulator until the process is stopped.

use std::process::ExitCode;

use witness::simulator::{self, SimOptions};

/// Runs in the main thread, before (and without) the async runtime.
pub fn run(opts: &SimOptions) -> anyhow::Result<ExitCode> {
    simulator::run(opts)?;
    Ok(ExitCode::SUCCESS)
}

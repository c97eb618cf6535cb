//! `witness serve`: runs the HTTP API and the recorders.

use std::path::PathBuf;
use std::process::ExitCode;

use witness::config::Config;
use witness::{http, services};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    config: Option<PathBuf>,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = Config::load(args.config.as_deref())?;
    let state = services::start(&config).await?;
    http::serve(&config, state).await?;
    Ok(ExitCode::SUCCESS)
}

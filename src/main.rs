//! The `witness` command: parses the command line and hands each subcommand to `cli`.

mod cli;

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "witness",
    version,
    about = "Records trading-centre rooms as tamper-evident evidence"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Manage user accounts with the host's authority (over HTTP: security administrators, four eyes).
    User(cli::user::Args),
    /// Create the S3 bucket of `[store]` with Object Lock and a default COMPLIANCE retention at
    /// the legal minimum of the storage policies (run once, before the first start).
    StoreInit(cli::store_init::Args),
    /// Issue an API token for an integration (e.g. the trading system starting recordings).
    Token(cli::token::Args),
    /// Run the HTTP API and the recorders.
    Serve(cli::serve::Args),
    /// Run the RTSP camera simulator.
    Simulate(witness::simulator::SimOptions),
    /// Export a stopped session as an evidence package (BagIt bag in a tar or zip file).
    Export(cli::export::Args),
    /// Server + simulator + a demo room that starts recording.
    Demo(cli::demo::Args),
    /// The server's signing keys: list them with their fingerprints, or rotate.
    Keys(cli::keys::Args),
    /// Check a session in the store (`--session ID`), or an evidence package offline (PACKAGE).
    Verify(cli::verify::Args),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        // The simulator runs its own GStreamer main loop, without the async runtime.
        Command::Simulate(opts) => cli::simulate::run(&opts),
        other => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")
            .and_then(|rt| {
                let result = rt.block_on(run(other));
                // A GStreamer graph wedged in teardown must not keep the process alive.
                rt.shutdown_timeout(std::time::Duration::from_secs(10));
                result
            }),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("witness: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::User(args) => cli::user::run(args).await,
        Command::StoreInit(args) => cli::store_init::run(args).await,
        Command::Token(args) => cli::token::run(args).await,
        Command::Serve(args) => cli::serve::run(args).await,
        Command::Export(args) => cli::export::run(args).await,
        Command::Demo(args) => cli::demo::run(args).await,
        Command::Verify(args) => cli::verify::run(args).await,
        Command::Keys(args) => cli::keys::run(args),
        Command::Simulate(_) => unreachable!("handled before the runtime starts"),
    }
}

//! `witness keys`: the server's signing keys with their fingerprints (what people pin), and
//! `witness keys rotate` (run with the server stopped).

use std::path::PathBuf;
use std::process::ExitCode;

use witness::config::Config;
use witness::ledger::keys;
use witness::ledger::manifest::{self, Signer};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Option<Action>,
    #[arg(long, global = true)]
    config: Option<PathBuf>,
}

#[derive(clap::Subcommand)]
enum Action {
    /// List the current and retired keys: key id (= fingerprint), public key (the default).
    List,
    /// Retire the current key (its public key kept in data/keys/retired/, so what it signed
    /// still verifies) and create a new one. Stop the server first; it reads keys at start.
    Rotate,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = Config::load(args.config.as_deref())?;
    let dir = config.keys_dir();
    if let Some(Action::Rotate) = args.action {
        let (old, new) = manifest::rotate(&dir)?;
        println!("retired key {}", keys::grouped(&old));
        println!("current key {}", keys::grouped(&new));
        println!(
            "publish the new fingerprint; packages and sessions signed by the retired key stay valid"
        );
        return Ok(ExitCode::SUCCESS);
    }
    let signer = Signer::load_or_create(&dir)?;
    println!(
        "current  {}  {}",
        keys::grouped(&signer.key_id()),
        signer.public_key_hex()
    );
    for r in signer.retired() {
        println!("retired  {}  {}", keys::grouped(&r.key_id), r.public_key);
    }
    Ok(ExitCode::SUCCESS)
}

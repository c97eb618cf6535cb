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
    /// Print the SM2 public key in PEM (as data/keys/sm2-public.pem), for OpenSSL and other SM2
    /// tools: `openssl pkeyutl -verify -pubin -inkey sm2.pem -rawin -digest sm3 -pkeyopt distid:1234567812345678 …`.
    Sm2Pem,
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
    let signer = Signer::load(&dir, config.signing.sm2)?;
    if let Some(Action::Sm2Pem) = args.action {
        let Some(pem) = signer
            .views()
            .iter()
            .find(|k| k.algorithm == "sm2")
            .and_then(|k| manifest::sm2_pem_of(&k.public_key))
        else {
            eprintln!("no SM2 key: set [signing] sm2 = true in the config and start the server");
            return Ok(ExitCode::from(2));
        };
        print!("{pem}");
        return Ok(ExitCode::SUCCESS);
    }
    for k in signer.views() {
        let algorithm = if k.algorithm == "ed25519" {
            String::new()
        } else {
            format!("  {}", k.algorithm)
        };
        println!(
            "{}  {}  {}{algorithm}",
            k.status, k.fingerprint, k.public_key
        );
    }
    Ok(ExitCode::SUCCESS)
}

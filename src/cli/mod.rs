//! The subcommands of `witness`, one file each: their arguments, the library calls they make
//! and what they print. The rules themselves live in the library.

pub mod demo;
pub mod export;
pub mod keys;
pub mod serve;
pub mod simulate;
pub mod store_init;
pub mod token;
pub mod user;
pub mod verify;

use std::path::Path;

use witness::audit::Actor;
use witness::config::Config;
use witness::db::Pool;
use witness::sessions::Core;

/// The database alone, for account commands: no GStreamer, no store.
pub async fn open_db(config: Option<&Path>) -> anyhow::Result<(Config, Pool)> {
    let config = Config::load(config)?;
    let pool = witness::db::open(&config.database.url).await?;
    witness::audit::open(&pool).await?;
    Ok((config, pool))
}

/// The recording core (database, store, signing key) for a command that reads evidence: no
/// recorder started, no pipeline element loaded.
pub async fn open_core(config: Option<&Path>) -> anyhow::Result<Core> {
    let config = Config::load(config)?;
    witness::services::open_evidence_core(&config).await
}

/// Who acts, in the audit trail, when a command is run on this machine.
pub fn local_actor() -> Actor {
    Actor::local("cli")
}

//! `witness token`: issues an API token for an integration and prints its secret.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use witness::identity::{self, roles::Permission};

#[derive(clap::Args)]
pub struct Args {
    /// The user the token acts as.
    #[arg(long)]
    user: String,
    /// A name to recognise it by.
    #[arg(long)]
    name: String,
    /// Permissions (default: all of the user's role), e.g. --scope recording_control.
    #[arg(long = "scope")]
    scopes: Vec<String>,
    #[arg(long, default_value_t = 90)]
    days: i64,
    #[arg(long)]
    config: Option<PathBuf>,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (config, pool) = super::open_db(args.config.as_deref()).await?;
    let scopes = parse_scopes(&args.scopes)?;
    let (_, secret) = identity::issue_token(
        &pool,
        &args.user,
        &args.name,
        &scopes,
        args.days,
        config.identity.token_max_days,
        &super::local_actor(),
    )
    .await?;
    println!("{secret}");
    Ok(ExitCode::SUCCESS)
}

fn parse_scopes(scopes: &[String]) -> anyhow::Result<Vec<Permission>> {
    scopes
        .iter()
        .map(|p| Permission::parse(p).with_context(|| format!("scope {p:?} is not a permission")))
        .collect()
}

//! `witness store-init`: creates the S3 bucket of `[store]` with Object Lock and the default
//! retention the storage policies call for.

use std::path::PathBuf;
use std::process::ExitCode;

use witness::config::{Config, StoreConfig};
use witness::retention::policy::Policies;
use witness::retention::worm_sync;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    config: Option<PathBuf>,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = Config::load(args.config.as_deref())?;
    let StoreConfig::S3 { bucket, .. } = &config.store else {
        anyhow::bail!("[store] is a local folder: Object Lock needs an S3-compatible store");
    };
    let policies = Policies::load_or_shipped(
        &config.retention.policies_dir,
        &config.retention.jurisdiction,
    )?;
    let retention = worm_sync::bucket_default_retention(&policies);
    witness::worm::create_locked_bucket(&config.store, bucket, retention.days).await?;
    println!(
        "bucket {bucket} created with Object Lock, default COMPLIANCE retention {} days ({} months)",
        retention.days, retention.months
    );
    Ok(ExitCode::SUCCESS)
}

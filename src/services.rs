//! Wiring of `witness serve` and `demo`: opens database, store, templates and signing key,
//! resumes interrupted sessions and starts the background jobs (leases, audit checkpoints,
//! retention candidates, WORM sync, fixity). No business logic here, and no HTTP: `http::serve`
//! puts the router on top of what this returns.

use std::sync::Arc;

use anyhow::Context;

use crate::capture::credentials::CredentialKey;
use crate::capture::template::Templates;
use crate::config::Config;
use crate::disk::DiskWatch;
use crate::ledger::manifest::Signer;
use crate::retention::policy::Policies;
use crate::sessions::{Core, Parts};
use crate::{audit, db, store};

/// Opens everything the recording core needs, without starting any recorder.
pub async fn open_core(config: &Config) -> anyhow::Result<Core> {
    open(config, true).await
}

/// The core for a command that reads evidence and records nothing (export, verify): GStreamer
/// is not started and the templates' elements are not loaded to be checked (together a tenth of
/// a second, a sixth of exporting half a gigabyte).
pub async fn open_evidence_core(config: &Config) -> anyhow::Result<Core> {
    open(config, false).await
}

async fn open(config: &Config, recording: bool) -> anyhow::Result<Core> {
    if recording {
        gst::init().context("initialising GStreamer")?;
    }
    let pool = db::open(&config.database.url).await?;
    audit::open(&pool)
        .await
        .context("opening the audit trail")?;
    let store = store::open(&config.store)?;
    let templates = Templates::load_or_shipped(&config.recording.pipelines_dir)?;
    if recording {
        templates.check_elements()?;
    }
    let signer = Signer::load(&config.keys_dir(), config.signing.sm2)?;
    let credentials = CredentialKey::load_or_create(&config.keys_dir())?;
    // Before anything connects to a camera: URLs of older databases lose their user info.
    let moved = crate::capture::rooms::move_inline_credentials(&pool, &credentials)
        .await
        .context("moving camera credentials out of source URLs")?;
    if moved > 0 {
        tracing::info!(
            urls = moved,
            "camera credentials moved out of stored URLs and sealed"
        );
    }
    let policies = Policies::load_or_shipped(
        &config.retention.policies_dir,
        &config.retention.jurisdiction,
    )?;
    Ok(Core::new(Parts {
        pool,
        store,
        config: config.recording.clone(),
        templates,
        signer,
        credentials,
        policies: Arc::new(policies),
        catalogue: Arc::new(crate::catalogue::rooms::Catalogue::load_or_shipped(
            &config.catalogue.dir,
        )?),
        node_id: node_id(config)?,
        lease_ttl: std::time::Duration::from_secs_f64(config.cluster.lease_seconds),
        disk: Arc::new(DiskWatch::new(config)),
        workload: Arc::new(crate::workload::Workload::new(config.workload.clone())),
        timestamps: Arc::new(
            crate::ledger::tsa::Timestamps::from_config(&config.signing)
                .map_err(|e| anyhow::anyhow!("[signing] tsa_ca_file: {e}"))?,
        ),
    }))
}

/// The configured node name, or one made once and kept beside the data (so that a restarted
/// node recognises its own leases).
fn node_id(config: &Config) -> anyhow::Result<String> {
    if !config.cluster.node_id.is_empty() {
        return Ok(config.cluster.node_id.clone());
    }
    let path = config.data_dir.join("node-id");
    if let Ok(id) = std::fs::read_to_string(&path)
        && !id.trim().is_empty()
    {
        return Ok(id.trim().to_string());
    }
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let id = format!(
        "{}-{}",
        host.trim()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect::<String>(),
        &uuid::Uuid::now_v7().simple().to_string()[24..]
    )
    .trim_start_matches('-')
    .to_string();
    std::fs::create_dir_all(&config.data_dir)
        .and_then(|_| std::fs::write(&path, &id))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(id)
}

/// What the running server is made of, below HTTP.
pub struct Services {
    pub core: Arc<Core>,
    pub policies: Arc<crate::retention::policy::Policies>,
    pub fixity: Arc<crate::retention::fixity::FixityState>,
    pub fixity_bytes_per_second: f64,
    /// The store's configuration when it enforces retention itself (S3 Object Lock).
    pub worm: Option<Arc<crate::config::StoreConfig>>,
}

/// Opens the core, resumes what the last process left recording and starts the background jobs.
pub async fn start(config: &Config) -> anyhow::Result<Services> {
    let core = Arc::new(open_core(config).await?);
    // Export jobs live in memory: the derived files of the last process's jobs are orphans.
    let _ = std::fs::remove_dir_all(&config.recording.export_scratch_dir);
    core.resume_interrupted()
        .await
        .context("resuming interrupted sessions")?;
    // Leases: renew, take over the rooms of nodes that stopped renewing, stop on request.
    let cluster = core.clone();
    let every = std::time::Duration::from_secs_f64(config.cluster.lease_seconds / 3.0);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = cluster.cluster_tick().await {
                tracing::warn!(error = %e, "lease renewal / takeover round failed; next round soon");
            }
        }
    });
    audit::checkpoint::spawn_periodic(
        core.pool.clone(),
        core.signer.clone(),
        std::time::Duration::from_secs_f64(config.audit.checkpoint_minutes * 60.0),
    );
    crate::sessions::timestamps::spawn(core.clone());
    crate::bookings::scheduler::spawn(core.clone(), &config.bookings);
    crate::identity::bootstrap(&core.pool)
        .await
        .context("creating the first security administrator")?;
    crate::identity::login::spawn_audit_flush(core.pool.clone(), config.identity.clone());
    let policies = core.policies.clone();
    crate::retention::open(&core.pool, &policies)
        .await
        .context("applying the storage policies")?;
    crate::retention::candidates::spawn_daily(core.pool.clone(), policies.clone());
    let worm = match &config.store {
        crate::config::StoreConfig::S3 {
            object_lock: true, ..
        } => {
            let cfg = Arc::new(config.store.clone());
            crate::retention::worm_sync::spawn_periodic(
                core.pool.clone(),
                (*cfg).clone(),
                policies.clone(),
                std::time::Duration::from_secs_f64(config.retention.worm_sync_seconds),
            );
            Some(cfg)
        }
        crate::config::StoreConfig::Local { path } => {
            crate::retention::worm_sync::spawn_local_read_only(
                path.clone(),
                std::time::Duration::from_secs_f64(config.retention.worm_sync_seconds),
            );
            None
        }
        _ => None,
    };
    spawn_disk_watch(
        core.clone(),
        std::time::Duration::from_secs_f64(config.disk.check_seconds),
    );
    let fixity = Arc::new(crate::retention::fixity::FixityState::default());
    let fixity_rate = config.retention.fixity_mib_per_second * 1048576.0;
    crate::retention::fixity::spawn_periodic(
        core.pool.clone(),
        core.store.clone(),
        fixity.clone(),
        std::time::Duration::from_secs_f64(config.retention.fixity_interval_hours * 3600.0),
        fixity_rate,
    );
    Ok(Services {
        core,
        policies,
        fixity,
        fixity_bytes_per_second: fixity_rate,
        worm,
    })
}

/// Reads the disks every `every`; a change of state is an alarm in the log and an entry in the
/// audit trail (`storage_state`), and shows in room status and /metrics meanwhile.
fn spawn_disk_watch(core: Arc<Core>, every: std::time::Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(change) = core.disk.check() else {
                continue;
            };
            match change.to {
                crate::disk::DiskState::Ok => {
                    tracing::info!(from = change.from.as_str(), detail = %change.detail, "storage back to normal")
                }
                _ => {
                    tracing::error!(state = change.to.as_str(), detail = %change.detail, "storage low")
                }
            }
            let recorded = audit::Event::new(&audit::Actor::local("system"), "storage_state")
                .target(change.to.as_str())
                .reason(format!(
                    "{} → {}: {}",
                    change.from.as_str(),
                    change.to.as_str(),
                    change.detail
                ))
                .append(&core.pool)
                .await;
            if let Err(e) = recorded {
                tracing::warn!(error = %e, "storage state change not audited");
            }
        }
    });
}

//! Fixity: a scheduled re-hash of every stored object against its chain entry, rate-limited so
//! that recording never waits for it. Every run's report is kept (the database refuses to
//! change or remove one); a missing or altered object is logged as an error, counted in
//! `/metrics` and written to the audit trail.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::audit;
use crate::db::Pool;
use crate::ledger::chain::EntryKind;
use crate::ledger::index;
use crate::store::Store;
use crate::time::{now_us, rfc3339};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FixityFailure {
    pub session_id: String,
    pub source: String,
    pub seq: i64,
    pub object_key: String,
    pub problem: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct FixityReport {
    pub id: String,
    pub started_at: String,
    pub finished_at: String,
    pub objects: i64,
    pub bytes: i64,
    pub intact: bool,
    pub failures: Vec<FixityFailure>,
    pub requested_by: String,
}

/// Failures found by the last run, for `/metrics`.
#[derive(Debug, Default)]
pub struct FixityState {
    pub last_failures: AtomicU64,
    pub runs: AtomicU64,
    running: std::sync::atomic::AtomicBool,
}

/// Re-hashes everything at most `bytes_per_second`; records and returns the report. None when
/// a run is already under way.
pub async fn run(
    pool: &Pool,
    store: &Store,
    state: &FixityState,
    bytes_per_second: f64,
    requested_by: &audit::Actor,
) -> Result<Option<FixityReport>, sqlx::Error> {
    if state.running.swap(true, Ordering::SeqCst) {
        return Ok(None);
    }
    let result = run_once(pool, store, bytes_per_second, requested_by).await;
    state.running.store(false, Ordering::SeqCst);
    let (report, started_us) = result?;
    // The counters first: whoever sees the report must see them too.
    state.runs.fetch_add(1, Ordering::Relaxed);
    state
        .last_failures
        .store(report.failures.len() as u64, Ordering::Relaxed);
    record(pool, &report, started_us).await?;
    Ok(Some(report))
}

/// Starts a run now in the background, asked for by `requested_by`; its report appears among
/// `reports`, its outcome in the log.
pub fn start(
    pool: Pool,
    store: Store,
    state: Arc<FixityState>,
    bytes_per_second: f64,
    requested_by: audit::Actor,
) {
    tokio::spawn(async move {
        match run(&pool, &store, &state, bytes_per_second, &requested_by).await {
            Ok(Some(r)) => tracing::info!(report = %r.id, intact = r.intact, "fixity run finished"),
            Ok(None) => tracing::info!("fixity run already under way"),
            Err(e) => tracing::warn!(error = %e, "fixity run failed"),
        }
    });
}

async fn run_once(
    pool: &Pool,
    store: &Store,
    bytes_per_second: f64,
    requested_by: &audit::Actor,
) -> Result<(FixityReport, i64), sqlx::Error> {
    let started_us = now_us();
    let walk = check_all(pool, store, bytes_per_second).await?;
    let report = FixityReport {
        id: uuid::Uuid::now_v7().to_string(),
        started_at: rfc3339(started_us),
        finished_at: rfc3339(now_us()),
        objects: walk.objects,
        bytes: walk.bytes,
        intact: walk.failures.is_empty(),
        failures: walk.failures,
        requested_by: requested_by.name(),
    };
    Ok((report, started_us))
}

/// What one walk over the stored objects found.
struct Walk {
    objects: i64,
    bytes: i64,
    failures: Vec<FixityFailure>,
}

/// Re-hashes every stored object not lawfully destroyed against its chain entry, never faster
/// than `bytes_per_second`.
async fn check_all(pool: &Pool, store: &Store, bytes_per_second: f64) -> Result<Walk, sqlx::Error> {
    let started = Instant::now();
    let mut walk = Walk {
        objects: 0,
        bytes: 0,
        failures: Vec::new(),
    };
    let sessions: Vec<String> = sqlx::query("SELECT id FROM sessions ORDER BY started_at")
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| r.try_get("id"))
        .collect::<Result<_, _>>()?;
    for session_id in sessions {
        for rec in index::recordings(pool, &session_id).await? {
            let entries = index::entries(pool, &rec.id).await?;
            // Objects a tombstone accounts for were destroyed lawfully: not looked for.
            let destroyed = crate::ledger::chain::destroyed_entries(&entries).unwrap_or_default();
            for e in entries {
                if e.kind != EntryKind::Media || destroyed.contains(&e.seq) {
                    continue;
                }
                if let Err(problem) = crate::ledger::verify::check_object(store, &e).await {
                    tracing::error!(session = %session_id, source = %rec.source_name, seq = e.seq, key = %e.object_key, %problem, "fixity: stored object does not match its chain entry");
                    walk.failures.push(FixityFailure {
                        session_id: session_id.clone(),
                        source: rec.source_name.clone(),
                        seq: e.seq,
                        object_key: e.object_key.clone(),
                        problem,
                    });
                }
                walk.objects += 1;
                walk.bytes += e.bytes;
                // Rate limit: never ahead of bytes_per_second.
                let due = Duration::from_secs_f64(walk.bytes as f64 / bytes_per_second.max(1.0));
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
    Ok(walk)
}

/// Keeps a run's report and writes its outcome to the audit trail.
async fn record(pool: &Pool, report: &FixityReport, started_us: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO fixity_reports (id, started_at, finished_at, objects, bytes, failures, intact, requested_by) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)",
    )
    .bind(&report.id)
    .bind(started_us)
    .bind(now_us())
    .bind(report.objects)
    .bind(report.bytes)
    .bind(serde_json::to_string(&report.failures).unwrap_or_default())
    .bind(i64::from(report.intact))
    .bind(&report.requested_by)
    .execute(pool)
    .await?;
    // A run is the server's own work: whoever asked for it, it is recorded from `local`.
    audit::Event::new(&audit::Actor::local(&report.requested_by), "fixity_check")
        .target(&report.id)
        .reason(format!(
            "{} objects, {} bytes",
            report.objects, report.bytes
        ))
        .outcome(if report.intact {
            audit::Outcome::Result("intact".into())
        } else {
            audit::Outcome::Failed(format!(
                "{} objects missing or altered",
                report.failures.len()
            ))
        })
        .append(pool)
        .await?;
    Ok(())
}

pub async fn reports(pool: &Pool, limit: i64) -> Result<Vec<FixityReport>, sqlx::Error> {
    sqlx::query(
        "SELECT id, started_at, finished_at, objects, bytes, failures, intact, requested_by FROM fixity_reports ORDER BY started_at DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| {
        let failures: String = r.try_get("failures")?;
        Ok(FixityReport {
            id: r.try_get("id")?,
            started_at: rfc3339(r.try_get("started_at")?),
            finished_at: rfc3339(r.try_get("finished_at")?),
            objects: r.try_get("objects")?,
            bytes: r.try_get("bytes")?,
            intact: r.try_get::<i64, _>("intact")? != 0,
            failures: serde_json::from_str(&failures).unwrap_or_default(),
            requested_by: r.try_get("requested_by")?,
        })
    })
    .collect()
}

/// Runs every `every`, the first time one interval after start.
pub fn spawn_periodic(
    pool: Pool,
    store: Store,
    state: Arc<FixityState>,
    every: Duration,
    bytes_per_second: f64,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let system = audit::Actor::local("system");
            if let Err(e) = run(&pool, &store, &state, bytes_per_second, &system).await {
                tracing::warn!(error = %e, "fixity run failed; will retry at the next interval");
            }
        }
    });
}

//! What expiry makes *possible*, never what it does: the sessions whose retention has run out
//! and that no hold covers, with the rule and legal basis that let them go, and (for the
//! dry-run report) every object that a lawful destruction would remove. A daily job records the
//! count in the audit trail so that nobody has to remember to look.

use serde::Serialize;
use sqlx::Row;

use super::policy::Policies;
use super::{RetentionError, RetentionView};
use crate::audit;
use crate::db::Pool;
use crate::identity::caller::Scope;
use crate::ledger::chain::EntryKind;
use crate::ledger::index;
use crate::ledger::values::SessionState;
use crate::ledger::views::SessionSummary;

#[derive(Debug, Serialize)]
pub struct ObjectToRemove {
    pub source: String,
    pub seq: i64,
    pub object_key: String,
    pub bytes: i64,
    pub sha256: String,
}

#[derive(Debug, Serialize)]
pub struct Candidate {
    pub session: SessionSummary,
    pub retention: RetentionView,
    pub segments: usize,
    pub bytes: i64,
    /// Only in the dry-run report.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub objects: Option<Vec<ObjectToRemove>>,
}

/// Every stopped session that is expired and not held, oldest first.
pub async fn list(
    pool: &Pool,
    policies: &Policies,
    with_objects: bool,
) -> Result<Vec<Candidate>, sqlx::Error> {
    let ids: Vec<String> =
        sqlx::query("SELECT id FROM sessions WHERE state = $1 ORDER BY started_at")
            .bind(SessionState::Stopped)
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| r.try_get("id"))
            .collect::<Result<_, _>>()?;
    let mut out = Vec::new();
    for id in ids {
        let Some(s) = index::session(pool, &id).await? else {
            continue;
        };
        let retention = super::view(pool, policies, &s).await?;
        if !retention.disposable {
            continue;
        }
        let mut objects = Vec::new();
        for rec in index::recordings(pool, &s.id).await? {
            for e in index::entries(pool, &rec.id).await? {
                if e.kind == EntryKind::Media {
                    objects.push(ObjectToRemove {
                        source: rec.source_name.clone(),
                        seq: e.seq,
                        object_key: e.object_key,
                        bytes: e.bytes,
                        sha256: e.sha256,
                    });
                }
            }
        }
        out.push(Candidate {
            segments: objects.len(),
            bytes: objects.iter().map(|o| o.bytes).sum(),
            objects: with_objects.then_some(objects),
            session: SessionSummary::from(s),
            retention,
        });
    }
    Ok(out)
}

/// The candidates `scope` sees: a regulator those of their trading categories only.
pub async fn visible(
    pool: &Pool,
    policies: &Policies,
    scope: &Scope,
    with_objects: bool,
) -> Result<Vec<Candidate>, RetentionError> {
    Ok(list(pool, policies, with_objects)
        .await?
        .into_iter()
        .filter(|c| scope.sees(&c.session.category))
        .collect())
}

/// What a lawful destruction of every candidate would remove.
#[derive(Debug)]
pub struct DryRun {
    pub sessions: usize,
    pub objects: usize,
    pub bytes: i64,
    /// Each with the objects it would lose.
    pub candidates: Vec<Candidate>,
}

/// What a lawful destruction of every candidate `scope` sees would remove, object by object,
/// and why. Deletes nothing; the report itself is audited as `retention_dry_run`.
pub async fn dry_run(
    pool: &Pool,
    policies: &Policies,
    actor: &audit::Actor,
    scope: &Scope,
) -> Result<DryRun, RetentionError> {
    let candidates = visible(pool, policies, scope, true).await?;
    let report = DryRun {
        sessions: candidates.len(),
        objects: candidates.iter().map(|c| c.segments).sum(),
        bytes: candidates.iter().map(|c| c.bytes).sum(),
        candidates,
    };
    audit::Event::new(actor, "retention_dry_run")
        .target(&policies.version)
        .reason(format!(
            "{} sessions, {} objects, {} bytes",
            report.sessions, report.objects, report.bytes
        ))
        .append(pool)
        .await?;
    Ok(report)
}

/// Lists the candidates once a day (and at start) and writes what it found to the audit trail.
pub fn spawn_daily(pool: Pool, policies: std::sync::Arc<Policies>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(24 * 3600));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match list(&pool, &policies, false).await {
                Ok(found) => {
                    let bytes: i64 = found.iter().map(|c| c.bytes).sum();
                    let summary = format!(
                        "{} sessions ({} bytes) expired and unheld; nothing was deleted",
                        found.len(),
                        bytes
                    );
                    tracing::info!(candidates = found.len(), bytes, "retention review");
                    let _ =
                        audit::Event::new(&audit::Actor::local("system"), "retention_candidates")
                            .target(&policies.version)
                            .reason(summary)
                            .append(&pool)
                            .await;
                }
                Err(e) => tracing::warn!(error = %e, "retention review failed; next run tomorrow"),
            }
        }
    });
}

//! The audit trail shared by every module: who did what, when, from where, with what outcome.
//! Append-only: this file has an insert and reads, and nothing else.

use crate::db::{Pool, now_us};

/// One audited action.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AuditEntry {
    pub id: String,
    pub at_us: i64,
    /// Until identities exist, `anonymous`.
    pub actor: String,
    pub address: String,
    /// Stable snake_case, e.g. `replay_start`, `segment_download`.
    pub action: String,
    pub session_id: Option<String>,
    pub target: String,
    pub reason: String,
    /// `allowed` or `denied: …`
    pub outcome: String,
}

#[derive(Clone, Copy)]
pub struct NewEntry<'a> {
    pub actor: &'a str,
    pub address: &'a str,
    pub action: &'a str,
    pub session_id: Option<&'a str>,
    pub target: &'a str,
    pub reason: &'a str,
    pub outcome: &'a str,
}

pub async fn append(pool: &Pool, e: NewEntry<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO audit_log (id, at, actor, address, action, session_id, target, reason, outcome) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(now_us())
    .bind(e.actor)
    .bind(e.address)
    .bind(e.action)
    .bind(e.session_id)
    .bind(e.target)
    .bind(crate::recording::chain::one_line(e.reason))
    .bind(e.outcome)
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn for_session(pool: &Pool, session_id: &str) -> Result<Vec<AuditEntry>, sqlx::Error> {
    use sqlx::Row;
    sqlx::query(
        "SELECT id, at, actor, address, action, session_id, target, reason, outcome FROM audit_log WHERE session_id = $1 ORDER BY at, id",
    )
    .bind(session_id)
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| {
        Ok(AuditEntry {
            id: r.try_get("id")?,
            at_us: r.try_get("at")?,
            actor: r.try_get("actor")?,
            address: r.try_get("address")?,
            action: r.try_get("action")?,
            session_id: r.try_get("session_id")?,
            target: r.try_get("target")?,
            reason: r.try_get("reason")?,
            outcome: r.try_get("outcome")?,
        })
    })
    .collect()
}

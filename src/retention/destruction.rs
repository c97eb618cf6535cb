//! Lawful destruction: a proposal carrying its appraisal record (鉴定) for sessions that are
//! expired and not held, approval by two people other than the proposer, then execution:
//! every object deleted, a permanent register entry for each (what, hash, rule and basis,
//! approvers, time), and a tombstone appended to each chain, so that verification tells
//! lawful destruction from tampering. Nothing is destroyed by expiry alone.

use serde::Serialize;
use sqlx::Row;

use super::policy::Policies;
use crate::audit::Actor;
use crate::config::StoreConfig;
use crate::db::{Pool, now_us, rfc3339};
use crate::ledger::chain::{self, Entry, EntryKind};
use crate::ledger::index;
use crate::ledger::values::SessionState;
use crate::store::Store;

#[derive(Debug, thiserror::Error)]
pub enum DestructionError {
    #[error("{0}")]
    Refused(&'static str, String),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    #[error("object store: {0}")]
    Store(String),
}

impl DestructionError {
    fn refused(code: &'static str, message: impl Into<String>) -> Self {
        DestructionError::Refused(code, message.into())
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Approval {
    pub approver: String,
    pub role: String,
    pub decision: String,
    pub reason: String,
    pub at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Request {
    pub id: String,
    pub session_ids: Vec<String>,
    pub appraisal_committee: String,
    pub appraisal_conclusion: String,
    pub appraisal_reference: String,
    pub proposed_by: String,
    pub proposed_at: String,
    pub state: String,
    pub approvals: Vec<Approval>,
    pub executed_by: Option<String>,
    pub executed_at: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RegisterEntry {
    pub id: String,
    pub request_id: String,
    pub session_id: String,
    pub project_code: String,
    pub source: String,
    pub seq: i64,
    pub object_key: String,
    pub sha256: String,
    pub bytes: i64,
    pub rule_id: String,
    pub policy_version: String,
    pub basis: String,
    pub approvers: String,
    pub executed_at: String,
}

async fn check_disposable(
    pool: &Pool,
    policies: &Policies,
    session_id: &str,
) -> Result<(), DestructionError> {
    let s = index::session(pool, session_id).await?.ok_or_else(|| {
        DestructionError::refused(
            "session_not_found",
            format!("session {session_id:?} not found"),
        )
    })?;
    if s.state != SessionState::Stopped {
        return Err(DestructionError::refused(
            "not_disposable",
            format!("session {session_id} is {}", s.state),
        ));
    }
    let r = super::view(pool, policies, &s).await?;
    if !r.holds.is_empty() {
        return Err(DestructionError::refused(
            "not_disposable",
            format!(
                "session {session_id} is under a legal hold ({})",
                r.holds[0].reference
            ),
        ));
    }
    if r.state != "expired" {
        return Err(DestructionError::refused(
            "not_disposable",
            format!(
                "session {session_id} is {} (retain until {}) under rule {}",
                r.state,
                r.retain_until.as_deref().unwrap_or("its clock starts"),
                r.rule.id
            ),
        ));
    }
    Ok(())
}

pub struct Appraisal<'a> {
    pub committee: &'a str,
    pub conclusion: &'a str,
    pub reference: &'a str,
}

pub async fn propose(
    pool: &Pool,
    policies: &Policies,
    session_ids: &[String],
    appraisal: Appraisal<'_>,
    by: &str,
) -> Result<Request, DestructionError> {
    if session_ids.is_empty() || session_ids.len() > 1000 {
        return Err(DestructionError::refused(
            "invalid_field",
            "session_ids: 1 to 1000 sessions",
        ));
    }
    for (field, v) in [
        ("appraisal.committee", appraisal.committee),
        ("appraisal.conclusion", appraisal.conclusion),
        ("appraisal.reference", appraisal.reference),
    ] {
        if v.trim().is_empty() || v.chars().count() > 2000 {
            return Err(DestructionError::refused(
                "invalid_field",
                format!("{field}: the appraisal record (鉴定) is required, 1 to 2000 characters"),
            ));
        }
    }
    for id in session_ids {
        check_disposable(pool, policies, id).await?;
    }
    let id = uuid::Uuid::now_v7().to_string();
    sqlx::query(
        "INSERT INTO destruction_requests (id, session_ids, appraisal_committee, appraisal_conclusion, appraisal_reference, proposed_by, proposed_at, state) VALUES ($1,$2,$3,$4,$5,$6,$7,'proposed')",
    )
    .bind(&id)
    .bind(serde_json::to_string(session_ids).unwrap_or_default())
    .bind(appraisal.committee)
    .bind(appraisal.conclusion)
    .bind(appraisal.reference)
    .bind(by)
    .bind(now_us())
    .execute(pool)
    .await?;
    Ok(get(pool, &id).await?.expect("just proposed"))
}

pub async fn get(pool: &Pool, id: &str) -> Result<Option<Request>, sqlx::Error> {
    let Some(r) = sqlx::query("SELECT * FROM destruction_requests WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await?
    else {
        return Ok(None);
    };
    let approvals = sqlx::query(
        "SELECT approver, role, decision, reason, at FROM destruction_approvals WHERE request_id = $1 ORDER BY at",
    )
    .bind(id)
    .fetch_all(pool)
    .await?
    .iter()
    .map(|a| {
        Ok(Approval {
            approver: a.try_get("approver")?,
            role: a.try_get("role")?,
            decision: a.try_get("decision")?,
            reason: a.try_get("reason")?,
            at: rfc3339(a.try_get("at")?),
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let sessions: String = r.try_get("session_ids")?;
    Ok(Some(Request {
        id: r.try_get("id")?,
        session_ids: serde_json::from_str(&sessions).unwrap_or_default(),
        appraisal_committee: r.try_get("appraisal_committee")?,
        appraisal_conclusion: r.try_get("appraisal_conclusion")?,
        appraisal_reference: r.try_get("appraisal_reference")?,
        proposed_by: r.try_get("proposed_by")?,
        proposed_at: rfc3339(r.try_get("proposed_at")?),
        state: r.try_get("state")?,
        approvals,
        executed_by: r.try_get("executed_by")?,
        executed_at: r.try_get::<Option<i64>, _>("executed_at")?.map(rfc3339),
    }))
}

pub async fn list(pool: &Pool) -> Result<Vec<Request>, sqlx::Error> {
    let ids: Vec<String> =
        sqlx::query_scalar("SELECT id FROM destruction_requests ORDER BY proposed_at DESC")
            .fetch_all(pool)
            .await?;
    let mut out = Vec::new();
    for id in ids {
        if let Some(r) = get(pool, &id).await? {
            out.push(r);
        }
    }
    Ok(out)
}

/// An approval or a rejection by someone other than the proposer; two approvals by two
/// different people approve the request, one rejection rejects it.
pub async fn decide(
    pool: &Pool,
    id: &str,
    approve: bool,
    reason: &str,
    by: &str,
    role: &str,
) -> Result<Request, DestructionError> {
    let req = get(pool, id).await?.ok_or_else(|| {
        DestructionError::refused(
            "destruction_not_found",
            format!("destruction request {id:?} not found"),
        )
    })?;
    if req.state != "proposed" {
        return Err(DestructionError::refused(
            "destruction_decided",
            format!("request {id} is {}", req.state),
        ));
    }
    if Actor::parse(&req.proposed_by).is_same_person(&Actor::parse(by)) {
        return Err(DestructionError::refused(
            "same_person",
            "the proposer cannot approve their own proposal",
        ));
    }
    if req
        .approvals
        .iter()
        .any(|a| Actor::parse(&a.approver).is_same_person(&Actor::parse(by)))
    {
        return Err(DestructionError::refused(
            "same_person",
            "each approver decides once; a second approval needs a second person",
        ));
    }
    if reason.trim().is_empty() || reason.chars().count() > 2000 {
        return Err(DestructionError::refused(
            "invalid_field",
            "reason: 1 to 2000 characters",
        ));
    }
    sqlx::query(
        "INSERT INTO destruction_approvals (request_id, approver, role, decision, reason, at) VALUES ($1,$2,$3,$4,$5,$6)",
    )
    .bind(id)
    .bind(by)
    .bind(role)
    .bind(if approve { "approve" } else { "reject" })
    .bind(reason)
    .bind(now_us())
    .execute(pool)
    .await?;
    let approvals = req
        .approvals
        .iter()
        .filter(|a| a.decision == "approve")
        .count()
        + usize::from(approve);
    let state = if !approve {
        Some("rejected")
    } else if approvals >= 2 {
        Some("approved")
    } else {
        None
    };
    if let Some(state) = state {
        sqlx::query(
            "UPDATE destruction_requests SET state = $1 WHERE id = $2 AND state = 'proposed'",
        )
        .bind(state)
        .bind(id)
        .execute(pool)
        .await?;
    }
    Ok(get(pool, id).await?.expect("exists"))
}

/// Carries out an approved request: for each session, still expired and not held, every media
/// object is deleted and registered, and a tombstone closes each chain. Returns the register
/// entries written.
pub async fn execute(
    pool: &Pool,
    store: &Store,
    worm: Option<&StoreConfig>,
    policies: &Policies,
    id: &str,
    by: &str,
) -> Result<Vec<RegisterEntry>, DestructionError> {
    let req = get(pool, id).await?.ok_or_else(|| {
        DestructionError::refused(
            "destruction_not_found",
            format!("destruction request {id:?} not found"),
        )
    })?;
    if req.state != "approved" {
        return Err(DestructionError::refused(
            "destruction_not_approved",
            format!(
                "request {id} is {}: it needs two approvals first",
                req.state
            ),
        ));
    }
    // A hold placed since the approval wins. Sessions a previous, interrupted run finished
    // are skipped (the run is being retried after the store refused something).
    let mut pending = Vec::new();
    for s in &req.session_ids {
        if index::session(pool, s)
            .await?
            .is_some_and(|x| x.state == SessionState::Destroyed)
        {
            continue;
        }
        check_disposable(pool, policies, s).await?;
        pending.push(s.clone());
    }
    let claimed = sqlx::query(
        "UPDATE destruction_requests SET state = 'executed', executed_by = $1, executed_at = $2 WHERE id = $3 AND state = 'approved'",
    )
    .bind(by)
    .bind(now_us())
    .bind(id)
    .execute(pool)
    .await?;
    if claimed.rows_affected() != 1 {
        return Err(DestructionError::refused(
            "destruction_decided",
            format!("request {id} is being executed already"),
        ));
    }
    let approvers: Vec<String> = req
        .approvals
        .iter()
        .filter(|a| a.decision == "approve")
        .map(|a| a.approver.clone())
        .collect();
    let mut register = Vec::new();
    for session_id in &pending {
        let s = index::session(pool, session_id)
            .await?
            .expect("checked above");
        let r = super::view(pool, policies, &s).await?;
        let basis = format!("{} {}", r.rule.basis.law, r.rule.basis.article);
        for rec in index::recordings(pool, &s.id).await? {
            let entries = index::entries(pool, &rec.id).await?;
            let already = chain::destroyed_entries(&entries).unwrap_or_default();
            let doomed: Vec<&Entry> = entries
                .iter()
                .filter(|e| e.kind == EntryKind::Media && !already.contains(&e.seq))
                .collect();
            if doomed.is_empty() {
                continue;
            }
            let mut gone: Vec<&Entry> = Vec::new();
            let mut failure = None;
            for e in &doomed {
                if let Err(why) = remove(store, worm, pool, &s.id, e).await {
                    failure = Some(why);
                    break;
                }
                gone.push(e);
                let entry = RegisterEntry {
                    id: uuid::Uuid::now_v7().to_string(),
                    request_id: id.into(),
                    session_id: s.id.clone(),
                    project_code: s.project_code.clone(),
                    source: rec.source_name.clone(),
                    seq: e.seq,
                    object_key: e.object_key.clone(),
                    sha256: e.sha256.clone(),
                    bytes: e.bytes,
                    rule_id: r.rule.id.clone(),
                    policy_version: r.current_policy_version.clone(),
                    basis: basis.clone(),
                    approvers: approvers.join(", "),
                    executed_at: rfc3339(now_us()),
                };
                sqlx::query(
                    "INSERT INTO destruction_register (id, request_id, session_id, project_code, recording_id, source, seq, object_key, sha256, bytes, rule_id, policy_version, basis, approvers, executed_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15)",
                )
                .bind(&entry.id)
                .bind(id)
                .bind(&s.id)
                .bind(&s.project_code)
                .bind(&rec.id)
                .bind(&rec.source_name)
                .bind(e.seq)
                .bind(&e.object_key)
                .bind(&e.sha256)
                .bind(e.bytes)
                .bind(&entry.rule_id)
                .bind(&entry.policy_version)
                .bind(&basis)
                .bind(&entry.approvers)
                .bind(now_us())
                .execute(pool)
                .await?;
                register.push(entry);
            }
            // What did go is closed by a tombstone even when the store refused the rest, so the
            // chain never shows a lawful deletion as a missing object; the rest can be retried.
            let doomed = gone;
            let last = entries.last().expect("a chain has its genesis");
            let seqs: Vec<i64> = doomed.iter().map(|e| e.seq).collect();
            let tombstone = Entry {
                recording_id: rec.id.clone(),
                seq: last.seq + 1,
                kind: EntryKind::Tombstone,
                object_key: String::new(),
                wall_start_us: now_us(),
                duration_us: 0,
                bytes: doomed.iter().map(|e| e.bytes).sum(),
                sha256: chain::tombstone_digest(&doomed),
                clock: "server".into(),
                detail: chain::tombstone_detail(&seqs, id, &r.rule.id, &approvers),
                prev_hash: last.entry_hash.clone(),
                entry_hash: String::new(),
            }
            .seal();
            if !doomed.is_empty() {
                index::insert_entry(pool, &tombstone).await?;
            }
            if let Some(why) = failure {
                sqlx::query("UPDATE destruction_requests SET state = 'approved', executed_by = NULL, executed_at = NULL WHERE id = $1")
                    .bind(id)
                    .execute(pool)
                    .await?;
                return Err(DestructionError::Store(why));
            }
        }
        index::set_session_state(pool, &s.id, SessionState::Destroyed, None, None).await?;
    }
    Ok(register)
}

/// Deletes one object: a versioned delete on Object Lock storage (which the server refuses while
/// the object is retained or held), a plain delete otherwise.
async fn remove(
    store: &Store,
    worm: Option<&StoreConfig>,
    pool: &Pool,
    session_id: &str,
    e: &Entry,
) -> Result<(), String> {
    match worm {
        Some(cfg) => {
            let version =
                super::worm_sync::version_of(pool, cfg, session_id, &e.object_key).await?;
            crate::worm::delete_version(cfg, &e.object_key, &version)
                .await
                .map_err(|err| err.to_string())
        }
        None => match store
            .delete(&object_store::path::Path::from(e.object_key.as_str()))
            .await
        {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(err) => Err(format!("{}: {err}", e.object_key)),
        },
    }
}

pub async fn register(
    pool: &Pool,
    session_id: Option<&str>,
) -> Result<Vec<RegisterEntry>, sqlx::Error> {
    sqlx::query(
        "SELECT * FROM destruction_register WHERE ($1 = '' OR session_id = $1) ORDER BY executed_at, session_id, source, seq",
    )
    .bind(session_id.unwrap_or(""))
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| {
        Ok(RegisterEntry {
            id: r.try_get("id")?,
            request_id: r.try_get("request_id")?,
            session_id: r.try_get("session_id")?,
            project_code: r.try_get("project_code")?,
            source: r.try_get("source")?,
            seq: r.try_get("seq")?,
            object_key: r.try_get("object_key")?,
            sha256: r.try_get("sha256")?,
            bytes: r.try_get("bytes")?,
            rule_id: r.try_get("rule_id")?,
            policy_version: r.try_get("policy_version")?,
            basis: r.try_get("basis")?,
            approvers: r.try_get("approvers")?,
            executed_at: rfc3339(r.try_get("executed_at")?),
        })
    })
    .collect()
}

//! Confidential replay takes two people. A regulator or discipline officer asks to play a
//! confidential (评标) session, with a reason; a different, independent regulator or discipline
//! officer who may see the session approves; the grant is then for that person and that session
//! until it expires (`[evidence] confidential_grant_hours`). Only then does `access::may_read`
//! let plays through (replay, segments, downloads, packages with derived MP4s), each viewing
//! still audited with its own reason. The session's metadata (listing, verification) needs no
//! grant. Every request, decision and refusal is audited, flagged, with the session.

use serde::Serialize;
use sqlx::Row;

use crate::audit::{self, Actor, Outcome};
use crate::db::Pool;
use crate::error::CoreError;
use crate::identity::caller::Caller;
use crate::identity::{duties, users};
use crate::ledger::index::{self, SessionRow};
use crate::time::{now_us, rfc3339};

crate::text_enum! {
    /// Where a request for confidential access is.
    pub enum GrantState as "state" {
        Requested = "requested",
        Approved = "approved",
        Rejected = "rejected",
    }
}

/// A request for confidential access, as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Grant {
    pub id: String,
    pub session_id: String,
    /// The person the grant is for.
    pub grantee: String,
    pub reason: String,
    pub requested_at: String,
    pub state: GrantState,
    pub decided_by: Option<String>,
    pub decided_at: Option<String>,
    /// Until when an approved grant lets its holder play the session.
    pub expires_at: Option<String>,
    /// Approved and not expired.
    pub active: bool,
}

const COLUMNS: &str =
    "id, session_id, grantee, reason, requested_at, state, decided_by, decided_at, expires_at";

fn from_row(r: &sqlx::any::AnyRow) -> Result<Grant, sqlx::Error> {
    let state: GrantState = r
        .try_get::<String, _>("state")?
        .parse()
        .map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    let expires: Option<i64> = r.try_get("expires_at")?;
    Ok(Grant {
        id: r.try_get("id")?,
        session_id: r.try_get("session_id")?,
        grantee: r.try_get("grantee")?,
        reason: r.try_get("reason")?,
        requested_at: rfc3339(r.try_get("requested_at")?),
        state,
        decided_by: r.try_get("decided_by")?,
        decided_at: r.try_get::<Option<i64>, _>("decided_at")?.map(rfc3339),
        expires_at: expires.map(rfc3339),
        active: state == GrantState::Approved && expires.is_some_and(|e| e > now_us()),
    })
}

async fn find(pool: &Pool, id: &str) -> Result<Grant, CoreError> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM confidential_grants WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?
    .as_ref()
    .map(from_row)
    .transpose()?
    .ok_or_else(|| CoreError::NotFound {
        what: "confidential access request",
        id: id.into(),
    })
}

/// Whether `person` holds an approved, unexpired grant to play `session_id`.
pub async fn active(pool: &Pool, person: &str, session_id: &str) -> Result<bool, sqlx::Error> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM confidential_grants WHERE grantee = $1 AND session_id = $2 AND state = 'approved' AND expires_at > $3",
    )
    .bind(person)
    .bind(session_id)
    .bind(now_us())
    .fetch_one(pool)
    .await?;
    Ok(n > 0)
}

/// The requests of sessions `caller` may see, waiting ones first, then the latest (at most 200).
pub async fn list(pool: &Pool, caller: &Caller) -> Result<Vec<Grant>, CoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM confidential_grants ORDER BY CASE WHEN state = 'requested' THEN 0 ELSE 1 END, requested_at DESC LIMIT 200"
    ))
    .fetch_all(pool)
    .await?;
    let mut out = Vec::new();
    for r in &rows {
        let g = from_row(r)?;
        if let Some(s) = index::session(pool, &g.session_id).await?
            && caller.sees_session(&s).is_ok()
        {
            out.push(g);
        }
    }
    Ok(out)
}

/// An audited refusal (`denied: <code>`, flagged, with the session), returned as `Forbidden`.
async fn refuse(
    pool: &Pool,
    by: &Actor,
    action: &str,
    session: &SessionRow,
    target: &str,
    code: &'static str,
    message: String,
) -> CoreError {
    if let Err(e) = audit::Event::new(by, action)
        .session(&session.id, &session.project_code)
        .target(target)
        .flagged(true)
        .outcome(Outcome::Denied(code.into()))
        .append(pool)
        .await
    {
        return e.into();
    }
    CoreError::forbidden(code, message)
}

/// `caller` asks to play confidential session `session_id`, for `reason`.
pub async fn request(
    pool: &Pool,
    caller: &Caller,
    by: &Actor,
    session_id: &str,
    reason: &str,
) -> Result<Grant, CoreError> {
    let session = index::existing_session(pool, session_id).await?;
    let reason = reason.trim();
    if reason.is_empty() || reason.chars().count() > 500 {
        return Err(CoreError::invalid(
            "reason_required",
            "confidential access needs a reason (1 to 500 characters); it is recorded",
        ));
    }
    if !session.confidential {
        return Err(CoreError::conflict(
            "not_confidential",
            format!(
                "session {} is not confidential: it is replayed without a grant",
                session.id
            ),
        ));
    }
    let action = "confidential_access_request";
    if let Err((code, message)) = caller.sees_session(&session) {
        return Err(refuse(pool, by, action, &session, &session.id, code, message).await);
    }
    if !caller.role.may_see_confidential() {
        return Err(refuse(
            pool,
            by,
            action,
            &session,
            &session.id,
            "confidential",
            "only regulators and discipline officers may play confidential sessions".into(),
        )
        .await);
    }
    let id = uuid::Uuid::now_v7().to_string();
    sqlx::query(
        "INSERT INTO confidential_grants (id, session_id, grantee, reason, requested_at, state) VALUES ($1,$2,$3,$4,$5,'requested')",
    )
    .bind(&id)
    .bind(&session.id)
    .bind(&by.person)
    .bind(reason)
    .bind(now_us())
    .execute(pool)
    .await?;
    audit::Event::new(by, action)
        .session(&session.id, &session.project_code)
        .target(&id)
        .reason(reason)
        .flagged(true)
        .outcome(Outcome::Result(format!(
            "requested for {}; waits for another regulator or discipline officer",
            by.person
        )))
        .append(pool)
        .await?;
    find(pool, &id).await
}

/// Approves request `id` for `grant_us` microseconds, by `caller`: refused (and audited) when
/// the caller is the requester, may not see the session, or is not independent of the requester
/// (`identity::duties`).
pub async fn approve(
    pool: &Pool,
    caller: &Caller,
    by: &Actor,
    id: &str,
    grant_us: i64,
) -> Result<Grant, CoreError> {
    let g = find(pool, id).await?;
    let session = index::existing_session(pool, &g.session_id).await?;
    let action = "confidential_access_approve";
    if g.state != GrantState::Requested {
        return Err(CoreError::conflict(
            "grant_decided",
            format!("confidential access request {id} is {}", g.state),
        ));
    }
    let refused = |code, message| refuse(pool, by, action, &session, id, code, message);
    if by.person == g.grantee {
        return Err(refused(
            "same_person",
            format!(
                "{} asked for this access; another regulator or discipline officer must approve it",
                g.grantee
            ),
        )
        .await);
    }
    if let Err((code, message)) = caller.sees_session(&session) {
        return Err(refused(code, message).await);
    }
    if !caller.role.may_see_confidential() {
        return Err(refused(
            "confidential",
            "only regulators and discipline officers approve confidential access".into(),
        )
        .await);
    }
    if let (Some(me), Some(them)) = (
        users::by_username(pool, &by.person).await?,
        users::by_username(pool, &g.grantee).await?,
    ) && let Err(why) = duties::independent(&me, &them)
    {
        return Err(refused(
            "not_independent",
            format!("the approver must be independent of the requester: {why}"),
        )
        .await);
    }
    let now = now_us();
    let expires = now + grant_us;
    let done = sqlx::query(
        "UPDATE confidential_grants SET state = 'approved', decided_by = $1, decided_at = $2, expires_at = $3 WHERE id = $4 AND state = 'requested'",
    )
    .bind(by.name())
    .bind(now)
    .bind(expires)
    .bind(id)
    .execute(pool)
    .await?;
    if done.rows_affected() != 1 {
        return Err(CoreError::conflict(
            "grant_decided",
            format!("confidential access request {id} was already decided"),
        ));
    }
    audit::Event::new(by, action)
        .session(&session.id, &session.project_code)
        .target(id)
        .reason(&g.reason)
        .flagged(true)
        .outcome(Outcome::Result(format!(
            "approved for {} until {}; requested by {}, approved by {}",
            g.grantee,
            rfc3339(expires),
            g.grantee,
            by.name()
        )))
        .append(pool)
        .await?;
    find(pool, id).await
}

/// Rejects (or, by its requester, withdraws) request `id`.
pub async fn reject(
    pool: &Pool,
    caller: &Caller,
    by: &Actor,
    id: &str,
) -> Result<Grant, CoreError> {
    let g = find(pool, id).await?;
    let session = index::existing_session(pool, &g.session_id).await?;
    let action = "confidential_access_reject";
    if let Err((code, message)) = caller.sees_session(&session) {
        return Err(refuse(pool, by, action, &session, id, code, message).await);
    }
    let done = sqlx::query(
        "UPDATE confidential_grants SET state = 'rejected', decided_by = $1, decided_at = $2 WHERE id = $3 AND state = 'requested'",
    )
    .bind(by.name())
    .bind(now_us())
    .bind(id)
    .execute(pool)
    .await?;
    if done.rows_affected() != 1 {
        return Err(CoreError::conflict(
            "grant_decided",
            format!("confidential access request {id} is {}", g.state),
        ));
    }
    audit::Event::new(by, action)
        .session(&session.id, &session.project_code)
        .target(id)
        .reason(&g.reason)
        .flagged(true)
        .outcome(Outcome::Result(format!(
            "rejected; requested by {}, rejected by {}",
            g.grantee,
            by.name()
        )))
        .append(pool)
        .await?;
    find(pool, id).await
}

//! Legal holds (complaints, investigations): on a project, a session, or a room's recordings
//! over a time range. A held record is never disposable, whatever its retention says. Placing
//! one checks what it covers against the caller's scope; release needs a reason and a different
//! person from the one who placed the hold. Both are audited here.

use serde::Serialize;
use sqlx::Row;

use super::error::text;
use super::project_code::ProjectCode;
use super::{RetentionError, scope};
use crate::audit::{self, Actor};
use crate::db::Pool;
use crate::identity::caller::Scope;
use crate::ledger::index::{self, SessionRow};
use crate::time::{now_us, rfc3339};

crate::text_enum! {
    /// What a hold covers.
    pub enum HoldScope as "scope" {
        /// Every session of a project.
        Project = "project",
        /// One session.
        Session = "session",
        /// A room's recordings that overlap a time range.
        Range = "range",
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Hold {
    pub id: String,
    pub scope: HoldScope,
    pub project_code: Option<String>,
    pub session_id: Option<String>,
    pub room_id: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub reason: String,
    pub authority: String,
    pub reference: String,
    pub placed_by: String,
    pub placed_at: String,
    pub released_by: Option<String>,
    pub released_at: Option<String>,
    pub release_reason: Option<String>,
}

/// A hold as asked for: what it covers, why, and on whose authority.
#[derive(Debug, Clone, Copy)]
pub struct HoldRequest<'a> {
    /// `project`, `session` or `range`, as given.
    pub scope: &'a str,
    pub project_code: Option<&'a str>,
    pub session_id: Option<&'a str>,
    pub room_id: Option<&'a str>,
    pub from_us: Option<i64>,
    pub to_us: Option<i64>,
    pub reason: &'a str,
    pub authority: &'a str,
    pub reference: &'a str,
}

/// A checked hold, ready to be stored.
pub(super) struct NewHold<'a> {
    pub scope: HoldScope,
    pub project_code: Option<&'a str>,
    pub session_id: Option<&'a str>,
    pub room_id: Option<&'a str>,
    pub from_us: Option<i64>,
    pub to_us: Option<i64>,
    pub reason: &'a str,
    pub authority: &'a str,
    pub reference: &'a str,
}

const COLUMNS: &str = "id, scope, project_code, session_id, room_id, from_us, to_us, reason, authority, reference, placed_by, placed_at, released_by, released_at, release_reason";

fn from_row(r: &sqlx::any::AnyRow) -> Result<Hold, sqlx::Error> {
    Ok(Hold {
        id: r.try_get("id")?,
        scope: r.try_get("scope")?,
        project_code: r.try_get("project_code")?,
        session_id: r.try_get("session_id")?,
        room_id: r.try_get("room_id")?,
        from: r.try_get::<Option<i64>, _>("from_us")?.map(rfc3339),
        to: r.try_get::<Option<i64>, _>("to_us")?.map(rfc3339),
        reason: r.try_get("reason")?,
        authority: r.try_get("authority")?,
        reference: r.try_get("reference")?,
        placed_by: r.try_get("placed_by")?,
        placed_at: rfc3339(r.try_get("placed_at")?),
        released_by: r.try_get("released_by")?,
        released_at: r.try_get::<Option<i64>, _>("released_at")?.map(rfc3339),
        release_reason: r.try_get("release_reason")?,
    })
}

/// Places a hold after checking it: its texts, then what it covers (a project or a session's
/// project that `scope` sees, or an existing room with `from` before `to`). Audited as
/// `hold_place`.
pub async fn place(
    pool: &Pool,
    actor: &Actor,
    scope: &Scope,
    req: HoldRequest<'_>,
) -> Result<Hold, RetentionError> {
    text("reason", req.reason, 2000)?;
    text("authority", req.authority, 200)?;
    text("reference", req.reference, 200)?;
    let kind: HoldScope = req
        .scope
        .parse()
        .map_err(|e: crate::db::UnknownValue| RetentionError::invalid(e.to_string()))?;
    let project = covered_project(pool, scope, kind, &req).await?;
    let hold = insert(
        pool,
        actor,
        NewHold {
            scope: kind,
            project_code: project.as_deref(),
            session_id: req.session_id,
            room_id: req.room_id,
            from_us: req.from_us,
            to_us: req.to_us,
            reason: req.reason,
            authority: req.authority,
            reference: req.reference,
        },
    )
    .await?;
    audit::Event::new(actor, "hold_place")
        .about(req.session_id, project.as_deref())
        .target(&hold.id)
        .reason(req.reason)
        .append(pool)
        .await?;
    Ok(hold)
}

/// Checks that what a hold of `kind` covers exists and that `scope` sees it; returns the project
/// the hold is recorded under (a session hold: the session's).
async fn covered_project(
    pool: &Pool,
    scope: &Scope,
    kind: HoldScope,
    req: &HoldRequest<'_>,
) -> Result<Option<String>, RetentionError> {
    let needs = |what: &str| RetentionError::invalid(format!("a {kind} hold needs {what}"));
    match kind {
        HoldScope::Project => {
            let code = ProjectCode::parse(req.project_code.ok_or_else(|| needs("project_code"))?)?;
            scope::check_project(pool, scope, code.as_str()).await?;
            Ok(Some(code.as_str().to_string()))
        }
        HoldScope::Session => {
            let id = req.session_id.ok_or_else(|| needs("session_id"))?;
            let session = index::existing_session(pool, id).await?;
            scope::check_project(pool, scope, &session.project_code).await?;
            Ok(Some(session.project_code))
        }
        HoldScope::Range => {
            let room = req.room_id.ok_or_else(|| needs("room_id"))?;
            crate::capture::rooms::get(pool, room).await?;
            match (req.from_us, req.to_us) {
                (Some(f), Some(t)) if f < t => Ok(req.project_code.map(Into::into)),
                _ => Err(needs("from before to")),
            }
        }
    }
}

/// Stores a checked hold, placed by `actor`.
pub(super) async fn insert(
    pool: &Pool,
    actor: &Actor,
    h: NewHold<'_>,
) -> Result<Hold, sqlx::Error> {
    let id = uuid::Uuid::now_v7().to_string();
    sqlx::query(&format!(
        "INSERT INTO holds ({COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,NULL,NULL,NULL)"
    ))
    .bind(&id)
    .bind(h.scope)
    .bind(h.project_code)
    .bind(h.session_id)
    .bind(h.room_id)
    .bind(h.from_us)
    .bind(h.to_us)
    .bind(h.reason)
    .bind(h.authority)
    .bind(h.reference)
    .bind(actor.name())
    .bind(now_us())
    .execute(pool)
    .await?;
    Ok(get(pool, &id).await?.expect("just placed"))
}

pub async fn get(pool: &Pool, id: &str) -> Result<Option<Hold>, sqlx::Error> {
    sqlx::query(&format!("SELECT {COLUMNS} FROM holds WHERE id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await?
        .as_ref()
        .map(from_row)
        .transpose()
}

/// Every hold, or only the active ones, in the order they were placed. A hold whose scope
/// cannot be read fails the listing (and so every destruction) rather than holding nothing.
pub async fn list(pool: &Pool, active_only: bool) -> Result<Vec<Hold>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM holds WHERE ($1 = 0 OR released_at IS NULL) ORDER BY placed_at"
    ))
    .bind(i64::from(active_only))
    .fetch_all(pool)
    .await?
    .iter()
    .map(from_row)
    .collect()
}

/// The holds `scope` sees: those on a project it sees; holds on no project (a room's range)
/// only when it sees everything.
pub async fn visible(
    pool: &Pool,
    scope: &Scope,
    active_only: bool,
) -> Result<Vec<Hold>, RetentionError> {
    let mut visible = Vec::new();
    for h in list(pool, active_only).await? {
        let seen = match &h.project_code {
            Some(p) => scope::sees_project(pool, scope, p).await?,
            None => *scope == Scope::All,
        };
        if seen {
            visible.push(h);
        }
    }
    Ok(visible)
}

/// The active holds recorded under a project (of any scope).
pub async fn on_project(pool: &Pool, project_code: &str) -> Result<Vec<Hold>, sqlx::Error> {
    Ok(list(pool, true)
        .await?
        .into_iter()
        .filter(|h| h.project_code.as_deref() == Some(project_code))
        .collect())
}

/// Releases a hold, for a reason, by a different person from the one who placed it (however
/// either signed in); refused as `hold_released` when someone was quicker. Audited as
/// `hold_release`; returns the hold as released.
pub async fn release(
    pool: &Pool,
    actor: &Actor,
    id: &str,
    reason: &str,
) -> Result<Hold, RetentionError> {
    text("reason", reason, 2000)?;
    let hold = get(pool, id).await?.ok_or_else(|| {
        RetentionError::not_found("hold_not_found", format!("hold {id:?} not found"))
    })?;
    if Actor::parse(&hold.placed_by).is_same_person(actor) {
        return Err(RetentionError::conflict(
            "same_person",
            "a hold is released by a different person from the one who placed it",
        ));
    }
    if !mark_released(pool, id, &actor.name(), reason).await? {
        return Err(RetentionError::conflict(
            "hold_released",
            format!("hold {id} is already released"),
        ));
    }
    audit::Event::new(actor, "hold_release")
        .about(hold.session_id.as_deref(), hold.project_code.as_deref())
        .target(id)
        .reason(reason)
        .append(pool)
        .await?;
    Ok(get(pool, id).await?.expect("exists"))
}

/// Marks a hold released; false when it was already released.
async fn mark_released(pool: &Pool, id: &str, by: &str, reason: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE holds SET released_by = $1, released_at = $2, release_reason = $3 WHERE id = $4 AND released_at IS NULL",
    )
    .bind(by)
    .bind(now_us())
    .bind(reason)
    .bind(id)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The active holds that cover a session: on its project, on itself, or on its room over a
/// range that overlaps it.
pub async fn active_for_session(pool: &Pool, s: &SessionRow) -> Result<Vec<Hold>, sqlx::Error> {
    let end = s.stopped_at_us.unwrap_or(i64::MAX);
    Ok(list(pool, true)
        .await?
        .into_iter()
        .filter(|h| match h.scope {
            HoldScope::Project => h.project_code.as_deref() == Some(&s.project_code),
            HoldScope::Session => h.session_id.as_deref() == Some(&s.id),
            HoldScope::Range => {
                let t = |v: &Option<String>| {
                    v.as_deref()
                        .and_then(|x| crate::time::parse_rfc3339(x).ok())
                };
                h.room_id.as_deref() == Some(&s.room_id)
                    && t(&h.from).is_none_or(|f| f < end)
                    && t(&h.to).is_none_or(|to| to > s.started_at_us)
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_scope_is_refused_naming_the_valid_ones() {
        assert_eq!(
            "galaxy".parse::<HoldScope>().unwrap_err().to_string(),
            "scope \"galaxy\" is not valid, expected one of: project, session, range"
        );
        for s in HoldScope::ALL {
            assert_eq!(s.as_str().parse::<HoldScope>().unwrap(), *s);
        }
    }
}

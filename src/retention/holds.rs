//! Legal holds (complaints, investigations): on a project, a session, or a room's recordings
//! over a time range. A held record is never disposable, whatever its retention says. Release
//! needs a reason and a different person from the one who placed the hold.

use serde::Serialize;
use sqlx::Row;

use crate::db::{Pool, now_us, rfc3339};
use crate::ledger::index::SessionRow;

#[derive(Debug, Clone, Serialize)]
pub struct Hold {
    pub id: String,
    /// `project`, `session` or `range`.
    pub scope: String,
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

pub struct NewHold<'a> {
    pub scope: &'a str,
    pub project_code: Option<&'a str>,
    pub session_id: Option<&'a str>,
    pub room_id: Option<&'a str>,
    pub from_us: Option<i64>,
    pub to_us: Option<i64>,
    pub reason: &'a str,
    pub authority: &'a str,
    pub reference: &'a str,
    pub placed_by: &'a str,
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

pub async fn place(pool: &Pool, h: NewHold<'_>) -> Result<Hold, sqlx::Error> {
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
    .bind(h.placed_by)
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

/// Releases a hold; false when it was already released (by someone quicker).
pub async fn release(pool: &Pool, id: &str, by: &str, reason: &str) -> Result<bool, sqlx::Error> {
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
        .filter(|h| match h.scope.as_str() {
            "project" => h.project_code.as_deref() == Some(&s.project_code),
            "session" => h.session_id.as_deref() == Some(&s.id),
            "range" => {
                let t = |v: &Option<String>| {
                    v.as_deref()
                        .and_then(|x| chrono::DateTime::parse_from_rfc3339(x).ok())
                        .map(|d| d.timestamp_micros())
                };
                h.room_id.as_deref() == Some(&s.room_id)
                    && t(&h.from).is_none_or(|f| f < end)
                    && t(&h.to).is_none_or(|to| to > s.started_at_us)
            }
            _ => true, // an unknown scope holds everything rather than nothing
        })
        .collect())
}

//! SQL rows of sessions, recordings and chain entries. The only file of the recording core that
//! writes them; a media row is inserted only after its object is stored.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::db::Pool;
use crate::error::CoreError;
use crate::ledger::chain::{Entry, EntryKind};
use crate::ledger::values::{Category, SessionKind, SessionState};
use crate::time::now_us;

#[derive(Debug, Clone, serde::Serialize)]
pub struct SessionRow {
    pub id: String,
    pub room_id: String,
    pub room_name: String,
    pub room_kind: String,
    pub project_code: String,
    pub session_code: String,
    pub kind: SessionKind,
    pub note: String,
    pub state: SessionState,
    pub started_at_us: i64,
    pub stopped_at_us: Option<i64>,
    pub manifest_key: Option<String>,
    pub error: Option<String>,
    /// Trading category (交易类别): scopes which regulators see the session.
    pub category: Category,
    /// The person who started the session: its witness (见证人), who alone writes and signs its
    /// witness record. `None` for sessions started before it was recorded.
    pub started_by: Option<String>,
    /// Fixed at start: started in a confidential room (or typed as an evaluation). Who may see
    /// it, and how, is `evidence::access::may_read`.
    pub confidential: bool,
    /// The booking this session records, when a booking started it or it was started in one.
    pub booking_id: Option<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct RecordingRow {
    pub id: String,
    pub session_id: String,
    pub source_name: String,
    pub url: String,
    pub media: String,
    pub template: String,
    /// `auto`, `tcp`, `udp` or `multicast`, as configured when the session started.
    pub transport: String,
}

const SESSION_COLS: &str = "id, room_id, room_name, room_kind, project_code, session_code, kind, note, state, started_at, stopped_at, manifest_key, error, category, started_by, confidential, booking_id";

/// The session row, or `NotFound` naming it.
pub async fn existing_session(pool: &Pool, id: &str) -> Result<SessionRow, CoreError> {
    session(pool, id).await?.ok_or_else(|| CoreError::NotFound {
        what: "session",
        id: id.into(),
    })
}

fn session_from(r: &AnyRow) -> Result<SessionRow, sqlx::Error> {
    Ok(SessionRow {
        id: r.try_get("id")?,
        room_id: r.try_get("room_id")?,
        room_name: r.try_get("room_name")?,
        room_kind: r.try_get("room_kind")?,
        project_code: r.try_get("project_code")?,
        session_code: r.try_get("session_code")?,
        kind: r.try_get("kind")?,
        note: r.try_get("note")?,
        state: r.try_get("state")?,
        started_at_us: r.try_get("started_at")?,
        stopped_at_us: r.try_get("stopped_at")?,
        manifest_key: r.try_get("manifest_key")?,
        error: r.try_get("error")?,
        category: r.try_get("category")?,
        started_by: r.try_get("started_by")?,
        confidential: r.try_get::<i64, _>("confidential")? != 0,
        booking_id: r.try_get("booking_id")?,
    })
}

fn recording_from(r: &AnyRow) -> Result<RecordingRow, sqlx::Error> {
    Ok(RecordingRow {
        id: r.try_get("id")?,
        session_id: r.try_get("session_id")?,
        source_name: r.try_get("source_name")?,
        url: r.try_get("url")?,
        media: r.try_get("media")?,
        template: r.try_get("template")?,
        transport: r.try_get("transport")?,
    })
}

fn entry_from(r: &AnyRow) -> Result<Entry, sqlx::Error> {
    let kind: String = r.try_get("kind")?;
    Ok(Entry {
        recording_id: r.try_get("recording_id")?,
        seq: r.try_get("seq")?,
        // An unknown kind is kept visible as a gap so the link check fails on its hash.
        kind: EntryKind::parse(&kind).unwrap_or(EntryKind::Gap),
        object_key: r.try_get("object_key")?,
        wall_start_us: r.try_get("wall_start_us")?,
        duration_us: r.try_get("duration_us")?,
        bytes: r.try_get("bytes")?,
        sha256: r.try_get("sha256")?,
        clock: r.try_get("clock")?,
        detail: r.try_get("detail")?,
        prev_hash: r.try_get("prev_hash")?,
        entry_hash: r.try_get("entry_hash")?,
    })
}

/// Inserts a new live session, its recordings and their genesis entries in one transaction.
/// Fails with a unique violation when the room already has a live session.
pub async fn insert_session(
    pool: &Pool,
    s: &SessionRow,
    recordings: &[(RecordingRow, Entry)],
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query(&format!(
        "INSERT INTO sessions ({SESSION_COLS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17)"
    ))
    .bind(&s.id)
    .bind(&s.room_id)
    .bind(&s.room_name)
    .bind(&s.room_kind)
    .bind(&s.project_code)
    .bind(&s.session_code)
    .bind(s.kind)
    .bind(&s.note)
    .bind(s.state)
    .bind(s.started_at_us)
    .bind(s.stopped_at_us)
    .bind(&s.manifest_key)
    .bind(&s.error)
    .bind(&s.category)
    .bind(&s.started_by)
    .bind(i64::from(s.confidential))
    .bind(&s.booking_id)
    .execute(&mut *tx)
    .await?;
    for (r, genesis) in recordings {
        sqlx::query(
            "INSERT INTO recordings (id, session_id, source_name, url, media, template, transport) VALUES ($1,$2,$3,$4,$5,$6,$7)",
        )
        .bind(&r.id)
        .bind(&r.session_id)
        .bind(&r.source_name)
        .bind(&r.url)
        .bind(&r.media)
        .bind(&r.template)
        .bind(&r.transport)
        .execute(&mut *tx)
        .await?;
        insert_entry_in(&mut *tx, genesis).await?;
    }
    tx.commit().await
}

/// Inserts one chain entry through any executor (a pool, a transaction, a connection).
pub async fn insert_entry_in<'c, E>(ex: E, e: &Entry) -> Result<(), sqlx::Error>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    sqlx::query(
        "INSERT INTO chain_entries (recording_id, seq, kind, object_key, wall_start_us, duration_us, bytes, sha256, clock, detail, prev_hash, entry_hash, indexed_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13)",
    )
    .bind(&e.recording_id)
    .bind(e.seq)
    .bind(e.kind.as_str())
    .bind(&e.object_key)
    .bind(e.wall_start_us)
    .bind(e.duration_us)
    .bind(e.bytes)
    .bind(&e.sha256)
    .bind(&e.clock)
    .bind(&e.detail)
    .bind(&e.prev_hash)
    .bind(&e.entry_hash)
    .bind(now_us())
    .execute(ex)
    .await?;
    Ok(())
}

/// Whether an insert failed because the row's key is taken (a chain seq another writer wrote).
pub fn is_conflict(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.is_unique_violation())
}

/// Inserts one chain entry and, for a media segment whose SM3 was computed when it was sealed,
/// its digest, in one transaction: a media entry never stands without the digest it was
/// sealed with.
pub async fn insert_entry(pool: &Pool, e: &Entry, sm3: Option<&str>) -> Result<(), sqlx::Error> {
    let Some(sm3) = sm3 else {
        return insert_entry_in(pool, e).await;
    };
    let mut tx = pool.begin().await?;
    insert_entry_in(&mut *tx, e).await?;
    sqlx::query("INSERT INTO media_digests (recording_id, seq, sm3) VALUES ($1,$2,$3)")
        .bind(&e.recording_id)
        .bind(e.seq)
        .bind(sm3)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

/// The SM3 of a recording's media segments that have one (`media_digests`), by seq.
pub async fn media_sm3(
    pool: &Pool,
    recording_id: &str,
) -> Result<std::collections::HashMap<i64, String>, sqlx::Error> {
    let rows = sqlx::query("SELECT seq, sm3 FROM media_digests WHERE recording_id = $1")
        .bind(recording_id)
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get::<i64, _>(0)?, r.try_get::<String, _>(1)?)))
        .collect()
}

pub async fn session(pool: &Pool, id: &str) -> Result<Option<SessionRow>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {SESSION_COLS} FROM sessions WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?
    .as_ref()
    .map(session_from)
    .transpose()
}

pub async fn live_session_of_room(
    pool: &Pool,
    room_id: &str,
) -> Result<Option<SessionRow>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {SESSION_COLS} FROM sessions WHERE room_id = $1 AND state IN ($2, $3)"
    ))
    .bind(room_id)
    .bind(SessionState::Recording)
    .bind(SessionState::Stopping)
    .fetch_optional(pool)
    .await?
    .as_ref()
    .map(session_from)
    .transpose()
}

/// Sessions that were live when the process last ended.
pub async fn live_sessions(pool: &Pool) -> Result<Vec<SessionRow>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {SESSION_COLS} FROM sessions WHERE state IN ($1, $2) ORDER BY started_at"
    ))
    .bind(SessionState::Recording)
    .bind(SessionState::Stopping)
    .fetch_all(pool)
    .await?
    .iter()
    .map(session_from)
    .collect()
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct SessionFilter {
    pub project_code: Option<String>,
    pub room_id: Option<String>,
    pub state: Option<String>,
    #[serde(skip)]
    pub categories: Option<Vec<String>>,
}

pub async fn list_sessions(
    pool: &Pool,
    f: &SessionFilter,
    limit: i64,
) -> Result<Vec<SessionRow>, sqlx::Error> {
    // `categories`: when set, only these (a regulator's scope); bound one by one.
    let scope = f.categories.as_deref().unwrap_or_default();
    let in_scope = if f.categories.is_some() {
        let marks: Vec<String> = (0..scope.len()).map(|i| format!("${}", i + 5)).collect();
        if marks.is_empty() {
            " AND 1 = 0".to_string()
        } else {
            format!(" AND category IN ({})", marks.join(", "))
        }
    } else {
        String::new()
    };
    let sql = format!(
        "SELECT {SESSION_COLS} FROM sessions
         WHERE ($1 = '' OR project_code = $1) AND ($2 = '' OR room_id = $2) AND ($3 = '' OR state = $3){in_scope}
         ORDER BY started_at DESC LIMIT $4"
    );
    let mut q = sqlx::query(&sql)
        .bind(f.project_code.clone().unwrap_or_default())
        .bind(f.room_id.clone().unwrap_or_default())
        .bind(f.state.clone().unwrap_or_default())
        .bind(limit);
    for c in scope {
        q = q.bind(c.clone());
    }
    q.fetch_all(pool).await?.iter().map(session_from).collect()
}

pub async fn set_session_state(
    pool: &Pool,
    id: &str,
    state: SessionState,
    stopped_at_us: Option<i64>,
    error: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE sessions SET state = $2, stopped_at = COALESCE($3, stopped_at), error = COALESCE($4, error) WHERE id = $1",
    )
    .bind(id)
    .bind(state)
    .bind(stopped_at_us)
    .bind(error)
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn set_manifest_key(pool: &Pool, id: &str, key: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE sessions SET manifest_key = $2 WHERE id = $1")
        .bind(id)
        .bind(key)
        .execute(pool)
        .await?;
    Ok(())
}

pub async fn recordings(pool: &Pool, session_id: &str) -> Result<Vec<RecordingRow>, sqlx::Error> {
    sqlx::query(
        "SELECT id, session_id, source_name, url, media, template, transport FROM recordings WHERE session_id = $1 ORDER BY source_name",
    )
    .bind(session_id)
    .fetch_all(pool)
    .await?
    .iter()
    .map(recording_from)
    .collect()
}

/// One recording by id.
pub async fn recording(pool: &Pool, id: &str) -> Result<Option<RecordingRow>, sqlx::Error> {
    sqlx::query(
        "SELECT id, session_id, source_name, url, media, template, transport FROM recordings WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?
    .as_ref()
    .map(recording_from)
    .transpose()
}

const ENTRY_COLS: &str = "recording_id, seq, kind, object_key, wall_start_us, duration_us, bytes, sha256, clock, detail, prev_hash, entry_hash";

pub async fn entries(pool: &Pool, recording_id: &str) -> Result<Vec<Entry>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {ENTRY_COLS} FROM chain_entries WHERE recording_id = $1 ORDER BY seq"
    ))
    .bind(recording_id)
    .fetch_all(pool)
    .await?
    .iter()
    .map(entry_from)
    .collect()
}

/// A recording's entries other than media (genesis, gaps, tombstones), in order, and its media
/// totals (count, bytes, microseconds): a view of a chain without reading each of its segments.
pub async fn entries_but_media(
    pool: &Pool,
    recording_id: &str,
) -> Result<(Vec<Entry>, i64, i64, i64), sqlx::Error> {
    let others = sqlx::query(&format!(
        "SELECT {ENTRY_COLS} FROM chain_entries WHERE recording_id = $1 AND kind <> 'media' ORDER BY seq"
    ))
    .bind(recording_id)
    .fetch_all(pool)
    .await?
    .iter()
    .map(entry_from)
    .collect::<Result<Vec<_>, _>>()?;
    let (count, bytes, duration_us): (i64, i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), CAST(COALESCE(SUM(bytes), 0) AS BIGINT), CAST(COALESCE(SUM(duration_us), 0) AS BIGINT) FROM chain_entries WHERE recording_id = $1 AND kind = 'media'",
    )
    .bind(recording_id)
    .fetch_one(pool)
    .await?;
    Ok((others, count, bytes, duration_us))
}

/// One entry of a chain by its sequence number (the primary key): for reads of one segment,
/// which must not cost a read of the whole chain (an hour of 2 s segments is 1800 entries).
pub async fn entry(
    pool: &Pool,
    recording_id: &str,
    seq: i64,
) -> Result<Option<Entry>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {ENTRY_COLS} FROM chain_entries WHERE recording_id = $1 AND seq = $2"
    ))
    .bind(recording_id)
    .bind(seq)
    .fetch_optional(pool)
    .await?
    .as_ref()
    .map(entry_from)
    .transpose()
}

pub async fn head(pool: &Pool, recording_id: &str) -> Result<Option<Entry>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {ENTRY_COLS} FROM chain_entries WHERE recording_id = $1 ORDER BY seq DESC LIMIT 1"
    ))
    .bind(recording_id)
    .fetch_optional(pool)
    .await?
    .as_ref()
    .map(entry_from)
    .transpose()
}

/// Where a chain's time reaches: the latest end of its genesis, media and gap entries.
pub async fn chain_end(pool: &Pool, recording_id: &str) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT MAX(wall_start_us + duration_us) FROM chain_entries WHERE recording_id = $1 AND kind IN ('genesis', 'media', 'gap')",
    )
    .bind(recording_id)
    .fetch_one(pool)
    .await
}

/// Whether a media entry with these bytes is already in the chain (crash after index, before
/// the spool file was removed).
pub async fn has_media_hash(
    pool: &Pool,
    recording_id: &str,
    sha256: &str,
) -> Result<bool, sqlx::Error> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM chain_entries WHERE recording_id = $1 AND sha256 = $2 AND kind = 'media'",
    )
    .bind(recording_id)
    .bind(sha256)
    .fetch_one(pool)
    .await?;
    Ok(n > 0)
}

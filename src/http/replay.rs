//! Replay over HTTP: the HLS playlist per source of a session (`evidence::replay`), and the
//! stored segments served byte for byte from the object store. Opening a playlist is audited; evaluation-room sessions
//! (评标) need a recorded reason.

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::TryStreamExt;
use serde::Deserialize;

use crate::audit;
use crate::evidence::replay::hls_playlist;
use crate::http::access::CurrentActor;
use crate::http::{ApiError, ApiQuery, AppState, ClientAddr};
use crate::ledger::chain::{Entry, EntryKind};
use crate::ledger::index;
use crate::sessions::existing_session;
use crate::sessions::is_confidential;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/sessions/{id}/sources/{source}/index.m3u8", get(playlist))
        .route(
            "/sessions/{id}/sources/{source}/segments/{file}",
            get(segment),
        )
        .route("/sessions/{id}/audit", get(session_audit))
        .route(
            "/sessions/{id}/sources/{source}/download.mp4",
            get(download_mp4),
        )
}

/// The audit entries of one session, oldest first.
async fn session_audit(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::Json<Vec<audit::AuditEntry>>, ApiError> {
    let pool = &s.pool;
    existing_session(pool, &id).await?;
    Ok(axum::Json(
        audit::for_session(pool, &id).await.map_err(internal)?,
    ))
}

fn access_entry<'a>(
    actor: &'a (String, &'static str),
    address: &'a str,
    action: &'a str,
    session: &'a index::SessionRow,
    target: &'a str,
    reason: &'a str,
) -> audit::NewEntry<'a> {
    audit::NewEntry {
        actor: &actor.0,
        actor_role: actor.1,
        address,
        action,
        session_id: Some(&session.id),
        project_code: Some(&session.project_code),
        target,
        reason,
        outcome: "allowed",
        flagged: is_confidential(session),
    }
}

/// Confidential (评标) sessions are seen only with a recorded reason; a refusal is audited too.
async fn refuse_confidential_without_reason(
    pool: &crate::db::Pool,
    session: &index::SessionRow,
    entry: &audit::NewEntry<'_>,
) -> Result<(), ApiError> {
    if !is_confidential(session) || !entry.reason.trim().is_empty() {
        return Ok(());
    }
    let denied = audit::NewEntry {
        outcome: "denied: no reason given for a confidential session",
        ..*entry
    };
    audit::append(pool, denied).await.map_err(internal)?;
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "reason_required",
        format!(
            "session {} is a confidential {} session: {} needs ?reason=… (it is recorded)",
            session.id, session.kind, entry.action
        ),
    ))
}

fn check_reason_length(reason: &str) -> Result<(), ApiError> {
    if reason.chars().count() > 500 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "reason: at most 500 characters",
        ));
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayQuery {
    /// Why a confidential session is being replayed; recorded in the audit trail.
    reason: Option<String>,
}

async fn playlist(
    State(s): State<AppState>,
    Path((id, source)): Path<(String, String)>,
    ClientAddr(address): ClientAddr,
    actor: CurrentActor,
    ApiQuery(q): ApiQuery<ReplayQuery>,
) -> Result<Response, ApiError> {
    let who = actor.audit_names();
    let pool = &s.pool;
    let (session, rec) = find(pool, &id, &source).await?;
    let reason = q.reason.unwrap_or_default();
    let target = format!("{}/{}", session.id, rec.source_name);
    let entry = access_entry(&who, &address, "replay_start", &session, &target, &reason);
    check_reason_length(&reason)?;
    refuse_confidential_without_reason(pool, &session, &entry).await?;
    let entries = index::entries(pool, &rec.id).await.map_err(internal)?;
    if entries
        .iter()
        .any(|e| e.kind == EntryKind::Media && !e.object_key.ends_with(".ts"))
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_hls_compatible",
            format!(
                "recording {source:?} uses template {:?}, whose segments are not MPEG-TS",
                rec.template
            ),
        ));
    }
    audit::append(pool, entry).await.map_err(internal)?;
    let live = session.state != "stopped";
    let segment_query = if reason.is_empty() {
        String::new()
    } else {
        format!(
            "?reason={}",
            percent_encoding::utf8_percent_encode(&reason, percent_encoding::NON_ALPHANUMERIC)
        )
    };
    Ok((
        [
            (header::CONTENT_TYPE, "application/vnd.apple.mpegurl"),
            (
                header::CACHE_CONTROL,
                if live {
                    "no-cache"
                } else {
                    "private, max-age=60"
                },
            ),
        ],
        hls_playlist(&entries, live, &segment_query),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DownloadQuery {
    /// RFC 3339 wall-clock range; segments overlapping [from, to) are included.
    from: Option<String>,
    to: Option<String>,
    reason: Option<String>,
}

/// One playable MP4 of a source over a wall-clock range, remuxed (not transcoded) and streamed.
async fn download_mp4(
    State(s): State<AppState>,
    Path((id, source)): Path<(String, String)>,
    ClientAddr(address): ClientAddr,
    actor: CurrentActor,
    ApiQuery(q): ApiQuery<DownloadQuery>,
) -> Result<Response, ApiError> {
    let who = actor.audit_names();
    let pool = &s.pool;
    let (session, rec) = find(pool, &id, &source).await?;
    let time = |field: &str, v: &Option<String>| {
        crate::evidence::export::parse_wall_clock(field, v.as_deref())
            .map_err(|m| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", m))
    };
    let selection = crate::evidence::export::Selection {
        sources: vec![],
        from_us: time("from", &q.from)?,
        to_us: time("to", &q.to)?,
    };
    if let (Some(f), Some(t)) = (selection.from_us, selection.to_us)
        && f >= t
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "from must be before to",
        ));
    }
    let reason = q.reason.unwrap_or_default();
    check_reason_length(&reason)?;
    let target = format!(
        "{}/{} from {} to {}",
        session.id,
        rec.source_name,
        q.from.as_deref().unwrap_or("start"),
        q.to.as_deref().unwrap_or("end")
    );
    let entry = access_entry(&who, &address, "download", &session, &target, &reason);
    refuse_confidential_without_reason(pool, &session, &entry).await?;
    let segments: Vec<Entry> = index::entries(pool, &rec.id)
        .await
        .map_err(internal)?
        .into_iter()
        .filter(|e| e.kind == EntryKind::Media && selection.includes(&rec.source_name, e))
        .collect();
    if segments.is_empty() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_media_in_range",
            "no recorded segment overlaps the requested range",
        ));
    }
    if segments.iter().any(|e| !e.object_key.ends_with(".ts")) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_remuxable",
            format!("recording {source:?} is not MPEG-TS"),
        ));
    }
    audit::append(pool, entry).await.map_err(internal)?;
    let rx = crate::evidence::remux::start(&rec.media, segments, s.store.clone()).map_err(|e| {
        tracing::error!(error = %e, "remux pipeline");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; see the server log",
        )
    })?;
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Ok((
        [
            (header::CONTENT_TYPE, "video/mp4".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!(
                    "attachment; filename=\"{}-{}.mp4\"",
                    session.id, rec.source_name
                ),
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// One stored segment, byte for byte. Opening the playlist is the audited act; segments of a
/// confidential session still need the reason, so that knowing a segment's name is not enough.
async fn segment(
    State(s): State<AppState>,
    Path((id, source, file)): Path<(String, String, String)>,
    ApiQuery(q): ApiQuery<ReplayQuery>,
) -> Result<Response, ApiError> {
    let pool = &s.pool;
    let (session, rec) = find(pool, &id, &source).await?;
    if is_confidential(&session) && q.reason.as_deref().unwrap_or_default().trim().is_empty() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "reason_required",
            format!(
                "session {} is confidential: segments need the ?reason=… given for its playlist",
                session.id
            ),
        ));
    }
    stored_segment(&s, &session, &rec, &file).await
}

/// One stored segment of a recording, byte for byte, by its file name `{seq:08}.{ext}`.
pub async fn stored_segment(
    s: &AppState,
    session: &index::SessionRow,
    rec: &index::RecordingRow,
    file: &str,
) -> Result<Response, ApiError> {
    let pool = &s.pool;
    let source = &rec.source_name;
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "segment_not_found",
            format!("segment {file:?} of source {source:?} not found"),
        )
    };
    // Only `{seq:08}.{ext}`: fixed width, digits, nothing else reaches the store.
    let (seq, ext) = file.split_once('.').ok_or_else(not_found)?;
    if seq.len() != 8 || !seq.bytes().all(|b| b.is_ascii_digit()) {
        return Err(not_found());
    }
    let seq: i64 = seq.parse().map_err(|_| not_found())?;
    let entries = index::entries(pool, &rec.id).await.map_err(internal)?;
    let entry = entries
        .iter()
        .find(|e| {
            e.seq == seq && e.kind == EntryKind::Media && e.object_key.ends_with(&format!(".{ext}"))
        })
        .ok_or_else(not_found)?;
    let got = s
        .store
        .get(&object_store::path::Path::from(entry.object_key.as_str()))
        .await
        .map_err(|e| {
            tracing::error!(session = %session.id, key = %entry.object_key, error = %e, "stored segment unreadable");
            ApiError::new(StatusCode::BAD_GATEWAY, "segment_unavailable", "the stored segment cannot be read; run verify")
        })?;
    let content_type = match ext {
        "ts" => "video/mp2t",
        "mkv" => "video/x-matroska",
        _ => "application/octet-stream",
    };
    let body = Body::from_stream(got.into_stream().map_err(std::io::Error::other));
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (header::CONTENT_LENGTH, entry.bytes.to_string()),
            (
                header::CACHE_CONTROL,
                "private, max-age=31536000, immutable".to_string(),
            ),
        ],
        body,
    )
        .into_response())
}

pub async fn find(
    pool: &crate::db::Pool,
    id: &str,
    source: &str,
) -> Result<(index::SessionRow, index::RecordingRow), ApiError> {
    let session = existing_session(pool, id).await?;
    let rec = index::recordings(pool, &session.id)
        .await
        .map_err(internal)?
        .into_iter()
        .find(|r| r.source_name == source)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "source_not_found",
                format!("session {id} has no source {source:?}"),
            )
        })?;
    Ok((session, rec))
}

fn internal(e: sqlx::Error) -> ApiError {
    crate::error::CoreError::from(e).into()
}

//! Replay over HTTP: the HLS playlist per source of a session (`evidence::replay`), and the
//! stored segments served byte for byte from the object store. Every read goes through
//! `evidence::access`: the one rule of who may read (evaluation-room sessions, 评标, need a
//! recorded reason), and the audit of each viewing before any byte leaves.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use serde::Deserialize;

use crate::audit;
use crate::evidence::access::{MediaAccess, Read};
use crate::evidence::grants;
use crate::evidence::replay::hls_playlist;
use crate::http::access::CurrentActor;
use crate::http::access::audited_refusal;
use crate::http::{ApiError, ApiQuery, AppState, ClientAddr};
use crate::identity::caller::Caller;
use crate::ledger::chain::{Entry, EntryKind};
use crate::ledger::index;
use crate::ledger::index::existing_session;
use crate::ledger::values::SessionState;
use crate::workload::Work;

/// This resource's handlers, by the action of their rule in `policy::POLICY` (which alone
/// says their method, path and access).
pub(super) fn endpoint(action: &str, method: MethodFilter) -> Option<MethodRouter<AppState>> {
    Some(match action {
        "session_audit" => on(method, session_audit),
        "replay_start" => on(method, playlist),
        "segment" => on(method, segment),
        "download" => on(method, download_mp4),
        "confidential_access_request" => on(method, request_access),
        "confidential_access_list" => on(method, list_access),
        "confidential_access_approve" => on(method, approve_access),
        "confidential_access_reject" => on(method, reject_access),
        _ => return None,
    })
}

/// The audit entries of one session, oldest first.
async fn session_audit(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::Json<Vec<audit::AuditEntry>>, ApiError> {
    let pool = &s.pool;
    existing_session(pool, &id).await?;
    Ok(axum::Json(
        audit::for_session(pool, &id)
            .await
            .map_err(ApiError::internal)?,
    ))
}

pub(super) fn check_reason_length(reason: &str) -> Result<(), ApiError> {
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
    let pool = &s.pool;
    let (session, rec) = find(pool, &id, &source).await?;
    let reason = q.reason.unwrap_or_default();
    check_reason_length(&reason)?;
    let viewer = actor.actor(&address);
    let access = MediaAccess {
        actor: &viewer,
        caller: actor.0.as_ref(),
        read: Read::Replay,
        action: "replay_start",
        session: &session,
        source: &rec.source_name,
        target: format!("{}/{}", session.id, rec.source_name),
        reason: &reason,
        supervision: false,
    };
    access.check(pool).await?;
    let entries = index::entries(pool, &rec.id)
        .await
        .map_err(ApiError::internal)?;
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
    access.view(pool, s.viewing_idle_us).await?;
    let live = session.state != SessionState::Stopped;
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
    let pool = &s.pool;
    let (session, rec) = find(pool, &id, &source).await?;
    let selection =
        crate::evidence::export::Selection::parse(vec![], q.from.as_deref(), q.to.as_deref())
            .map_err(|m| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", m))?;
    let reason = q.reason.unwrap_or_default();
    check_reason_length(&reason)?;
    let viewer = actor.actor(&address);
    let access = MediaAccess {
        actor: &viewer,
        caller: actor.0.as_ref(),
        read: Read::Download,
        action: "download",
        session: &session,
        source: &rec.source_name,
        target: format!(
            "{}/{} from {} to {}",
            session.id,
            rec.source_name,
            q.from.as_deref().unwrap_or("start"),
            q.to.as_deref().unwrap_or("end")
        ),
        reason: &reason,
        supervision: false,
    };
    access.check(pool).await?;
    let segments: Vec<Entry> = index::entries(pool, &rec.id)
        .await
        .map_err(ApiError::internal)?
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
    // A remux re-reads the whole range: bounded per person and in total, held while it streams.
    let permit = s
        .sessions
        .workload
        .admit(Work::Remux, &viewer.person)
        .map_err(crate::error::CoreError::from)?;
    access.view(pool, s.viewing_idle_us).await?;
    let rx = crate::evidence::remux::start(&rec.media, segments, s.store.clone())
        .map_err(ApiError::internal)?;
    let stream = futures::stream::unfold((rx, permit), |(mut rx, permit)| async move {
        rx.recv().await.map(|item| (item, (rx, permit)))
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

/// One stored segment, byte for byte, once the rule allows it and a viewing covers it (the
/// playlist's, or one this read opens: knowing a segment's name is not a way around the audit).
async fn segment(
    State(s): State<AppState>,
    Path((id, source, file)): Path<(String, String, String)>,
    ClientAddr(address): ClientAddr,
    actor: CurrentActor,
    ApiQuery(q): ApiQuery<ReplayQuery>,
) -> Result<Response, ApiError> {
    let pool = &s.pool;
    let (session, rec) = find(pool, &id, &source).await?;
    let reason = q.reason.unwrap_or_default();
    check_reason_length(&reason)?;
    let seq = segment_seq(&rec, &file)?;
    let viewer = actor.actor(&address);
    let access = MediaAccess {
        actor: &viewer,
        caller: actor.0.as_ref(),
        read: Read::Replay,
        action: "replay_start",
        session: &session,
        source: &rec.source_name,
        target: format!("{}/{}/segments/{file}", session.id, rec.source_name),
        reason: &reason,
        supervision: false,
    };
    access.check(pool).await?;
    let entry = find_segment(pool, &rec, &file, seq).await?;
    access.view(pool, s.viewing_idle_us).await?;
    serve_segment(&s, &session, &entry).await
}

fn segment_not_found(rec: &index::RecordingRow, file: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "segment_not_found",
        format!("segment {file:?} of source {:?} not found", rec.source_name),
    )
}

/// The sequence number of a segment file name: only `{seq:08}.{ext}`, fixed width, digits,
/// nothing else reaches the store (or the audit trail).
pub fn segment_seq(rec: &index::RecordingRow, file: &str) -> Result<i64, ApiError> {
    let (seq, ext) = file
        .split_once('.')
        .ok_or_else(|| segment_not_found(rec, file))?;
    if seq.len() != 8
        || !seq.bytes().all(|b| b.is_ascii_digit())
        || ext.is_empty()
        || !ext.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return Err(segment_not_found(rec, file));
    }
    seq.parse().map_err(|_| segment_not_found(rec, file))
}

/// The media entry of a recording named by `file` (`{seq:08}.{ext}`, checked by `segment_seq`).
pub async fn find_segment(
    pool: &crate::db::Pool,
    rec: &index::RecordingRow,
    file: &str,
    seq: i64,
) -> Result<Entry, ApiError> {
    let ext = file.rsplit('.').next().unwrap_or_default();
    index::entry(pool, &rec.id, seq)
        .await
        .map_err(ApiError::internal)?
        .filter(|e| e.kind == EntryKind::Media && e.object_key.ends_with(&format!(".{ext}")))
        .ok_or_else(|| segment_not_found(rec, file))
}

/// The stored bytes of a media entry, streamed from the store. Call only once the read is
/// covered by an audit entry (`MediaAccess::view`).
pub async fn serve_segment(
    s: &AppState,
    session: &index::SessionRow,
    entry: &Entry,
) -> Result<Response, ApiError> {
    let ext = entry.object_key.rsplit('.').next().unwrap_or_default();
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
    let body = Body::from_stream(crate::store::object_stream(got));
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
        .map_err(ApiError::internal)?
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AccessRequest {
    /// Why the session is to be played; shown to the approver and recorded.
    #[serde(default)]
    reason: String,
}

/// Asks to play a confidential session (201, the request): a second regulator or discipline
/// officer approves it.
async fn request_access(
    State(s): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    ClientAddr(address): ClientAddr,
    Path(id): Path<String>,
    crate::http::ApiJson(req): crate::http::ApiJson<AccessRequest>,
) -> Response {
    match grants::request(&s.pool, &caller, &caller.actor(&address), &id, &req.reason).await {
        Ok(g) => (
            StatusCode::CREATED,
            axum::Extension(crate::http::access::Audited),
            axum::Json(g),
        )
            .into_response(),
        Err(e) => audited_refusal(e),
    }
}

async fn list_access(
    State(s): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
) -> Result<axum::Json<Vec<grants::Grant>>, ApiError> {
    Ok(axum::Json(grants::list(&s.pool, &caller).await?))
}

async fn approve_access(
    State(s): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    ClientAddr(address): ClientAddr,
    Path(id): Path<String>,
) -> Response {
    let by = caller.actor(&address);
    match grants::approve(&s.pool, &caller, &by, &id, s.confidential_grant_us).await {
        Ok(g) => (axum::Extension(crate::http::access::Audited), axum::Json(g)).into_response(),
        Err(e) => audited_refusal(e),
    }
}

async fn reject_access(
    State(s): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    ClientAddr(address): ClientAddr,
    Path(id): Path<String>,
) -> Response {
    match grants::reject(&s.pool, &caller, &caller.actor(&address), &id).await {
        Ok(g) => (axum::Extension(crate::http::access::Audited), axum::Json(g)).into_response(),
        Err(e) => audited_refusal(e),
    }
}

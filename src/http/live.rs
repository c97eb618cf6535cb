//! What the staff console watches: every room's state with per-source bitrate and last-segment
//! age (`GET /rooms/status`), and a live view of a room that is recording (HLS of the live
//! session, a few segments behind), opened by an audited `POST …/live` and served only while
//! that viewing is open (`evidence::access`). A confidential room is watched live only under
//! the centre's supervision policy, by regulators and discipline officers, with a reason.

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use axum::{Extension, Json};

use super::replay;
use crate::evidence::access::{MediaAccess, Read};
use crate::evidence::replay::hls_playlist;
use crate::http::access::{Audited, CurrentActor, audited_refusal};
use crate::http::{ApiError, ApiQuery, AppState, ClientAddr};
use crate::ledger::index;
use crate::sessions::status::{RoomStatus, recording_session};

/// This resource's handlers, by the action of their rule in `policy::POLICY` (which alone
/// says their method, path and access).
pub(super) fn endpoint(action: &str, method: MethodFilter) -> Option<MethodRouter<AppState>> {
    Some(match action {
        "rooms_status" => on(method, status),
        "live_view" => on(method, open_live_view),
        "live_playlist" => on(method, live_playlist),
        "live_segment" => on(method, live_segment),
        _ => return None,
    })
}

async fn status(
    State(s): State<AppState>,
    actor: CurrentActor,
) -> Result<Json<Vec<RoomStatus>>, ApiError> {
    Ok(Json(s.sessions.room_status(&actor.scope()).await?))
}

/// Opening a live view is the audited act (`evidence::access`): one entry, one viewing per
/// source. The playlists and segments that follow are served only while it is open.
async fn open_live_view(
    State(s): State<AppState>,
    Path(room_id): Path<String>,
    ClientAddr(address): ClientAddr,
    actor: CurrentActor,
    ApiQuery(q): ApiQuery<LiveQuery>,
) -> Result<Response, ApiError> {
    let reason = q.reason.unwrap_or_default();
    replay::check_reason_length(&reason)?;
    let suffix = reason_suffix(&reason);
    let session = recording_session(&s.pool, &room_id).await?;
    let recordings = index::recordings(&s.pool, &session.id)
        .await
        .map_err(ApiError::internal)?;
    let viewer = actor.actor(&address);
    let access = MediaAccess {
        actor: &viewer,
        caller: actor.0.as_ref(),
        read: Read::Live,
        action: "live_view",
        session: &session,
        source: "",
        target: room_id.clone(),
        reason: &reason,
        supervision: s.live_supervision,
    };
    if let Err(e) = access.check(&s.pool).await {
        return Ok(audited_refusal(e));
    }
    let names: Vec<&str> = recordings.iter().map(|r| r.source_name.as_str()).collect();
    access.open_live(&s.pool, &names, s.viewing_idle_us).await?;
    let sources: Vec<serde_json::Value> = recordings
        .iter()
        .map(|r| {
            serde_json::json!({
                "name": r.source_name,
                "media": r.media,
                "playlist": format!("/api/v1/rooms/{room_id}/live/{}/index.m3u8{suffix}", r.source_name),
            })
        })
        .collect();
    Ok((
        Extension(Audited),
        Json(serde_json::json!({ "session_id": session.id, "sources": sources })),
    )
        .into_response())
}

async fn live_playlist(
    State(s): State<AppState>,
    Path((room_id, source)): Path<(String, String)>,
    ClientAddr(address): ClientAddr,
    actor: CurrentActor,
    ApiQuery(q): ApiQuery<LiveQuery>,
) -> Result<Response, ApiError> {
    let reason = q.reason.unwrap_or_default();
    replay::check_reason_length(&reason)?;
    let session = recording_session(&s.pool, &room_id).await?;
    let (session, rec) = replay::find(&s.pool, &session.id, &source).await?;
    let viewer = actor.actor(&address);
    let access = live_read(
        &viewer,
        &actor,
        "live_playlist",
        (&session, &rec),
        &room_id,
        (&reason, s.live_supervision),
    );
    access.check(&s.pool).await?;
    let entries = index::entries(&s.pool, &rec.id)
        .await
        .map_err(ApiError::internal)?;
    if entries
        .iter()
        .any(|e| e.kind == crate::ledger::chain::EntryKind::Media && !e.object_key.ends_with(".ts"))
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_hls_compatible",
            format!("source {source:?} is not recorded as MPEG-TS; no live view"),
        ));
    }
    access.view(&s.pool, s.viewing_idle_us).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/vnd.apple.mpegurl"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        hls_playlist(&entries, true, &reason_suffix(&reason)),
    )
        .into_response())
}

async fn live_segment(
    State(s): State<AppState>,
    Path((room_id, source, file)): Path<(String, String, String)>,
    ClientAddr(address): ClientAddr,
    actor: CurrentActor,
    ApiQuery(q): ApiQuery<LiveQuery>,
) -> Result<Response, ApiError> {
    let reason = q.reason.unwrap_or_default();
    replay::check_reason_length(&reason)?;
    let session = recording_session(&s.pool, &room_id).await?;
    let (session, rec) = replay::find(&s.pool, &session.id, &source).await?;
    let seq = replay::segment_seq(&rec, &file)?;
    let viewer = actor.actor(&address);
    let access = live_read(
        &viewer,
        &actor,
        "live_segment",
        (&session, &rec),
        &room_id,
        (&reason, s.live_supervision),
    );
    access.check(&s.pool).await?;
    let entry = replay::find_segment(&s.pool, &rec, &file, seq).await?;
    access.view(&s.pool, s.viewing_idle_us).await?;
    replay::serve_segment(&s, &session, &entry).await
}

/// A read of a live view's playlist or segment, covered by the caller's open live view.
fn live_read<'a>(
    viewer: &'a crate::audit::Actor,
    actor: &'a CurrentActor,
    action: &'a str,
    (session, rec): (&'a index::SessionRow, &'a index::RecordingRow),
    room_id: &str,
    (reason, supervision): (&'a str, bool),
) -> MediaAccess<'a> {
    MediaAccess {
        actor: viewer,
        caller: actor.0.as_ref(),
        read: Read::Live,
        action,
        session,
        source: &rec.source_name,
        target: format!("{room_id}/{}", rec.source_name),
        reason,
        supervision,
    }
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct LiveQuery {
    /// Why a confidential room is supervised live; recorded in the audit trail, and required
    /// for it (`evidence::access::may_read`).
    reason: Option<String>,
}

/// `?reason=…` for the URLs of a live view opened with a reason, so every read carries it.
fn reason_suffix(reason: &str) -> String {
    if reason.is_empty() {
        return String::new();
    }
    format!(
        "?reason={}",
        percent_encoding::utf8_percent_encode(reason, percent_encoding::NON_ALPHANUMERIC)
    )
}

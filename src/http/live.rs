//! What the staff console watches: every room's state with per-source bitrate and last-segment
//! age (`GET /rooms/status`), and a live view of a room that is recording (HLS of the live
//! session, a few segments behind). Evaluation (评标) sessions have no live view at all.

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use axum::{Extension, Json};

use super::replay;
use crate::audit;
use crate::evidence::replay::hls_playlist;
use crate::http::access::{Audited, CurrentActor};
use crate::http::{ApiError, AppState, ClientAddr};
use crate::ledger::index;
use crate::sessions::status::{RoomStatus, watchable};

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

/// Opening a live view is the audited act; the playlist refreshes that follow are not.
async fn open_live_view(
    State(s): State<AppState>,
    Path(room_id): Path<String>,
    ClientAddr(address): ClientAddr,
    actor: CurrentActor,
) -> Result<Response, ApiError> {
    let session = watchable(&s.pool, &room_id, &actor.scope()).await?;
    let recordings = index::recordings(&s.pool, &session.id)
        .await
        .map_err(ApiError::internal)?;
    audit::Event::new(&actor.actor(&address), "live_view")
        .session(&session.id, &session.project_code)
        .target(&room_id)
        .append(&s.pool)
        .await
        .map_err(ApiError::internal)?;
    let sources: Vec<serde_json::Value> = recordings
        .iter()
        .map(|r| {
            serde_json::json!({
                "name": r.source_name,
                "media": r.media,
                "playlist": format!("/api/v1/rooms/{room_id}/live/{}/index.m3u8", r.source_name),
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
    actor: CurrentActor,
) -> Result<Response, ApiError> {
    let session = watchable(&s.pool, &room_id, &actor.scope()).await?;
    let (_, rec) = replay::find(&s.pool, &session.id, &source).await?;
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
    Ok((
        [
            (header::CONTENT_TYPE, "application/vnd.apple.mpegurl"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        hls_playlist(&entries, true, ""),
    )
        .into_response())
}

async fn live_segment(
    State(s): State<AppState>,
    Path((room_id, source, file)): Path<(String, String, String)>,
    actor: CurrentActor,
) -> Result<Response, ApiError> {
    let session = watchable(&s.pool, &room_id, &actor.scope()).await?;
    let (session, rec) = replay::find(&s.pool, &session.id, &source).await?;
    replay::stored_segment(&s, &session, &rec, &file).await
}

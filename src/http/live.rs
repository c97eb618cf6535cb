//! What the staff console watches: every room's state with per-source bitrate and last-segment
//! age (`GET /rooms/status`), and a live view of a room that is recording (HLS of the live
//! session, a few segments behind). Evaluation (评标) sessions have no live view at all.

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use axum::{Extension, Json};
use serde::Serialize;

use super::replay;
use crate::audit;
use crate::capture::rooms;
use crate::db::now_us;
use crate::evidence::replay::hls_playlist;
use crate::http::access::{Audited, CurrentActor};
use crate::http::{ApiError, AppState, ClientAddr};
use crate::ledger::index::{self, SessionRow};
use crate::ledger::views::SessionSummary;

/// This resource's handlers, by the action of their rule in `routes::POLICY` (which alone
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

#[derive(Debug, Serialize)]
pub struct SourceStatus {
    pub name: String,
    pub media: String,
    /// connecting, recording, reconnecting, stopped.
    pub state: String,
    pub bitrate_bps: u64,
    pub segments: u64,
    pub gaps: u64,
    pub reconnects: u64,
    pub last_segment_age_seconds: Option<f64>,
    /// Each elementary stream where it reaches the segment files: age of its last media and
    /// whether it has stalled (an alarm).
    pub streams: Vec<crate::metrics::StreamStatus>,
    /// Transport of the current attempt (`tcp`, `udp`, `multicast`); empty before the first.
    pub transport: String,
    /// Why the source is not recording now, in plain words; `None` while it records.
    pub problem: Option<String>,
    pub clock_corrections: u64,
}

#[derive(Debug, Serialize)]
pub struct RoomStatus {
    pub room_id: String,
    pub name: String,
    pub kind: String,
    pub location: String,
    /// idle, recording, reconnecting (a source is down), error.
    pub state: String,
    pub session: Option<SessionSummary>,
    pub elapsed_seconds: Option<f64>,
    pub live_view: bool,
    pub sources: Vec<SourceStatus>,
}

async fn status(
    State(s): State<AppState>,
    actor: CurrentActor,
) -> Result<Json<Vec<RoomStatus>>, ApiError> {
    let core = &s.sessions;
    let now = now_us();
    let mut out = Vec::new();
    for room in rooms::list(&core.pool).await? {
        // A regulator sees that a room is busy, but not the business of other categories.
        let live = index::live_session_of_room(&core.pool, &room.id)
            .await
            .map_err(ApiError::internal)?
            .filter(|sess| {
                actor
                    .0
                    .as_ref()
                    .is_none_or(|a| a.sees_category(sess.category))
            });
        let mut sources = Vec::new();
        if let Some(session) = &live {
            for rec in index::recordings(&core.pool, &session.id)
                .await
                .map_err(ApiError::internal)?
            {
                let stats = core.metrics.snapshot(&rec.id);
                let read = |f: fn(&crate::metrics::SourceStats) -> u64| {
                    stats.as_ref().map(|st| f(st)).unwrap_or(0)
                };
                let last = read(|st| {
                    st.last_segment_at_us
                        .load(std::sync::atomic::Ordering::Relaxed)
                });
                sources.push(SourceStatus {
                    name: rec.source_name.clone(),
                    media: rec.media.clone(),
                    state: stats
                        .as_ref()
                        .map(|st| st.state().as_str())
                        .unwrap_or("connecting")
                        .into(),
                    bitrate_bps: read(|st| {
                        st.bitrate_bps.load(std::sync::atomic::Ordering::Relaxed)
                    }),
                    segments: read(|st| st.segments.load(std::sync::atomic::Ordering::Relaxed)),
                    gaps: read(|st| st.gaps.load(std::sync::atomic::Ordering::Relaxed)),
                    reconnects: read(|st| st.reconnects.load(std::sync::atomic::Ordering::Relaxed)),
                    last_segment_age_seconds: (last > 0)
                        .then(|| (now - last as i64).max(0) as f64 / 1e6),
                    streams: stats.as_ref().map(|st| st.streams()).unwrap_or_default(),
                    transport: stats.as_ref().map(|st| st.transport()).unwrap_or_default(),
                    problem: stats.as_ref().and_then(|st| st.problem()),
                    clock_corrections: read(|st| {
                        st.clock_corrections
                            .load(std::sync::atomic::Ordering::Relaxed)
                    }),
                });
            }
        }
        let state = match &live {
            None => "idle",
            Some(sess) if sess.error.is_some() => "error",
            Some(_)
                if sources.iter().any(|x| {
                    x.state == "reconnecting" || x.streams.iter().any(|st| st.stalled)
                }) =>
            {
                "reconnecting"
            }
            Some(_) => "recording",
        };
        out.push(RoomStatus {
            room_id: room.id.clone(),
            name: room.name.clone(),
            kind: room.kind.clone(),
            location: room.location.clone(),
            state: state.into(),
            elapsed_seconds: live
                .as_ref()
                .map(|sess| (now - sess.started_at_us) as f64 / 1e6),
            live_view: live
                .as_ref()
                .is_some_and(|sess| !sess.kind.is_confidential()),
            session: live.map(SessionSummary::from),
            sources,
        });
    }
    Ok(Json(out))
}

/// The live session of a room, if this actor may watch it.
async fn watchable(
    s: &AppState,
    room_id: &str,
    actor: &CurrentActor,
) -> Result<SessionRow, ApiError> {
    rooms::get(&s.pool, room_id).await?; // 404 for a room that does not exist
    let session = index::live_session_of_room(&s.pool, room_id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::CONFLICT,
                "room_idle",
                format!("room {room_id} is not recording"),
            )
        })?;
    if session.kind.is_confidential() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "confidential",
            "evaluation (评标) sessions have no live view",
        ));
    }
    if let Some(a) = &actor.0
        && !a.sees_category(session.category)
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "out_of_scope",
            format!(
                "the session in room {room_id} is in trading category {:?}, outside this regulator's scope",
                session.category
            ),
        ));
    }
    Ok(session)
}

/// Opening a live view is the audited act; the playlist refreshes that follow are not.
async fn open_live_view(
    State(s): State<AppState>,
    Path(room_id): Path<String>,
    ClientAddr(address): ClientAddr,
    actor: CurrentActor,
) -> Result<Response, ApiError> {
    let session = watchable(&s, &room_id, &actor).await?;
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
    let session = watchable(&s, &room_id, &actor).await?;
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
    let session = watchable(&s, &room_id, &actor).await?;
    let (session, rec) = replay::find(&s.pool, &session.id, &source).await?;
    replay::stored_segment(&s, &session, &rec, &file).await
}

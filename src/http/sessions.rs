//! Sessions over HTTP: start and stop a room's recording, list and show sessions, verify one.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{MethodFilter, MethodRouter, on};
use axum::{Extension, Json};
use serde::Deserialize;

use crate::http::access::{Audited, CurrentActor};
use crate::http::{ApiError, ApiJson, ApiQuery, AppState, ClientAddr};
use crate::identity::roles::Role;
use crate::ledger::index::SessionFilter;
use crate::ledger::verify::Report;
use crate::ledger::views::SessionSummary;
use crate::sessions::StartRequest;

/// This resource's handlers, by the action of their rule in `policy::POLICY` (which alone
/// says their method, path and access).
pub(super) fn endpoint(action: &str, method: MethodFilter) -> Option<MethodRouter<AppState>> {
    Some(match action {
        "room_start" => on(method, start),
        "room_stop" => on(method, stop),
        "sessions_list" => on(method, list_sessions),
        "session_view" => on(method, get_session),
        "session_verify" => on(method, verify_session),
        _ => return None,
    })
}

async fn start(
    State(s): State<AppState>,
    Path(id): Path<String>,
    ClientAddr(address): ClientAddr,
    actor: CurrentActor,
    ApiJson(req): ApiJson<StartRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let view = crate::bookings::scheduler::start_room(
        &s.sessions,
        s.booking_timing,
        &id,
        req,
        &actor.actor(&address),
    )
    .await?;
    Ok((StatusCode::CREATED, Extension(Audited), Json(view)))
}

async fn stop(
    State(s): State<AppState>,
    Path(id): Path<String>,
    ClientAddr(address): ClientAddr,
    actor: CurrentActor,
) -> Result<impl IntoResponse, ApiError> {
    let view = s.sessions.stop(&id, &actor.actor(&address)).await?;
    Ok((Extension(Audited), Json(view)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    project_code: Option<String>,
    room_id: Option<String>,
    state: Option<String>,
    limit: Option<i64>,
}

async fn list_sessions(
    State(s): State<AppState>,
    actor: CurrentActor,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Vec<SessionSummary>>, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "limit: expected 1 to 1000",
        ));
    }
    let filter = SessionFilter {
        project_code: q.project_code,
        room_id: q.room_id,
        state: q.state,
        // A regulator lists only the trading categories in their scope.
        categories: actor
            .0
            .filter(|a| a.role == Role::Regulator)
            .map(|a| a.categories),
    };
    Ok(Json(s.sessions.list(&filter, limit).await?))
}

/// A session view with its retention, written out in one pass: an hour of four cameras is
/// some 7000 segments, which an intermediate JSON tree first copied into as many maps.
#[derive(serde::Serialize)]
struct WithRetention<R> {
    #[serde(flatten)]
    view: crate::ledger::views::SessionView,
    retention: R,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ViewQuery {
    /// `none`: each recording without its list of segments (counts, gaps and all else kept),
    /// for a client that needs the session before its thousands of segments (the replay page
    /// starts its players from it).
    segments: Option<String>,
}

/// The session with its segments and gaps, and its retention (rule, retain-until, holds).
async fn get_session(
    State(s): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ViewQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let without_segments = match q.segments.as_deref() {
        None | Some("all") => false,
        Some("none") => true,
        Some(other) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                format!("segments: expected \"all\" or \"none\", got {other:?}"),
            ));
        }
    };
    let view = if without_segments {
        s.sessions.view_without_segments(&id).await?
    } else {
        s.sessions.view(&id).await?
    };
    let row = crate::ledger::index::existing_session(&s.pool, &id).await?;
    let retention = crate::retention::view(&s.pool, &s.policies, &row)
        .await
        .map_err(|e| ApiError::from(crate::error::CoreError::from(e)))?;
    Ok(Json(WithRetention { view, retention }))
}

async fn verify_session(
    State(s): State<AppState>,
    Path(id): Path<String>,
    ClientAddr(address): ClientAddr,
    actor: CurrentActor,
) -> Result<Json<Report>, ApiError> {
    let core = &s.sessions;
    let report = crate::sessions::verification::verify_session(
        &core.pool,
        &core.store,
        &core.signer.all_public_keys(),
        &id,
        &actor.actor(&address),
        Some(&core.workload),
        core.timestamps.tsa.as_ref().map(|t| &t.ca),
    )
    .await?;
    Ok(Json(report))
}

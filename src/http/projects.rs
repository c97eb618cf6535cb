//! Projects over HTTP: the trading catalogue, the project registry (register, list, one project
//! with its sections, sessions and retention clocks), sections added and moved through their
//! lifecycle. Each handler parses the request, calls one operation of `crate::projects` (which
//! checks, acts and audits) and shapes the answer.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use axum::{Extension, Json};
use serde::Deserialize;

use crate::http::access::{Audited, CurrentActor};
use crate::http::{ApiError, ApiJson, ApiQuery, AppState, ClientAddr};
use crate::projects::ProjectError;
use crate::projects::register::{self, NewProject, NewSections};
use crate::projects::sections::{self, StateChange};
use crate::projects::view::{self, ListFilter};
use crate::retention::project_code::ProjectCode;

/// This resource's handlers, by the action of their rule in `policy::POLICY` (which alone
/// says their method, path and access).
pub(super) fn endpoint(action: &str, method: MethodFilter) -> Option<MethodRouter<AppState>> {
    Some(match action {
        "catalogue_view" => on(method, catalogue),
        "projects_list" => on(method, list),
        "project_register" => on(method, register_project),
        "project_view" => on(method, project),
        "project_archive" => on(method, archive),
        "project_sections_add" => on(method, add_sections),
        "section_state" => on(method, section_state),
        _ => return None,
    })
}

/// The whole catalogue the console offers: trading categories and methods (`catalogue`), room
/// kinds and activities (`catalogue::rooms`).
async fn catalogue(State(s): State<AppState>) -> Json<serde_json::Value> {
    let trading = crate::catalogue::current();
    let rooms = &s.sessions.catalogue;
    Json(serde_json::json!({
        "categories": trading.categories,
        "methods": trading.methods,
        "room_kinds": rooms.room_kinds,
        "activities": rooms.activities,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    category: Option<String>,
    state: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

async fn list(
    State(s): State<AppState>,
    actor: CurrentActor,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Vec<view::Registered>>, ApiError> {
    let limit = q.limit.unwrap_or(100);
    let offset = q.offset.unwrap_or(0);
    if !(1..=1000).contains(&limit) || offset < 0 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "limit: expected 1 to 1000; offset: expected 0 or more",
        ));
    }
    let filter = ListFilter {
        category: q.category.filter(|c| !c.is_empty()),
        state: q.state.filter(|c| !c.is_empty()),
        limit,
        offset,
    };
    Ok(Json(view::list(&s.pool, &actor.scope(), &filter).await?))
}

async fn register_project(
    State(s): State<AppState>,
    ClientAddr(address): ClientAddr,
    actor: CurrentActor,
    ApiJson(req): ApiJson<NewProject>,
) -> Result<impl IntoResponse, ApiError> {
    let detail = register::register(&s.pool, &actor.actor(&address), &req).await?;
    Ok((StatusCode::CREATED, Extension(Audited), Json(detail)))
}

/// One project: its registration and sections (when registered), its sessions and its
/// retention clocks, their history and its holds.
async fn project(
    State(s): State<AppState>,
    Path(project): Path<String>,
    actor: CurrentActor,
) -> Result<Json<serde_json::Value>, ApiError> {
    let code = ProjectCode::parse(&project)?;
    let p = view::view(&s.pool, &actor.scope(), &code).await?;
    let mut json = serde_json::json!({
        "project_code": project,
        "registered": p.registered.is_some(),
        "closed_at": p.clocks.events.closed_at_us.map(crate::time::rfc3339),
        "procurement_ended_at": p.clocks.events.procurement_ended_at_us.map(crate::time::rfc3339),
        "open": p.clocks.events.closed_at_us.is_none(),
        "history": p.clocks.history,
        "holds": p.clocks.holds,
        "sessions": p.sessions,
        "sections": [],
    });
    if let Some(detail) = p.registered
        && let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(&detail)
    {
        for (k, v) in fields {
            json[k] = v;
        }
    }
    Ok(Json(json))
}

/// The project's archive (一项一档): sections, bookings, sessions with their verdicts and
/// witness records, holds, exports, destructions, the catalogue and the completeness check.
async fn archive(
    State(s): State<AppState>,
    Path(project): Path<String>,
    ClientAddr(address): ClientAddr,
    actor: CurrentActor,
) -> Result<Json<crate::project_archive::ProjectArchive>, ApiError> {
    Ok(Json(
        crate::project_archive::view(
            &s.sessions,
            &actor.scope(),
            &actor.actor(&address),
            &project,
        )
        .await?,
    ))
}

async fn add_sections(
    State(s): State<AppState>,
    Path(project): Path<String>,
    ClientAddr(address): ClientAddr,
    actor: CurrentActor,
    ApiJson(req): ApiJson<NewSections>,
) -> Result<impl IntoResponse, ApiError> {
    let detail = register::add_sections(
        &s.pool,
        &actor.actor(&address),
        &actor.scope(),
        &project,
        &req,
    )
    .await?;
    Ok((StatusCode::CREATED, Extension(Audited), Json(detail)))
}

/// A refusal the domain audited (all but bad input, a missing project or section, and database
/// failures, which the middleware audits as a failed change).
fn audited(e: ProjectError) -> Response {
    let audited = matches!(
        e,
        ProjectError::Conflict { .. }
            | ProjectError::Forbidden {
                code: "forbidden",
                ..
            }
    );
    let mut response = ApiError::from(e).into_response();
    if audited {
        response.extensions_mut().insert(Audited);
    }
    response
}

async fn section_state(
    State(s): State<AppState>,
    Path((project, section)): Path<(String, String)>,
    ClientAddr(address): ClientAddr,
    actor: CurrentActor,
    ApiJson(req): ApiJson<StateChange>,
) -> Response {
    let Some(caller) = actor.0.as_ref() else {
        return ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", "log in first")
            .into_response();
    };
    match sections::change_state(
        &s.pool,
        &s.policies,
        caller,
        &address,
        &project,
        &section,
        &req,
    )
    .await
    {
        Ok(changed) => (Extension(Audited), Json(changed)).into_response(),
        Err(e) => audited(e),
    }
}

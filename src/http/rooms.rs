//! Rooms over HTTP: create (after probing its cameras), list, change, delete, probe, replace a
//! camera's credentials, and the installed pipeline templates. Credentials are write-only:
//! rooms are shown with URLs without user info and `has_credentials`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use axum::{Extension, Json};
use serde::Deserialize;

use crate::audit;
use crate::capture::credentials::Credentials;
use crate::capture::probe;
use crate::capture::rooms::{self, CreateRoom, PatchRoom, Room};
use crate::http::access::{Audited, CurrentActor};
use crate::http::{ApiError, ApiJson, ApiQuery, AppState, ClientAddr};

/// This resource's handlers, by the action of their rule in `policy::POLICY` (which alone
/// says their method, path and access).
pub(super) fn endpoint(action: &str, method: MethodFilter) -> Option<MethodRouter<AppState>> {
    Some(match action {
        "rooms_list" => on(method, list_rooms),
        "room_add" => on(method, create_room),
        "room_view" => on(method, get_room),
        "room_change" => on(method, patch_room),
        "room_remove" => on(method, delete_room),
        "room_probe" => on(method, probe_room),
        "room_credentials" => on(method, put_credentials),
        "room_credentials_remove" => on(method, delete_credentials),
        "templates_list" => on(method, templates),
        _ => return None,
    })
}

/// Creates a room. With `"probe": true` every source is probed first, and a room with a source
/// that cannot be recorded is refused (422 `source_not_recordable`); the answer then carries
/// the probe.
async fn create_room(
    State(s): State<AppState>,
    ApiJson(mut body): ApiJson<serde_json::Value>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let invalid =
        |message: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", message);
    let probe_first = match body.as_object_mut().and_then(|o| o.remove("probe")) {
        None => false,
        Some(serde_json::Value::Bool(b)) => b,
        Some(_) => {
            return Err(invalid(
                "request body: probe: expected true or false".into(),
            ));
        }
    };
    let req: CreateRoom =
        serde_json::from_value(body).map_err(|e| invalid(format!("request body: {e}")))?;
    let core = &s.sessions;
    if !probe_first {
        let room = rooms::create(
            &core.pool,
            &core.templates,
            &core.credentials,
            &core.catalogue,
            req,
        )
        .await?;
        return Ok((StatusCode::CREATED, Json(json_of(&room)?)));
    }
    let (room, report, listen) = probe::create_recordable_room(
        &core.pool,
        &core.templates,
        &core.credentials,
        &core.catalogue,
        req,
    )
    .await?;
    let mut json = json_of(&room)?;
    json["probe"] = serde_json::json!({
        "listen_seconds": listen.as_secs_f64(),
        "recordable": true,
        "sources": report,
    });
    Ok((StatusCode::CREATED, Json(json)))
}

fn json_of(v: &impl serde::Serialize) -> Result<serde_json::Value, ApiError> {
    serde_json::to_value(v)
        .map_err(|e| ApiError::from(crate::error::CoreError::Internal(e.to_string())))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProbeQuery {
    /// Listening window per transport attempt, clamped to 1–15 s (default 4).
    seconds: Option<u64>,
}

/// Connects to every source of the room and reports what each sends and whether it can be
/// recorded. Audited with the verdict.
async fn probe_room(
    State(s): State<AppState>,
    Path(id): Path<String>,
    ClientAddr(address): ClientAddr,
    actor: CurrentActor,
    ApiQuery(q): ApiQuery<ProbeQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let core = &s.sessions;
    let report = probe::probe_room(
        &core.pool,
        &core.templates,
        &core.credentials,
        &id,
        probe::listen_window(q.seconds),
    )
    .await?;
    let outcome = report.outcome();
    audit::Event::new(&actor.actor(&address), "room_probe")
        .target(&report.room_id)
        .outcome(audit::Outcome::Result(outcome))
        .append(&core.pool)
        .await
        .map_err(ApiError::internal)?;
    Ok((Extension(Audited), Json(report)))
}

async fn list_rooms(State(s): State<AppState>) -> Result<Json<Vec<Room>>, ApiError> {
    Ok(Json(rooms::list(&s.pool).await?))
}

async fn get_room(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Room>, ApiError> {
    Ok(Json(rooms::get(&s.pool, &id).await?))
}

/// Changes a room; audited by the domain with its values before and after.
async fn patch_room(
    State(s): State<AppState>,
    Path(id): Path<String>,
    ClientAddr(address): ClientAddr,
    actor: CurrentActor,
    ApiJson(req): ApiJson<PatchRoom>,
) -> Result<Response, ApiError> {
    let room = s
        .sessions
        .patch_room(&id, req, &actor.actor(&address))
        .await?;
    Ok((Extension(Audited), Json(room)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialsBody {
    username: String,
    #[serde(default)]
    password: String,
}

/// Replaces one source's camera credentials. Audited (source named, secret left out); the
/// answer is the room as shown, with `has_credentials`.
async fn put_credentials(
    State(s): State<AppState>,
    Path((id, source)): Path<(String, String)>,
    ClientAddr(address): ClientAddr,
    actor: CurrentActor,
    ApiJson(body): ApiJson<CredentialsBody>,
) -> Result<impl IntoResponse, ApiError> {
    let creds = Credentials {
        username: body.username,
        password: body.password,
    };
    let room = s
        .sessions
        .set_source_credentials(&id, &source, Some(creds), &actor.actor(&address))
        .await?;
    Ok((Extension(Audited), Json(room)))
}

/// Removes one source's camera credentials. Audited.
async fn delete_credentials(
    State(s): State<AppState>,
    Path((id, source)): Path<(String, String)>,
    ClientAddr(address): ClientAddr,
    actor: CurrentActor,
) -> Result<impl IntoResponse, ApiError> {
    let room = s
        .sessions
        .set_source_credentials(&id, &source, None, &actor.actor(&address))
        .await?;
    Ok((Extension(Audited), Json(room)))
}

async fn delete_room(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    rooms::delete(&s.pool, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn templates(State(s): State<AppState>) -> Json<serde_json::Value> {
    let t = &s.sessions.templates;
    Json(serde_json::json!(t
        .names()
        .iter()
        .filter_map(|n| t.get(n))
        .map(|t| serde_json::json!({
            "name": t.name, "description": t.description, "muxer": t.muxer, "extension": t.extension,
            "video": t.video.keys().collect::<Vec<_>>(), "audio": t.audio.keys().collect::<Vec<_>>(),
        }))
        .collect::<Vec<_>>()))
}

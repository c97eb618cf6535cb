//! The witness record (见证记录) over HTTP: entries added by the session's witness (by session or
//! by the room recording it), the record read, and the record signed with the witness's password.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{MethodFilter, MethodRouter, on};
use axum::{Extension, Json};

use crate::http::access::{Audited, CurrentActor};
use crate::http::{ApiError, ApiJson, AppState, ClientAddr};
use crate::sessions::witness_record::{NewEntry, RecordView, SignRequest};

/// This resource's handlers, by the action of their rule in `policy::POLICY` (which alone
/// says their method, path and access).
pub(super) fn endpoint(action: &str, method: MethodFilter) -> Option<MethodRouter<AppState>> {
    Some(match action {
        "witness_entry" => on(method, add_entry),
        "witness_entry_room" => on(method, add_entry_in_room),
        "witness_record_view" => on(method, view),
        "witness_record_sign" => on(method, sign),
        _ => return None,
    })
}

async fn add_entry(
    State(s): State<AppState>,
    Path(id): Path<String>,
    ClientAddr(address): ClientAddr,
    actor: CurrentActor,
    ApiJson(req): ApiJson<NewEntry>,
) -> Result<impl IntoResponse, ApiError> {
    let entry = s
        .sessions
        .add_witness_entry(&id, req, &actor.actor(&address))
        .await?;
    Ok((StatusCode::CREATED, Extension(Audited), Json(entry)))
}

async fn add_entry_in_room(
    State(s): State<AppState>,
    Path(id): Path<String>,
    ClientAddr(address): ClientAddr,
    actor: CurrentActor,
    ApiJson(req): ApiJson<NewEntry>,
) -> Result<impl IntoResponse, ApiError> {
    let entry = s
        .sessions
        .add_witness_entry_in_room(&id, req, &actor.actor(&address))
        .await?;
    Ok((StatusCode::CREATED, Extension(Audited), Json(entry)))
}

async fn view(
    State(s): State<AppState>,
    Path(id): Path<String>,
    ClientAddr(address): ClientAddr,
    actor: CurrentActor,
) -> Result<Json<RecordView>, ApiError> {
    Ok(Json(
        s.sessions
            .witness_record(&id, &actor.actor(&address))
            .await?,
    ))
}

async fn sign(
    State(s): State<AppState>,
    Path(id): Path<String>,
    ClientAddr(address): ClientAddr,
    actor: CurrentActor,
    ApiJson(req): ApiJson<SignRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let record = s
        .sessions
        .sign_witness_record(&id, req, &s.hasher, &actor.actor(&address))
        .await?;
    Ok((Extension(Audited), Json(record)))
}

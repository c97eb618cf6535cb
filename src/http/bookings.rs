//! Bookings over HTTP: book a room, list and show bookings (with history), move and cancel one
//! with a reason.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{MethodFilter, MethodRouter, on};
use axum::{Extension, Json};

use crate::bookings::{self, BookingFilter, CancelBooking, ChangeBooking, NewBooking};
use crate::http::access::{Audited, CurrentActor};
use crate::http::{ApiError, ApiJson, ApiQuery, AppState, ClientAddr};

/// This resource's handlers, by the action of their rule in `policy::POLICY` (which alone
/// says their method, path and access).
pub(super) fn endpoint(action: &str, method: MethodFilter) -> Option<MethodRouter<AppState>> {
    Some(match action {
        "bookings_list" => on(method, list),
        "booking_add" => on(method, create),
        "booking_view" => on(method, view),
        "booking_change" => on(method, change),
        "booking_cancel" => on(method, cancel),
        _ => return None,
    })
}

async fn create(
    State(s): State<AppState>,
    ClientAddr(address): ClientAddr,
    actor: CurrentActor,
    ApiJson(req): ApiJson<NewBooking>,
) -> Result<impl IntoResponse, ApiError> {
    let b = bookings::create(&s.pool, &s.sessions.catalogue, req, &actor.actor(&address)).await?;
    Ok((StatusCode::CREATED, Extension(Audited), Json(b)))
}

async fn list(
    State(s): State<AppState>,
    actor: CurrentActor,
    ApiQuery(f): ApiQuery<BookingFilter>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(bookings::list(&s.pool, &actor.scope(), &f).await?))
}

/// The booking with its history (created, changed, cancelled: who, when, before → after, why).
async fn view(
    State(s): State<AppState>,
    Path(id): Path<String>,
    actor: CurrentActor,
) -> Result<impl IntoResponse, ApiError> {
    let b = bookings::get(&s.pool, &actor.scope(), &id).await?;
    let history = bookings::history(&s.pool, &id).await?;
    let mut json = serde_json::to_value(&b)
        .map_err(|e| ApiError::from(crate::error::CoreError::Internal(e.to_string())))?;
    json["history"] = serde_json::to_value(&history).unwrap_or_default();
    Ok(Json(json))
}

async fn change(
    State(s): State<AppState>,
    Path(id): Path<String>,
    ClientAddr(address): ClientAddr,
    actor: CurrentActor,
    ApiJson(req): ApiJson<ChangeBooking>,
) -> Result<impl IntoResponse, ApiError> {
    let b = bookings::change(&s.pool, &id, req, &actor.actor(&address)).await?;
    Ok((Extension(Audited), Json(b)))
}

async fn cancel(
    State(s): State<AppState>,
    Path(id): Path<String>,
    ClientAddr(address): ClientAddr,
    actor: CurrentActor,
    ApiJson(req): ApiJson<CancelBooking>,
) -> Result<impl IntoResponse, ApiError> {
    let b = bookings::cancel(&s.pool, &id, req, &actor.actor(&address)).await?;
    Ok((Extension(Audited), Json(b)))
}

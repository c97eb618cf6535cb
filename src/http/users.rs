//! User administration over HTTP: list, add (with a one-time password), change, reset.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use axum::{Extension, Json};
use serde::Deserialize;

use crate::http::access::Audited;
use crate::http::{ApiError, ApiJson, AppState, ClientAddr};
use crate::identity::caller::Caller;
use crate::identity::users::UserView;
use crate::identity::{self, AddUser, ProfileChange, parse_role, users};

/// This resource's handlers, by the action of their rule in `policy::POLICY` (which alone
/// says their method, path and access).
pub(super) fn endpoint(action: &str, method: MethodFilter) -> Option<MethodRouter<AppState>> {
    Some(match action {
        "users_list" => on(method, list_users),
        "user_add" => on(method, add_user),
        "user_change" => on(method, change_user),
        "user_reset" => on(method, reset_user),
        _ => return None,
    })
}

async fn list_users(State(s): State<AppState>) -> Result<Json<Vec<UserView>>, ApiError> {
    let all = users::all(&s.pool).await.map_err(ApiError::internal)?;
    Ok(Json(all.iter().map(UserView::from).collect()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUserRequest {
    username: String,
    #[serde(default)]
    display_name: String,
    role: String,
    #[serde(default)]
    categories: Vec<String>,
}

async fn add_user(
    State(s): State<AppState>,
    Extension(actor): Extension<Caller>,
    ClientAddr(address): ClientAddr,
    ApiJson(req): ApiJson<NewUserRequest>,
) -> Result<Response, ApiError> {
    let role = parse_role(&req.role)?;
    let (user, one_time) = crate::identity::add_user(
        &s.pool,
        AddUser {
            username: &req.username,
            display_name: &req.display_name,
            role,
            categories: &req.categories,
        },
        &actor.actor(&address),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Extension(Audited),
        Json(serde_json::json!({ "user": UserView::from(&user), "one_time_password": one_time })),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeUser {
    display_name: Option<String>,
    role: Option<String>,
    categories: Option<Vec<String>>,
    disabled: Option<bool>,
}

async fn change_user(
    State(s): State<AppState>,
    Extension(actor): Extension<Caller>,
    ClientAddr(address): ClientAddr,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<ChangeUser>,
) -> Result<Json<UserView>, ApiError> {
    let change = ProfileChange {
        display_name: req.display_name,
        role: req.role.as_deref().map(parse_role).transpose()?,
        categories: req.categories,
        disabled: req.disabled,
    };
    let after =
        identity::change_user(&s.pool, &id, change, &actor.user_id, &actor.actor(&address)).await?;
    Ok(Json(UserView::from(&after)))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ResetRequest {
    /// Also clear the TOTP second factor (a lost phone).
    #[serde(default)]
    totp: bool,
}

async fn reset_user(
    State(s): State<AppState>,
    Extension(actor): Extension<Caller>,
    ClientAddr(address): ClientAddr,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    // The body is optional: none means a password reset only.
    let req: ResetRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ResetRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                e.to_string(),
            )
        })?
    };
    let pool = &s.pool;
    let u = users::by_id(pool, &id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| crate::identity::IdentityError::NoUser(id.clone()))?;
    let one_time =
        crate::identity::reset_user(pool, &u.username, req.totp, &actor.actor(&address)).await?;
    Ok((
        Extension(Audited),
        Json(serde_json::json!({ "username": u.username, "one_time_password": one_time })),
    )
        .into_response())
}

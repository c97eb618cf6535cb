//! Account administration over HTTP, by security administrators: list; add and change of role
//! or scope (proposed, then approved or rejected by a second security administrator, who
//! receives a new account's one-time password); disable and rename (at once); reset (another
//! person's reset proposed, then approved or rejected by a second security administrator).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use axum::{Extension, Json};
use serde::Deserialize;

use crate::http::access::Audited;
use crate::http::{ApiError, ApiJson, AppState, ClientAddr};
use crate::identity::caller::Caller;
use crate::identity::changes;
use crate::identity::resets::{self, ResetOutcome};
use crate::identity::users::UserView;
use crate::identity::{self, AddUser, IdentityError, ProfileChange, parse_role, users};

/// This resource's handlers, by the action of their rule in `policy::POLICY` (which alone
/// says their method, path and access).
pub(super) fn endpoint(action: &str, method: MethodFilter) -> Option<MethodRouter<AppState>> {
    Some(match action {
        "users_list" => on(method, list_users),
        "user_add" => on(method, add_user),
        "user_change" => on(method, change_user),
        "user_reset" => on(method, reset_user),
        "user_resets_list" => on(method, list_resets),
        "user_reset_approve" => on(method, approve_reset),
        "user_reset_reject" => on(method, reject_reset),
        "account_changes_list" => on(method, list_changes),
        "account_change_approve" => on(method, approve_change),
        "account_change_reject" => on(method, reject_change),
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
    /// Why, for the approver and the audit trail.
    #[serde(default)]
    reason: String,
}

/// Proposes an account: 202 with the proposed change; the account exists (and its one-time
/// password is answered to the approver) once a second security administrator approves it.
async fn add_user(
    State(s): State<AppState>,
    Extension(actor): Extension<Caller>,
    ClientAddr(address): ClientAddr,
    ApiJson(req): ApiJson<NewUserRequest>,
) -> Result<Response, ApiError> {
    let role = parse_role(&req.role)?;
    let change = crate::identity::propose_user(
        &s.pool,
        AddUser {
            username: &req.username,
            display_name: &req.display_name,
            role,
            categories: &req.categories,
        },
        req.reason.trim(),
        &actor.actor(&address),
    )
    .await?;
    Ok((
        StatusCode::ACCEPTED,
        Extension(Audited),
        Json(serde_json::json!({ "state": "proposed", "username": change.username, "change": change })),
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
    #[serde(default)]
    reason: String,
}

/// Renames, disables or enables at once (200, the account); a new role or scope is proposed
/// (202, the account as it is now and the proposed change).
async fn change_user(
    State(s): State<AppState>,
    Extension(actor): Extension<Caller>,
    ClientAddr(address): ClientAddr,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<ChangeUser>,
) -> Result<Response, ApiError> {
    let change = ProfileChange {
        display_name: req.display_name,
        role: req.role.as_deref().map(parse_role).transpose()?,
        categories: req.categories,
        disabled: req.disabled,
        reason: req.reason.trim().to_string(),
    };
    let outcome =
        identity::change_user(&s.pool, &id, change, &actor.user_id, &actor.actor(&address)).await?;
    Ok(match outcome.proposed {
        None => (Extension(Audited), Json(UserView::from(&outcome.user))).into_response(),
        Some(change) => (
            StatusCode::ACCEPTED,
            Extension(Audited),
            Json(serde_json::json!({
                "state": "proposed", "user": UserView::from(&outcome.user), "change": change
            })),
        )
            .into_response(),
    })
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ResetRequest {
    /// Also clear the TOTP second factor (a lost phone).
    #[serde(default)]
    totp: bool,
    /// Why, for the approver and the audit trail.
    #[serde(default)]
    reason: String,
}

/// Resets a user's password (and TOTP). One's own account: at once, answered with the one-time
/// password. Another person's: 202 with the proposed reset, which changes nothing until a
/// second security administrator approves it.
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
    let outcome = resets::request(
        &s.pool,
        &id,
        req.totp,
        req.reason.trim(),
        &actor.user_id,
        &actor.actor(&address),
    )
    .await?;
    Ok(match outcome {
        ResetOutcome::Done { user, one_time } => (
            Extension(Audited),
            Json(serde_json::json!({
                "state": "approved", "username": user.username, "one_time_password": one_time
            })),
        )
            .into_response(),
        ResetOutcome::Proposed(reset) => (
            StatusCode::ACCEPTED,
            Extension(Audited),
            Json(serde_json::json!({
                "state": "proposed", "username": reset.username, "reset": reset
            })),
        )
            .into_response(),
    })
}

async fn list_resets(
    State(s): State<AppState>,
) -> Result<Json<Vec<resets::AccountReset>>, ApiError> {
    Ok(Json(resets::list(&s.pool).await?))
}

/// A refusal the domain audited itself (the proposer approving their own reset or change, an
/// approver not independent of the proposer, a change of one's own account) carries `Audited`,
/// so that the middleware adds no second entry.
fn refusal(e: IdentityError) -> Response {
    let audited = matches!(
        e,
        IdentityError::Refused {
            code: "same_person" | "not_independent" | "own_account",
            ..
        }
    );
    let mut response = ApiError::from(e).into_response();
    if audited {
        response.extensions_mut().insert(Audited);
    }
    response
}

/// Approves another security administrator's proposed reset; the answer carries the one-time password,
/// for the approver to hand to the account's holder.
async fn approve_reset(
    State(s): State<AppState>,
    Extension(actor): Extension<Caller>,
    ClientAddr(address): ClientAddr,
    Path(id): Path<String>,
) -> Response {
    match resets::approve(&s.pool, &id, &actor.actor(&address)).await {
        Ok((reset, one_time)) => (
            Extension(Audited),
            Json(serde_json::json!({
                "reset": reset, "username": reset.username, "one_time_password": one_time
            })),
        )
            .into_response(),
        Err(e) => refusal(e),
    }
}

async fn reject_reset(
    State(s): State<AppState>,
    Extension(actor): Extension<Caller>,
    ClientAddr(address): ClientAddr,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let reset = resets::reject(&s.pool, &id, &actor.actor(&address)).await?;
    Ok((
        Extension(Audited),
        Json(serde_json::json!({ "reset": reset })),
    )
        .into_response())
}

async fn list_changes(
    State(s): State<AppState>,
) -> Result<Json<Vec<changes::AccountChange>>, ApiError> {
    Ok(Json(changes::list(&s.pool).await?))
}

/// Approves another security administrator's proposed account or role change; for a new
/// account the answer carries its one-time password, for the approver to hand to its holder.
async fn approve_change(
    State(s): State<AppState>,
    Extension(actor): Extension<Caller>,
    ClientAddr(address): ClientAddr,
    Path(id): Path<String>,
) -> Response {
    match changes::approve(&s.pool, &id, &actor.actor(&address)).await {
        Ok((change, user, one_time)) => {
            let mut body = serde_json::json!({
                "change": change, "username": change.username, "user": UserView::from(&user)
            });
            if let Some(p) = one_time {
                body["one_time_password"] = p.into();
            }
            (Extension(Audited), Json(body)).into_response()
        }
        Err(e) => refusal(e),
    }
}

async fn reject_change(
    State(s): State<AppState>,
    Extension(actor): Extension<Caller>,
    ClientAddr(address): ClientAddr,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let change = changes::reject(&s.pool, &id, &actor.actor(&address)).await?;
    Ok((
        Extension(Audited),
        Json(serde_json::json!({ "change": change })),
    )
        .into_response())
}

//! One's own account over HTTP: log in and out, who am I, change the password, enrol TOTP.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use axum::{Extension, Json};
use serde::Deserialize;

use crate::http::access::Audited;
use crate::http::{ApiError, ApiJson, AppState, ClientAddr};
use crate::identity::caller::{Caller, Via};
use crate::identity::roles::{PERMISSIONS, Permission};
use crate::identity::users::UserView;
use crate::identity::{login, logins, password, totp, users};
use crate::time::now_us;

/// This resource's handlers, by the action of their rule in `policy::POLICY` (which alone
/// says their method, path and access).
pub(super) fn endpoint(action: &str, method: MethodFilter) -> Option<MethodRouter<AppState>> {
    Some(match action {
        "login" => on(method, login),
        "logout" => on(method, logout),
        "me" => on(method, me),
        "password_change" => on(method, change_password),
        "totp_setup" => on(method, totp_setup),
        "totp_confirm" => on(method, totp_confirm),
        _ => return None,
    })
}

/// The caller's own account, as stored now.
async fn current_user(s: &AppState, actor: &Caller) -> Result<users::User, ApiError> {
    Ok(users::by_id(&s.pool, &actor.user_id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| crate::identity::IdentityError::NoUser(actor.username.clone()))?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    username: String,
    password: String,
    /// The 6-digit TOTP code, for accounts with a second factor.
    totp: Option<String>,
}

/// Credentials are changed by the person, in a browser session: an API token (which may sit in
/// an integration's configuration) must not be able to set a password or a second factor.
fn browser_only(actor: &Caller) -> Result<(), ApiError> {
    match actor.via {
        Via::Browser { .. } => Ok(()),
        Via::Token { .. } => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "passwords and second factors are changed after logging in, not with an API token",
        )),
    }
}

/// `Secure` only over TLS: over plain HTTP (loopback only) a browser would drop the cookie.
fn session_cookie(value: &str, max_age_s: i64, secure: bool) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age_s}{}",
        logins::COOKIE,
        if secure { "; Secure" } else { "" }
    ))
    .expect("cookie is ASCII")
}

async fn login(
    State(s): State<AppState>,
    ClientAddr(address): ClientAddr,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<Response, ApiError> {
    let cfg = &s.identity;
    let done = login::log_in(
        &s.pool,
        cfg,
        &s.hasher,
        login::Credentials {
            username: &req.username,
            password: &req.password,
            totp: req.totp.as_deref(),
            address: &address,
        },
    )
    .await?;
    let mut res = (
        Extension(Audited),
        Json(serde_json::json!({
            "user": UserView::from(&done.user),
            "csrf_token": done.csrf_token,
            "restriction": done.user.restriction(),
            "idle_timeout_seconds": (cfg.idle_minutes * 60.0) as i64,
        })),
    )
        .into_response();
    res.headers_mut().insert(
        header::SET_COOKIE,
        session_cookie(&done.cookie, cfg.session_us() / 1_000_000, s.secure_cookies),
    );
    Ok(res)
}

async fn logout(State(s): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let pool = &s.pool;
    if let Some(c) = crate::http::access::cookie(&headers, logins::COOKIE) {
        logins::revoke(pool, &c).await.map_err(ApiError::internal)?;
    }
    let mut res = StatusCode::NO_CONTENT.into_response();
    res.headers_mut()
        .insert(header::SET_COOKIE, session_cookie("", 0, s.secure_cookies));
    Ok(res)
}

async fn me(
    State(s): State<AppState>,
    Extension(actor): Extension<Caller>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let u = current_user(&s, &actor).await?;
    let permissions: Vec<Permission> = PERMISSIONS.into_iter().filter(|p| actor.can(*p)).collect();
    Ok(Json(serde_json::json!({
        "user": UserView::from(&u),
        "permissions": permissions,
        "restriction": match actor.via { Via::Browser { .. } => u.restriction(), Via::Token { .. } => None },
        "csrf_token": match &actor.via { Via::Browser { csrf_token } => Some(csrf_token), Via::Token { .. } => None },
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordChange {
    current_password: String,
    new_password: String,
}

async fn change_password(
    State(s): State<AppState>,
    Extension(actor): Extension<Caller>,
    ApiJson(req): ApiJson<PasswordChange>,
) -> Result<StatusCode, ApiError> {
    browser_only(&actor)?;
    let pool = &s.pool;
    let u = current_user(&s, &actor).await?;
    if !s
        .hasher
        .verify(&req.current_password, Some(&u.password_hash))
        .await?
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "wrong_password",
            "the current password is wrong",
        ));
    }
    password::check_policy(&u.username, &req.new_password)
        .map_err(|m| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "weak_password", m))?;
    if s.hasher
        .verify(&req.new_password, Some(&u.password_hash))
        .await?
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "weak_password",
            "the new password must differ from the current one",
        ));
    }
    let hash = s.hasher.hash(&req.new_password).await?;
    users::set_password(pool, &u.id, &hash, false)
        .await
        .map_err(ApiError::internal)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn totp_setup(
    State(s): State<AppState>,
    Extension(actor): Extension<Caller>,
) -> Result<Json<serde_json::Value>, ApiError> {
    browser_only(&actor)?;
    let pool = &s.pool;
    let u = current_user(&s, &actor).await?;
    if u.totp_enabled {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "totp_already_enabled",
            "a second factor is already enrolled; a security administrator can reset it",
        ));
    }
    let secret = totp::new_secret();
    users::set_totp(pool, &u.id, Some(&secret), false, 0)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(serde_json::json!({
        "secret": secret,
        "otpauth_url": totp::provisioning_url(&secret, &u.username),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TotpConfirm {
    code: String,
}

async fn totp_confirm(
    State(s): State<AppState>,
    Extension(actor): Extension<Caller>,
    ApiJson(req): ApiJson<TotpConfirm>,
) -> Result<StatusCode, ApiError> {
    browser_only(&actor)?;
    let pool = &s.pool;
    let u = current_user(&s, &actor).await?;
    let (Some(secret), false) = (u.totp_secret.as_deref(), u.totp_enabled) else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "totp_not_pending",
            "start with POST /api/v1/auth/totp/setup",
        ));
    };
    let now_s = (now_us() / 1_000_000) as u64;
    let step = totp::accept(secret, &req.code, now_s, u.totp_last_step).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "totp_invalid",
            "the code does not match; check the authenticator's clock",
        )
    })?;
    users::set_totp(pool, &u.id, Some(secret), true, step)
        .await
        .map_err(ApiError::internal)?;
    Ok(StatusCode::NO_CONTENT)
}

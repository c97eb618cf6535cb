//! `/api/v1/auth/*` (login with password and TOTP, logout, who am I, password change, TOTP
//! enrolment), `/api/v1/users` (administrators) and `/api/v1/tokens` (one's own API tokens).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use axum::{Extension, Json};
use serde::Deserialize;

use crate::db::now_us;
use crate::http::access::Audited;
use crate::http::{ApiError, ApiJson, AppState, ClientAddr};
use crate::identity::caller::{Caller, Via};
use crate::identity::roles::{PERMISSIONS, Permission, Role};
use crate::identity::users::UserView;
use crate::identity::{AddUser, login, logins, password, tokens, totp, users};

/// This resource's handlers, by the action of their rule in `routes::POLICY` (which alone
/// says their method, path and access).
pub(super) fn endpoint(action: &str, method: MethodFilter) -> Option<MethodRouter<AppState>> {
    Some(match action {
        "login" => on(method, login),
        "logout" => on(method, logout),
        "me" => on(method, me),
        "password_change" => on(method, change_password),
        "totp_setup" => on(method, totp_setup),
        "totp_confirm" => on(method, totp_confirm),
        "tokens_list" => on(method, list_tokens),
        "token_issue" => on(method, issue_token),
        "token_revoke" => on(method, revoke_token),
        "users_list" => on(method, list_users),
        "user_add" => on(method, add_user),
        "user_change" => on(method, change_user),
        "user_reset" => on(method, reset_user),
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
    if !password::verify(&req.current_password, &u.password_hash) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "wrong_password",
            "the current password is wrong",
        ));
    }
    password::check_policy(&u.username, &req.new_password)
        .map_err(|m| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "weak_password", m))?;
    if password::verify(&req.new_password, &u.password_hash) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "weak_password",
            "the new password must differ from the current one",
        ));
    }
    users::set_password(pool, &u.id, &password::hash(&req.new_password), false)
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
            "a second factor is already enrolled; an administrator can reset it",
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

fn parse_role(role: &str) -> Result<Role, ApiError> {
    Role::parse(role).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            format!(
                "role {role:?} is not valid, expected one of: {}",
                crate::identity::roles::ROLES.map(|r| r.as_str()).join(", ")
            ),
        )
    })
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
    let pool = &s.pool;
    let u = users::by_id(pool, &id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| crate::identity::IdentityError::NoUser(id.clone()))?;
    if u.id == actor.user_id && (req.role.is_some() || req.disabled == Some(true)) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "own_account",
            "administrators cannot change their own role or disable themselves",
        ));
    }
    let role = req
        .role
        .as_deref()
        .map(parse_role)
        .transpose()?
        .unwrap_or(u.role);
    let categories = req.categories.clone().unwrap_or_else(|| {
        if role == Role::Regulator {
            u.categories.clone()
        } else {
            vec![]
        }
    });
    users::check_categories(role, &categories)
        .map_err(|m| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", m))?;
    let display_name = req
        .display_name
        .clone()
        .unwrap_or_else(|| u.display_name.clone());
    if display_name.trim().is_empty() || display_name.chars().count() > 100 {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            "display_name: 1 to 100 characters",
        ));
    }
    users::set_profile(pool, &u.id, &display_name, role, &categories)
        .await
        .map_err(ApiError::internal)?;
    if role != u.role {
        // New duties, new credentials: nothing issued under the old role lives on.
        logins::revoke_all(pool, &u.id)
            .await
            .map_err(ApiError::internal)?;
        tokens::revoke_all(pool, &u.id)
            .await
            .map_err(ApiError::internal)?;
    }
    if let Some(d) = req.disabled {
        crate::identity::set_disabled(pool, &u.username, d, &actor.actor(&address)).await?;
    }
    let after = users::by_id(pool, &u.id)
        .await
        .map_err(ApiError::internal)?
        .expect("exists");
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

async fn list_tokens(
    State(s): State<AppState>,
    Extension(actor): Extension<Caller>,
) -> Result<Json<Vec<tokens::TokenView>>, ApiError> {
    Ok(Json(
        tokens::list(&s.pool, &actor.user_id)
            .await
            .map_err(ApiError::internal)?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenRequest {
    name: String,
    #[serde(default)]
    scopes: Vec<String>,
    expires_in_days: i64,
}

async fn issue_token(
    State(s): State<AppState>,
    Extension(actor): Extension<Caller>,
    ClientAddr(address): ClientAddr,
    ApiJson(req): ApiJson<TokenRequest>,
) -> Result<Response, ApiError> {
    if let Via::Token { .. } = actor.via {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "API tokens cannot issue tokens; log in",
        ));
    }
    let scopes = req
        .scopes
        .iter()
        .map(|p| {
            Permission::parse(p).ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_field",
                    format!("scope {p:?} is not a permission"),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (id, secret) = crate::identity::issue_token(
        &s.pool,
        &actor.username,
        &req.name,
        &scopes,
        req.expires_in_days,
        s.identity.token_max_days,
        &actor.actor(&address),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Extension(Audited),
        Json(serde_json::json!({ "id": id, "token": secret, "note": "shown once; store it now" })),
    )
        .into_response())
}

async fn revoke_token(
    State(s): State<AppState>,
    Extension(actor): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if tokens::revoke(&s.pool, &actor.user_id, &id)
        .await
        .map_err(ApiError::internal)?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "token_not_found",
            format!("you have no live token {id:?}"),
        ))
    }
}

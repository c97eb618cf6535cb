//! Who is asking, and may they: every routed request passes `authorize`. One table, `POLICY`,
//! names what each endpoint needs; a route missing from it is refused (deny by default). After
//! the handler, a change that the handler did not audit itself gets one generic audit entry, so
//! every mutating request leaves exactly one.

use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::audit;
use crate::http::{ApiError, AppState};
use crate::identity::caller::{Caller, Via};
use crate::identity::roles::Permission;
use crate::identity::{logins, tokens, users};

/// The caller, if any: never rejects (public routes have none).
pub struct CurrentActor(pub Option<Caller>);

impl CurrentActor {
    /// Who acts, for the audit trail: the caller, or `anonymous`.
    pub fn actor(&self, address: &str) -> audit::Actor {
        match &self.0 {
            Some(c) => c.actor(address),
            None => audit::Actor::anonymous(address),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for CurrentActor {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(CurrentActor(parts.extensions.get::<Caller>().cloned()))
    }
}

/// Set on a response by a handler that wrote its own audit entry.
#[derive(Debug, Clone, Copy)]
pub struct Audited;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Access {
    /// No login needed.
    Public,
    /// Any logged-in user, even one who must first change their password or enrol TOTP.
    Account,
    /// A logged-in user whose role (and token scope) has the permission.
    Needs(Permission),
}

pub struct Rule {
    pub method: &'static str,
    pub path: &'static str,
    pub access: Access,
    /// The audit action of a generic entry.
    pub action: &'static str,
}

const fn rule(
    method: &'static str,
    path: &'static str,
    access: Access,
    action: &'static str,
) -> Rule {
    Rule {
        method,
        path,
        access,
        action,
    }
}

use Access::{Account, Needs, Public};
use Permission::*;

/// Every endpoint and what it needs. The RBAC matrix test walks this table.
pub const POLICY: &[Rule] = &[
    rule("GET", "/healthz", Public, "health"),
    rule("GET", "/metrics", Public, "metrics"),
    rule("GET", "/api/v1/keys", Public, "keys"),
    rule("GET", "/sessions/{id}", Public, "page_replay"),
    rule("GET", "/", Public, "page_console"),
    rule("GET", "/assets/{name}", Public, "asset"),
    rule("POST", "/api/v1/auth/login", Public, "login"),
    rule("POST", "/api/v1/auth/logout", Account, "logout"),
    rule("GET", "/api/v1/auth/me", Account, "me"),
    rule("POST", "/api/v1/auth/password", Account, "password_change"),
    rule("POST", "/api/v1/auth/totp/setup", Account, "totp_setup"),
    rule("POST", "/api/v1/auth/totp/confirm", Account, "totp_confirm"),
    rule("GET", "/api/v1/tokens", Account, "tokens_list"),
    rule("POST", "/api/v1/tokens", Account, "token_issue"),
    rule("DELETE", "/api/v1/tokens/{id}", Account, "token_revoke"),
    rule("GET", "/api/v1/users", Needs(UsersManage), "users_list"),
    rule("POST", "/api/v1/users", Needs(UsersManage), "user_add"),
    rule(
        "PATCH",
        "/api/v1/users/{id}",
        Needs(UsersManage),
        "user_change",
    ),
    rule(
        "POST",
        "/api/v1/users/{id}/reset",
        Needs(UsersManage),
        "user_reset",
    ),
    rule("GET", "/api/v1/rooms", Needs(RoomsRead), "rooms_list"),
    rule(
        "GET",
        "/api/v1/rooms/status",
        Needs(RoomsRead),
        "rooms_status",
    ),
    rule(
        "POST",
        "/api/v1/rooms/{id}/live",
        Needs(LiveView),
        "live_view",
    ),
    rule(
        "GET",
        "/api/v1/rooms/{id}/live/{source}/index.m3u8",
        Needs(LiveView),
        "live_playlist",
    ),
    rule(
        "GET",
        "/api/v1/rooms/{id}/live/{source}/segments/{file}",
        Needs(LiveView),
        "live_segment",
    ),
    rule("POST", "/api/v1/rooms", Needs(RoomsManage), "room_add"),
    rule("GET", "/api/v1/rooms/{id}", Needs(RoomsRead), "room_view"),
    rule(
        "PATCH",
        "/api/v1/rooms/{id}",
        Needs(RoomsManage),
        "room_change",
    ),
    rule(
        "DELETE",
        "/api/v1/rooms/{id}",
        Needs(RoomsManage),
        "room_remove",
    ),
    rule(
        "POST",
        "/api/v1/rooms/{id}/probe",
        Needs(RoomsProbe),
        "room_probe",
    ),
    rule(
        "POST",
        "/api/v1/rooms/{id}/start",
        Needs(RecordingControl),
        "room_start",
    ),
    rule(
        "POST",
        "/api/v1/rooms/{id}/stop",
        Needs(RecordingControl),
        "room_stop",
    ),
    rule(
        "GET",
        "/api/v1/templates",
        Needs(RoomsRead),
        "templates_list",
    ),
    rule(
        "GET",
        "/api/v1/sessions",
        Needs(SessionsRead),
        "sessions_list",
    ),
    rule(
        "GET",
        "/api/v1/sessions/{id}",
        Needs(SessionsRead),
        "session_view",
    ),
    rule(
        "GET",
        "/api/v1/sessions/{id}/verify",
        Needs(SessionsRead),
        "session_verify",
    ),
    rule(
        "GET",
        "/api/v1/sessions/{id}/audit",
        Needs(SessionAuditRead),
        "session_audit",
    ),
    rule(
        "GET",
        "/api/v1/sessions/{id}/sources/{source}/index.m3u8",
        Needs(Replay),
        "replay_start",
    ),
    rule(
        "GET",
        "/api/v1/sessions/{id}/sources/{source}/segments/{file}",
        Needs(Replay),
        "segment",
    ),
    rule(
        "GET",
        "/api/v1/sessions/{id}/sources/{source}/download.mp4",
        Needs(Replay),
        "download",
    ),
    rule(
        "POST",
        "/api/v1/sessions/{id}/exports",
        Needs(Export),
        "export_start",
    ),
    rule(
        "GET",
        "/api/v1/exports/{id}",
        Needs(Export),
        "export_status",
    ),
    rule(
        "GET",
        "/api/v1/exports/{id}/download",
        Needs(Export),
        "export_download",
    ),
    rule(
        "GET",
        "/api/v1/retention/policies",
        Needs(SessionsRead),
        "policies_view",
    ),
    rule(
        "GET",
        "/api/v1/retention/candidates",
        Needs(Holds),
        "retention_candidates",
    ),
    rule(
        "GET",
        "/api/v1/retention/dry-run",
        Needs(Holds),
        "retention_dry_run",
    ),
    rule(
        "GET",
        "/api/v1/fixity/reports",
        Needs(SessionAuditRead),
        "fixity_reports",
    ),
    rule("POST", "/api/v1/fixity/run", Needs(Holds), "fixity_run"),
    rule(
        "GET",
        "/api/v1/destructions",
        Needs(Holds),
        "destructions_list",
    ),
    rule(
        "POST",
        "/api/v1/destructions",
        Needs(Disposal),
        "destruction_propose",
    ),
    rule(
        "GET",
        "/api/v1/destructions/{id}",
        Needs(Holds),
        "destruction_view",
    ),
    rule(
        "POST",
        "/api/v1/destructions/{id}/decision",
        Needs(DisposalApprove),
        "destruction_decide",
    ),
    rule(
        "POST",
        "/api/v1/destructions/{id}/execute",
        Needs(Disposal),
        "destruction_execute",
    ),
    rule(
        "GET",
        "/api/v1/destruction-register",
        Needs(SessionsRead),
        "destruction_register",
    ),
    rule(
        "GET",
        "/api/v1/sessions/{id}/retention",
        Needs(SessionsRead),
        "session_retention",
    ),
    rule(
        "GET",
        "/api/v1/projects/{code}",
        Needs(SessionsRead),
        "project_view",
    ),
    rule(
        "POST",
        "/api/v1/projects/{code}/events",
        Needs(ProjectEvents),
        "project_event",
    ),
    rule(
        "POST",
        "/api/v1/projects/{code}/complaints",
        Needs(Holds),
        "complaint_file",
    ),
    rule("GET", "/api/v1/holds", Needs(Holds), "holds_list"),
    rule("POST", "/api/v1/holds", Needs(Holds), "hold_place"),
    rule(
        "POST",
        "/api/v1/holds/{id}/release",
        Needs(Holds),
        "hold_release",
    ),
    rule("GET", "/api/v1/audit", Needs(AuditRead), "audit_view"),
    rule(
        "GET",
        "/api/v1/audit/verify",
        Needs(AuditRead),
        "audit_verify",
    ),
];

pub fn find_rule(method: &Method, path: &str) -> Option<&'static Rule> {
    POLICY
        .iter()
        .find(|r| r.path == path && r.method == method.as_str())
}

/// Until the password is changed or TOTP enrolled, an account can only do that (and log out).
const WHILE_RESTRICTED: [&str; 5] = [
    "logout",
    "me",
    "password_change",
    "totp_setup",
    "totp_confirm",
];

fn client_address(req: &Request) -> String {
    req.extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// The value of cookie `name` in a request's headers.
pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

fn internal(e: sqlx::Error) -> ApiError {
    tracing::error!(error = %e, "identity lookup");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "internal error; see the server log",
    )
}

/// The caller behind a bearer token or a session cookie, with the restriction that applies.
async fn authenticate(
    s: &AppState,
    headers: &HeaderMap,
) -> Result<Option<(Caller, Option<&'static str>)>, ApiError> {
    let pool = &s.pool;
    let bearer = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let (user_id, via) = if let Some(secret) = bearer {
        let Some(t) = tokens::resolve(pool, secret.trim())
            .await
            .map_err(internal)?
        else {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "the API token is unknown, expired or revoked",
            ));
        };
        (
            t.user_id,
            Via::Token {
                name: t.name,
                scopes: t.scopes,
            },
        )
    } else if let Some(c) = cookie(headers, logins::COOKIE) {
        match logins::resume(pool, &c, s.identity.idle_us())
            .await
            .map_err(internal)?
        {
            Some(l) => (
                l.user_id,
                Via::Browser {
                    csrf_token: l.csrf_token,
                },
            ),
            None => return Ok(None),
        }
    } else {
        return Ok(None);
    };
    let Some(u) = users::by_id(pool, &user_id).await.map_err(internal)? else {
        return Ok(None);
    };
    if u.disabled {
        return Ok(None);
    }
    let restriction = match via {
        Via::Token { .. } => None,
        Via::Browser { .. } if u.must_change_password => Some("password_change_required"),
        Via::Browser { .. } if u.role.needs_totp() && !u.totp_enabled => {
            Some("totp_enrollment_required")
        }
        Via::Browser { .. } => None,
    };
    Ok(Some((
        Caller {
            user_id: u.id,
            username: u.username,
            role: u.role,
            categories: u.categories,
            via,
        },
        restriction,
    )))
}

/// The middleware: authenticate, check CSRF, restrictions, permission and session scope, run
/// the handler, and audit what it changed.
pub async fn authorize(State(s): State<AppState>, mut req: Request, next: Next) -> Response {
    let Some(path) = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
    else {
        return next.run(req).await; // unrouted: the fallback answers 404
    };
    let method = req.method().clone();
    let Some(rule) = find_rule(&method, &path) else {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("{method} {path} has no access rule; refused"),
        )
        .into_response();
    };
    if rule.access == Access::Public {
        return next.run(req).await;
    }
    let address = client_address(&req);
    let target = req.uri().path().to_string();
    let unsafe_method = !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
    let (actor, restriction) = match authenticate(&s, req.headers()).await {
        Ok(Some(found)) => found,
        Ok(None) => {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "log in first (POST /api/v1/auth/login) or send an API token",
            )
            .into_response();
        }
        Err(e) => return e.into_response(),
    };
    let refuse = |code: &'static str, message: String| {
        let (s, actor, address, target) =
            (s.clone(), actor.clone(), address.clone(), target.clone());
        async move {
            let _ = audit::Event::new(&actor.actor(&address), rule.action)
                .target(target)
                .outcome(audit::Outcome::Denied(code.into()))
                .append(&s.pool)
                .await;
            ApiError::new(StatusCode::FORBIDDEN, code, message).into_response()
        }
    };
    if let (Via::Browser { csrf_token }, true) = (&actor.via, unsafe_method) {
        let sent = req
            .headers()
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if sent.is_empty() || !constant_time_eq(sent.as_bytes(), csrf_token.as_bytes()) {
            return refuse(
                "csrf_failed",
                "changes from a browser session need the X-CSRF-Token header given at login".into(),
            )
            .await;
        }
    }
    if let Some(code) = restriction
        && !WHILE_RESTRICTED.contains(&rule.action)
    {
        let why = if code == "password_change_required" {
            "change the one-time password first (POST /api/v1/auth/password)"
        } else {
            "enrol a TOTP second factor first (POST /api/v1/auth/totp/setup, then confirm)"
        };
        return refuse(code, why.into()).await;
    }
    if let Access::Needs(p) = rule.access {
        if !actor.can(p) {
            return refuse(
                "forbidden",
                format!(
                    "the {} role{} may not {}",
                    actor.role.as_str(),
                    if matches!(actor.via, Via::Token { .. }) {
                        " (or this token's scope)"
                    } else {
                        ""
                    },
                    p.as_str()
                ),
            )
            .await;
        }
        if let Some(id) = session_in_path(&path, &target)
            && let Some(session) = crate::ledger::index::session(&s.pool, &id)
                .await
                .ok()
                .flatten()
        {
            if !actor.sees_category(session.category) {
                return refuse(
                    "out_of_scope",
                    format!(
                        "session {id} is in trading category {:?}, outside this regulator's scope",
                        session.category
                    ),
                )
                .await;
            }
            if p == Permission::Replay
                && session.kind.is_confidential()
                && !actor.role.may_see_confidential()
            {
                return refuse(
                    "confidential",
                    format!("session {id} is a confidential evaluation session: only regulators and discipline officers may replay it"),
                )
                .await;
            }
        }
    }
    req.extensions_mut().insert(actor.clone());
    let response = next.run(req).await;
    if unsafe_method && response.extensions().get::<Audited>().is_none() {
        let status = response.status();
        let outcome = if status.is_success() {
            audit::Outcome::Allowed
        } else {
            audit::Outcome::Failed(format!("HTTP {}", status.as_u16()))
        };
        if let Err(e) = audit::Event::new(&actor.actor(&address), rule.action)
            .target(&target)
            .outcome(outcome)
            .append(&s.pool)
            .await
        {
            tracing::error!(error = %e, action = rule.action, "audit entry not written");
        }
    }
    response
}

/// The session id of `/api/v1/sessions/{id}/…` routes.
fn session_in_path(template: &str, path: &str) -> Option<String> {
    template.strip_prefix("/api/v1/sessions/{id}")?;
    path.split('/').nth(4).map(|s| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .to_string()
    })
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

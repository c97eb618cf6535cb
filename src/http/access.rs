//! Who is asking, and may they: every routed request passes `authorize`. One table, `POLICY`,
//! names what each endpoint needs; a route missing from it is refused (deny by default). After
//! the handler, a change that the handler did not audit itself gets one generic audit entry, so
//! every mutating request leaves exactly one.

use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::policy::{Access, Rule, find_rule};
use crate::audit;
use crate::http::{ApiError, AppState};
use crate::identity::caller::{Caller, Via};
use crate::identity::{logins, tokens, users};

/// The caller, if any: never rejects (public routes have none).
pub struct CurrentActor(pub Option<Caller>);

impl CurrentActor {
    /// The trading categories the caller may see (all, for routes without a caller).
    pub fn scope(&self) -> crate::identity::caller::Scope {
        self.0
            .as_ref()
            .map_or(crate::identity::caller::Scope::All, |c| c.scope())
    }

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

/// The answer to a change the domain refused: a `Forbidden` from `evidence::access` has been
/// audited there (with the session), so the middleware adds no second entry.
pub fn audited_refusal(e: crate::error::CoreError) -> Response {
    let audited = matches!(e, crate::error::CoreError::Forbidden { .. });
    let mut response = ApiError::from(e).into_response();
    if audited {
        response.extensions_mut().insert(Audited);
    }
    response
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
            .map_err(ApiError::internal)?
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
            .map_err(ApiError::internal)?
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
    let Some(u) = users::by_id(pool, &user_id)
        .await
        .map_err(ApiError::internal)?
    else {
        return Ok(None);
    };
    if u.disabled {
        return Ok(None);
    }
    // An integration's token is not a person at a browser: the restrictions are the person's.
    let restriction = match via {
        Via::Token { .. } => None,
        Via::Browser { .. } => u.restriction(),
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

/// The middleware: find the route's rule, authenticate, check the request against the rule
/// (refusals are audited), run the handler, and audit a change the handler did not audit itself.
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
    let asked = Asked {
        address: client_address(&req),
        target: req.uri().path().to_string(),
        changes: !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS),
    };
    let (caller, restriction) = match authenticate(&s, req.headers()).await {
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
    let checked = check_csrf(&caller, &asked, req.headers())
        .and_then(|()| check_restriction(restriction, rule))
        .and_then(|()| check_permission(&caller, rule));
    let checked = match checked {
        Ok(()) => check_session_scope(&s, &caller, rule, &path, &asked.target).await,
        refused => refused,
    };
    if let Err(refusal) = checked {
        return refuse(&s, rule, &caller, &asked, refusal).await;
    }
    req.extensions_mut().insert(caller.clone());
    let response = next.run(req).await;
    if asked.changes && response.extensions().get::<Audited>().is_none() {
        audit_change(&s, rule, &caller, &asked, response.status()).await;
    }
    response
}

/// What the request asks, as the audit trail names it.
struct Asked {
    address: String,
    target: String,
    /// Not GET, HEAD or OPTIONS: the request changes something, and CSRF and auditing apply.
    changes: bool,
}

/// Why a request is refused: a stable code and a sentence for the caller.
struct Refusal {
    code: &'static str,
    message: String,
}

impl Refusal {
    fn new(code: &'static str, message: impl Into<String>) -> Refusal {
        Refusal {
            code,
            message: message.into(),
        }
    }
}

/// A refusal is audited (outcome `denied: <code>`) and answered 403. On a `/sessions/{id}/…`
/// route the entry names the session, so that the session's own trail shows who was turned
/// away from its evidence.
async fn refuse(s: &AppState, rule: &Rule, caller: &Caller, asked: &Asked, r: Refusal) -> Response {
    let session = match session_in_path(rule.path, &asked.target) {
        Some(id) => crate::ledger::index::session(&s.pool, &id)
            .await
            .ok()
            .flatten(),
        None => None,
    };
    let actor = caller.actor(&asked.address);
    let mut event = audit::Event::new(&actor, rule.action)
        .target(&asked.target)
        .outcome(audit::Outcome::Denied(r.code.into()));
    if let Some(session) = &session {
        event = event
            .session(&session.id, &session.project_code)
            .flagged(session.confidential);
    }
    let _ = event.append(&s.pool).await;
    ApiError::new(StatusCode::FORBIDDEN, r.code, r.message).into_response()
}

/// The generic entry of a change whose handler wrote none, with its HTTP outcome.
async fn audit_change(
    s: &AppState,
    rule: &Rule,
    caller: &Caller,
    asked: &Asked,
    status: StatusCode,
) {
    let outcome = if status.is_success() {
        audit::Outcome::Allowed
    } else {
        audit::Outcome::Failed(format!("HTTP {}", status.as_u16()))
    };
    if let Err(e) = audit::Event::new(&caller.actor(&asked.address), rule.action)
        .target(&asked.target)
        .outcome(outcome)
        .append(&s.pool)
        .await
    {
        tracing::error!(error = %e, action = rule.action, "audit entry not written");
    }
}

/// Changes from a browser session carry the CSRF token given at login.
fn check_csrf(caller: &Caller, asked: &Asked, headers: &HeaderMap) -> Result<(), Refusal> {
    let Via::Browser { csrf_token } = &caller.via else {
        return Ok(());
    };
    if !asked.changes {
        return Ok(());
    }
    let sent = headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if sent.is_empty() || !constant_time_eq(sent.as_bytes(), csrf_token.as_bytes()) {
        return Err(Refusal::new(
            "csrf_failed",
            "changes from a browser session need the X-CSRF-Token header given at login",
        ));
    }
    Ok(())
}

/// An account that must first change its password or enrol TOTP can do only that.
fn check_restriction(restriction: Option<&'static str>, rule: &Rule) -> Result<(), Refusal> {
    match restriction {
        Some(code) if !WHILE_RESTRICTED.contains(&rule.action) => {
            let why = if code == "password_change_required" {
                "change the one-time password first (POST /api/v1/auth/password)"
            } else {
                "enrol a TOTP second factor first (POST /api/v1/auth/totp/setup, then confirm)"
            };
            Err(Refusal::new(code, why))
        }
        _ => Ok(()),
    }
}

/// The role (and a token's scope) has the rule's permission.
fn check_permission(caller: &Caller, rule: &Rule) -> Result<(), Refusal> {
    match rule.access {
        Access::Needs(p) if !caller.can(p) => Err(Refusal::new(
            "forbidden",
            format!(
                "the {} role{} may not {}",
                caller.role.as_str(),
                if matches!(caller.via, Via::Token { .. }) {
                    " (or this token's scope)"
                } else {
                    ""
                },
                p.as_str()
            ),
        )),
        _ => Ok(()),
    }
}

/// On `/sessions/{id}/…` routes: the session is in the caller's trading categories
/// (`Caller::sees_session`). Who may read a confidential session's media is decided by the
/// handler's domain call (`evidence::access::may_read`), which audits it with the session.
async fn check_session_scope(
    s: &AppState,
    caller: &Caller,
    rule: &Rule,
    path: &str,
    target: &str,
) -> Result<(), Refusal> {
    let Access::Needs(_) = rule.access else {
        return Ok(());
    };
    let Some(id) = session_in_path(path, target) else {
        return Ok(());
    };
    let Some(session) = crate::ledger::index::session(&s.pool, &id)
        .await
        .ok()
        .flatten()
    else {
        return Ok(()); // the handler answers 404
    };
    caller
        .sees_session(&session)
        .map_err(|(code, message)| Refusal::new(code, message))
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

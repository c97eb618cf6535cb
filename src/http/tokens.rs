//! API tokens over HTTP: list, issue (scoped, expiring) and revoke one's own.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use axum::{Extension, Json};
use serde::Deserialize;

use crate::http::access::Audited;
use crate::http::{ApiError, ApiJson, AppState, ClientAddr};
use crate::identity::caller::{Caller, Via};
use crate::identity::roles::Permission;
use crate::identity::tokens;

/// This resource's handlers, by the action of their rule in `policy::POLICY` (which alone
/// says their method, path and access).
pub(super) fn endpoint(action: &str, method: MethodFilter) -> Option<MethodRouter<AppState>> {
    Some(match action {
        "tokens_list" => on(method, list_tokens),
        "token_issue" => on(method, issue_token),
        "token_revoke" => on(method, revoke_token),
        _ => return None,
    })
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

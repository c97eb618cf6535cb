//! The HTTP face of the server: `app(state)` builds the whole router; each module contributes its
//! routes. Never sees GStreamer types; errors leave as `{"error": {"code", "message"}}`.

pub mod access;
mod audit;
mod error;
mod exports;
mod identity;
mod live;
mod pages;
mod recording;
mod replay;
mod retention;
mod serve;

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};

pub use error::{ApiError, ApiJson, ApiQuery, ClientAddr};
pub use serve::serve;

use crate::db::Pool;
use crate::ledger::manifest::Signer;
use crate::services::Services;
use crate::sessions::Core;
use crate::store::Store;

/// What handlers reach: the shared parts directly, the session lifecycle for start and stop.
#[derive(Clone)]
pub struct AppState {
    pub pool: Pool,
    pub store: Store,
    pub signer: Signer,
    /// Starts, stops and lists sessions; owns the recorders.
    pub sessions: Arc<Core>,
    /// Export jobs run in the background and are fetched when done.
    pub exports: Arc<exports::ExportJobs>,
    pub identity: Arc<crate::config::IdentityConfig>,
    /// Session cookies carry `Secure` when the server speaks TLS.
    pub secure_cookies: bool,
    /// The retention rules in force.
    pub policies: Arc<crate::retention::policy::Policies>,
    pub fixity: Arc<crate::retention::fixity::FixityState>,
    /// Re-hash speed of a requested fixity run.
    pub fixity_bytes_per_second: f64,
    /// The store's configuration when it enforces retention itself (S3 Object Lock).
    pub worm: Option<Arc<crate::config::StoreConfig>>,
}

impl AppState {
    pub fn new(services: Services, config: &crate::config::Config) -> AppState {
        let core = services.core;
        AppState {
            pool: core.pool.clone(),
            store: core.store.clone(),
            signer: core.signer.clone(),
            sessions: core,
            exports: Default::default(),
            identity: Arc::new(config.identity.clone()),
            secure_cookies: config.http.tls_cert.is_some(),
            policies: services.policies,
            fixity: services.fixity,
            fixity_bytes_per_second: services.fixity_bytes_per_second,
            worm: services.worm,
        }
    }
}

pub fn app(state: AppState) -> Router {
    let api = Router::new()
        .route("/keys", get(keys))
        .merge(recording::routes())
        .merge(replay::routes())
        .merge(live::routes())
        .merge(exports::routes())
        .merge(crate::http::audit::routes())
        .merge(crate::http::identity::routes())
        .merge(crate::http::retention::routes());
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .nest("/api/v1", api)
        .merge(crate::http::pages::routes())
        // After routing, so that the access rule is found by the matched route.
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::http::access::authorize,
        ))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(refuse_nul_in_address))
        .with_state(state)
}

async fn healthz(State(s): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    sqlx::query("SELECT 1")
        .execute(&s.pool)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "health check: database unreachable");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "database_unavailable",
                "database unreachable",
            )
        })?;
    Ok(Json(serde_json::json!({ "status": "ok" })))
}

async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    use std::sync::atomic::Ordering::Relaxed;
    let mut text = s.sessions.metrics.render();
    text.push_str(&format!(
        "# HELP witness_fixity_failures Objects missing or altered in the last fixity run.\n# TYPE witness_fixity_failures gauge\nwitness_fixity_failures {}\n# HELP witness_fixity_runs_total Fixity runs completed.\n# TYPE witness_fixity_runs_total counter\nwitness_fixity_runs_total {}\n",
        s.fixity.last_failures.load(Relaxed),
        s.fixity.runs.load(Relaxed)
    ));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

/// The public keys that sign manifests, for anyone verifying offline.
async fn keys(State(s): State<AppState>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "keys": [{ "algorithm": "ed25519", "public_key": s.signer.public_key_hex(), "use": "session manifests" }]
    }))
}

/// `%00` decodes to a NUL no identifier, query value or database text may hold: refused before
/// routing, for paths and queries alike.
async fn refuse_nul_in_address(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let address = req.uri().to_string().to_ascii_lowercase();
    if address.contains("%00") {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the address contains an encoded NUL (%00)",
        )
        .into_response();
    }
    next.run(req).await
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such endpoint; see docs/api.md",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this endpoint",
    )
}

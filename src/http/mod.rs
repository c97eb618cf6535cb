//! The HTTP face of the server: `app(state)` builds the whole router; each module contributes its
//! routes. Never sees GStreamer types; errors leave as `{"error": {"code", "message"}}`.

pub mod access;
mod audit;
mod auth;
mod bookings;
mod error;
mod exports;
mod live;
mod pages;
pub mod policy;
mod projects;
mod replay;
mod retention;
mod rooms;
mod routes;
mod serve;
mod sessions;
mod status;
mod tokens;
mod users;
mod witness_record;

use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;

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
    /// A viewing of evidence closes after this long without a read (`evidence::access`).
    pub viewing_idle_us: i64,
    /// How long an approved confidential-access grant lasts (`evidence::grants`).
    pub confidential_grant_us: i64,
    /// How long a finished export job, and its scratch files, is kept for download.
    pub export_job_ttl: std::time::Duration,
    /// Password checks: on the blocking pool, a bounded number at once.
    pub hasher: Arc<crate::identity::password::Hasher>,
    /// Session cookies carry `Secure` when the server speaks TLS.
    pub secure_cookies: bool,
    /// The retention rules in force.
    pub policies: Arc<crate::retention::policy::Policies>,
    pub fixity: Arc<crate::retention::fixity::FixityState>,
    /// Re-hash speed of a requested fixity run.
    pub fixity_bytes_per_second: f64,
    /// The store's configuration when it enforces retention itself (S3 Object Lock).
    pub worm: Option<Arc<crate::config::StoreConfig>>,
    /// When booked rooms start recording, and when they raise the alarm (`[bookings]`).
    pub booking_timing: crate::bookings::scheduler::Timing,
    /// Regulators and discipline officers may supervise confidential rooms live
    /// (`[evidence] confidential_live`).
    pub live_supervision: bool,
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
            viewing_idle_us: config.evidence.viewing_idle_us(),
            confidential_grant_us: config.evidence.confidential_grant_us(),
            export_job_ttl: std::time::Duration::from_secs_f64(
                config.workload.export_job_minutes * 60.0,
            ),
            hasher: Arc::new(crate::identity::password::Hasher::new(
                config.identity.login_permits(),
                std::time::Duration::from_secs(1),
            )),
            secure_cookies: config.http.tls_cert.is_some(),
            policies: services.policies,
            fixity: services.fixity,
            fixity_bytes_per_second: services.fixity_bytes_per_second,
            worm: services.worm,
            booking_timing: crate::bookings::scheduler::Timing::of(&config.bookings),
            live_supervision: config.evidence.confidential_live
                == crate::config::ConfidentialLive::Supervision,
        }
    }
}

pub fn app(state: AppState) -> Router {
    routes::router()
        // After routing, so that the access rule is found by the matched route.
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            access::authorize,
        ))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(refuse_nul_in_address))
        .with_state(state)
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

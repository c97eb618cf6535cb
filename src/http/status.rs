//! What the server says about itself: health, Prometheus metrics, and the public keys that
//! sign manifests.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{MethodFilter, MethodRouter, on};

use super::{ApiError, AppState};

/// This resource's handlers, by the action of their rule in `policy::POLICY`.
pub(super) fn endpoint(action: &str, method: MethodFilter) -> Option<MethodRouter<AppState>> {
    Some(match action {
        "health" => on(method, healthz),
        "metrics" => on(method, metrics),
        "keys" => on(method, keys),
        _ => return None,
    })
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
    text.push_str(&s.sessions.disk.render_metrics());
    text.push_str(&s.sessions.timestamps.render_metrics());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

/// The server's keys, current and retired, with their ids and fingerprints: what people pin
/// to verify packages offline.
async fn keys(State(s): State<AppState>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "current": s.signer.key_id(),
        "use": "session manifests, evidence packages, audit checkpoints",
        "keys": s.signer.views(),
    }))
}

//! `witness serve`'s HTTP side: the router on HTTPS (with a configured certificate) or loopback
//! HTTP, and an orderly shutdown that closes every open segment.

use anyhow::Context;

use super::AppState;
use crate::audit;
use crate::config::Config;
use crate::services::Services;

/// Serves HTTPS (with a configured certificate) or loopback HTTP until SIGINT/SIGTERM, then
/// closes every open segment before exiting.
pub async fn serve(config: &Config, services: Services) -> anyhow::Result<()> {
    let state = AppState::new(services, config);
    let core = state.sessions.clone();
    let app = super::app(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    let address = config.http.listen;
    if let (Some(cert), Some(key)) = (&config.http.tls_cert, &config.http.tls_key) {
        let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
            .await
            .with_context(|| {
                format!(
                    "reading the TLS certificate {} and key {}",
                    cert.display(),
                    key.display()
                )
            })?;
        let handle = axum_server::Handle::new();
        let stopper = handle.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            stopper.graceful_shutdown(Some(std::time::Duration::from_secs(10)));
        });
        tracing::info!(%address, "serving HTTPS");
        axum_server::bind_rustls(address, tls)
            .handle(handle)
            .serve(app)
            .await
            .with_context(|| format!("HTTPS server on {address}"))?;
    } else {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("cannot listen on {address}"))?;
        tracing::info!(%address, "serving HTTP");
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown_signal())
            .await
            .context("HTTP server")?;
    }
    tracing::info!("shutting down: closing open segments");
    core.shutdown().await;
    if let Err(e) = audit::checkpoint::make(&core.pool, &core.signer).await {
        tracing::warn!(error = %e, "final audit checkpoint failed");
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

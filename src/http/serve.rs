//! `witness serve`'s HTTP side: the router on HTTPS (with a configured certificate) or loopback
//! HTTP, the limits every listener has against slow or many clients (header timeout, request
//! body deadline, connection limit), and an orderly shutdown that closes every open segment.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::Context;
use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use axum_server::accept::{Accept, DefaultAcceptor};
use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::AppState;
use super::error::BodyTimeout;
use crate::audit;
use crate::config::{Config, HttpConfig};
use crate::services::Services;

/// The hyper settings and acceptor every listener shares: a connection that has not sent a
/// whole request head within `header_timeout_seconds` is closed (hyper's header read timeout,
/// and axum-server's first-request timeout, which also covers the bytes read before the
/// protocol is known); at most `max_connections` connections are open, a connection beyond
/// that is closed at once.
fn limited<A>(
    mut server: axum_server::Server<std::net::SocketAddr, A>,
    http: &HttpConfig,
) -> axum_server::Server<std::net::SocketAddr, A> {
    let header = Duration::from_secs_f64(http.header_timeout_seconds);
    server
        .http_builder()
        .http1()
        .header_read_timeout(Some(header));
    server.first_request_timeout(header)
}

/// Serves HTTPS (with a configured certificate) or loopback HTTP until SIGINT/SIGTERM, then
/// closes every open segment before exiting.
pub async fn serve(config: &Config, services: Services) -> anyhow::Result<()> {
    let state = AppState::new(services, config);
    let core = state.sessions.clone();
    let body_deadline = Duration::from_secs_f64(config.http.request_timeout_seconds);
    let app = super::app(state)
        .layer(axum::middleware::from_fn(move |req, next| {
            request_deadline(body_deadline, req, next)
        }))
        .into_make_service_with_connect_info::<std::net::SocketAddr>();
    let address = config.http.listen;
    let connections = Arc::new(Semaphore::new(config.http.max_connections));
    let handle = axum_server::Handle::new();
    let stopper = handle.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        stopper.graceful_shutdown(Some(Duration::from_secs(10)));
    });
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
        // The limit is taken before the TLS handshake, which has its own timeout (10 s).
        let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(tls)
            .acceptor(ConnectionLimit::new(DefaultAcceptor, connections));
        tracing::info!(%address, "serving HTTPS");
        limited(axum_server::bind(address).acceptor(acceptor), &config.http)
            .handle(handle)
            .serve(app)
            .await
            .with_context(|| format!("HTTPS server on {address}"))?;
    } else {
        let listener = std::net::TcpListener::bind(address)
            .with_context(|| format!("cannot listen on {address}"))?;
        let server = axum_server::from_tcp(listener)
            .with_context(|| format!("cannot listen on {address}"))?
            .acceptor(ConnectionLimit::new(DefaultAcceptor, connections));
        tracing::info!(%address, "serving HTTP");
        limited(server, &config.http)
            .handle(handle)
            .serve(app)
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

/// The request body must have arrived `limit` after the head: a body still trickling in then
/// ends in an error the extractors answer 408 `request_timeout`. The answer itself is not
/// timed (a download streams as long as it takes; a stop waits for its last segments).
async fn request_deadline(limit: Duration, req: Request, next: Next) -> Response {
    let deadline = tokio::time::Instant::now() + limit;
    let req = req.map(|body| {
        let state = Some((
            body.into_data_stream(),
            Box::pin(tokio::time::sleep_until(deadline)),
        ));
        Body::from_stream(futures::stream::unfold(state, move |state| async move {
            let (mut data, mut sleep) = state?;
            tokio::select! {
                biased;
                chunk = data.next() => match chunk? {
                    Ok(bytes) => Some((Ok(bytes), Some((data, sleep)))),
                    Err(e) => Some((Err(axum::BoxError::from(e)), None)),
                },
                _ = &mut sleep => Some((Err(axum::BoxError::from(BodyTimeout(limit))), None)),
            }
        }))
    });
    next.run(req).await
}

/// At most as many open connections as the semaphore has permits; one beyond is closed at
/// once (before a TLS handshake, when wrapped by the TLS acceptor).
#[derive(Clone)]
struct ConnectionLimit<A> {
    inner: A,
    permits: Arc<Semaphore>,
}

impl<A> ConnectionLimit<A> {
    fn new(inner: A, permits: Arc<Semaphore>) -> Self {
        ConnectionLimit { inner, permits }
    }
}

impl<A, I, S> Accept<I, S> for ConnectionLimit<A>
where
    A: Accept<I, S> + Clone + Send + 'static,
    A::Future: Send + 'static,
    I: Send + 'static,
    S: Send + 'static,
{
    type Stream = Counted<A::Stream>;
    type Service = A::Service;
    type Future = Pin<Box<dyn Future<Output = io::Result<(Self::Stream, Self::Service)>> + Send>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        let permit = self.permits.clone().try_acquire_owned();
        let inner = self.inner.clone();
        Box::pin(async move {
            let Ok(permit) = permit else {
                tracing::warn!("connection limit reached: a new connection is closed");
                return Err(io::Error::other("connection limit reached"));
            };
            let (stream, service) = inner.accept(stream, service).await?;
            Ok((
                Counted {
                    stream,
                    _permit: permit,
                },
                service,
            ))
        })
    }
}

/// A connection holding its permit until it closes.
struct Counted<T> {
    stream: T,
    _permit: OwnedSemaphorePermit,
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

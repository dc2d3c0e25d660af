//! The accept loop: HTTP/1.1 and HTTP/2 (h2c by prior knowledge, h2 over TLS by ALPN) on one
//! port, with the connection-level limits a slow or hostile client meets first.
//!
//! - A request head must arrive within `header_read_timeout` and fit in `max_header_bytes`
//!   (HTTP/1.1: the connection is closed; HTTP/2: the header list size is advertised and
//!   enforced by the peer's stack and ours). A TLS handshake has the same deadline.
//! - Graceful shutdown: the listener closes at once, idle connections close, requests in flight
//!   finish, for up to the grace period.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use blobs::MappedRegions;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::Peer;
use crate::zero_copy::ZeroCopyStream;

/// Connection-level settings.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Longest a client may take to send a request head (and to finish a TLS handshake).
    pub header_read_timeout: Duration,
    /// Largest request head accepted (HTTP/1.1 buffer, HTTP/2 header list).
    pub max_header_bytes: usize,
    /// Serve HTTP/2 (h2c with prior knowledge, h2 over TLS) as well as HTTP/1.1.
    pub http2: bool,
    /// Requests in flight finish within this after shutdown starts; then connections are cut.
    pub shutdown_grace: Duration,
    /// Copy blob bytes to peers on this host through a small send buffer instead of sendfile
    /// ([`ZeroCopyStream::new`] says why).
    pub copy_to_local_peers: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 64 * 1024,
            http2: true,
            shutdown_grace: Duration::from_secs(30),
            copy_to_local_peers: true,
        }
    }
}

/// Counters of the connection layer, shared with `/metrics`.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    pub accepted: AtomicU64,
    pub closed: AtomicU64,
    pub tls_failed: AtomicU64,
}

impl ConnectionStats {
    pub(crate) fn render_metrics(&self, out: &mut String) {
        use crate::prom::single;
        let accepted = self.accepted.load(Ordering::Relaxed);
        single(out, "customs_connections_accepted_total", "counter", "TCP connections accepted.", accepted);
        single(out, "customs_connections_open", "gauge", "Connections open now.", self.open());
        let failed = self.tls_failed.load(Ordering::Relaxed);
        single(out, "customs_tls_handshake_failures_total", "counter", "TLS handshakes that failed or timed out.", failed);
    }

    fn open(&self) -> usize {
        self.accepted.load(Ordering::Relaxed).saturating_sub(self.closed.load(Ordering::Relaxed)) as usize
    }
}

/// How the server stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum Stopped {
    /// Every request in flight finished.
    Drained,
    /// The grace period ran out with connections still busy; they were cut.
    GraceExpired { connections: usize },
}

/// One listening socket and what it serves.
pub struct Server {
    pub listener: TcpListener,
    pub regions: Arc<MappedRegions>,
    pub app: Router,
    pub config: ServerConfig,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub stats: Arc<ConnectionStats>,
}

impl Server {
    /// Serves until `shutdown` resolves, then drains.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Stopped {
        let Server { listener, regions, app, config, tls, stats } = self;
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(config.header_read_timeout)
            .max_buf_size(config.max_header_bytes.max(8192))
            .keep_alive(true);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX))
            .max_concurrent_streams(256)
            .keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(20));
        let builder = Arc::new(if config.http2 { builder } else { builder.http1_only() });
        let tls = tls.map(tokio_rustls::TlsAcceptor::from);
        let graceful = GracefulShutdown::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let (tcp, addr) = tokio::select! {
                biased;
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = tcp.set_nodelay(true);
            stats.accepted.fetch_add(1, Ordering::Relaxed);
            let stream = ZeroCopyStream::new(tcp, regions.clone(), config.copy_to_local_peers);
            let connection = Connection {
                builder: builder.clone(),
                app: app.clone(),
                peer: addr,
                watcher: graceful.watcher(),
                stats: stats.clone(),
            };
            let tls = tls.clone();
            let handshake_deadline = config.header_read_timeout;
            tokio::spawn(async move {
                match tls {
                    None => connection.serve(stream, false).await,
                    Some(acceptor) => match tokio::time::timeout(handshake_deadline, acceptor.accept(stream)).await {
                        Ok(Ok(tls_stream)) => connection.serve(tls_stream, true).await,
                        Ok(Err(e)) => connection.failed_handshake(&e.to_string()),
                        Err(_) => connection.failed_handshake("timed out"),
                    },
                }
            });
        }
        drop(listener);
        let open = graceful.count();
        tracing::info!(connections = open, grace_secs = config.shutdown_grace.as_secs(), "listener closed; draining");
        match tokio::time::timeout(config.shutdown_grace, graceful.shutdown()).await {
            Ok(()) => Stopped::Drained,
            Err(_) => Stopped::GraceExpired { connections: stats.open() },
        }
    }
}

/// What one accepted connection needs.
struct Connection {
    builder: Arc<auto::Builder<TokioExecutor>>,
    app: Router,
    peer: SocketAddr,
    watcher: hyper_util::server::graceful::Watcher,
    stats: Arc<ConnectionStats>,
}

impl Connection {
    async fn serve<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(self, stream: S, tls: bool) {
        let Connection { builder, app, peer, watcher, stats } = self;
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(Peer(peer)));
            if tls {
                request.extensions_mut().insert(crate::Secure);
            }
            app.clone().oneshot(request.map(axum::body::Body::new))
        });
        let served = watcher.watch(builder.serve_connection(TokioIo::new(stream), service)).await;
        if let Err(e) = served {
            // Clients that go away mid-request, and heads that time out or overflow, end here.
            tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
        }
        stats.closed.fetch_add(1, Ordering::Relaxed);
    }

    fn failed_handshake(self, why: &str) {
        tracing::debug!(peer = %self.peer, error = why, "TLS handshake failed");
        self.stats.tls_failed.fetch_add(1, Ordering::Relaxed);
        self.stats.closed.fetch_add(1, Ordering::Relaxed);
    }
}

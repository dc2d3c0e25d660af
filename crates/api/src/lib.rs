//! HTTP for customs.
//!
//! - [`router`] builds the axum `Router`: `/v2` (every path parsed into one [`Endpoint`] and
//!   dispatched in one `match`), `/healthz` and `/readyz`.
//! - [`error`] holds the one map from errors to responses.
//! - [`ZeroCopyListener`]: connections that send mapped blob windows with sendfile.
//!
//! Architecture Invariant: handlers are thin: parse, one `Registry` call, convert. No SQL, no
//! storage, no policy here.

mod admission;
mod endpoint;
mod error;
mod rate;
mod v2;
mod zero_copy;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{any, get};
use registry::Registry;

pub use admission::{Admission, AdmissionConfig, ClassLimit, RouteClass};
pub use endpoint::Endpoint;
pub use error::ApiError;
pub use rate::{RateConfig, RateLimit, RateLimiter};
pub use zero_copy::{Peer, ZeroCopyListener, ZeroCopyStream};

/// What every handler shares.
pub(crate) struct App {
    pub(crate) registry: Arc<Registry>,
    pub(crate) admission: Admission,
    pub(crate) rate: RateLimiter,
}

/// The limits the HTTP layer applies before any work is done.
#[derive(Clone, Debug, Default)]
pub struct HttpLimits {
    /// Concurrency and queue per route class, for everyone together.
    pub admission: AdmissionConfig,
    /// Request rate per route class, per client.
    pub rate: RateConfig,
}

/// The whole HTTP surface over one registry. Serve it with
/// `into_make_service_with_connect_info::<Peer>()` so that per-client limits know the client.
pub fn router(registry: Arc<Registry>, limits: &HttpLimits) -> Router {
    let app = Arc::new(App {
        registry,
        admission: Admission::new(&limits.admission),
        rate: RateLimiter::new(limits.rate.clone()),
    });
    Router::new()
        .route("/v2", any(v2::dispatch))
        .route("/v2/", any(v2::dispatch))
        .route("/v2/{*rest}", any(v2::dispatch))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(app)
}

/// Prometheus text format.
async fn metrics(State(app): State<Arc<App>>) -> ([(http::HeaderName, &'static str); 1], String) {
    let mut out = String::new();
    app.admission.render_metrics(&mut out);
    app.rate.render_metrics(&mut out);
    ([(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}

/// Ready only when both the records and the bytes answer.
async fn readyz(State(app): State<Arc<App>>) -> (StatusCode, String) {
    match app.registry.ready().await {
        Ok(()) => (StatusCode::OK, "ready".into()),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}")),
    }
}

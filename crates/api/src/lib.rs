//! HTTP for customs.
//!
//! - [`router`] builds the axum `Router`: `/v2` (every path parsed into one [`Endpoint`] and
//!   dispatched in one `match`), `/healthz` and `/readyz`.
//! - [`error`] holds the one map from errors to responses.
//! - [`ZeroCopyListener`]: connections that send mapped blob windows with sendfile.
//!
//! Architecture Invariant: handlers are thin: parse, one `Registry` call, convert. No SQL, no
//! storage, no policy here.

mod endpoint;
mod error;
mod v2;
mod zero_copy;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{any, get};
use registry::Registry;

pub use endpoint::Endpoint;
pub use error::ApiError;
pub use zero_copy::{ZeroCopyListener, ZeroCopyStream};

/// The whole HTTP surface over one registry.
pub fn router(registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/v2", any(v2::dispatch))
        .route("/v2/", any(v2::dispatch))
        .route("/v2/{*rest}", any(v2::dispatch))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(registry)
}

/// Ready only when both the records and the bytes answer.
async fn readyz(State(registry): State<Arc<Registry>>) -> (StatusCode, String) {
    match registry.ready().await {
        Ok(()) => (StatusCode::OK, "ready".into()),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}")),
    }
}

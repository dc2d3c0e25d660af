//! HTTP for customs.
//!
//! - [`router`] builds the axum `Router`: `/v2` (every path parsed into one [`Endpoint`] and
//!   dispatched in one `match`), `/healthz` and `/readyz`.
//! - [`error`] holds the one map from errors to responses.
//! - [`Server`]: the accept loop (HTTP/1.1, h2c, h2 over TLS), connection limits, graceful drain.
//! - [`ZeroCopyStream`]: connections that send mapped blob windows with sendfile.
//! - [`ReloadingCert`]: rustls key pair re-read when its files change.
//!
//! Architecture Invariant: handlers are thin: parse, one `Registry` call, convert. No SQL, no
//! storage, no policy here.

mod admission;
mod authn;
mod authorize;
mod endpoint;
mod findings;
mod manage;
mod prom;
mod quotas;
mod error;
mod rate;
mod server;
mod telemetry;
mod tls;
mod token;
mod ui;
mod uploads;
mod v2;
mod zero_copy;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{any, get};
use registry::Registry;

pub use admission::{Admission, AdmissionConfig, CLASSES, ClassLimit, RouteClass};
pub use authn::AuthSettings;
pub use endpoint::Endpoint;
pub use error::ApiError;
pub use rate::{ClientKey, RateConfig, RateLimit, RateLimiter};
pub use server::{ConnectionStats, Server, ServerConfig, Stopped};
pub use tls::{ReloadingCert, TlsFiles};
pub use uploads::UploadLimits;
pub use zero_copy::{Peer, ZeroCopyStream};

/// In a request's extensions when it came over TLS (challenges then name an `https` realm).
#[derive(Clone, Copy, Debug)]
pub struct Secure;

/// What every handler shares.
pub(crate) struct App {
    pub(crate) registry: Arc<Registry>,
    pub(crate) admission: Admission,
    pub(crate) rate: RateLimiter,
    pub(crate) upload_limits: UploadLimits,
    pub(crate) upload_slots: uploads::UploadSlots,
    pub(crate) connections: Arc<ConnectionStats>,
    pub(crate) telemetry: Arc<telemetry::Telemetry>,
    /// `None`: authentication is off and everyone may do everything.
    pub(crate) authn: Option<authn::Authn>,
    /// Pull-through caches; `None` when no upstream is configured.
    pub(crate) mirror: Option<Arc<mirror::Mirror>>,
}

impl App {
    /// Lets a request of `class` from `client` in: its rate budget, an upload slot when it is an
    /// upload, and a slot in its class (held until the response has been sent).
    pub(crate) async fn admit(&self, class: RouteClass, client: Option<ClientKey>) -> Result<telemetry::Held, ApiError> {
        self.rate.check(class, client.clone()).map_err(ApiError::RateLimited)?;
        let upload_slot = match class {
            RouteClass::Upload => self.upload_slots.take(client.as_ref()).map_err(|()| ApiError::TooManyClientUploads)?,
            _ => None,
        };
        let permit = self.admission.enter(class).await.map_err(ApiError::Shed)?;
        Ok(telemetry::Held { permit: Some(permit), upload_slot })
    }

    /// Turns a refusal that needs a challenge into one with its `WWW-Authenticate` header.
    pub(crate) fn challenge(&self, e: ApiError, headers: &http::HeaderMap, secure: bool) -> ApiError {
        match (e, &self.authn) {
            (ApiError::Unauthorized { message, error, scope }, Some(authn)) => {
                let realm = authn.realm(headers, secure);
                let www_authenticate = auth::challenge(&realm, authn.service(), scope.as_deref(), error);
                ApiError::Challenge { message, www_authenticate }
            }
            (e, _) => e,
        }
    }
}

/// What the HTTP surface serves.
pub struct Services {
    pub registry: Arc<Registry>,
    /// `None` turns authentication off.
    pub auth: Option<AuthSettings>,
    /// The [`Server`]'s connection counters, for `/metrics`.
    pub connections: Arc<ConnectionStats>,
    /// Pull-through caches for the names under their upstreams' prefixes.
    pub mirror: Option<Arc<mirror::Mirror>>,
}

/// The limits the HTTP layer applies before any work is done.
#[derive(Clone, Debug, Default)]
pub struct HttpLimits {
    /// Concurrency and queue per route class, for everyone together.
    pub admission: AdmissionConfig,
    /// Request rate per route class, per client.
    pub rate: RateConfig,
    /// Slowest acceptable request body; uploads running at once per client.
    pub uploads: UploadLimits,
}

/// The whole HTTP surface over one registry. [`Server`] puts each connection's [`Peer`] in the
/// requests, so that per-client limits know the client.
pub fn router(registry: Arc<Registry>, limits: &HttpLimits) -> Router {
    build(Services { registry, auth: None, connections: Arc::default(), mirror: None }, limits)
}

/// The whole HTTP surface: `/v2`, `/token` and `/api/v1` when authentication is on, health and
/// metrics.
pub fn build(services: Services, limits: &HttpLimits) -> Router {
    let Services { registry, auth, connections, mirror } = services;
    let app = Arc::new(App {
        registry,
        admission: Admission::new(&limits.admission),
        rate: RateLimiter::new(limits.rate.clone()),
        upload_limits: limits.uploads.clone(),
        upload_slots: uploads::UploadSlots::new(limits.uploads.max_per_client, limits.rate.max_clients),
        connections,
        telemetry: Arc::new(telemetry::Telemetry::new()),
        authn: auth.map(authn::Authn::new),
        mirror: mirror.filter(|m| !m.is_empty()),
    });
    Router::new()
        .route("/token", get(token::token).post(token::token))
        .route("/api/v1/images/{*rest}", any(findings::dispatch))
        .route("/api/v1/vulnerabilities/{*rest}", any(findings::dispatch))
        .route("/api/v1/packages", any(findings::dispatch))
        .route("/api/v1/waivers", any(findings::dispatch))
        .route("/api/v1/waivers/{*rest}", any(findings::dispatch))
        .route("/api/v1/quotas", any(quotas::dispatch))
        .route("/api/v1/quotas/{*rest}", any(quotas::dispatch))
        .route("/api/v1/{*rest}", any(manage::dispatch))
        .route("/ui", any(ui::dispatch))
        .route("/ui/", any(ui::dispatch))
        .route("/ui/{*rest}", any(ui::dispatch))
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
    app.telemetry.render_metrics(&mut out);
    render_registry_stats(&app.registry.stats().await, &mut out);
    app.admission.render_metrics(&mut out);
    app.rate.render_metrics(&mut out);
    app.upload_slots.render_metrics(&mut out);
    app.connections.render_metrics(&mut out);
    if let Some(authn) = &app.authn {
        authn.render_metrics(&mut out);
    }
    if let Some(mirror) = &app.mirror {
        render_mirror_stats(&mirror.stats, &mut out);
    }
    ([(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}

/// Ready only when both the records and the bytes answer.
async fn readyz(State(app): State<Arc<App>>) -> (StatusCode, String) {
    match app.registry.ready().await {
        Ok(()) => (StatusCode::OK, "ready".into()),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}")),
    }
}

fn render_mirror_stats(stats: &mirror::Stats, out: &mut String) {
    use std::sync::atomic::Ordering::Relaxed;
    let mut one = |name: &str, help: &str, value: &std::sync::atomic::AtomicU64| prom::single(out, name, "counter", help, value.load(Relaxed));
    one("customs_mirror_upstream_manifest_gets_total", "Manifest GETs sent to upstreams.", &stats.upstream_manifest_gets);
    one("customs_mirror_upstream_manifest_heads_total", "Manifest HEADs sent to upstreams to re-validate tags.", &stats.upstream_manifest_heads);
    one("customs_mirror_upstream_blob_gets_total", "Blob GETs sent to upstreams (resumed downloads count again).", &stats.upstream_blob_gets);
    one("customs_mirror_stale_served_total", "Manifests served from the cache because the upstream could not be asked.", &stats.stale_served);
    one("customs_mirror_joined_total", "Requests that joined a fetch already under way.", &stats.joined);
    one("customs_mirror_upstream_errors_total", "Upstream requests and downloads that failed.", &stats.upstream_errors);
    one("customs_mirror_evicted_images_total", "Cached images evicted.", &stats.evicted_images);
    one("customs_mirror_evicted_bytes_total", "Bytes deleted from the blob store by eviction.", &stats.evicted_bytes);
}

fn render_registry_stats(stats: &registry::RegistryStats, out: &mut String) {
    let mut one = |name: &str, kind: &str, help: &str, value: u64| prom::single(out, name, kind, help, value);
    one("customs_manifest_cache_hits_total", "counter", "Manifest reads answered from memory.", stats.manifest_cache_hits);
    one("customs_manifest_cache_misses_total", "counter", "Manifest reads that went to the records.", stats.manifest_cache_misses);
    one(
        "customs_single_flight_shared_total",
        "counter",
        "Manifest and blob lookups answered by an identical lookup already in flight.",
        stats.single_flight_shared,
    );
    if let Some(open) = stats.upload_sessions_open {
        one("customs_upload_sessions_open", "gauge", "Upload sessions open now.", open);
    }
    let gc = &stats.gc;
    one("customs_gc_passes_total", "counter", "Garbage collection passes completed.", stats.gc_passes);
    one("customs_gc_last_pass_timestamp_seconds", "gauge", "When the last garbage collection pass ended (0: none yet).", stats.gc_last_pass_ms / 1000);
    one("customs_gc_referrers_deleted_total", "counter", "Referrers deleted because their subject was gone.", gc.referrers as u64);
    one("customs_gc_links_deleted_total", "counter", "Blob links deleted because no manifest referenced them.", gc.links as u64);
    one("customs_gc_blobs_deleted_total", "counter", "Blobs deleted from the store because no record needed them.", gc.blobs as u64);
    one("customs_gc_bytes_deleted_total", "counter", "Bytes of the blobs garbage collection deleted.", gc.bytes);
    one("customs_retention_tags_deleted_total", "counter", "Tags deleted by retention policies.", stats.expired_tags);
    one("customs_retention_manifests_deleted_total", "counter", "Untagged manifests deleted by retention policies.", stats.expired_manifests);
    one("customs_scrub_passes_total", "counter", "Scrub passes completed.", stats.scrub_passes);
    one("customs_scrub_blobs_checked_total", "counter", "Blobs the scrub read back and hashed.", stats.scrub_blobs);
    one("customs_scrub_bytes_checked_total", "counter", "Bytes the scrub read back and hashed.", stats.scrub_bytes);
    one(
        "customs_blobs_damaged_total",
        "counter",
        "Blobs found damaged (not hashing to their digest, or missing) and made to read as absent until pushed again.",
        stats.scrub_damaged,
    );
    one("customs_scrub_unreadable_total", "counter", "Blobs the scrub could not read (I/O errors); tried again next pass.", stats.scrub_unreadable);
    if let Some(space) = &stats.space {
        one("customs_storage_free_bytes", "gauge", "Free bytes on the blob store's filesystem.", space.free);
        one(
            "customs_storage_reserve_bytes",
            "gauge",
            "Free bytes kept on the blob store's filesystem: below them, uploads are refused (storage.min_free_bytes).",
            space.reserve,
        );
    }
    if let Some(store) = &stats.store {
        render_store_stats(store, out);
    }
    prom::labelled(
        out,
        "customs_leads",
        "gauge",
        "Whether this process leads each background task for every replica sharing its records (1) or not (0), as of the task's last turn.",
        "task",
        meta::Task::ALL.iter().map(|t| (t.name(), u64::from(stats.leading.contains(t)))),
    );
    if !stats.quotas.is_empty() {
        let quotas = &stats.quotas;
        let series = |value: fn(&registry::QuotaUsage) -> u64| quotas.iter().map(move |q| (q.namespace.as_str(), value(q)));
        prom::labelled(out, "customs_quota_limit_bytes", "gauge", "Namespaces' storage quotas.", "namespace", series(|q| q.max_bytes));
        prom::labelled(
            out,
            "customs_quota_used_bytes",
            "gauge",
            "Bytes of the distinct blobs linked in each namespace with a quota.",
            "namespace",
            series(|q| q.used_bytes),
        );
    }
}

fn render_store_stats(store: &blobs::StoreStats, out: &mut String) {
    prom::labelled(
        out,
        "customs_storage_requests_total",
        "counter",
        "Requests to the blob store's service (S3), every attempt, by answer: a status class, or failed (no answer).",
        "answer",
        store.answered.iter().copied().chain([("failed", store.failed)]),
    );
    prom::single(
        out,
        "customs_storage_request_wait_seconds_total",
        "counter",
        "Time spent waiting for the blob store's service to answer, summed over requests.",
        store.wait_micros as f64 / 1e6,
    );
}

//! Admission control: every request belongs to a [`RouteClass`], and each class has its own
//! concurrency limit with a short bounded queue. Past it, a request is shed at once with 503 and
//! a `Retry-After` estimated from the queue, never left to time out.
//!
//! Classes are isolated from each other, so bulk blob transfers and uploads can never take the
//! slots that manifest reads (what kubelets need first) use. A permit is held until the response
//! body has been sent in full (see `telemetry::TrackedBody`), so a blob download counts for as
//! long as it streams.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::endpoint::Endpoint;

/// What kind of work a request is, for limits and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RouteClass {
    ManifestRead,
    BlobRead,
    Upload,
    Write,
    /// `/v2/`, catalog, tag lists, referrers, `/api/v1`.
    Api,
    /// `GET /token`: where passwords are hashed, kept apart so that a flood of logins cannot
    /// take what reads need.
    Token,
}

/// How many route classes there are.
pub const CLASSES: usize = 6;

impl RouteClass {
    pub const ALL: [RouteClass; CLASSES] = [
        RouteClass::ManifestRead,
        RouteClass::BlobRead,
        RouteClass::Upload,
        RouteClass::Write,
        RouteClass::Api,
        RouteClass::Token,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RouteClass::ManifestRead => "manifest_read",
            RouteClass::BlobRead => "blob_read",
            RouteClass::Upload => "upload",
            RouteClass::Write => "write",
            RouteClass::Api => "api",
            RouteClass::Token => "token",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    /// The class of a parsed `/v2` endpoint.
    pub fn of(endpoint: &Endpoint) -> RouteClass {
        match endpoint {
            Endpoint::GetManifest { .. } => RouteClass::ManifestRead,
            Endpoint::GetBlob { .. } => RouteClass::BlobRead,
            Endpoint::StartUpload { .. }
            | Endpoint::UploadStatus { .. }
            | Endpoint::PatchUpload { .. }
            | Endpoint::FinishUpload { .. }
            | Endpoint::CancelUpload { .. } => RouteClass::Upload,
            Endpoint::PutManifest { .. } | Endpoint::DeleteManifest { .. } | Endpoint::DeleteBlob { .. } => {
                RouteClass::Write
            }
            Endpoint::Base | Endpoint::Catalog | Endpoint::Tags { .. } | Endpoint::Referrers { .. } => RouteClass::Api,
        }
    }
}

/// The limit of one class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClassLimit {
    /// Requests served at once.
    pub concurrency: usize,
    /// Requests allowed to wait for a slot; more are shed at once.
    pub queue: usize,
    /// Longest a queued request waits before it is shed.
    pub queue_timeout: Duration,
}

/// One limit per class, in [`RouteClass::ALL`] order.
#[derive(Clone, Debug)]
pub struct AdmissionConfig(pub [ClassLimit; CLASSES]);

impl Default for AdmissionConfig {
    fn default() -> Self {
        let limit = |concurrency, queue| ClassLimit { concurrency, queue, queue_timeout: Duration::from_secs(2) };
        AdmissionConfig([
            limit(1024, 2048),
            limit(256, 512),
            limit(128, 256),
            limit(128, 256),
            limit(128, 256),
            limit(32, 64),
        ])
    }
}

/// The gates of every class, and what they counted.
pub struct Admission {
    gates: [Gate; CLASSES],
}

struct Gate {
    limit: ClassLimit,
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
    /// Moving average of how long a request holds its slot, in microseconds.
    avg_hold_us: Arc<AtomicU64>,
    served: AtomicU64,
    shed: AtomicU64,
}

/// A shed request: how many seconds the client should wait before retrying.
#[derive(Debug, PartialEq, Eq)]
pub struct Shed {
    pub retry_after_secs: u64,
}

/// A slot in a class, released when dropped.
pub struct Permit {
    _permit: OwnedSemaphorePermit,
    since: Instant,
    avg_hold_us: Arc<AtomicU64>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let held = self.since.elapsed().as_micros().min(u64::MAX as u128) as u64;
        // EWMA with weight 1/8: cheap, and enough to size a Retry-After.
        let _ = self.avg_hold_us.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |avg| {
            Some(if avg == 0 { held } else { avg - avg / 8 + held / 8 })
        });
    }
}

impl Admission {
    pub fn new(config: &AdmissionConfig) -> Admission {
        Admission {
            gates: config.0.map(|limit| Gate {
                limit,
                permits: Arc::new(Semaphore::new(limit.concurrency)),
                waiting: AtomicUsize::new(0),
                avg_hold_us: Arc::new(AtomicU64::new(0)),
                served: AtomicU64::new(0),
                shed: AtomicU64::new(0),
            }),
        }
    }

    /// A slot in `class`, after a bounded wait; or the answer to shed with.
    pub async fn enter(&self, class: RouteClass) -> Result<Permit, Shed> {
        let gate = &self.gates[class.index()];
        let permit = match gate.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                let queued = gate.waiting.fetch_add(1, Ordering::AcqRel);
                let waited = if queued < gate.limit.queue {
                    tokio::time::timeout(gate.limit.queue_timeout, gate.permits.clone().acquire_owned()).await.ok()
                } else {
                    None
                };
                gate.waiting.fetch_sub(1, Ordering::AcqRel);
                match waited {
                    Some(Ok(p)) => p,
                    _ => {
                        gate.shed.fetch_add(1, Ordering::Relaxed);
                        return Err(Shed { retry_after_secs: gate.retry_after(queued) });
                    }
                }
            }
        };
        gate.served.fetch_add(1, Ordering::Relaxed);
        Ok(Permit { _permit: permit, since: Instant::now(), avg_hold_us: gate.avg_hold_us.clone() })
    }

    /// Prometheus text exposition of the admission counters and gauges.
    pub fn render_metrics(&self, out: &mut String) {
        let mut family = |name: &str, kind: &str, help: &str, value: &dyn Fn(&Gate) -> u64| {
            crate::prom::per_class(out, name, kind, help, |class| value(&self.gates[class.index()]));
        };
        family("customs_admitted_total", "counter", "Requests given a slot, by route class.", &|g| {
            g.served.load(Ordering::Relaxed)
        });
        family("customs_shed_total", "counter", "Requests shed with 503 and Retry-After, by route class.", &|g| {
            g.shed.load(Ordering::Relaxed)
        });
        family("customs_in_flight", "gauge", "Requests holding a slot now, by route class.", &|g| {
            (g.limit.concurrency - g.permits.available_permits()) as u64
        });
        family("customs_queued", "gauge", "Requests waiting for a slot now, by route class.", &|g| {
            g.waiting.load(Ordering::Relaxed) as u64
        });
    }
}

impl Gate {
    /// Seconds until the `queued` requests ahead are likely served: the queue drained at
    /// `concurrency` requests per average hold time, at least one second.
    fn retry_after(&self, queued: usize) -> u64 {
        let avg = Duration::from_micros(self.avg_hold_us.load(Ordering::Relaxed));
        let rounds = (queued as u64 + 1).div_ceil(self.limit.concurrency.max(1) as u64);
        (avg * rounds as u32).as_secs_f64().ceil().clamp(1.0, 60.0) as u64
    }
}

//! What every `/v2` request leaves behind: a request id (taken from `X-Request-Id` when the
//! client or a proxy sent a sane one), counters by route class and status, a latency histogram
//! measured to the last byte sent, bytes in and out, and one access-log event.
//!
//! The access event goes to the `customs::access` target: at DEBUG for a success (and for 429s
//! and 503s, which the limits hand out by design and `/metrics` counts), INFO for a client error,
//! an abandoned response or a request slower than a second, WARN for a server error. The default filter
//! (`info`) thus logs what needs a look; `customs::access=debug` logs every request.

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use http_body::{Frame, SizeHint};

use crate::admission::{CLASSES, Permit, RouteClass};
use crate::prom;
use crate::uploads::UploadSlot;

/// Statuses counted on their own; anything else is counted as "other".
const STATUSES: [u16; 21] =
    [200, 201, 202, 204, 206, 304, 307, 400, 401, 403, 404, 405, 408, 413, 415, 416, 429, 431, 500, 502, 503];
/// Upper bounds of the latency buckets, in microseconds.
const BUCKETS_US: [u64; 16] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000,
    10_000_000, 30_000_000, 60_000_000,
];
const SLOW: Duration = Duration::from_secs(1);

pub(crate) struct Telemetry {
    requests: [[AtomicU64; STATUSES.len() + 1]; CLASSES],
    latency: [Histogram; CLASSES],
    response_bytes: [AtomicU64; CLASSES],
    pub(crate) request_bytes: Arc<AtomicU64>,
    id_prefix: u32,
    next_id: AtomicU64,
}

#[derive(Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS_US.len() + 1],
    sum_us: AtomicU64,
}

impl Telemetry {
    pub(crate) fn new() -> Telemetry {
        // Ids only need to be unique across restarts and replicas, not secret.
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        let id_prefix = (nanos as u32) ^ (std::process::id().rotate_left(16));
        Telemetry {
            requests: Default::default(),
            latency: Default::default(),
            response_bytes: Default::default(),
            request_bytes: Arc::default(),
            id_prefix,
            next_id: AtomicU64::new(0),
        }
    }

    /// The client's or proxy's `X-Request-Id` if it is short and plain, else a new one.
    pub(crate) fn request_id(&self, headers: &HeaderMap) -> HeaderValue {
        if let Some(v) = headers.get("x-request-id")
            && (1..=64).contains(&v.len())
            && v.as_bytes().iter().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b))
        {
            return v.clone();
        }
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        HeaderValue::from_str(&format!("{:08x}-{n:010x}", self.id_prefix)).expect("hex is a valid header value")
    }

    fn record(&self, class: RouteClass, status: StatusCode, elapsed: Duration, bytes: u64) {
        let c = class as usize;
        let s = STATUSES.iter().position(|&s| s == status.as_u16()).unwrap_or(STATUSES.len());
        self.requests[c][s].fetch_add(1, Ordering::Relaxed);
        let us = elapsed.as_micros().min(u64::MAX as u128) as u64;
        let b = BUCKETS_US.iter().position(|&le| us <= le).unwrap_or(BUCKETS_US.len());
        self.latency[c].buckets[b].fetch_add(1, Ordering::Relaxed);
        self.latency[c].sum_us.fetch_add(us, Ordering::Relaxed);
        self.response_bytes[c].fetch_add(bytes, Ordering::Relaxed);
    }

    pub(crate) fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        prom::header(out, "customs_requests_total", "counter", "Requests answered, by route class and status.");
        for class in RouteClass::ALL {
            for (i, count) in self.requests[class as usize].iter().enumerate() {
                let n = count.load(Ordering::Relaxed);
                if n > 0 {
                    let status = STATUSES.get(i).map_or("other".to_owned(), u16::to_string);
                    let _ = writeln!(out, "customs_requests_total{{class=\"{}\",status=\"{status}\"}} {n}", class.as_str());
                }
            }
        }
        prom::header(
            out,
            "customs_request_duration_seconds",
            "histogram",
            "Time from request to last response byte, by route class.",
        );
        for class in RouteClass::ALL {
            let h = &self.latency[class as usize];
            let mut cumulative = 0;
            for (i, bucket) in h.buckets.iter().enumerate() {
                cumulative += bucket.load(Ordering::Relaxed);
                let le = BUCKETS_US.get(i).map_or("+Inf".to_owned(), |us| format!("{}", *us as f64 / 1e6));
                let _ = writeln!(out, "customs_request_duration_seconds_bucket{{class=\"{}\",le=\"{le}\"}} {cumulative}", class.as_str());
            }
            let sum = h.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
            let _ = writeln!(out, "customs_request_duration_seconds_sum{{class=\"{}\"}} {sum}", class.as_str());
            let _ = writeln!(out, "customs_request_duration_seconds_count{{class=\"{}\"}} {cumulative}", class.as_str());
        }
        prom::per_class(out, "customs_response_body_bytes_total", "counter", "Response body bytes sent, by route class.", |c| {
            self.response_bytes[c as usize].load(Ordering::Relaxed)
        });
        prom::single(
            out,
            "customs_request_body_bytes_total",
            "counter",
            "Request body bytes received (uploads and manifest pushes).",
            self.request_bytes.load(Ordering::Relaxed),
        );
    }
}

/// One request's facts, logged and counted when its response has been sent (or abandoned).
pub(crate) struct Observation {
    pub(crate) telemetry: Arc<Telemetry>,
    pub(crate) started: Instant,
    pub(crate) id: HeaderValue,
    pub(crate) client: Option<IpAddr>,
    pub(crate) method: Method,
    pub(crate) uri: http::Uri,
    pub(crate) class: RouteClass,
    pub(crate) status: StatusCode,
}

/// What a response body holds until it is done: the admission slot, the client's upload slot,
/// and the observation to record.
#[derive(Default)]
#[allow(dead_code, reason = "held only to be dropped with the response")]
pub(crate) struct Held {
    pub(crate) permit: Option<Permit>,
    pub(crate) upload_slot: Option<UploadSlot>,
}

/// A response body that releases its slots and records its request when the last byte is sent
/// or the client goes away.
pub(crate) struct TrackedBody {
    inner: Body,
    _held: Held,
    observation: Observation,
    sent: u64,
    complete: bool,
}

impl TrackedBody {
    pub(crate) fn wrap(inner: Body, held: Held, observation: Observation) -> Body {
        Body::new(TrackedBody { inner, _held: held, observation, sent: 0, complete: false })
    }
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.sent += data.len() as u64;
                }
            }
            Poll::Ready(None) => self.complete = true,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for TrackedBody {
    fn drop(&mut self) {
        let o = &self.observation;
        let elapsed = o.started.elapsed();
        o.telemetry.record(o.class, o.status, elapsed, self.sent);
        let complete = self.complete || http_body::Body::is_end_stream(&self.inner);
        macro_rules! access {
            ($level:expr) => {
                tracing::event!(
                    target: "customs::access",
                    $level,
                    request_id = o.id.to_str().unwrap_or_default(),
                    client = o.client.map(|c| c.to_string()).unwrap_or_default(),
                    method = %o.method,
                    path = o.uri.path(),
                    class = o.class.as_str(),
                    status = o.status.as_u16(),
                    bytes = self.sent,
                    complete,
                    ms = elapsed.as_secs_f64() * 1e3,
                )
            };
        }
        // Shed and rate-limited requests are the limits working: counted, not logged.
        let limited = matches!(o.status, StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE);
        if o.status.is_server_error() && !limited {
            access!(tracing::Level::WARN);
        } else if (o.status.is_client_error() && !limited) || elapsed >= SLOW || !complete {
            access!(tracing::Level::INFO);
        } else {
            access!(tracing::Level::DEBUG);
        }
    }
}

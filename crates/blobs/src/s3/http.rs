//! `object_store`'s HTTP client port served by hyper: the process's own HTTP stack and TLS
//! (rustls with ring) instead of reqwest and a second crypto library.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::Connect;
use hyper_util::rt::TokioExecutor;
use object_store::ClientOptions;
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpRequestBody, HttpResponse, HttpResponseBody,
    HttpService,
};

use crate::StoreStats;

/// How long a request may take to be sent (a part is 8 MiB) and answered with a response head: 30 s,
/// object_store's own default for a whole request. Response bodies have no deadline: a blob is
/// streamed for as long as its reader keeps reading.
const RESPONSE_HEAD_TIMEOUT: Duration = Duration::from_secs(30);

/// Every attempt's outcome, shared by the clients a connector builds.
#[derive(Debug, Default)]
pub(super) struct Counters {
    /// Answers by status class: 2xx, 3xx, 4xx, 5xx.
    answered: [AtomicU64; 4],
    failed: AtomicU64,
    wait_micros: AtomicU64,
}

impl Counters {
    pub(super) fn stats(&self) -> StoreStats {
        let classes = ["2xx", "3xx", "4xx", "5xx"];
        StoreStats {
            answered: classes.into_iter().zip(&self.answered).map(|(c, n)| (c, n.load(Relaxed))).collect(),
            failed: self.failed.load(Relaxed),
            wait_micros: self.wait_micros.load(Relaxed),
        }
    }
}

/// Builds [`HttpClient`]s over one hyper client (and so one connection pool).
#[derive(Debug)]
pub(super) struct HyperConnector<C: Clone> {
    client: Client<C, HttpRequestBody>,
    counters: Arc<Counters>,
}

impl<C: Connect + Clone + Send + Sync + 'static> HyperConnector<C> {
    pub(super) fn new(connector: C, counters: Arc<Counters>) -> Self {
        let client = Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(60)).build(connector);
        HyperConnector { client, counters }
    }
}

impl<C: Connect + Clone + Send + Sync + std::fmt::Debug + 'static> HttpConnector for HyperConnector<C> {
    fn connect(&self, _options: &ClientOptions) -> object_store::Result<HttpClient> {
        Ok(HttpClient::new(Hyper { client: self.client.clone(), counters: self.counters.clone() }))
    }
}

#[derive(Debug)]
struct Hyper<C: Clone> {
    client: Client<C, HttpRequestBody>,
    counters: Arc<Counters>,
}

#[async_trait::async_trait]
impl<C: Connect + Clone + Send + Sync + std::fmt::Debug + 'static> HttpService for Hyper<C> {
    async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let sent = Instant::now();
        let answer = tokio::time::timeout(RESPONSE_HEAD_TIMEOUT, self.client.request(req)).await;
        let c = &self.counters;
        c.wait_micros.fetch_add(sent.elapsed().as_micros() as u64, Relaxed);
        let response = match answer {
            Ok(Ok(response)) => {
                let class = (response.status().as_u16() / 100).clamp(2, 5) as usize - 2;
                c.answered[class].fetch_add(1, Relaxed);
                response
            }
            Ok(Err(e)) => {
                c.failed.fetch_add(1, Relaxed);
                let kind = if e.is_connect() { HttpErrorKind::Connect } else { HttpErrorKind::Request };
                return Err(HttpError::new(kind, e));
            }
            Err(elapsed) => {
                c.failed.fetch_add(1, Relaxed);
                return Err(HttpError::new(HttpErrorKind::Timeout, elapsed));
            }
        };
        let (parts, body) = response.into_parts();
        let body = body.map_err(|e| HttpError::new(HttpErrorKind::Interrupted, e));
        Ok(HttpResponse::from_parts(parts, HttpResponseBody::new(body)))
    }
}

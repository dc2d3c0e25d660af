//! `object_store`'s HTTP client port served by hyper: the process's own HTTP stack and TLS
//! (rustls with ring) instead of reqwest and a second crypto library.

use std::time::Duration;

use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::Connect;
use hyper_util::rt::TokioExecutor;
use object_store::ClientOptions;
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpRequestBody, HttpResponse, HttpResponseBody,
    HttpService,
};

/// How long a request may wait for its response's head. Bodies have no deadline: a blob is
/// streamed for as long as its reader keeps reading.
const RESPONSE_HEAD_TIMEOUT: Duration = Duration::from_secs(30);

/// Builds [`HttpClient`]s over one hyper client (and so one connection pool).
#[derive(Debug)]
pub(super) struct HyperConnector<C: Clone>(Client<C, HttpRequestBody>);

impl<C: Connect + Clone + Send + Sync + 'static> HyperConnector<C> {
    pub(super) fn new(connector: C) -> Self {
        HyperConnector(Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(60)).build(connector))
    }
}

impl<C: Connect + Clone + Send + Sync + std::fmt::Debug + 'static> HttpConnector for HyperConnector<C> {
    fn connect(&self, _options: &ClientOptions) -> object_store::Result<HttpClient> {
        Ok(HttpClient::new(Hyper(self.0.clone())))
    }
}

#[derive(Debug)]
struct Hyper<C: Clone>(Client<C, HttpRequestBody>);

#[async_trait::async_trait]
impl<C: Connect + Clone + Send + Sync + std::fmt::Debug + 'static> HttpService for Hyper<C> {
    async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let response = match tokio::time::timeout(RESPONSE_HEAD_TIMEOUT, self.0.request(req)).await {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => {
                let kind = if e.is_connect() { HttpErrorKind::Connect } else { HttpErrorKind::Request };
                return Err(HttpError::new(kind, e));
            }
            Err(elapsed) => return Err(HttpError::new(HttpErrorKind::Timeout, elapsed)),
        };
        let (parts, body) = response.into_parts();
        let body = body.map_err(|e| HttpError::new(HttpErrorKind::Interrupted, e));
        Ok(HttpResponse::from_parts(parts, HttpResponseBody::new(body)))
    }
}

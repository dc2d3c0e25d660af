//! Sending a body to a URL: how customs calls webhooks.

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode, Uri, header};
use http_body_util::Full;
use hyper_util::client::legacy::{Client as Http, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

use crate::Error;

/// POSTs bodies, HTTPS with the system's roots (and any CA certificates given) or plain HTTP as
/// the URL says; no redirects followed.
pub struct Poster {
    http: Http<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
}

impl Poster {
    pub fn new(ca_pem: Option<&[u8]>, timeout: Duration) -> Result<Poster, Error> {
        Ok(Poster { http: Http::builder(TokioExecutor::new()).build(crate::https_connector(ca_pem)?), timeout })
    }

    /// POSTs `body` with `headers`; the status. A status that is not 2xx is an [`Error::Status`]
    /// with the start of the answer.
    pub async fn post(&self, url: &str, headers: &HeaderMap, body: Bytes) -> Result<StatusCode, Error> {
        let err = |reason: String| Error::Request { url: url.to_owned(), reason };
        let uri: Uri = url.parse().map_err(|e| err(format!("bad URL: {e}")))?;
        let mut req = Request::post(uri);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        req = req.header(header::USER_AGENT, concat!("customs/", env!("CARGO_PKG_VERSION")));
        let req = req.body(Full::new(body)).map_err(|e| err(e.to_string()))?;
        let exchange = async {
            let response = self.http.request(req).await.map_err(|e| err(e.to_string()))?;
            if response.status().is_success() {
                return Ok(response.status());
            }
            Err(crate::status_error(url.to_owned(), response).await)
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(answer) => answer,
            Err(_) => Err(err(format!("no answer within {} s", self.timeout.as_secs()))),
        }
    }
}

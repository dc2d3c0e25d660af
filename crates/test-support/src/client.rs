//! A small HTTP/1.1 client over hyper for tests that talk to a real server.

use axum::body::Body;
use bytes::Bytes;
use http::{Method, Request};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client as Hyper;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::TestResponse;

#[derive(Clone)]
pub struct Client {
    base: String,
    inner: Hyper<HttpConnector, Body>,
}

impl Client {
    /// A client for `base` (`http://127.0.0.1:PORT`).
    pub fn new(base: &str) -> Client {
        Client { base: base.trim_end_matches('/').to_owned(), inner: Hyper::builder(TokioExecutor::new()).build_http() }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends a request; a path is joined to the base, a full URL is used as is.
    pub async fn call(
        &self,
        method: Method,
        path_or_url: &str,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> anyhow::Result<TestResponse> {
        let url = if path_or_url.starts_with("http") { path_or_url.to_owned() } else { format!("{}{path_or_url}", self.base) };
        let mut r = Request::builder().method(method).uri(url);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        let response = self.inner.request(r.body(body.into())?).await?;
        let (parts, body) = response.into_parts();
        let body: Bytes = body.collect().await?.to_bytes();
        Ok(TestResponse { status: parts.status, headers: parts.headers, body })
    }

    /// The server's `/metrics` text (read a series with [`crate::metric`]); panics if it cannot be read.
    pub async fn metrics(&self) -> String {
        let r = self.call(Method::GET, "/metrics", &[], Body::empty()).await.expect("GET /metrics");
        assert_eq!(r.status, http::StatusCode::OK, "GET /metrics");
        String::from_utf8(r.body.to_vec()).expect("/metrics is text")
    }

    /// Pushes `image` as `repo:tag`: each blob in one `POST ?digest=`, then the manifest; panics
    /// on any status but 201.
    pub async fn push_image(&self, repo: &str, image: &crate::Image, tag: &str) {
        if let Err(refused) = self.try_push_image(repo, image, tag).await {
            panic!("push of {repo}:{tag}: {refused}");
        }
    }

    /// Pushes `image` as `repo:tag` like [`Client::push_image`]; the first answer other than 201
    /// (its status and body), or the failure to get one, ends it.
    pub async fn try_push_image(&self, repo: &str, image: &crate::Image, tag: &str) -> Result<(), Refused> {
        let expect_created = |what: String, r: anyhow::Result<TestResponse>| match r {
            Ok(r) if r.status == http::StatusCode::CREATED => Ok(()),
            Ok(r) => Err(Refused { what, status: Some(r.status), said: String::from_utf8_lossy(&r.body).into_owned() }),
            Err(e) => Err(Refused { what, status: None, said: e.to_string() }),
        };
        for blob in image.blobs() {
            let r = self.call(Method::POST, &format!("/v2/{repo}/blobs/uploads/?digest={}", blob.digest), &[], blob.bytes.clone()).await;
            expect_created(format!("blob {}", blob.digest), r)?;
        }
        let headers = [("content-type", image.media_type.as_str())];
        let r = self.call(Method::PUT, &format!("/v2/{repo}/manifests/{tag}"), &headers, image.manifest.clone()).await;
        expect_created(format!("manifest {repo}:{tag}"), r)
    }
}

/// A request of a push that was not answered 201.
#[derive(Debug)]
pub struct Refused {
    /// What was sent: "blob <digest>" or "manifest <repo>:<tag>".
    pub what: String,
    /// The answer's status; `None` if none came (the connection failed).
    pub status: Option<http::StatusCode>,
    /// The answer's body, or the failure.
    pub said: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {:?} {}", self.what, self.status, self.said)
    }
}

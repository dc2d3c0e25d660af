//! A client for other registries, as docker and skopeo talk to them: image references with Docker
//! Hub's defaults, the token dance driven by `WWW-Authenticate` (Bearer with a token service, or
//! Basic), manifests negotiated by `Accept`, blobs as streams, redirects to blob storage followed
//! without the registry's credentials. HTTPS with the system's trust store plus any CA certificates
//! given; plain HTTP for loopback hosts (unless CA certificates are given) or when asked.

mod post;
mod reference;

pub use post::Poster;
pub use reference::{ImageRef, ReferenceError};

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::{Client as Http, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The manifest media types a pull accepts, most specific first.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

const MAX_SMALL_BODY: usize = 8 << 20;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{url}: {reason}")]
    Request { url: String, reason: String },
    #[error("{url}: HTTP {status}{detail}")]
    Status { url: String, status: StatusCode, detail: String, retry_after: Option<Duration> },
    #[error("{url}: authentication failed ({reason})")]
    Auth { url: String, reason: String },
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    /// The registry answered 404: it does not have what was asked.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Status { status, .. } if *status == StatusCode::NOT_FOUND)
    }

    /// How long the registry asked us to wait (429 or 503 with `Retry-After`).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// Credentials for a registry.
#[derive(Clone)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, ***)", self.username)
    }
}

/// How failed requests are tried again: connection failures, 429, 502, 503 and 504, after an
/// exponential backoff with jitter, or the `Retry-After` the registry sent when it is no longer
/// than `max_wait` (a longer one is returned to the caller as the error).
#[derive(Clone, Copy, Debug)]
pub struct Retry {
    /// Tries in all, the first included.
    pub attempts: u32,
    pub base: Duration,
    pub max_wait: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry { attempts: 3, base: Duration::from_millis(200), max_wait: Duration::from_secs(5) }
    }
}

impl Retry {
    /// The wait before try `attempt + 1`: `base · 2^attempt`, plus up to as much again at random.
    fn backoff(&self, attempt: u32) -> Duration {
        use std::hash::{BuildHasher, Hasher};
        let exp = self.base.saturating_mul(1 << attempt.min(16));
        let jitter = std::collections::hash_map::RandomState::new().build_hasher().finish() % (exp.as_millis() as u64 + 1);
        (exp + Duration::from_millis(jitter)).min(self.max_wait)
    }
}

/// A response body, streamed; holds the client's connection slot until it is dropped.
pub struct Body {
    inner: Incoming,
    _slot: Option<OwnedSemaphorePermit>,
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, hyper::Error>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// A blob being downloaded: its body from `offset`, and the blob's whole size when the registry
/// said it.
pub struct Download {
    pub body: Body,
    /// Where the body starts: the offset asked for, or 0 when the registry ignored the range.
    pub offset: u64,
    pub size: Option<u64>,
}

pub struct Client {
    http: Http<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>,
    credentials: Option<Credentials>,
    plain_http: bool,
    /// CA certificates were given: loopback hosts speak HTTPS too.
    extra_ca: bool,
    /// Bearer tokens by (host, scope), with when they expire.
    tokens: Mutex<HashMap<(String, String), (String, Instant)>>,
    timeout: Duration,
    retry: Retry,
    /// Requests in flight to this registry at once (a body holds its slot until dropped).
    slots: Option<Arc<Semaphore>>,
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, PartialEq)]
struct Challenge {
    scheme: String,
    params: HashMap<String, String>,
}

fn parse_challenge(v: &str) -> Option<Challenge> {
    let (scheme, rest) = v.trim().split_once(' ').unwrap_or((v.trim(), ""));
    let mut params = HashMap::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let key = key.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (value, tail) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"')?;
            (&q[..end], &q[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        params.insert(key, value.to_owned());
        rest = tail.trim_start().trim_start_matches(',').trim_start();
    }
    Some(Challenge { scheme: scheme.to_ascii_lowercase(), params })
}

fn pct(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// HTTPS (and plain HTTP) with the system's roots and `ca_pem`'s CA certificates: what every
/// outgoing connection of customs goes through (upstreams, webhooks, the S3 store).
pub fn https_connector(ca_pem: Option<&[u8]>) -> Result<hyper_rustls::HttpsConnector<HttpConnector>, Error> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(pem) = ca_pem {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<_, _>>()
            .map_err(|e| Error::Invalid(format!("CA certificates: {e}")))?;
        if certs.is_empty() {
            return Err(Error::Invalid("CA certificates: no certificate in the file".into()));
        }
        for c in certs {
            roots.add(c).map_err(|e| Error::Invalid(format!("CA certificates: {e}")))?;
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Invalid(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .build())
}

/// Tokens without `expires_in` last 60 s (the token spec's default); a token is renewed this
/// long before it runs out.
const TOKEN_DEFAULT_LIFETIME: Duration = Duration::from_secs(60);
const TOKEN_MARGIN: Duration = Duration::from_secs(5);

impl Client {
    /// `ca_pem`: more trusted CA certificates (PEM), for registries with a private CA.
    pub fn new(credentials: Option<Credentials>, plain_http: bool, ca_pem: Option<&[u8]>) -> Result<Client, Error> {
        let http = Http::builder(TokioExecutor::new()).build(https_connector(ca_pem)?);
        Ok(Client {
            http,
            credentials,
            plain_http,
            extra_ca: ca_pem.is_some(),
            tokens: Mutex::new(HashMap::new()),
            timeout: Duration::from_secs(60),
            retry: Retry::default(),
            slots: None,
        })
    }

    pub fn with_retry(mut self, retry: Retry) -> Client {
        self.retry = retry;
        self
    }

    /// At most `n` requests to the registry at once; a streamed body keeps its slot.
    pub fn with_connection_limit(mut self, n: usize) -> Client {
        self.slots = Some(Arc::new(Semaphore::new(n.max(1))));
        self
    }

    /// How long to wait for a response's head.
    pub fn with_timeout(mut self, timeout: Duration) -> Client {
        self.timeout = timeout;
        self
    }

    fn base(&self, r: &ImageRef) -> String {
        let scheme = if self.plain_http || (r.is_loopback() && !self.extra_ca) { "http" } else { "https" };
        format!("{scheme}://{}", r.registry)
    }

    fn basic(&self) -> Option<HeaderValue> {
        let c = self.credentials.as_ref()?;
        let v = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", c.username, c.password));
        HeaderValue::from_str(&format!("Basic {v}")).ok()
    }

    async fn send(&self, method: Method, url: &str, headers: &HeaderMap) -> Result<http::Response<Incoming>, Error> {
        let err = |reason: String| Error::Request { url: url.to_owned(), reason };
        let uri: Uri = url.parse().map_err(|e| err(format!("bad URL: {e}")))?;
        let mut req = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        req = req.header(header::USER_AGENT, concat!("customs/", env!("CARGO_PKG_VERSION")));
        let req = req.body(Empty::new()).map_err(|e| err(e.to_string()))?;
        match tokio::time::timeout(self.timeout, self.http.request(req)).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(err(format!("{e}: {}", std::error::Error::source(&e).map(|s| s.to_string()).unwrap_or_default()))),
            Err(_) => Err(err("timed out".into())),
        }
    }

    /// A token for `scope` from the challenge's realm (with credentials when we have them), and
    /// how long it lasts.
    async fn token(&self, url: &str, c: &Challenge, scope: &str) -> Result<(String, Duration), Error> {
        let realm = c.params.get("realm").ok_or_else(|| Error::Auth { url: url.into(), reason: "Bearer challenge without realm".into() })?;
        let mut q = Vec::new();
        if let Some(s) = c.params.get("service") {
            q.push(format!("service={}", pct(s)));
        }
        let scope = c.params.get("scope").map(String::as_str).unwrap_or(scope);
        if !scope.is_empty() {
            q.push(format!("scope={}", pct(scope)));
        }
        let token_url = if q.is_empty() { realm.clone() } else { format!("{realm}{}{}", if realm.contains('?') { "&" } else { "?" }, q.join("&")) };
        let mut h = HeaderMap::new();
        if let Some(b) = self.basic() {
            h.insert(header::AUTHORIZATION, b);
        }
        let resp = self.send(Method::GET, &token_url, &h).await?;
        let status = resp.status();
        let body = small_body(&token_url, resp.into_body()).await?;
        if !status.is_success() {
            return Err(Error::Auth { url: url.into(), reason: format!("token service answered {status}") });
        }
        let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| Error::Auth { url: url.into(), reason: format!("token response: {e}") })?;
        let token = v
            .get("token")
            .or_else(|| v.get("access_token"))
            .and_then(|t| t.as_str())
            .map(str::to_owned)
            .ok_or_else(|| Error::Auth { url: url.into(), reason: "token response without a token".into() })?;
        let lifetime = v.get("expires_in").and_then(|e| e.as_u64()).map(Duration::from_secs).unwrap_or(TOKEN_DEFAULT_LIFETIME);
        Ok((token, lifetime))
    }

    fn cached_token(&self, key: &(String, String)) -> Option<HeaderValue> {
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        match tokens.get(key) {
            Some((t, until)) if Instant::now() < *until => HeaderValue::from_str(&format!("Bearer {t}")).ok(),
            Some(_) => {
                tokens.remove(key);
                None
            }
            None => None,
        }
    }

    /// GET with the registry's authentication; follows redirects (credentials only to the
    /// registry's own host).
    pub async fn get(&self, r: &ImageRef, path: &str, accept: Option<&str>) -> Result<http::Response<Body>, Error> {
        let mut headers = HeaderMap::new();
        if let Some(a) = accept {
            headers.insert(header::ACCEPT, HeaderValue::from_str(a).map_err(|e| Error::Invalid(e.to_string()))?);
        }
        self.request(Method::GET, r, path, headers).await
    }

    /// `method` on `path` of `r`'s registry with `headers`: authenticated, retried as
    /// [`Retry`] says, redirects followed; a status that is not a success is an error.
    pub async fn request(&self, method: Method, r: &ImageRef, path: &str, headers: HeaderMap) -> Result<http::Response<Body>, Error> {
        let slot = match &self.slots {
            Some(s) => Some(s.clone().acquire_owned().await.map_err(|e| Error::Invalid(e.to_string()))?),
            None => None,
        };
        let mut attempt = 0;
        loop {
            let outcome = self.authenticated(method.clone(), r, path, &headers).await;
            let wait = match &outcome {
                Err(Error::Request { .. }) => Some(self.retry.backoff(attempt)),
                Err(Error::Status { status, retry_after, .. }) if retryable(*status) => match retry_after {
                    Some(after) if *after > self.retry.max_wait => None,
                    Some(after) => Some(*after),
                    None => Some(self.retry.backoff(attempt)),
                },
                _ => None,
            };
            attempt += 1;
            match wait {
                Some(wait) if attempt < self.retry.attempts => tokio::time::sleep(wait).await,
                _ => return outcome.map(|resp| resp.map(|inner| Body { inner, _slot: slot })),
            }
        }
    }

    async fn authenticated(&self, method: Method, r: &ImageRef, path: &str, headers: &HeaderMap) -> Result<http::Response<Incoming>, Error> {
        let url = format!("{}{path}", self.base(r));
        let scope = format!("repository:{}:pull", r.repository);
        let key = (r.registry.clone(), scope.clone());
        let mut auth = self.cached_token(&key);
        for attempt in 0..2 {
            let mut h = headers.clone();
            if let Some(a) = &auth {
                h.insert(header::AUTHORIZATION, a.clone());
            }
            let resp = self.send(method.clone(), &url, &h).await?;
            if resp.status() == StatusCode::UNAUTHORIZED && attempt == 0 {
                let challenge = resp.headers().get(header::WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()).and_then(parse_challenge);
                auth = match challenge {
                    Some(c) if c.scheme == "bearer" => {
                        let (t, lifetime) = self.token(&url, &c, &scope).await?;
                        let until = Instant::now() + lifetime.saturating_sub(TOKEN_MARGIN);
                        self.tokens.lock().unwrap_or_else(|p| p.into_inner()).insert(key.clone(), (t.clone(), until));
                        HeaderValue::from_str(&format!("Bearer {t}")).ok()
                    }
                    Some(c) if c.scheme == "basic" => match self.basic() {
                        Some(b) => Some(b),
                        None => return Err(Error::Auth { url, reason: "the registry wants credentials".into() }),
                    },
                    _ => return Err(Error::Auth { url, reason: "401 without a usable challenge".into() }),
                };
                continue;
            }
            if resp.status() == StatusCode::UNAUTHORIZED || resp.status() == StatusCode::FORBIDDEN {
                return Err(Error::Auth { url, reason: format!("credentials refused ({})", resp.status()) });
            }
            return self.follow(method, resp, &url, headers).await;
        }
        Err(Error::Auth { url, reason: "credentials refused".into() })
    }

    /// Follows redirects with `headers` (never the registry's credentials).
    async fn follow(&self, method: Method, mut resp: http::Response<Incoming>, url: &str, headers: &HeaderMap) -> Result<http::Response<Incoming>, Error> {
        let mut current = url.to_owned();
        for _ in 0..5 {
            if !resp.status().is_redirection() {
                break;
            }
            let Some(loc) = resp.headers().get(header::LOCATION).and_then(|v| v.to_str().ok()) else { break };
            current = resolve(&current, loc);
            resp = self.send(method.clone(), &current, headers).await?;
        }
        if !resp.status().is_success() {
            return Err(status_error(current, resp).await);
        }
        Ok(resp)
    }

    /// A manifest's bytes, media type and the digest the registry states.
    pub async fn manifest(&self, r: &ImageRef, reference: &str) -> Result<(Bytes, String, Option<String>), Error> {
        let resp = self.get(r, &format!("/v2/{}/manifests/{reference}", r.repository), Some(MANIFEST_ACCEPT)).await?;
        let media_type = resp.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let digest = resp.headers().get("docker-content-digest").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let body = small_body(&r.to_string(), resp.into_body()).await?;
        Ok((body, media_type, digest))
    }

    /// The digest a manifest has now, by HEAD (which Docker Hub does not count against pull
    /// limits); `None` when the registry does not say.
    pub async fn manifest_digest(&self, r: &ImageRef, reference: &str) -> Result<Option<String>, Error> {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_static(MANIFEST_ACCEPT));
        let resp = self.request(Method::HEAD, r, &format!("/v2/{}/manifests/{reference}", r.repository), h).await?;
        Ok(resp.headers().get("docker-content-digest").and_then(|v| v.to_str().ok()).map(str::to_owned))
    }

    /// A blob's body, streamed.
    pub async fn blob(&self, r: &ImageRef, digest: &str) -> Result<Body, Error> {
        Ok(self.blob_from(r, digest, 0).await?.body)
    }

    /// A blob's body from byte `offset` on (a `Range` request when `offset` > 0).
    pub async fn blob_from(&self, r: &ImageRef, digest: &str, offset: u64) -> Result<Download, Error> {
        let mut h = HeaderMap::new();
        if offset > 0 {
            h.insert(header::RANGE, HeaderValue::from_str(&format!("bytes={offset}-")).map_err(|e| Error::Invalid(e.to_string()))?);
        }
        let resp = self.request(Method::GET, r, &format!("/v2/{}/blobs/{digest}", r.repository), h).await?;
        let length = resp.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
        let (offset, size) = if resp.status() == StatusCode::PARTIAL_CONTENT {
            // `Content-Range: bytes a-b/size`
            let range = resp.headers().get(header::CONTENT_RANGE).and_then(|v| v.to_str().ok()).unwrap_or("");
            let start = range.trim_start_matches("bytes ").split('-').next().and_then(|a| a.trim().parse().ok()).unwrap_or(offset);
            let size = range.rsplit_once('/').and_then(|(_, s)| s.trim().parse().ok());
            (start, size)
        } else {
            (0, length)
        };
        Ok(Download { body: resp.into_body(), offset, size })
    }

    /// A plain GET of any URL (advisory downloads), following redirects.
    pub async fn fetch(&self, url: &str) -> Result<Body, Error> {
        let resp = self.send(Method::GET, url, &HeaderMap::new()).await?;
        Ok(Body { inner: self.follow(Method::GET, resp, url, &HeaderMap::new()).await?.into_body(), _slot: None })
    }
}

fn retryable(status: StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 502 | 503 | 504)
}

fn resolve(base: &str, loc: &str) -> String {
    if loc.starts_with("http://") || loc.starts_with("https://") {
        return loc.to_owned();
    }
    let origin_end = base.find("://").map(|i| i + 3).and_then(|s| base[s..].find('/').map(|j| s + j)).unwrap_or(base.len());
    if loc.starts_with('/') { format!("{}{loc}", &base[..origin_end]) } else { format!("{}/{loc}", base.rsplit_once('/').map_or(base, |(b, _)| b)) }
}

/// The error for an answer that is not a success, with the start of what the server said.
async fn status_error(url: String, resp: http::Response<Incoming>) -> Error {
    let status = resp.status();
    let retry_after = resp.headers().get(header::RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok()).map(Duration::from_secs);
    let body = small_body(&url, resp.into_body()).await.unwrap_or_default();
    let detail = String::from_utf8_lossy(&body[..body.len().min(300)]).trim().to_owned();
    Error::Status { url, status, detail: if detail.is_empty() { String::new() } else { format!(": {detail}") }, retry_after }
}

async fn small_body<B>(url: &str, body: B) -> Result<Bytes, Error>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    Limited::new(body, MAX_SMALL_BODY)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| Error::Request { url: url.to_owned(), reason: format!("reading the body: {e}") })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        let c = parse_challenge(r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#).unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.params["realm"], "https://auth.docker.io/token");
        assert_eq!(c.params["scope"], "repository:library/alpine:pull");
        let c = parse_challenge(r#"Basic realm="customs""#).unwrap();
        assert_eq!((c.scheme.as_str(), c.params["realm"].as_str()), ("basic", "customs"));
        let c = parse_challenge("Bearer realm=http://h/token, service=x").unwrap();
        assert_eq!(c.params["service"], "x");
    }

    #[test]
    fn redirects_resolve() {
        assert_eq!(resolve("http://a:5000/v2/x/blobs/y", "/s3/obj?sig=1"), "http://a:5000/s3/obj?sig=1");
        assert_eq!(resolve("http://a/v2/x", "https://b/c"), "https://b/c");
    }
}

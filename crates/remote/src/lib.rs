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
use std::sync::Mutex;
use std::time::Duration;

/// The manifest media types a pull accepts, most specific first.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

const MAX_SMALL_BODY: usize = 8 << 20;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{url}: {reason}")]
    Request { url: String, reason: String },
    #[error("{url}: HTTP {status}{detail}")]
    Status { url: String, status: StatusCode, detail: String },
    #[error("{url}: authentication failed ({reason})")]
    Auth { url: String, reason: String },
    #[error("{0}")]
    Invalid(String),
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

/// A response body as a stream of chunks.
pub type Body = Incoming;

pub struct Client {
    http: Http<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>,
    credentials: Option<Credentials>,
    plain_http: bool,
    /// CA certificates were given: loopback hosts speak HTTPS too.
    extra_ca: bool,
    /// Bearer tokens by (host, scope).
    tokens: Mutex<HashMap<(String, String), String>>,
    timeout: Duration,
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

/// HTTPS (and plain HTTP) with the system's roots and `ca_pem`'s CA certificates.
fn connector(ca_pem: Option<&[u8]>) -> Result<hyper_rustls::HttpsConnector<HttpConnector>, Error> {
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

impl Client {
    /// `ca_pem`: more trusted CA certificates (PEM), for registries with a private CA.
    pub fn new(credentials: Option<Credentials>, plain_http: bool, ca_pem: Option<&[u8]>) -> Result<Client, Error> {
        let http = Http::builder(TokioExecutor::new()).build(connector(ca_pem)?);
        Ok(Client { http, credentials, plain_http, extra_ca: ca_pem.is_some(), tokens: Mutex::new(HashMap::new()), timeout: Duration::from_secs(60) })
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

    /// A token for `scope` from the challenge's realm (with credentials when we have them).
    async fn token(&self, url: &str, c: &Challenge, scope: &str) -> Result<String, Error> {
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
        v.get("token")
            .or_else(|| v.get("access_token"))
            .and_then(|t| t.as_str())
            .map(str::to_owned)
            .ok_or_else(|| Error::Auth { url: url.into(), reason: "token response without a token".into() })
    }

    /// GET with the registry's authentication; follows redirects (credentials only to the
    /// registry's own host).
    pub async fn get(&self, r: &ImageRef, path: &str, accept: Option<&str>) -> Result<http::Response<Incoming>, Error> {
        let url = format!("{}{path}", self.base(r));
        let scope = format!("repository:{}:pull", r.repository);
        let key = (r.registry.clone(), scope.clone());
        let mut headers = HeaderMap::new();
        if let Some(a) = accept {
            headers.insert(header::ACCEPT, HeaderValue::from_str(a).map_err(|e| Error::Invalid(e.to_string()))?);
        }
        let cached = self.tokens.lock().unwrap().get(&key).cloned();
        let mut auth = cached.and_then(|t| HeaderValue::from_str(&format!("Bearer {t}")).ok());
        for attempt in 0..2 {
            let mut h = headers.clone();
            if let Some(a) = &auth {
                h.insert(header::AUTHORIZATION, a.clone());
            }
            let resp = self.send(Method::GET, &url, &h).await?;
            if resp.status() == StatusCode::UNAUTHORIZED && attempt == 0 {
                let challenge = resp.headers().get(header::WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()).and_then(parse_challenge);
                auth = match challenge {
                    Some(c) if c.scheme == "bearer" => {
                        let t = self.token(&url, &c, &scope).await?;
                        self.tokens.lock().unwrap().insert(key.clone(), t.clone());
                        HeaderValue::from_str(&format!("Bearer {t}")).ok()
                    }
                    Some(c) if c.scheme == "basic" => match self.basic() {
                        Some(b) => Some(b),
                        None => return Err(Error::Auth { url, reason: "the registry wants credentials (--username/--password)".into() }),
                    },
                    _ => return Err(Error::Auth { url, reason: "401 without a usable challenge".into() }),
                };
                continue;
            }
            return self.follow(resp, &url, accept).await;
        }
        Err(Error::Auth { url, reason: "credentials refused".into() })
    }

    async fn follow(&self, mut resp: http::Response<Incoming>, url: &str, accept: Option<&str>) -> Result<http::Response<Incoming>, Error> {
        let mut current = url.to_owned();
        for _ in 0..5 {
            if !resp.status().is_redirection() {
                break;
            }
            let Some(loc) = resp.headers().get(header::LOCATION).and_then(|v| v.to_str().ok()) else { break };
            current = resolve(&current, loc);
            let mut h = HeaderMap::new();
            if let Some(a) = accept {
                h.insert(header::ACCEPT, HeaderValue::from_str(a).map_err(|e| Error::Invalid(e.to_string()))?);
            }
            resp = self.send(Method::GET, &current, &h).await?;
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

    /// A blob's body, streamed.
    pub async fn blob(&self, r: &ImageRef, digest: &str) -> Result<Body, Error> {
        Ok(self.get(r, &format!("/v2/{}/blobs/{digest}", r.repository), None).await?.into_body())
    }

    /// A plain GET of any URL (advisory downloads), following redirects.
    pub async fn fetch(&self, url: &str) -> Result<Body, Error> {
        let resp = self.send(Method::GET, url, &HeaderMap::new()).await?;
        Ok(self.follow(resp, url, None).await?.into_body())
    }
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
    let body = small_body(&url, resp.into_body()).await.unwrap_or_default();
    let detail = String::from_utf8_lossy(&body[..body.len().min(300)]).trim().to_owned();
    Error::Status { url, status, detail: if detail.is_empty() { String::new() } else { format!(": {detail}") } }
}

async fn small_body(url: &str, body: Incoming) -> Result<Bytes, Error> {
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

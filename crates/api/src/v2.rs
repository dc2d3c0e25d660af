//! The `/v2` handlers: one dispatch over [`Endpoint`], each arm one registry call and a response.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use blobs::{BlobBody, ByteStream};
use bytes::Bytes;
use axum::extract::ConnectInfo;
use futures::TryStreamExt;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use oci::{Digest, ErrorCode, RepoName, UploadId, media_type};
use registry::{MountResult, PageRequest, RangeRequest, UploadStatus};
use tracing::Instrument;

use crate::admission::RouteClass;
use crate::authn::Via;
use crate::authorize::{Proof, authorize};
use crate::endpoint::Endpoint;
use crate::error::ApiError;
use crate::telemetry::{Held, Observation, TrackedBody};
use crate::uploads::SlowBodyGuard;
use crate::{App, Peer, Secure};

const DOCKER_CONTENT_DIGEST: HeaderName = HeaderName::from_static("docker-content-digest");
const DOCKER_UPLOAD_UUID: HeaderName = HeaderName::from_static("docker-upload-uuid");
const OCI_SUBJECT: HeaderName = HeaderName::from_static("oci-subject");
const OCI_FILTERS_APPLIED: HeaderName = HeaderName::from_static("oci-filters-applied");
const API_VERSION: HeaderName = HeaderName::from_static("docker-distribution-api-version");
const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Entry point of every `/v2` request: parse, authenticate, check the client's rate, admit into
/// the route class, authorize, handle; then count and log it when its response has been sent.
pub(crate) async fn dispatch(State(app): State<Arc<App>>, request: Request) -> Response {
    let parsed = Endpoint::parse(request.method(), request.uri().path());
    let class = parsed.as_ref().map_or(RouteClass::Api, RouteClass::of);
    observe(&app, class, request, |app, client, request| async move {
        match parsed {
            Ok(endpoint) if endpoint.writes() && app.registry.config().read_only => (ApiError::ReadOnly.into_response(), Held::default()),
            Ok(endpoint) => admitted(&app, endpoint, class, client, request).await,
            Err(e) => (e.into_response(), Held::default()),
        }
    })
    .await
}

/// What every request goes through: a request id and span, the client's address, and when the
/// response has been sent, its count, latency and access event.
pub(crate) async fn observe<F, Fut>(app: &Arc<App>, class: RouteClass, request: Request, work: F) -> Response
where
    F: FnOnce(Arc<App>, Option<IpAddr>, Request) -> Fut,
    Fut: Future<Output = (Response, Held)>,
{
    let started = Instant::now();
    let id = app.telemetry.request_id(request.headers());
    let peer = request.extensions().get::<ConnectInfo<Peer>>().map(|c| c.0.0.ip());
    let forwarded = request.headers().get("x-forwarded-for").and_then(|v| v.to_str().ok());
    let client = app.rate.client(peer, forwarded);
    // A `Uri` clone shares its bytes: nothing is copied unless the access event is written.
    let (method, uri) = (request.method().clone(), request.uri().clone());
    let span = tracing::info_span!("request", id = id.to_str().unwrap_or_default());
    let (response, held) = work(app.clone(), client, request).instrument(span).await;
    let (mut parts, body) = response.into_parts();
    parts.headers.insert(API_VERSION, HeaderValue::from_static("registry/2.0"));
    parts.headers.insert(REQUEST_ID, id.clone());
    let observation = Observation {
        telemetry: app.telemetry.clone(),
        started,
        id,
        client,
        method,
        uri,
        class,
        status: parts.status,
    };
    Response::from_parts(parts, TrackedBody::wrap(body, held, observation))
}

async fn admitted(
    app: &App,
    endpoint: Endpoint,
    class: RouteClass,
    client: Option<IpAddr>,
    request: Request,
) -> (Response, Held) {
    let secure = request.extensions().get::<Secure>().is_some();
    let query = match Query::parse(request.uri().query()) {
        Ok(q) => q,
        Err(e) => return (e.into_response(), Held::default()),
    };
    let who = match &app.authn {
        None => crate::authn::open(),
        Some(authn) => match authn.authenticate(request.headers(), client, &app.admission).await {
            Ok(who) => who,
            Err(e) => return (app.challenge(e, request.headers(), secure).into_response(), Held::default()),
        },
    };
    // containerd asks a mirror for `docker.io/library/nginx` as `/v2/library/nginx/...?ns=docker.io`:
    // the upstream for that registry, if one is configured, serves it under its prefix. Docker's
    // `registry-mirrors` asks without `ns`: the default upstream serves names that are not local,
    // except to a blob HEAD, which is how a push into a new local repository asks what to upload.
    let mut endpoint = endpoint;
    let push_check = matches!(endpoint, Endpoint::GetBlob { head: true, .. });
    if let Some(mirror) = &app.mirror
        && let Some(repo) = endpoint.pulled_repo_mut()
    {
        let routed = match query.get("ns") {
            Some(ns) => mirror.for_namespace(ns, repo),
            None if push_check => None,
            None => mirror.for_default(repo).await,
        };
        match routed {
            Some(Ok(routed)) => *repo = routed,
            Some(Err(e)) => return (ApiError::Registry(e).into_response(), Held::default()),
            None => {}
        }
    }
    let held = match app.admit(class, who.rate_key(client)).await {
        Ok(held) => held,
        Err(e) => return (e.into_response(), Held::default()),
    };
    let mount_from = match (&endpoint, query.get("mount"), query.get("from")) {
        (Endpoint::StartUpload { .. }, Some(_), Some(from)) => from.parse::<RepoName>().ok(),
        _ => None,
    };
    let proof = match authorize(who, &endpoint, mount_from.as_ref()) {
        Ok(proof) => proof,
        Err(e) => return (app.challenge(e, request.headers(), secure).into_response(), held),
    };
    let cut = Arc::new(AtomicBool::new(false));
    let audit = audit_of(&endpoint);
    let actor = proof.who.clone();
    let response = match handle(app, endpoint, proof, query, request, &cut).await {
        Ok(response) => response,
        Err(_) if cut.load(Ordering::Relaxed) => ApiError::BodyTooSlow.into_response(),
        Err(e) => e.into_response(),
    };
    // Audited with authentication off too (as `anonymous`): webhooks are fed from the log.
    if let Some((action, target)) = audit
        && response.status().is_success()
    {
        let target = match response.headers().get(DOCKER_CONTENT_DIGEST).and_then(|d| d.to_str().ok()) {
            Some(digest) if !target.contains('@') => format!("{target}@{digest}"),
            _ => target,
        };
        let actor = registry::Actor { name: actor.name(), client };
        match &app.authn {
            Some(authn) => authn.access.audit(actor, action, &target, None).await,
            None => app.registry.audit(actor, action, &target, None).await,
        }
    }
    (response, held)
}

/// Pushes and deletes are audited: (action, `repo:reference`).
fn audit_of(endpoint: &Endpoint) -> Option<(&'static str, String)> {
    match endpoint {
        Endpoint::PutManifest { repo, reference } => Some(("push", reference_target(repo, reference))),
        Endpoint::DeleteManifest { repo, reference } => Some(("delete", reference_target(repo, reference))),
        Endpoint::DeleteBlob { repo, digest } => Some(("delete", format!("{repo}@{digest}"))),
        _ => None,
    }
}

fn reference_target(repo: &RepoName, reference: &oci::Reference) -> String {
    match reference {
        oci::Reference::Tag(t) => format!("{repo}:{t}"),
        oci::Reference::Digest(d) => format!("{repo}@{d}"),
    }
}

/// Admins may pull anything the gate holds back; with authentication off there are no admins,
/// only pullers.
fn gate_bypass(app: &App, proof: &Proof) -> bool {
    app.authn.is_some() && proof.who.principal.is_admin()
}

async fn handle(
    app: &App,
    endpoint: Endpoint,
    proof: Proof,
    query: Query,
    request: Request,
    cut: &Arc<AtomicBool>,
) -> Result<Response, ApiError> {
    let registry = &*app.registry;
    let byte_stream = |body: Body| -> ByteStream {
        let counted = app.telemetry.request_bytes.clone();
        let counting = body.into_data_stream().inspect_ok(move |chunk| {
            counted.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        });
        Box::pin(SlowBodyGuard::new(counting, &app.upload_limits, cut.clone()))
    };
    let (parts, body) = request.into_parts();
    let headers = &parts.headers;
    if let Endpoint::PutManifest { repo, .. } | Endpoint::StartUpload { repo } = &endpoint
        && mirror_route(app, repo)?.is_some()
    {
        return Err(ApiError::Registry(registry::Error::Denied(format!("{repo} is a mirror's: it is filled from the upstream, not pushed to"))));
    }
    match endpoint {
        Endpoint::Base => Ok(json(StatusCode::OK, Bytes::from_static(b"{}"))),
        Endpoint::Catalog => {
            let page = query.page()?;
            let listing = match (&app.authn, proof.who.via) {
                (Some(authn), via) if via != Via::Open => {
                    let principal = authn.access.stored_grants(&proof.who.principal).await?;
                    registry.catalog_where(&page, |repo| principal.may(auth::Action::Pull, repo)).await?
                }
                _ => registry.catalog(&page).await?,
            };
            let last = listing.entries.last().map(|r| r.to_string());
            let body = serde_json::json!({ "repositories": listing.entries.iter().map(|r| r.as_str()).collect::<Vec<_>>() });
            Ok(with_next_link(json(StatusCode::OK, body.to_string().into()), "/v2/_catalog", &page, listing.more, last))
        }
        Endpoint::Tags { repo } => {
            let page = query.page()?;
            let listing = registry.tags(&repo, &page).await?;
            let last = listing.entries.last().map(|t| t.to_string());
            let tags: Vec<&str> = listing.entries.iter().map(|t| t.as_str()).collect();
            let body = serde_json::json!({ "name": repo.as_str(), "tags": tags });
            let path = format!("/v2/{repo}/tags/list");
            Ok(with_next_link(json(StatusCode::OK, body.to_string().into()), &path, &page, listing.more, last))
        }
        Endpoint::GetManifest { repo, reference, head } => {
            let mirrored = mirror_route(app, &repo)?;
            let (m, stale) = match &mirrored {
                Some((mirror, route)) => {
                    let served = mirror.manifest(route, &repo, &reference).await?;
                    (served.content, served.stale)
                }
                None => (registry.get_manifest(&repo, &reference).await?, false),
            };
            registry.check_gate(&repo, &m.digest, gate_bypass(app, &proof)).await?;
            // What mirror eviction and retention go by.
            registry.record_pull(&repo, &m.digest, registry::now_ms());
            let etag = format!("\"{}\"", m.digest);
            let mut r = Response::builder()
                .header(header::CONTENT_TYPE, &m.media_type)
                .header(header::CONTENT_LENGTH, m.bytes.len())
                .header(DOCKER_CONTENT_DIGEST, m.digest.to_string())
                .header(header::ETAG, &etag);
            if stale {
                r = r.header(header::WARNING, STALE_WARNING);
            }
            if not_modified(headers, &etag) {
                r = r.status(StatusCode::NOT_MODIFIED);
                return Ok(r.body(Body::empty()).expect("valid response"));
            }
            let body = if head { Body::empty() } else { Body::from(m.bytes.clone()) };
            Ok(r.status(StatusCode::OK).body(body).expect("valid response"))
        }
        Endpoint::PutManifest { repo, reference } => {
            let limit = registry.config().max_manifest_bytes;
            let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
            let bytes = read_limited(byte_stream(body), headers, limit).await?;
            let put = registry.put_manifest(&repo, &reference, content_type.as_deref(), bytes, Some(proof.who.name())).await?;
            let mut r = Response::builder()
                .status(StatusCode::CREATED)
                .header(header::LOCATION, format!("/v2/{repo}/manifests/{}", put.digest))
                .header(DOCKER_CONTENT_DIGEST, put.digest.to_string());
            if let Some(subject) = put.subject {
                r = r.header(OCI_SUBJECT, subject.to_string());
            }
            Ok(r.body(Body::empty()).expect("valid response"))
        }
        Endpoint::DeleteManifest { repo, reference } => {
            registry.delete_manifest(&repo, &reference).await?;
            Ok(StatusCode::ACCEPTED.into_response())
        }
        Endpoint::Referrers { repo, digest } => {
            // A media type never holds a space: a `+` left unencoded (`…+json` typed into a shell)
            // still means `+`, not the space form encoding would make of it.
            let filter = query.get("artifactType").map(|t| t.replace(' ', "+"));
            let manifests = registry.referrers(&repo, &digest, filter.as_deref()).await?;
            let index = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": media_type::OCI_INDEX,
                "manifests": manifests,
            });
            let mut r = Response::builder().status(StatusCode::OK).header(header::CONTENT_TYPE, media_type::OCI_INDEX);
            if filter.is_some() {
                r = r.header(OCI_FILTERS_APPLIED, "artifactType");
            }
            Ok(r.body(Body::from(index.to_string())).expect("valid response"))
        }
        Endpoint::GetBlob { repo, digest, head } => {
            let etag = format!("\"{digest}\"");
            let mirrored = mirror_route(app, &repo)?;
            if head {
                let size = match &mirrored {
                    Some((mirror, route)) => mirror.stat_blob(route, &repo, &digest).await?,
                    None => registry.head_blob(&repo, &digest).await?,
                };
                return Ok(blob_headers(StatusCode::OK, &digest, &etag, size).body(Body::empty()).expect("valid response"));
            }
            registry.check_blob_gate(&repo, &digest, gate_bypass(app, &proof), mirrored.is_some()).await?;
            let range = range_request(headers)?;
            let read = match &mirrored {
                Some((mirror, route)) => mirror.blob(route, &repo, &digest, range).await?,
                // A whole blob may be a redirect to the store; a conditional GET is answered here.
                None => registry.serve_blob(&repo, &digest, range).await?,
            };
            if not_modified(headers, &etag) {
                let r = blob_headers(StatusCode::NOT_MODIFIED, &digest, &etag, read.size);
                return Ok(r.body(Body::empty()).expect("valid response"));
            }
            let (stream, len) = match read.body {
                BlobBody::Stream { stream, len } => (stream, len),
                BlobBody::Redirect(url) => {
                    return Ok(Response::builder()
                        .status(StatusCode::TEMPORARY_REDIRECT)
                        .header(header::LOCATION, url)
                        .header(DOCKER_CONTENT_DIGEST, digest.to_string())
                        .body(Body::empty())
                        .expect("valid response"));
                }
            };
            let r = match read.range {
                Some(range) => blob_headers(StatusCode::PARTIAL_CONTENT, &digest, &etag, len)
                    .header(header::CONTENT_RANGE, format!("bytes {}-{}/{}", range.start, range.end, read.size)),
                None => blob_headers(StatusCode::OK, &digest, &etag, len),
            };
            Ok(r.body(Body::from_stream(stream)).expect("valid response"))
        }
        Endpoint::DeleteBlob { repo, digest } => {
            registry.delete_blob(&repo, &digest).await?;
            Ok(StatusCode::ACCEPTED.into_response())
        }
        Endpoint::StartUpload { repo } => {
            if let Some(mount) = query.get("mount") {
                let digest = parse_digest(mount)?;
                let from = query
                    .get("from")
                    .map(|f| f.parse::<RepoName>().map_err(|e| ApiError::NameInvalid(e.to_string())))
                    .transpose()?;
                // A source the principal may not read is as good as none: a plain session.
                let from = from.filter(|_| proof.mount_from);
                return match registry.mount(&repo, &digest, from.as_ref()).await? {
                    MountResult::Mounted { .. } => Ok(blob_created(&repo, &digest)),
                    MountResult::Started(status) => Ok(upload_response(StatusCode::ACCEPTED, &repo, &status)),
                };
            }
            if let Some(d) = query.get("digest") {
                let digest = parse_digest(d)?;
                let declared = content_length(headers)?;
                registry.upload_whole(&repo, &digest, declared, byte_stream(body)).await?;
                return Ok(blob_created(&repo, &digest));
            }
            let status = registry.start_upload(&repo).await?;
            Ok(upload_response(StatusCode::ACCEPTED, &repo, &status))
        }
        Endpoint::UploadStatus { repo, id } => {
            let status = registry.upload_status(&repo, &id).await?;
            Ok(upload_response(StatusCode::NO_CONTENT, &repo, &status))
        }
        Endpoint::PatchUpload { repo, id } => {
            let (start, declared) = chunk_bounds(headers)?;
            let status = registry
                .append(&repo, &id, start, declared, byte_stream(body))
                .await
                .map_err(|error| ApiError::Upload { error, repo: repo.clone(), id: id.clone() })?;
            Ok(upload_response(StatusCode::ACCEPTED, &repo, &status))
        }
        Endpoint::FinishUpload { repo, id } => {
            let digest = parse_digest(query.get("digest").ok_or_else(|| {
                ApiError::DigestInvalid("the final PUT of an upload needs ?digest=".into())
            })?)?;
            let (start, declared) = chunk_bounds(headers)?;
            registry
                .finish_upload(&repo, &id, &digest, start, declared, byte_stream(body))
                .await
                .map_err(|error| ApiError::Upload { error, repo: repo.clone(), id: id.clone() })?;
            Ok(blob_created(&repo, &digest))
        }
        Endpoint::CancelUpload { repo, id } => {
            registry.cancel_upload(&repo, &id).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
    }
}

/// The `Warning` a manifest served from the cache carries when its upstream could not be asked.
const STALE_WARNING: &str = "110 customs \"Response is Stale\"";

/// The mirror and route when `repo` is under an upstream's prefix; a name the upstream's rules
/// refuse is an error.
fn mirror_route(app: &App, repo: &RepoName) -> Result<Option<(Arc<mirror::Mirror>, mirror::Route)>, ApiError> {
    let Some(mirror) = &app.mirror else { return Ok(None) };
    match mirror.route(repo) {
        None => Ok(None),
        Some(route) => Ok(Some((mirror.clone(), route?))),
    }
}

/// The `Range` header value for an upload session at `received` bytes, as Distribution writes
/// it (`0-0` for an empty session too).
pub(crate) fn range_header(received: u64) -> String {
    format!("0-{}", received.saturating_sub(1))
}

pub(crate) fn upload_location(repo: &RepoName, id: &UploadId) -> String {
    format!("/v2/{repo}/blobs/uploads/{id}")
}

fn upload_response(status: StatusCode, repo: &RepoName, upload: &UploadStatus) -> Response {
    Response::builder()
        .status(status)
        .header(header::LOCATION, upload_location(repo, &upload.id))
        .header(header::RANGE, range_header(upload.received))
        .header(DOCKER_UPLOAD_UUID, upload.id.to_string())
        .header(header::CONTENT_LENGTH, 0)
        .body(Body::empty())
        .expect("valid response")
}

fn blob_created(repo: &RepoName, digest: &Digest) -> Response {
    Response::builder()
        .status(StatusCode::CREATED)
        .header(header::LOCATION, format!("/v2/{repo}/blobs/{digest}"))
        .header(DOCKER_CONTENT_DIGEST, digest.to_string())
        .header(header::CONTENT_LENGTH, 0)
        .body(Body::empty())
        .expect("valid response")
}

fn blob_headers(status: StatusCode, digest: &Digest, etag: &str, len: u64) -> http::response::Builder {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, len)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::ETAG, etag)
        .header(DOCKER_CONTENT_DIGEST, digest.to_string())
}

pub(crate) fn json(status: StatusCode, body: Bytes) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Adds `Link: <path?n=N&last=L>; rel="next"` when more entries follow.
pub(crate) fn with_next_link(mut r: Response, path: &str, page: &PageRequest, more: bool, last: Option<String>) -> Response {
    if let (true, Some(last)) = (more, last) {
        let n = page.n.unwrap_or(registry::DEFAULT_PAGE).min(registry::MAX_PAGE);
        let link = format!("<{path}?n={n}&last={}>; rel=\"next\"", encode_query_value(&last));
        if let Ok(v) = HeaderValue::from_str(&link) {
            r.headers_mut().insert(header::LINK, v);
        }
    }
    r
}

fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
}

/// A single `Range: bytes=...`; several ranges or other units are ignored (the whole blob is
/// served), a malformed `bytes=` range is refused.
fn range_request(headers: &HeaderMap) -> Result<Option<RangeRequest>, ApiError> {
    let Some(value) = headers.get(header::RANGE) else { return Ok(None) };
    let bad = || ApiError::BadRequest(ErrorCode::SizeInvalid, "malformed Range header".into());
    let value = value.to_str().map_err(|_| bad())?.trim();
    let Some(spec) = value.strip_prefix("bytes=") else { return Ok(None) };
    if spec.contains(',') {
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').ok_or_else(bad)?;
    let num = |s: &str| s.trim().parse::<u64>().map_err(|_| bad());
    Ok(Some(match (a.trim().is_empty(), b.trim().is_empty()) {
        (false, false) => RangeRequest::Closed(num(a)?, num(b)?),
        (false, true) => RangeRequest::From(num(a)?),
        (true, false) => RangeRequest::Suffix(num(b)?),
        (true, true) => return Err(bad()),
    }))
}

/// The chunk's first offset and length from `Content-Range` (`a-b`, also `bytes a-b`), and the
/// declared length from `Content-Length`; the two must agree.
fn chunk_bounds(headers: &HeaderMap) -> Result<(Option<u64>, Option<u64>), ApiError> {
    let length = content_length(headers)?;
    let Some(value) = headers.get(header::CONTENT_RANGE) else { return Ok((None, length)) };
    let bad = |m: &str| ApiError::BadRequest(ErrorCode::BlobUploadInvalid, format!("Content-Range: {m}"));
    let s = value.to_str().map_err(|_| bad("not text"))?.trim();
    let s = s.strip_prefix("bytes").map(|r| r.trim_start_matches(['=', ' '])).unwrap_or(s);
    let s = s.split('/').next().unwrap_or(s);
    let (a, b) = s.split_once('-').ok_or_else(|| bad("expected <start>-<end>"))?;
    let (a, b) = (a.trim().parse::<u64>(), b.trim().parse::<u64>());
    let (Ok(a), Ok(b)) = (a, b) else { return Err(bad("expected <start>-<end>")) };
    if b < a {
        return Err(ApiError::Registry(registry::Error::RangeNotSatisfiable { size: a }));
    }
    let range_len = b - a + 1;
    if let Some(l) = length
        && l != range_len
    {
        return Err(ApiError::BadRequest(
            ErrorCode::SizeInvalid,
            format!("Content-Length {l} does not match Content-Range {a}-{b}"),
        ));
    }
    Ok((Some(a), Some(range_len)))
}

fn content_length(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    headers
        .get(header::CONTENT_LENGTH)
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| ApiError::BadRequest(ErrorCode::SizeInvalid, "malformed Content-Length".into()))
        })
        .transpose()
}

/// Reads a body of at most `limit` bytes, refusing a larger one before buffering it.
async fn read_limited(mut body: ByteStream, headers: &HeaderMap, limit: usize) -> Result<Bytes, ApiError> {
    let too_large = || ApiError::Registry(registry::Error::ManifestTooLarge { limit });
    let declared = content_length(headers)?;
    if declared.is_some_and(|l| l > limit as u64) {
        return Err(too_large());
    }
    let mut buf = bytes::BytesMut::with_capacity(declared.unwrap_or(0) as usize);
    while let Some(chunk) = body.try_next().await.map_err(|e| {
        ApiError::BadRequest(ErrorCode::ManifestInvalid, format!("reading the manifest failed: {e}"))
    })? {
        if buf.len() + chunk.len() > limit {
            return Err(too_large());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

fn parse_digest(s: &str) -> Result<Digest, ApiError> {
    s.parse().map_err(|e: oci::DigestError| ApiError::DigestInvalid(e.to_string()))
}

/// Query parameters, decoded.
pub(crate) struct Query(Vec<(String, String)>);

impl Query {
    pub(crate) fn parse(q: Option<&str>) -> Result<Query, ApiError> {
        let pairs = serde_urlencoded::from_str::<Vec<(String, String)>>(q.unwrap_or(""))
            .map_err(|e| ApiError::BadRequest(ErrorCode::Unsupported, format!("malformed query: {e}")))?;
        Ok(Query(pairs))
    }

    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// Every value of a repeated key (`scope=…&scope=…`).
    pub(crate) fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> {
        self.0.iter().filter(move |(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    pub(crate) fn page(&self) -> Result<PageRequest, ApiError> {
        let n = self
            .get("n")
            .map(|n| n.parse::<usize>().map_err(|_| ApiError::BadRequest(ErrorCode::Unsupported, format!("n={n:?} is not a number"))))
            .transpose()?;
        Ok(PageRequest { n, last: self.get("last").map(str::to_owned) })
    }
}

/// `s` as one percent-encoded query value.
pub(crate) fn encode_query_value(s: &str) -> String {
    serde_urlencoded::to_string([("", s)]).map(|e| e[1..].to_owned()).unwrap_or_default()
}

//! The one map from every error to an HTTP response with the spec's JSON error body.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use oci::{ErrorCode, RepoName, UploadId};
use registry::Error as R;

/// Everything a `/v2` request can fail with.
#[derive(Debug)]
pub enum ApiError {
    Registry(R),
    /// An upload error that must say where the session stands (`Location`, `Range`).
    Upload { error: R, repo: RepoName, id: UploadId },
    NameInvalid(String),
    DigestInvalid(String),
    ManifestInvalid(String),
    /// A malformed request parameter or header.
    BadRequest(ErrorCode, String),
    UploadUnknown,
    /// The request's route class is at its limit and its queue is full.
    Shed(crate::admission::Shed),
    /// The client is over its request rate for the route class.
    RateLimited(crate::rate::Limited),
    /// The client already runs its maximum of upload requests at once.
    TooManyClientUploads,
    /// The request body arrived slower than the minimum rate and was cut.
    BodyTooSlow,
    NotFound,
    MethodNotAllowed,
    /// The registry is read-only (`read_only = true`): nothing a client sends is stored.
    ReadOnly,
    /// No or bad credentials, or a token without the scope: a challenge follows.
    Unauthorized { message: String, error: Option<&'static str>, scope: Option<String> },
    /// [`ApiError::Unauthorized`] with its `WWW-Authenticate` value.
    Challenge { message: String, www_authenticate: String },
    /// Known, and not allowed.
    Denied(String),
}

impl From<R> for ApiError {
    fn from(e: R) -> ApiError {
        ApiError::Registry(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message, extra) = self.mapped();
        let body = serde_json::json!({ "errors": [{ "code": code.as_str(), "message": message, "detail": {} }] });
        respond(status, "application/json", body.to_string(), extra)
    }
}

impl ApiError {
    /// The same status, message and headers for a person: `render(status, message)` is the
    /// HTML page, and a 401 challenges for Basic credentials, which a browser asks for.
    pub(crate) fn into_page(self, render: impl FnOnce(StatusCode, &str) -> String) -> Response {
        let (status, _, message, mut extra) = self.mapped();
        for (name, value) in &mut extra {
            if *name == header::WWW_AUTHENTICATE {
                *value = BASIC_CHALLENGE.to_owned();
            }
        }
        let page = render(status, &message);
        respond(status, "text/html; charset=utf-8", page, extra)
    }

    /// The one map: status, code, message and headers of every error (logged when the server is
    /// at fault).
    fn mapped(self) -> Mapped {
        // Shedding is the limits working as meant, not a fault: it is counted, not logged.
        let expected = matches!(self, ApiError::Shed(_) | ApiError::RateLimited(_) | ApiError::TooManyClientUploads);
        let basic_challenge = || (header::WWW_AUTHENTICATE, BASIC_CHALLENGE.to_owned());
        let (status, code, message, extra) = match self {
            ApiError::Registry(e) => registry_error(e, None),
            ApiError::Upload { error, repo, id } => registry_error(error, Some((repo, id))),
            ApiError::NameInvalid(m) => (StatusCode::BAD_REQUEST, ErrorCode::NameInvalid, m, vec![]),
            ApiError::DigestInvalid(m) => (StatusCode::BAD_REQUEST, ErrorCode::DigestInvalid, m, vec![]),
            ApiError::ManifestInvalid(m) => (StatusCode::BAD_REQUEST, ErrorCode::ManifestInvalid, m, vec![]),
            ApiError::BadRequest(code, m) => (StatusCode::BAD_REQUEST, code, m, vec![]),
            ApiError::UploadUnknown => {
                (StatusCode::NOT_FOUND, ErrorCode::BlobUploadUnknown, ErrorCode::BlobUploadUnknown.message().into(), vec![])
            }
            ApiError::Shed(shed) => (
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::TooManyRequests,
                "the registry is at capacity for this kind of request; retry after the given delay".into(),
                vec![(header::RETRY_AFTER, shed.retry_after_secs.to_string())],
            ),
            ApiError::RateLimited(limited) => (
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::TooManyRequests,
                "too many requests from this client; retry after the given delay".into(),
                vec![(header::RETRY_AFTER, limited.retry_after_secs.to_string())],
            ),
            ApiError::TooManyClientUploads => (
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::TooManyRequests,
                "this client already runs its maximum of uploads at once; retry when one finishes".into(),
                vec![(header::RETRY_AFTER, "1".into())],
            ),
            ApiError::BodyTooSlow => (
                StatusCode::REQUEST_TIMEOUT,
                ErrorCode::BlobUploadInvalid,
                "the request body arrived slower than the minimum rate and was cut; nothing of it was kept".into(),
                vec![(header::CONNECTION, "close".into())],
            ),
            ApiError::NotFound => {
                (StatusCode::NOT_FOUND, ErrorCode::NameUnknown, "no such endpoint in the distribution API".into(), vec![])
            }
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                ErrorCode::Unsupported,
                "method not allowed on this endpoint".into(),
                vec![],
            ),
            ApiError::Unauthorized { message, .. } => {
                (StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, message, vec![basic_challenge()])
            }
            ApiError::Challenge { message, www_authenticate } => (
                StatusCode::UNAUTHORIZED,
                ErrorCode::Unauthorized,
                message,
                vec![(header::WWW_AUTHENTICATE, www_authenticate)],
            ),
            ApiError::Denied(m) => (StatusCode::FORBIDDEN, ErrorCode::Denied, m, vec![]),
            ApiError::ReadOnly => (
                StatusCode::METHOD_NOT_ALLOWED,
                ErrorCode::Unsupported,
                "the registry is read-only for maintenance: pulls are served, pushes and changes are refused".into(),
                vec![],
            ),
        };
        if status.is_server_error() && !expected {
            tracing::error!(%status, code = code.as_str(), %message, "request failed");
        }
        (status, code, message, extra)
    }
}

fn respond(status: StatusCode, content_type: &'static str, body: String, extra: Vec<(header::HeaderName, String)>) -> Response {
    let mut response = (status, [(header::CONTENT_TYPE, content_type)], Body::from(body)).into_response();
    for (name, value) in extra {
        if let Ok(v) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, v);
        }
    }
    response
}

/// Only the token endpoint answers 401 without a Bearer challenge: it takes Basic credentials.
const BASIC_CHALLENGE: &str = "Basic realm=\"customs\"";

type Mapped = (StatusCode, ErrorCode, String, Vec<(header::HeaderName, String)>);

fn registry_error(e: R, session: Option<(RepoName, UploadId)>) -> Mapped {
    let message = e.to_string();
    let (status, code, extra) = match e {
        R::BlobUnknown(_) => (StatusCode::NOT_FOUND, ErrorCode::BlobUnknown, vec![]),
        R::NameUnknown(_) => (StatusCode::NOT_FOUND, ErrorCode::NameUnknown, vec![]),
        R::ManifestUnknown(_) => (StatusCode::NOT_FOUND, ErrorCode::ManifestUnknown, vec![]),
        R::ManifestBlobUnknown(_) => (StatusCode::BAD_REQUEST, ErrorCode::ManifestBlobUnknown, vec![]),
        R::ManifestInvalid(_) => (StatusCode::BAD_REQUEST, ErrorCode::ManifestInvalid, vec![]),
        R::ManifestTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::ManifestInvalid, vec![]),
        R::Unsupported(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, ErrorCode::Unsupported, vec![]),
        R::NameInvalid(_) => (StatusCode::BAD_REQUEST, ErrorCode::NameInvalid, vec![]),
        R::UploadUnknown => (StatusCode::NOT_FOUND, ErrorCode::BlobUploadUnknown, vec![]),
        R::UploadInvalid(_) => (StatusCode::BAD_REQUEST, ErrorCode::BlobUploadInvalid, vec![]),
        R::UploadOutOfOrder { received } => {
            let mut extra = vec![(header::RANGE, crate::v2::range_header(received))];
            if let Some((repo, id)) = &session {
                extra.push((header::LOCATION, crate::v2::upload_location(repo, id)));
                extra.push((header::HeaderName::from_static("docker-upload-uuid"), id.to_string()));
            }
            (StatusCode::RANGE_NOT_SATISFIABLE, ErrorCode::BlobUploadInvalid, extra)
        }
        R::RangeNotSatisfiable { size } => {
            (StatusCode::RANGE_NOT_SATISFIABLE, ErrorCode::SizeInvalid, vec![(header::CONTENT_RANGE, format!("bytes */{size}"))])
        }
        R::DigestInvalid(_) | R::DigestMismatch { .. } => (StatusCode::BAD_REQUEST, ErrorCode::DigestInvalid, vec![]),
        R::SizeInvalid(_) => (StatusCode::BAD_REQUEST, ErrorCode::SizeInvalid, vec![]),
        R::TooManyUploads { .. } => {
            (StatusCode::TOO_MANY_REQUESTS, ErrorCode::TooManyRequests, vec![(header::RETRY_AFTER, "5".into())])
        }
        R::Unavailable(_) => {
            (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unknown, vec![(header::RETRY_AFTER, "1".into())])
        }
        // A 5xx (the registry's fault, for the operator's alerts) without Retry-After: an early
        // retry will not find space.
        R::InsufficientStorage(_) => (StatusCode::INSUFFICIENT_STORAGE, ErrorCode::Denied, vec![]),
        R::OverQuota(_) => (StatusCode::FORBIDDEN, ErrorCode::Denied, vec![]),
        R::Upstream(_) => (StatusCode::BAD_GATEWAY, ErrorCode::Unknown, vec![]),
        R::UpstreamBusy { retry_after_secs, .. } => (
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::TooManyRequests,
            vec![(header::RETRY_AFTER, retry_after_secs.to_string())],
        ),
        R::Unauthenticated(_) => (
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            vec![(header::WWW_AUTHENTICATE, BASIC_CHALLENGE.into())],
        ),
        R::Denied(_) | R::Blocked(_) => (StatusCode::FORBIDDEN, ErrorCode::Denied, vec![]),
        R::Pending { retry_after_secs } => (
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::TooManyRequests,
            vec![(header::RETRY_AFTER, retry_after_secs.to_string())],
        ),
        R::LoginsLocked { retry_after_secs } => (
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::TooManyRequests,
            vec![(header::RETRY_AFTER, retry_after_secs.to_string())],
        ),
        R::NotFound(_) => (StatusCode::NOT_FOUND, ErrorCode::NameUnknown, vec![]),
        R::Exists(_) => (StatusCode::CONFLICT, ErrorCode::Denied, vec![]),
        R::Invalid(_) => (StatusCode::BAD_REQUEST, ErrorCode::Unsupported, vec![]),
    };
    (status, code, message, extra)
}

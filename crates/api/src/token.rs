//! `GET /token`: the Docker token spec's endpoint (and `POST /token`, the OAuth2 password grant
//! containerd tries first). Basic credentials, or none for anonymous access; each requested
//! scope is granted as far as the principal may, and no further.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use auth::Scope;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{Method, StatusCode};
use oci::ErrorCode;

use crate::App;
use crate::admission::RouteClass;
use crate::authn::basic_credentials;
use crate::error::ApiError;
use crate::telemetry::Held;
use crate::v2::{Query, json, observe};

/// Largest OAuth2 form accepted.
const MAX_FORM_BYTES: usize = 64 * 1024;

pub(crate) async fn token(State(app): State<Arc<App>>, request: Request) -> Response {
    observe(&app, RouteClass::Token, request, |app, client, request| async move { issue(&app, client, request).await }).await
}

async fn issue(app: &App, client: Option<IpAddr>, request: Request) -> (Response, Held) {
    let Some(authn) = &app.authn else {
        return (ApiError::NotFound.into_response(), Held::default());
    };
    let held = match app.admit(RouteClass::Token, client.map(crate::rate::ClientKey::Address)).await {
        Ok(held) => held,
        Err(e) => return (e.into_response(), Held::default()),
    };
    let oauth = request.method() == Method::POST;
    let answer = async {
        let (query, credentials) = if oauth {
            let body = axum::body::to_bytes(request.into_body(), MAX_FORM_BYTES)
                .await
                .map_err(|e| ApiError::BadRequest(ErrorCode::Unsupported, format!("reading the form failed: {e}")))?;
            let form = Query::parse(Some(&String::from_utf8_lossy(&body)))?;
            if form.get("grant_type") != Some("password") {
                return Err(ApiError::BadRequest(ErrorCode::Unsupported, "only grant_type=password is supported".into()));
            }
            let name = form.get("username").unwrap_or_default().to_owned();
            let secret = form.get("password").unwrap_or_default().to_owned();
            (form, Some((name, secret)))
        } else {
            (Query::parse(request.uri().query())?, basic_credentials(request.headers())?)
        };
        if let Some(service) = query.get("service")
            && service != authn.service()
        {
            return Err(ApiError::BadRequest(ErrorCode::Unsupported, format!("this registry is service {:?}", authn.service())));
        }
        let mut scopes = Vec::new();
        for s in query.all("scope").flat_map(str::split_whitespace) {
            scopes.push(Scope::parse(s).map_err(|e| ApiError::BadRequest(ErrorCode::Unsupported, e.to_string()))?);
        }
        let principal = match credentials {
            None => authn.access.anonymous(),
            Some((name, secret)) => match authn.access.cached(&name, &secret) {
                Some(p) => p,
                None => authn.check_basic(&name, &secret, client).await?,
            },
        };
        let issued = authn.access.issue_token(&principal, &scopes);
        let issued_at = oci::rfc3339(issued.issued_at.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0));
        let body = serde_json::json!({
            "token": issued.token,
            "access_token": issued.token,
            "expires_in": issued.expires_in,
            "issued_at": issued_at,
        });
        Ok::<_, ApiError>(json(StatusCode::OK, body.to_string().into()))
    };
    match answer.await {
        Ok(r) => (r, held),
        Err(e) => (e.into_response(), held),
    }
}

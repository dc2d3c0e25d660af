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
        let issued_at = rfc3339(issued.issued_at.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0));
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

/// `2026-11-24T10:00:00Z` for seconds since the epoch (civil-from-days, proleptic Gregorian).
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_dates() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(super::rfc3339(1_795_478_400 + 3_661), "2026-11-24T01:01:01Z");
    }
}

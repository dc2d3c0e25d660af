//! `/api/v1/quotas`: each namespace's storage quota and what it holds, as Harbor shows a project's.
//! Open when authentication is off; with it on, the list is for admins, and one namespace's quota
//! for anyone who may pull from it (a CI job asking how much room its next push has).

use std::net::IpAddr;
use std::sync::Arc;

use auth::Action;
use axum::extract::{Request, State};
use axum::response::Response;
use http::{Method, StatusCode};
use oci::RepoName;
use registry::{PageRequest, QuotaUsage};

use crate::App;
use crate::authn::Who;
use crate::manage::{Admitted, Head, admit};
use crate::error::ApiError;
use crate::telemetry::Held;
use crate::v2::{Query, json, with_next_link};

/// Entries in a page of the list when `n` is not given: each may cost a read of the records.
const DEFAULT_PAGE: usize = 100;
/// Larger `n` is lowered to this.
const MAX_PAGE: usize = 1000;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Endpoint {
    /// `GET /api/v1/quotas?n=&last=`
    List,
    /// `GET /api/v1/quotas/<namespace or repository>`
    One(RepoName),
}

impl Endpoint {
    fn parse(method: &Method, path: &str) -> Result<Endpoint, ApiError> {
        if method != Method::GET && method != Method::HEAD {
            return Err(ApiError::MethodNotAllowed);
        }
        let rest = path.strip_prefix("/api/v1/quotas").ok_or(ApiError::NotFound)?.trim_matches('/');
        if rest.is_empty() {
            return Ok(Endpoint::List);
        }
        let name = rest.parse().map_err(|e: oci::NameError| ApiError::from(registry::Error::NameInvalid(e.to_string())))?;
        Ok(Endpoint::One(name))
    }
}

pub(crate) async fn dispatch(State(app): State<Arc<App>>, request: Request) -> Response {
    crate::manage::respond(&app, request, |app, client, request| async move { admitted(&app, client, request).await }).await
}

async fn admitted(app: &App, client: Option<IpAddr>, request: Request) -> (Result<Response, ApiError>, Held) {
    let refuse = |who: &Who, principal: &auth::Principal, endpoint: &Endpoint| match endpoint {
        Endpoint::List if app.authn.is_some() && !principal.is_admin() => Some(crate::authorize::refusal(who, None)),
        Endpoint::One(name) if !who.principal.may(Action::Pull, name) => {
            Some(crate::authorize::refusal(who, Some(format!("repository:{name}:pull"))))
        }
        _ => None,
    };
    match admit(app, client, Head::of(&request), Endpoint::parse, refuse).await {
        Ok(Admitted { endpoint, held, .. }) => (handle(app, endpoint, request.uri().query()).await, held),
        Err((e, held)) => (Err(e), held),
    }
}

async fn handle(app: &App, endpoint: Endpoint, query: Option<&str>) -> Result<Response, ApiError> {
    match endpoint {
        Endpoint::List => {
            let asked = Query::parse(query)?.page()?;
            let n = asked.n.unwrap_or(DEFAULT_PAGE).min(MAX_PAGE);
            let listing = app.registry.quota_page(n, asked.last.as_deref()).await?;
            let page = PageRequest { n: Some(n), last: asked.last };
            let last = listing.entries.last().map(|q| q.namespace.clone());
            let quotas: Vec<_> = listing.entries.iter().map(usage_json).collect();
            let body = serde_json::json!({ "quotas": quotas });
            Ok(with_next_link(json(StatusCode::OK, body.to_string().into()), "/api/v1/quotas", &page, listing.more, last))
        }
        Endpoint::One(name) => match app.registry.quota_of(name.as_str()).await? {
            Some(usage) => Ok(json(StatusCode::OK, usage_json(&usage).to_string().into())),
            None => Err(registry::Error::NotFound(format!("no storage quota applies to {name}")).into()),
        },
    }
}

fn usage_json(q: &QuotaUsage) -> serde_json::Value {
    serde_json::json!({
        "namespace": q.namespace, "max_bytes": q.max_bytes, "used_bytes": q.used_bytes,
        "free_bytes": q.max_bytes.saturating_sub(q.used_bytes),
    })
}

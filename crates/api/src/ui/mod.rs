//! `/ui`: the web UI, server-rendered pages with no script, over the same registry calls and the
//! same access rules as the API.
//!
//! - `/ui/`: the repositories the viewer may pull, and the search forms;
//! - `/ui/r/<name>`: a repository's tags, each with its digest, kind, size and gate state;
//! - `/ui/r/<name>/manifests/<digest>`: a manifest — tags, pusher, layers or platforms,
//!   referrers, the gate's state with its reasons, and the inspection report's findings;
//! - `/ui/search?package=&version=` and `?vulnerability=`: the images holding a package or
//!   affected by a vulnerability ("which of our images contain log4j-core 2.14?");
//! - `/ui/login`: asks the browser for Basic credentials (a 401 with a Basic challenge) and
//!   sends it back to `/ui/`.
//!
//! Pages are API-class work (admission, rate limits, the access log). With authentication on,
//! lists show only what the viewer may pull and a repository's pages need pull on it; a browser
//! is challenged for Basic credentials, never a token. Every page is sent with a
//! Content-Security-Policy that allows no script at all and `Cache-Control: no-store`.

mod html;
mod pages;

use std::net::IpAddr;
use std::sync::Arc;

use auth::Action;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, StatusCode, header};
use meta::PackageQuery;
use oci::{Digest, RepoName};
use registry::{PageRequest, VersionFilter};

use crate::App;
use crate::admission::RouteClass;
use crate::authn::{Via, Who};
use crate::error::ApiError;
use crate::manage::{Admitted, Head, admit};
use crate::telemetry::Held;
use crate::v2::{Query, observe};
use pages::{Found, SearchForm, Viewer};

/// Repositories on one page of `/ui/`.
const REPOSITORIES_PER_PAGE: usize = 100;
/// Tags on one page of a repository.
const TAGS_PER_PAGE: usize = 50;

const STYLE: &str = include_str!("style.css");
const SECURITY_HEADERS: [(&str, &str); 5] = [
    ("content-security-policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("cache-control", "no-store"),
];

/// Every page of the UI.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Page {
    /// `/ui`, sent on to `/ui/`.
    Root,
    Home,
    Repository(RepoName),
    Manifest { repo: RepoName, digest: Digest },
    Search,
    Login,
    Style,
}

impl Page {
    fn parse(method: &Method, path: &str) -> Result<Page, ApiError> {
        let no_page = || ApiError::Registry(registry::Error::NotFound(format!("there is no page {path}")));
        let rest = path.strip_prefix("/ui").ok_or_else(no_page)?;
        let page = match rest {
            "" => Page::Root,
            "/" => Page::Home,
            "/search" => Page::Search,
            "/login" => Page::Login,
            "/style.css" => Page::Style,
            _ => {
                let name = rest.strip_prefix("/r/").ok_or_else(no_page)?.trim_end_matches('/');
                // A repository name has no `:`, a digest always has one: a name ending in
                // `manifests/<digest>` is a manifest's page.
                match name.rsplit_once("/manifests/") {
                    Some((repo, digest)) if digest.contains(':') => Page::Manifest {
                        repo: repo_name(repo)?,
                        digest: digest.parse().map_err(|e: oci::DigestError| ApiError::DigestInvalid(e.to_string()))?,
                    },
                    _ => Page::Repository(repo_name(name)?),
                }
            }
        };
        if method != Method::GET && method != Method::HEAD {
            return Err(ApiError::MethodNotAllowed);
        }
        Ok(page)
    }
}

fn repo_name(s: &str) -> Result<RepoName, ApiError> {
    s.parse().map_err(|e: oci::NameError| ApiError::NameInvalid(e.to_string()))
}

pub(crate) async fn dispatch(State(app): State<Arc<App>>, request: Request) -> Response {
    observe(&app, RouteClass::Api, request, |app, client, request| async move {
        let (result, held) = admitted(&app, client, request).await;
        let mut response = result.unwrap_or_else(|e| e.into_page(pages::error));
        for (name, value) in SECURITY_HEADERS {
            response.headers_mut().insert(name, HeaderValue::from_static(value));
        }
        (response, held)
    })
    .await
}

async fn admitted(app: &App, client: Option<IpAddr>, request: Request) -> (Result<Response, ApiError>, Held) {
    let refuse = |who: &Who, _: &auth::Principal, page: &Page| match page {
        Page::Repository(repo) | Page::Manifest { repo, .. } if !who.principal.may(Action::Pull, repo) => {
            Some(crate::authorize::refusal(who, Some(format!("repository:{repo}:pull"))))
        }
        Page::Login if who.via == Via::Anonymous => {
            Some(ApiError::Unauthorized { message: "log in to see the repositories you may pull".into(), error: None, scope: None })
        }
        _ => None,
    };
    let query = match Query::parse(request.uri().query()) {
        Ok(query) => query,
        Err(e) => return (Err(e), Held::default()),
    };
    let host = request.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost").to_owned();
    let Admitted { endpoint, who, held, .. } = match admit(app, client, Head::of(&request), Page::parse, refuse).await {
        Ok(admitted) => admitted,
        Err((e, held)) => return (Err(e), held),
    };
    let viewer = Viewer { name: matches!(who.via, Via::Basic | Via::Bearer).then(|| who.name().to_owned()), may_log_in: who.via == Via::Anonymous, host };
    (render(app, endpoint, &who, &viewer, &query).await, held)
}

async fn render(app: &App, page: Page, who: &Who, viewer: &Viewer, query: &Query) -> Result<Response, ApiError> {
    let registry = &app.registry;
    let visible = |repo: &RepoName| who.principal.may(Action::Pull, repo);
    let html = match page {
        Page::Root | Page::Login => return Ok((StatusCode::SEE_OTHER, [(header::LOCATION, "/ui/")]).into_response()),
        Page::Style => return Ok(([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE).into_response()),
        Page::Home => {
            let page = PageRequest { n: Some(REPOSITORIES_PER_PAGE), last: query.get("last").map(str::to_owned) };
            pages::home(viewer, &registry.catalog_where(&page, visible).await?)
        }
        Page::Repository(repo) => {
            let page = PageRequest { n: Some(TAGS_PER_PAGE), last: query.get("last").map(str::to_owned) };
            pages::repository(viewer, &repo, &registry.tag_rows(&repo, &page).await?)
        }
        Page::Manifest { repo, digest } => pages::manifest(viewer, &repo, &registry.manifest_view(&repo, &digest).await?),
        Page::Search => {
            let form = SearchForm {
                package: query.get("package").unwrap_or("").trim().to_owned(),
                version: query.get("version").unwrap_or("").trim().to_owned(),
                vulnerability: query.get("vulnerability").unwrap_or("").trim().to_owned(),
            };
            let found = if !form.package.is_empty() {
                let q = PackageQuery { name: Some(form.package.clone()), ..PackageQuery::default() };
                let versions = match form.version.as_str() {
                    "" => VersionFilter::Any,
                    v => VersionFilter::Prefix(v.to_owned()),
                };
                let mut images = registry.images_with_package(&q, &versions).await?;
                images.retain(|m| visible(&m.repo));
                Found::Packages(images)
            } else if !form.vulnerability.is_empty() {
                let mut images = registry.images_with_vulnerability(&form.vulnerability).await?;
                images.retain(|m| visible(&m.repo));
                Found::Vulnerabilities(images)
            } else {
                Found::Nothing
            };
            pages::search(viewer, &form, &found)
        }
    };
    Ok(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response())
}

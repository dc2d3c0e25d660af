//! `/api/v1` for the gate: an image's report and verdict, the images a vulnerability or a package
//! is in, and waivers. Open when authentication is off; with it on, a report needs pull on its
//! repository, query answers list only repositories the caller may pull, and waivers are
//! changed by admins.

use std::net::IpAddr;
use std::sync::Arc;

use auth::Action;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{Method, StatusCode};
use meta::{ImageMatch, NewWaiver, PackageQuery, Waiver};
use oci::{Digest, ErrorCode, RepoName};
use registry::{Actor, VersionFilter};
use serde::Deserialize;

use crate::App;
use crate::authn::{Via, Who};
use crate::manage::{Admitted, Head, admit};
use crate::error::ApiError;
use crate::telemetry::Held;
use crate::v2::{Query, json};

const MAX_BODY_BYTES: usize = 64 * 1024;

/// Every gate endpoint of `/api/v1`.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Endpoint {
    /// `GET /api/v1/images/<repo>/<digest>/report`
    Report { repo: RepoName, digest: Digest },
    /// `GET /api/v1/vulnerabilities/<id>/images`
    VulnerabilityImages(String),
    /// `GET /api/v1/packages?purl=|name=&ecosystem=&version=|range=`
    Packages,
    /// `GET /api/v1/waivers`
    Waivers,
    /// `POST /api/v1/waivers` `{"finding", "repositories", "reason", "expires"}`
    AddWaiver,
    /// `DELETE /api/v1/waivers/<id>`
    RemoveWaiver(i64),
}

impl Endpoint {
    fn parse(method: &Method, path: &str) -> Result<Endpoint, ApiError> {
        let rest = path.strip_prefix("/api/v1/").ok_or(ApiError::NotFound)?;
        let segments: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
        let get = method == Method::GET;
        Ok(match segments.as_slice() {
            ["images", repo @ .., digest, "report"] if get && !repo.is_empty() => Endpoint::Report {
                repo: repo.join("/").parse().map_err(|e: oci::NameError| ApiError::from(registry::Error::NameInvalid(e.to_string())))?,
                digest: digest.parse().map_err(|e: oci::DigestError| ApiError::from(registry::Error::DigestInvalid(e.to_string())))?,
            },
            ["vulnerabilities", id, "images"] if get => Endpoint::VulnerabilityImages((*id).to_owned()),
            ["packages"] if get => Endpoint::Packages,
            ["waivers"] if get => Endpoint::Waivers,
            ["waivers"] if method == Method::POST => Endpoint::AddWaiver,
            ["waivers", id] if method == Method::DELETE => {
                Endpoint::RemoveWaiver(id.parse().map_err(|_| invalid(format!("waiver id {id:?} is not a number")))?)
            }
            ["images", ..] | ["vulnerabilities", ..] | ["packages"] | ["waivers", ..] => return Err(ApiError::MethodNotAllowed),
            _ => return Err(ApiError::NotFound),
        })
    }
}

pub(crate) async fn dispatch(State(app): State<Arc<App>>, request: Request) -> Response {
    crate::manage::respond(&app, request, |app, client, request| async move { admitted(&app, client, request).await }).await
}

async fn admitted(app: &App, client: Option<IpAddr>, request: Request) -> (Result<Response, ApiError>, Held) {
    let refuse = |who: &Who, principal: &auth::Principal, endpoint: &Endpoint| match endpoint {
        Endpoint::Report { repo, .. } if !who.principal.may(Action::Pull, repo) => {
            Some(crate::authorize::refusal(who, Some(format!("repository:{repo}:pull"))))
        }
        Endpoint::AddWaiver | Endpoint::RemoveWaiver(_) if !principal.is_admin() => Some(crate::authorize::refusal(who, None)),
        Endpoint::Waivers if who.via == Via::Anonymous => Some(crate::authorize::refusal(who, None)),
        _ => None,
    };
    let Admitted { endpoint, who, principal, held } = match admit(app, client, Head::of(&request), Endpoint::parse, refuse).await {
        Ok(admitted) => admitted,
        Err((e, held)) => return (Err(e), held),
    };
    let actor = Actor { name: &principal.name, client };
    (handle(app, endpoint, &who.principal, &actor, request).await, held)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WaiverRequest {
    finding: String,
    #[serde(default = "everything")]
    repositories: String,
    reason: String,
    /// RFC 3339 time or a date.
    expires: String,
}

fn everything() -> String {
    "**".into()
}

async fn handle(app: &App, endpoint: Endpoint, principal: &auth::Principal, actor: &Actor<'_>, request: Request) -> Result<Response, ApiError> {
    let query = Query::parse(request.uri().query())?;
    let ok = |v: serde_json::Value| json(StatusCode::OK, v.to_string().into());
    let registry = &app.registry;
    // Query answers list only what the caller may pull.
    let visible = |repo: &RepoName| principal.may(Action::Pull, repo);
    match endpoint {
        Endpoint::Report { repo, digest } => {
            let registry::ImageReport { report, inspected_at_ms, millis, verdict } = registry.image_report(&repo, &digest).await?;
            let verdict = verdict.map(|v| {
                serde_json::json!({
                    "served": v.serves(), "allowed": v.allowed, "enforced": v.enforced, "policy": v.policy,
                    "reasons": v.reasons, "warnings": v.warnings, "judged_at": oci::rfc3339((v.judged_at_ms / 1000) as u64),
                })
            });
            Ok(ok(serde_json::json!({
                "repository": repo.as_str(), "digest": digest.to_string(), "verdict": verdict,
                "inspected_at": oci::rfc3339((inspected_at_ms / 1000) as u64), "inspection_millis": millis,
                "report": report,
            })))
        }
        Endpoint::VulnerabilityImages(id) => {
            let found = registry.images_with_vulnerability(&id).await?;
            let images: Vec<_> = found
                .iter()
                .filter(|m| visible(&m.repo))
                .map(|m| {
                    let mut v = image_json(m);
                    v["id"] = serde_json::json!(m.found.canonical);
                    v["package"] = serde_json::json!(m.found.package);
                    v["installed_version"] = serde_json::json!(m.found.version);
                    v["severity"] = serde_json::json!(m.found.severity);
                    v["fixed_version"] = serde_json::json!(m.found.fixed);
                    v
                })
                .collect();
            Ok(ok(serde_json::json!({ "vulnerability": id, "images": images })))
        }
        Endpoint::Packages => {
            let q = PackageQuery {
                purl: query.get("purl").map(str::to_owned),
                ecosystem: query.get("ecosystem").map(str::to_owned),
                name: query.get("name").map(str::to_owned),
            };
            let versions = match (query.get("version"), query.get("range")) {
                (Some(_), Some(_)) => return Err(invalid("give ?version= or ?range=, not both".into())),
                (Some(v), None) => VersionFilter::Prefix(v.to_owned()),
                (None, Some(r)) => VersionFilter::parse_range(r)?,
                (None, None) => VersionFilter::Any,
            };
            let found = registry.images_with_package(&q, &versions).await?;
            let images: Vec<_> = found
                .iter()
                .filter(|m| visible(&m.repo))
                .map(|m| {
                    let mut v = image_json(m);
                    let c = &m.found;
                    v["package"] = serde_json::json!({ "ecosystem": c.ecosystem, "name": c.name, "version": c.version, "purl": c.purl, "layer": c.layer });
                    v
                })
                .collect();
            Ok(ok(serde_json::json!({ "images": images })))
        }
        Endpoint::Waivers => {
            let all: Vec<_> = registry.waivers().await?.iter().map(waiver_json).collect();
            Ok(ok(serde_json::json!({ "waivers": all })))
        }
        Endpoint::AddWaiver => {
            let body = axum::body::to_bytes(request.into_body(), MAX_BODY_BYTES)
                .await
                .map_err(|e| ApiError::BadRequest(ErrorCode::Unsupported, format!("reading the body failed: {e}")))?;
            let w: WaiverRequest = serde_json::from_slice(&body).map_err(|e| invalid(format!("the request body is not a waiver: {e}")))?;
            let expires = oci::parse_rfc3339(&w.expires).ok_or_else(|| invalid(format!("expires {:?} is not an RFC 3339 time or a date", w.expires)))?;
            let waiver = NewWaiver {
                finding: w.finding,
                repositories: w.repositories,
                reason: w.reason,
                expires_at_ms: expires as i64 * 1000,
                created_by: actor.name.to_owned(),
            };
            let added = registry.add_waiver(actor, waiver).await?;
            Ok(json(StatusCode::CREATED, waiver_json(&added).to_string().into()))
        }
        Endpoint::RemoveWaiver(id) => {
            registry.remove_waiver(actor, id).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
    }
}

fn image_json<T>(m: &ImageMatch<T>) -> serde_json::Value {
    serde_json::json!({ "repository": m.repo.as_str(), "digest": m.digest.to_string(), "tags": m.tags })
}

pub(crate) fn waiver_json(w: &Waiver) -> serde_json::Value {
    serde_json::json!({
        "id": w.id, "finding": w.finding, "repositories": w.repositories, "reason": w.reason,
        "expires": oci::rfc3339((w.expires_at_ms / 1000).max(0) as u64), "created_at": oci::rfc3339((w.created_at_ms / 1000).max(0) as u64),
        "created_by": w.created_by,
    })
}

fn invalid(message: String) -> ApiError {
    ApiError::Registry(registry::Error::Invalid(message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse_into_endpoints() {
        let d = Digest::sha256_of(b"x");
        assert_eq!(
            Endpoint::parse(&Method::GET, &format!("/api/v1/images/team/app/{d}/report")).unwrap(),
            Endpoint::Report { repo: "team/app".parse().unwrap(), digest: d.clone() }
        );
        assert_eq!(Endpoint::parse(&Method::GET, "/api/v1/vulnerabilities/CVE-2021-44228/images").unwrap(), Endpoint::VulnerabilityImages("CVE-2021-44228".into()));
        assert_eq!(Endpoint::parse(&Method::DELETE, "/api/v1/waivers/7").unwrap(), Endpoint::RemoveWaiver(7));
        assert!(matches!(Endpoint::parse(&Method::PUT, "/api/v1/waivers"), Err(ApiError::MethodNotAllowed)));
        assert!(Endpoint::parse(&Method::GET, &format!("/api/v1/images/{d}/report")).is_err(), "a repository is needed");
        assert!(Endpoint::parse(&Method::GET, "/api/v1/images/team/app/sha256:zz/report").is_err());
        assert!(Endpoint::parse(&Method::DELETE, "/api/v1/waivers/x").is_err());
    }
}

//! `/api/v1`: managing users, robots, roles, and reading the audit log. The same `Access` calls
//! serve the CLI. Every path is parsed into one [`Manage`] and decided by the authorization
//! point before it is handled.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use auth::{Actions, RepoGlob, Role};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{Method, StatusCode};
use meta::{AuditQuery, IdentityKind};
use oci::ErrorCode;
use registry::{Actor, PrincipalInfo};
use serde::Deserialize;

use crate::App;
use crate::admission::RouteClass;
use crate::authn::Via;
use crate::authorize::authorize_manage;
use crate::error::ApiError;
use crate::telemetry::Held;
use crate::v2::{Query, json, observe};

const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Every `/api/v1` endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Manage {
    /// `GET /api/v1/whoami`
    WhoAmI,
    /// `GET /api/v1/principals`
    Principals,
    /// `POST /api/v1/users` `{"name", "password"}`
    AddUser,
    /// `PUT /api/v1/users/<name>/password` `{"password"}`
    SetPassword(String),
    /// `DELETE /api/v1/users/<name>`
    RemoveUser(String),
    /// `POST /api/v1/robots` `{"name", "namespaces": [{"namespace", "actions"}], "expires_in_days", "description"}`
    CreateRobot,
    /// `DELETE /api/v1/robots/<name>`
    RevokeRobot(String),
    /// `POST /api/v1/roles` `{"principal", "role", "namespace"}`
    Grant,
    /// `DELETE /api/v1/roles?principal=&namespace=`
    Revoke,
    /// `GET /api/v1/audit?after=&limit=&actor=&action=`
    Audit,
    /// `POST /api/v1/htpasswd` with the file as the body
    ImportHtpasswd,
}

impl Manage {
    fn parse(method: &Method, path: &str) -> Result<Manage, ApiError> {
        let rest = path.strip_prefix("/api/v1/").ok_or(ApiError::NotFound)?;
        let segments: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
        let m = method;
        Ok(match (segments.as_slice(), m) {
            (["whoami"], &Method::GET) => Manage::WhoAmI,
            (["principals"], &Method::GET) => Manage::Principals,
            (["users"], &Method::POST) => Manage::AddUser,
            (["users", name, "password"], &Method::PUT) => Manage::SetPassword((*name).into()),
            (["users", name], &Method::DELETE) => Manage::RemoveUser((*name).into()),
            (["robots"], &Method::POST) => Manage::CreateRobot,
            (["robots", name], &Method::DELETE) => Manage::RevokeRobot((*name).into()),
            (["roles"], &Method::POST) => Manage::Grant,
            (["roles"], &Method::DELETE) => Manage::Revoke,
            (["audit"], &Method::GET) => Manage::Audit,
            (["htpasswd"], &Method::POST) => Manage::ImportHtpasswd,
            (["whoami" | "principals" | "users" | "robots" | "roles" | "audit" | "htpasswd", ..], _) => {
                return Err(ApiError::MethodNotAllowed);
            }
            _ => return Err(ApiError::NotFound),
        })
    }
}

pub(crate) async fn dispatch(State(app): State<Arc<App>>, request: Request) -> Response {
    respond(&app, request, |app, client, request| async move { admitted(&app, client, request).await }).await
}

/// Serves one `/api/v1` request: observed as API-class work, its error (if any) as the response.
pub(crate) async fn respond<F, Fut>(app: &Arc<App>, request: Request, admitted: F) -> Response
where
    F: FnOnce(Arc<App>, Option<IpAddr>, Request) -> Fut,
    Fut: std::future::Future<Output = (Result<Response, ApiError>, Held)>,
{
    observe(app, RouteClass::Api, request, |app, client, request| async move {
        let read = request.method() == http::Method::GET || request.method() == http::Method::HEAD;
        if app.registry.config().read_only && !read {
            return (ApiError::ReadOnly.into_response(), Held::default());
        }
        match admitted(app, client, request).await {
            (Ok(response), held) => (response, held),
            (Err(e), held) => (e.into_response(), held),
        }
    })
    .await
}

/// The caller of an `/api/v1` request, admitted as API-class work: who it proved to be (anyone,
/// when authentication is off) and its stored grants, on which management is decided (a token
/// carries only repository scopes; they never make an admin).
pub(crate) async fn identify(
    app: &App,
    client: Option<IpAddr>,
    headers: &http::HeaderMap,
    secure: bool,
) -> Result<(crate::authn::Who, Arc<auth::Principal>, Held), (ApiError, Held)> {
    let who = match &app.authn {
        None => crate::authn::open(),
        Some(authn) => match authn.authenticate(headers, client, &app.admission).await {
            Ok(who) => who,
            Err(e) => return Err((app.challenge(e, headers, secure), Held::default())),
        },
    };
    let held = app.admit(RouteClass::Api, who.rate_key(client)).await.map_err(|e| (e, Held::default()))?;
    let principal = match (&app.authn, who.via) {
        (Some(authn), Via::Bearer) => match authn.access.stored_grants(&who.principal).await {
            Ok(p) => p,
            Err(e) => return Err((e.into(), held)),
        },
        _ => who.principal.clone(),
    };
    Ok((who, principal, held))
}

/// An `/api/v1` request admitted: its endpoint, its caller (who they proved to be, and their
/// stored grants) and the admission it holds.
pub(crate) struct Admitted<E> {
    pub(crate) endpoint: E,
    pub(crate) who: crate::authn::Who,
    pub(crate) principal: Arc<auth::Principal>,
    pub(crate) held: Held,
}

/// What admitting a request reads of it: its head (the body, not `Sync`, stays out of the
/// futures that wait).
pub(crate) struct Head<'a> {
    method: &'a Method,
    path: &'a str,
    headers: &'a http::HeaderMap,
    secure: bool,
}

impl<'a> Head<'a> {
    pub(crate) fn of(request: &'a Request) -> Head<'a> {
        Head {
            method: request.method(),
            path: request.uri().path(),
            headers: request.headers(),
            secure: request.extensions().get::<crate::Secure>().is_some(),
        }
    }
}

/// Parses an `/api/v1` request with `parse`, identifies its caller and admits it as API-class
/// work; `refuse` says what, if anything, the caller may not do (a challenge goes back when they
/// could prove more).
pub(crate) async fn admit<E>(
    app: &App,
    client: Option<IpAddr>,
    head: Head<'_>,
    parse: impl FnOnce(&Method, &str) -> Result<E, ApiError>,
    refuse: impl FnOnce(&crate::authn::Who, &auth::Principal, &E) -> Option<ApiError>,
) -> Result<Admitted<E>, (ApiError, Held)> {
    let endpoint = parse(head.method, head.path).map_err(|e| (e, Held::default()))?;
    let (who, principal, held) = identify(app, client, head.headers, head.secure).await?;
    match refuse(&who, &principal, &endpoint) {
        Some(e) => Err((app.challenge(e, head.headers, head.secure), held)),
        None => Ok(Admitted { endpoint, who, principal, held }),
    }
}

async fn admitted(app: &App, client: Option<IpAddr>, request: Request) -> (Result<Response, ApiError>, Held) {
    let Some(authn) = &app.authn else {
        return (Err(ApiError::NotFound), Held::default());
    };
    let refuse = |who: &crate::authn::Who, principal: &auth::Principal, endpoint: &Manage| authorize_manage(who, principal, endpoint).err();
    let Admitted { endpoint, principal, held, .. } = match admit(app, client, Head::of(&request), Manage::parse, refuse).await {
        Ok(admitted) => admitted,
        Err((e, held)) => return (Err(e), held),
    };
    let actor = Actor { name: &principal.name, client };
    (handle(&authn.access, endpoint, &actor, &principal, request).await, held)
}

#[derive(Deserialize)]
struct NewUser {
    name: String,
    password: String,
}

#[derive(Deserialize)]
struct NewPassword {
    password: String,
}

#[derive(Deserialize)]
struct RobotRequest {
    name: String,
    namespaces: Vec<RobotNamespace>,
    #[serde(default)]
    expires_in_days: Option<u32>,
    #[serde(default)]
    description: String,
}

#[derive(Deserialize)]
struct RobotNamespace {
    namespace: String,
    actions: String,
}

#[derive(Deserialize)]
struct GrantRequest {
    principal: String,
    role: String,
    namespace: String,
}

async fn handle(
    access: &registry::Access,
    endpoint: Manage,
    actor: &Actor<'_>,
    principal: &auth::Principal,
    request: Request,
) -> Result<Response, ApiError> {
    let query = Query::parse(request.uri().query())?;
    let body = axum::body::to_bytes(request.into_body(), MAX_BODY_BYTES)
        .await
        .map_err(|e| ApiError::BadRequest(ErrorCode::Unsupported, format!("reading the body failed: {e}")))?;
    let ok = |status: StatusCode, v: serde_json::Value| json(status, v.to_string().into());
    match endpoint {
        Manage::WhoAmI => {
            let grants: Vec<_> = principal
                .grants
                .iter()
                .map(|g| serde_json::json!({ "namespace": g.namespace.as_str(), "actions": g.actions.to_list() }))
                .collect();
            Ok(ok(StatusCode::OK, serde_json::json!({ "name": principal.name, "admin": principal.is_admin(), "grants": grants })))
        }
        Manage::Principals => {
            let all: Vec<_> = access.principals().await?.iter().map(principal_json).collect();
            Ok(ok(StatusCode::OK, serde_json::json!({ "principals": all })))
        }
        Manage::AddUser => {
            let u: NewUser = parse_json(&body)?;
            access.add_user(actor, &u.name, &u.password).await?;
            Ok(ok(StatusCode::CREATED, serde_json::json!({ "name": u.name })))
        }
        Manage::SetPassword(name) => {
            let p: NewPassword = parse_json(&body)?;
            access.set_password(actor, &name, &p.password).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        Manage::RemoveUser(name) => {
            access.remove(actor, &name, IdentityKind::User).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        Manage::CreateRobot => {
            let r: RobotRequest = parse_json(&body)?;
            let mut grants = Vec::new();
            for ns in &r.namespaces {
                let glob: RepoGlob = ns.namespace.parse().map_err(|e: auth::GlobError| invalid(e.to_string()))?;
                let actions = Actions::parse_list(&ns.actions, Actions::NONE).map_err(invalid)?;
                grants.push((glob, actions));
            }
            let expires_in = r.expires_in_days.map(|d| Duration::from_secs(u64::from(d) * 86_400));
            let robot = access.create_robot(actor, &r.name, &grants, expires_in, &r.description).await?;
            let body = serde_json::json!({ "name": robot.name, "secret": robot.secret, "expires_at_ms": robot.expires_at_ms });
            Ok(ok(StatusCode::CREATED, body))
        }
        Manage::RevokeRobot(name) => {
            access.remove(actor, &name, IdentityKind::Robot).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        Manage::Grant => {
            let g: GrantRequest = parse_json(&body)?;
            let role: Role = g.role.parse().map_err(invalid)?;
            let glob: RepoGlob = g.namespace.parse().map_err(|e: auth::GlobError| invalid(e.to_string()))?;
            access.grant(actor, &g.principal, role, &glob).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        Manage::Revoke => {
            let who = query.get("principal").ok_or_else(|| invalid("?principal= is required".into()))?;
            let ns = query.get("namespace").ok_or_else(|| invalid("?namespace= is required".into()))?;
            let glob: RepoGlob = ns.parse().map_err(|e: auth::GlobError| invalid(e.to_string()))?;
            access.revoke(actor, who, &glob).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        Manage::Audit => {
            let number = |k: &str| query.get(k).map(|v| v.parse::<i64>().map_err(|_| invalid(format!("{k}={v:?} is not a number")))).transpose();
            let q = AuditQuery {
                after_id: number("after")?.unwrap_or(0),
                limit: number("limit")?.unwrap_or(100).clamp(1, 1000) as usize,
                actor: query.get("actor").map(str::to_owned),
                action_prefix: query.get("action").map(str::to_owned),
            };
            let entries = access.audit_log(&q).await?;
            let next = entries.last().map(|e| e.id);
            let entries: Vec<_> = entries
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "id": r.id, "at": oci::rfc3339((r.at_ms / 1000) as u64), "actor": r.entry.actor,
                        "action": r.entry.action, "target": r.entry.target, "client": r.entry.client, "detail": r.entry.detail,
                    })
                })
                .collect();
            Ok(ok(StatusCode::OK, serde_json::json!({ "entries": entries, "next_after": next })))
        }
        Manage::ImportHtpasswd => {
            let text = String::from_utf8(body.to_vec()).map_err(|_| invalid("the htpasswd file is not UTF-8".into()))?;
            let (imported, skipped) = access.import_htpasswd(actor, &text).await?;
            Ok(ok(StatusCode::OK, serde_json::json!({ "imported": imported, "skipped": skipped })))
        }
    }
}

fn principal_json(p: &PrincipalInfo) -> serde_json::Value {
    let grants: Vec<_> = p.grants.iter().map(|(ns, perm)| serde_json::json!({ "namespace": ns, "permission": perm })).collect();
    serde_json::json!({
        "name": p.name, "kind": p.kind.as_str(), "description": p.description, "expires_at_ms": p.expires_at_ms,
        "created_at": oci::rfc3339((p.created_at_ms / 1000) as u64), "created_by": p.created_by, "grants": grants,
    })
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| invalid(format!("the request body is not what this endpoint takes: {e}")))
}

fn invalid(message: String) -> ApiError {
    ApiError::Registry(registry::Error::Invalid(message))
}

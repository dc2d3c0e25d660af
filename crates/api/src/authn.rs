//! Authentication at the edge: the `Authorization` header becomes a [`Who`]. Bearer tokens and
//! remembered Basic credentials cost no lookup; a Basic pair not seen lately is a password
//! check, which is `token`-class work (admitted, bounded, shed) and guarded against guessing:
//! after `burst` failures for one name or from one client, checks wait.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use auth::{Principal, PrincipalKind, RepoGlob, Role};
use base64::Engine;
use http::HeaderMap;
use registry::Access;

use crate::admission::{Admission, RouteClass};
use crate::error::ApiError;
use crate::rate::{ClientKey, Gcra, RateLimit};

/// How a request proved who it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Via {
    /// Authentication is off: everyone may do everything.
    Open,
    Anonymous,
    Basic,
    Bearer,
}

#[derive(Clone, Debug)]
pub(crate) struct Who {
    pub(crate) principal: Arc<Principal>,
    pub(crate) via: Via,
}

impl Who {
    /// Whose budget a request spends: the principal's if it has a name, else its address's.
    pub(crate) fn rate_key(&self, client: Option<IpAddr>) -> Option<ClientKey> {
        match self.via {
            Via::Basic | Via::Bearer => Some(ClientKey::Principal(self.principal.name.as_str().into())),
            Via::Open | Via::Anonymous => client.map(ClientKey::Address),
        }
    }

    /// The principal name for logs and the audit log.
    pub(crate) fn name(&self) -> &str {
        &self.principal.name
    }
}

/// Authentication settings of the HTTP layer.
#[derive(Clone)]
pub struct AuthSettings {
    pub access: Arc<Access>,
    /// The token endpoint's absolute URL for challenges; by default `http(s)://<Host>/token`.
    pub realm: Option<String>,
    /// Failed logins tolerated per name and per client before checks wait.
    pub failed_logins: RateLimit,
}

pub(crate) struct Authn {
    pub(crate) access: Arc<Access>,
    realm: Option<String>,
    failed_limit: RateLimit,
    failures: Gcra<ClientKey>,
    pub(crate) failed_total: AtomicU64,
    pub(crate) locked_total: AtomicU64,
}

/// `Authorization` header contents.
enum Credentials<'a> {
    None,
    Basic { name: String, secret: String },
    Bearer(&'a str),
    Malformed,
}

impl Authn {
    pub(crate) fn new(settings: AuthSettings) -> Authn {
        Authn {
            access: settings.access,
            realm: settings.realm,
            failed_limit: settings.failed_logins,
            failures: Gcra::new(100_000),
            failed_total: AtomicU64::new(0),
            locked_total: AtomicU64::new(0),
        }
    }

    /// Who is asking. Bad credentials are refused here (401), never treated as anonymous.
    pub(crate) async fn authenticate(
        &self,
        headers: &HeaderMap,
        client: Option<IpAddr>,
        admission: &Admission,
    ) -> Result<Who, ApiError> {
        match credentials(headers) {
            Credentials::None => Ok(Who { principal: self.access.anonymous(), via: Via::Anonymous }),
            Credentials::Bearer(token) => match self.access.authenticate_bearer(token) {
                Ok(principal) => Ok(Who { principal, via: Via::Bearer }),
                Err(e) => Err(ApiError::Unauthorized { message: e.to_string(), error: Some("invalid_token"), scope: None }),
            },
            Credentials::Basic { name, secret } => {
                let principal = self.basic(&name, &secret, client, admission).await?;
                Ok(Who { principal, via: Via::Basic })
            }
            Credentials::Malformed => {
                Err(ApiError::Unauthorized { message: "malformed Authorization header".into(), error: Some("invalid_request"), scope: None })
            }
        }
    }

    /// Checks a Basic pair: free when remembered; else admitted as `token` work and checked.
    pub(crate) async fn basic(
        &self,
        name: &str,
        secret: &str,
        client: Option<IpAddr>,
        admission: &Admission,
    ) -> Result<Arc<Principal>, ApiError> {
        if let Some(p) = self.access.cached(name, secret) {
            return Ok(p);
        }
        let _permit = admission.enter(RouteClass::Token).await.map_err(ApiError::Shed)?;
        self.check_basic(name, secret, client).await
    }

    /// Checks a Basic pair (the caller holds a `token` slot), unless the name or the client has
    /// failed too often lately.
    pub(crate) async fn check_basic(&self, name: &str, secret: &str, client: Option<IpAddr>) -> Result<Arc<Principal>, ApiError> {
        let keys = [Some(ClientKey::Principal(name.into())), client.map(ClientKey::Address)];
        for key in keys.iter().flatten() {
            if let Err(limited) = self.failures.peek(key, self.failed_limit) {
                self.locked_total.fetch_add(1, Ordering::Relaxed);
                return Err(registry::Error::LoginsLocked { retry_after_secs: limited.retry_after_secs }.into());
            }
        }
        match self.access.authenticate_basic(name, secret, client).await {
            Ok(p) => Ok(p),
            Err(registry::Error::Unauthenticated(message)) => {
                self.failed_total.fetch_add(1, Ordering::Relaxed);
                for key in keys.iter().flatten() {
                    let _ = self.failures.take(key, self.failed_limit);
                }
                Err(ApiError::Unauthorized { message, error: None, scope: None })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The realm of challenges.
    pub(crate) fn realm(&self, headers: &HeaderMap, secure: bool) -> String {
        if let Some(r) = &self.realm {
            return r.clone();
        }
        let host = headers.get(http::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
        format!("{}://{host}/token", if secure { "https" } else { "http" })
    }

    pub(crate) fn service(&self) -> &str {
        &self.access.config().service
    }

    pub(crate) fn render_metrics(&self, out: &mut String) {
        let failed = self.failed_total.load(Ordering::Relaxed);
        crate::prom::single(out, "customs_login_failures_total", "counter", "Logins refused for wrong credentials.", failed);
        let locked = self.locked_total.load(Ordering::Relaxed);
        crate::prom::single(
            out,
            "customs_logins_locked_total",
            "counter",
            "Logins refused without a check after too many failures for the name or the client.",
            locked,
        );
    }
}

/// The principal of a registry without authentication: everything, everywhere.
pub(crate) fn open() -> Who {
    let grants = vec![auth::Grant { namespace: RepoGlob::everything(), actions: Role::Admin.actions() }];
    Who { principal: Arc::new(Principal { name: auth::ANONYMOUS.into(), kind: PrincipalKind::Anonymous, grants }), via: Via::Open }
}

fn credentials(headers: &HeaderMap) -> Credentials<'_> {
    let Some(value) = headers.get(http::header::AUTHORIZATION) else { return Credentials::None };
    let Ok(value) = value.to_str() else { return Credentials::Malformed };
    let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value, ""));
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
        return Credentials::Bearer(rest);
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD.decode(rest).ok().and_then(|d| String::from_utf8(d).ok());
        if let Some((name, secret)) = decoded.as_deref().and_then(|d| d.split_once(':')) {
            return Credentials::Basic { name: name.to_owned(), secret: secret.to_owned() };
        }
    }
    Credentials::Malformed
}

/// Basic credentials of a header, for `/token`, which also takes none.
pub(crate) fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, ApiError> {
    match credentials(headers) {
        Credentials::None => Ok(None),
        Credentials::Basic { name, secret } => Ok(Some((name, secret))),
        Credentials::Bearer(_) | Credentials::Malformed => Err(ApiError::Unauthorized {
            message: "the token endpoint takes Basic credentials or none".into(),
            error: Some("invalid_request"),
            scope: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, v.parse().unwrap());
        h
    }

    #[test]
    fn authorization_headers_parse() {
        let b64 = base64::engine::general_purpose::STANDARD.encode("ann:pa:ss");
        assert!(matches!(credentials(&headers(&format!("Basic {b64}"))), Credentials::Basic { name, secret } if name == "ann" && secret == "pa:ss"));
        assert!(matches!(credentials(&headers("bearer abc.def.ghi")), Credentials::Bearer(t) if t == "abc.def.ghi"));
        assert!(matches!(credentials(&HeaderMap::new()), Credentials::None));
        for bad in ["Basic !!!", "Bearer", "Digest x", "Basic bm9jb2xvbg=="] {
            assert!(matches!(credentials(&headers(bad)), Credentials::Malformed), "{bad}");
        }
    }
}

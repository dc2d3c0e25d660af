//! The one authorization point: every `/v2` endpoint is one action on one repository (a mount
//! also reads its source), decided here, once. Handlers receive the [`Proof`] and never check
//! again.

use auth::{Action, Principal};
use oci::RepoName;

use crate::authn::{Via, Who};
use crate::endpoint::Endpoint;
use crate::error::ApiError;
use crate::manage::Manage;

/// What a request was allowed to do.
#[derive(Clone, Debug)]
pub(crate) struct Proof {
    pub(crate) who: Who,
    /// A `?mount=&from=` may read its source repository; if not, the mount is ignored and a
    /// plain upload session starts, as the spec allows.
    pub(crate) mount_from: bool,
}

/// What an endpoint needs.
enum Need<'a> {
    /// Any principal that proved who it is (`GET /v2/`, the catalog, which is filtered).
    Authenticated { scope: Option<&'static str> },
    Act(Action, &'a RepoName),
}

fn need(endpoint: &Endpoint) -> Need<'_> {
    match endpoint {
        Endpoint::Base => Need::Authenticated { scope: None },
        Endpoint::Catalog => Need::Authenticated { scope: Some("registry:catalog:*") },
        Endpoint::Tags { repo }
        | Endpoint::GetManifest { repo, .. }
        | Endpoint::Referrers { repo, .. }
        | Endpoint::GetBlob { repo, .. } => Need::Act(Action::Pull, repo),
        Endpoint::PutManifest { repo, .. }
        | Endpoint::StartUpload { repo }
        | Endpoint::UploadStatus { repo, .. }
        | Endpoint::PatchUpload { repo, .. }
        | Endpoint::FinishUpload { repo, .. }
        | Endpoint::CancelUpload { repo, .. } => Need::Act(Action::Push, repo),
        Endpoint::DeleteManifest { repo, .. } | Endpoint::DeleteBlob { repo, .. } => Need::Act(Action::Delete, repo),
    }
}

/// Decides `endpoint` for `who`. A refusal says what to do about it: anonymous callers and
/// tokens without the scope get a challenge for the scope (401), a principal that proved who it
/// is with a password gets DENIED (403).
pub(crate) fn authorize(who: Who, endpoint: &Endpoint, mount_from: Option<&RepoName>) -> Result<Proof, ApiError> {
    let refuse = refusal;
    match need(endpoint) {
        Need::Authenticated { scope } => {
            if who.via == Via::Anonymous {
                return Err(refuse(&who, scope.map(str::to_owned)));
            }
        }
        Need::Act(action, repo) => {
            if !who.principal.may(action, repo) {
                let actions = if action == Action::Push { "pull,push" } else { action.as_str() };
                return Err(refuse(&who, Some(format!("repository:{repo}:{actions}"))));
            }
        }
    }
    let mount_from = mount_from.is_some_and(|from| who.principal.may(Action::Pull, from));
    Ok(Proof { who, mount_from })
}

/// The refusal for `who`: a challenge (for `scope`) to anonymous callers and to tokens, DENIED to
/// a principal that proved who it is with a password.
pub(crate) fn refusal(who: &Who, scope: Option<String>) -> ApiError {
    match who.via {
        Via::Anonymous => ApiError::Unauthorized { message: "authentication required".into(), error: None, scope },
        Via::Bearer => ApiError::Unauthorized { message: "the token does not grant this".into(), error: Some("insufficient_scope"), scope },
        Via::Basic | Via::Open => ApiError::Denied(format!("{} may not do this", who.name())),
    }
}

/// Decides a management endpoint: `whoami` for anyone who proved who they are, a password
/// change for its owner, everything else for admins (`admin` over `**`). `principal` holds the
/// stored grants (a token's scopes never make an admin).
pub(crate) fn authorize_manage(who: &Who, principal: &Principal, endpoint: &Manage) -> Result<(), ApiError> {
    if who.via == Via::Anonymous {
        return Err(ApiError::Unauthorized { message: "authentication required".into(), error: None, scope: None });
    }
    let allowed = match endpoint {
        Manage::WhoAmI => true,
        Manage::SetPassword(name) => *name == principal.name || principal.is_admin(),
        _ => principal.is_admin(),
    };
    if allowed { Ok(()) } else { Err(ApiError::Denied(format!("{} may not manage access", principal.name))) }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use auth::{Grant, Principal, PrincipalKind, Role};
    use oci::Digest;

    use super::*;

    fn who(via: Via, grants: &[(&str, Role)]) -> Who {
        let grants = grants.iter().map(|(ns, r)| Grant { namespace: ns.parse().unwrap(), actions: r.actions() }).collect();
        let kind = if via == Via::Anonymous { PrincipalKind::Anonymous } else { PrincipalKind::User };
        Who { principal: Arc::new(Principal { name: "p".into(), kind, grants }), via }
    }

    #[test]
    fn refusals_say_what_to_do() {
        let repo: RepoName = "team/app".parse().unwrap();
        let push = Endpoint::StartUpload { repo: repo.clone() };
        let get = Endpoint::GetBlob { repo: repo.clone(), digest: Digest::sha256_of(b"x"), head: false };
        let reader = &[("team/**", Role::Reader)][..];
        assert!(authorize(who(Via::Basic, reader), &get, None).is_ok());
        let e = authorize(who(Via::Basic, reader), &push, None).unwrap_err();
        assert!(matches!(e, ApiError::Denied(_)), "{e:?}");
        let e = authorize(who(Via::Bearer, reader), &push, None).unwrap_err();
        assert!(matches!(&e, ApiError::Unauthorized { error: Some("insufficient_scope"), scope: Some(s), .. } if s == "repository:team/app:pull,push"), "{e:?}");
        let e = authorize(who(Via::Anonymous, &[]), &get, None).unwrap_err();
        assert!(matches!(&e, ApiError::Unauthorized { error: None, scope: Some(s), .. } if s == "repository:team/app:pull"), "{e:?}");
        assert!(authorize(who(Via::Anonymous, &[]), &Endpoint::Base, None).is_err());
        assert!(authorize(who(Via::Bearer, &[]), &Endpoint::Base, None).is_ok());
    }

    #[test]
    fn a_mount_needs_pull_on_its_source() {
        let writer = &[("team/**", Role::Writer)][..];
        let start = Endpoint::StartUpload { repo: "team/app".parse().unwrap() };
        let inside: RepoName = "team/lib".parse().unwrap();
        let outside: RepoName = "secret/lib".parse().unwrap();
        assert!(authorize(who(Via::Basic, writer), &start, Some(&inside)).unwrap().mount_from);
        assert!(!authorize(who(Via::Basic, writer), &start, Some(&outside)).unwrap().mount_from);
    }
}

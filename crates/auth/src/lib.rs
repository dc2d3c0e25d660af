//! Who may do what: principals, their grants, credentials and Docker bearer tokens.
//!
//! - [`RepoGlob`]: a namespace, i.e. a set of repositories named by a glob (`team/*`, `base/**`).
//! - [`Role`], [`Actions`], [`Grant`], [`Principal`]: the access model; [`Principal::may`] is the
//!   one decision `api` asks for every request.
//! - [`password`]: argon2id hashes for people, bcrypt kept for htpasswd imports until the next
//!   login upgrades them, long random secrets for robots.
//! - [`TokenKeys`]: ES256 JWTs of the Docker token spec, signed and verified without a lookup.
//! - [`Scope`] and [`challenge`]: the `scope=` grammar and the `WWW-Authenticate` header.
//!
//! Architecture Invariant: pure: no IO, no clock reads (time comes in as an argument), no
//! storage. Where identities are kept is `meta`'s job; wiring the two is `registry::Access`.

mod glob;
mod grants;
pub mod password;
mod scope;
mod token;

pub use glob::{GlobError, RepoGlob, TagGlob};
pub use grants::{ANONYMOUS, Action, Actions, Grant, Principal, PrincipalKind, Role};
pub use scope::{Scope, ScopeError, challenge};
pub use token::{Claims, ResourceAccess, TokenError, TokenKeys};

//! The records of access: principals (users and robots), grants, the access change log and the
//! audit log. What the strings mean (hashes, globs, roles) is `auth`'s business, not ours.

use crate::Result;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdentityKind {
    User,
    Robot,
}

impl IdentityKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityKind::User => "user",
            IdentityKind::Robot => "robot",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrincipalRecord {
    pub name: String,
    pub kind: IdentityKind,
    /// The stored credential: a password hash, or a robot secret's digest.
    pub secret: String,
    pub expires_at_ms: Option<i64>,
    pub description: String,
    pub created_at_ms: i64,
    pub created_by: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantRecord {
    pub principal: String,
    pub namespace: String,
    /// A role name, or an action list for robots.
    pub permission: String,
}

/// One thing that happened, for the audit log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    pub actor: String,
    /// `login`, `login.failed`, `push`, `delete`, `user.add`, `role.grant`, …
    pub action: String,
    pub target: String,
    pub client: Option<String>,
    pub detail: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRecord {
    pub id: i64,
    pub at_ms: i64,
    pub entry: AuditEntry,
}

/// Audit entries after `after_id`, oldest first, optionally of one actor or one action prefix.
#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    pub after_id: i64,
    pub limit: usize,
    pub actor: Option<String>,
    pub action_prefix: Option<String>,
}

/// The access version (it grows with every change) and who changed since a moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccessChanges {
    pub version: i64,
    /// (principal, the version of its latest change), for changes at or after the asked moment.
    pub changed: Vec<(String, i64)>,
}

/// Every change of access is one transaction with its audit entry and its change-log row.
#[async_trait::async_trait]
pub trait Identities: Send + Sync + 'static {
    /// Adds a principal with its grants; [`crate::Error::Exists`] if the name is taken.
    async fn create_principal(&self, p: &PrincipalRecord, grants: &[GrantRecord], audit: &AuditEntry) -> Result<()>;
    /// Replaces a principal's credential; `false` if there is no such principal.
    async fn set_secret(&self, name: &str, secret: &str, audit: &AuditEntry) -> Result<bool>;
    /// Replaces a credential with a stronger hash of the same secret, if it is still `old`. Not
    /// a change of access: nothing is logged and no token loses its validity.
    async fn upgrade_secret(&self, name: &str, old: &str, new: &str) -> Result<bool>;
    /// Removes a principal and its grants.
    async fn remove_principal(&self, name: &str, audit: &AuditEntry) -> Result<bool>;
    async fn principal(&self, name: &str) -> Result<Option<PrincipalRecord>>;
    /// Every principal, by name.
    async fn principals(&self) -> Result<Vec<PrincipalRecord>>;
    /// Adds or replaces the grant of (principal, namespace).
    async fn grant(&self, grant: &GrantRecord, audit: &AuditEntry) -> Result<()>;
    async fn revoke(&self, principal: &str, namespace: &str, audit: &AuditEntry) -> Result<bool>;
    /// The grants of one principal, or of everyone.
    async fn grants(&self, principal: Option<&str>) -> Result<Vec<GrantRecord>>;
    async fn append_audit(&self, entry: &AuditEntry) -> Result<()>;
    async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>>;
    async fn access_changes(&self, since_ms: i64) -> Result<AccessChanges>;
}

//! [`Access`]: who is asking, and what they may do. Credentials are checked here against the
//! records in `meta` with the rules of `auth`; `api` asks once per request and passes the
//! [`Principal`] on.
//!
//! No request pays for a password hash twice: a verified `name:password` pair is remembered (by
//! a salted digest, never the password) for `credential_cache_ttl`; a verified bearer token is
//! remembered until it expires. Both caches are bounded and emptied whenever the access version
//! in `meta` moves, which [`Access::refresh`] polls, so a change made on another replica or with
//! the CLI takes effect within one poll. A token issued before a change of its subject's access
//! is refused from then on, without a lookup: the subjects changed within a token lifetime are
//! held in memory.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use auth::password::{self, Verified};
use auth::{Action, Actions, Claims, Grant, Principal, PrincipalKind, RepoGlob, ResourceAccess, Role, Scope, TokenKeys};
use meta::{AuditEntry, AuditQuery, AuditRecord, GrantRecord, IdentityKind, Meta, PrincipalRecord};
use oci::RepoName;
use sha2::{Digest as _, Sha256};
use tokio::sync::Semaphore;

use crate::flight::SingleFlight;
use crate::{Error, Result, now_ms};

/// Settings of authentication.
#[derive(Clone, Debug)]
pub struct AccessConfig {
    /// The `service` of challenges and the `aud` of tokens.
    pub service: String,
    /// The `iss` of tokens; replicas that share a key share it too.
    pub issuer: String,
    pub token_ttl: Duration,
    /// How long a verified `name:password` pair is trusted without hashing again.
    pub credential_cache_ttl: Duration,
    /// Most cached credentials and cached tokens (each).
    pub cache_entries: usize,
    /// Password hashes computed at once (each takes one core for tens of milliseconds).
    pub hashes_at_once: usize,
}

impl Default for AccessConfig {
    fn default() -> Self {
        AccessConfig {
            service: "customs".into(),
            issuer: "customs".into(),
            token_ttl: Duration::from_secs(300),
            credential_cache_ttl: Duration::from_secs(60),
            cache_entries: 10_000,
            hashes_at_once: 2,
        }
    }
}

/// A signed token and what a client needs to know about it.
#[derive(Clone, Debug)]
pub struct IssuedToken {
    pub token: String,
    pub expires_in: u64,
    pub issued_at: SystemTime,
}

/// A principal as management lists it: no secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrincipalInfo {
    pub name: String,
    pub kind: IdentityKind,
    pub description: String,
    pub expires_at_ms: Option<i64>,
    pub created_at_ms: i64,
    pub created_by: String,
    /// (namespace, role or actions)
    pub grants: Vec<(String, String)>,
}

/// A new robot's name and its secret, which is shown this once and stored only as a digest.
#[derive(Clone, Debug)]
pub struct NewRobot {
    pub name: String,
    pub secret: String,
    pub expires_at_ms: Option<i64>,
}

/// Who did something, from where: for the audit log.
#[derive(Clone, Debug)]
pub struct Actor<'a> {
    pub name: &'a str,
    pub client: Option<IpAddr>,
}

/// The actions a robot may hold.
const ROBOT_ACTIONS: [Action; 3] = [Action::Pull, Action::Push, Action::Delete];

pub struct Access {
    meta: Meta,
    keys: TokenKeys,
    config: AccessConfig,
    /// Per-process salt of the credential cache's keys.
    salt: [u8; 16],
    credentials: Cache,
    tokens: Cache,
    state: RwLock<State>,
    hashing: Semaphore,
    logins: SingleFlight<[u8; 32], Result<Arc<Principal>>>,
}

struct State {
    version: i64,
    anonymous: Arc<Principal>,
    /// Subject → the access version of the latest change of its access, for changes within a
    /// token's life.
    changed: HashMap<String, i64>,
}

impl Access {
    /// Loads the current access state from `meta`.
    pub async fn new(meta: Meta, keys: TokenKeys, config: AccessConfig) -> Result<Access> {
        let salt = *uuid::Uuid::new_v4().as_bytes();
        let access = Access {
            meta,
            keys,
            hashing: Semaphore::new(config.hashes_at_once.max(1)),
            logins: SingleFlight::new(),
            credentials: Cache::new(config.cache_entries),
            tokens: Cache::new(config.cache_entries),
            config,
            salt,
            state: RwLock::new(State { version: -1, anonymous: Arc::new(Principal::anonymous(vec![])), changed: HashMap::new() }),
        };
        access.refresh().await?;
        Ok(access)
    }

    pub fn config(&self) -> &AccessConfig {
        &self.config
    }

    /// Re-reads the access state if anything changed since the last look; `true` if it had.
    pub async fn refresh(&self) -> Result<bool> {
        let window = self.config.token_ttl + Duration::from_secs(60);
        let since = now_ms() - window.as_millis() as i64;
        let changes = self.meta.access_changes(since).await?;
        if changes.version == read(&self.state).version {
            return Ok(false);
        }
        let anonymous = Principal::anonymous(grants_from(&self.meta.grants(Some(auth::ANONYMOUS)).await?));
        {
            let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
            *state = State { version: changes.version, anonymous: Arc::new(anonymous), changed: changes.changed.into_iter().collect() };
        }
        self.credentials.clear();
        self.tokens.clear();
        Ok(true)
    }

    /// What anyone may do without credentials.
    pub fn anonymous(&self) -> Arc<Principal> {
        read(&self.state).anonymous.clone()
    }

    /// The principal of a `name:secret` pair verified within `credential_cache_ttl`, if any: the
    /// free path, which needs no admission.
    pub fn cached(&self, name: &str, secret: &str) -> Option<Arc<Principal>> {
        self.credentials.get(&self.credential_key(name, secret))
    }

    /// Checks a name and password (or robot secret). Hashes at most once per pair per
    /// `credential_cache_ttl`; a success that was not cached is a login, a failure is a failed
    /// login, and both are audited.
    pub async fn authenticate_basic(&self, name: &str, secret: &str, client: Option<IpAddr>) -> Result<Arc<Principal>> {
        let key = self.credential_key(name, secret);
        if let Some(p) = self.credentials.get(&key) {
            return Ok(p);
        }
        // A burst of requests with the same new credentials (a CI job's parallel layer pushes)
        // waits for one check.
        self.logins.run(key, || self.login(key, name, secret, client)).await
    }

    async fn login(&self, key: [u8; 32], name: &str, secret: &str, client: Option<IpAddr>) -> Result<Arc<Principal>> {
        // Catch up with access changes first (the CLI or another replica may have made this
        // principal a moment ago): a token issued for what is read next must carry a version at
        // least as new, or the next refresh would take it for one issued before the change.
        self.refresh().await?;
        let record = self.meta.principal(name).await?;
        let verified = match &record {
            Some(r) if r.kind == IdentityKind::Robot => {
                if password::verify_robot_secret(secret, &r.secret) { Verified::Yes } else { Verified::No }
            }
            _ => {
                let _permit = self.hashing.acquire().await.map_err(|_| Error::Unavailable("shutting down".into()))?;
                let stored = record.as_ref().map(|r| r.secret.clone());
                let secret = secret.to_owned();
                tokio::task::spawn_blocking(move || match stored {
                    Some(stored) => password::verify(&secret, &stored),
                    None => {
                        password::verify_nobody(&secret);
                        Verified::No
                    }
                })
                .await
                .map_err(|e| Error::Unavailable(format!("password check failed: {e}")))?
            }
        };
        let record = match (record, verified) {
            (Some(r), Verified::Yes | Verified::YesRehash) if !expired(&r) => r,
            (record, _) => {
                let why = if record.as_ref().is_some_and(expired) { "expired" } else { "wrong name or secret" };
                self.audit(Actor { name, client }, "login.failed", name, Some(why)).await;
                return Err(Error::Unauthenticated("wrong name or password".into()));
            }
        };
        if verified == Verified::YesRehash {
            self.upgrade_hash(&record, secret).await;
        }
        let kind = match record.kind {
            IdentityKind::User => PrincipalKind::User,
            IdentityKind::Robot => PrincipalKind::Robot,
        };
        let principal = Arc::new(self.stored(&record.name, kind).await?);
        let mut until = Instant::now() + self.config.credential_cache_ttl;
        if let Some(left) = record.expires_at_ms.map(|e| Duration::from_millis((e - now_ms()).max(0) as u64)) {
            until = until.min(Instant::now() + left);
        }
        self.credentials.put(key, principal.clone(), until);
        self.audit(Actor { name, client }, "login", name, None).await;
        Ok(principal)
    }

    /// Checks a bearer token: its signature and validity, and that its subject's access has not
    /// changed since it was issued. No lookup.
    pub fn authenticate_bearer(&self, token: &str) -> Result<Arc<Principal>> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(p) = self.tokens.get(&key) {
            return Ok(p);
        }
        let now = now_secs();
        let claims = self
            .keys
            .verify(token, &self.config.issuer, &self.config.service, now)
            .map_err(|e| Error::Unauthenticated(e.to_string()))?;
        let changed = read(&self.state).changed.get(&claims.sub).copied();
        if changed.is_some_and(|version| version > claims.ver) {
            return Err(Error::Unauthenticated("the token's subject has changed since it was issued".into()));
        }
        let kind = match claims.kind.as_str() {
            "robot" => PrincipalKind::Robot,
            "anonymous" => PrincipalKind::Anonymous,
            _ => PrincipalKind::User,
        };
        let all = Role::Admin.actions();
        let grants = claims
            .access
            .iter()
            .filter(|a| a.resource_type == "repository")
            .filter_map(|a| {
                let namespace = a.name.parse::<RepoName>().ok()?.as_str().parse::<RepoGlob>().ok()?;
                let actions = Actions::parse_list(&a.actions.join(","), all).ok()?;
                Some(Grant { namespace, actions })
            })
            .collect();
        let principal = Arc::new(Principal { name: claims.sub, kind, grants });
        let left = Duration::from_secs(claims.exp.saturating_sub(now));
        self.tokens.put(key, principal.clone(), Instant::now() + left);
        Ok(principal)
    }

    /// Everything `principal` may do as stored now (a token's principal holds only its scopes).
    pub async fn stored_grants(&self, principal: &Principal) -> Result<Arc<Principal>> {
        match principal.kind {
            PrincipalKind::Anonymous => Ok(self.anonymous()),
            kind @ (PrincipalKind::User | PrincipalKind::Robot) => Ok(Arc::new(self.stored(&principal.name, kind).await?)),
        }
    }

    /// A principal with its stored grants and what anyone may do.
    async fn stored(&self, name: &str, kind: PrincipalKind) -> Result<Principal> {
        let mut grants = grants_from(&self.meta.grants(Some(name)).await?);
        grants.extend(self.anonymous().grants.iter().cloned());
        Ok(Principal { name: name.to_owned(), kind, grants })
    }

    /// A token for what `principal` asked for and may do: each requested action it does not hold
    /// is left out, as the token spec says (the registry then refuses what is missing).
    pub fn issue_token(&self, principal: &Principal, scopes: &[Scope]) -> IssuedToken {
        let all = Role::Admin.actions();
        let mut access = Vec::new();
        for scope in scopes {
            match scope.resource_type.as_str() {
                "repository" => {
                    let Ok(repo) = scope.name.parse::<RepoName>() else { continue };
                    let held = principal.actions_on(&repo);
                    let wanted = Actions::parse_list(&scope.actions.join(","), held).unwrap_or(Actions::NONE);
                    let granted = wanted.intersect(held).intersect(all);
                    if !granted.is_empty() {
                        let actions = granted.iter().map(|a| a.as_str().to_owned()).collect();
                        access.push(ResourceAccess { resource_type: "repository".into(), name: repo.to_string(), actions });
                    }
                }
                "registry" if scope.name == "catalog" && !principal.is_anonymous() => {
                    access.push(ResourceAccess { resource_type: "registry".into(), name: "catalog".into(), actions: vec!["*".into()] });
                }
                _ => {}
            }
        }
        let now = now_secs();
        let ttl = self.config.token_ttl.as_secs();
        let kind = match principal.kind {
            PrincipalKind::User => "user",
            PrincipalKind::Robot => "robot",
            PrincipalKind::Anonymous => "anonymous",
        };
        let claims = Claims {
            iss: self.config.issuer.clone(),
            sub: principal.name.clone(),
            aud: self.config.service.clone(),
            exp: now + ttl,
            nbf: now,
            iat: now,
            jti: uuid::Uuid::new_v4().to_string(),
            access,
            kind: kind.into(),
            ver: read(&self.state).version,
        };
        IssuedToken { token: self.keys.sign(&claims), expires_in: ttl, issued_at: UNIX_EPOCH + Duration::from_secs(now) }
    }

    // ---- management: the same calls serve `/api/v1` and the CLI; callers authorize ----

    /// Creates the first admin if there is nobody yet; `false` if there already were principals.
    pub async fn bootstrap_admin(&self, name: &str, password: &str) -> Result<bool> {
        if !self.meta.principals().await?.is_empty() {
            return Ok(false);
        }
        let actor = Actor { name: "bootstrap", client: None };
        self.add_user(&actor, name, password).await?;
        self.grant(&actor, name, Role::Admin, &RepoGlob::everything()).await?;
        Ok(true)
    }

    pub async fn add_user(&self, actor: &Actor<'_>, name: &str, password: &str) -> Result<()> {
        check_name(name, IdentityKind::User)?;
        let secret = hash_password(password).await?;
        let record = new_record(actor, name, IdentityKind::User, secret, None, String::new());
        self.meta.create_principal(&record, &[], &entry(actor, "user.add", name, None)).await?;
        self.refresh().await?;
        Ok(())
    }

    pub async fn set_password(&self, actor: &Actor<'_>, name: &str, password: &str) -> Result<()> {
        let record = self.meta.principal(name).await?;
        if record.as_ref().is_none_or(|r| r.kind != IdentityKind::User) {
            return Err(Error::NotFound(format!("no user {name:?}")));
        }
        let secret = hash_password(password).await?;
        self.meta.set_secret(name, &secret, &entry(actor, "user.passwd", name, None)).await?;
        self.refresh().await?;
        Ok(())
    }

    /// Removes a user or revokes a robot: its credentials and tokens stop working at once here,
    /// within one poll on other replicas.
    pub async fn remove(&self, actor: &Actor<'_>, name: &str, kind: IdentityKind) -> Result<()> {
        let record = self.meta.principal(name).await?;
        if record.as_ref().is_none_or(|r| r.kind != kind) {
            return Err(Error::NotFound(format!("no {} {name:?}", kind.as_str())));
        }
        let action = if kind == IdentityKind::Robot { "robot.revoke" } else { "user.rm" };
        self.meta.remove_principal(name, &entry(actor, action, name, None)).await?;
        self.refresh().await?;
        Ok(())
    }

    /// A robot named `robot$<name>` that may do `actions` (pull, push, delete) in `namespaces`.
    pub async fn create_robot(
        &self,
        actor: &Actor<'_>,
        name: &str,
        grants: &[(RepoGlob, Actions)],
        expires_in: Option<Duration>,
        description: &str,
    ) -> Result<NewRobot> {
        let name = if name.starts_with("robot$") { name.to_owned() } else { format!("robot${name}") };
        check_name(&name, IdentityKind::Robot)?;
        let allowed = Actions::of(&ROBOT_ACTIONS);
        if grants.is_empty() || grants.iter().any(|(_, a)| a.is_empty() || a.intersect(allowed) != *a) {
            return Err(Error::Invalid("a robot needs at least one namespace with actions among pull, push and delete".into()));
        }
        if expires_in.is_some_and(|d| d.is_zero()) {
            return Err(Error::Invalid("a robot's expiry must be in the future".into()));
        }
        let expires_at_ms = expires_in.map(|d| now_ms().saturating_add(d.as_millis().min(i64::MAX as u128) as i64));
        let secret = password::new_robot_secret();
        let record = new_record(actor, &name, IdentityKind::Robot, password::robot_secret_digest(&secret), expires_at_ms, description.into());
        let grants: Vec<GrantRecord> = grants
            .iter()
            .map(|(ns, a)| GrantRecord { principal: name.clone(), namespace: ns.to_string(), permission: a.to_list() })
            .collect();
        let detail = grants.iter().map(|g| format!("{}={}", g.namespace, g.permission)).collect::<Vec<_>>().join(" ");
        self.meta.create_principal(&record, &grants, &entry(actor, "robot.create", &name, Some(&detail))).await?;
        self.refresh().await?;
        Ok(NewRobot { name, secret, expires_at_ms })
    }

    pub async fn principals(&self) -> Result<Vec<PrincipalInfo>> {
        let grants = self.meta.grants(None).await?;
        let principals = self.meta.principals().await?;
        Ok(principals
            .into_iter()
            .map(|p| PrincipalInfo {
                grants: grants.iter().filter(|g| g.principal == p.name).map(|g| (g.namespace.clone(), g.permission.clone())).collect(),
                name: p.name,
                kind: p.kind,
                description: p.description,
                expires_at_ms: p.expires_at_ms,
                created_at_ms: p.created_at_ms,
                created_by: p.created_by,
            })
            .collect())
    }

    /// Gives a user (or `anonymous`, reader only) a role over a namespace, replacing the role it
    /// had there.
    pub async fn grant(&self, actor: &Actor<'_>, principal: &str, role: Role, namespace: &RepoGlob) -> Result<()> {
        if principal == auth::ANONYMOUS {
            if role != Role::Reader {
                return Err(Error::Invalid("anonymous access can only be reader (pull)".into()));
            }
        } else if self.meta.principal(principal).await?.is_none_or(|p| p.kind != IdentityKind::User) {
            return Err(Error::NotFound(format!("no user {principal:?} (robots get their namespaces when created)")));
        }
        let grant = GrantRecord { principal: principal.into(), namespace: namespace.to_string(), permission: role.as_str().into() };
        let detail = format!("{namespace}={role}");
        self.meta.grant(&grant, &entry(actor, "role.grant", principal, Some(&detail))).await?;
        self.refresh().await?;
        Ok(())
    }

    pub async fn revoke(&self, actor: &Actor<'_>, principal: &str, namespace: &RepoGlob) -> Result<()> {
        let detail = namespace.to_string();
        if !self.meta.revoke(principal, namespace.as_str(), &entry(actor, "role.revoke", principal, Some(&detail))).await? {
            return Err(Error::NotFound(format!("{principal:?} holds no role over {namespace}")));
        }
        self.refresh().await?;
        Ok(())
    }

    /// Imports `name:bcrypt` lines of an htpasswd file as users without roles; names that exist
    /// are left alone. Returns (imported, skipped).
    pub async fn import_htpasswd(&self, actor: &Actor<'_>, text: &str) -> Result<(Vec<String>, Vec<String>)> {
        let users = password::parse_htpasswd(text).map_err(|e| Error::Invalid(e.to_string()))?;
        let (mut imported, mut skipped) = (Vec::new(), Vec::new());
        for (name, hash) in users {
            check_name(&name, IdentityKind::User)?;
            let record = new_record(actor, &name, IdentityKind::User, hash, None, "imported from htpasswd".into());
            match self.meta.create_principal(&record, &[], &entry(actor, "user.import", &name, None)).await {
                Ok(()) => imported.push(name),
                Err(meta::Error::Exists(_)) => skipped.push(name),
                Err(e) => return Err(e.into()),
            }
        }
        self.refresh().await?;
        Ok((imported, skipped))
    }

    pub async fn audit_log(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>> {
        Ok(self.meta.audit(query).await?)
    }

    /// Appends to the audit log. A failure is logged, not returned: the audited act happened.
    pub async fn audit(&self, actor: Actor<'_>, action: &str, target: &str, detail: Option<&str>) {
        append_audit(&self.meta, &entry(&actor, action, target, detail)).await;
    }

    fn credential_key(&self, name: &str, secret: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.salt);
        h.update(name.as_bytes());
        h.update([0]);
        h.update(secret.as_bytes());
        h.finalize().into()
    }

    async fn upgrade_hash(&self, record: &PrincipalRecord, password: &str) {
        let Ok(new) = hash_password(password).await else { return };
        match self.meta.upgrade_secret(&record.name, &record.secret, &new).await {
            Ok(_) => tracing::info!(user = %record.name, "upgraded a bcrypt password hash to argon2id"),
            Err(e) => tracing::warn!(user = %record.name, error = %e, "cannot upgrade a password hash"),
        }
    }
}

/// Grants as stored → grants as `auth` reads them; a row that does not parse is skipped loudly.
fn grants_from(records: &[GrantRecord]) -> Vec<Grant> {
    records
        .iter()
        .filter_map(|g| {
            let namespace = g.namespace.parse::<RepoGlob>().ok();
            let actions = match g.permission.parse::<Role>() {
                Ok(role) => Some(role.actions()),
                Err(_) => Actions::parse_list(&g.permission, Actions::of(&ROBOT_ACTIONS)).ok(),
            };
            if namespace.is_none() || actions.is_none() {
                tracing::warn!(principal = %g.principal, namespace = %g.namespace, permission = %g.permission, "skipping a stored grant that does not parse");
            }
            Some(Grant { namespace: namespace?, actions: actions? })
        })
        .collect()
}

/// Names: 1 to 64 of `a-z 0-9 . _ - @`, starting with a letter or digit; robots as `robot$<that>`.
fn check_name(name: &str, kind: IdentityKind) -> Result<()> {
    let bare = match kind {
        IdentityKind::Robot => name.strip_prefix("robot$").unwrap_or_default(),
        IdentityKind::User => name,
    };
    let ok = (1..=64).contains(&bare.len())
        && bare.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && bare.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-@".contains(c));
    if !ok {
        return Err(Error::Invalid(format!(
            "{name:?} is not a valid {} name (1 to 64 of a-z, 0-9, '.', '_', '-', '@')",
            kind.as_str()
        )));
    }
    if name == auth::ANONYMOUS {
        return Err(Error::Invalid("\"anonymous\" is reserved".into()));
    }
    Ok(())
}

async fn hash_password(password: &str) -> Result<String> {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || password::hash(&password))
        .await
        .map_err(|e| Error::Unavailable(format!("password hashing failed: {e}")))?
        .map_err(|e| Error::Invalid(e.to_string()))
}

fn new_record(actor: &Actor<'_>, name: &str, kind: IdentityKind, secret: String, expires_at_ms: Option<i64>, description: String) -> PrincipalRecord {
    PrincipalRecord { name: name.into(), kind, secret, expires_at_ms, description, created_at_ms: now_ms(), created_by: actor.name.into() }
}

/// Appends `entry`, logging a failure: the audited act happened either way.
pub(crate) async fn append_audit(meta: &meta::Meta, entry: &AuditEntry) {
    if let Err(e) = meta.append_audit(entry).await {
        tracing::error!(error = %e, action = %entry.action, "cannot append to the audit log");
    }
}

pub(crate) fn entry(actor: &Actor<'_>, action: &str, target: &str, detail: Option<&str>) -> AuditEntry {
    AuditEntry {
        actor: actor.name.into(),
        action: action.into(),
        target: target.into(),
        client: actor.client.map(|c| c.to_string()),
        detail: detail.map(str::to_owned),
    }
}

fn expired(r: &PrincipalRecord) -> bool {
    r.expires_at_ms.is_some_and(|e| e <= now_ms())
}

fn read(state: &RwLock<State>) -> std::sync::RwLockReadGuard<'_, State> {
    state.read().unwrap_or_else(|p| p.into_inner())
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// A verified principal and when to stop trusting it.
type Entry = (Arc<Principal>, Instant);

/// Verified credentials or tokens by digest, until a deadline; bounded.
struct Cache {
    entries: Mutex<HashMap<[u8; 32], Entry>>,
    capacity: usize,
}

impl Cache {
    fn new(capacity: usize) -> Cache {
        Cache { entries: Mutex::default(), capacity: capacity.max(1) }
    }

    fn get(&self, key: &[u8; 32]) -> Option<Arc<Principal>> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.get(key).filter(|(_, until)| Instant::now() < *until).map(|(p, _)| p.clone())
    }

    fn put(&self, key: [u8; 32], principal: Arc<Principal>, until: Instant) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= self.capacity {
            let now = Instant::now();
            entries.retain(|_, (_, u)| *u > now);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(key, (principal, until));
    }

    fn clear(&self) {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn access() -> (tempfile::TempDir, Arc<meta::SqlMeta>, Access) {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = Arc::new(meta::SqlMeta::open(&dir.path().join("meta.db")).await.unwrap());
        let keys = TokenKeys::from_pem(&TokenKeys::generate_pem()).unwrap();
        let access = Access::new(Meta(sqlite.clone()), keys, AccessConfig::default()).await.unwrap();
        (dir, sqlite, access)
    }

    const ACTOR: Actor<'static> = Actor { name: "test", client: None };

    #[tokio::test]
    async fn an_expired_robot_cannot_log_in() {
        let (_dir, sqlite, access) = access().await;
        let secret = password::new_robot_secret();
        let past = PrincipalRecord {
            name: "robot$old".into(),
            kind: IdentityKind::Robot,
            secret: password::robot_secret_digest(&secret),
            expires_at_ms: Some(now_ms() - 1000),
            description: String::new(),
            created_at_ms: 0,
            created_by: "test".into(),
        };
        let grant = GrantRecord { principal: past.name.clone(), namespace: "**".into(), permission: "pull".into() };
        meta::Identities::create_principal(&*sqlite, &past, &[grant], &entry(&ACTOR, "robot.create", "robot$old", None)).await.unwrap();
        let e = access.authenticate_basic("robot$old", &secret, None).await.unwrap_err();
        assert!(matches!(e, Error::Unauthenticated(_)), "{e:?}");
        let q = AuditQuery { after_id: 0, limit: 100, actor: None, action_prefix: Some("login.failed".into()) };
        let log = access.audit_log(&q).await.unwrap();
        assert_eq!(log.last().unwrap().entry.detail.as_deref(), Some("expired"));
        // A robot cannot be made already expired, nor with actions a robot may not hold.
        let ns = RepoGlob::everything();
        let e = access.create_robot(&ACTOR, "late", &[(ns.clone(), Actions::of(&[Action::Pull]))], Some(Duration::ZERO), "").await;
        assert!(matches!(e, Err(Error::Invalid(_))));
        let e = access.create_robot(&ACTOR, "greedy", &[(ns.clone(), Actions::of(&[Action::Manage]))], None, "").await;
        assert!(matches!(e, Err(Error::Invalid(_))));
        let ok = access.create_robot(&ACTOR, "fresh", &[(ns, Actions::of(&[Action::Pull]))], Some(Duration::from_secs(60)), "").await.unwrap();
        let p = access.authenticate_basic(&ok.name, &ok.secret, None).await.unwrap();
        assert_eq!((p.name.as_str(), p.kind), ("robot$fresh", PrincipalKind::Robot));
    }

    #[tokio::test]
    async fn htpasswd_users_log_in_and_their_hashes_become_argon2id() {
        let (_dir, sqlite, access) = access().await;
        let hash = bcrypt::hash("from-distribution", 4).unwrap().replacen("$2b$", "$2y$", 1);
        let file = format!("old-ci:{hash}\n");
        let (imported, skipped) = access.import_htpasswd(&ACTOR, &file).await.unwrap();
        assert_eq!((imported, skipped), (vec!["old-ci".to_owned()], vec![]));
        let (_, skipped) = access.import_htpasswd(&ACTOR, &file).await.unwrap();
        assert_eq!(skipped, vec!["old-ci".to_owned()], "existing names are left alone");
        assert!(access.authenticate_basic("old-ci", "wrong", None).await.is_err());
        access.authenticate_basic("old-ci", "from-distribution", None).await.unwrap();
        let stored = meta::Identities::principal(&*sqlite, "old-ci").await.unwrap().unwrap().secret;
        assert!(stored.starts_with("$argon2id$"), "{stored}");
        assert_eq!(password::verify("from-distribution", &stored), Verified::Yes);
    }

    #[tokio::test]
    async fn tokens_hold_only_what_was_asked_and_granted() {
        let (_dir, _sqlite, access) = access().await;
        access.add_user(&ACTOR, "ann", "ann-password").await.unwrap();
        access.grant(&ACTOR, "ann", Role::Reader, &"team/**".parse().unwrap()).await.unwrap();
        let ann = access.authenticate_basic("ann", "ann-password", None).await.unwrap();
        let scopes = [
            Scope::parse("repository:team/app:pull,push").unwrap(),
            Scope::parse("repository:other/app:pull").unwrap(),
            Scope::parse("repository:NOT-VALID:pull").unwrap(),
        ];
        let token = access.issue_token(&ann, &scopes);
        let p = access.authenticate_bearer(&token.token).unwrap();
        let app: RepoName = "team/app".parse().unwrap();
        assert!(p.may(Action::Pull, &app) && !p.may(Action::Push, &app));
        assert!(!p.may(Action::Pull, &"other/app".parse().unwrap()));
        assert!(!p.may(Action::Pull, &"team/lib".parse().unwrap()), "only the asked-for repository");
        // A password change voids earlier tokens.
        access.set_password(&ACTOR, "ann", "ann-new-password").await.unwrap();
        assert!(access.authenticate_bearer(&token.token).is_err());
    }
}

//! Storage quotas per namespace, as Harbor has per project: a CI job that pushes a 40 GB image
//! every build fills its own namespace's quota, not the registry's disk.
//!
//! A namespace's usage is the bytes of the distinct blobs (layers, configs) linked in its
//! repositories and of its manifests, each digest counted once however many repositories hold it:
//! what the records say, `meta::Repositories::linked_bytes`. The repositories of a named namespace
//! inside another (`org/team` inside `org`) count against the inner one only. Bytes enter that
//! count when an upload is committed, a mount links a blob or a manifest is stored, so those are
//! where a quota is enforced:
//! - a new upload session in a namespace already at its quota is refused at once, before the
//!   client sends a byte;
//! - a commit, mount or manifest PUT that would take the namespace past its quota is refused,
//!   and the upload's bytes are dropped. What the namespace already holds costs nothing.
//! - what the registry stores itself (an inspection's SBOM and report) is counted, never refused.
//!
//! Refusals are 403 DENIED with the namespace, its usage and its limit: docker, podman and
//! skopeo print the message. Deleting images frees their bytes for the quota when garbage
//! collection unlinks them, as it frees them on disk.
//!
//! A namespace's usage is its stored bytes, counted from the records when first needed and again
//! at least every [`REFRESH`], plus what the records' quota ledger ([`meta::QuotaLedger`]) holds
//! beyond that count: the writes under way and those recorded since. Each write holds its bytes
//! in the ledger before it is made, in one write to the records that refuses it if usage would
//! pass the quota, and settles the hold once its record is made, or releases it if it fails. The
//! ledger is shared by every replica over the same records, so concurrent uploads into one
//! namespace, through one replica or several, can never pass its quota together. A garbage
//! collection pass here drops the counts, so freed bytes count at once; bytes freed by another
//! process (a replica, a `customs gc` beside the server) are seen within [`REFRESH`].

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use blobs::human_size;
use meta::{Held, Hold, Listing, Meta, Page};
use oci::{Digest, RepoName};

use crate::{Error, Registry, Result};

/// How long a count of a namespace's stored bytes is trusted (what was written since is in the
/// ledger).
pub const REFRESH: Duration = Duration::from_secs(30);

/// How long a hold whose write never settled (its process died mid-write) keeps counting.
const HOLD_FOR: Duration = Duration::from_secs(3600);

/// How long a settled hold is kept: longer than any count begun before it is used ([`REFRESH`]),
/// with room for replicas' clocks to disagree.
const SETTLED_FOR: Duration = Duration::from_secs(600);

/// How long a hold's settlement or release is tried again, in the background, when the records
/// fail it (a restart, a failover), before the hold is left to count until it expires.
const RETRY_FOR: Duration = Duration::from_secs(300);

/// What a refusal tells the client to do.
const WHAT_TO_DO: &str = "delete images (their layers count until garbage collection frees them) or ask for a larger quota";

/// The quotas: named namespaces, and a default for every other one.
#[derive(Clone, Debug, Default)]
pub struct Quotas {
    /// A repository counts against the longest of these its name is under (`team-a/app` is under
    /// `team-a`; `org/team/app` is under both `org` and `org/team`).
    pub namespaces: Vec<NamespaceQuota>,
    /// The quota of each namespace not named (a repository's first path component), if any.
    /// Repositories without a `/` in their name are in no namespace and have no default quota.
    pub default_bytes: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamespaceQuota {
    pub namespace: String,
    /// `None`: no quota, whatever the default.
    pub max_bytes: Option<u64>,
}

impl Quotas {
    /// The namespace `repo` counts against, and its quota in bytes; `None` when none applies.
    pub fn of<'a>(&'a self, repo: &'a RepoName) -> Option<(&'a str, u64)> {
        let name = repo.as_str();
        let under = |ns: &str| name.len() > ns.len() && name.starts_with(ns) && name.as_bytes()[ns.len()] == b'/';
        let named = self.namespaces.iter().filter(|q| under(&q.namespace)).max_by_key(|q| q.namespace.len());
        match named {
            Some(q) => q.max_bytes.map(|max| (q.namespace.as_str(), max)),
            None => Some((name.split_once('/')?.0, self.default_bytes?)),
        }
    }

    /// The quota of the namespace `name`, or else of the namespace the repository `name` counts
    /// against: `team-a` and `team-a/app` both give `team-a`'s. A name of one component is read
    /// as a namespace.
    pub fn of_name<'a>(&'a self, name: &'a str) -> Option<(&'a str, u64)> {
        if let Some(q) = self.namespaces.iter().find(|q| q.namespace == name) {
            return q.max_bytes.map(|max| (q.namespace.as_str(), max));
        }
        if !name.contains('/') {
            return self.default_bytes.map(|max| (name, max));
        }
        let repo: RepoName = name.parse().ok()?;
        // The namespace is a prefix of the name: the name's own bytes outlive `repo`.
        self.of(&repo).map(|(ns, max)| (&name[..ns.len()], max))
    }

    /// The named namespaces inside `namespace` (`org/team` inside `org`): their repositories
    /// count against them, or against nothing, never against `namespace`.
    pub fn nested<'a>(&'a self, namespace: &str) -> Vec<&'a str> {
        let inside = |q: &NamespaceQuota| {
            q.namespace.len() > namespace.len() && q.namespace.starts_with(namespace) && q.namespace.as_bytes()[namespace.len()] == b'/'
        };
        self.namespaces.iter().filter(|q| inside(q)).map(|q| q.namespace.as_str()).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.default_bytes.is_none() && self.namespaces.iter().all(|q| q.max_bytes.is_none())
    }
}

/// A namespace's quota and what it holds, for `/metrics` and `/api/v1/quotas`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuotaUsage {
    pub namespace: String,
    pub max_bytes: u64,
    pub used_bytes: u64,
}

/// What is known of each namespace's stored bytes.
#[derive(Clone, Default)]
pub(crate) struct Usage(Arc<Mutex<HashMap<String, Counted>>>);

/// A count of a namespace's stored bytes: it includes every write the ledger settled at or below
/// `mark` (read before it began), so the ledger's rows above the mark are what it may miss.
struct Counted {
    stored: u64,
    mark: i64,
    at: Instant,
    /// Garbage collection has freed bytes since: count again.
    stale: bool,
}

impl Counted {
    fn fresh(&self) -> bool {
        !self.stale && self.at.elapsed() < REFRESH
    }
}

impl Usage {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Counted>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets every count, so the next check counts again.
    pub(crate) fn forget(&self) {
        for counted in self.lock().values_mut() {
            counted.stale = true;
        }
    }
}

/// Bytes held in the records' ledger against a namespace's quota for a write under way: counted
/// as stored once [`Reservation::settle`]d, given back if dropped (the write failed, or its
/// request went away).
pub(crate) struct Reservation {
    meta: Meta,
    id: i64,
    settled: bool,
}

impl Reservation {
    /// The write is recorded. Should the ledger not take that, it is told again in the background
    /// for a while, and failing that the hold keeps counting until it expires: usage errs high
    /// for a while, and the write, made, stands.
    pub(crate) async fn settle(mut self) {
        self.settled = true;
        let (meta, id) = (self.meta.clone(), self.id);
        let settle = move || {
            let meta = meta.clone();
            async move { meta.settle_hold(id, crate::now_ms() + SETTLED_FOR.as_millis() as i64).await }
        };
        if settle().await.is_err() {
            in_background("a quota hold's settlement", id, settle);
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let (meta, id) = (self.meta.clone(), self.id);
        in_background("a quota hold's release", id, move || {
            let meta = meta.clone();
            async move { meta.release_hold(id).await }
        });
    }
}

/// Makes `write` of hold `id` in a task of its own, tried again while the records fail for up to
/// [`RETRY_FOR`]; failing that, the hold counts until it expires.
fn in_background<F>(what: &'static str, id: i64, write: impl FnMut() -> F + Send + 'static)
where
    F: Future<Output = meta::Result<()>> + Send,
{
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(async move {
            if let Err(e) = crate::until_recorded(what, RETRY_FOR, write).await {
                tracing::warn!(hold = id, error = %e, "could not record {what}; the hold counts until it expires");
            }
        });
    }
}

/// Who makes a write that quotas count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Writer {
    /// A client's push: refused when it would pass the quota.
    Client,
    /// The registry's own (an inspection's SBOM and report): counted, never refused.
    Registry,
}

impl Registry {
    /// Holds `size` bytes of `digest` (a blob or a manifest: `what`) against `repo`'s namespace for
    /// a write about to link it there; `None` when no quota applies or the namespace holds the
    /// bytes already. A client's write that would take the namespace past its quota is refused;
    /// the registry's own is held whatever it comes to.
    pub(crate) async fn reserve_quota(&self, repo: &RepoName, digest: &Digest, size: u64, what: &str, writer: Writer) -> Result<Option<Reservation>> {
        let Some((namespace, max)) = self.config.quotas.of(repo) else { return Ok(None) };
        if self.namespace_holds(namespace, digest).await? {
            return Ok(None);
        }
        let (stored, mark) = self.count(namespace).await?;
        let now = crate::now_ms();
        let hold = Hold {
            namespace: namespace.to_owned(),
            bytes: size,
            stored,
            mark,
            max_bytes: (writer == Writer::Client).then_some(max),
            expires_ms: now + HOLD_FOR.as_millis() as i64,
            now_ms: now,
        };
        match self.meta.hold(&hold).await? {
            Held::Granted(id) => Ok(Some(Reservation { meta: self.meta.clone(), id, settled: false })),
            Held::Refused { used } => Err(Error::OverQuota(format!(
                "storing this {} {what} would take namespace {namespace} to {} of its {} storage quota; {WHAT_TO_DO}",
                human_size(size),
                human_size(used.saturating_add(size)),
                human_size(max)
            ))),
        }
    }

    /// Counts a write whose record is made.
    pub(crate) async fn settle(&self, reservation: Option<Reservation>) {
        if let Some(reservation) = reservation {
            reservation.settle().await;
        }
    }

    /// Refuses a new upload in `repo` when its namespace is already at its quota.
    pub(crate) async fn check_quota(&self, repo: &RepoName) -> Result<()> {
        let Some((namespace, max)) = self.config.quotas.of(repo) else { return Ok(()) };
        let used = self.namespace_usage(namespace).await?;
        if used >= max {
            return Err(Error::OverQuota(format!(
                "namespace {namespace} is at its storage quota: {} used of {}; {WHAT_TO_DO}",
                human_size(used),
                human_size(max)
            )));
        }
        Ok(())
    }

    /// Every namespace with a quota named in the settings or used since the start, with its usage.
    pub async fn quotas(&self) -> Result<Vec<QuotaUsage>> {
        let quotas = &self.config.quotas;
        let mut names: Vec<String> =
            quotas.namespaces.iter().filter(|q| q.max_bytes.is_some()).map(|q| q.namespace.clone()).collect();
        names.extend(self.quota_usage.lock().keys().cloned());
        names.sort();
        names.dedup();
        let mut out = Vec::with_capacity(names.len());
        for namespace in names {
            let Some((_, max_bytes)) = quotas.of_name(&namespace) else { continue };
            let used_bytes = self.namespace_usage(&namespace).await?;
            out.push(QuotaUsage { namespace, max_bytes, used_bytes });
        }
        Ok(out)
    }

    /// The quota that applies to `name` (a namespace, or a repository in one: [`Quotas::of_name`])
    /// and what its namespace holds; `None` when no quota applies.
    pub async fn quota_of(&self, name: &str) -> Result<Option<QuotaUsage>> {
        let Some((namespace, max_bytes)) = self.config.quotas.of_name(name) else { return Ok(None) };
        let used_bytes = self.namespace_usage(namespace).await?;
        Ok(Some(QuotaUsage { namespace: namespace.to_owned(), max_bytes, used_bytes }))
    }

    /// At most `n` of the namespaces a quota applies to, in name order after `last`, with their
    /// usage: those named in the settings and, with a default quota, the namespace of every
    /// repository (found with one seek per namespace, past every name under it).
    pub async fn quota_page(&self, n: usize, last: Option<&str>) -> Result<Listing<QuotaUsage>> {
        const SCAN: usize = 64;
        let quotas = &self.config.quotas;
        let after = |ns: &str| last.is_none_or(|l| ns > l);
        let mut names: BTreeSet<String> =
            quotas.namespaces.iter().filter(|q| q.max_bytes.is_some() && after(&q.namespace)).map(|q| q.namespace.clone()).collect();
        if quotas.default_bytes.is_some() {
            // The first n + 1 namespaces under the default, with the named ones: the page, and
            // whether more follow.
            let (mut cursor, mut found) = (last.map(str::to_owned), 0);
            'scan: while found <= n {
                let page = self.meta.repositories(&Page { n: SCAN, last: cursor.clone() }).await?;
                for repo in &page.entries {
                    cursor = Some(repo.to_string());
                    let Some((ns, _)) = repo.as_str().split_once('/') else { continue };
                    if after(ns) && quotas.of_name(ns).is_some_and(|(q, _)| q == ns) {
                        names.insert(ns.to_owned());
                        found += 1;
                    }
                    // Every character a name may hold sorts before '~'.
                    cursor = Some(format!("{ns}/~"));
                    continue 'scan;
                }
                if !page.more {
                    break;
                }
            }
        }
        let mut entries = Vec::new();
        for namespace in names {
            if entries.len() == n {
                return Ok(Listing { entries, more: true });
            }
            let Some((_, max_bytes)) = quotas.of_name(&namespace) else { continue };
            let used_bytes = self.namespace_usage(&namespace).await?;
            entries.push(QuotaUsage { namespace, max_bytes, used_bytes });
        }
        Ok(Listing { entries, more: false })
    }

    /// Whether `digest` is linked in a repository that counts against `namespace`.
    pub(crate) async fn namespace_holds(&self, namespace: &str, digest: &Digest) -> Result<bool> {
        Ok(self.meta.linked_under(namespace, &self.config.quotas.nested(namespace), digest).await?)
    }

    /// What `namespace` holds now, read from the records when what is known is older than
    /// [`REFRESH`].
    /// What `namespace` stores and holds: its count, and the ledger's rows the count may miss.
    async fn namespace_usage(&self, namespace: &str) -> Result<u64> {
        let (stored, mark) = self.count(namespace).await?;
        Ok(stored.saturating_add(self.meta.ledger_bytes(namespace, mark).await?))
    }

    /// A count of `namespace`'s stored bytes no older than [`REFRESH`], and its ledger mark.
    async fn count(&self, namespace: &str) -> Result<(u64, i64)> {
        if let Some(c) = self.quota_usage.lock().get(namespace)
            && c.fresh()
        {
            return Ok((c.stored, c.mark));
        }
        let at = Instant::now();
        let mark = self.meta.ledger_mark().await?;
        let stored = self.meta.linked_bytes(namespace, &self.config.quotas.nested(namespace)).await?;
        let mut known = self.quota_usage.lock();
        let counted = known.entry(namespace.to_owned()).or_insert(Counted { stored, mark, at, stale: false });
        // Of two counts at once, the one that began later stands.
        if counted.at <= at {
            *counted = Counted { stored, mark, at, stale: false };
        }
        Ok((counted.stored, counted.mark))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PostgreSQL crashes, for longer than a connection is waited for, as a push whose bytes were
    /// held against its namespace's quota fails: the hold is released once the database is back,
    /// rather than counting against the namespace for the hour it would take to expire.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_hold_a_failed_push_leaves_is_released_once_the_records_are_back() {
        let pg = test_support::Postgres::start();
        let dir = tempfile::tempdir().unwrap();
        let meta = Meta(Arc::new(meta::SqlMeta::connect(&pg.durable_database()).await.unwrap()));
        let blobs = blobs::Blobs(Arc::new(blobs::FsBlobStore::open(dir.path()).unwrap()));
        let quotas = Quotas { namespaces: vec![NamespaceQuota { namespace: "team".into(), max_bytes: Some(10_000) }], default_bytes: None };
        let registry = Registry::new(blobs, meta.clone(), crate::RegistryConfig { quotas, ..Default::default() });
        let repo: RepoName = "team/app".parse().unwrap();
        let reservation = registry.reserve_quota(&repo, &Digest::sha256_of(b"a layer"), 4_000, "blob", Writer::Client).await.unwrap();
        assert!(reservation.is_some(), "held");
        assert_eq!(meta.ledger_bytes("team", 0).await.unwrap(), 4_000);

        pg.crash();
        // The write fails; its request goes away.
        drop(reservation);
        tokio::time::sleep(Duration::from_secs(12)).await;
        pg.start_again();
        let deadline = Instant::now() + Duration::from_secs(15);
        while meta.ledger_bytes("team", 0).await.ok() != Some(0) {
            assert!(Instant::now() < deadline, "the hold is released within seconds of the database's return");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn quotas() -> Quotas {
        let named = |namespace: &str, max_bytes| NamespaceQuota { namespace: namespace.into(), max_bytes };
        Quotas {
            namespaces: vec![named("team-a", Some(100)), named("org/team", Some(50)), named("ci", None)],
            default_bytes: Some(1000),
        }
    }

    #[test]
    fn a_repository_counts_against_the_longest_namespace_it_is_under() {
        let q = quotas();
        let of = |repo: &str| q.of(&repo.parse().unwrap()).map(|(ns, max)| (ns.to_owned(), max));
        assert_eq!(of("team-a/app"), Some(("team-a".to_owned(), 100)));
        assert_eq!(of("team-a/group/app"), Some(("team-a".to_owned(), 100)));
        assert_eq!(of("org/team/app"), Some(("org/team".to_owned(), 50)));
        assert_eq!(of("org/other"), Some(("org".to_owned(), 1000)), "the default, on the first component");
        assert_eq!(of("team-ab/app"), Some(("team-ab".to_owned(), 1000)), "a namespace is a whole path component");
        assert_eq!(of("ci/app"), None, "named without a limit: exempt from the default");
        assert_eq!(of("alpine"), None, "no namespace");
        assert_eq!(of("team-a"), None, "a repository named like a namespace is not under it");
        assert!(!q.is_empty() && Quotas::default().is_empty());
        let without_default = Quotas { default_bytes: None, ..q };
        assert_eq!(without_default.of(&"org/other".parse().unwrap()), None);
    }

    #[test]
    fn a_name_asked_about_is_a_namespace_or_a_repository_in_one() {
        let q = quotas();
        let of = |name: &str| q.of_name(name).map(|(ns, max)| (ns.to_owned(), max));
        assert_eq!(of("team-a"), Some(("team-a".to_owned(), 100)), "a named namespace");
        assert_eq!(of("team-a/app"), Some(("team-a".to_owned(), 100)));
        assert_eq!(of("org/team"), Some(("org/team".to_owned(), 50)), "a named namespace of two components");
        assert_eq!(of("org/team/app"), Some(("org/team".to_owned(), 50)));
        assert_eq!(of("org"), Some(("org".to_owned(), 1000)), "one component: the namespace, under the default");
        assert_eq!(of("org/other"), Some(("org".to_owned(), 1000)));
        assert_eq!(of("ci"), None, "named without a limit");
        assert_eq!(of("ci/app"), None);
        assert_eq!(of("Not A Name/x"), None);
        let without_default = Quotas { default_bytes: None, ..q.clone() };
        assert_eq!(without_default.of_name("org"), None);
        assert_eq!(q.nested("org"), ["org/team"]);
        assert!(q.nested("org/team").is_empty() && q.nested("team-a").is_empty() && q.nested("or").is_empty());
    }
}

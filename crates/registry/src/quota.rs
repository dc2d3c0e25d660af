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
//! Usage is read from the records when first needed and again at least every [`REFRESH`]; in
//! between, commits here add to it in memory. Each commit reserves its bytes before it is made and
//! gives them back if it fails, so concurrent uploads into one namespace can never pass its quota
//! together. A garbage collection pass here drops what is known, so freed bytes count at once.
//! Writes by another process (a `customs gc` beside the server) are seen within [`REFRESH`].

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use blobs::human_size;
use meta::{Listing, Page};
use oci::{Digest, RepoName};

use crate::{Error, Registry, Result};

/// How long usage read from the records is trusted, commits here added to it.
pub const REFRESH: Duration = Duration::from_secs(30);

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

/// What is known of each namespace's usage.
#[derive(Clone, Default)]
pub(crate) struct Usage(Arc<Mutex<HashMap<String, Counted>>>);

struct Counted {
    /// Read from the records: a snapshot started at `at`, when `settled` was `base`.
    stored: u64,
    at: Instant,
    base: u64,
    /// Garbage collection has freed bytes since: read the records again.
    stale: bool,
    /// Committed here since the start.
    settled: u64,
    /// Reserved by commits under way.
    pending: u64,
}

impl Counted {
    /// Commits settled after the snapshot began may be in it as well: usage errs high, never low.
    fn used(&self) -> u64 {
        self.stored + (self.settled - self.base) + self.pending
    }

    fn fresh(&self) -> bool {
        !self.stale && self.at.elapsed() < REFRESH
    }
}

impl Usage {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Counted>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts `size` bytes linked in `namespace` without a reservation.
    pub(crate) fn add(&self, namespace: &str, size: u64) {
        if let Some(c) = self.lock().get_mut(namespace) {
            c.settled += size;
        }
    }

    /// Forgets what was read from the records, so the next check reads them again.
    pub(crate) fn forget(&self) {
        for counted in self.lock().values_mut() {
            counted.stale = true;
        }
    }
}

/// Bytes reserved against a namespace's quota for a commit under way: counted as stored once
/// [`Reservation::settle`]d, given back if dropped (the commit failed, or its request went away).
pub(crate) struct Reservation {
    usage: Usage,
    namespace: String,
    size: u64,
    settled: bool,
}

impl Reservation {
    pub(crate) fn settle(mut self) {
        if let Some(c) = self.usage.lock().get_mut(&self.namespace) {
            c.pending -= self.size;
            c.settled += self.size;
        }
        self.settled = true;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.settled
            && let Some(c) = self.usage.lock().get_mut(&self.namespace)
        {
            c.pending -= self.size;
        }
    }
}

/// What a write that links bytes into a repository owes its namespace's quota.
/// Who makes a write that quotas count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Writer {
    /// A client's push: refused when it would pass the quota.
    Client,
    /// The registry's own (an inspection's SBOM and report): counted, never refused.
    Registry,
}

pub(crate) enum Owed {
    /// Nothing: no quota applies, or the namespace holds the bytes already.
    Nothing,
    /// A client's write, reserved before it is made.
    Reserved(Reservation),
    /// The registry's own write: never refused, counted once made.
    Own { namespace: String, size: u64 },
}

impl Registry {
    /// What linking `size` bytes of `digest` (a blob or a manifest: `what`) into `repo` owes. A
    /// client's write (`own` false) that would take the namespace past its quota is refused.
    pub(crate) async fn owe(&self, repo: &RepoName, digest: &Digest, size: u64, what: &str, writer: Writer) -> Result<Owed> {
        if writer == Writer::Client {
            return Ok(self.reserve_quota(repo, digest, size, what).await?.map_or(Owed::Nothing, Owed::Reserved));
        }
        match self.config.quotas.of(repo) {
            Some((namespace, _)) if !self.namespace_holds(namespace, digest).await? => Ok(Owed::Own { namespace: namespace.to_owned(), size }),
            _ => Ok(Owed::Nothing),
        }
    }

    /// Counts a write whose record is made.
    pub(crate) fn settle(&self, owed: Owed) {
        match owed {
            Owed::Nothing => {}
            Owed::Reserved(reservation) => reservation.settle(),
            Owed::Own { namespace, size } => self.quota_usage.add(&namespace, size),
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

    /// Reserves `size` bytes of `digest` against `repo`'s namespace for a commit about to link it
    /// there; `None` when no quota applies or the namespace holds the bytes already.
    pub(crate) async fn reserve_quota(&self, repo: &RepoName, digest: &Digest, size: u64, what: &str) -> Result<Option<Reservation>> {
        let Some((namespace, max)) = self.config.quotas.of(repo) else { return Ok(None) };
        if self.namespace_holds(namespace, digest).await? {
            return Ok(None);
        }
        self.namespace_usage(namespace).await?;
        let mut known = self.quota_usage.lock();
        let counted = known.get_mut(namespace).ok_or_else(|| Error::Unavailable("quota usage vanished".into()))?;
        let used = counted.used();
        if used.saturating_add(size) > max {
            return Err(Error::OverQuota(format!(
                "storing this {} {what} would take namespace {namespace} to {} of its {} storage quota; {WHAT_TO_DO}",
                human_size(size),
                human_size(used + size),
                human_size(max)
            )));
        }
        counted.pending += size;
        Ok(Some(Reservation { usage: self.quota_usage.clone(), namespace: namespace.to_owned(), size, settled: false }))
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
    async fn namespace_usage(&self, namespace: &str) -> Result<u64> {
        let mark = match self.quota_usage.lock().get(namespace) {
            Some(c) if c.fresh() => return Ok(c.used()),
            Some(c) => c.settled,
            None => 0,
        };
        let at = Instant::now();
        let stored = self.meta.linked_bytes(namespace, &self.config.quotas.nested(namespace)).await?;
        let mut known = self.quota_usage.lock();
        let counted = known.entry(namespace.to_owned()).or_insert(Counted {
            stored,
            at,
            base: mark,
            stale: false,
            settled: mark,
            pending: 0,
        });
        // Of two reads at once, the one that began later stands.
        if counted.at <= at {
            (counted.stored, counted.at, counted.base, counted.stale) = (stored, at, mark, false);
        }
        Ok(counted.used())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

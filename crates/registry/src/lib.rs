//! Registry semantics, independent of HTTP and of storage technology.
//!
//! [`Registry`] is the one object `api` calls: blob reads, upload sessions (start, mount, append,
//! finish, cancel), manifests (put, get, delete), tags, the catalog and referrers. It holds the
//! ports ([`blobs::Blobs`], [`meta::Meta`]) and never an adapter.
//!
//! Architecture Invariant: every byte that becomes visible under a digest was hashed on its way
//! in and matched that digest; uploads hash as they stream and keep the running hash state in
//! the session record, so an upload resumes after a restart without re-reading its bytes.
//!
//! Architecture Invariant: records are written after their bytes are durable, so a crash leaves
//! at worst unreferenced bytes (for GC), never a record that points at nothing.

mod access;
mod again;
mod browse;
mod cache;
mod digest_guards;
mod error;
mod evict;
mod findings;
mod flight;
mod gate;
mod gc;
mod immutable;
pub mod inspect;
mod judge;
pub mod signatures;
mod manifests;
mod pulls;
mod quota;
mod range;
mod retention;
mod scrub;
mod uploads;

use std::sync::Arc;
use std::time::Duration;

use blobs::{BlobBody, Blobs, ByteRange};
use meta::{Listing, Meta, Page};
use oci::{Digest, Reference, RepoName, Tag};

pub use access::{Access, AccessConfig, Actor, IssuedToken, NewRobot, PrincipalInfo};
pub use again::until_recorded;
pub use browse::{ManifestView, TagRow};
pub use error::Error;
pub use evict::{BytesHeld, Evicted};
pub use gc::Collected;
pub use immutable::{ImmutableRule, ImmutableTags};
pub use findings::{ImageReport, MAX_MATCHES, VersionFilter};
pub use judge::{Basis, GateRules, Mode, NamespaceRule, PushMode, index as report_index};
pub use manifests::{ManifestContent, PutManifest};
pub use quota::{NamespaceQuota, QuotaUsage, Quotas};
pub use range::RangeRequest;
pub use retention::{Expired, KeepTags, Retention, RetentionPolicy};
pub use scrub::{Damage, Scrubbed};
pub use uploads::{MountResult, UploadStatus};

use cache::ManifestCache;
pub use flight::SingleFlight;
use uploads::InFlight;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Limits and tunables of the registry core.
#[derive(Clone, Debug)]
pub struct RegistryConfig {
    /// Largest manifest accepted, in bytes (the spec asks for at least 4 MiB).
    pub max_manifest_bytes: usize,
    /// Most upload sessions open at once; past it, new sessions get TOOMANYREQUESTS.
    pub max_upload_sessions: u64,
    /// Sessions idle for longer than this are removed by [`Registry::purge_stale_uploads`].
    pub upload_session_ttl: Duration,
    /// Bytes of manifests kept in memory for the read path.
    pub manifest_cache_bytes: usize,
    /// How long a cached manifest lookup is trusted (matters when other replicas write).
    pub manifest_cache_ttl: Duration,
    /// The pull gate: an image is served only once inspected and allowed, and a pull waits this
    /// long for a pending verdict before 429. `None`: no gate (nothing is inspected here).
    pub gate_wait: Option<Duration>,
    /// Tags that keep pointing at the manifest they were pushed with.
    pub immutable_tags: ImmutableTags,
    /// Maintenance: `api` refuses every write, and reads that find damage mark nothing.
    pub read_only: bool,
    /// Storage quotas per namespace.
    pub quotas: Quotas,
    /// A link a client finds (a HEAD of a blob in a repository) older than this is renewed in the
    /// records, so garbage collection spares it for its delay from then: the client will send a
    /// manifest naming it rather than push it again. Half of gc's delay.
    pub link_renewal: Duration,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            max_manifest_bytes: 4 * 1024 * 1024,
            max_upload_sessions: 10_000,
            upload_session_ttl: Duration::from_secs(24 * 3600),
            manifest_cache_bytes: 64 * 1024 * 1024,
            manifest_cache_ttl: Duration::from_secs(5),
            gate_wait: None,
            immutable_tags: ImmutableTags::default(),
            read_only: false,
            quotas: Quotas::default(),
            link_renewal: Duration::from_secs(30 * 60),
        }
    }
}

/// A blob about to be read: its full size, the range served, and the body.
pub struct BlobRead {
    pub size: u64,
    pub range: Option<ByteRange>,
    pub body: BlobBody,
}

/// A page of a listing, as asked by a client (`n`, `last`).
#[derive(Clone, Debug, Default)]
pub struct PageRequest {
    pub n: Option<usize>,
    pub last: Option<String>,
}

/// Listings without `n` return at most this many entries, with a link to the rest.
pub const DEFAULT_PAGE: usize = 1000;
/// Larger `n` is lowered to this.
pub const MAX_PAGE: usize = 10_000;

/// What [`Registry::stats`] reports.
#[derive(Clone, Debug, Default)]
pub struct RegistryStats {
    pub manifest_cache_hits: u64,
    pub manifest_cache_misses: u64,
    /// Lookups answered by another caller's identical lookup in flight.
    pub single_flight_shared: u64,
    /// `None` when the records do not answer.
    pub upload_sessions_open: Option<u64>,
    /// Garbage collection and retention since the start: what passes removed.
    pub gc: Collected,
    pub gc_passes: u64,
    /// When the last garbage collection pass ended (epoch milliseconds); 0: none yet.
    pub gc_last_pass_ms: u64,
    pub expired_tags: u64,
    pub expired_manifests: u64,
    /// The scrub since the start: blobs and bytes read back and hashed, blobs found damaged (by
    /// the scrub or by a read that found their bytes missing), blobs it could not read, passes.
    pub scrub_blobs: u64,
    pub scrub_bytes: u64,
    pub scrub_damaged: u64,
    pub scrub_unreadable: u64,
    pub scrub_passes: u64,
    /// Requests to the service behind the blob store (S3); `None` for a filesystem.
    pub store: Option<blobs::StoreStats>,
    /// The filesystem under the blob store; `None` for an object store.
    pub space: Option<blobs::Space>,
    /// Namespaces with a quota, and their usage (empty when the records do not answer).
    pub quotas: Vec<QuotaUsage>,
    /// The background tasks this process leads for every replica sharing its records.
    pub leading: Vec<meta::Task>,
}

pub struct Registry {
    blobs: Blobs,
    meta: Meta,
    config: RegistryConfig,
    cache: ManifestCache,
    in_flight: InFlight,
    manifest_flight: SingleFlight<(RepoName, Reference), Result<Arc<ManifestContent>>>,
    blob_flight: SingleFlight<(RepoName, Digest), Result<u64>>,
    /// Images the gate has already let through (bounded; verdicts of allowed images only change
    /// by re-judging).
    servable: gate::Servable,
    gate_rules: GateRules,
    /// Excludes deleting bytes while bytes are being made referenced ([`Registry::hold_bytes`]).
    digest_guards: digest_guards::DigestGuards,
    /// Pulls since the last flush.
    pulls: pulls::Noted,
    /// Blob links found by a HEAD within the garbage collection delay.
    renewed_links: pulls::Noted,
    gc_stats: gc::GcStats,
    scrub_stats: scrub::ScrubStats,
    quota_usage: quota::Usage,
}

impl Registry {
    pub fn new(blobs: Blobs, meta: Meta, config: RegistryConfig) -> Registry {
        let cache = ManifestCache::new(config.manifest_cache_bytes, config.manifest_cache_ttl);
        Registry {
            blobs,
            meta,
            config,
            cache,
            in_flight: InFlight::default(),
            manifest_flight: SingleFlight::new(),
            blob_flight: SingleFlight::new(),
            servable: gate::Servable::default(),
            gate_rules: GateRules::paved_road(),
            digest_guards: digest_guards::DigestGuards::default(),
            pulls: pulls::Noted::default(),
            renewed_links: pulls::Noted::default(),
            gc_stats: gc::GcStats::default(),
            scrub_stats: scrub::ScrubStats::default(),
            quota_usage: quota::Usage::default(),
        }
    }

    /// Judges with `rules` instead of the paved road everywhere.
    pub fn with_gate_rules(mut self, rules: GateRules) -> Registry {
        self.gate_rules = rules;
        self
    }

    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    /// The size of a blob linked in `repo`. Identical concurrent lookups share one query.
    pub async fn stat_blob(&self, repo: &RepoName, digest: &Digest) -> Result<u64> {
        let key = (repo.clone(), digest.clone());
        self.blob_flight
            .run(key, || async {
                self.meta.linked_blob(repo, digest).await?.ok_or_else(|| Error::BlobUnknown(digest.clone()))
            })
            .await
    }

    /// Counters of the read path and the number of open upload sessions, for `/metrics`.
    pub async fn stats(&self) -> RegistryStats {
        use std::sync::atomic::Ordering::Relaxed;
        let (g, s) = (&self.gc_stats, &self.scrub_stats);
        RegistryStats {
            manifest_cache_hits: self.cache.hits.load(std::sync::atomic::Ordering::Relaxed),
            manifest_cache_misses: self.cache.misses.load(std::sync::atomic::Ordering::Relaxed),
            single_flight_shared: self.manifest_flight.shared() + self.blob_flight.shared(),
            upload_sessions_open: self.meta.count_uploads().await.ok(),
            gc: Collected {
                referrers: g.referrers.load(Relaxed) as usize,
                links: g.links.load(Relaxed) as usize,
                blobs: g.blobs.load(Relaxed) as usize,
                bytes: g.bytes.load(Relaxed),
            },
            gc_passes: g.passes.load(Relaxed),
            gc_last_pass_ms: g.last_pass_ms.load(Relaxed),
            expired_tags: g.expired_tags.load(Relaxed),
            expired_manifests: g.expired_manifests.load(Relaxed),
            scrub_blobs: s.blobs.load(Relaxed),
            scrub_bytes: s.bytes.load(Relaxed),
            scrub_damaged: s.damaged.load(Relaxed),
            scrub_unreadable: s.unreadable.load(Relaxed),
            scrub_passes: s.passes.load(Relaxed),
            store: self.blobs.stats(),
            space: self.blobs.space(),
            quotas: self.quotas().await.unwrap_or_default(),
            leading: self.meta.leading(),
        }
    }

    /// Opens a blob linked in `repo`, or a range of it, for a client: a whole blob may come back
    /// as [`BlobBody::Redirect`] to a URL the store serves it from itself (a presigned URL).
    pub async fn serve_blob(&self, repo: &RepoName, digest: &Digest, range: Option<RangeRequest>) -> Result<BlobRead> {
        self.read_blob(repo, digest, range, true).await
    }

    /// Opens a blob linked in `repo`, or a range of it, as a stream of its bytes.
    pub async fn get_blob(&self, repo: &RepoName, digest: &Digest, range: Option<RangeRequest>) -> Result<BlobRead> {
        self.read_blob(repo, digest, range, false).await
    }

    async fn read_blob(&self, repo: &RepoName, digest: &Digest, range: Option<RangeRequest>, may_redirect: bool) -> Result<BlobRead> {
        let size = self.stat_blob(repo, digest).await?;
        if may_redirect
            && range.is_none()
            && let Some(url) = self.blobs.presign(digest).await?
        {
            return Ok(BlobRead { size, range: None, body: BlobBody::Redirect(url) });
        }
        let range = match range {
            None => None,
            Some(r) => Some(r.resolve(size).ok_or(Error::RangeNotSatisfiable { size })?),
        };
        let body = match self.blobs.open(digest, range).await {
            Ok(body) => body,
            Err(blobs::Error::NotFound(d)) => {
                self.note_missing(&d).await;
                return Err(Error::BlobUnknown(d));
            }
            Err(e) => return Err(e.into()),
        };
        Ok(BlobRead { size, range, body })
    }

    /// Removes a blob from `repo` (its bytes stay until no repository links them).
    pub async fn delete_blob(&self, repo: &RepoName, digest: &Digest) -> Result<()> {
        if !self.meta.unlink_blob(repo, digest).await? {
            return Err(Error::BlobUnknown(digest.clone()));
        }
        self.quota_usage.forget();
        Ok(())
    }

    /// Whether both stores answer: a read of the records and a stat in the bytes.
    pub async fn ready(&self) -> Result<()> {
        self.meta.count_uploads().await?;
        self.blobs.stat(&Digest::sha256_of(b"")).await?;
        Ok(())
    }

    pub async fn tags(&self, repo: &RepoName, page: &PageRequest) -> Result<Listing<Tag>> {
        self.meta.tags(repo, &page.bounded()).await?.ok_or_else(|| Error::NameUnknown(repo.clone()))
    }

    pub async fn catalog(&self, page: &PageRequest) -> Result<Listing<RepoName>> {
        Ok(self.meta.repositories(&page.bounded()).await?)
    }

    /// The catalog of the repositories `visible` lets through, in pages as full as the
    /// unfiltered ones: it reads further pages until this one is full or the names run out.
    pub async fn catalog_where(&self, page: &PageRequest, visible: impl Fn(&RepoName) -> bool) -> Result<Listing<RepoName>> {
        let want = page.bounded();
        let mut next = want.clone();
        let mut entries = Vec::new();
        loop {
            let listing = self.meta.repositories(&next).await?;
            let last = listing.entries.last().map(|r| r.to_string());
            for repo in listing.entries {
                if entries.len() == want.n {
                    return Ok(Listing { entries, more: true });
                }
                if visible(&repo) {
                    entries.push(repo);
                }
            }
            match last {
                Some(last) if listing.more => next.last = Some(last),
                _ => return Ok(Listing { entries, more: false }),
            }
        }
    }
}

impl PageRequest {
    fn bounded(&self) -> Page {
        Page { n: self.n.unwrap_or(DEFAULT_PAGE).min(MAX_PAGE), last: self.last.clone() }
    }
}

/// Milliseconds since the epoch: how the records keep time.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

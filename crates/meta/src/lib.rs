//! Every record customs keeps, behind small ports.
//!
//! - [`Repositories`]: repositories, blob links, manifests (with their references), tags and
//!   referrers; the catalog and tag listings.
//! - [`UploadSessions`]: upload sessions that survive restarts (offset and running hash state).
//! - [`Identities`]: users, robots, grants, the access change log and the append-only audit log.
//! - [`Inspections`]: the inspection queue, reports by digest and verdicts by repository.
//! - [`Findings`]: what inspections found, queried across images, and the waivers that set
//!   findings aside.
//! - [`Integrity`]: blobs found damaged (which then read as absent until pushed again) and the
//!   scrub's progress.
//! - [`ByteLocks`]: a deletion of stored bytes and a write that makes them referenced exclude each
//!   other, across every process sharing the records.
//! - [`Leadership`]: which process does a background [`Task`] for every replica.
//! - [`SqlMeta`] is the adapter: SQLite embedded in the data directory ([`SqlMeta::open`]), or
//!   PostgreSQL shared by replicas ([`SqlMeta::connect`]), one code path for both.
//! - [`conformance`] is the suite every adapter passes.
//!
//! Architecture Invariant: each write that makes something visible (a manifest with its tag, a
//! finished upload's blob link) is one transaction, and it checks what it depends on inside that
//! transaction, so no reader ever sees a manifest whose blobs are not linked.
//!
//! Architecture Invariant: no SQL types leave this crate; errors are [`Error`].

mod byte_locks;
pub mod conformance;
mod identities;
mod inspections;
mod integrity;
mod leadership;
mod quotas;
mod sql;
mod webhooks;

use std::sync::Arc;

use oci::{Digest, Reference, RepoName, Tag, UploadId};

pub use byte_locks::{ByteLocks, DigestClaim, DigestsHeld};
pub use identities::{
    AccessChanges, AuditEntry, AuditQuery, AuditRecord, GrantRecord, IdentityKind, Identities, PrincipalRecord,
};
pub use inspections::{
    Component, Findings, GateState, ImageMatch, ImageVulnerability, InspectionJob, InspectionState, Inspections, Matches, NewWaiver,
    PackageQuery, ReportFacts, ReportIndex, StoredReport, Verdict, VerdictBatch, VerdictWrite, Waiver,
};
pub use integrity::{DamagedBlob, Integrity, ScrubProgress};
pub use leadership::{Leadership, Task};
pub use quotas::{Held, Hold, QuotaLedger};
pub use sql::{Copied, SqlMeta};
pub use webhooks::{WebhookCursor, WebhookFailure, Webhooks};

/// The stored facts of one manifest in one repository (its bytes live in `blobs`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestRecord {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    /// `artifactType`, else the config's media type: what a referrers listing shows.
    pub artifact_type: Option<String>,
    pub subject: Option<Digest>,
    /// The manifest's `annotations`, as JSON text.
    pub annotations: Option<String>,
}

/// A manifest to record, with what it references and an optional tag to point at it.
#[derive(Clone, Debug)]
pub struct NewManifest {
    pub record: ManifestRecord,
    /// Blobs (config and layers) with the sizes the manifest declares.
    pub blobs: Vec<(Digest, u64)>,
    /// Child manifests of an index.
    pub children: Vec<Digest>,
    pub tag: Option<Tag>,
    /// Enqueue an inspection job for it, in the same transaction.
    pub inspect: bool,
    /// Who pushed it (kept from the first push of these bytes into the repository).
    pub pushed_by: Option<String>,
    /// The children need not be present: a mirror stores an index as the upstream sent it and
    /// fetches its images when they are pulled.
    pub children_optional: bool,
    /// The tag is immutable: it is set if absent and left as it is if it already points at this
    /// manifest; pointing at another, nothing is recorded ([`Error::TagImmutable`]).
    pub tag_immutable: bool,
}

/// Tags a delete must not take away (immutable ones): a manifest that has one stays.
pub type KeptTags<'a> = &'a (dyn Fn(&Tag) -> bool + Sync);

/// No tag is kept from a delete.
pub const NO_KEPT_TAGS: KeptTags<'static> = &|_| false;

/// One page of a sorted listing: at most `n` entries after `last`.
#[derive(Clone, Debug, Default)]
pub struct Page {
    pub n: usize,
    pub last: Option<String>,
}

/// Entries of a listing, and whether more follow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listing<T> {
    pub entries: Vec<T>,
    pub more: bool,
}

/// A resumable upload session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadRecord {
    pub id: UploadId,
    pub repo: RepoName,
    /// Bytes received and durable so far.
    pub received: u64,
    /// The running hash after `received` bytes (`oci::DigestHasher::save`).
    pub hash_state: Vec<u8>,
    pub started_at_ms: i64,
    pub updated_at_ms: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the manifest references {0}, which is not in the repository")]
    MissingReference(Digest),
    #[error("the manifest declares {digest} as {declared} bytes, but it is {actual}")]
    SizeMismatch { digest: Digest, declared: u64, actual: u64 },
    #[error("upload session {0} already exists")]
    UploadExists(String),
    #[error("{0} already exists")]
    Exists(String),
    /// An immutable tag would move or go: it points at `digest`, and nothing was changed.
    #[error("tag {tag} is immutable: it points at {digest}")]
    TagImmutable { tag: Tag, digest: Digest },
    /// The database failed or could not be reached; nothing was changed.
    #[error("metadata store failed: {0}")]
    Unavailable(String),
    /// The database's disk is full (`SQLITE_FULL`); nothing was changed. Retrying soon will not work.
    #[error("metadata store is out of space: {0}")]
    NoSpace(String),
    /// What was asked cannot be done with these records (copying into a database that holds
    /// records already, or at another schema version); nothing was changed.
    #[error("{0}")]
    Refused(String),
    /// A stored row does not parse: the database was changed by something else.
    #[error("metadata store holds a bad record: {0}")]
    Corrupt(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Repositories and what they hold.
#[async_trait::async_trait]
pub trait Repositories: Send + Sync + 'static {
    /// Records that `digest` (of `size` bytes) is in `repo`, creating the repository if needed.
    /// Linking it again renews the link's time, from which [`Repositories::orphan_links`] counts.
    async fn link_blob(&self, repo: &RepoName, digest: &Digest, size: u64) -> Result<()>;
    /// The size of `digest` if it is linked in `repo`.
    async fn linked_blob(&self, repo: &RepoName, digest: &Digest) -> Result<Option<u64>>;
    async fn unlink_blob(&self, repo: &RepoName, digest: &Digest) -> Result<bool>;
    /// Records a manifest (and moves its tag) in one transaction, after checking that every
    /// blob is linked with the declared size and every child manifest is in `repo`.
    async fn put_manifest(&self, repo: &RepoName, manifest: &NewManifest) -> Result<()>;
    async fn manifest(&self, repo: &RepoName, reference: &Reference) -> Result<Option<ManifestRecord>>;
    /// Removes a manifest and every tag that points at it, unless one of those tags is `kept`:
    /// then nothing changes ([`Error::TagImmutable`]).
    async fn delete_manifest(&self, repo: &RepoName, digest: &Digest, kept: KeptTags<'_>) -> Result<bool>;
    /// Removes a tag (not its manifest), which counts as untagged from now if no tag is left on it.
    async fn delete_tag(&self, repo: &RepoName, tag: &Tag) -> Result<bool>;
    /// Every tag in `repo`, in byte order, with when it was pushed and its manifest last pulled.
    async fn tag_records(&self, repo: &RepoName) -> Result<Vec<TagRecord>>;
    /// Removes `record`'s tag only if it still points at the same manifest, pushed at the same
    /// time: a tag pushed again since it was read is not the tag that was judged.
    async fn delete_tag_if_unchanged(&self, repo: &RepoName, record: &TagRecord) -> Result<bool>;
    /// Up to `limit` manifests in `repo`, by digest, that nothing keeps: no tag, no index that
    /// lists them, not referrers (those go with their subject), and stored, untagged and pulled
    /// last before `before_ms`.
    async fn idle_untagged(&self, repo: &RepoName, before_ms: i64, limit: usize) -> Result<Vec<Digest>>;
    /// Deletes what [`Repositories::idle_untagged`] finds, in one transaction; returns them. An
    /// index's children so left with nothing to keep them are found by the next call.
    async fn delete_idle_untagged(&self, repo: &RepoName, before_ms: i64, limit: usize) -> Result<Vec<Digest>>;
    /// Tags in byte order; `None` if the repository is unknown.
    async fn tags(&self, repo: &RepoName, page: &Page) -> Result<Option<Listing<Tag>>>;
    /// Repository names in byte order.
    async fn repositories(&self, page: &Page) -> Result<Listing<RepoName>>;
    /// Manifests in `repo` whose subject is `subject`, optionally of one artifact type.
    async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<ManifestRecord>>;
    /// Who first pushed `digest` into `repo`, when that was recorded.
    async fn pushed_by(&self, repo: &RepoName, digest: &Digest) -> Result<Option<String>>;
    /// The tags in `repo` that point at `digest`, sorted.
    async fn tags_of(&self, repo: &RepoName, digest: &Digest) -> Result<Vec<String>>;
    /// The manifests in `repo` that reference `target` (a blob, or a child manifest).
    async fn manifests_referencing(&self, repo: &RepoName, target: &Digest) -> Result<Vec<Digest>>;
    /// Removes `digest`'s link from `repo` unless a manifest there references it or it was linked
    /// (or renewed) at or after `before_ms`, in one statement (a manifest recorded, or the link
    /// renewed, at the same moment either keeps it or fails).
    async fn unlink_unreferenced_blob(&self, repo: &RepoName, digest: &Digest, before_ms: i64) -> Result<bool>;
    /// A client found `digest` linked in `repo` and will not push it again: a link older than
    /// `older_than_ms` counts as linked at `now_ms` from now on (what [`Self::orphan_links`] and
    /// [`Self::unlink_unreferenced_blob`] count from). `false`: there is no such link (any more).
    async fn renew_link(&self, repo: &RepoName, digest: &Digest, older_than_ms: i64, now_ms: i64) -> Result<bool>;
    /// Deletes, in one transaction, up to `limit` referrers whose subject is not in their
    /// repository (deleted, or never pushed), stored before `before_ms`, that no tag and no index
    /// keeps; returns them. A referrer of a referrer so deleted is found by the next call.
    async fn delete_dangling_referrers(&self, before_ms: i64, limit: usize) -> Result<Vec<(RepoName, Digest)>>;
    /// Up to `limit` blob links, linked (last) before `before_ms`, that no manifest of their
    /// repository references: layers of a push whose manifest never came, or whose manifests
    /// were deleted. Ordered by repository and digest.
    async fn orphan_links(&self, before_ms: i64, limit: usize) -> Result<Vec<(RepoName, Digest)>>;
    /// Whether any repository links `digest` or holds a manifest of it: its bytes are needed.
    async fn digest_in_use(&self, digest: &Digest) -> Result<bool>;

    /// Records pulls of manifests: `(repo, digest, at_ms)`; a later time replaces an earlier.
    async fn record_pulls(&self, pulls: &[(RepoName, Digest, i64)]) -> Result<()>;
    /// Manifests in repositories under `prefix/` that are not referrers (those go with their
    /// subject), last pulled (or, never pulled, stored) before `before_ms`; least recent first.
    async fn least_recently_pulled(&self, prefix: &str, before_ms: i64, limit: usize) -> Result<Vec<CachedManifest>>;
    /// The bytes of the distinct blobs linked, and manifests stored, in repositories under
    /// `prefix/` but under none of `except` (names under `prefix/` themselves: nested namespaces
    /// counted on their own); each digest once.
    async fn linked_bytes(&self, prefix: &str, except: &[&str]) -> Result<u64>;
    /// Whether `digest` is linked, or a manifest, in any repository under `prefix/` but under none
    /// of `except`.
    async fn linked_under(&self, prefix: &str, except: &[&str], digest: &Digest) -> Result<bool>;
}

/// A tag, the manifest it points at, when it was (last) pushed and when that manifest was last
/// pulled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagRecord {
    pub tag: Tag,
    pub digest: Digest,
    pub pushed_at_ms: i64,
    pub pulled_at_ms: Option<i64>,
}

/// A manifest a cache holds, and when it was last pulled (or stored, if never pulled).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachedManifest {
    pub repo: RepoName,
    pub digest: Digest,
    pub last_used_ms: i64,
}

/// Upload sessions.
#[async_trait::async_trait]
pub trait UploadSessions: Send + Sync + 'static {
    async fn create_upload(&self, upload: &UploadRecord) -> Result<()>;
    async fn upload(&self, id: &UploadId) -> Result<Option<UploadRecord>>;
    /// Moves a session from `from` to `to` bytes with a new hash state, only if it is still at
    /// `from`; `false` if it was not (another writer won, or it was removed).
    async fn advance_upload(&self, id: &UploadId, from: u64, to: u64, hash_state: &[u8], now_ms: i64)
    -> Result<bool>;
    /// Ends a session and links its blob in its repository, in one transaction.
    async fn finish_upload(&self, id: &UploadId, repo: &RepoName, digest: &Digest, size: u64) -> Result<()>;
    async fn delete_upload(&self, id: &UploadId) -> Result<bool>;
    async fn count_uploads(&self) -> Result<u64>;
    /// Sessions not updated since `before_ms`, oldest first.
    async fn stale_uploads(&self, before_ms: i64, limit: usize) -> Result<Vec<UploadRecord>>;
    /// Ends a session only if it is still not updated since `before_ms`; `false` if it was
    /// updated meanwhile (a client came back between [`Self::stale_uploads`] and this) or is gone.
    async fn delete_stale_upload(&self, id: &UploadId, before_ms: i64) -> Result<bool>;
}

/// Every port of the records store.
pub trait MetaStore:
    Repositories + UploadSessions + Identities + Inspections + Findings + Webhooks + Integrity + Leadership + QuotaLedger + ByteLocks
{
}
impl<T> MetaStore for T where
    T: Repositories + UploadSessions + Identities + Inspections + Findings + Webhooks + Integrity + Leadership + QuotaLedger + ByteLocks
{
}

/// The handle the rest of the program holds.
#[derive(Clone)]
pub struct Meta(pub Arc<dyn MetaStore>);

impl std::ops::Deref for Meta {
    type Target = dyn MetaStore;

    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}

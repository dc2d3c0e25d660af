//! What the scrub found: blobs whose bytes are gone or do not hash to their digest, and where its
//! walk of the blob store stands.
//!
//! Architecture Invariant: a damaged digest reads as absent. [`crate::Repositories::linked_blob`]
//! and the reference check of [`crate::Repositories::put_manifest`] pass over it, so a client is
//! told to push it again instead of being handed bytes that fail its digest check, and the link
//! that follows good bytes ([`crate::Repositories::link_blob`], a finished upload, a manifest
//! stored again) removes the mark: one push repairs the digest in every repository.

use oci::Digest;

use crate::Result;

/// A digest whose stored bytes are gone or wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DamagedBlob {
    pub digest: Digest,
    /// What was found, e.g. "hashes to sha256:…" or "missing".
    pub reason: String,
    pub found_at_ms: i64,
    /// Whether a repository still links it or holds it as a manifest: whether it must be pushed
    /// again.
    pub in_use: bool,
}

/// Where the scrub's walk of the blob store stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScrubProgress {
    /// The last digest checked in the pass under way; `None` at its start.
    pub after: Option<Digest>,
    pub pass_started_ms: i64,
    /// When the last whole pass ended; `None` before the first.
    pub last_pass_ended_ms: Option<i64>,
}

#[async_trait::async_trait]
pub trait Integrity: Send + Sync {
    /// Marks `digest` damaged; `false` if it already was (the first reason is kept).
    async fn mark_damaged(&self, digest: &Digest, reason: &str, at_ms: i64) -> Result<bool>;
    /// The damaged digests, by digest.
    async fn damaged_blobs(&self, limit: usize) -> Result<Vec<DamagedBlob>>;
    /// Removes the marks of digests no repository links or holds as a manifest any more (their
    /// images were deleted); returns how many.
    async fn forget_unused_damage(&self) -> Result<u64>;
    async fn scrub_progress(&self) -> Result<Option<ScrubProgress>>;
    async fn save_scrub_progress(&self, progress: &ScrubProgress) -> Result<()>;
}

//! Taking a manifest out of a repository for good, bytes and all: what a pull-through cache's
//! eviction does.
//!
//! Architecture Invariant: bytes are deleted only when no record anywhere needs them, and no
//! record can come to need them while they are deleted. Every path that makes stored bytes
//! referenced (an upload's commit and link, a mount, a manifest put, a mirror's fill) holds
//! [`Registry::hold_bytes`] on their digests from the moment it relies on the bytes until its
//! record is committed; the deletion of a digest holds the exclusive side of this process's lock
//! on it (`digest_guards`) and claims it in the records (`meta::ByteLocks`: shared with every
//! replica) while it checks the records and deletes.

use std::collections::BTreeSet;

use oci::{Digest, Manifest, Reference, RepoName};
use tokio::sync::RwLockReadGuard;

use crate::{Registry, Result};

/// Stored bytes held ([`Registry::hold_bytes`]) until dropped, or until
/// [`Registry::release_bytes`] once the record that needs them has committed.
#[must_use = "the bytes are held until this is dropped"]
pub struct BytesHeld<'a> {
    shared: meta::DigestsHeld,
    local: Vec<RwLockReadGuard<'a, ()>>,
    digests: Vec<Digest>,
}

/// What an eviction removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Evicted {
    /// Manifests removed from the repository: the one asked for and its referrers.
    pub manifests: usize,
    /// Bytes deleted from the blob store (blobs and manifests no record needed any more).
    pub bytes: u64,
}

impl Registry {
    /// Held while stored bytes are made referenced, so that they cannot be deleted meanwhile:
    /// from the moment the caller relies on the bytes of `digests` (writes, commits or finds them)
    /// until the record that references them is committed. Shared: it only excludes deletions, in
    /// this process and (through the records) in every replica. Waits while one of `digests` is
    /// being deleted.
    pub async fn hold_bytes(&self, digests: &[&Digest]) -> Result<BytesHeld<'_>> {
        let local = self.digest_guards.share(digests).await;
        let shared = self.meta.hold_digests(digests).await?;
        Ok(BytesHeld { shared, local, digests: digests.iter().map(|d| (*d).clone()).collect() })
    }

    /// Ends `held` once the record that needs its bytes has committed, before the write is
    /// acknowledged. A hold lasts unless the records' session that held it ended meanwhile (the
    /// database restarting, the connection cut: `meta::DigestsHeld::release`); then a deletion may
    /// have taken the bytes. So after a break the bytes are looked at again under a new hold,
    /// which waits for a deletion under way: those gone are marked damaged, so they read as absent
    /// until pushed again (one push repairs them), and the write is refused with
    /// [`Error::Unavailable`](crate::Error::Unavailable) rather than acknowledged.
    pub async fn release_bytes(&self, held: BytesHeld<'_>) -> Result<()> {
        let BytesHeld { shared, local, digests } = held;
        let kept = shared.release().await;
        // Before holding again: a deletion waiting for this process's lock would block the new
        // hold behind it.
        drop(local);
        if kept {
            return Ok(());
        }
        tracing::warn!(?digests, "the records' session holding stored bytes ended during a commit; looking at them again");
        let again = self.hold_bytes(&digests.iter().collect::<Vec<_>>()).await?;
        let mut lost = Vec::new();
        for digest in &digests {
            if self.blobs.stat(digest).await?.is_none() {
                self.note_missing(digest).await;
                lost.push(digest.to_string());
            }
        }
        // Looked at under this hold: present now, they are kept by the committed record.
        drop(again);
        if lost.is_empty() {
            return Ok(());
        }
        Err(crate::Error::Unavailable(format!(
            "stored bytes were deleted while this write committed (the records' connection was lost): {}; push them again",
            lost.join(", ")
        )))
    }

    /// Removes the manifest `digest` from `repo` with its tags and the referrers attached to
    /// it (an SBOM, a report, a signature), unlinks the blobs no other manifest of `repo`
    /// references, and deletes the bytes no repository needs any more.
    ///
    /// A client reading one of those blobs at that moment finishes its read (an open file
    /// outlives its name); pulls after it find the image gone.
    pub async fn evict(&self, repo: &RepoName, digest: &Digest) -> Result<Evicted> {
        let mut evicted = Evicted::default();
        let mut freed: BTreeSet<Digest> = BTreeSet::new();
        let mut stack = vec![digest.clone()];
        let mut seen = BTreeSet::new();
        while let Some(next) = stack.pop() {
            if !seen.insert(next.clone()) {
                continue;
            }
            for referrer in self.meta.referrers(repo, &next, None).await? {
                stack.push(referrer.digest);
            }
            let Some(record) = self.meta.manifest(repo, &Reference::Digest(next.clone())).await? else { continue };
            let bytes = self.read_small(&record).await.ok();
            let blobs: Vec<Digest> = match bytes.as_ref().and_then(|b| Manifest::parse(Some(&record.media_type), b).ok()) {
                Some(m) => m.blobs().map(|d| d.digest.clone()).collect(),
                None => Vec::new(),
            };
            if self.meta.delete_manifest(repo, &next, meta::NO_KEPT_TAGS).await? {
                evicted.manifests += 1;
            }
            self.cache.invalidate(repo);
            freed.insert(next);
            for blob in blobs {
                if self.meta.unlink_unreferenced_blob(repo, &blob, i64::MAX).await? {
                    freed.insert(blob);
                }
            }
        }
        evicted.bytes = self.delete_unneeded_bytes(freed).await?.1;
        Ok(evicted)
    }
}

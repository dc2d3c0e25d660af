//! Garbage collection: the bytes and links that deletes and abandoned pushes leave behind.
//!
//! A DELETE takes records away (a manifest, a tag, a blob's link); the bytes stay until no record
//! anywhere needs them. A pass of [`Registry::collect_garbage`]:
//! 1. deletes the referrers (an SBOM, a report, a signature) stored more than `delay` ago whose
//!    subject is not in their repository, unless a tag or an index keeps them; then the
//!    referrers of those;
//! 2. unlinks the blob links that no manifest of their repository references, linked (last) more
//!    than `delay` ago: layers of a push whose manifest never came, layers of deleted manifests;
//! 3. deletes from the blob store the bytes written more than `delay` ago that no repository
//!    links and no manifest is made of, under [`Registry::hold_bytes`]'s exclusive side and a
//!    claim on each digest in the records (the invariant in `evict.rs`), a page at a time.
//!
//! Why the delay: a client pushes layers first and the manifest that references them last, so
//! a layer is unreferenced for as long as the push takes. A client that finds a layer already
//! there (a HEAD, [`Registry::head_blob`]) does not push it again, so a link it found counts as
//! linked then: the HEAD renews an old link in the records (whichever replica answered it, and
//! across restarts), and a pass spares it for `delay` from then. The unlink itself checks the
//! link's time, so a HEAD between a pass's listing and its unlink keeps the link, and a HEAD
//! after the unlink answers that the blob is unknown. A manifest that arrives after its layers
//! were unlinked anyway (its client took longer than `delay` after its HEAD) is refused with
//! `MANIFEST_BLOB_UNKNOWN` (the records' transaction checks every link); nothing is ever left
//! pointing at nothing.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use oci::{Digest, RepoName};

use crate::{Error, Registry, Result, now_ms, pulls};

/// Links and blobs handled per page: bounds memory and how long pushes wait on a deletion.
const PAGE: usize = 500;

/// What a pass of garbage collection removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Collected {
    /// Referrers whose subject was gone.
    pub referrers: usize,
    /// Blob links no manifest of their repository referenced.
    pub links: usize,
    /// Blobs (layers, configs, manifests) deleted from the store.
    pub blobs: usize,
    /// Their bytes.
    pub bytes: u64,
}

/// What every pass since the start removed, for `/metrics`.
#[derive(Default)]
pub(crate) struct GcStats {
    pub passes: AtomicU64,
    pub referrers: AtomicU64,
    pub links: AtomicU64,
    pub blobs: AtomicU64,
    pub bytes: AtomicU64,
    /// When the last pass ended, in epoch milliseconds; 0: none yet.
    pub last_pass_ms: AtomicU64,
    pub expired_tags: AtomicU64,
    pub expired_manifests: AtomicU64,
}

impl Registry {
    /// The size of `digest` if it is linked in `repo`, asked by a client deciding whether to
    /// push it: a link older than [`crate::RegistryConfig::link_renewal`] is renewed in the
    /// records, so garbage collection on any replica spares it for its delay from now. Each
    /// process renews a link at most once per `link_renewal`.
    pub async fn head_blob(&self, repo: &RepoName, digest: &Digest) -> Result<u64> {
        let size = self.stat_blob(repo, digest).await?;
        if self.config.read_only {
            // Nothing is pushed, and nothing collected, while the records are read-only.
            return Ok(size);
        }
        let now = now_ms();
        let renewal = self.config.link_renewal.as_millis().min(i64::MAX as u128) as i64;
        if self.renewed_links.get(repo, digest).is_some_and(|at| at > now.saturating_sub(renewal)) {
            return Ok(size);
        }
        if !self.meta.renew_link(repo, digest, now.saturating_sub(renewal), now).await? {
            // Unlinked since it was looked up.
            return Err(Error::BlobUnknown(digest.clone()));
        }
        self.renewed_links.note(repo, digest, now);
        if self.renewed_links.len() >= pulls::NOTED_MAX {
            self.renewed_links.forget_until(now.saturating_sub(renewal));
        }
        Ok(size)
    }

    /// One pass of garbage collection, sparing what was linked or written less than `delay` ago.
    pub async fn collect_garbage(&self, delay: Duration) -> Result<Collected> {
        // The last millisecond that is old enough.
        let cutoff = now_ms().saturating_sub(delay.as_millis().min(i64::MAX as u128) as i64);
        let mut collected = Collected::default();
        loop {
            let deleted = self.meta.delete_dangling_referrers(cutoff + 1, PAGE).await?;
            for (repo, _) in &deleted {
                self.cache.invalidate(repo);
            }
            collected.referrers += deleted.len();
            if deleted.is_empty() {
                break;
            }
        }
        loop {
            let page = self.meta.orphan_links(cutoff + 1, PAGE).await?;
            let mut unlinked = 0;
            for (repo, digest) in &page {
                // A manifest recorded, or the link found by a client (renewed), since the page
                // was read keeps it.
                if self.meta.unlink_unreferenced_blob(repo, digest, cutoff + 1).await? {
                    unlinked += 1;
                }
            }
            collected.links += unlinked;
            if unlinked > 0 {
                // Those bytes no longer count against their namespaces' quotas.
                self.quota_usage.forget();
            }
            if page.len() < PAGE || unlinked == 0 {
                break;
            }
        }
        let mut after: Option<Digest> = None;
        loop {
            let page = self.blobs.list(after.as_ref(), PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.digest.clone());
            let mut unneeded = Vec::new();
            for blob in page.iter().filter(|b| b.written_at_ms <= cutoff) {
                if !self.meta.digest_in_use(&blob.digest).await? {
                    unneeded.push(blob.digest.clone());
                }
            }
            let (blobs, bytes) = self.delete_unneeded_bytes(unneeded).await?;
            collected.blobs += blobs;
            collected.bytes += bytes;
            if page.len() < PAGE {
                break;
            }
        }
        let stats = &self.gc_stats;
        stats.passes.fetch_add(1, Relaxed);
        stats.referrers.fetch_add(collected.referrers as u64, Relaxed);
        stats.links.fetch_add(collected.links as u64, Relaxed);
        stats.blobs.fetch_add(collected.blobs as u64, Relaxed);
        stats.bytes.fetch_add(collected.bytes, Relaxed);
        stats.last_pass_ms.store(now_ms().max(0) as u64, Relaxed);
        Ok(collected)
    }

    /// Deletes the bytes of those of `digests` that no record needs, checked again under the
    /// exclusive side of [`Registry::hold_bytes`] and a claim on the digest in the records:
    /// nothing, in this process or another replica, can come to need them meanwhile. A digest
    /// held somewhere is being made referenced, and is left. Returns how many blobs were deleted
    /// and their bytes.
    pub(crate) async fn delete_unneeded_bytes(&self, digests: impl IntoIterator<Item = Digest>) -> Result<(usize, u64)> {
        let (mut blobs, mut bytes) = (0, 0);
        for digest in digests {
            let _exclusive = self.digest_guards.exclude(&digest).await;
            let Some(claim) = self.meta.claim_digest(&digest).await? else { continue };
            let deleted = self.delete_if_unneeded(&digest).await;
            claim.release().await;
            if let Some(size) = deleted? {
                blobs += 1;
                bytes += size;
            }
        }
        Ok((blobs, bytes))
    }

    /// Under the caller's claim on `digest`: deletes its bytes if no record needs them; their size
    /// if it did.
    async fn delete_if_unneeded(&self, digest: &Digest) -> Result<Option<u64>> {
        if self.meta.digest_in_use(digest).await? {
            return Ok(None);
        }
        let size = self.blobs.stat(digest).await?.unwrap_or(0);
        Ok(self.blobs.delete(digest).await?.then_some(size))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    use bytes::Bytes;
    use futures::StreamExt;

    use super::*;

    /// A replica: its blobs in `dir` and its records in the PostgreSQL database `url`, both shared
    /// with every other replica made alike.
    async fn replica(url: &str, dir: &std::path::Path, config: crate::RegistryConfig) -> Registry {
        let blobs = blobs::Blobs(Arc::new(blobs::FsBlobStore::open(dir).unwrap()));
        let meta = meta::Meta(Arc::new(meta::SqlMeta::connect(url).await.unwrap()));
        Registry::new(blobs, meta, config)
    }

    /// Two replicas over one PostgreSQL and one blob directory: one pushes a blob again and again,
    /// unlinking it after each push, while the other deletes its bytes whenever no record needs
    /// them. Every push acknowledged finds its bytes there: a deletion never falls between a
    /// commit's bytes and its link. (Without the claims in the records, this lost pushes: the
    /// check of the records and the deletion ran on one replica between the other's commit of
    /// the bytes and its link.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_deletion_on_one_replica_never_takes_a_push_on_another() {
        let pg = test_support::Postgres::start();
        let (url, dir) = (pg.database(), tempfile::tempdir().unwrap());
        let replica = || replica(&url, dir.path(), crate::RegistryConfig::default());
        let (pusher, collector) = (Arc::new(replica().await), replica().await);
        let repo: RepoName = "team/app".parse().unwrap();
        let bytes = Bytes::from(vec![7u8; 64 << 10]);
        let digest = Digest::sha256_of(&bytes);

        let done = Arc::new(AtomicBool::new(false));
        let pushes = {
            let (pusher, done, repo, digest) = (pusher.clone(), done.clone(), repo.clone(), digest.clone());
            tokio::spawn(async move {
                let mut lost = 0;
                for _ in 0..300 {
                    let body = futures::stream::iter([Ok(bytes.clone())]).boxed();
                    pusher.upload_whole(&repo, &digest, None, body).await.unwrap();
                    // Acknowledged and linked: its bytes must be there.
                    if pusher.blobs.stat(&digest).await.unwrap().is_none() {
                        lost += 1;
                    }
                    pusher.meta.unlink_blob(&repo, &digest).await.unwrap();
                }
                done.store(true, Relaxed);
                lost
            })
        };
        let mut deleted = 0;
        while !done.load(Relaxed) {
            deleted += collector.delete_unneeded_bytes([digest.clone()]).await.unwrap().0;
        }
        let lost = pushes.await.unwrap();
        assert_eq!(lost, 0, "acknowledged pushes whose bytes were deleted ({deleted} deletions in all)");
        assert!(deleted > 10, "the collector deleted the unlinked bytes between pushes: {deleted}");
    }

    /// A HEAD renews an old link, except on a read-only registry, which writes nothing.
    #[tokio::test]
    async fn a_read_only_registry_renews_no_link() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = blobs::Blobs(Arc::new(blobs::FsBlobStore::open(dir.path()).unwrap()));
        let meta = meta::Meta(Arc::new(meta::SqlMeta::open(&dir.path().join("meta.db")).await.unwrap()));
        let config = crate::RegistryConfig { link_renewal: Duration::ZERO, ..Default::default() };
        let writable = Registry::new(blobs.clone(), meta.clone(), config.clone());
        let read_only = Registry::new(blobs, meta.clone(), crate::RegistryConfig { read_only: true, ..config });
        let repo: RepoName = "team/app".parse().unwrap();
        let bytes = Bytes::from_static(b"a layer");
        let digest = Digest::sha256_of(&bytes);
        writable.upload_whole(&repo, &digest, None, futures::stream::iter([Ok(bytes)]).boxed()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let before = now_ms();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let old = || async { meta.orphan_links(before, 10).await.unwrap().len() };
        assert_eq!(read_only.head_blob(&repo, &digest).await.unwrap(), 7);
        assert_eq!(old().await, 1, "read-only: the link keeps its time");
        assert_eq!(writable.head_blob(&repo, &digest).await.unwrap(), 7);
        assert_eq!(old().await, 0, "renewed");
    }

    /// A client finds an old, unreferenced layer with a HEAD on one replica (and so will send a
    /// manifest naming it instead of pushing it); garbage collection on another replica spares it
    /// for its delay from then, and takes the layer nobody asked about.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_link_found_on_one_replica_is_spared_by_gc_on_another() {
        let pg = test_support::Postgres::start();
        let (url, dir) = (pg.database(), tempfile::tempdir().unwrap());
        let config = crate::RegistryConfig { link_renewal: Duration::from_millis(500), ..Default::default() };
        let replica = || replica(&url, dir.path(), config.clone());
        let (front, collector) = (replica().await, replica().await);
        let repo: RepoName = "team/app".parse().unwrap();
        let (found, forgotten) = (Bytes::from_static(b"a layer a client finds"), Bytes::from_static(b"a layer nobody asks about"));
        for bytes in [&found, &forgotten] {
            let body = futures::stream::iter([Ok(bytes.clone())]).boxed();
            front.upload_whole(&repo, &Digest::sha256_of(bytes), None, body).await.unwrap();
        }
        let (found, forgotten) = (Digest::sha256_of(&found), Digest::sha256_of(&forgotten));
        let delay = Duration::from_secs(1);
        tokio::time::sleep(delay + Duration::from_millis(100)).await;

        assert_eq!(front.head_blob(&repo, &found).await.unwrap(), 22);
        let collected = collector.collect_garbage(delay).await.unwrap();
        assert_eq!((collected.links, collected.blobs), (1, 1), "the forgotten layer only: {collected:?}");
        assert!(collector.stat_blob(&repo, &found).await.is_ok(), "the found link is kept");
        assert!(collector.blobs.stat(&found).await.unwrap().is_some(), "and its bytes");
        assert!(collector.blobs.stat(&forgotten).await.unwrap().is_none());
        assert!(matches!(front.head_blob(&repo, &forgotten).await, Err(Error::BlobUnknown(_))));

        // Its delay over with no manifest naming it, it goes too.
        tokio::time::sleep(delay + Duration::from_millis(100)).await;
        let collected = collector.collect_garbage(delay).await.unwrap();
        assert_eq!((collected.links, collected.blobs), (1, 1), "{collected:?}");
    }

    /// The records' session holding a commit's bytes ends mid-commit (the database restarting,
    /// the connection cut), and a deletion on another replica takes the bytes before the commit's
    /// record lands. The write is refused, not acknowledged, and the digest reads as absent until
    /// pushed again, which repairs it. A hold that lasted, or whose bytes are still there, lets
    /// the write through.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_commit_whose_hold_broke_is_refused_if_its_bytes_went() {
        let pg = test_support::Postgres::start();
        let (url, dir) = (pg.database(), tempfile::tempdir().unwrap());
        let replica = || replica(&url, dir.path(), crate::RegistryConfig::default());
        let (pusher, collector) = (replica().await, replica().await);
        let repo: RepoName = "team/app".parse().unwrap();
        let bytes = Bytes::from_static(b"a layer pushed again before gc");
        let (digest, size) = (Digest::sha256_of(&bytes), bytes.len() as u64);
        let push = || pusher.upload_whole(&repo, &digest, None, futures::stream::iter([Ok(bytes.clone())]).boxed());
        // Ends every session holding stored digests (key 0x62797465): this cluster's one, the pusher's.
        let end_holds = || {
            pg.sql(
                "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_locks \
                 WHERE locktype = 'advisory' AND classid = 1652126821 AND mode = 'ShareLock' AND granted",
            )
        };
        // Stored and linked nowhere, as after a delete: a push of it again keeps these bytes.
        push().await.unwrap();
        pusher.meta.unlink_blob(&repo, &digest).await.unwrap();

        // Held throughout: the link is acknowledged.
        let held = pusher.hold_bytes(&[&digest]).await.unwrap();
        pusher.meta.link_blob(&repo, &digest, size).await.unwrap();
        pusher.release_bytes(held).await.unwrap();
        pusher.meta.unlink_blob(&repo, &digest).await.unwrap();

        // The hold breaks, the bytes go, the link lands: refused.
        let held = pusher.hold_bytes(&[&digest]).await.unwrap();
        assert_eq!(collector.delete_unneeded_bytes([digest.clone()]).await.unwrap().0, 0, "held: left");
        assert_eq!(end_holds().trim(), "1", "one session held the digest");
        // Its backend ends a moment after it is told to.
        let mut deleted = 0;
        for _ in 0..50 {
            deleted = collector.delete_unneeded_bytes([digest.clone()]).await.unwrap().0;
            if deleted > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(deleted, 1, "the hold went with its session");
        pusher.meta.link_blob(&repo, &digest, size).await.unwrap();
        let refused = pusher.release_bytes(held).await;
        assert!(matches!(refused, Err(Error::Unavailable(_))), "{refused:?}");
        assert!(matches!(pusher.head_blob(&repo, &digest).await, Err(Error::BlobUnknown(_))), "reads as absent");
        assert!(matches!(collector.head_blob(&repo, &digest).await, Err(Error::BlobUnknown(_))), "on every replica");

        // One push repairs it.
        push().await.unwrap();
        assert_eq!(collector.head_blob(&repo, &digest).await.unwrap(), size);
        assert_eq!(collector.blobs.stat(&digest).await.unwrap(), Some(size));

        // The hold breaks but the bytes stay: the write goes through.
        let held = pusher.hold_bytes(&[&digest]).await.unwrap();
        assert_eq!(end_holds().trim(), "1");
        pusher.meta.link_blob(&repo, &digest, size).await.unwrap();
        pusher.release_bytes(held).await.unwrap();
        assert_eq!(pusher.head_blob(&repo, &digest).await.unwrap(), size);
    }
}

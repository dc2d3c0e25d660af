//! Upload sessions: start, mount, append chunks, finish under a digest, cancel, expire.
//!
//! A session is a record in `meta` (repository, bytes received, running hash state) plus a part
//! in `blobs`. A chunk is written at the recorded offset and hashed as it streams; only after the
//! part is durable does the record advance, with a compare-and-set on the offset. A chunk that
//! fails half way therefore changes nothing the client can see, and the session stays usable.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use blobs::ByteStream;
use futures::StreamExt;
use meta::UploadRecord;
use oci::{Algorithm, Digest, DigestHasher, RepoName, UploadId};

use crate::quota::Writer;
use crate::{Error, Registry, Result, now_ms};

/// Where a session stands: the client's next chunk starts at `received`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadStatus {
    pub id: UploadId,
    pub received: u64,
}

/// What a cross-repository mount did.
#[derive(Debug)]
pub enum MountResult {
    /// The blob is now linked in the target repository.
    Mounted { size: u64 },
    /// It could not be mounted; a new session was started instead.
    Started(UploadStatus),
}

/// Sessions with a chunk being written now, so two writers never write one part at once.
#[derive(Clone, Default)]
pub(crate) struct InFlight(Arc<Mutex<HashSet<UploadId>>>);

/// A claim on one session; owned, so that a chunk's write task can hold it for as long as it runs.
struct InFlightGuard {
    set: InFlight,
    id: UploadId,
}

impl InFlight {
    fn enter(&self, id: &UploadId) -> Option<InFlightGuard> {
        let mut set = self.0.lock().unwrap_or_else(|p| p.into_inner());
        set.insert(id.clone()).then(|| InFlightGuard { set: self.clone(), id: id.clone() })
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.set.0.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.id);
    }
}

impl Registry {
    /// Opens a new upload session in `repo`.
    pub async fn start_upload(&self, repo: &RepoName) -> Result<UploadStatus> {
        // Refused before the client sends a byte: a disk at its reserve, a namespace at its quota.
        if let Some(space) = self.blobs.space() {
            space.check()?;
        }
        self.check_quota(repo).await?;
        let limit = self.config.max_upload_sessions;
        if self.meta.count_uploads().await? >= limit {
            return Err(Error::TooManyUploads { limit });
        }
        let id = UploadId::new(&uuid::Uuid::new_v4().to_string()).expect("a uuid is a valid upload id");
        let now = now_ms();
        let record = UploadRecord {
            id: id.clone(),
            repo: repo.clone(),
            received: 0,
            hash_state: DigestHasher::new(Algorithm::Sha256).save(),
            started_at_ms: now,
            updated_at_ms: now,
        };
        self.meta.create_upload(&record).await?;
        Ok(UploadStatus { id, received: 0 })
    }

    /// Links `digest` from `from` into `repo` if `from` has it; else starts a session.
    pub async fn mount(&self, repo: &RepoName, digest: &Digest, from: Option<&RepoName>) -> Result<MountResult> {
        let held = self.hold_bytes(&[digest]).await?;
        if let Some(from) = from
            && let Some(size) = self.meta.linked_blob(from, digest).await?
            && self.blobs.stat(digest).await?.is_some()
        {
            let quota = self.reserve_quota(repo, digest, size, "blob", Writer::Client).await?;
            self.meta.link_blob(repo, digest, size).await?;
            self.settle(quota).await;
            self.release_bytes(held).await?;
            return Ok(MountResult::Mounted { size });
        }
        drop(held);
        Ok(MountResult::Started(self.start_upload(repo).await?))
    }

    pub async fn upload_status(&self, repo: &RepoName, id: &UploadId) -> Result<UploadStatus> {
        let record = self.session(repo, id).await?;
        Ok(UploadStatus { id: record.id, received: record.received })
    }

    /// Appends a chunk. `start` is the first byte's offset from `Content-Range`, if sent;
    /// `declared_len` the chunk length the client declared, if any.
    pub async fn append(
        &self,
        repo: &RepoName,
        id: &UploadId,
        start: Option<u64>,
        declared_len: Option<u64>,
        body: ByteStream,
    ) -> Result<UploadStatus> {
        let (guard, record) = self.claim_session(repo, id, start).await?;
        let id = record.id.clone();
        let (received, _, _guard) = self.write_chunk(guard, record, declared_len, body).await?;
        Ok(UploadStatus { id, received })
    }

    /// Appends a final chunk (possibly empty) and commits the upload as `digest`.
    pub async fn finish_upload(
        &self,
        repo: &RepoName,
        id: &UploadId,
        digest: &Digest,
        start: Option<u64>,
        declared_len: Option<u64>,
        body: ByteStream,
    ) -> Result<u64> {
        let (guard, record) = self.claim_session(repo, id, start).await?;
        let (size, hasher, _guard) = self.write_chunk(guard, record, declared_len, body).await?;
        let actual = if digest.algorithm() == hasher.algorithm() {
            hasher.finish()
        } else {
            self.rehash(id, size, digest.algorithm()).await?
        };
        if actual != *digest {
            // The bytes can never become this digest: end the session so nothing lingers.
            self.drop_session(id).await;
            return Err(Error::DigestMismatch { expected: digest.clone(), actual });
        }
        let quota = match self.reserve_quota(repo, digest, size, "blob", Writer::Client).await {
            Ok(quota) => quota,
            Err(e @ Error::OverQuota(_)) => {
                // Refused for good: free the session's bytes now rather than at its expiry.
                self.drop_session(id).await;
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        let held = self.hold_bytes(&[digest]).await?;
        match self.blobs.commit(id, size, digest).await {
            Ok(()) => {}
            // A retry after a commit whose record never followed (a crash, a failed write to
            // the records): the part is already the blob. Its bytes were just checked to hash to
            // `digest`, so linking the committed copy links the same bytes.
            Err(blobs::Error::UploadNotFound(_)) if self.blobs.stat(digest).await? == Some(size) => {}
            Err(e) => return Err(e.into()),
        }
        self.meta.finish_upload(id, repo, digest, size).await?;
        self.settle(quota).await;
        self.release_bytes(held).await?;
        Ok(size)
    }

    /// Uploads a whole blob in one request (`POST ?digest=`).
    pub async fn upload_whole(
        &self,
        repo: &RepoName,
        digest: &Digest,
        declared_len: Option<u64>,
        body: ByteStream,
    ) -> Result<u64> {
        let status = self.start_upload(repo).await?;
        let result = self.finish_upload(repo, &status.id, digest, None, declared_len, body).await;
        if result.is_err() {
            self.drop_session(&status.id).await;
        }
        result
    }

    /// Stores a small blob the registry makes itself (an inspection's SBOM or report) whole, and
    /// links it in `repo`. Not a client's upload: neither a quota nor the storage reserve refuses
    /// it, so an image that was let in can always be inspected; it counts toward its namespace's
    /// usage all the same.
    pub async fn put_own_blob(&self, repo: &RepoName, bytes: bytes::Bytes) -> Result<(Digest, u64)> {
        let (digest, size) = (Digest::sha256_of(&bytes), bytes.len() as u64);
        let quota = self.reserve_quota(repo, &digest, size, "blob", Writer::Registry).await?;
        let held = self.hold_bytes(&[&digest]).await?;
        self.blobs.put(&digest, bytes).await?;
        self.meta.link_blob(repo, &digest, size).await?;
        self.settle(quota).await;
        self.release_bytes(held).await?;
        Ok((digest, size))
    }

    pub async fn cancel_upload(&self, repo: &RepoName, id: &UploadId) -> Result<()> {
        self.session(repo, id).await?;
        let _guard = self
            .in_flight
            .enter(id)
            .ok_or_else(|| Error::UploadInvalid("a chunk is being written to this session".into()))?;
        self.meta.delete_upload(id).await?;
        self.blobs.abort(id).await?;
        Ok(())
    }

    /// Removes sessions idle for longer than the configured TTL; returns how many.
    pub async fn purge_stale_uploads(&self) -> Result<usize> {
        let ttl = self.config.upload_session_ttl;
        let before = now_ms() - i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let stale = self.meta.stale_uploads(before, 1000).await?;
        let mut purged = 0;
        for s in &stale {
            let Some(_guard) = self.in_flight.enter(&s.id) else { continue };
            // Only if still idle: its client (on any replica) may have come back since the read.
            if !self.meta.delete_stale_upload(&s.id, before).await? {
                continue;
            }
            self.blobs.abort(&s.id).await?;
            purged += 1;
        }
        Ok(purged)
    }

    /// Takes a session for writing a chunk that starts at `start` (if the client said): only one
    /// writer at a time, and only at the session's offset; else 416 with where the session is.
    async fn claim_session(
        &self,
        repo: &RepoName,
        id: &UploadId,
        start: Option<u64>,
    ) -> Result<(InFlightGuard, UploadRecord)> {
        let guard = self.in_flight.enter(id);
        let record = self.session(repo, id).await?;
        let out_of_order = Error::UploadOutOfOrder { received: record.received };
        let guard = guard.ok_or(out_of_order)?;
        if start.is_some_and(|s| s != record.received) {
            return Err(Error::UploadOutOfOrder { received: record.received });
        }
        Ok((guard, record))
    }

    async fn session(&self, repo: &RepoName, id: &UploadId) -> Result<UploadRecord> {
        match self.meta.upload(id).await? {
            Some(r) if r.repo == *repo => Ok(r),
            _ => Err(Error::UploadUnknown),
        }
    }

    /// Writes `body` at the session's offset, hashing it, and advances the session record once
    /// the bytes are durable. Returns the new offset, the hasher at that offset, and the claim.
    ///
    /// The write runs as a task of its own that holds the session's claim until it ends, and this
    /// call awaits it. So a request dropped half way (its client gone, its connection closed)
    /// leaves the session claimed until the write has wound down and its last block has landed:
    /// a retry can never be overtaken by a write it does not know of. A task of its own is also
    /// cheaper: the connection's task hands each received piece to this one, where receiving into
    /// the request's own task woke that task while it ran, and tokio then passed it between its
    /// workers on every piece (bench/RESULTS.md, "a chunk's write in a task of its own").
    async fn write_chunk(
        &self,
        claim: InFlightGuard,
        record: UploadRecord,
        declared_len: Option<u64>,
        body: ByteStream,
    ) -> Result<(u64, DigestHasher, InFlightGuard)> {
        let (blobs, meta) = (self.blobs.clone(), self.meta.clone());
        let task = tokio::spawn(async move {
            let written = receive_chunk(&blobs, &meta, &record, declared_len, body).await;
            written.map(|(received, hasher)| (received, hasher, claim))
        });
        task.await.map_err(|e| Error::Unavailable(format!("the chunk's write task failed: {e}")))?
    }

    async fn rehash(&self, id: &UploadId, len: u64, algorithm: Algorithm) -> Result<Digest> {
        let mut stream = self.blobs.read_part(id, 0, len).await?;
        let mut hasher = DigestHasher::new(algorithm);
        while let Some(chunk) = stream.next().await {
            hasher.update(&chunk.map_err(|e| Error::Unavailable(e.to_string()))?);
        }
        Ok(hasher.finish())
    }

    async fn drop_session(&self, id: &UploadId) {
        if let Err(e) = self.meta.delete_upload(id).await {
            tracing::warn!(upload = %id, error = %e, "could not remove a failed upload's record");
        }
        if let Err(e) = self.blobs.abort(id).await {
            tracing::warn!(upload = %id, error = %e, "could not remove a failed upload's bytes");
        }
    }
}

/// The body of [`Registry::write_chunk`], run in its own task.
async fn receive_chunk(
    blobs: &blobs::Blobs,
    meta: &meta::Meta,
    record: &UploadRecord,
    declared_len: Option<u64>,
    body: ByteStream,
) -> Result<(u64, DigestHasher)> {
    let hasher = DigestHasher::restore(&record.hash_state)
        .ok_or_else(|| Error::Unavailable(format!("upload {} has an unreadable hash state", record.id)))?;
    let hasher = Arc::new(Mutex::new(hasher));
    let tap = hasher.clone();
    let hashed = body
        .map(move |chunk| {
            if let Ok(bytes) = &chunk {
                tap.lock().unwrap_or_else(|p| p.into_inner()).update(bytes);
            }
            chunk
        })
        .boxed();
    let written = blobs.write_part(&record.id, record.received, hashed).await?;
    if let Some(declared) = declared_len
        && declared != written
    {
        return Err(Error::SizeInvalid(format!("chunk declared {declared} bytes but carried {written}")));
    }
    let hasher = Arc::try_unwrap(hasher)
        .map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner()))
        .map_err(|_| Error::Unavailable("hash state still shared after the write".into()))?;
    let received = record.received + written;
    if written > 0 {
        let advanced = meta.advance_upload(&record.id, record.received, received, &hasher.save(), now_ms()).await?;
        if !advanced {
            return Err(Error::UploadOutOfOrder { received: record.received });
        }
    }
    Ok((received, hasher))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use futures::channel::mpsc;

    use super::*;

    async fn registry(dir: &std::path::Path) -> (blobs::Blobs, Registry) {
        let blobs = blobs::Blobs(Arc::new(blobs::FsBlobStore::open(dir).unwrap()));
        let meta = meta::Meta(Arc::new(meta::SqlMeta::open(&dir.join("meta.db")).await.unwrap()));
        (blobs.clone(), Registry::new(blobs, meta, crate::RegistryConfig::default()))
    }

    /// A body the test feeds piece by piece.
    fn body() -> (mpsc::UnboundedSender<std::io::Result<Bytes>>, ByteStream) {
        let (tx, rx) = mpsc::unbounded();
        (tx, rx.boxed())
    }

    /// A body that is all there.
    fn whole(bytes: &'static [u8]) -> ByteStream {
        futures::stream::iter([Ok(Bytes::from_static(bytes))]).boxed()
    }

    #[tokio::test]
    async fn a_dropped_request_keeps_its_session_until_its_write_has_ended() {
        let dir = tempfile::tempdir().unwrap();
        let (blobs, registry) = registry(dir.path()).await;
        let repo: RepoName = "team/app".parse().unwrap();
        let id = registry.start_upload(&repo).await.unwrap().id;

        // A request that has sent 1.5 MiB (a full block goes to disk) and then stalls; its
        // handler is dropped, as when a client vanishes or a server-side deadline passes.
        let (first, first_body) = body();
        first.unbounded_send(Ok(Bytes::from(vec![b'a'; 3 << 19]))).unwrap();
        let stalled = registry.append(&repo, &id, Some(0), None, first_body);
        let dropped = tokio::time::timeout(Duration::from_millis(200), stalled).await;
        assert!(dropped.is_err(), "the stalled request cannot have finished");

        // Its write still runs: a retry is told to wait, as for any chunk being written.
        let refused = registry.append(&repo, &id, Some(0), None, whole(b"the retry's bytes")).await;
        assert!(matches!(refused, Err(Error::UploadOutOfOrder { received: 0 })), "{refused:?}");

        // Its body fails (the connection is gone); once the write has wound down, the retry at
        // the same offset is taken, and only the retry's bytes are in the blob.
        first.unbounded_send(Err(std::io::Error::other("connection reset"))).unwrap();
        let mut status = None;
        for _ in 0..500 {
            match registry.append(&repo, &id, Some(0), None, whole(b"the retry's bytes")).await {
                Err(Error::UploadOutOfOrder { received: 0 }) => tokio::time::sleep(Duration::from_millis(10)).await,
                other => {
                    status = Some(other.unwrap());
                    break;
                }
            }
        }
        assert_eq!(status.expect("the session is released once the dropped write has ended").received, 17);
        let digest = Digest::sha256_of(b"the retry's bytes");
        assert_eq!(registry.finish_upload(&repo, &id, &digest, Some(17), None, whole(b"")).await.unwrap(), 17);
        let Ok(blobs::BlobBody::Stream { stream, len: 17 }) = blobs.open(&digest, None).await else {
            panic!("the blob is 17 bytes");
        };
        let read: Vec<Bytes> = stream.map(|c| c.unwrap()).collect().await;
        assert_eq!(read.concat(), b"the retry's bytes");
    }

    /// A session whose bytes became the blob `digest` while the server stopped before the records
    /// said so: what a crash between the commit and its record leaves.
    async fn committed_without_record(blobs: &blobs::Blobs, registry: &Registry, repo: &RepoName) -> UploadId {
        let id = registry.start_upload(repo).await.unwrap().id;
        registry.append(repo, &id, Some(0), None, whole(b"committed, then the server died")).await.unwrap();
        blobs.commit(&id, 31, &Digest::sha256_of(b"committed, then the server died")).await.unwrap();
        id
    }

    #[tokio::test]
    async fn a_retried_put_completes_an_upload_whose_commit_landed_without_its_record() {
        let dir = tempfile::tempdir().unwrap();
        let (blobs, registry) = registry(dir.path()).await;
        let repo: RepoName = "team/app".parse().unwrap();
        let digest = Digest::sha256_of(b"committed, then the server died");
        let id = committed_without_record(&blobs, &registry, &repo).await;
        assert_eq!(registry.meta.linked_blob(&repo, &digest).await.unwrap(), None);

        let wrong = Digest::sha256_of(b"other bytes");
        let refused = registry.finish_upload(&repo, &id, &wrong, Some(31), None, whole(b"")).await;
        assert!(matches!(refused, Err(Error::DigestMismatch { .. })), "{refused:?}");
        let id = committed_without_record(&blobs, &registry, &repo).await;
        assert_eq!(registry.finish_upload(&repo, &id, &digest, Some(31), None, whole(b"")).await.unwrap(), 31);
        assert_eq!(registry.meta.linked_blob(&repo, &digest).await.unwrap(), Some(31), "the blob is in the repository");
        assert!(registry.meta.upload(&id).await.unwrap().is_none(), "the session is over");
    }
}

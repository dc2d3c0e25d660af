//! Copying every committed blob of one store into another: the data directory's blobs into a
//! bucket, when one server becomes replicas that share a blob store (`customs blobs copy`).
//!
//! Each blob is read as stored, hashed on its way, and committed in the target only when its
//! bytes match its digest: a damaged blob is reported and left out, never copied under its name.
//! A blob the target holds already at the same size is skipped, so a copy cut short is simply
//! run again.

use std::sync::{Arc, Mutex};

use futures::StreamExt;
use oci::{Digest, DigestHasher, UploadId};

use crate::{BlobStore, Error, Result};

/// What a copy did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Copied {
    pub blobs: u64,
    pub bytes: u64,
    /// Held by the target already.
    pub skipped: u64,
    /// Blobs whose bytes do not match their digest, with what they hashed to: not copied.
    pub damaged: Vec<(Digest, Digest)>,
}

/// Copies every blob of `from` that `to` lacks; `progress` is told each one copied.
pub async fn copy(from: &dyn BlobStore, to: &dyn BlobStore, mut progress: impl FnMut(&Digest, u64)) -> Result<Copied> {
    const PAGE: usize = 256;
    let mut done = Copied::default();
    let mut after: Option<Digest> = None;
    loop {
        let page = from.list(after.as_ref(), PAGE).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.digest.clone());
        for blob in page {
            if to.stat(&blob.digest).await? == Some(blob.size) {
                done.skipped += 1;
                continue;
            }
            let hasher = Arc::new(Mutex::new(DigestHasher::new(blob.digest.algorithm())));
            let seen = hasher.clone();
            let stream = from
                .read_stored(&blob.digest)
                .await?
                .inspect(move |chunk| {
                    if let Ok(bytes) = chunk {
                        seen.lock().unwrap_or_else(|p| p.into_inner()).update(bytes);
                    }
                })
                .boxed();
            let id = part_id();
            let written = match to.write_part(&id, 0, stream).await {
                Ok(n) => n,
                Err(e) => {
                    let _ = to.abort(&id).await;
                    return Err(e);
                }
            };
            let hashed = Arc::try_unwrap(hasher).map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner())).map(DigestHasher::finish);
            match hashed {
                Ok(d) if d == blob.digest && written == blob.size => {}
                Ok(d) => {
                    to.abort(&id).await?;
                    done.damaged.push((blob.digest.clone(), d));
                    continue;
                }
                Err(_) => {
                    to.abort(&id).await?;
                    return Err(Error::Storage(format!("the read of {} was still held after its write", blob.digest)));
                }
            }
            to.commit(&id, written, &blob.digest).await?;
            progress(&blob.digest, written);
            done.blobs += 1;
            done.bytes += written;
        }
    }
    Ok(done)
}

/// A fresh upload id for a copy's part: the start of this copy and a counter.
fn part_id() -> UploadId {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static START: std::sync::OnceLock<u128> = std::sync::OnceLock::new();
    let start = START.get_or_init(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis()));
    UploadId::new(&format!("copy-{start}-{}", NEXT.fetch_add(1, Ordering::Relaxed))).expect("letters, digits and dashes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FsBlobStore;
    use bytes::Bytes;

    #[tokio::test]
    async fn copies_what_the_target_lacks_and_never_a_damaged_blob() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (from, to) = (FsBlobStore::open(a.path()).unwrap(), FsBlobStore::open(b.path()).unwrap());
        let blob = |n: usize, seed: u8| -> (Digest, Bytes) {
            let bytes: Bytes = (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect::<Vec<u8>>().into();
            (Digest::sha256_of(&bytes), bytes)
        };
        let blobs = [blob(3 << 20, 1), blob(10, 2), blob(0, 3), blob(70_000, 4), blob(5_000, 5)];
        for (d, bytes) in &blobs {
            from.put(d, bytes.clone()).await.unwrap();
        }
        to.put(&blobs[1].0, blobs[1].1.clone()).await.unwrap();
        // One blob's file changes under it: its bytes no longer match its name.
        let hex = blobs[4].0.hex().to_owned();
        std::fs::write(a.path().join("blobs/sha256").join(&hex[..2]).join(&hex), b"not the bytes").unwrap();

        let mut told = Vec::new();
        let done = copy(&from, &to, |d, n| told.push((d.clone(), n))).await.unwrap();
        assert_eq!((done.blobs, done.skipped, done.bytes), (3, 1, (3 << 20) + 70_000));
        assert_eq!(done.damaged, [(blobs[4].0.clone(), Digest::sha256_of(b"not the bytes"))]);
        assert_eq!(told.len(), 3);
        for (d, bytes) in &blobs[..4] {
            let stream = to.read_stored(d).await.unwrap();
            let read: Vec<Bytes> = stream.map(|c| c.unwrap()).collect().await;
            assert!(read.concat() == bytes[..], "{d} whole in the target");
        }
        assert_eq!(to.stat(&blobs[4].0).await.unwrap(), None, "the damaged blob is not copied under its name");
        assert!(to.list(None, 100).await.unwrap().len() == 4);

        let again = copy(&from, &to, |_, _| {}).await.unwrap();
        assert_eq!((again.blobs, again.skipped, again.damaged.len()), (0, 4, 1), "a second run copies nothing");
    }
}

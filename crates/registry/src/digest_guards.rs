//! This process's side of the lock between deleting stored bytes and making them referenced
//! ([`crate::Registry::hold_bytes`]; across processes, `meta::ByteLocks`).
//!
//! One read-write lock per stripe of digests, not one for the process: a deletion excludes only
//! the writes whose digests share its stripe, for that one deletion. With one lock, every commit
//! of the process waited while garbage collection deleted a page of blobs (up to 500, each a
//! claim, a look at the records, a stat and a delete: seconds on an object store).
//!
//! Holders take their stripes shared in ascending order, and a deletion takes one stripe at a
//! time exclusively and waits for nothing a holder holds, so no two wait for each other in a
//! cycle.

use oci::Digest;
use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Enough that unrelated digests rarely share a stripe (a digest's bits are uniform).
const STRIPES: usize = 64;

pub(crate) struct DigestGuards {
    stripes: Box<[RwLock<()>]>,
}

impl Default for DigestGuards {
    fn default() -> DigestGuards {
        DigestGuards { stripes: (0..STRIPES).map(|_| RwLock::new(())).collect() }
    }
}

impl DigestGuards {
    fn stripe(digest: &Digest) -> usize {
        let hex = digest.hex();
        usize::from_str_radix(&hex[..2], 16).unwrap_or(0) % STRIPES
    }

    /// Shared, on the stripes of `digests`: excludes their deletion in this process.
    pub(crate) async fn share(&self, digests: &[&Digest]) -> Vec<RwLockReadGuard<'_, ()>> {
        let mut stripes: Vec<usize> = digests.iter().map(|d| Self::stripe(d)).collect();
        stripes.sort_unstable();
        stripes.dedup();
        let mut guards = Vec::with_capacity(stripes.len());
        for stripe in stripes {
            guards.push(self.stripes[stripe].read().await);
        }
        guards
    }

    /// Exclusive, on `digest`'s stripe: taken by a deletion of its bytes.
    pub(crate) async fn exclude(&self, digest: &Digest) -> RwLockWriteGuard<'_, ()> {
        self.stripes[Self::stripe(digest)].write().await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A digest whose hex starts with `prefix` (found by trying).
    fn digest_with(prefix: &str) -> Digest {
        (0u32..).map(|i| Digest::sha256_of(&i.to_be_bytes())).find(|d| d.hex().starts_with(prefix)).unwrap()
    }

    #[tokio::test]
    async fn a_deletion_keeps_waiting_only_the_writes_of_its_stripe() {
        let guards = DigestGuards::default();
        let (deleted, same_stripe, other) = (digest_with("00"), digest_with("40"), digest_with("01"));
        let deleting = guards.exclude(&deleted).await;
        let quick = Duration::from_millis(100);
        assert!(tokio::time::timeout(quick, guards.share(&[&other])).await.is_ok(), "another stripe: not kept waiting");
        assert!(tokio::time::timeout(quick, guards.share(&[&deleted])).await.is_err(), "its own digest waits");
        assert!(tokio::time::timeout(quick, guards.share(&[&other, &same_stripe])).await.is_err(), "so does one of its stripe");
        drop(deleting);
        let held = tokio::time::timeout(quick, guards.share(&[&deleted, &other, &same_stripe])).await.expect("free once deleted");
        assert_eq!(held.len(), 2, "a stripe is taken once");
        assert!(tokio::time::timeout(quick, guards.exclude(&other)).await.is_err(), "held: no deletion");
    }
}

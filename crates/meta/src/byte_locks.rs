//! Locks between deleting a digest's stored bytes and making them referenced, for every process
//! that shares the records.
//!
//! Architecture Invariant: a digest's bytes are deleted (or moved aside) only under a claim on the
//! digest ([`ByteLocks::claim_digest`]), and every path that makes stored bytes referenced holds
//! the digest ([`ByteLocks::hold_digests`]) from the moment it relies on the bytes until its
//! record is committed. A claim is taken only while nothing holds the digest, and a hold waits
//! while a claim is held: so a deletion that checked the records under its claim cannot remove
//! bytes another replica is about to link, whichever replica each runs on.

use std::future::Future;
use std::pin::Pin;

use oci::Digest;

use crate::Result;

#[async_trait::async_trait]
pub trait ByteLocks: Send + Sync {
    /// Holds `digests` (shared with other holds, excluding claims): waits while one is claimed.
    /// Released when the returned value is dropped.
    async fn hold_digests(&self, digests: &[&Digest]) -> Result<DigestsHeld>;
    /// Claims `digest` (exclusive) if nothing holds or claims it, in any process sharing the
    /// records; `None` if something does. Released by [`DigestClaim::release`], or on drop.
    async fn claim_digest(&self, digest: &Digest) -> Result<Option<DigestClaim>>;
}

/// Digests held; released on drop, or by [`DigestsHeld::release`], which also says whether the
/// hold lasted.
#[must_use = "the digests are released when this is dropped"]
pub struct DigestsHeld {
    release: Option<Box<dyn Release>>,
}

/// How a hold of shared records is given up.
pub(crate) trait Release: Send {
    /// Gives the hold up without waiting.
    fn release(self: Box<Self>);
    /// Gives the hold up, answering `true` only if it was held without a break until now.
    fn confirm(self: Box<Self>) -> Pin<Box<dyn Future<Output = bool> + Send>>;
}

impl DigestsHeld {
    /// A hold with nothing to release (records of this process's own: its own lock suffices).
    pub(crate) fn local() -> DigestsHeld {
        DigestsHeld { release: None }
    }

    pub(crate) fn new(release: impl Release + 'static) -> DigestsHeld {
        DigestsHeld { release: Some(Box::new(release)) }
    }

    /// Releases the digests once the record that needs their bytes has committed, and answers
    /// whether they were held without a break from the moment they were given until now. A break
    /// is the records' session that held them ending (the database restarting, the connection
    /// cut), which takes its locks with it: a deletion may then have taken the bytes while the
    /// holder went on, so the holder must look at them again. Records of this process's own never
    /// break.
    pub async fn release(mut self) -> bool {
        match self.release.take() {
            Some(release) => release.confirm().await,
            None => true,
        }
    }
}

impl Drop for DigestsHeld {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            release.release();
        }
    }
}

/// A digest claimed. Dropped without [`DigestClaim::release`], it is released all the same, a
/// moment later.
#[must_use = "the claim is released when this is dropped"]
pub struct DigestClaim {
    release: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl DigestClaim {
    pub(crate) fn local() -> DigestClaim {
        DigestClaim { release: None }
    }

    pub(crate) fn new(release: impl Future<Output = ()> + Send + 'static) -> DigestClaim {
        DigestClaim { release: Some(Box::pin(release)) }
    }

    /// Releases the claim now.
    pub async fn release(mut self) {
        if let Some(release) = self.release.take() {
            release.await;
        }
    }
}

//! Content-addressed bytes.
//!
//! - [`BlobStore`] is the port: committed blobs by digest (stat, ranged open, whole put, delete,
//!   a paged listing, uncached reads and quarantine for the scrub) and upload parts (write at an offset, commit under a digest, abort).
//! - [`FsBlobStore`] is the filesystem adapter of the embedded default; `S3BlobStore` (feature
//!   `s3`) keeps blobs in an S3-compatible store.
//! - [`conformance`] is the suite every adapter passes.
//! - [`MappedRegions`] tells a connection which outgoing bytes are mapped blob windows, so it can
//!   send them with sendfile instead of copying them.
//! - [`Space`]: the filesystem under a store and the reserve that uploads leave free.
//!
//! Architecture Invariant: the store never decides what bytes are *right*. Hashing and digest
//! verification are `registry`'s, so every adapter gets them the same; the store's promise is
//! that a committed blob is durable and complete the moment `commit` returns, and that nothing
//! uncommitted is ever visible under a digest.
//!
//! Architecture Invariant: no HTTP types. [`BlobBody`] is a stream of bytes or a redirect URL.

mod aligned;
pub mod conformance;
mod copy;
mod fs;
mod parts;
mod regions;
#[cfg(feature = "s3")]
mod s3;
mod space;

use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use oci::Digest;
pub use oci::UploadId;

pub use copy::{Copied, copy};
pub use fs::FsBlobStore;
pub use parts::PartWrites;
pub use regions::{FileSlice, MappedRegions};
pub use space::{Space, human_size};
#[cfg(feature = "s3")]
pub use s3::{S3BlobStore, S3Credentials, S3Settings};

/// Bytes flowing into or out of the store.
pub type ByteStream = BoxStream<'static, Result<Bytes, std::io::Error>>;

/// An inclusive byte range within a blob, already checked against its size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

impl ByteRange {
    pub fn len(&self) -> u64 {
        self.end - self.start + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }
}

/// How to read a blob: stream its bytes, or send the client to a URL that serves them.
pub enum BlobBody {
    Stream { stream: ByteStream, len: u64 },
    Redirect(String),
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("blob {0} is not in the store")]
    NotFound(Digest),
    #[error("upload {0} is not in the store")]
    UploadNotFound(UploadId),
    /// The incoming byte stream failed (the client went away, or sent less than it said).
    #[error("reading the request body failed: {0}")]
    Body(std::io::Error),
    /// The store itself failed; nothing was committed.
    #[error("blob storage failed: {0}")]
    Storage(String),
    /// The store is short of space (at its reserve, or the medium is full); nothing was committed.
    #[error("{0}")]
    NoSpace(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A committed blob as [`BlobStore::list`] finds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredBlob {
    pub digest: Digest,
    pub size: u64,
    /// When its bytes were last written, in milliseconds since the epoch.
    pub written_at_ms: i64,
}

/// What a store that talks to a service over the network has asked of it since the start, every
/// attempt counted (a retried request counts each time): answers by status class, requests that
/// got no answer, and the time spent waiting for answers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// `(class, count)` for `2xx`, `3xx`, `4xx` (a HEAD of an absent blob is a 404) and `5xx`.
    pub answered: Vec<(&'static str, u64)>,
    /// Refused connections, resets, time-outs.
    pub failed: u64,
    /// Summed time from sending a request to its answer's head, in microseconds.
    pub wait_micros: u64,
}

/// The bytes port. Adapters: [`FsBlobStore`]; `S3BlobStore` behind the feature `s3`.
#[async_trait::async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// The size of a committed blob, or `None`.
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>>;
    /// Reads a committed blob, or `range` of it.
    async fn open(&self, digest: &Digest, range: Option<ByteRange>) -> Result<BlobBody>;
    /// Stores a small blob whole (manifests); durable when it returns.
    async fn put(&self, digest: &Digest, bytes: Bytes) -> Result<()>;
    /// Removes a committed blob; `false` if it was not there.
    async fn delete(&self, digest: &Digest) -> Result<bool>;
    /// Up to `limit` committed blobs whose digests sort after `after` (from the first if `None`),
    /// in the order of their digests' strings: garbage collection walks the store a page at a
    /// time, so its memory does not grow with the store.
    async fn list(&self, after: Option<&Digest>, limit: usize) -> Result<Vec<StoredBlob>>;

    /// Streams a committed blob as the medium holds it, for the scrub to hash: past any cache
    /// where the store can, so that a copy still cached cannot hide damage underneath.
    async fn read_stored(&self, digest: &Digest) -> Result<ByteStream>;
    /// Moves a committed blob out of sight (reads find it absent, a commit of the digest writes
    /// it anew) and keeps its bytes for the operator to examine; returns where they are, `None`
    /// if the blob was not there.
    async fn quarantine(&self, digest: &Digest) -> Result<Option<String>>;

    /// Writes `body` into the upload at `offset`, creating the upload if needed; returns how many
    /// bytes were written. Durable when it returns. Bytes past `offset` from an earlier failed
    /// write are overwritten: the caller's recorded offset is the truth.
    async fn write_part(&self, id: &UploadId, offset: u64, body: ByteStream) -> Result<u64>;
    /// Streams `len` bytes of an upload from `start` (to re-hash under another algorithm; to
    /// serve a blob while it is being written).
    async fn read_part(&self, id: &UploadId, start: u64, len: u64) -> Result<ByteStream>;
    /// Makes the first `len` bytes of the upload visible as `digest`, atomically, and removes the
    /// upload. The caller has verified the digest.
    async fn commit(&self, id: &UploadId, len: u64, digest: &Digest) -> Result<()>;
    /// Removes an upload's bytes; no error if there are none.
    async fn abort(&self, id: &UploadId) -> Result<()>;

    /// The fewest bytes worth a [`BlobStore::write_part`] of their own: a writer that chooses how
    /// much to send at once (a mirror filling a blob) gathers at least this much. 0 for a
    /// filesystem; an object store's part size, below which each write costs a request of its own.
    fn write_granularity(&self) -> usize {
        0
    }

    /// Requests to the service behind the store, for `/metrics`; `None` for a local filesystem.
    fn stats(&self) -> Option<StoreStats> {
        None
    }

    /// The filesystem under the store and the reserve it keeps free; `None` when it has no
    /// filesystem of its own to fill (an object store). Writes are refused with
    /// [`Error::NoSpace`] once [`Space::available`] is 0.
    fn space(&self) -> Option<Space> {
        None
    }

    /// A URL from which a client may GET a committed blob itself for a while (a presigned URL),
    /// or `None` when reads go through this process. Whether the blob is there is not checked:
    /// the caller knows from its records.
    async fn presign(&self, _digest: &Digest) -> Result<Option<String>> {
        Ok(None)
    }
}

/// The handle the rest of the program holds.
#[derive(Clone)]
pub struct Blobs(pub Arc<dyn BlobStore>);

impl std::ops::Deref for Blobs {
    type Target = dyn BlobStore;

    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}

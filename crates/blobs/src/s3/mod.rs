//! The S3 adapter (feature `s3`): blobs in any S3-compatible store (AWS S3, MinIO, Ceph RGW,
//! Garage), through `object_store`. Keys, under the configured prefix:
//!
//! - `blobs/<alg>/<hex>`: committed blobs. S3 lists keys in byte order, which is the order of
//!   their digests' strings, so [`BlobStore::list`] pages with `start-after`.
//! - `uploads/<id>/<offset, 20 digits>`: an upload's segments, one per [`BlobStore::write_part`]
//!   that carried bytes, named by the offset its bytes start at. S3 cannot append to an object;
//!   segments make each PATCH durable on its own and leave the upload readable from any replica.
//! - `quarantine/<alg>/<hex>-<ms>`: blobs the scrub found damaged.
//!
//! Durability and atomicity are S3's: a PUT, a completed multipart upload and a server-side copy
//! each make an object visible whole, or not at all, and only once it is stored. A commit copies
//! an upload's one segment to its digest's key on the server (or, for several segments or more
//! than [`COPY_LIMIT`], streams them into a multipart upload there), then deletes the segments.
//! A crash in between leaves segments that the upload's expiry removes; a multipart upload a
//! crash interrupted is invisible, and a bucket lifecycle rule (`AbortIncompleteMultipartUpload`)
//! reclaims its parts.
//!
//! Memory per upload is bounded: a body is sent in parts of [`PART`] bytes with at most
//! [`PARTS_IN_FLIGHT`] in flight, whatever the blob's size.

mod http;

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt, stream};
use ::http::Method;
use hyper_util::client::legacy::connect::Connect;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig, WriteMultipart};
use oci::Digest;

use crate::{BlobBody, BlobStore, ByteRange, ByteStream, Error, Result, StoreStats, StoredBlob, UploadId};

/// The size of one part of a multipart upload (S3's least is 5 MiB), and the most of a body held
/// before the first is sent: a smaller body goes in one PUT.
const PART: usize = 8 << 20;
/// Parts of one body being sent at once.
const PARTS_IN_FLIGHT: usize = 2;
/// The largest object S3 copies in one request; larger uploads are streamed through this process.
const COPY_LIMIT: u64 = 5 << 30;
/// A failed request (a connection refused or reset, a 5xx, a throttle) is tried again this many
/// times, with backoff from 100 ms, for at most [`RETRY_FOR`]: long enough to ride out a store's
/// blip, short enough that a client is answered and a wrong endpoint stops `serve` at once.
const RETRIES: usize = 4;
const RETRY_FOR: std::time::Duration = std::time::Duration::from_secs(30);

/// Where the store is and who it is to the store.
#[derive(Clone, Debug, Default)]
pub struct S3Settings {
    pub bucket: String,
    /// `None`: the environment's (`AWS_REGION`), else `us-east-1`.
    pub region: Option<String>,
    /// For stores other than AWS (MinIO, Ceph RGW, Garage): their URL; requests are path-style.
    pub endpoint: Option<String>,
    /// Keys go under this prefix (`""`: the bucket's root).
    pub prefix: String,
    /// Plain HTTP to `endpoint` (a store on the same host or network).
    pub allow_http: bool,
    /// Static keys, or `None` for the environment's: `AWS_ACCESS_KEY_ID` and
    /// `AWS_SECRET_ACCESS_KEY`, a web identity token (EKS), or the instance's metadata service.
    pub credentials: Option<S3Credentials>,
    /// Hand clients presigned GET URLs valid this long ([`BlobStore::presign`]) instead of
    /// streaming blobs through this process; `None`: stream.
    pub redirect_for: Option<std::time::Duration>,
}

#[derive(Clone)]
pub struct S3Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Credentials").field("access_key_id", &self.access_key_id).finish_non_exhaustive()
    }
}

pub struct S3BlobStore {
    store: Arc<AmazonS3>,
    bucket: String,
    root: Path,
    /// `s3://bucket/prefix`, for messages.
    url: String,
    redirect_for: Option<std::time::Duration>,
    counters: Arc<http::Counters>,
}

impl S3BlobStore {
    /// A store over `settings`' bucket; its requests go through `connector` (HTTPS and, for
    /// `allow_http`, plain HTTP). Nothing is sent until [`S3BlobStore::check`] or a first use.
    pub fn new<C>(settings: &S3Settings, connector: C) -> Result<S3BlobStore>
    where
        C: Connect + Clone + Send + Sync + std::fmt::Debug + 'static,
    {
        let counters = Arc::new(http::Counters::default());
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&settings.bucket)
            .with_allow_http(settings.allow_http)
            .with_retry(RetryConfig { max_retries: RETRIES, retry_timeout: RETRY_FOR, ..Default::default() })
            .with_http_connector(http::HyperConnector::new(connector, counters.clone()));
        if let Some(region) = &settings.region {
            builder = builder.with_region(region);
        }
        if let Some(endpoint) = &settings.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(keys) = &settings.credentials {
            builder = builder.with_access_key_id(&keys.access_key_id).with_secret_access_key(&keys.secret_access_key);
        }
        let store = builder.build().map_err(|e| Error::Storage(format!("S3 settings: {e}")))?;
        let root = Path::parse(settings.prefix.trim_matches('/'))
            .map_err(|e| Error::Storage(format!("S3 prefix {:?}: {e}", settings.prefix)))?;
        let url = format!("s3://{}/{}", settings.bucket, root);
        Ok(S3BlobStore {
            store: Arc::new(store),
            bucket: settings.bucket.clone(),
            root,
            url,
            redirect_for: settings.redirect_for,
            counters,
        })
    }

    /// Writes, reads back and removes a probe object: the bucket is there, the credentials
    /// are good and allowed to write. `write = false` (a read-only server, a query) only lists.
    pub async fn check(&self, write: bool) -> Result<()> {
        let fail = |what: &str, e: object_store::Error| Error::Storage(format!("{what} {}: {e}", self.url));
        if !write {
            self.store.list(Some(&self.root)).try_next().await.map_err(|e| fail("cannot list", e))?;
            return Ok(());
        }
        let probe = self.root.clone().join(".customs-probe").join(format!("{}-{}", std::process::id(), now().as_nanos()));
        self.store.put(&probe, PutPayload::from_static(b"ok")).await.map_err(|e| fail("cannot write to", e))?;
        let read = self.store.get(&probe).await.map_err(|e| fail("cannot read from", e))?;
        read.bytes().await.map_err(|e| fail("cannot read from", e))?;
        self.store.delete(&probe).await.map_err(|e| fail("cannot delete in", e))
    }

    /// Makes the prefix this `owner`'s (a data directory's id, then a line that says where it is),
    /// or refuses: records elsewhere do not know of this one's blobs, and their garbage collection
    /// would delete what this one needs (and this one's, theirs). The first owner writes
    /// `.customs-owner` (only if no other did meanwhile); later starts compare with it.
    pub async fn claim(&self, owner: &str) -> Result<()> {
        let key = self.root.clone().join(".customs-owner");
        let id = |text: &str| text.lines().next().unwrap_or("").to_owned();
        let current = match self.store.get(&key).await {
            Ok(got) => Some(String::from_utf8_lossy(&got.bytes().await.map_err(storage)?).into_owned()),
            Err(object_store::Error::NotFound { .. }) => None,
            Err(e) => return Err(storage(e)),
        };
        let current = match current {
            Some(current) => current,
            None => {
                let create = object_store::PutOptions { mode: object_store::PutMode::Create, ..Default::default() };
                match self.store.put_opts(&key, PutPayload::from(owner.to_owned()), create).await {
                    Ok(_) => return Ok(()),
                    // Another server claimed it since the read: compare with that one.
                    Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => {
                        let got = self.store.get(&key).await.map_err(storage)?;
                        String::from_utf8_lossy(&got.bytes().await.map_err(storage)?).into_owned()
                    }
                    // A store without conditional writes: the read just found none.
                    Err(_) => {
                        self.store.put(&key, PutPayload::from(owner.to_owned())).await.map_err(storage)?;
                        return Ok(());
                    }
                }
            }
        };
        if id(&current) == id(owner) {
            return Ok(());
        }
        let whose = current.lines().nth(1).unwrap_or("another customs");
        Err(Error::Storage(format!(
            "{} holds the blobs of {whose} (id {}); two registries over one prefix would delete each other's blobs: \
             give this one another bucket or prefix",
            self.url,
            id(&current)
        )))
    }

    /// `s3://bucket/prefix`.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn blob_key(&self, d: &Digest) -> Path {
        self.root.clone().join("blobs").join(d.algorithm().as_str()).join(d.hex())
    }

    fn upload_dir(&self, id: &UploadId) -> Path {
        self.root.clone().join("uploads").join(id.as_str())
    }

    /// An upload's segments by the offset they start at: (size, key).
    async fn segments(&self, id: &UploadId) -> Result<BTreeMap<u64, (u64, Path)>> {
        let dir = self.upload_dir(id);
        let objects: Vec<_> = self.store.list(Some(&dir)).try_collect().await.map_err(storage)?;
        Ok(objects
            .into_iter()
            .filter_map(|o| Some((o.location.filename()?.parse::<u64>().ok()?, (o.size, o.location))))
            .collect())
    }

    /// The pieces of `segments` that hold `[start, start + len)`, in order: (key, range in it).
    fn cover(
        id: &UploadId,
        segments: &BTreeMap<u64, (u64, Path)>,
        start: u64,
        len: u64,
    ) -> Result<Vec<(Path, Range<u64>)>> {
        let end = start + len;
        let mut pieces = Vec::new();
        let mut at = 0;
        while at < end {
            let Some((size, key)) = segments.get(&at).filter(|(size, _)| *size > 0) else {
                return Err(Error::Storage(format!("upload {id} has no bytes at offset {at}")));
            };
            let (from, to) = (start.max(at), end.min(at + size));
            if from < to {
                pieces.push((key.clone(), from - at..to - at));
            }
            at += size;
        }
        Ok(pieces)
    }

    /// Streams `pieces` one after another.
    fn read_pieces(&self, pieces: Vec<(Path, Range<u64>)>) -> ByteStream {
        let store = self.store.clone();
        stream::iter(pieces)
            .then(move |(key, range)| {
                let store = store.clone();
                async move {
                    let options = GetOptions { range: Some(GetRange::Bounded(range)), ..Default::default() };
                    let got = store.get_opts(&key, options).await.map_err(std::io::Error::other)?;
                    Ok::<_, std::io::Error>(got.into_stream().map_err(std::io::Error::other))
                }
            })
            .try_flatten()
            .boxed()
    }

    /// Stores `body` under `key`: one PUT if it fits in a part, else a multipart upload that
    /// is completed only once every byte is sent (and aborted if the body fails). Returns its
    /// length; an empty body stores nothing.
    async fn write_object(&self, key: &Path, mut body: ByteStream) -> Result<u64> {
        let mut first = Vec::new();
        let mut held = 0;
        while held < PART {
            match body.next().await {
                Some(Ok(bytes)) => {
                    held += bytes.len();
                    first.push(bytes);
                }
                Some(Err(e)) => return Err(Error::Body(e)),
                None if held == 0 => return Ok(0),
                None => {
                    self.store.put(key, first.into_iter().collect()).await.map_err(storage)?;
                    return Ok(held as u64);
                }
            }
        }
        let upload = self.store.put_multipart(key).await.map_err(storage)?;
        let mut parts = WriteMultipart::new_with_chunk_size(upload, PART);
        first.into_iter().for_each(|bytes| parts.put(bytes));
        let mut written = held as u64;
        loop {
            if let Err(e) = parts.wait_for_capacity(PARTS_IN_FLIGHT).await {
                abort_quietly(parts, key).await;
                return Err(storage(e));
            }
            match body.next().await {
                Some(Ok(bytes)) => {
                    written += bytes.len() as u64;
                    parts.put(bytes);
                }
                Some(Err(e)) => {
                    abort_quietly(parts, key).await;
                    return Err(Error::Body(e));
                }
                None => break,
            }
        }
        parts.finish().await.map_err(storage)?;
        Ok(written)
    }

    async fn delete_segments(&self, segments: BTreeMap<u64, (u64, Path)>) -> Result<()> {
        let keys = segments.into_values().map(|(_, key)| Ok(key));
        let deleted = self.store.delete_stream(stream::iter(keys).boxed());
        deleted.try_collect::<Vec<_>>().await.map_err(storage)?;
        Ok(())
    }

    async fn head(&self, key: &Path) -> Result<Option<object_store::ObjectMeta>> {
        match self.store.head(key).await {
            Ok(meta) => Ok(Some(meta)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(storage(e)),
        }
    }

    /// Reads `key` whole, or `NotFound(digest)`.
    async fn get_stream(&self, key: &Path, digest: &Digest, range: Option<Range<u64>>) -> Result<(ByteStream, u64)> {
        let options = GetOptions { range: range.map(GetRange::Bounded), ..Default::default() };
        match self.store.get_opts(key, options).await {
            Ok(got) => {
                let len = got.range.end - got.range.start;
                Ok((got.into_stream().map_err(std::io::Error::other).boxed(), len))
            }
            Err(object_store::Error::NotFound { .. }) => Err(Error::NotFound(digest.clone())),
            Err(e) => Err(storage(e)),
        }
    }
}

async fn abort_quietly(parts: WriteMultipart, key: &Path) {
    if let Err(e) = parts.abort().await {
        tracing::warn!(key = %key, error = %e, "could not abort a multipart upload; a lifecycle rule will reclaim its parts");
    }
}

fn storage(e: object_store::Error) -> Error {
    Error::Storage(e.to_string())
}

fn now() -> std::time::Duration {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default()
}

#[async_trait::async_trait]
impl BlobStore for S3BlobStore {
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>> {
        Ok(self.head(&self.blob_key(digest)).await?.map(|m| m.size))
    }

    async fn open(&self, digest: &Digest, range: Option<ByteRange>) -> Result<BlobBody> {
        let range = range.map(|r| r.start..r.end + 1);
        let (stream, len) = self.get_stream(&self.blob_key(digest), digest, range).await?;
        Ok(BlobBody::Stream { stream, len })
    }

    async fn put(&self, digest: &Digest, bytes: Bytes) -> Result<()> {
        let key = self.blob_key(digest);
        if self.head(&key).await?.is_some() {
            return Ok(());
        }
        self.store.put(&key, PutPayload::from_bytes(bytes)).await.map_err(storage)?;
        Ok(())
    }

    async fn delete(&self, digest: &Digest) -> Result<bool> {
        let key = self.blob_key(digest);
        if self.head(&key).await?.is_none() {
            return Ok(false);
        }
        self.store.delete(&key).await.map_err(storage)?;
        Ok(true)
    }

    async fn list(&self, after: Option<&Digest>, limit: usize) -> Result<Vec<StoredBlob>> {
        let dir = self.root.clone().join("blobs");
        let mut listed = match after {
            Some(d) => self.store.list_with_offset(Some(&dir), &self.blob_key(d)),
            None => self.store.list(Some(&dir)),
        };
        let mut found = Vec::new();
        while found.len() < limit {
            let Some(object) = listed.try_next().await.map_err(storage)? else { break };
            let mut parts = object.location.parts().rev();
            let (Some(hex), Some(algorithm)) = (parts.next(), parts.next()) else { continue };
            match format!("{}:{}", algorithm.as_ref(), hex.as_ref()).parse::<Digest>() {
                Ok(digest) => found.push(StoredBlob {
                    digest,
                    size: object.size,
                    written_at_ms: object.last_modified.timestamp_millis(),
                }),
                Err(_) => tracing::warn!(key = %object.location, "an object under blobs/ that is not named by a digest; skipped"),
            }
        }
        Ok(found)
    }

    async fn read_stored(&self, digest: &Digest) -> Result<ByteStream> {
        Ok(self.get_stream(&self.blob_key(digest), digest, None).await?.0)
    }

    async fn quarantine(&self, digest: &Digest) -> Result<Option<String>> {
        let from = self.blob_key(digest);
        let to = self
            .root
            .clone()
            .join("quarantine")
            .join(digest.algorithm().as_str())
            .join(format!("{}-{}", digest.hex(), now().as_millis()));
        match self.store.copy(&from, &to).await {
            Ok(()) => {}
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(storage(e)),
        }
        self.store.delete(&from).await.map_err(storage)?;
        Ok(Some(format!("s3://{}/{to}", self.bucket)))
    }

    async fn write_part(&self, id: &UploadId, offset: u64, body: ByteStream) -> Result<u64> {
        let key = self.upload_dir(id).join(format!("{offset:020}"));
        self.write_object(&key, body).await
    }

    async fn read_part(&self, id: &UploadId, start: u64, len: u64) -> Result<ByteStream> {
        let segments = self.segments(id).await?;
        if segments.is_empty() {
            return Err(Error::UploadNotFound(id.clone()));
        }
        Ok(self.read_pieces(Self::cover(id, &segments, start, len)?))
    }

    async fn commit(&self, id: &UploadId, len: u64, digest: &Digest) -> Result<()> {
        let segments = self.segments(id).await?;
        if segments.is_empty() && len > 0 {
            return Err(Error::UploadNotFound(id.clone()));
        }
        let key = self.blob_key(digest);
        if self.head(&key).await?.is_none() {
            let pieces = Self::cover(id, &segments, 0, len)?;
            match pieces.as_slice() {
                [] => self.store.put(&key, PutPayload::default()).await.map(drop).map_err(storage)?,
                [(from, range)] if range.start == 0 && segments[&0].0 == range.end && range.end <= COPY_LIMIT => {
                    self.store.copy(from, &key).await.map_err(storage)?
                }
                _ => {
                    let written = self.write_object(&key, self.read_pieces(pieces)).await?;
                    if written != len {
                        return Err(Error::Storage(format!("upload {id}: read {written} of its {len} bytes back")));
                    }
                }
            }
        }
        // Content-addressed: a blob already there holds the same bytes.
        self.delete_segments(segments).await
    }

    fn write_granularity(&self) -> usize {
        PART
    }

    fn stats(&self) -> Option<StoreStats> {
        Some(self.counters.stats())
    }

    async fn presign(&self, digest: &Digest) -> Result<Option<String>> {
        let Some(valid_for) = self.redirect_for else { return Ok(None) };
        let url = self.store.signed_url(Method::GET, &self.blob_key(digest), valid_for).await.map_err(storage)?;
        Ok(Some(url.to_string()))
    }

    async fn abort(&self, id: &UploadId) -> Result<()> {
        let segments = self.segments(id).await?;
        self.delete_segments(segments).await
    }
}

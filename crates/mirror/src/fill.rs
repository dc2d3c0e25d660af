//! One blob downloaded from an upstream into the store while any number of clients read it.
//!
//! The download writes the bytes into an upload part, [`FLUSH_BYTES`] at a time, hashing them on
//! the way; after each write it publishes how far the part is durable. A reader streams the part
//! up to that point, waits for more, and once the blob is committed reads the rest from the
//! committed blob. A connection that breaks mid-body is resumed with a `Range` request. When the
//! bytes are all there and match the digest, the part is committed and linked in the repository
//! (then the fill is forgotten, so later readers find the link); when the download fails, the
//! part is removed and every reader's stream ends with the error.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use blobs::{BlobBody, ByteRange, ByteStream, UploadId};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use http_body_util::BodyExt;
use oci::{Digest, DigestHasher, RepoName};
use registry::{BlobRead, Error, RangeRequest, Result};
use tokio::sync::watch;

use crate::{Mirror, Route};

/// Bytes received before they are written to the part (and readers see them), or the store's
/// [`blobs::BlobStore::write_granularity`] if more (S3: a segment object per write).
pub const FLUSH_BYTES: usize = 1 << 20;
/// Connections to the upstream tried per download (the first included) before it fails.
const TRIES: u32 = 4;

/// Why a download failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Failure {
    reason: String,
    cause: Cause,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cause {
    /// The upstream failed, or sent what it should not have.
    Upstream,
    /// The upstream does not have the blob.
    Unknown,
    /// Our own storage or records failed.
    Local,
    /// Our storage is at its reserve of free space, or full.
    NoSpace,
}

impl From<String> for Failure {
    fn from(reason: String) -> Failure {
        Failure { reason, cause: Cause::Upstream }
    }
}

impl From<remote::Error> for Failure {
    fn from(e: remote::Error) -> Failure {
        Failure { cause: if e.is_not_found() { Cause::Unknown } else { Cause::Upstream }, reason: e.to_string() }
    }
}

impl From<blobs::Error> for Failure {
    fn from(e: blobs::Error) -> Failure {
        Failure { cause: if matches!(e, blobs::Error::NoSpace(_)) { Cause::NoSpace } else { Cause::Local }, reason: e.to_string() }
    }
}

impl From<meta::Error> for Failure {
    fn from(e: meta::Error) -> Failure {
        Failure { cause: if matches!(e, meta::Error::NoSpace(_)) { Cause::NoSpace } else { Cause::Local }, reason: e.to_string() }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        Failure { cause: if matches!(e, Error::InsufficientStorage(_)) { Cause::NoSpace } else { Cause::Local }, reason: e.to_string() }
    }
}

impl Failure {
    /// Whether the upstream is to blame (for the upstream error count).
    fn upstream(&self) -> bool {
        matches!(self.cause, Cause::Upstream | Cause::Unknown)
    }

    fn error(&self, digest: &Digest) -> Error {
        let reason = &self.reason;
        match self.cause {
            Cause::Unknown => Error::BlobUnknown(digest.clone()),
            Cause::Upstream => Error::Upstream(format!("downloading {digest} failed: {reason}")),
            Cause::Local => Error::Unavailable(format!("storing {digest} from the upstream failed: {reason}")),
            Cause::NoSpace => Error::InsufficientStorage(format!("{digest} is not stored yet and cannot be: {reason}")),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Progress {
    /// The size is not known yet.
    Starting,
    /// `written` bytes of `size` are durable in the part.
    Running { size: u64, written: u64 },
    /// Committed and linked.
    Done { size: u64 },
    Failed(Failure),
}

pub(crate) struct Fill {
    upload: UploadId,
    progress: watch::Receiver<Progress>,
}

impl Mirror {
    /// Blob `digest` of `repo` for a client: joined to a download under way, read from the
    /// records, or downloaded.
    pub async fn blob(self: &Arc<Self>, route: &Route, repo: &RepoName, digest: &Digest, range: Option<RangeRequest>) -> Result<BlobRead> {
        let fill = match self.running_fill(repo, digest) {
            Some(fill) => fill,
            None => match self.registry.get_blob(repo, digest, range).await {
                Err(Error::BlobUnknown(_)) => self.fill(route, repo, digest, None),
                done => return done,
            },
        };
        fill.read(self, digest, range).await
    }

    /// The size of blob `digest` of `repo` (for HEAD): from the records, else from its download.
    pub async fn stat_blob(self: &Arc<Self>, route: &Route, repo: &RepoName, digest: &Digest) -> Result<u64> {
        let fill = match self.running_fill(repo, digest) {
            Some(fill) => fill,
            None => match self.registry.stat_blob(repo, digest).await {
                Err(Error::BlobUnknown(_)) => self.fill(route, repo, digest, None),
                known => return known,
            },
        };
        fill.size(digest).await
    }

    fn running_fill(&self, repo: &RepoName, digest: &Digest) -> Option<Arc<Fill>> {
        let fill = self.fills.lock().unwrap_or_else(|p| p.into_inner()).get(&(repo.clone(), digest.clone())).cloned();
        if fill.is_some() {
            self.stats.joined.fetch_add(1, Ordering::Relaxed);
        }
        fill
    }

    /// The download of `digest` into `repo`: the one under way, or a new one. `declared`: the
    /// size a manifest gives it.
    pub(crate) fn fill(self: &Arc<Self>, route: &Route, repo: &RepoName, digest: &Digest, declared: Option<u64>) -> Arc<Fill> {
        let key = (repo.clone(), digest.clone());
        let mut fills = self.fills.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(fill) = fills.get(&key) {
            self.stats.joined.fetch_add(1, Ordering::Relaxed);
            return fill.clone();
        }
        let upload = UploadId::new(&format!("mirror-{}", uuid::Uuid::new_v4())).expect("a uuid is a valid upload id");
        let (tx, progress) = watch::channel(Progress::Starting);
        let fill = Arc::new(Fill { upload: upload.clone(), progress });
        fills.insert(key.clone(), fill.clone());
        drop(fills);
        let (mirror, route, digest) = (self.clone(), route.clone(), digest.clone());
        tokio::spawn(async move {
            let outcome = mirror.download(&route, &key.0, &digest, declared, &upload, &tx).await;
            match outcome {
                Ok(size) => {
                    tx.send_replace(Progress::Done { size });
                }
                Err(failure) => {
                    if failure.upstream() {
                        mirror.stats.upstream_errors.fetch_add(1, Ordering::Relaxed);
                    }
                    tracing::warn!(upstream = route.upstream(), repo = %key.0, %digest, reason = %failure.reason, "blob download failed");
                    if let Err(e) = mirror.blobs.abort(&upload).await {
                        tracing::warn!(%upload, error = %e, "removing a failed download's part failed");
                    }
                    tx.send_replace(Progress::Failed(failure));
                }
            }
            mirror.fills.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
        });
        fill
    }

    /// Downloads, verifies, commits and links the blob; its size.
    async fn download(
        &self,
        route: &Route,
        repo: &RepoName,
        digest: &Digest,
        declared: Option<u64>,
        upload: &UploadId,
        tx: &watch::Sender<Progress>,
    ) -> Result<u64, Failure> {
        // A download that ended between the caller's look at the records and this one.
        if let Some(size) = self.meta.linked_blob(repo, digest).await? {
            return Ok(size);
        }
        // Bytes another repository already holds need only the upstream's word that this
        // repository has them too (a manifest naming them, or a HEAD).
        if self.blobs.stat(digest).await?.is_some() {
            if declared.is_none() {
                let image = route.image();
                let path = format!("/v2/{}/blobs/{digest}", image.repository);
                route.upstream.client.request(http::Method::HEAD, &image, &path, http::HeaderMap::new()).await?;
            }
            // Looked at again under the guard: an eviction may have deleted them since.
            let held = self.registry.hold_bytes(&[digest]).await?;
            if let Some(size) = self.blobs.stat(digest).await? {
                if declared.is_some_and(|d| d != size) {
                    return Err(format!("the manifest gives {digest} {} bytes, the stored blob has {size}", declared.unwrap_or(0)).into());
                }
                self.meta.link_blob(repo, digest, size).await?;
                self.registry.release_bytes(held).await?;
                return Ok(size);
            }
        }
        // Nothing is fetched that could not be stored.
        if let Some(space) = self.blobs.space() {
            space.check()?;
        }
        let image = route.image();
        let mut hasher = DigestHasher::new(digest.algorithm());
        let (mut written, mut published) = (0u64, 0u64);
        let flush_at = FLUSH_BYTES.max(self.blobs.write_granularity());
        let mut size = declared;
        let mut tries = 0;
        'connection: loop {
            tries += 1;
            self.stats.upstream_blob_gets.fetch_add(1, Ordering::Relaxed);
            let download = match route.upstream.client.blob_from(&image, &digest.to_string(), written).await {
                Ok(d) => d,
                Err(e) if tries < TRIES && !e.is_not_found() && !matches!(e, remote::Error::Auth { .. }) => {
                    tracing::debug!(%digest, error = %e, "blob download: trying again");
                    tokio::time::sleep(Duration::from_millis(200 << tries)).await;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            if download.offset != written {
                // The upstream ignored the range: start over (the part is overwritten with the
                // same bytes, so what readers already have stays right).
                written = 0;
                hasher = DigestHasher::new(digest.algorithm());
            }
            match (size, download.size) {
                (Some(a), Some(b)) if a != b => return Err(format!("the upstream sends {b} bytes for {digest}, the manifest says {a}").into()),
                (None, b) => size = b,
                _ => {}
            }
            if let Some(size) = size {
                tx.send_replace(Progress::Running { size, written: published });
            }
            let mut body = download.body;
            let mut buf = BytesMut::new();
            loop {
                let frame = match body.frame().await {
                    None => break,
                    Some(Ok(frame)) => frame,
                    Some(Err(e)) => {
                        self.flush(upload, &mut written, &mut buf).await?;
                        if tries >= TRIES {
                            return Err(format!("the upstream's body broke off at {written} bytes: {e}").into());
                        }
                        tracing::debug!(%digest, written, error = %e, "blob download broke off: resuming");
                        continue 'connection;
                    }
                };
                let Ok(data) = frame.into_data() else { continue };
                let total = written + (buf.len() + data.len()) as u64;
                if size.is_some_and(|s| total > s) {
                    return Err(format!("the upstream sends more than the {} bytes of {digest}", size.unwrap_or(0)).into());
                }
                hasher.update(&data);
                buf.extend_from_slice(&data);
                if buf.len() >= flush_at {
                    self.flush(upload, &mut written, &mut buf).await?;
                    if let Some(size) = size.filter(|_| written > published) {
                        published = written;
                        tx.send_replace(Progress::Running { size, written });
                    }
                }
            }
            self.flush(upload, &mut written, &mut buf).await?;
            break;
        }
        if size.is_some_and(|s| s != written) {
            return Err(format!("the upstream sent {written} of the {} bytes of {digest}", size.unwrap_or(0)).into());
        }
        let actual = hasher.finish();
        if actual != *digest {
            return Err(format!("the upstream sent bytes whose digest is {actual}, not {digest}").into());
        }
        let held = self.registry.hold_bytes(&[digest]).await?;
        self.blobs.commit(upload, written, digest).await?;
        self.meta.link_blob(repo, digest, written).await?;
        self.registry.release_bytes(held).await?;
        Ok(written)
    }

    async fn flush(&self, upload: &UploadId, written: &mut u64, buf: &mut BytesMut) -> Result<(), Failure> {
        if buf.is_empty() {
            return Ok(());
        }
        let chunk: Bytes = buf.split().freeze();
        let len = chunk.len() as u64;
        let body: ByteStream = Box::pin(futures::stream::once(async move { Ok(chunk) }));
        self.blobs.write_part(upload, *written, body).await?;
        *written += len;
        Ok(())
    }

}

impl Fill {
    /// The first state `reached` accepts, or the last one when the download's task is gone.
    async fn until(&self, reached: impl Fn(&Progress) -> bool) -> Progress {
        let mut progress = self.progress.clone();
        match progress.wait_for(|p| reached(p)).await {
            Ok(state) => state.clone(),
            Err(_) => self.progress.borrow().clone(),
        }
    }

    /// Waits until the blob's size is known.
    pub(crate) async fn size(&self, digest: &Digest) -> Result<u64> {
        match self.until(|p| !matches!(p, Progress::Starting)).await {
            Progress::Running { size, .. } | Progress::Done { size } => Ok(size),
            Progress::Failed(failure) => Err(failure.error(digest)),
            Progress::Starting => Err(Error::Upstream(format!("the download of {digest} ended without a word"))),
        }
    }

    /// Waits until the blob is committed and linked; its size.
    pub(crate) async fn done(&self, digest: &Digest) -> Result<u64> {
        match self.until(|p| matches!(p, Progress::Done { .. } | Progress::Failed(_))).await {
            Progress::Done { size } => Ok(size),
            Progress::Failed(failure) => Err(failure.error(digest)),
            _ => Err(Error::Upstream(format!("the download of {digest} ended without finishing"))),
        }
    }

    /// The blob, or `range` of it, streamed as it arrives.
    async fn read(&self, mirror: &Mirror, digest: &Digest, range: Option<RangeRequest>) -> Result<BlobRead> {
        let size = self.size(digest).await?;
        let range = match range {
            None => None,
            Some(r) => Some(r.resolve(size).ok_or(Error::RangeNotSatisfiable { size })?),
        };
        let (start, end) = range.map_or((0, size), |r: ByteRange| (r.start, r.end + 1));
        let reader = Reader {
            blobs: mirror.blobs.clone(),
            upload: self.upload.clone(),
            digest: digest.clone(),
            progress: self.progress.clone(),
            pos: start,
            end,
            inner: None,
            over: false,
        };
        let stream = futures::stream::unfold(reader, |mut r| async move { r.next().await.map(|item| (item, r)) });
        Ok(BlobRead { size, range, body: BlobBody::Stream { stream: Box::pin(stream), len: end - start } })
    }
}

/// One client's read of a blob being downloaded.
struct Reader {
    blobs: blobs::Blobs,
    upload: UploadId,
    digest: Digest,
    progress: watch::Receiver<Progress>,
    pos: u64,
    end: u64,
    inner: Option<ByteStream>,
    over: bool,
}

impl Reader {
    async fn next(&mut self) -> Option<std::io::Result<Bytes>> {
        if self.over {
            return None;
        }
        let item = self.advance().await;
        if !matches!(item, Some(Ok(_))) {
            self.over = true;
        }
        item
    }

    async fn advance(&mut self) -> Option<std::io::Result<Bytes>> {
        loop {
            if let Some(inner) = &mut self.inner {
                match inner.next().await {
                    Some(Ok(chunk)) => {
                        let chunk = chunk.slice(..chunk.len().min((self.end - self.pos) as usize));
                        self.pos += chunk.len() as u64;
                        return Some(Ok(chunk));
                    }
                    Some(Err(e)) => return Some(Err(e)),
                    None => self.inner = None,
                }
            }
            if self.pos >= self.end {
                return None;
            }
            let state = self.progress.borrow_and_update().clone();
            match state {
                Progress::Done { .. } => {
                    let range = ByteRange { start: self.pos, end: self.end - 1 };
                    match self.blobs.open(&self.digest, Some(range)).await {
                        Ok(BlobBody::Stream { stream, .. }) => self.inner = Some(stream),
                        Ok(BlobBody::Redirect(_)) => return Some(Err(std::io::Error::other("the stored blob is behind a redirect"))),
                        Err(e) => return Some(Err(std::io::Error::other(e.to_string()))),
                    }
                }
                Progress::Running { written, .. } if written > self.pos => {
                    let len = written.min(self.end) - self.pos;
                    match self.blobs.read_part(&self.upload, self.pos, len).await {
                        Ok(stream) => self.inner = Some(stream),
                        // Committed (or removed) since: the next state says which.
                        Err(blobs::Error::UploadNotFound(_)) => {
                            if self.progress.changed().await.is_err() && !matches!(*self.progress.borrow(), Progress::Done { .. }) {
                                return Some(Err(std::io::Error::other("the download ended")));
                            }
                        }
                        Err(e) => return Some(Err(std::io::Error::other(e.to_string()))),
                    }
                }
                Progress::Failed(failure) => {
                    return Some(Err(std::io::Error::other(format!("the download failed: {}", failure.reason))));
                }
                Progress::Starting | Progress::Running { .. } => {
                    if self.progress.changed().await.is_err() {
                        // The download's task is gone; its last word stands.
                        let last = self.progress.borrow().clone();
                        if !matches!(last, Progress::Done { .. } | Progress::Failed(_)) {
                            return Some(Err(std::io::Error::other("the download ended without finishing")));
                        }
                    }
                }
            }
        }
    }
}

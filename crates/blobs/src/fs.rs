//! The filesystem adapter: `blobs/<alg>/<2 hex>/<hex>` for committed blobs, `uploads/<id>` for
//! upload parts, `tmp/` for whole puts, `quarantine/<alg>-<hex>-<ms>` for blobs found damaged.
//!
//! Durability: part writes (`parts`) are `fdatasync`ed before they return; a commit syncs the
//! part, renames it to its digest path (atomic on POSIX) and syncs the directory, so a crash leaves
//! either no blob or the whole blob under a digest, never a prefix.

use std::io::{self, Write as _};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use bytes::{Bytes, BytesMut};
use futures::{StreamExt, stream};
use oci::Digest;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::aligned::AlignedBuf;
use crate::parts::{self, PartWrites};
use crate::space::{self, Space};
use crate::regions::{MappedRegions, RegionGuard};
use crate::{BlobBody, BlobStore, ByteRange, ByteStream, Error, Result, StoredBlob, UploadId};

/// Blobs smaller than this are read into memory; larger ones are memory-mapped.
const MAP_THRESHOLD: u64 = 256 * 1024;
/// Reads of upload parts ([`BlobStore::read_part`]) go in pieces of this size.
const PART_CHUNK: usize = 256 << 10;
/// Size of the memory-mapped windows a large blob is served in.
const READ_WINDOW: usize = 1 << 20;
/// Bytes in one read of [`BlobStore::read_stored`].
const CHECK_BLOCK: usize = 1 << 20;

pub struct FsBlobStore {
    root: PathBuf,
    regions: Arc<MappedRegions>,
    maps: SharedMaps,
    part_writes: PartWrites,
    /// Free bytes that writes leave alone ([`Space`]).
    reserve: u64,
    /// Names temporary files apart, so two puts of one digest at once never share one.
    tmp_seq: std::sync::atomic::AtomicU64,
}

impl FsBlobStore {
    /// Opens (creating if needed) a store under `root`, and checks that it is writable.
    pub fn open(root: &Path) -> io::Result<FsBlobStore> {
        for dir in ["blobs", "uploads", "tmp"] {
            std::fs::create_dir_all(root.join(dir))?;
        }
        let probe = root.join("tmp").join(".write-probe");
        std::fs::write(&probe, b"ok")?;
        std::fs::remove_file(&probe)?;
        let part_writes = PartWrites::probe(&root.join("uploads"));
        let maps = SharedMaps::default();
        let tmp_seq = Default::default();
        Ok(FsBlobStore { root: root.to_owned(), regions: MappedRegions::new(), maps, part_writes, reserve: 0, tmp_seq })
    }

    /// How upload parts are written: direct I/O when the filesystem takes it.
    pub fn part_writes(&self) -> PartWrites {
        self.part_writes
    }

    /// The same store, writing parts `how` (tests run both ways on one filesystem).
    pub fn with_part_writes(self, how: PartWrites) -> FsBlobStore {
        FsBlobStore { part_writes: how, ..self }
    }

    /// The same store, refusing new upload bytes once the filesystem has only `bytes` free.
    pub fn with_reserve(self, bytes: u64) -> FsBlobStore {
        FsBlobStore { reserve: bytes, ..self }
    }

    /// The windows this store has mapped, for connections that send them with sendfile.
    pub fn mapped_regions(&self) -> Arc<MappedRegions> {
        self.regions.clone()
    }

    fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs").join(d.algorithm().as_str()).join(&d.hex()[..2]).join(d.hex())
    }

    fn upload_path(&self, id: &UploadId) -> PathBuf {
        self.root.join("uploads").join(id.as_str())
    }

    /// Moves `from` (synced) to `digest`'s path atomically, and syncs the directory.
    async fn publish(&self, from: PathBuf, digest: &Digest) -> Result<()> {
        let to = self.blob_path(digest);
        blocking(move || -> io::Result<()> {
            let dir = to.parent().expect("blob paths have a parent");
            std::fs::create_dir_all(dir)?;
            std::fs::rename(&from, &to)?;
            std::fs::File::open(dir)?.sync_all()
        })
        .await
    }
}

#[async_trait::async_trait]
impl BlobStore for FsBlobStore {
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>> {
        match tokio::fs::metadata(self.blob_path(digest)).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(storage(e)),
        }
    }

    async fn open(&self, digest: &Digest, range: Option<ByteRange>) -> Result<BlobBody> {
        let path = self.blob_path(digest);
        let file = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(Error::NotFound(digest.clone())),
            Err(e) => return Err(storage(e)),
        };
        let size = file.metadata().await.map_err(storage)?.len();
        let range = match range {
            Some(r) if r.end < size => r,
            Some(_) => return Err(Error::Storage(format!("range beyond the end of {digest}"))),
            None if size == 0 => return Ok(BlobBody::Stream { stream: stream::empty().boxed(), len: 0 }),
            None => ByteRange { start: 0, end: size - 1 },
        };
        let len = range.len();
        if len <= MAP_THRESHOLD {
            let mut file = file;
            file.seek(io::SeekFrom::Start(range.start)).await.map_err(storage)?;
            let mut buf = vec![0; len as usize];
            file.read_exact(&mut buf).await.map_err(storage)?;
            return Ok(BlobBody::Stream { stream: stream::once(async { Ok(Bytes::from(buf)) }).boxed(), len });
        }
        let file = file.into_std().await;
        let map = self.maps.get_or_map(digest, file, &self.regions).map_err(storage)?;
        Ok(BlobBody::Stream { stream: windows(map, range), len })
    }

    async fn put(&self, digest: &Digest, bytes: Bytes) -> Result<()> {
        if self.stat(digest).await?.is_some() {
            return Ok(());
        }
        let seq = self.tmp_seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = self.root.join("tmp").join(format!("{}-{}-{seq}", digest.hex(), std::process::id()));
        let path = tmp.clone();
        blocking(move || -> io::Result<()> {
            let mut f = std::fs::File::create(&path)?;
            f.write_all(&bytes)?;
            f.sync_data()
        })
        .await?;
        self.publish(tmp, digest).await
    }

    async fn delete(&self, digest: &Digest) -> Result<bool> {
        match tokio::fs::remove_file(self.blob_path(digest)).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(storage(e)),
        }
    }

    async fn list(&self, after: Option<&Digest>, limit: usize) -> Result<Vec<StoredBlob>> {
        let root = self.root.join("blobs");
        let after = after.map(Digest::to_string);
        blocking(move || list_blobs(&root, after.as_deref(), limit)).await
    }

    async fn read_stored(&self, digest: &Digest) -> Result<ByteStream> {
        let (path, mode) = (self.blob_path(digest), self.part_writes);
        let opened = blocking(move || match parts::open_read(&path, mode) {
            Ok(f) => Ok(Some((f.metadata()?.len(), f))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        });
        let (size, file) = opened.await?.ok_or_else(|| Error::NotFound(digest.clone()))?;
        Ok(direct_reader(file, size))
    }

    async fn quarantine(&self, digest: &Digest) -> Result<Option<String>> {
        let from = self.blob_path(digest);
        let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis();
        let to = self.root.join("quarantine").join(format!("{}-{}-{stamp}", digest.algorithm().as_str(), digest.hex()));
        let moved = blocking(move || -> io::Result<Option<String>> {
            let dir = to.parent().expect("quarantine paths have a parent");
            std::fs::create_dir_all(dir)?;
            match std::fs::rename(&from, &to) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            }
            std::fs::File::open(dir)?.sync_all()?;
            std::fs::File::open(from.parent().expect("blob paths have a parent"))?.sync_all()?;
            Ok(Some(to.display().to_string()))
        })
        .await?;
        // Reads already under way keep their map; a later read of good bytes must not share it.
        self.maps.forget(digest);
        Ok(moved)
    }

    async fn write_part(&self, id: &UploadId, offset: u64, body: ByteStream) -> Result<u64> {
        let room = || Space::of(&self.root, self.reserve).map_err(storage)?.check();
        parts::write(&self.upload_path(id), offset, body, self.part_writes, &room).await
    }

    async fn read_part(&self, id: &UploadId, start: u64, len: u64) -> Result<ByteStream> {
        let mut file = match tokio::fs::File::open(self.upload_path(id)).await {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(Error::UploadNotFound(id.clone())),
            Err(e) => return Err(storage(e)),
        };
        if start > 0 {
            file.seek(io::SeekFrom::Start(start)).await.map_err(storage)?;
        }
        // Smaller pieces than whole-blob reads: a mirror's every waiter reads a part at once, so
        // memory is readers × this.
        Ok(chunked_reader(file.take(len), PART_CHUNK))
    }

    async fn commit(&self, id: &UploadId, len: u64, digest: &Digest) -> Result<()> {
        let part = self.upload_path(id);
        let exists = self.stat(digest).await?.is_some();
        let path = part.clone();
        blocking(move || -> io::Result<bool> {
            let f = match std::fs::OpenOptions::new().write(true).open(&path) {
                Ok(f) => f,
                // A zero-byte upload that never wrote a part.
                Err(e) if e.kind() == io::ErrorKind::NotFound && len == 0 => {
                    std::fs::File::create(&path)?
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(e),
            };
            f.set_len(len)?;
            f.sync_all()?;
            Ok(true)
        })
        .await?
        .then_some(())
        .ok_or_else(|| Error::UploadNotFound(id.clone()))?;
        if exists {
            // Content-addressed: the committed copy holds the same bytes.
            return self.abort(id).await;
        }
        self.publish(part, digest).await
    }

    async fn abort(&self, id: &UploadId) -> Result<()> {
        match tokio::fs::remove_file(self.upload_path(id)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(storage(e)),
        }
    }

    fn space(&self) -> Option<Space> {
        Space::of(&self.root, self.reserve).ok()
    }
}

/// Whole-blob maps, one per blob while any read of it is in progress, shared by those reads.
///
/// Mapping is cheap and faults nothing in: a connection that sends the windows with sendfile never
/// makes a page resident. A connection that copies them (a peer on this host, TLS) faults pages in
/// once per map rather than once per read, which is what a herd of pulls of one layer costs; they
/// stay resident until the last read of that blob ends and the map is dropped.
#[derive(Default)]
struct SharedMaps {
    live: Mutex<HashMap<Digest, Weak<BlobMap>>>,
}

impl SharedMaps {
    /// The live map of `digest`, or a new one of `file` (a committed blob of at least one byte).
    fn get_or_map(&self, digest: &Digest, file: std::fs::File, regions: &Arc<MappedRegions>) -> io::Result<Bytes> {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(map) = live.get(digest).and_then(Weak::upgrade) {
            return Ok(Bytes::from_owner(SharedWindow(map)));
        }
        let file = Arc::new(file);
        // SAFETY: a committed blob file is never written or truncated again: commits rename a
        // finished file into place and deletes unlink it, which leaves existing maps intact. So
        // the mapped bytes cannot change or vanish under the map. Content addressing makes a
        // live map of a since-deleted file hold the same bytes as any later copy of the blob.
        let map = unsafe { memmap2::Mmap::map(&*file)? };
        let guard = regions.register(&map, file, 0);
        let map = Arc::new(BlobMap { _guard: guard, map });
        live.retain(|_, m| m.strong_count() > 0);
        live.insert(digest.clone(), Arc::downgrade(&map));
        Ok(Bytes::from_owner(SharedWindow(map)))
    }
}

impl SharedMaps {
    /// Stops sharing `digest`'s live map with later reads (its bytes were found damaged).
    fn forget(&self, digest: &Digest) {
        self.live.lock().unwrap_or_else(|p| p.into_inner()).remove(digest);
    }
}

/// A mapped blob; the guard is declared first so it unregisters before the map is unmapped.
struct BlobMap {
    _guard: RegionGuard,
    map: memmap2::Mmap,
}

struct SharedWindow(Arc<BlobMap>);

impl AsRef<[u8]> for SharedWindow {
    fn as_ref(&self) -> &[u8] {
        &self.0.map
    }
}

/// Streams `range` of a mapped blob as slices of at most `READ_WINDOW` bytes.
/// The walk behind [`FsBlobStore::list`] over `blobs/<algorithm>/<2 hex>/<hex>`: each level
/// sorted, so digests come in the order of their strings (algorithm names are all six letters),
/// and directories wholly before `after` are not read. A name that is no digest is passed over.
fn list_blobs(root: &Path, after: Option<&str>, limit: usize) -> io::Result<Vec<StoredBlob>> {
    let (after_algorithm, after_hex) = after.and_then(|a| a.split_once(':')).unwrap_or(("", ""));
    let mut found = Vec::new();
    for algorithm in sorted_names(root)? {
        if algorithm.as_str() < after_algorithm {
            continue;
        }
        let same_algorithm = algorithm == after_algorithm;
        for prefix in sorted_names(&root.join(&algorithm))? {
            if same_algorithm && prefix.as_str() < after_hex.get(..2).unwrap_or("") {
                continue;
            }
            let dir = root.join(&algorithm).join(&prefix);
            for hex in sorted_names(&dir)? {
                let name = format!("{algorithm}:{hex}");
                if after.is_some_and(|a| name.as_str() <= a) {
                    continue;
                }
                let Ok(digest) = name.parse::<Digest>() else { continue };
                let meta = match std::fs::metadata(dir.join(&hex)) {
                    Ok(m) => m,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue, // deleted meanwhile
                    Err(e) => return Err(e),
                };
                let written = meta.modified()?.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
                found.push(StoredBlob { digest, size: meta.len(), written_at_ms: written.as_millis() as i64 });
                if found.len() == limit {
                    return Ok(found);
                }
            }
        }
    }
    Ok(found)
}

/// The UTF-8 names in `dir`, sorted; none if it does not exist.
fn sorted_names(dir: &Path) -> io::Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut names = Vec::new();
    for entry in entries {
        if let Ok(name) = entry?.file_name().into_string() {
            names.push(name);
        }
    }
    names.sort_unstable();
    Ok(names)
}

fn windows(map: Bytes, range: ByteRange) -> ByteStream {
    let end = range.end + 1;
    let starts = (range.start..end).step_by(READ_WINDOW);
    stream::iter(starts.map(move |at| Ok(map.slice(at as usize..end.min(at + READ_WINDOW as u64) as usize)))).boxed()
}

/// Streams a file's `size` bytes in blocks of [`CHECK_BLOCK`], each read on the blocking pool.
fn direct_reader(file: std::fs::File, size: u64) -> ByteStream {
    let file = Arc::new(file);
    stream::unfold(Some(0u64), move |at| {
        let file = file.clone();
        async move {
            let at = at.filter(|at| *at < size)?;
            let len = (size - at).min(CHECK_BLOCK as u64) as usize;
            let read = blocking(move || {
                let mut buf = AlignedBuf::new(CHECK_BLOCK);
                buf.fill_from(&file, at, len).map(|()| buf)
            });
            match read.await {
                Ok(buf) => Some((Ok(Bytes::from_owner(buf)), Some(at + len as u64))),
                Err(e) => Some((Err(io::Error::other(e.to_string())), None)),
            }
        }
    })
    .boxed()
}

/// Streams an async reader in `chunk`-sized pieces.
fn chunked_reader<R: tokio::io::AsyncRead + Unpin + Send + 'static>(reader: R, chunk: usize) -> ByteStream {
    stream::unfold(reader, move |mut r| async move {
        let mut buf = BytesMut::zeroed(chunk);
        match r.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(buf.freeze()), r))
            }
            Err(e) => Some((Err(e), r)),
        }
    })
    .boxed()
}

pub(crate) fn storage(e: io::Error) -> Error {
    if space::is_full(&e) {
        return Error::NoSpace(format!("the registry's storage is full: {e}"));
    }
    Error::Storage(e.to_string())
}

/// Runs file I/O on the blocking pool; its failure, or the pool's, is a storage error.
pub(crate) async fn blocking<T: Send + 'static>(io: impl FnOnce() -> io::Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(io).await.map_err(|e| Error::Storage(e.to_string()))?.map_err(storage)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn passes_the_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::open(dir.path()).unwrap();
        crate::conformance::run(&store).await;
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::open(dir.path()).unwrap().with_part_writes(PartWrites::Buffered);
        crate::conformance::run(&store).await;
    }

    #[tokio::test]
    async fn mapped_windows_are_registered_while_alive() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::open(dir.path()).unwrap();
        let data: Vec<u8> = (0..3 * READ_WINDOW + 5000).map(|i| (i % 253) as u8).collect();
        let d = Digest::sha256_of(&data);
        store.put(&d, Bytes::from(data.clone())).await.unwrap();
        let regions = store.mapped_regions();
        let range = ByteRange { start: 1000, end: data.len() as u64 - 1 };
        let BlobBody::Stream { stream, .. } = store.open(&d, Some(range)).await.unwrap() else { panic!("a stream") };
        let windows: Vec<Bytes> = futures::TryStreamExt::try_collect(stream).await.unwrap();
        assert_eq!(windows.len(), 4);
        let mut at = 1000u64;
        for w in &windows {
            let slice = regions.lookup(w).expect("a live window is registered");
            assert_eq!(slice.offset, at, "the registered offset is the window's place in the file");
            let inner = regions.lookup(&w[10..20]).unwrap();
            assert_eq!(inner.offset, at + 10);
            assert_eq!(&w[..], &data[at as usize..at as usize + w.len()]);
            at += w.len() as u64;
        }
        assert!(regions.lookup(&data[..10]).is_none(), "other memory is not a window");
        let probe = windows[0].clone();
        drop(windows);
        assert!(regions.lookup(&probe).is_some(), "still alive through another handle");
        let (ptr, len) = (probe.as_ptr() as usize, probe.len());
        drop(probe);
        assert!(regions.lookup_addr(ptr, len).is_none(), "dropped windows are unregistered");
    }

    /// A blob damaged in place while a read maps it: once quarantined and written again, a new
    /// read must get the new bytes, not the damaged file's live map.
    #[tokio::test]
    async fn a_quarantined_blob_map_is_not_shared_with_later_reads() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::open(dir.path()).unwrap();
        let good: Vec<u8> = (0..2 * READ_WINDOW).map(|i| (i % 241) as u8).collect();
        let d = Digest::sha256_of(&good);
        store.put(&d, Bytes::from(good.clone())).await.unwrap();
        let BlobBody::Stream { stream: held, .. } = store.open(&d, None).await.unwrap() else { panic!() };
        std::fs::OpenOptions::new().write(true).open(store.blob_path(&d)).unwrap().write_all(&[0xff; 4096]).unwrap();
        assert!(store.quarantine(&d).await.unwrap().is_some());
        store.put(&d, Bytes::from(good.clone())).await.unwrap();
        let BlobBody::Stream { stream, .. } = store.open(&d, None).await.unwrap() else { panic!() };
        let read: Vec<Bytes> = futures::TryStreamExt::try_collect(stream).await.unwrap();
        assert_eq!(read.concat(), good, "the new copy, not the damaged map");
        drop(held);
    }

    #[tokio::test]
    async fn reads_of_one_blob_share_one_map_while_any_is_alive() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::open(dir.path()).unwrap();
        let (a, b): (Vec<u8>, Vec<u8>) = ((0..2 * READ_WINDOW).map(|i| i as u8).collect(), vec![7; 300_000]);
        let (da, db) = (Digest::sha256_of(&a), Digest::sha256_of(&b));
        store.put(&da, Bytes::from(a.clone())).await.unwrap();
        store.put(&db, Bytes::from(b)).await.unwrap();
        let first = |d: Digest, range| {
            let store = &store;
            async move {
                let BlobBody::Stream { mut stream, .. } = store.open(&d, range).await.unwrap() else { panic!() };
                stream.next().await.unwrap().unwrap()
            }
        };
        let one = first(da.clone(), None).await;
        let two = first(da.clone(), Some(ByteRange { start: 4096, end: 999_999 })).await;
        assert_eq!(two.as_ptr() as usize, one.as_ptr() as usize + 4096, "a second read slices the same map");
        assert_eq!(&two[..], &a[4096..1_000_000]);
        let other = first(db, None).await;
        let other_at = other.as_ptr() as usize;
        assert!(other_at < one.as_ptr() as usize || other_at >= one.as_ptr() as usize + a.len(), "one map per blob");
        assert_eq!(store.maps.live.lock().unwrap().len(), 2);

        let (at, len) = (one.as_ptr() as usize, one.len());
        drop((one, two));
        assert!(store.mapped_regions().lookup_addr(at, len).is_none(), "the last read's end unmaps the blob");
        let again = first(da, None).await;
        assert_eq!(&again[..], &a[..READ_WINDOW], "a later read maps the blob anew");
        assert_eq!(store.maps.live.lock().unwrap().len(), 2, "dead entries are pruned as maps are made");
    }

    #[test]
    fn refuses_an_unwritable_root() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, b"x").unwrap();
        assert!(FsBlobStore::open(&file).is_err());
    }

    /// A store at its reserve refuses upload bytes before taking any, and says so; with the
    /// reserve lifted, the same session takes them.
    #[tokio::test]
    async fn a_store_at_its_reserve_refuses_new_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let free = FsBlobStore::open(dir.path()).unwrap().space().unwrap().free;
        let full = FsBlobStore::open(dir.path()).unwrap().with_reserve(free + (1 << 30));
        let space = full.space().unwrap();
        assert_eq!((space.reserve, space.available()), (free + (1 << 30), 0));
        let id = UploadId::new("at-the-reserve").unwrap();
        let body = || stream::iter([Ok(Bytes::from_static(b"some bytes"))]).boxed();
        let refused = full.write_part(&id, 0, body()).await;
        let Err(Error::NoSpace(message)) = refused else { panic!("refused for want of space: {refused:?}") };
        assert!(message.contains("nearly full"), "{message}");
        assert!(!dir.path().join("uploads").join(id.as_str()).exists(), "nothing of it was kept");

        let roomy = FsBlobStore::open(dir.path()).unwrap();
        assert_eq!(roomy.write_part(&id, 0, body()).await.unwrap(), 10);
    }
}

//! Writing upload parts: received bytes go to the part file in aligned blocks, with `O_DIRECT`
//! where the filesystem takes it.
//!
//! Why direct I/O: a part is written once and `fdatasync`ed before the client hears back. Through
//! the page cache that costs a copy into fresh cache pages and then the kernel's writeback of
//! every page, which on a 2-core machine took as much CPU as receiving and hashing the bytes
//! (bench/RESULTS.md, "Push"). With `O_DIRECT` the device reads the bytes straight from this
//! buffer, and the final `fdatasync` only has the file's size and the device cache left to flush.
//! The cost: a freshly pushed blob is not in the page cache, so its first read goes to disk.
//!
//! Direct I/O wants the buffer, the file offset and the length aligned to the device's block.
//! [`ALIGN`] (4 KiB) covers every block size in use. So a part is always written from an
//! [`ALIGN`]-aligned file offset:
//! - a write that starts mid-block (a chunk after a chunk of odd length) first reads the block's
//!   earlier bytes back from the file and writes them again with the new ones;
//! - the last block is padded with zeros and the file then truncated to the bytes received.
//!
//! The same path runs without `O_DIRECT` ([`PartWrites::Buffered`]) on filesystems that refuse it.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use bytes::Bytes;
use futures::StreamExt;

use crate::aligned::{ALIGN, AlignedBuf};
use crate::fs::{blocking, storage};
use crate::{ByteStream, Error, Result};

/// How upload parts reach the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartWrites {
    /// `O_DIRECT` from aligned buffers: no page-cache copy, no writeback afterwards.
    Direct,
    /// Through the page cache, for filesystems that refuse `O_DIRECT`.
    Buffered,
}

/// Bytes in one write; two buffers of this size are held per part being written.
const BLOCK: usize = 1 << 20;

impl PartWrites {
    /// Whether `dir`'s filesystem takes direct writes: writes one aligned block there and removes it.
    pub(crate) fn probe(dir: &Path) -> PartWrites {
        let path = dir.join(".direct-probe");
        let works = (|| -> io::Result<()> {
            let file = open(&path, PartWrites::Direct)?;
            let mut buf = AlignedBuf::new(ALIGN);
            buf.extend(&[0; ALIGN]);
            file.write_all_at(buf.block(), 0)?;
            file.sync_data()
        })()
        .is_ok();
        let _ = std::fs::remove_file(&path);
        if works { PartWrites::Direct } else { PartWrites::Buffered }
    }
}

/// Bytes received between two asks of `room` (a `statvfs`, about a microsecond).
const ROOM_EVERY: u64 = 16 << 20;

/// Writes `body` into the part file at `path` from `offset`, syncs it, and returns the bytes
/// written. The file is left exactly `offset + written` long. Bytes before `offset` must be on
/// disk already (the session's earlier chunks).
///
/// `room` is asked before the first byte and every [`ROOM_EVERY`] bytes after; once it refuses,
/// or the disk is full, the write stops with [`Error::NoSpace`] and the part is cut back to
/// `offset`, so what it had taken is free again and the session is where it was.
///
/// One block is written on the blocking pool while the next is received. Whatever happens, no
/// write is still running when this returns: a later write to the same part cannot be overtaken.
pub(crate) async fn write(
    path: &Path,
    offset: u64,
    body: ByteStream,
    mode: PartWrites,
    room: &(dyn Fn() -> Result<()> + Sync),
) -> Result<u64> {
    let written = write_from(path, offset, body, mode, room).await;
    if let Err(Error::NoSpace(_)) = &written {
        let part = path.to_owned();
        let cut = blocking(move || match std::fs::OpenOptions::new().write(true).open(&part) {
            Ok(file) => file.set_len(offset),
            // Refused before the part was made.
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        })
        .await;
        if let Err(e) = cut {
            tracing::warn!(part = %path.display(), error = %e, "could not cut a part back after running out of space");
        }
    }
    written
}

async fn write_from(
    path: &Path,
    offset: u64,
    mut body: ByteStream,
    mode: PartWrites,
    room: &(dyn Fn() -> Result<()> + Sync),
) -> Result<u64> {
    // An empty chunk (a client's usual final PUT) writes nothing, so it needs no part: the
    // earlier chunks were synced before they were acknowledged, and a commit checks the part.
    let first = loop {
        match body.next().await {
            None => return Ok(0),
            Some(Ok(chunk)) if chunk.is_empty() => continue,
            Some(Ok(chunk)) => break chunk,
            Some(Err(e)) => return Err(Error::Body(e)),
        }
    };
    room()?;
    let mut body = futures::stream::once(std::future::ready(Ok(first))).chain(body);
    let head = (offset % ALIGN as u64) as usize;
    let opened = path.to_owned();
    let (file, earlier) = blocking(move || -> io::Result<(File, Vec<u8>)> {
        let file = open(&opened, mode)?;
        // Writing past the end would leave a hole of zeros that a commit would store under the
        // digest of the bytes the client sent (a part lost in a crash, say): refuse instead.
        let len = file.metadata()?.len();
        if len < offset {
            return Err(io::Error::other(format!("the part holds {len} bytes but the session is at {offset}")));
        }
        // The block's earlier bytes, read back through the page cache (no alignment needed there).
        let mut earlier = vec![0; head];
        if head > 0 {
            File::open(&opened)?.read_exact_at(&mut earlier, offset - head as u64)?;
        }
        Ok((file, earlier))
    })
    .await?;
    let mut buf = AlignedBuf::new(BLOCK);
    buf.extend(&earlier);
    let mut writer = Writer { file: Some(file), at: offset - head as u64, pending: None, spare: None };
    let mut written = 0u64;
    let received: Result<()> = async {
        while let Some(chunk) = body.next().await {
            let mut chunk: Bytes = chunk.map_err(Error::Body)?;
            if (written + chunk.len() as u64) / ROOM_EVERY > written / ROOM_EVERY {
                room()?;
            }
            written += chunk.len() as u64;
            while !chunk.is_empty() {
                let n = chunk.len().min(buf.room());
                buf.extend(&chunk.split_to(n));
                if buf.room() == 0 {
                    let next = writer.spare.take().unwrap_or_else(|| AlignedBuf::new(BLOCK));
                    writer.submit(std::mem::replace(&mut buf, next)).await?;
                }
            }
        }
        Ok(())
    }
    .await;
    // Drain before anything else, also on error, so that no write outlives this call.
    let drained = writer.drain().await;
    received?;
    let (file, at) = drained?;
    let end = offset + written;
    blocking(move || -> io::Result<()> {
        if !buf.is_empty() {
            buf.pad();
            file.write_all_at(buf.block(), at)?;
        }
        file.set_len(end)?;
        file.sync_data()
    })
    .await?;
    Ok(written)
}

/// Opens a file for reading, with `O_DIRECT` in [`PartWrites::Direct`] (the same filesystem
/// takes it), so reads come from the device and leave the page cache as it was.
pub(crate) fn open_read(path: &Path, mode: PartWrites) -> io::Result<File> {
    let flags = match mode {
        PartWrites::Direct => libc::O_DIRECT,
        PartWrites::Buffered => 0,
    };
    std::fs::OpenOptions::new().read(true).custom_flags(flags).open(path)
}

fn open(path: &Path, mode: PartWrites) -> io::Result<File> {
    let flags = match mode {
        PartWrites::Direct => libc::O_DIRECT,
        PartWrites::Buffered => 0,
    };
    std::fs::OpenOptions::new().write(true).create(true).truncate(false).custom_flags(flags).open(path)
}

/// Full blocks, written one at a time from the blocking pool.
struct Writer {
    /// The file, when no write holds it.
    file: Option<File>,
    /// Where the next block goes.
    at: u64,
    pending: Option<tokio::task::JoinHandle<io::Result<(File, AlignedBuf)>>>,
    /// The last written block's buffer, for reuse.
    spare: Option<AlignedBuf>,
}

impl Writer {
    async fn submit(&mut self, block: AlignedBuf) -> Result<()> {
        let file = match self.file.take() {
            Some(f) => f,
            None => self.wait().await?,
        };
        let at = self.at;
        self.at += block.len() as u64;
        self.pending = Some(tokio::task::spawn_blocking(move || {
            file.write_all_at(block.block(), at)?;
            Ok((file, block))
        }));
        Ok(())
    }

    async fn wait(&mut self) -> Result<File> {
        let pending = self.pending.take().expect("the file is either idle or being written");
        let (file, block) = pending.await.map_err(|e| Error::Storage(e.to_string()))?.map_err(storage)?;
        self.spare = Some(block.cleared());
        Ok(file)
    }

    /// Waits for the write in flight; returns the file and where the next block goes.
    async fn drain(mut self) -> Result<(File, u64)> {
        let file = match self.file.take() {
            Some(f) => f,
            None => self.wait().await?,
        };
        Ok((file, self.at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A disk with room to spare.
    const ROOMY: &(dyn Fn() -> Result<()> + Sync) = &|| Ok(());

    fn body(parts: Vec<Vec<u8>>) -> ByteStream {
        futures::stream::iter(parts.into_iter().map(|p| Ok(Bytes::from(p)))).boxed()
    }

    fn data(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3] ^ seed).collect()
    }

    /// Chunks of awkward sizes at awkward offsets, in both modes: the file holds exactly the
    /// bytes sent, in order, and is exactly as long.
    #[tokio::test]
    async fn chunks_at_any_offset_land_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let probed = PartWrites::probe(dir.path());
        assert_eq!(probed, PartWrites::Direct, "the temp filesystem takes O_DIRECT (ext4 does, tmpfs since Linux 6.6)");
        assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none(), "the probe leaves nothing behind");
        for mode in [PartWrites::Direct, PartWrites::Buffered] {
            let path = dir.path().join(format!("{mode:?}"));
            let mut expected = Vec::new();
            // Sessions of PATCHes: sizes around the alignment and the block size.
            let chunks = [1, ALIGN - 1, 2, ALIGN, BLOCK + 3, 7, 2 * BLOCK - 5, 0, ALIGN + 1, 3 * BLOCK];
            for (i, len) in chunks.into_iter().enumerate() {
                let bytes = data(len, i as u8);
                // Each PATCH arrives in pieces that do not line up with anything.
                let pieces: Vec<Vec<u8>> = bytes.chunks(65_521).map(<[u8]>::to_vec).collect();
                let n = write(&path, expected.len() as u64, body(pieces), mode, ROOMY).await.unwrap();
                assert_eq!(n, len as u64);
                expected.extend_from_slice(&bytes);
                let on_disk = std::fs::read(&path).unwrap();
                assert_eq!(on_disk.len(), expected.len(), "{mode:?}: length after chunk {i}");
                assert!(on_disk == expected, "{mode:?}: bytes after chunk {i}");
            }
        }
    }

    /// A part shorter than the session's offset (lost, or cut short) is an error, aligned offset
    /// or not, never a hole of zeros.
    #[tokio::test]
    async fn a_part_shorter_than_the_offset_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("part");
        write(&path, 0, body(vec![vec![7; 10]]), PartWrites::Direct, ROOMY).await.unwrap();
        for offset in [20, ALIGN as u64] {
            let err = write(&path, offset, body(vec![vec![1; 5]]), PartWrites::Direct, ROOMY).await.unwrap_err();
            assert!(err.to_string().contains("holds 10 bytes"), "{err}");
        }
        let missing = dir.path().join("missing");
        assert!(write(&missing, ALIGN as u64, body(vec![vec![1; 5]]), PartWrites::Direct, ROOMY).await.is_err());
        assert_eq!(std::fs::read(&path).unwrap(), vec![7; 10], "nothing written");
    }

    #[tokio::test]
    async fn an_empty_chunk_touches_no_part() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        assert_eq!(write(&missing, 4096, body(vec![vec![], vec![]]), PartWrites::Direct, ROOMY).await.unwrap(), 0);
        assert!(!missing.exists(), "no part was made");
        let path = dir.path().join("part");
        write(&path, 0, body(vec![vec![7; 10]]), PartWrites::Direct, ROOMY).await.unwrap();
        assert_eq!(write(&path, 10, body(vec![]), PartWrites::Direct, ROOMY).await.unwrap(), 0);
        assert_eq!(std::fs::read(&path).unwrap(), vec![7; 10]);
        // Empty pieces before the first byte are skipped, not taken for the end.
        assert_eq!(write(&path, 10, body(vec![vec![], vec![8; 3]]), PartWrites::Direct, ROOMY).await.unwrap(), 3);
        assert_eq!(std::fs::read(&path).unwrap(), [vec![7; 10], vec![8; 3]].concat());
    }

    /// A body that fails mid-way: the error comes back (only once its blocks in flight are written,
    /// by construction), and a retry at the same offset leaves exactly the retry's bytes.
    #[tokio::test]
    async fn a_failed_body_leaves_no_write_running() {
        let dir = tempfile::tempdir().unwrap();
        let mode = PartWrites::probe(dir.path());
        let path = dir.path().join("part");
        write(&path, 0, body(vec![vec![9; 10]]), mode, ROOMY).await.unwrap();
        let failing = futures::stream::iter(vec![
            Ok(Bytes::from(vec![1; 3 * BLOCK])),
            Err(io::Error::new(io::ErrorKind::UnexpectedEof, "cut")),
        ])
        .boxed();
        assert!(matches!(write(&path, 10, failing, mode, ROOMY).await, Err(Error::Body(_))));
        let retry = data(BLOCK + 17, 5);
        write(&path, 10, body(vec![retry.clone()]), mode, ROOMY).await.unwrap();
        let on_disk = std::fs::read(&path).unwrap();
        assert_eq!(&on_disk[..10], &[9; 10]);
        assert!(on_disk[10..] == retry[..], "the retry's bytes, and nothing of the failed body after them");
    }

    /// Room that runs out part way through a PATCH: the write stops there with `NoSpace`, the
    /// part is cut back to where the session was, and once there is room the same chunk lands.
    #[tokio::test]
    async fn a_write_that_runs_out_of_room_gives_its_bytes_back() {
        use std::sync::atomic::{AtomicU64, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let mode = PartWrites::probe(dir.path());
        let path = dir.path().join("part");
        write(&path, 0, body(vec![vec![9; 10]]), mode, ROOMY).await.unwrap();

        // Room for the first two asks only: before the first byte, and at 16 MiB.
        let asked = AtomicU64::new(0);
        let room = || -> Result<()> {
            if asked.fetch_add(1, Ordering::SeqCst) < 2 { Ok(()) } else { Err(Error::NoSpace("full".into())) }
        };
        let chunk = data(40 << 20, 3);
        let pieces: Vec<Vec<u8>> = chunk.chunks(1 << 20).map(<[u8]>::to_vec).collect();
        let refused = write(&path, 10, body(pieces.clone()), mode, &room).await;
        assert!(matches!(refused, Err(Error::NoSpace(_))), "{refused:?}");
        assert_eq!(asked.load(Ordering::SeqCst), 3, "asked before the first byte, at 16 MiB and at 32 MiB");
        assert_eq!(std::fs::read(&path).unwrap(), vec![9; 10], "the part holds what it held before");

        // Refused before the first byte: nothing is made.
        let never = || -> Result<()> { Err(Error::NoSpace("full".into())) };
        let missing = dir.path().join("missing");
        assert!(matches!(write(&missing, 0, body(vec![vec![1; 5]]), mode, &never).await, Err(Error::NoSpace(_))));
        assert!(!missing.exists());

        assert_eq!(write(&path, 10, body(pieces), mode, ROOMY).await.unwrap(), 40 << 20);
        let on_disk = std::fs::read(&path).unwrap();
        assert!(on_disk[..10] == [9; 10] && on_disk[10..] == chunk[..]);
    }
}

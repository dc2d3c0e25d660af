//! Buffers at a block-aligned address, which direct I/O (`O_DIRECT`) reads into and writes from.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Alignment of direct I/O: file offsets, lengths and buffer addresses. 4 KiB covers every
/// block size in use.
pub(crate) const ALIGN: usize = 4096;

/// Up to `cap` bytes starting at an [`ALIGN`]-aligned address. Safe code: a `Vec` whose first
/// `start` bytes are skipped to reach the alignment, and which never grows past its capacity (so
/// it is never moved).
pub(crate) struct AlignedBuf {
    raw: Vec<u8>,
    start: usize,
    cap: usize,
}

impl AlignedBuf {
    pub(crate) fn new(cap: usize) -> AlignedBuf {
        let mut raw: Vec<u8> = Vec::with_capacity(cap + ALIGN);
        let start = raw.as_ptr().align_offset(ALIGN);
        raw.resize(start, 0);
        AlignedBuf { raw, start, cap }
    }

    pub(crate) fn len(&self) -> usize {
        self.raw.len() - self.start
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn room(&self) -> usize {
        self.cap - self.len()
    }

    pub(crate) fn extend(&mut self, bytes: &[u8]) {
        assert!(bytes.len() <= self.room(), "an aligned buffer never grows");
        self.raw.extend_from_slice(bytes);
    }

    /// Zeros up to the next [`ALIGN`] boundary; the caller truncates the file after writing.
    pub(crate) fn pad(&mut self) {
        let padded = self.len().next_multiple_of(ALIGN);
        self.raw.resize(self.start + padded, 0);
    }

    pub(crate) fn block(&self) -> &[u8] {
        &self.raw[self.start..]
    }

    pub(crate) fn cleared(mut self) -> AlignedBuf {
        self.raw.truncate(self.start);
        self
    }
}

impl AlignedBuf {
    /// Reads exactly `len` bytes (at most the capacity) from `at`, which must be aligned.
    pub(crate) fn fill_from(&mut self, file: &File, at: u64, len: usize) -> io::Result<()> {
        assert!(len <= self.cap, "an aligned buffer never grows");
        self.raw.truncate(self.start);
        // Direct reads want whole blocks; the file's end may stop them short of one.
        self.raw.resize(self.start + len.next_multiple_of(ALIGN).min(self.cap), 0);
        let mut n = 0;
        while n < len {
            match file.read_at(&mut self.raw[self.start + n..], at + n as u64)? {
                0 => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the file ended early")),
                read => n += read,
            }
        }
        self.raw.truncate(self.start + len);
        Ok(())
    }
}

impl AsRef<[u8]> for AlignedBuf {
    fn as_ref(&self) -> &[u8] {
        self.block()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_aligned_and_never_move() {
        let mut buf = AlignedBuf::new(3 * ALIGN);
        let at = buf.block().as_ptr();
        assert_eq!(at as usize % ALIGN, 0);
        buf.extend(&[1; 5000]);
        buf.pad();
        assert_eq!(buf.len(), 2 * ALIGN, "padded to the next boundary");
        assert_eq!(&buf.block()[4999..5001], &[1, 0]);
        assert_eq!(buf.block().as_ptr(), at, "filling never reallocates");
        let buf = buf.cleared();
        assert!(buf.is_empty());
        assert_eq!(buf.room(), 3 * ALIGN);
    }

    #[test]
    fn fills_exactly_and_fails_past_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![7u8; ALIGN + 10]).unwrap();
        let file = File::open(&path).unwrap();
        let mut buf = AlignedBuf::new(ALIGN);
        buf.fill_from(&file, 0, ALIGN).unwrap();
        assert_eq!(buf.block(), &[7; ALIGN][..]);
        buf.fill_from(&file, ALIGN as u64, 10).unwrap();
        assert_eq!(buf.block(), &[7; 10][..], "the tail");
        let early = buf.fill_from(&file, ALIGN as u64, 11).unwrap_err();
        assert_eq!(early.kind(), io::ErrorKind::UnexpectedEof, "a file shorter than expected is an error");
    }
}

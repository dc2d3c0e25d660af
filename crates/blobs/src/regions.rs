//! Which memory ranges are mapped windows of which blob files.
//!
//! The filesystem adapter serves a blob as memory-mapped windows; a connection that writes one
//! of those ranges can look it up here and send the same bytes with `sendfile(2)` straight from
//! the page cache, so the bytes are neither copied nor faulted into this process. Anything that
//! does read the memory (an in-process test, TLS later) still sees the file's bytes.

use std::collections::BTreeMap;
use std::fs::File;
use std::sync::{Arc, Mutex};

/// Live mapped windows, by start address.
#[derive(Default)]
pub struct MappedRegions {
    inner: Mutex<BTreeMap<usize, Region>>,
}

struct Region {
    len: usize,
    file: Arc<File>,
    offset: u64,
}

/// Where a mapped range's bytes live in a file.
pub struct FileSlice {
    pub file: Arc<File>,
    pub offset: u64,
}

impl MappedRegions {
    pub fn new() -> Arc<MappedRegions> {
        Arc::new(MappedRegions::default())
    }

    /// The file and offset behind `bytes`, if they lie wholly inside one registered window.
    pub fn lookup(&self, bytes: &[u8]) -> Option<FileSlice> {
        self.lookup_addr(bytes.as_ptr() as usize, bytes.len())
    }

    /// [`MappedRegions::lookup`] by address, for memory that may no longer be mapped.
    pub(crate) fn lookup_addr(&self, start: usize, len: usize) -> Option<FileSlice> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (&base, region) = inner.range(..=start).next_back()?;
        (start + len <= base + region.len)
            .then(|| FileSlice { file: region.file.clone(), offset: region.offset + (start - base) as u64 })
    }

    pub(crate) fn register(self: &Arc<Self>, bytes: &[u8], file: Arc<File>, offset: u64) -> RegionGuard {
        let start = bytes.as_ptr() as usize;
        let region = Region { len: bytes.len(), file, offset };
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).insert(start, region);
        RegionGuard { regions: self.clone(), start }
    }
}

/// Unregisters its window when dropped; it must drop before the mapping is unmapped.
pub(crate) struct RegionGuard {
    regions: Arc<MappedRegions>,
    start: usize,
}

impl Drop for RegionGuard {
    fn drop(&mut self) {
        self.regions.inner.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.start);
    }
}

//! Room on the filesystem under a store: free bytes, and a reserve that uploads leave alone.
//!
//! A disk that fills up takes more than uploads with it: the records (SQLite's WAL and its
//! checkpoints), the pulls noted for retention and the logs all write there too. So a store keeps
//! a reserve: once free space falls to it, new bytes are refused with [`Error::NoSpace`], which
//! the API answers with 507, while pulls, deletes and garbage collection go on.

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::{Error, Result};

/// The filesystem under a store, as [`crate::BlobStore::space`] reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Space {
    /// Bytes an unprivileged writer may still use.
    pub free: u64,
    /// The filesystem's size.
    pub total: u64,
    /// Free bytes the store keeps for everything else: writes stop here.
    pub reserve: u64,
}

impl Space {
    /// Bytes that may still be written before the reserve.
    pub fn available(&self) -> u64 {
        self.free.saturating_sub(self.reserve)
    }

    /// The filesystem holding `path`, with `reserve` kept free.
    pub(crate) fn of(path: &Path, reserve: u64) -> io::Result<Space> {
        let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())?;
        let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
        // SAFETY: `c_path` is a NUL-terminated path, and `stat` is only read after the call
        // succeeded, which means it filled it in.
        let stat = unsafe {
            if libc::statvfs(c_path.as_ptr(), stat.as_mut_ptr()) != 0 {
                return Err(io::Error::last_os_error());
            }
            stat.assume_init()
        };
        let unit = stat.f_frsize as u64;
        Ok(Space { free: stat.f_bavail as u64 * unit, total: stat.f_blocks as u64 * unit, reserve })
    }

    /// `Ok` while something may still be written; else the error a writer returns.
    pub fn check(&self) -> Result<()> {
        if self.available() > 0 {
            return Ok(());
        }
        Err(Error::NoSpace(format!(
            "the registry's storage is nearly full ({} free, {} kept in reserve): nothing new is stored until space is freed",
            human_size(self.free),
            human_size(self.reserve)
        )))
    }
}

/// Whether an I/O error means the medium (or the user's disk quota) is full.
pub(crate) fn is_full(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
}

/// A size for people: `812 MB`, `1.5 GB` (powers of 1000, as `df -H` prints them).
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "kB", "MB", "GB", "TB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    match unit {
        0 => format!("{n} bytes"),
        _ if value < 10.0 => format!("{value:.1} {}", UNITS[unit]),
        _ => format!("{value:.0} {}", UNITS[unit]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human_size(0), "0 bytes");
        assert_eq!(human_size(999), "999 bytes");
        assert_eq!(human_size(1000), "1.0 kB");
        assert_eq!(human_size(812_400_000), "812 MB");
        assert_eq!(human_size(1_500_000_000), "1.5 GB");
        assert_eq!(human_size(u64::MAX), "18446744 TB");
    }

    #[test]
    fn the_reserve_is_taken_off_what_is_free() {
        let dir = tempfile::tempdir().unwrap();
        let space = Space::of(dir.path(), 0).unwrap();
        assert!(space.free > 0 && space.total >= space.free, "{space:?}");
        assert!(space.check().is_ok());
        let reserved = Space { reserve: space.free + 1, ..space };
        assert_eq!(reserved.available(), 0);
        let Err(Error::NoSpace(message)) = reserved.check() else { panic!("a store at its reserve refuses writes") };
        assert!(message.contains("kept in reserve"), "{message}");
        assert!(Space::of(&dir.path().join("absent"), 0).is_err());
    }
}

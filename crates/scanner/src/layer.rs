//! A layer's bytes as a tar stream: gzip and zstd recognised by their magic numbers (the media
//! type is only a hint: registries serve mislabelled layers), and a byte budget that turns a
//! decompression bomb into an error instead of hours of work.

use std::io::{self, BufRead, BufReader, Read};

pub(crate) enum Compression {
    Gzip,
    Zstd,
    None,
}

pub(crate) fn sniff<R: BufRead>(r: &mut R) -> io::Result<Compression> {
    let head = r.fill_buf()?;
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    })
}

/// The decompressed stream of a layer.
pub(crate) fn decompress<'a, R: Read + 'a>(r: R) -> io::Result<Box<dyn Read + 'a>> {
    let mut r = BufReader::with_capacity(256 << 10, r);
    Ok(match sniff(&mut r)? {
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(r)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(r)?),
        Compression::None => Box::new(r),
    })
}

/// Counts what passes and fails once `budget` is spent.
pub(crate) struct Budget<R> {
    pub inner: R,
    pub used: u64,
    pub budget: u64,
}

impl<R: Read> Read for Budget<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.used >= self.budget {
            return Err(io::Error::other(BudgetSpent));
        }
        let want = buf.len().min((self.budget - self.used).min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..want])?;
        self.used += n as u64;
        Ok(n)
    }
}

/// The error a [`Budget`] returns, recognisable by downcast.
#[derive(Debug)]
pub(crate) struct BudgetSpent;

impl std::fmt::Display for BudgetSpent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("uncompressed size limit reached")
    }
}

impl std::error::Error for BudgetSpent {}

pub(crate) fn is_budget(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|i| i.is::<BudgetSpent>())
}

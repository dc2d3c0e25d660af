//! A streaming tar reader with limits: ustar, GNU (long names `L`/`K`, base-256 sizes, sparse
//! entries skipped) and PAX (`path`, `linkpath`, `size` of the next entry; global headers read and
//! ignored). Every header's checksum is verified. An extension header larger than the limit is
//! skipped with a problem instead of being read into memory, which the `tar` crate would do.
//!
//! The reader never seeks: each entry's unread data is read through and dropped before the next
//! header, so an entry is never held whole.

use std::io::{self, Read};

const BLOCK: usize = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    File,
    Dir,
    Symlink,
    Hardlink,
    Device,
    Fifo,
    /// GNU sparse: the data in the archive is not the file's layout; not inspected.
    Sparse,
    Other(u8),
}

#[derive(Debug, Clone)]
pub(crate) struct Header {
    pub path: String,
    pub link: String,
    pub kind: Kind,
    pub size: u64,
    pub mode: u32,
}

pub(crate) struct TarReader<R> {
    inner: R,
    /// Bytes of the current entry not yet read, then the padding to the next block.
    remaining: u64,
    padding: u64,
    pos: u64,
    max_header: u64,
    /// Problems met while reading headers (a skipped extension, say); drained by the caller.
    pub notes: Vec<String>,
}

fn octal_or_binary(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        // GNU base-256: big-endian, the first byte's top bit is the marker.
        let mut v: u64 = (field[0] & 0x7f) as u64;
        for &b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(b as u64)?;
        }
        return Some(v);
    }
    let s = field.iter().take_while(|&&b| b != 0).copied().collect::<Vec<u8>>();
    let s = std::str::from_utf8(&s).ok()?.trim();
    if s.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(s, 8).ok()
}

fn cstr(field: &[u8]) -> String {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

impl<R: Read> TarReader<R> {
    pub fn new(inner: R, max_header: u64) -> Self {
        TarReader { inner, remaining: 0, padding: 0, pos: 0, max_header, notes: Vec::new() }
    }

    fn skip(&mut self, mut n: u64) -> io::Result<()> {
        let mut buf = [0u8; 8192];
        while n > 0 {
            let want = n.min(buf.len() as u64) as usize;
            let got = self.inner.read(&mut buf[..want])?;
            if got == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "layer ends inside an entry"));
            }
            n -= got as u64;
            self.pos += got as u64;
        }
        Ok(())
    }

    /// Reads exactly one block; `Ok(false)` at a clean end of stream.
    fn block(&mut self, buf: &mut [u8; BLOCK]) -> io::Result<bool> {
        let mut filled = 0;
        while filled < BLOCK {
            let n = self.inner.read(&mut buf[filled..])?;
            if n == 0 {
                if filled == 0 {
                    return Ok(false);
                }
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "layer ends inside a header"));
            }
            filled += n;
        }
        self.pos += BLOCK as u64;
        Ok(true)
    }

    fn read_extension(&mut self, size: u64) -> io::Result<Option<Vec<u8>>> {
        let padding = (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64;
        if size > self.max_header {
            self.notes.push(format!("an extension header of {size} bytes at offset {} exceeds the {}-byte limit; skipped", self.pos, self.max_header));
            self.skip(size + padding)?;
            return Ok(None);
        }
        let mut data = vec![0; size as usize];
        self.inner.read_exact(&mut data).map_err(|e| io::Error::new(e.kind(), "layer ends inside an extension header"))?;
        self.pos += size;
        self.skip(padding)?;
        Ok(Some(data))
    }

    /// The next entry's header, after dropping what is left of the current one.
    pub fn next_header(&mut self) -> io::Result<Option<Header>> {
        self.skip(self.remaining + self.padding)?;
        self.remaining = 0;
        self.padding = 0;
        let mut long_name: Option<String> = None;
        let mut long_link: Option<String> = None;
        let mut pax_path: Option<String> = None;
        let mut pax_link: Option<String> = None;
        let mut pax_size: Option<u64> = None;
        let mut buf = [0u8; BLOCK];
        loop {
            let offset = self.pos;
            if !self.block(&mut buf)? {
                return Ok(None);
            }
            if buf.iter().all(|&b| b == 0) {
                // End-of-archive marker; what follows is padding.
                return Ok(None);
            }
            let stored = octal_or_binary(&buf[148..156]);
            let sum: u64 = buf.iter().enumerate().map(|(i, &b)| if (148..156).contains(&i) { b' ' as u64 } else { b as u64 }).sum();
            if stored != Some(sum) {
                return Err(io::Error::new(io::ErrorKind::InvalidData, format!("bad tar header checksum at offset {offset}")));
            }
            let size = octal_or_binary(&buf[124..136])
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("unreadable size at offset {offset}")))?;
            let typeflag = buf[156];
            match typeflag {
                b'L' | b'K' | b'x' | b'g' => {
                    let Some(data) = self.read_extension(size)? else { continue };
                    match typeflag {
                        b'L' => long_name = Some(cstr(&data)),
                        b'K' => long_link = Some(cstr(&data)),
                        b'x' => {
                            for (k, v) in pax_records(&data) {
                                match k.as_str() {
                                    "path" => pax_path = Some(v),
                                    "linkpath" => pax_link = Some(v),
                                    "size" => pax_size = v.parse().ok(),
                                    _ => {}
                                }
                            }
                        }
                        _ => {}
                    }
                    continue;
                }
                _ => {}
            }
            let ustar = &buf[257..263] == b"ustar\0";
            let mut path = cstr(&buf[0..100]);
            if ustar && buf[345] != 0 {
                path = format!("{}/{}", cstr(&buf[345..500]), path);
            }
            let path = pax_path.or(long_name).unwrap_or(path);
            let link = pax_link.or(long_link).unwrap_or_else(|| cstr(&buf[157..257]));
            let size = pax_size.unwrap_or(size);
            let kind = match typeflag {
                b'0' | 0 | b'7' => Kind::File,
                b'1' => Kind::Hardlink,
                b'2' => Kind::Symlink,
                b'3' | b'4' => Kind::Device,
                b'5' => Kind::Dir,
                b'6' => Kind::Fifo,
                b'S' => Kind::Sparse,
                t => Kind::Other(t),
            };
            // Links, directories and devices carry no data whatever their size field says,
            // except in GNU's and Go's writers, which agree: only regular-file-like entries do.
            let data = match kind {
                Kind::File | Kind::Sparse | Kind::Other(_) => size,
                _ => 0,
            };
            self.remaining = data;
            self.padding = (BLOCK as u64 - data % BLOCK as u64) % BLOCK as u64;
            let mode = octal_or_binary(&buf[100..108]).unwrap_or(0) as u32;
            return Ok(Some(Header { path, link, kind, size: data, mode }));
        }
    }
}

/// PAX records: `"<len> <key>=<value>\n"`, where `len` counts the whole record.
fn pax_records(data: &[u8]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let Some(sp) = rest.iter().position(|&b| b == b' ') else { break };
        let Some(len) = std::str::from_utf8(&rest[..sp]).ok().and_then(|s| s.parse::<usize>().ok()) else { break };
        if len <= sp + 1 || len > rest.len() {
            break;
        }
        let record = &rest[sp + 1..len];
        let record = record.strip_suffix(b"\n").unwrap_or(record);
        if let Some(eq) = record.iter().position(|&b| b == b'=') {
            out.push((String::from_utf8_lossy(&record[..eq]).into_owned(), String::from_utf8_lossy(&record[eq + 1..]).into_owned()));
        }
        rest = &rest[len..];
    }
    out
}

impl<R: Read> Read for TarReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let want = buf.len().min(self.remaining.min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "layer ends inside an entry"));
        }
        self.remaining -= n as u64;
        self.pos += n as u64;
        Ok(n)
    }
}

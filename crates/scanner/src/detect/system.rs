//! Distribution package databases: dpkg's status file (and distroless `status.d/`), apk's
//! `installed`, and rpm's databases — `rpmdb.sqlite` (RHEL 9, Fedora 33+) and the BerkeleyDB hash
//! file `Packages` (RHEL/CentOS ≤ 8, Amazon Linux 2) — read by hand: a SQLite b-tree walk, a
//! BerkeleyDB hash-page walk, and rpm's header format; no database library, nothing written to disk.

use super::Problems;
use crate::{Ecosystem, Package, SourcePackage};

/// RFC 822-style stanzas separated by blank lines; continuation lines start with a space.
fn stanzas(text: &str) -> impl Iterator<Item = Vec<(&str, &str)>> {
    text.split("\n\n").map(|stanza| {
        stanza
            .lines()
            .filter(|l| !l.starts_with(' ') && !l.starts_with('\t'))
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim(), v.trim()))
            .collect()
    })
}

pub(super) fn dpkg(path: &str, bytes: &[u8], status_d: bool, out: &mut Vec<Package>) {
    let text = String::from_utf8_lossy(bytes);
    for fields in stanzas(&text) {
        let get = |k: &str| fields.iter().find(|(f, _)| f.eq_ignore_ascii_case(k)).map(|(_, v)| *v);
        let (Some(name), Some(version)) = (get("Package"), get("Version")) else { continue };
        // The status file keeps removed packages' config files: only installed ones count.
        if !status_d && !get("Status").is_some_and(|s| s.ends_with(" installed")) {
            continue;
        }
        let mut p = Package::new(Ecosystem::Deb, name, version, path);
        p.arch = get("Architecture").map(str::to_owned);
        if let Some(src) = get("Source") {
            // `Source: name` or `Source: name (version)` when the source version differs.
            let (sname, sversion) = match src.split_once(' ') {
                Some((n, v)) => (n, v.trim().trim_start_matches('(').trim_end_matches(')')),
                None => (src, version),
            };
            p.source = Some(SourcePackage { name: sname.to_owned(), version: sversion.to_owned() });
        }
        out.push(p);
    }
}

pub(super) fn apk(path: &str, bytes: &[u8], out: &mut Vec<Package>) {
    let text = String::from_utf8_lossy(bytes);
    for block in text.split("\n\n") {
        let mut name = None;
        let mut version = None;
        let mut origin = None;
        let mut arch = None;
        let mut license = None;
        for line in block.lines() {
            match line.split_once(':') {
                Some(("P", v)) => name = Some(v),
                Some(("V", v)) => version = Some(v),
                Some(("o", v)) => origin = Some(v),
                Some(("A", v)) => arch = Some(v),
                Some(("L", v)) => license = Some(v),
                _ => {}
            }
        }
        let (Some(name), Some(version)) = (name, version) else { continue };
        let mut p = Package::new(Ecosystem::Apk, name, version, path);
        p.arch = arch.map(str::to_owned);
        p.license = license.map(str::to_owned);
        if let Some(o) = origin {
            p.source = Some(SourcePackage { name: o.to_owned(), version: version.to_owned() });
        }
        out.push(p);
    }
}

pub(super) fn rpm_sqlite(path: &str, bytes: &[u8], out: &mut Vec<Package>, problems: &mut Problems) {
    match sqlite::table_blobs(bytes, "Packages") {
        Ok(rows) => rpm_headers(path, rows, out, problems),
        Err(e) => problems.push(("unparsable", format!("rpmdb.sqlite: {e}"))),
    }
}

pub(super) fn rpm_berkeley(path: &str, bytes: &[u8], out: &mut Vec<Package>, problems: &mut Problems) {
    match bdb::hash_values(bytes) {
        Ok(values) => rpm_headers(path, values, out, problems),
        Err(e) => problems.push(("unparsable", format!("BerkeleyDB Packages: {e}"))),
    }
}

fn rpm_headers(path: &str, rows: Vec<Vec<u8>>, out: &mut Vec<Package>, problems: &mut Problems) {
    for blob in rows {
        match rpm_header(&blob) {
            Some(h) if h.name != "gpg-pubkey" => {
                let mut version = format!("{}-{}", h.version, h.release);
                if let Some(e) = h.epoch.filter(|e| *e > 0) {
                    version = format!("{e}:{version}");
                }
                let mut p = Package::new(Ecosystem::Rpm, h.name, version, path);
                p.arch = h.arch;
                p.license = h.license;
                if let Some(srpm) = h.source_rpm {
                    let base = srpm.trim_end_matches(".rpm").trim_end_matches(".src").trim_end_matches(".nosrc");
                    if let Some((rest, release)) = base.rsplit_once('-')
                        && let Some((name, ver)) = rest.rsplit_once('-') {
                            p.source = Some(SourcePackage { name: name.to_owned(), version: format!("{ver}-{release}") });
                        }
                }
                out.push(p);
            }
            Some(_) => {}
            None => problems.push(("unparsable", "an rpm header in rpmdb.sqlite could not be read".into())),
        }
    }
}

struct RpmHeader {
    name: String,
    version: String,
    release: String,
    epoch: Option<u32>,
    arch: Option<String>,
    license: Option<String>,
    source_rpm: Option<String>,
}

/// rpm's header blob as the rpmdb stores it: index count, data length, 16-byte index entries
/// (tag, type, offset, count), then the data store.
fn rpm_header(b: &[u8]) -> Option<RpmHeader> {
    let be32 = |at: usize| b.get(at..at + 4).map(|s| u32::from_be_bytes(s.try_into().unwrap()));
    let il = be32(0)? as usize;
    let dl = be32(4)? as usize;
    let data = 8usize.checked_add(il.checked_mul(16)?)?;
    if data.checked_add(dl)? > b.len() || il > 100_000 {
        return None;
    }
    let store = &b[data..data + dl];
    let string = |off: usize| -> Option<String> {
        let s = store.get(off..)?;
        let end = s.iter().position(|&c| c == 0)?;
        Some(String::from_utf8_lossy(&s[..end]).into_owned())
    };
    let (mut name, mut version, mut release) = (None, None, None);
    let mut h = RpmHeader { name: String::new(), version: String::new(), release: String::new(), epoch: None, arch: None, license: None, source_rpm: None };
    for i in 0..il {
        let e = 8 + i * 16;
        let (tag, kind, off) = (be32(e)?, be32(e + 4)?, be32(e + 8)? as usize);
        let text = || if kind == 6 || kind == 9 || kind == 8 { string(off) } else { None };
        match tag {
            1000 => name = text(),
            1001 => version = text(),
            1002 => release = text(),
            1003 if kind == 4 => h.epoch = store.get(off..off + 4).map(|s| u32::from_be_bytes(s.try_into().unwrap())),
            1014 => h.license = text(),
            1022 => h.arch = text(),
            1044 => h.source_rpm = text(),
            _ => {}
        }
    }
    h.name = name?;
    h.version = version?;
    h.release = release?;
    Some(h)
}

/// Just enough of BerkeleyDB's hash access method to list every value: a metadata page, hash pages
/// (items laid out from the page's end: key, value, key, value; a value inline or in a chain of
/// overflow pages). Either byte order.
mod bdb {
    const HASH_MAGIC: u32 = 0x0006_1561;
    const P_HASH_UNSORTED: u8 = 2;
    const P_OVERFLOW: u8 = 7;
    const P_HASHMETA: u8 = 8;
    const P_HASH: u8 = 13;
    const H_KEYDATA: u8 = 1;
    const H_OFFPAGE: u8 = 3;
    const HEADER: usize = 26;

    pub(super) fn hash_values(b: &[u8]) -> Result<Vec<Vec<u8>>, String> {
        if b.len() < 512 {
            return Err("too short for a BerkeleyDB file".into());
        }
        let le = match (u32::from_le_bytes(b[12..16].try_into().unwrap()), u32::from_be_bytes(b[12..16].try_into().unwrap())) {
            (HASH_MAGIC, _) => true,
            (_, HASH_MAGIC) => false,
            _ => return Err("not a BerkeleyDB hash database (wrong magic)".into()),
        };
        let u32_at = |p: &[u8], at: usize| -> u32 {
            let a: [u8; 4] = p[at..at + 4].try_into().unwrap();
            if le { u32::from_le_bytes(a) } else { u32::from_be_bytes(a) }
        };
        let u16_at = |p: &[u8], at: usize| -> usize {
            let a: [u8; 2] = p[at..at + 2].try_into().unwrap();
            (if le { u16::from_le_bytes(a) } else { u16::from_be_bytes(a) }) as usize
        };
        if b[25] != P_HASHMETA {
            return Err(format!("page 0 has type {}, not hash metadata", b[25]));
        }
        let page_size = u32_at(b, 20) as usize;
        if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
            return Err(format!("bad page size {page_size}"));
        }
        let pages = b.len() / page_size;
        let page = |n: usize| -> Option<&[u8]> { b.get(n * page_size..(n + 1) * page_size) };
        let mut values = Vec::new();
        for n in 1..pages {
            let p = page(n).unwrap();
            if p[25] != P_HASH && p[25] != P_HASH_UNSORTED {
                continue;
            }
            let entries = u16_at(p, 20);
            if HEADER + entries * 2 > page_size {
                return Err(format!("page {n}: {entries} entries do not fit"));
            }
            let offset = |i: usize| u16_at(p, HEADER + i * 2);
            // Values are the odd items.
            for i in (1..entries).step_by(2) {
                let at = offset(i);
                let end = offset(i - 1);
                if at >= page_size || end > page_size || end <= at {
                    return Err(format!("page {n}: item {i} out of bounds"));
                }
                match p[at] {
                    H_KEYDATA => values.push(p[at + 1..end].to_vec()),
                    H_OFFPAGE => {
                        if at + 12 > page_size {
                            return Err(format!("page {n}: overflow reference out of bounds"));
                        }
                        let mut next = u32_at(p, at + 4) as usize;
                        let total = u32_at(p, at + 8) as usize;
                        if total > 64 << 20 {
                            return Err(format!("page {n}: a value of {total} bytes"));
                        }
                        let mut value = Vec::with_capacity(total);
                        let mut hops = 0;
                        while value.len() < total {
                            hops += 1;
                            let o = page(next).filter(|o| o[25] == P_OVERFLOW && hops <= pages).ok_or_else(|| format!("page {n}: broken overflow chain at {next}"))?;
                            let len = u16_at(o, 22).min(page_size - HEADER).min(total - value.len());
                            value.extend_from_slice(&o[HEADER..HEADER + len]);
                            next = u32_at(o, 16) as usize;
                            if next == 0 {
                                break;
                            }
                        }
                        if value.len() != total {
                            return Err(format!("page {n}: overflow chain ends at {} of {total} bytes", value.len()));
                        }
                        values.push(value);
                    }
                    // Duplicates and anything else hold no rpm headers.
                    _ => {}
                }
            }
        }
        Ok(values)
    }
}

/// Just enough of SQLite's file format to read one table's rows: the schema table on page 1,
/// table b-trees (interior and leaf pages), overflow chains, and records.
mod sqlite {
    fn varint(b: &[u8]) -> Option<(u64, usize)> {
        let mut v: u64 = 0;
        for i in 0..9 {
            let c = *b.get(i)?;
            if i == 8 {
                return Some(((v << 8) | c as u64, 9));
            }
            v = (v << 7) | (c & 0x7f) as u64;
            if c & 0x80 == 0 {
                return Some((v, i + 1));
            }
        }
        None
    }

    struct Db<'a> {
        b: &'a [u8],
        page_size: usize,
        usable: usize,
    }

    impl<'a> Db<'a> {
        fn page(&self, n: u64) -> Result<&'a [u8], String> {
            let n = n as usize;
            if n == 0 {
                return Err("page 0".into());
            }
            let start = (n - 1).checked_mul(self.page_size).ok_or("page number overflow")?;
            self.b.get(start..start + self.page_size).ok_or_else(|| format!("page {n} is past the end of the file"))
        }

        /// Every row payload of the table b-tree rooted at `root`.
        fn rows(&self, root: u64, out: &mut Vec<Vec<u8>>, depth: u32) -> Result<(), String> {
            if depth > 64 {
                return Err("b-tree too deep (a loop?)".into());
            }
            let page = self.page(root)?;
            let hdr = if root == 1 { 100 } else { 0 };
            let kind = page[hdr];
            let cells = u16::from_be_bytes([page[hdr + 3], page[hdr + 4]]) as usize;
            let be16 = |at: usize| page.get(at..at + 2).map(|s| u16::from_be_bytes([s[0], s[1]]) as usize).ok_or("cell pointer out of page");
            match kind {
                0x05 => {
                    for i in 0..cells {
                        let at = be16(hdr + 12 + i * 2)?;
                        let child = page.get(at..at + 4).ok_or("cell out of page")?;
                        self.rows(u32::from_be_bytes(child.try_into().unwrap()) as u64, out, depth + 1)?;
                    }
                    let right = u32::from_be_bytes(page[hdr + 8..hdr + 12].try_into().unwrap());
                    self.rows(right as u64, out, depth + 1)
                }
                0x0d => {
                    for i in 0..cells {
                        let at = be16(hdr + 8 + i * 2)?;
                        let cell = page.get(at..).ok_or("cell out of page")?;
                        let (len, a) = varint(cell).ok_or("bad cell")?;
                        let (_rowid, b) = varint(&cell[a..]).ok_or("bad cell")?;
                        out.push(self.payload(&cell[a + b..], len as usize)?);
                    }
                    Ok(())
                }
                k => Err(format!("page {root} has type {k:#x}, not a table b-tree page")),
            }
        }

        fn payload(&self, local: &[u8], len: usize) -> Result<Vec<u8>, String> {
            let u = self.usable;
            let x = u - 35;
            if len <= x {
                return Ok(local.get(..len).ok_or("payload out of page")?.to_vec());
            }
            let m = ((u - 12) * 32 / 255) - 23;
            let k = m + ((len - m) % (u - 4));
            let here = if k <= x { k } else { m };
            if len > 64 << 20 {
                return Err("a row larger than 64 MiB".into());
            }
            let mut out = local.get(..here).ok_or("payload out of page")?.to_vec();
            let mut next = u32::from_be_bytes(local.get(here..here + 4).ok_or("overflow pointer out of page")?.try_into().unwrap()) as u64;
            let mut hops = 0;
            while out.len() < len {
                hops += 1;
                if next == 0 || hops > 1 << 20 {
                    return Err("overflow chain ends early".into());
                }
                let page = self.page(next)?;
                next = u32::from_be_bytes(page[..4].try_into().unwrap()) as u64;
                let take = (len - out.len()).min(u - 4);
                out.extend_from_slice(&page[4..4 + take]);
            }
            Ok(out)
        }
    }

    enum Value<'a> {
        Int(i64),
        Text(&'a [u8]),
        Blob(&'a [u8]),
        Other,
    }

    fn record(r: &[u8]) -> Option<Vec<Value<'_>>> {
        let (hlen, mut at) = varint(r)?;
        let hlen = hlen as usize;
        let mut types = Vec::new();
        while at < hlen {
            let (t, n) = varint(r.get(at..hlen)?)?;
            types.push(t);
            at += n;
        }
        let mut body = hlen;
        let mut out = Vec::new();
        for t in types {
            let size = match t {
                0 | 8 | 9 => 0,
                1..=4 => t as usize,
                5 => 6,
                6 | 7 => 8,
                t if t >= 12 => ((t - 12) / 2) as usize,
                _ => return None,
            };
            let bytes = r.get(body..body + size)?;
            out.push(match t {
                1..=6 => {
                    let mut v: i64 = if bytes[0] & 0x80 != 0 { -1 } else { 0 };
                    for &c in bytes {
                        v = (v << 8) | c as i64;
                    }
                    Value::Int(v)
                }
                8 => Value::Int(0),
                9 => Value::Int(1),
                t if t >= 12 && t % 2 == 0 => Value::Blob(bytes),
                t if t >= 13 => Value::Text(bytes),
                _ => Value::Other,
            });
            body += size;
        }
        Some(out)
    }

    /// The BLOB column of every row of `table` (rpm's `Packages(hnum, blob)`).
    pub(super) fn table_blobs(b: &[u8], table: &str) -> Result<Vec<Vec<u8>>, String> {
        if b.len() < 100 || &b[..16] != b"SQLite format 3\0" {
            return Err("not a SQLite database".into());
        }
        let page_size = match u16::from_be_bytes([b[16], b[17]]) {
            1 => 65536,
            n if n >= 512 && n.is_power_of_two() => n as usize,
            n => return Err(format!("bad page size {n}")),
        };
        let usable = page_size - b[20] as usize;
        if usable < 480 {
            return Err("bad reserved space".into());
        }
        let db = Db { b, page_size, usable };
        let mut schema = Vec::new();
        db.rows(1, &mut schema, 0)?;
        let mut root = None;
        for row in &schema {
            if let Some(cols) = record(row)
                && let (Some(Value::Text(b"table")), Some(Value::Text(name)), Some(Value::Int(page))) = (cols.first(), cols.get(1), cols.get(3))
                    && *name == table.as_bytes() {
                        root = Some(*page as u64);
                    }
        }
        let root = root.ok_or_else(|| format!("no {table} table"))?;
        let mut rows = Vec::new();
        db.rows(root, &mut rows, 0)?;
        Ok(rows
            .iter()
            .filter_map(|r| record(r))
            .filter_map(|cols| cols.into_iter().find_map(|c| if let Value::Blob(b) = c { Some(b.to_vec()) } else { None }))
            .collect())
    }
}

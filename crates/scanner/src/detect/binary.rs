//! ELF executables: Go's embedded build info (`.go.buildinfo`: Go version, main module,
//! dependencies, replacements) and the dependency list cargo-auditable embeds in Rust binaries
//! (`.dep-v0`: zlib-compressed JSON).

use super::Problems;
use crate::{Ecosystem, Package};
use serde::Deserialize;
use std::io::Read;

/// A section's bytes by name, from the ELF section headers (32/64-bit, either byte order).
fn section<'a>(b: &'a [u8], wanted: &str) -> Option<&'a [u8]> {
    if b.len() < 64 || &b[..4] != b"\x7fELF" {
        return None;
    }
    let wide = b[4] == 2;
    let le = b[5] == 1;
    let u16_at = |at: usize| b.get(at..at + 2).map(|s| if le { u16::from_le_bytes([s[0], s[1]]) } else { u16::from_be_bytes([s[0], s[1]]) });
    let u32_at = |at: usize| b.get(at..at + 4).map(|s| {
        let a: [u8; 4] = s.try_into().unwrap();
        if le { u32::from_le_bytes(a) } else { u32::from_be_bytes(a) }
    });
    let u64_at = |at: usize| b.get(at..at + 8).map(|s| {
        let a: [u8; 8] = s.try_into().unwrap();
        if le { u64::from_le_bytes(a) } else { u64::from_be_bytes(a) }
    });
    let word = |at: usize| if wide { u64_at(at) } else { u32_at(at).map(u64::from) };
    let (shoff, shentsize, shnum, shstrndx) = if wide {
        (u64_at(0x28)?, u16_at(0x3a)?, u16_at(0x3c)?, u16_at(0x3e)?)
    } else {
        (u32_at(0x20)? as u64, u16_at(0x2e)?, u16_at(0x30)?, u16_at(0x32)?)
    };
    let (shoff, shentsize) = (shoff as usize, shentsize as usize);
    let header = |i: usize| -> Option<(u32, u32, usize, usize)> {
        let at = shoff.checked_add(i.checked_mul(shentsize)?)?;
        let name = u32_at(at)?;
        let kind = u32_at(at + 4)?;
        let (off, size) = if wide { (word(at + 0x18)?, word(at + 0x20)?) } else { (word(at + 0x10)?, word(at + 0x14)?) };
        Some((name, kind, off as usize, size as usize))
    };
    let (_, _, str_off, str_size) = header(shstrndx as usize)?;
    let names = b.get(str_off..str_off.checked_add(str_size)?)?;
    for i in 0..shnum as usize {
        let (name, kind, off, size) = header(i)?;
        let n = names.get(name as usize..)?;
        let n = &n[..n.iter().position(|&c| c == 0)?];
        if n == wanted.as_bytes() {
            // SHT_NOBITS has no bytes in the file.
            if kind == 8 {
                return None;
            }
            return b.get(off..off.checked_add(size)?);
        }
    }
    None
}

pub(super) fn elf(path: &str, bytes: &[u8], out: &mut Vec<Package>, problems: &mut Problems) {
    if let Some(info) = section(bytes, ".go.buildinfo") {
        go(path, info, out, problems);
    }
    if let Some(deps) = section(bytes, ".dep-v0") {
        auditable(path, deps, out, problems);
    }
}

fn uvarint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v: u64 = 0;
    for (i, &c) in b.iter().enumerate().take(10) {
        v |= ((c & 0x7f) as u64) << (7 * i);
        if c & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// Go ≥ 1.18 build info: a 32-byte header (`\xff Go buildinf:`, pointer size, flags), then — with
/// the inline flag — two varint-prefixed strings: the Go version and the module info.
fn go(path: &str, info: &[u8], out: &mut Vec<Package>, problems: &mut Problems) {
    if info.len() < 32 || &info[..14] != b"\xff Go buildinf:" {
        return;
    }
    if info[15] & 2 == 0 {
        problems.push(("unsupported", "a Go binary built before Go 1.18; its build info is not read".into()));
        return;
    }
    let mut at = 32;
    let mut strings = Vec::new();
    for _ in 0..2 {
        let Some((len, n)) = uvarint(&info[at..]) else { return };
        let start = at + n;
        let Some(s) = info.get(start..start + len as usize) else {
            return problems.push(("unparsable", "Go build info is truncated".into()));
        };
        strings.push(String::from_utf8_lossy(s).into_owned());
        at = start + len as usize;
    }
    let (go_version, mut modinfo) = (strings[0].clone(), strings[1].as_str());
    // The module info is framed by 16-byte sentinels.
    if modinfo.len() >= 33 && modinfo.as_bytes()[modinfo.len() - 17] == b'\n' {
        modinfo = &modinfo[16..modinfo.len() - 16];
    }
    if let Some(v) = go_version.strip_prefix("go") {
        // `go1.21.5`, possibly with experiments: `go1.22.0 X:nocoverageredesign`.
        let v = v.split_whitespace().next().unwrap_or(v);
        out.push(Package::new(Ecosystem::Golang, "stdlib", format!("v{v}"), path));
    }
    let mut last: Option<usize> = None;
    for line in modinfo.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        match f.as_slice() {
            ["mod", module, version, ..] => {
                // A main module built from a checkout reports `(devel)`: nothing to match.
                if *version != "(devel)" {
                    out.push(Package::new(Ecosystem::Golang, *module, *version, path));
                    last = Some(out.len() - 1);
                } else {
                    last = None;
                }
            }
            ["dep", module, version, ..] => {
                out.push(Package::new(Ecosystem::Golang, *module, *version, path));
                last = Some(out.len() - 1);
            }
            ["=>", module, version, ..] => {
                // A replacement of the line before: what is really in the binary. A local
                // directory (`(devel)`, or no version) keeps the required module's name and version.
                if let Some(i) = last
                    && !version.is_empty() && *version != "(devel)" {
                        out[i].name = (*module).to_owned();
                        out[i].version = (*version).to_owned();
                    }
            }
            _ => {}
        }
    }
}

#[derive(Deserialize)]
struct Auditable {
    packages: Vec<AuditablePackage>,
}

#[derive(Deserialize)]
struct AuditablePackage {
    name: String,
    version: String,
    #[serde(default)]
    source: String,
}

fn auditable(path: &str, deps: &[u8], out: &mut Vec<Package>, problems: &mut Problems) {
    let mut json = Vec::new();
    if let Err(e) = flate2::read::ZlibDecoder::new(deps).take(8 << 20).read_to_end(&mut json) {
        return problems.push(("unparsable", format!("cargo-auditable data: {e}")));
    }
    match serde_json::from_slice::<Auditable>(&json) {
        Ok(a) => out.extend(
            a.packages.into_iter().filter(|p| p.source != "local").map(|p| Package::new(Ecosystem::Cargo, p.name, p.version, path)),
        ),
        Err(e) => problems.push(("unparsable", format!("cargo-auditable data: {e}"))),
    }
}

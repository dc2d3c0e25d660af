//! Layers written byte by byte (so hostile ones can be too), and the real-format package files
//! the detectors read.
#![allow(dead_code)]

use std::io::Write;

/// A ustar header block with a correct checksum (or not, when `bad_sum`).
pub fn header(name: &str, typeflag: u8, size: u64, link: &str, mode: u32) -> [u8; 512] {
    let mut h = [0u8; 512];
    let nb = name.as_bytes();
    h[..nb.len().min(100)].copy_from_slice(&nb[..nb.len().min(100)]);
    h[100..108].copy_from_slice(format!("{mode:07o}\0").as_bytes());
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    h[136..148].copy_from_slice(b"00000000000\0");
    h[156] = typeflag;
    let lb = link.as_bytes();
    h[157..157 + lb.len().min(100)].copy_from_slice(&lb[..lb.len().min(100)]);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| b as u32).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h
}

/// A tar layer, entry by entry.
#[derive(Default)]
pub struct Layer {
    pub bytes: Vec<u8>,
}

impl Layer {
    pub fn new() -> Layer {
        Layer::default()
    }

    pub fn raw(mut self, typeflag: u8, name: &str, data: &[u8], link: &str, mode: u32) -> Layer {
        self.bytes.extend_from_slice(&header(name, typeflag, data.len() as u64, link, mode));
        self.bytes.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.bytes.extend(std::iter::repeat_n(0, pad));
        self
    }

    pub fn file(self, name: &str, data: &[u8]) -> Layer {
        self.raw(b'0', name, data, "", 0o644)
    }

    pub fn exe(self, name: &str, data: &[u8]) -> Layer {
        self.raw(b'0', name, data, "", 0o755)
    }

    pub fn dir(self, name: &str) -> Layer {
        self.raw(b'5', name, b"", "", 0o755)
    }

    pub fn symlink(self, name: &str, target: &str) -> Layer {
        self.raw(b'2', name, b"", target, 0o777)
    }

    pub fn hardlink(self, name: &str, target: &str) -> Layer {
        self.raw(b'1', name, b"", target, 0o644)
    }

    /// A whiteout for `path`.
    pub fn whiteout(self, path: &str) -> Layer {
        let (dir, base) = path.rsplit_once('/').map_or(("", path), |(d, b)| (d, b));
        let name = if dir.is_empty() { format!(".wh.{base}") } else { format!("{dir}/.wh.{base}") };
        self.file(&name, b"")
    }

    pub fn opaque(self, dir: &str) -> Layer {
        self.file(&format!("{dir}/.wh..wh..opq"), b"")
    }

    /// A PAX extended header for the next entry.
    pub fn pax(self, records: &[(&str, &str)]) -> Layer {
        let mut data = Vec::new();
        for (k, v) in records {
            let body = format!(" {k}={v}\n");
            let mut len = body.len() + 1;
            while format!("{len}{body}").len() != len {
                len += 1;
            }
            data.extend_from_slice(format!("{len}{body}").as_bytes());
        }
        self.raw(b'x', "PaxHeaders/x", &data, "", 0o644)
    }

    pub fn tar(mut self) -> Vec<u8> {
        self.bytes.extend(std::iter::repeat_n(0, 1024));
        self.bytes
    }

    pub fn gzip(self) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&self.tar()).unwrap();
        gz.finish().unwrap()
    }

    pub fn zstd(self) -> Vec<u8> {
        zstd::encode_all(&self.tar()[..], 1).unwrap()
    }
}

pub const OS_RELEASE_DEBIAN: &str = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nVERSION=\"12 (bookworm)\"\nVERSION_CODENAME=bookworm\nID=debian\n";

/// A dpkg status stanza as dpkg writes it.
pub fn dpkg_stanza(name: &str, version: &str, source: Option<&str>, status: &str) -> String {
    let mut s = format!("Package: {name}\nStatus: {status}\nPriority: optional\nSection: libs\nInstalled-Size: 100\nMaintainer: Debian <debian@example.org>\nArchitecture: amd64\nMulti-Arch: same\n");
    if let Some(src) = source {
        s.push_str(&format!("Source: {src}\n"));
    }
    s.push_str(&format!("Version: {version}\nDepends: libc6 (>= 2.34)\nDescription: a package\n multi-line description\n .\n more\n\n"));
    s
}

/// A jar as `jar` writes it: a manifest and, unless `None`, Maven's pom.properties.
pub fn jar(pom: Option<(&str, &str, &str)>, manifest: &str, nested: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    zip.start_file("META-INF/MANIFEST.MF", opts).unwrap();
    zip.write_all(manifest.as_bytes()).unwrap();
    if let Some((g, a, v)) = pom {
        zip.start_file(format!("META-INF/maven/{g}/{a}/pom.properties"), opts).unwrap();
        zip.write_all(format!("#Created by Apache Maven 3.6.3\nversion={v}\ngroupId={g}\nartifactId={a}\n").as_bytes()).unwrap();
        zip.start_file(format!("META-INF/maven/{g}/{a}/pom.xml"), opts).unwrap();
        zip.write_all(b"<project/>").unwrap();
    }
    zip.start_file("org/example/Main.class", opts).unwrap();
    zip.write_all(&[0xca, 0xfe, 0xba, 0xbe, 0, 0, 0, 55]).unwrap();
    for (name, bytes) in nested {
        zip.start_file(*name, zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored)).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

/// A deterministic xorshift, so a failure names its iteration and reproduces.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

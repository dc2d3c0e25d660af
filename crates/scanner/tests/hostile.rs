//! Hostile and damaged layers: each ends in a problem entry naming what happened, never a panic,
//! and what could be read before (and after, where the stream allows) is still reported.

mod common;
use common::*;
use scanner::{Ecosystem, Inventory, Limits, Scanner};
use std::io::Write;

fn scan_with(limits: Limits, layers: &[Vec<u8>]) -> Inventory {
    let mut s = Scanner::new(limits);
    for (i, bytes) in layers.iter().enumerate() {
        s.add_layer(&format!("sha256:{i}"), &bytes[..]);
    }
    s.finish()
}

fn scan(layers: &[Vec<u8>]) -> Inventory {
    scan_with(Limits::default(), layers)
}

fn codes(inv: &Inventory) -> Vec<&str> {
    inv.problems.iter().map(|p| p.code.as_ref()).collect()
}

fn npm(name: &str) -> Vec<u8> {
    format!(r#"{{"name":"{name}","version":"1.0.0"}}"#).into_bytes()
}

fn has_npm(inv: &Inventory, name: &str) -> bool {
    inv.packages.iter().any(|p| p.ecosystem == Ecosystem::Npm && p.name == name)
}

#[test]
fn traversal_and_absolute_paths() {
    let layer = Layer::new()
        .file("../../etc/cron.d/evil/node_modules/x/package.json", &npm("escaped"))
        .file("a/../../node_modules/y/package.json", &npm("escaped-too"))
        .file("/srv/node_modules/abs/package.json", &npm("abs"))
        .file("ok/node_modules/fine/package.json", &npm("fine"));
    let inv = scan(&[layer.tar()]);
    assert_eq!(codes(&inv), vec!["path-traversal", "path-traversal", "absolute-path"]);
    assert!(!has_npm(&inv, "escaped") && !has_npm(&inv, "escaped-too"));
    assert!(has_npm(&inv, "abs"), "an absolute path is read relative to the root");
    assert_eq!(inv.packages.iter().find(|p| p.name == "abs").unwrap().path, "srv/node_modules/abs/package.json");
    assert!(has_npm(&inv, "fine"));
}

#[test]
fn symlink_loops_links_to_nowhere_and_devices() {
    let layer = Layer::new()
        .symlink("etc/os-release", "os-release.d")
        .symlink("etc/os-release.d", "os-release")
        .symlink("usr/lib/os-release", "/etc/os-release")
        .hardlink("srv/node_modules/h/package.json", "nowhere/package.json")
        .hardlink("srv/node_modules/up/package.json", "../../outside")
        .raw(b'3', "dev/null", b"", "", 0o666)
        .raw(b'4', "dev/sda", b"", "", 0o660)
        .file("srv/node_modules/real/package.json", &npm("real"))
        .hardlink("srv/node_modules/real2/package.json", "srv/node_modules/real/package.json");
    let inv = scan(&[layer.tar()]);
    let c = codes(&inv);
    assert!(c.contains(&"symlink-loop"), "{c:?}");
    assert_eq!(c.iter().filter(|c| **c == "device-file").count(), 2, "{c:?}");
    assert!(c.contains(&"hardlink-missing") && c.contains(&"path-traversal"), "{c:?}");
    assert!(inv.os.is_none());
    assert!(has_npm(&inv, "real"));
    assert_eq!(inv.packages.iter().filter(|p| p.name == "real").count(), 2, "a hard link to a package file is that package, at its own path");
}

#[test]
fn huge_extension_headers_are_skipped_not_read() {
    let long = "x".repeat(2 << 20);
    let layer = Layer::new()
        .pax(&[("path", &long)])
        .file("first/node_modules/a/package.json", &npm("after-pax"))
        .raw(b'L', "././@LongLink", &vec![b'y'; 3 << 20], "", 0o644)
        .file("second/node_modules/b/package.json", &npm("after-longname"));
    let inv = scan(&[layer.tar()]);
    assert_eq!(codes(&inv), vec!["extension-header", "extension-header"]);
    assert!(has_npm(&inv, "after-pax") && has_npm(&inv, "after-longname"), "framing is kept: {:#?}", inv.packages);
}

#[test]
fn pax_and_gnu_long_names_and_sizes_are_honoured() {
    let deep = format!("{}/node_modules/deep/package.json", "d".repeat(150));
    let gnu = format!("{}/node_modules/gnu/package.json", "g".repeat(120));
    let body = npm("sized");
    let layer = Layer::new()
        .pax(&[("path", &deep)])
        .file("short-name-ignored", &npm("deep"))
        .raw(b'L', "././@LongLink", format!("{gnu}\0").as_bytes(), "", 0o644)
        .file("ignored-too", &npm("gnu"))
        .file("z/node_modules/sized/package.json", &body);
    let inv = scan(&[layer.tar()]);
    assert!(inv.problems.is_empty(), "{:#?}", inv.problems);
    let deep_pkg = inv.packages.iter().find(|p| p.name == "deep").expect("PAX path used");
    assert_eq!(deep_pkg.path, deep);
    assert_eq!(inv.packages.iter().find(|p| p.name == "gnu").unwrap().path, gnu);
    assert!(has_npm(&inv, "sized"));
}

#[test]
fn a_gzip_bomb_stops_at_the_image_limit() {
    // 256 MiB of zeros inside one file: about 250 KiB compressed.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let head = Layer::new().file("first/node_modules/early/package.json", &npm("early")).bytes;
    gz.write_all(&head).unwrap();
    gz.write_all(&header("bomb", b'0', 256 << 20, "", 0o644)).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..256 {
        gz.write_all(&zeros).unwrap();
    }
    let bomb = gz.finish().unwrap();
    assert!(bomb.len() < 1 << 20);
    let later = Layer::new().file("later/node_modules/late/package.json", &npm("late")).tar();
    let limits = Limits { max_image: 64 << 20, ..Limits::default() };
    let inv = scan_with(limits, &[bomb, later]);
    let c = codes(&inv);
    assert_eq!(c, vec!["image-too-large", "image-too-large"], "{:#?}", inv.problems);
    assert!(has_npm(&inv, "early"), "what was read before the limit is kept");
    assert!(!has_npm(&inv, "late"), "nothing after the limit is read");
    assert!(inv.bytes <= 64 << 20);
}

#[test]
fn truncated_garbage_and_corrupt_layers() {
    let good = Layer::new().file("a/node_modules/before/package.json", &npm("before")).file("pad", &vec![7u8; 100_000]).file("b/node_modules/after/package.json", &npm("after"));
    let gz = good.gzip();
    let cut = gz[..gz.len() / 2].to_vec();
    let inv = scan(&[cut]);
    assert_eq!(codes(&inv), vec!["layer-unreadable"]);
    assert!(has_npm(&inv, "before") && !has_npm(&inv, "after"));

    let inv = scan(&[b"this is not a layer at all, just text that goes on".repeat(20)]);
    assert_eq!(codes(&inv), vec!["layer-unreadable"]);
    assert!(inv.problems[0].message.contains("checksum"), "{}", inv.problems[0].message);

    let mut bad = Layer::new().file("n/node_modules/x/package.json", &npm("x")).tar();
    bad[148] = b'7';
    let inv = scan(&[bad]);
    assert_eq!(codes(&inv), vec!["layer-unreadable"]);

    // gzip magic with garbage after it; zstd magic with garbage after it.
    let inv = scan(&[vec![0x1f, 0x8b, 8, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9], vec![0x28, 0xb5, 0x2f, 0xfd, 1, 2, 3]]);
    assert_eq!(codes(&inv), vec!["layer-unreadable", "layer-unreadable"]);
    assert_eq!(inv.problems[1].layer.as_deref(), Some("sha256:1"));
}

#[test]
fn archives_too_large_too_deep_or_broken() {
    let limits = Limits { max_file: 64 << 10, max_nesting: 2, ..Limits::default() };
    let big = vec![1u8; 100 << 10];
    let inner = jar(Some(("g", "inner", "1.0")), "Manifest-Version: 1.0\n\n", &[]);
    let middle = jar(Some(("g", "middle", "1.0")), "Manifest-Version: 1.0\n\n", &[("lib/inner.jar", inner)]);
    let outer = jar(Some(("g", "outer", "1.0")), "Manifest-Version: 1.0\n\n", &[("lib/middle.jar", middle)]);
    let layer = Layer::new()
        .file("big.jar", &big)
        .file("broken.jar", b"PK\x03\x04 not really a zip")
        .file("nested.jar", &outer)
        .exe("usr/bin/big-binary", &big);
    let inv = scan_with(limits, &[layer.tar()]);
    let c = codes(&inv);
    assert_eq!(c.iter().filter(|c| **c == "file-too-large").count(), 2, "{c:?}");
    assert!(c.contains(&"unparsable") && c.contains(&"unsupported"), "{c:?}");
    let names: Vec<&str> = inv.packages.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, vec!["g:middle", "g:outer"]);
}

#[test]
fn malformed_package_files_do_not_stop_the_scan() {
    let layer = Layer::new()
        .file("var/lib/dpkg/status", b"\xff\xfe garbage\n\nPackage: ok\nStatus: install ok installed\nVersion: 1.0\n")
        .file("src/Cargo.lock", b"[[package]\nname = ")
        .file("app/x.deps.json", b"{not json")
        .file("var/lib/rpm/rpmdb.sqlite", b"SQLite format 3\0 but then nothing")
        .file("var/lib/rpm/Packages", b"\0\0\0\0 berkeley")
        .file("m/node_modules/bad/package.json", b"{\"name\": 5}")
        .exe("usr/bin/fake-elf", b"\x7fELF\x02\x01\x01\0 and then truncated garbage, long enough to be read as a binary")
        .file("n/node_modules/good/package.json", &npm("good"));
    let inv = scan(&[layer.tar()]);
    assert!(has_npm(&inv, "good"));
    assert!(inv.packages.iter().any(|p| p.name == "ok"));
    let c = codes(&inv);
    assert_eq!(c.iter().filter(|c| **c == "unparsable").count(), 4, "{:#?}", inv.problems);
}

/// Recomputes the checksum of the header block at `at`, so mutations reach past the check.
fn fix_checksum(tar: &mut [u8], at: usize) {
    let block = &mut tar[at..at + 512];
    block[148..156].copy_from_slice(b"        ");
    let sum: u32 = block.iter().map(|&b| b as u32).sum();
    block[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}

#[test]
fn thousands_of_mutated_layers_end_in_problems_never_panics() {
    let status = dpkg_stanza("libc6", "2.36-9", Some("glibc"), "install ok installed");
    let inner = jar(Some(("g", "a", "1.0")), "Manifest-Version: 1.0\n\n", &[]);
    let outer = jar(Some(("g", "b", "2.0")), "Manifest-Version: 1.0\n\n", &[("lib/a.jar", inner)]);
    let base = Layer::new()
        .pax(&[("path", &format!("{}/node_modules/p/package.json", "x".repeat(120)))])
        .file("ignored", &npm("p"))
        .raw(b'L', "././@LongLink", format!("{}/node_modules/q/package.json\0", "y".repeat(110)).as_bytes(), "", 0o644)
        .file("ignored2", &npm("q"))
        .file("var/lib/dpkg/status", status.as_bytes())
        .symlink("etc/os-release", "../usr/lib/os-release")
        .file("usr/lib/os-release", OS_RELEASE_DEBIAN.as_bytes())
        .file("app/app.jar", &outer)
        .hardlink("app/copy.jar", "app/app.jar")
        .whiteout("old/thing")
        .tar();
    // Header block offsets, to aim at.
    let mut headers = Vec::new();
    let mut at = 0;
    while at + 512 <= base.len() && base[at..at + 512].iter().any(|&b| b != 0) {
        headers.push(at);
        let size = u64::from_str_radix(std::str::from_utf8(&base[at + 124..at + 135]).unwrap().trim_matches(char::from(0)).trim(), 8).unwrap_or(0);
        let data = if matches!(base[at + 156], b'1' | b'2' | b'3' | b'4' | b'5' | b'6') { 0 } else { size as usize };
        at += 512 + data.div_ceil(512) * 512;
    }
    assert!(headers.len() >= 10);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut problems = 0;
    for i in 0..3000 {
        let mut t = base.clone();
        match i % 4 {
            // Random bytes anywhere.
            0 => {
                for _ in 0..1 + rng.below(8) {
                    let k = rng.below(t.len());
                    t[k] = rng.next() as u8;
                }
            }
            // A header field rewritten, checksum fixed: size, type, name, link, mode, prefix.
            1 | 2 => {
                let h = headers[rng.below(headers.len())];
                let (start, len) = [(124, 12), (156, 1), (0, 100), (157, 100), (100, 8), (345, 155)][rng.below(6)];
                for k in 0..1 + rng.below(len) {
                    t[h + start + k] = match rng.below(4) {
                        0 => b'7',
                        1 => 0,
                        2 => 0xff,
                        _ => rng.next() as u8,
                    };
                }
                fix_checksum(&mut t, h);
            }
            // Truncated anywhere.
            _ => t.truncate(rng.below(t.len())),
        }
        let gz = i % 10 == 0;
        let bytes = if gz {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(&t).unwrap();
            e.finish().unwrap()
        } else {
            t
        };
        let limits = Limits { max_file: 1 << 20, max_image: 8 << 20, ..Limits::default() };
        let inv = std::panic::catch_unwind(|| scan_with(limits, &[bytes])).unwrap_or_else(|_| panic!("iteration {i} panicked"));
        problems += inv.problems.len();
    }
    assert!(problems > 500, "mutations were noticed: {problems} problems");
}

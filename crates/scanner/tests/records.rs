//! A layer inspected once stands for itself in every image that holds it: its record, applied in
//! place of reading it (on another base, at another position, after a round trip through its
//! stored form), gives the very inventory and findings a full read gives — whiteouts, opaque
//! directories, a file over a directory, a rewritten dpkg status and the layer each package is
//! attributed to, secrets, malware and file modes included. Layers that were not read whole are
//! not recorded.

mod common;
use common::*;
use scanner::malware::MalwareScanner;
use scanner::secrets::SecretScanner;
use scanner::{Inspection, Inventory, LayerRecord, Limits, Scanner};
use std::sync::Arc;

fn inspection() -> Inspection {
    Inspection {
        secrets: Some(Arc::new(SecretScanner::new(&[]).unwrap())),
        malware: Some(Arc::new(MalwareScanner::new(&[], &[]).unwrap())),
        external: Vec::new(),
        misconfig: true,
    }
}

fn token(seed: u64) -> String {
    let mut rng = Rng(seed);
    let alnum = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let body: String = (0..36).map(|_| alnum[rng.below(alnum.len())] as char).collect();
    format!("ghp_{body}")
}

fn eicar() -> String {
    ["X5O!P%@AP[4\\PZX54(P^)7CC)7}", "$EICAR-STANDARD-", "ANTIVIRUS-TEST-FILE!$H+H*"].concat()
}

/// A layer given by its digest: read (its bytes) or applied (its record).
enum Part<'a> {
    Read(&'a str, &'a [u8]),
    Applied(LayerRecord),
}

fn scan(parts: Vec<Part>, config: &str) -> (Inventory, Vec<LayerRecord>) {
    let mut s = Scanner::new(Limits::default()).with_inspection(inspection()).recording();
    for p in parts {
        match p {
            Part::Read(digest, bytes) => s.add_layer(digest, bytes),
            Part::Applied(record) => s.add_recorded_layer(record),
        }
    }
    s.add_config(config.as_bytes());
    s.finish_recorded()
}

fn record_of<'a>(records: &'a [LayerRecord], digest: &str) -> &'a LayerRecord {
    records.iter().find(|r| r.digest == digest).unwrap_or_else(|| panic!("no record of {digest}"))
}

/// Through the stored form, as the registry keeps it.
fn stored(r: &LayerRecord) -> LayerRecord {
    LayerRecord::from_bytes(&r.to_bytes()).unwrap()
}

#[test]
fn an_applied_record_gives_what_reading_the_layer_gives() {
    let config = r#"{"config":{"User":"app","Env":["PATH=/usr/bin"]},"history":[]}"#;
    let status1 = dpkg_stanza("libc6", "2.36-9+deb12u3", Some("glibc"), "install ok installed")
        + &dpkg_stanza("openssl", "3.0.11-1~deb12u2", None, "install ok installed");
    let l1 = Layer::new()
        .symlink("etc/os-release", "../usr/lib/os-release")
        .file("usr/lib/os-release", OS_RELEASE_DEBIAN.as_bytes())
        .file("var/lib/dpkg/status", status1.as_bytes())
        .raw(b'0', "usr/bin/helper", b"#!/bin/sh\n", "", 0o4755)
        .file("srv/node_modules/gone/package.json", br#"{"name":"gone","version":"1.0.0"}"#)
        .file("etc/app.env", format!("GITHUB_TOKEN={}\n", token(7)).as_bytes())
        .gzip();
    // dpkg rewrites its status: libc6 stays attributed to l1, curl arrives with l2.
    let status2 = status1.clone() + &dpkg_stanza("curl", "7.88.1-10+deb12u5", None, "install ok installed");
    let site = "usr/lib/python3/dist-packages";
    let l2 = Layer::new()
        .file("var/lib/dpkg/status", status2.as_bytes())
        .file(&format!("{site}/six-1.16.0.dist-info/METADATA"), b"Metadata-Version: 2.1\nName: six\nVersion: 1.16.0\n\n")
        .file(&format!("{site}/requests-2.30.0.dist-info/METADATA"), b"Metadata-Version: 2.1\nName: requests\nVersion: 2.30.0\n\n")
        .file("app/node_modules/lodash/package.json", br#"{"name":"lodash","version":"4.17.20"}"#)
        .hardlink("app/lodash-package.json", "app/node_modules/lodash/package.json")
        .file("tmp/eicar.com", eicar().as_bytes())
        .zstd();
    let l3 = Layer::new()
        .whiteout(&format!("{site}/six-1.16.0.dist-info"))
        .opaque("app/node_modules")
        .file("app/node_modules/express/package.json", br#"{"name":"express","version":"4.17.1"}"#)
        .file("srv/node_modules", b"a file over a directory")
        .file("etc/os-release", b"ID=debian\nVERSION_ID=\"11\"\nVERSION_CODENAME=bullseye\n")
        .raw(b'0', "etc/world", b"x", "", 0o666)
        .file("home/app/.env", format!("GITHUB_TOKEN={}\n", token(11)).as_bytes())
        .tar();
    let (whole, records) = scan(vec![Part::Read("sha256:l1", &l1), Part::Read("sha256:l2", &l2), Part::Read("sha256:l3", &l3)], config);
    assert_eq!(records.len(), 3, "every layer read whole is recorded");
    // What the full read found, so that the comparisons below compare something.
    let names: Vec<(&str, Option<&str>)> = whole.packages.iter().map(|p| (p.name.as_str(), p.layer.as_deref())).collect();
    for want in [("libc6", Some("sha256:l1")), ("curl", Some("sha256:l2")), ("requests", Some("sha256:l2")), ("express", Some("sha256:l3"))] {
        assert!(names.contains(&want), "{want:?} in {names:?}");
    }
    for gone in ["six", "gone"] {
        assert!(!names.iter().any(|(n, _)| *n == gone), "{gone} is hidden: {names:?}");
    }
    let lodash: Vec<&str> = whole.packages.iter().filter(|p| p.name == "lodash").map(|p| p.path.as_str()).collect();
    assert_eq!(lodash, ["app/lodash-package.json"], "under the opaque directory it is gone; its hard link stays");
    assert_eq!(whole.os.as_ref().map(|o| o.version.as_str()), Some("11"), "l3's os-release replaced the symlink");
    assert_eq!(whole.secrets.len(), 2, "{:?}", whole.secrets);
    assert!(whole.malware.iter().all(|m| m.path == "tmp/eicar.com") && !whole.malware.is_empty(), "{:?}", whole.malware);
    let modes: Vec<&str> = whole.misconfigurations.iter().map(|m| m.id.as_ref()).collect();
    assert!(modes.contains(&"setuid-file") && modes.contains(&"world-writable"), "{modes:?}");

    // l3 recorded on another base, at another position.
    let other = Layer::new().file("opt/other/package.json", br#"{"name":"other","version":"9.9.9"}"#).tar();
    let (_, elsewhere) = scan(vec![Part::Read("sha256:other", &other), Part::Read("sha256:x", &Layer::new().tar()), Part::Read("sha256:l3", &l3)], config);
    let r3 = stored(record_of(&elsewhere, "sha256:l3"));
    let (r1, r2) = (stored(record_of(&records, "sha256:l1")), stored(record_of(&records, "sha256:l2")));

    let expected = serde_json::to_value(&whole).unwrap();
    let (applied, fresh) = scan(vec![Part::Applied(r1.clone()), Part::Applied(r2.clone()), Part::Applied(r3.clone())], config);
    assert_eq!(serde_json::to_value(&applied).unwrap(), expected, "every layer from its record");
    assert!(fresh.is_empty(), "nothing was read, nothing new recorded");
    let (mixed, fresh) = scan(vec![Part::Applied(r1), Part::Read("sha256:l2", &l2), Part::Applied(r3)], config);
    assert_eq!(serde_json::to_value(&mixed).unwrap(), expected, "records and a read layer together");
    assert_eq!(fresh.iter().map(|r| r.digest.as_str()).collect::<Vec<_>>(), ["sha256:l2"]);
    // The base alone, from its record: its own packages, attributed to it.
    let (base, _) = scan(vec![Part::Applied(r2)], config);
    assert!(base.packages.iter().all(|p| p.layer.as_deref() == Some("sha256:l2")), "{:?}", base.packages);
}

#[test]
fn layers_not_read_whole_are_not_recorded() {
    let good = Layer::new().file("app/package.json", br#"{"name":"app","version":"1.0.0"}"#).gzip();
    let mut cut = Layer::new().file("app/big.bin", &vec![7u8; 1 << 20]).gzip();
    cut.truncate(cut.len() / 2);
    let mut s = Scanner::new(Limits::default()).recording();
    s.add_layer("sha256:good", &good[..]);
    s.add_layer("sha256:cut", &cut[..]);
    let (inv, records) = s.finish_recorded();
    assert!(inv.problems.iter().any(|p| p.code == "layer-unreadable"), "{:?}", inv.problems);
    assert_eq!(records.iter().map(|r| r.digest.as_str()).collect::<Vec<_>>(), ["sha256:good"], "a layer cut short is read again next time");

    // Past the image's size limit: neither the layer that crossed it nor those after it.
    let limits = Limits { max_image: 512 << 10, ..Limits::default() };
    let mut s = Scanner::new(limits).recording();
    s.add_layer("sha256:good", &good[..]);
    s.add_layer("sha256:big", &Layer::new().file("a", &vec![0u8; 1 << 20]).gzip()[..]);
    s.add_layer("sha256:after", &good[..]);
    let (_, records) = s.finish_recorded();
    assert_eq!(records.iter().map(|r| r.digest.as_str()).collect::<Vec<_>>(), ["sha256:good"]);

    // A layer twice in one image cannot tell its findings from its twin's.
    let mut s = Scanner::new(Limits::default()).recording();
    s.add_layer("sha256:good", &good[..]);
    s.add_layer("sha256:good", &good[..]);
    assert!(s.finish_recorded().1.is_empty());

    // Not recording: nothing kept.
    let mut s = Scanner::new(Limits::default());
    s.add_layer("sha256:good", &good[..]);
    assert!(s.finish_recorded().1.is_empty());
    // A damaged stored form is an error, not a panic.
    assert!(LayerRecord::from_bytes(b"not gzip").is_err());
}

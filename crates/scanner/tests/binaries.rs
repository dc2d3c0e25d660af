//! Executables and rpm databases made by the real tools in the test: a Go binary built by `go
//! build` (Go ≥ 1.18 build info, with a replaced dependency), and an rpmdb.sqlite written by
//! `rpm --justdb` from a package `rpmbuild` made, and a Rust binary `cargo auditable` built (its
//! section is also checked on hand-written ELF files, for the failure cases).
//!
//! A BerkeleyDB `Packages` file (RHEL/CentOS ≤ 8) is written by BerkeleyDB's own `db_load` from the
//! headers of packages rpmbuild made.
//!
//! The test command installs golang-go, rpm, db5.3-util and cargo-auditable; without them these tests fail with a
//! message saying so.

mod common;
use common::*;
use scanner::{Ecosystem, Limits, Scanner};
use std::io::Write;
use std::path::Path;
use std::process::Command;

fn tool(name: &str) {
    let ok = Command::new("sh").arg("-c").arg(format!("command -v {name}")).output().is_ok_and(|o| o.status.success());
    assert!(ok, "{name} is needed (scripts/test.sh installs it from Debian's packages)");
}

fn scan_layer(layer: Layer) -> scanner::Inventory {
    let mut s = Scanner::new(Limits::default());
    s.add_layer("sha256:bin", &layer.gzip()[..]);
    s.finish()
}

#[test]
fn go_build_info_from_a_real_go_binary() {
    tool("go");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("app")).unwrap();
    std::fs::create_dir_all(d.join("text")).unwrap();
    std::fs::write(d.join("text/go.mod"), "module golang.org/x/text\n\ngo 1.18\n").unwrap();
    std::fs::write(d.join("text/text.go"), "package text\n\nfunc Hello() string { return \"hello\" }\n").unwrap();
    std::fs::write(
        d.join("app/go.mod"),
        "module example.com/app\n\ngo 1.18\n\nrequire golang.org/x/text v0.3.6\n\nreplace golang.org/x/text v0.3.6 => ../text\n",
    )
    .unwrap();
    std::fs::write(d.join("app/main.go"), "package main\n\nimport (\n\t\"fmt\"\n\t\"golang.org/x/text\"\n)\n\nfunc main() { fmt.Println(text.Hello()) }\n").unwrap();
    let out = Command::new("go")
        .args(["build", "-o", "../app-bin", "."])
        .current_dir(d.join("app"))
        .env("GOFLAGS", "-mod=mod")
        .env("GOPROXY", "off")
        .env("GOCACHE", d.join("cache"))
        .env("GOPATH", d.join("gopath"))
        .output()
        .unwrap();
    assert!(out.status.success(), "go build: {}", String::from_utf8_lossy(&out.stderr));
    let bin = std::fs::read(d.join("app-bin")).unwrap();
    let go_version = String::from_utf8(Command::new("go").arg("env").arg("GOVERSION").output().unwrap().stdout).unwrap();
    let inv = scan_layer(Layer::new().exe("usr/local/bin/app", &bin));
    assert!(inv.problems.is_empty(), "{:#?}", inv.problems);
    let go: Vec<(&str, &str)> = inv.packages.iter().filter(|p| p.ecosystem == Ecosystem::Golang).map(|p| (p.name.as_str(), p.version.as_str())).collect();
    let stdlib = format!("v{}", go_version.trim().trim_start_matches("go"));
    assert!(go.contains(&("stdlib", stdlib.as_str())), "{go:?}");
    // The replaced dependency keeps its required version (a local directory has none).
    assert!(go.contains(&("golang.org/x/text", "v0.3.6")), "{go:?}");
    let text = inv.packages.iter().find(|p| p.name == "golang.org/x/text").unwrap();
    assert_eq!(text.purl, "pkg:golang/golang.org/x/text@v0.3.6");
    assert_eq!(text.path, "usr/local/bin/app");
    // The main module was built from a checkout: `(devel)`, nothing to match.
    assert!(!go.iter().any(|(n, _)| *n == "example.com/app"));
}

/// A minimal ELF64 file with the given sections (name, bytes) and their section headers.
fn elf(sections: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut b = vec![0u8; 64];
    b[..4].copy_from_slice(b"\x7fELF");
    b[4] = 2; // 64-bit
    b[5] = 1; // little endian
    b[6] = 1;
    let mut offsets = Vec::new();
    for (_, data) in sections {
        offsets.push(b.len());
        b.extend_from_slice(data);
    }
    let mut names = vec![0u8];
    let mut name_offsets = Vec::new();
    for (n, _) in sections.iter().chain([(".shstrtab", Vec::new())].iter()) {
        name_offsets.push(names.len());
        names.extend_from_slice(n.as_bytes());
        names.push(0);
    }
    let strtab_off = b.len();
    b.extend_from_slice(&names);
    while !b.len().is_multiple_of(8) {
        b.push(0);
    }
    let shoff = b.len();
    let sh = |name: u32, kind: u32, off: u64, size: u64| {
        let mut h = vec![0u8; 64];
        h[0..4].copy_from_slice(&name.to_le_bytes());
        h[4..8].copy_from_slice(&kind.to_le_bytes());
        h[0x18..0x20].copy_from_slice(&off.to_le_bytes());
        h[0x20..0x28].copy_from_slice(&size.to_le_bytes());
        h
    };
    b.extend(sh(0, 0, 0, 0));
    for (i, (_, data)) in sections.iter().enumerate() {
        b.extend(sh(name_offsets[i] as u32, 1, offsets[i] as u64, data.len() as u64));
    }
    b.extend(sh(name_offsets[sections.len()] as u32, 3, strtab_off as u64, names.len() as u64));
    let shnum = sections.len() as u16 + 2;
    b[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
    b[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
    b[0x3c..0x3e].copy_from_slice(&shnum.to_le_bytes());
    b[0x3e..0x40].copy_from_slice(&(shnum - 1).to_le_bytes());
    b
}

#[test]
fn a_binary_built_by_cargo_auditable() {
    tool("cargo-auditable");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("src")).unwrap();
    std::fs::write(
        d.join("Cargo.toml"),
        "[package]\nname = \"audited\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\nsmallvec = \"=1.6.0\"\n\n[workspace]\n",
    )
    .unwrap();
    std::fs::write(d.join("src/main.rs"), "fn main() { let v: smallvec::SmallVec<[u8; 4]> = smallvec::smallvec![1, 2]; println!(\"{}\", v.len()); }\n").unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // Its own target directory: the test's cargo holds the workspace's build lock.
    let out = Command::new(cargo).args(["auditable", "build", "--quiet"]).current_dir(d).env("CARGO_TARGET_DIR", d.join("target")).output().unwrap();
    assert!(out.status.success(), "cargo auditable build: {}", String::from_utf8_lossy(&out.stderr));
    let bin = std::fs::read(d.join("target/debug/audited")).unwrap();
    let inv = scan_layer(Layer::new().exe("usr/local/bin/audited", &bin));
    assert!(inv.problems.is_empty(), "{:#?}", inv.problems);
    let cargo: Vec<(&str, &str)> = inv.packages.iter().map(|p| (p.name.as_str(), p.version.as_str())).collect();
    assert_eq!(cargo, vec![("smallvec", "1.6.0")], "the dependency, not the binary's own crate");
    assert_eq!(inv.packages[0].purl, "pkg:cargo/smallvec@1.6.0");
}

#[test]
fn cargo_auditable_dependency_section() {
    let json = r#"{"packages":[{"name":"app","version":"0.1.0","source":"local","kind":"runtime","dependencies":[1],"root":true},{"name":"smallvec","version":"1.6.0","source":"crates.io"},{"name":"time","version":"0.3.46","source":"crates.io"}]}"#;
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(json.as_bytes()).unwrap();
    let bin = elf(&[(".text", vec![0x90; 128]), (".dep-v0", z.finish().unwrap())]);
    let inv = scan_layer(Layer::new().exe("usr/bin/tool", &bin).exe("usr/bin/plain", &elf(&[(".text", vec![0xc3; 64])])));
    assert!(inv.problems.is_empty(), "{:#?}", inv.problems);
    let cargo: Vec<(&str, &str)> = inv.packages.iter().map(|p| (p.name.as_str(), p.version.as_str())).collect();
    assert_eq!(cargo, vec![("smallvec", "1.6.0"), ("time", "0.3.46")]);
    assert_eq!(inv.packages[0].purl, "pkg:cargo/smallvec@1.6.0");
    // A corrupt section is a problem, not a crash.
    let bad = elf(&[(".dep-v0", b"not zlib at all".to_vec())]);
    let inv = scan_layer(Layer::new().exe("usr/bin/bad", &bad));
    assert_eq!(inv.problems.len(), 1);
    assert_eq!(inv.problems[0].code, "unparsable");
}

fn rpm_package(dir: &Path, name: &str, epoch: Option<u32>, version: &str, release: &str) -> std::path::PathBuf {
    let top = dir.join("rpmbuild");
    for d in ["SPECS", "RPMS", "BUILD", "BUILDROOT", "SOURCES", "SRPMS"] {
        std::fs::create_dir_all(top.join(d)).unwrap();
    }
    let epoch = epoch.map(|e| format!("Epoch: {e}\n")).unwrap_or_default();
    let spec = format!(
        "Name: {name}\n{epoch}Version: {version}\nRelease: {release}\nSummary: test package\nLicense: Apache-2.0\nBuildArch: noarch\n\n%description\nA package for the scanner's tests.\n\n%files\n"
    );
    let spec_path = top.join(format!("SPECS/{name}.spec"));
    std::fs::write(&spec_path, spec).unwrap();
    let out = Command::new("rpmbuild")
        .arg("--define").arg(format!("_topdir {}", top.display()))
        .arg("--define").arg("_build_id_links none")
        .arg("-bb").arg(&spec_path)
        .output()
        .unwrap();
    assert!(out.status.success(), "rpmbuild: {}", String::from_utf8_lossy(&out.stderr));
    let rpms = top.join("RPMS/noarch");
    std::fs::read_dir(&rpms).unwrap().flatten().map(|e| e.path()).find(|p| p.file_name().unwrap().to_string_lossy().starts_with(&format!("{name}-"))).unwrap()
}

#[test]
fn rpmdb_sqlite_written_by_rpm() {
    tool("rpmbuild");
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    std::fs::create_dir_all(&db).unwrap();
    let mut pkgs = vec![rpm_package(dir.path(), "openssl-libs", Some(1), "3.0.1", "43.el9_0"), rpm_package(dir.path(), "xz-libs", None, "5.2.5", "7.el9")];
    // Enough packages that the table spans several b-tree pages.
    for i in 0..40 {
        pkgs.push(rpm_package(dir.path(), &format!("filler{i}"), None, "1.0", "1.el9"));
    }
    let out = Command::new("rpm")
        .arg("--dbpath").arg(&db)
        .args(["-i", "--justdb", "--nodeps", "--nosignature", "--ignorearch", "--ignoreos"])
        .args(&pkgs)
        .output()
        .unwrap();
    assert!(out.status.success(), "rpm -i: {}", String::from_utf8_lossy(&out.stderr));
    let sqlite = std::fs::read(db.join("rpmdb.sqlite")).expect("rpm wrote rpmdb.sqlite");
    let layer = Layer::new()
        .file("etc/os-release", b"NAME=\"AlmaLinux\"\nVERSION=\"9.3 (Shamrock Pampas Cat)\"\nID=\"almalinux\"\nVERSION_ID=\"9.3\"\n")
        .file("var/lib/rpm/rpmdb.sqlite", &sqlite);
    let inv = scan_layer(layer);
    assert!(inv.problems.is_empty(), "{:#?}", inv.problems);
    assert_eq!(inv.packages.len(), 42);
    let ssl = inv.packages.iter().find(|p| p.name == "openssl-libs").unwrap();
    assert_eq!(ssl.version, "1:3.0.1-43.el9_0");
    assert_eq!(ssl.purl, "pkg:rpm/almalinux/openssl-libs@3.0.1-43.el9_0?arch=noarch&distro=almalinux-9.3&epoch=1");
    assert_eq!(ssl.advisory_queries(inv.os.as_ref())[0].0, "AlmaLinux:9");
    let xz = inv.packages.iter().find(|p| p.name == "xz-libs").unwrap();
    assert_eq!(xz.version, "5.2.5-7.el9");
    assert_eq!(xz.license.as_deref(), Some("Apache-2.0"));
}

/// The main header of an .rpm file, as the rpm database stores it (without the 8-byte magic):
/// lead (96 bytes), signature header (padded to 8), then the header.
fn rpm_main_header(rpm: &[u8]) -> Vec<u8> {
    let be32 = |at: usize| u32::from_be_bytes(rpm[at..at + 4].try_into().unwrap()) as usize;
    let sig = 96;
    assert_eq!(&rpm[sig..sig + 3], b"\x8e\xad\xe8", "signature header magic");
    let sig_len = 16 + be32(sig + 8) * 16 + be32(sig + 12);
    let main = sig + sig_len.div_ceil(8) * 8;
    assert_eq!(&rpm[main..main + 3], b"\x8e\xad\xe8", "main header magic");
    let len = 8 + be32(main + 8) * 16 + be32(main + 12);
    rpm[main + 8..main + 8 + len].to_vec()
}

#[test]
fn berkeleydb_packages_written_by_db_load() {
    tool("rpmbuild");
    tool("db5.3_load");
    let dir = tempfile::tempdir().unwrap();
    let mut pkgs = vec![rpm_package(dir.path(), "openssl-libs", Some(1), "1.0.2k", "25.el7_9"), rpm_package(dir.path(), "bash", None, "4.2.46", "35.el7_9")];
    for i in 0..30 {
        pkgs.push(rpm_package(dir.path(), &format!("filler{i}"), None, "1.0", "1.el7"));
    }
    // db_load's printable dump format: hex key and value lines.
    let mut dump = String::from("VERSION=3\nformat=bytevalue\ntype=hash\nHEADER=END\n");
    for (i, p) in pkgs.iter().enumerate() {
        let header = rpm_main_header(&std::fs::read(p).unwrap());
        let key: String = ((i + 1) as u32).to_le_bytes().iter().map(|b| format!("{b:02x}")).collect();
        let value: String = header.iter().map(|b| format!("{b:02x}")).collect();
        dump.push_str(&format!(" {key}\n {value}\n"));
    }
    dump.push_str("DATA=END\n");
    std::fs::write(dir.path().join("dump"), dump).unwrap();
    let db = dir.path().join("Packages");
    let out = Command::new("db5.3_load").arg("-f").arg(dir.path().join("dump")).arg(&db).output().unwrap();
    assert!(out.status.success(), "db_load: {}", String::from_utf8_lossy(&out.stderr));
    let layer = Layer::new()
        .file("etc/os-release", b"NAME=\"CentOS Linux\"\nID=\"centos\"\nVERSION_ID=\"7\"\n")
        .file("var/lib/rpm/Packages", &std::fs::read(&db).unwrap());
    let inv = scan_layer(layer);
    assert!(inv.problems.is_empty(), "{:#?}", inv.problems);
    assert_eq!(inv.packages.len(), 32);
    let ssl = inv.packages.iter().find(|p| p.name == "openssl-libs").unwrap();
    assert_eq!(ssl.version, "1:1.0.2k-25.el7_9");
    assert_eq!(ssl.purl, "pkg:rpm/centos/openssl-libs@1.0.2k-25.el7_9?arch=noarch&distro=centos-7&epoch=1");
    // A damaged file (a page's entry count overwritten) is a problem, not a crash.
    let mut broken = std::fs::read(&db).unwrap();
    let page = u32::from_le_bytes(broken[20..24].try_into().unwrap()) as usize;
    broken[page + 20] = 0xff;
    broken[page + 21] = 0x7f;
    let inv = scan_layer(Layer::new().file("var/lib/rpm/Packages", &broken));
    assert_eq!(inv.problems.len(), 1, "{:#?}", inv.problems);
    assert_eq!(inv.problems[0].code, "unparsable");
}

//! Real advisory records (tests/data, a subset of ../shared/advisories) imported and matched:
//! exact matches for crafted package versions in every ecosystem present, and non-matches just
//! outside each range's boundary.

use advisories::{Db, Rating};
use std::io::Write;
use std::path::{Path, PathBuf};

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

fn db() -> Db {
    let mut db = Db::empty();
    let report = db.import_path(&data(), 1_700_000_000).expect("fixture directory imports");
    assert!(report.problems.iter().all(|p| p.ends_with("README.md: not an OSV JSON record, an Alpine secdb or a DSA/DLA list")), "{:#?}", report.problems);
    db
}

/// The ids of the vulnerabilities found for one package version.
fn ids(db: &Db, eco: &str, name: &str, version: &str) -> Vec<String> {
    db.vulnerabilities(eco, name, version).into_iter().map(|v| v.id).collect()
}

#[track_caller]
fn affected(db: &Db, eco: &str, name: &str, version: &str, id: &str) {
    let found = ids(db, eco, name, version);
    assert!(found.iter().any(|f| f == id), "{eco} {name} {version}: expected {id}, found {found:?}");
}

#[track_caller]
fn not_affected(db: &Db, eco: &str, name: &str, version: &str, id: &str) {
    let found = ids(db, eco, name, version);
    assert!(!found.iter().any(|f| f == id), "{eco} {name} {version}: {id} must not match, found {found:?}");
}

#[test]
fn log4shell_in_log4j_core_with_its_range_boundaries() {
    let db = db();
    let log4j = "org.apache.logging.log4j:log4j-core";
    let v = db.vulnerabilities("Maven", log4j, "2.14.1");
    let shell = v.iter().find(|v| v.id == "CVE-2021-44228").expect("Log4Shell matches 2.14.1");
    assert_eq!(shell.aliases, vec!["GHSA-jfh8-c2jp-5v3q".to_owned()]);
    assert_eq!(shell.fixed_version.as_deref(), Some("2.15.0"));
    let sev = shell.severity.as_ref().unwrap();
    assert_eq!((sev.rating, sev.score, sev.source.as_str()), (Rating::Critical, Some(10.0), "CVSS_V3"));
    // Range [2.13.0, 2.15.0), [0, 2.3.1), [2.4, 2.12.2).
    for v in ["2.13.0", "2.14.0", "2.0-beta9", "2.3.0", "2.4", "2.12.1"] {
        affected(&db, "Maven", log4j, v, "CVE-2021-44228");
    }
    for v in ["2.15.0", "2.17.1", "2.3.1", "2.12.2", "2.12.4"] {
        not_affected(&db, "Maven", log4j, v, "CVE-2021-44228");
    }
    // Other Maven records: Spring4Shell and Text4Shell.
    affected(&db, "Maven", "org.springframework:spring-beans", "5.3.17", "CVE-2022-22965");
    not_affected(&db, "Maven", "org.springframework:spring-beans", "5.3.18", "CVE-2022-22965");
    affected(&db, "Maven", "org.apache.commons:commons-text", "1.9", "CVE-2022-42889");
    not_affected(&db, "Maven", "org.apache.commons:commons-text", "1.10.0", "CVE-2022-42889");
}

#[test]
fn pypi_records_merge_by_cve_and_names_normalise() {
    let db = db();
    // PYSEC-2023-74 and GHSA-j8r2-6x86-q33q are one CVE: reported once, with both ids.
    let v = db.vulnerabilities("PyPI", "Requests", "2.30.0");
    let leak: Vec<_> = v.iter().filter(|v| v.id == "CVE-2023-32681").collect();
    assert_eq!(leak.len(), 1, "{v:#?}");
    assert_eq!(leak[0].aliases, vec!["GHSA-j8r2-6x86-q33q".to_owned(), "PYSEC-2023-74".to_owned()]);
    assert_eq!(leak[0].fixed_version.as_deref(), Some("2.31.0"));
    // The GHSA's vector is scored (6.1), not taken from its word ("MODERATE").
    let sev = leak[0].severity.as_ref().unwrap();
    assert_eq!((sev.rating, sev.score), (Rating::Medium, Some(6.1)));
    not_affected(&db, "PyPI", "requests", "2.31.0", "CVE-2023-32681");
    not_affected(&db, "PyPI", "requests", "2.2.1", "CVE-2023-32681");
    affected(&db, "PyPI", "requests", "2.3.0", "CVE-2023-32681");
}

#[test]
fn npm_last_affected_open_ranges_and_the_node_fetch_trap() {
    let db = db();
    // GHSA-r683-j2x4-v87g: [1.0, 3.1.1) next to [0, 2.6.7): by OSV's rules 2.6.7..3.1.0 are affected.
    affected(&db, "npm", "node-fetch", "2.6.7", "CVE-2022-0235");
    affected(&db, "npm", "node-fetch", "3.1.0", "CVE-2022-0235");
    not_affected(&db, "npm", "node-fetch", "3.1.1", "CVE-2022-0235");
    // GHSA-29mw-wpgm-hmr9: lodash.trim and lodash.trimend end in `last_affected: 4.5.1` (no fix).
    let v = db.vulnerabilities("npm", "lodash.trim", "4.5.1");
    let trim = v.iter().find(|v| v.id == "CVE-2020-28500").expect("last_affected itself is affected");
    assert_eq!(trim.fixed_version, None);
    not_affected(&db, "npm", "lodash.trim", "4.5.2", "CVE-2020-28500");
    affected(&db, "npm", "lodash", "4.17.20", "CVE-2020-28500");
    not_affected(&db, "npm", "lodash", "4.17.21", "CVE-2020-28500");
    // GHSA-67hx-6x53-jw92 (babel-traverse) has no fix: "no fix yet".
    let v = db.vulnerabilities("npm", "babel-traverse", "6.26.0");
    assert!(!v.is_empty() && v.iter().all(|v| v.fixed_version.is_none()), "{v:#?}");
    // lodash 4.17.21 is clean of the prototype pollution fixed in 4.17.12 (GHSA-jf85-cpcp-j695).
    affected(&db, "npm", "lodash", "4.17.11", "CVE-2019-10744");
    not_affected(&db, "npm", "lodash", "4.17.12", "CVE-2019-10744");
}

#[test]
fn go_crates_almalinux_debian_alpine() {
    let db = db();
    // Go: SEMVER ranges without `v`, queried with it.
    affected(&db, "Go", "golang.org/x/text", "v0.3.6", "CVE-2021-38561");
    not_affected(&db, "Go", "golang.org/x/text", "v0.3.7", "CVE-2021-38561");
    affected(&db, "Go", "golang.org/x/text", "v0.3.7", "CVE-2022-32149");
    not_affected(&db, "Go", "golang.org/x/text", "v0.3.8", "CVE-2022-32149");
    affected(&db, "Go", "golang.org/x/text", "v0.0.0-20170915032832-14c0d48ead0c", "CVE-2021-38561");
    affected(&db, "Go", "stdlib", "1.16.0", "CVE-2021-27919");
    not_affected(&db, "Go", "stdlib", "1.16.1", "CVE-2021-27919");
    not_affected(&db, "Go", "stdlib", "1.15.9", "CVE-2021-27919");
    // crates.io: two introduced/fixed pairs.
    affected(&db, "crates.io", "smallvec", "0.6.13", "CVE-2021-25900");
    not_affected(&db, "crates.io", "smallvec", "0.6.14", "CVE-2021-25900");
    affected(&db, "crates.io", "smallvec", "1.6.0", "CVE-2021-25900");
    not_affected(&db, "crates.io", "smallvec", "1.6.1", "CVE-2021-25900");
    not_affected(&db, "crates.io", "smallvec", "0.6.2", "CVE-2021-25900");
    // crates.io with a CVSS 4.0 vector.
    let v = db.vulnerabilities("crates.io", "time", "0.3.46");
    let t = v.iter().find(|v| v.id == "CVE-2026-25727").expect("time 0.3.46 matches");
    let sev = t.severity.as_ref().unwrap();
    assert_eq!(sev.source, "CVSS_V4");
    assert!(sev.score.is_some_and(|s| s > 0.0 && s <= 10.0));
    not_affected(&db, "crates.io", "time", "0.3.47", "CVE-2026-25727");
    // AlmaLinux: epochs in versions, the vendor's rating from the summary, binary package names.
    let v = db.vulnerabilities("AlmaLinux:9", "openssl-libs", "1:3.0.1-46.el9_0");
    let alsa = v.iter().find(|v| v.id == "ALSA-2023:0946").expect("ALSA-2023:0946 matches");
    assert_eq!(alsa.fixed_version.as_deref(), Some("1:3.0.1-47.el9_1"));
    assert!(alsa.severity.is_some());
    assert!(ids(&db, "AlmaLinux:9", "openssl-libs", "1:3.0.1-47.el9_1").iter().all(|i| i != "ALSA-2023:0946"));
    // Debian (OSV records derived from the tracker): source package, upstream CVEs merged.
    affected(&db, "Debian:10", "openssl", "1.1.1n-0+deb10u3", "CVE-2023-0286");
    not_affected(&db, "Debian:10", "openssl", "1.1.1n-0+deb10u4", "CVE-2023-0286");
    not_affected(&db, "Debian:12", "openssl", "1.1.1n-0+deb10u3", "CVE-2023-0286");
    // The tracker's native DSA list: DSA-5343-1 fixed openssl in bullseye at 1.1.1n-0+deb11u4.
    let v = db.vulnerabilities("Debian:11", "openssl", "1.1.1n-0+deb11u3");
    let dsa = v.iter().find(|v| v.aliases.contains(&"DSA-5343-1".to_owned())).expect("DSA-5343-1 matches");
    assert!(dsa.id.starts_with("CVE-"));
    // DSA-5343-1 fixes several CVEs: each is its own vulnerability, none an alias of another.
    assert!(v.iter().filter(|v| v.aliases.contains(&"DSA-5343-1".to_owned())).count() > 1);
    assert!(dsa.aliases.iter().all(|a| !a.contains("CVE-") || a.ends_with(dsa.id.as_str())), "{:?}", dsa.aliases);
    assert_eq!(dsa.fixed_version.as_deref(), Some("1.1.1n-0+deb11u4"));
    assert!(ids(&db, "Debian:11", "openssl", "1.1.1n-0+deb11u4").iter().all(|i| i != &dsa.id));
    // Alpine secdb: version → CVE lists.
    affected(&db, "Alpine:v3.10", "curl", "7.65.3-r0", "CVE-2019-5481");
    not_affected(&db, "Alpine:v3.10", "curl", "7.66.0-r0", "CVE-2019-5481");
    not_affected(&db, "Alpine:v3.9", "curl", "7.65.3-r0", "CVE-2019-5481");
    affected(&db, "Alpine:v3.10", "openssl", "1.1.1c-r0", "CVE-2019-1547");
    not_affected(&db, "Alpine:v3.10", "openssl", "1.1.1d-r0", "CVE-2019-1547");
}

#[test]
fn withdrawn_records_are_skipped_and_withdrawals_remove_earlier_imports() {
    let db = db();
    for id in ["RUSTSEC-2019-0031", "GO-2022-0617", "PYSEC-2019-144"] {
        assert!(db.advisories().iter().all(|a| a.id != id), "{id} is withdrawn");
    }
    // A record imported, then withdrawn by a later import, is gone.
    let dir = tempfile::tempdir().unwrap();
    let rec = r#"{"id":"TEST-1","modified":"2024-01-01T00:00:00Z","affected":[{"package":{"ecosystem":"npm","name":"x"},"ranges":[{"type":"SEMVER","events":[{"introduced":"0"}]}]}]}"#;
    std::fs::write(dir.path().join("TEST-1.json"), rec).unwrap();
    let mut db = Db::empty();
    db.import_path(dir.path(), 1).unwrap();
    assert_eq!(ids(&db, "npm", "x", "1.0.0"), vec!["TEST-1"]);
    let withdrawn = rec.replace(r#""modified""#, r#""withdrawn":"2024-02-01T00:00:00Z","modified""#);
    std::fs::write(dir.path().join("TEST-1.json"), withdrawn).unwrap();
    let r = db.import_path(dir.path(), 2).unwrap();
    assert_eq!(r.withdrawn, 1);
    assert!(ids(&db, "npm", "x", "1.0.0").is_empty());
}

#[test]
fn malformed_records_are_skipped_and_reported_never_fatal() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ok.json"), r#"{"id":"OK-1","modified":"x","affected":[{"package":{"ecosystem":"PyPI","name":"a"},"versions":["1.0"]}]}"#).unwrap();
    std::fs::write(dir.path().join("truncated.json"), r#"{"id":"BAD-1","affected":[{"#).unwrap();
    std::fs::write(dir.path().join("wrong-types.json"), r#"{"id":7,"affected":"no"}"#).unwrap();
    std::fs::write(dir.path().join("binary.json"), [0xff, 0xfe, 0x00, 0x7b]).unwrap();
    std::fs::write(dir.path().join("secdb.yaml"), "distroversion: v3.1\npackages:\n  - pkg:\n      secfixes:\n        - CVE-1\n").unwrap();
    std::fs::write(dir.path().join("DSA-list"), "[01 Jan 2020] NOPE-1 x - y\n\t[buster] - \n").unwrap();
    let mut db = Db::empty();
    let r = db.import_path(dir.path(), 1).unwrap();
    assert_eq!(r.added, 1, "{r:#?}");
    assert_eq!(r.files, 6);
    for bad in ["truncated.json", "wrong-types.json", "binary.json", "secdb.yaml", "DSA-list"] {
        assert!(r.problems.iter().any(|p| p.contains(bad)), "{bad} reported: {:#?}", r.problems);
    }
    assert_eq!(ids(&db, "PyPI", "A", "1.0"), vec!["OK-1"]);
    assert!(db.import_path(&dir.path().join("missing"), 1).is_err(), "a missing path is an error");
}

#[test]
fn osv_zip_files_import_like_directories() {
    let dir = tempfile::tempdir().unwrap();
    let zip_path = dir.path().join("all.zip");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&zip_path).unwrap());
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for f in std::fs::read_dir(data().join("osv/Maven")).unwrap() {
        let f = f.unwrap();
        zip.start_file(f.file_name().to_string_lossy(), opts).unwrap();
        zip.write_all(&std::fs::read(f.path()).unwrap()).unwrap();
    }
    zip.start_file("garbage.json", opts).unwrap();
    zip.write_all(b"not json").unwrap();
    zip.finish().unwrap();
    let mut db = Db::empty();
    let r = db.import_path(&zip_path, 1).unwrap();
    assert_eq!(r.added, 10);
    assert_eq!(r.problems.len(), 1, "{:#?}", r.problems);
    affected(&db, "Maven", "org.apache.logging.log4j:log4j-core", "2.14.1", "CVE-2021-44228");
}

#[test]
fn the_db_file_round_trips_and_its_version_follows_its_content() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("advisories.db");
    assert!(matches!(Db::load(&path), Err(advisories::Error::Missing(_))));
    let mut db = db();
    db.save(&path).unwrap();
    let loaded = Db::load(&path).unwrap();
    assert_eq!(loaded.version(), db.version());
    assert!(loaded.version().starts_with("sha256:"));
    assert_eq!(loaded.advisories(), db.advisories());
    let status = loaded.status();
    for eco in ["Maven", "npm", "PyPI", "Go", "crates.io", "AlmaLinux:9", "Debian:10", "Debian:11", "Alpine:v3.10"] {
        assert!(status.ecosystems.get(eco).is_some_and(|n| *n > 0), "{eco}: {:?}", status.ecosystems);
    }
    affected(&loaded, "Maven", "org.apache.logging.log4j:log4j-core", "2.14.1", "CVE-2021-44228");
    // Importing something new changes the version; importing the same again does not.
    let mut again = Db::load(&path).unwrap();
    again.import_path(&data().join("osv/Maven"), 5).unwrap();
    assert_eq!(again.version(), db.version());
    let extra = dir.path().join("extra.json");
    std::fs::write(&extra, r#"{"id":"NEW-1","modified":"x","affected":[{"package":{"ecosystem":"npm","name":"y"},"versions":["1.0.0"]}]}"#).unwrap();
    again.import_path(&extra, 6).unwrap();
    assert_ne!(again.version(), db.version());
    // A damaged file is refused with a clear error.
    std::fs::write(&path, b"customs-advisories\n\x1f\x8bgarbage").unwrap();
    let err = Db::load(&path).unwrap_err().to_string();
    assert!(err.contains("unreadable"), "{err}");
    std::fs::write(&path, b"something else").unwrap();
    assert!(Db::load(&path).unwrap_err().to_string().contains("not a customs advisory DB"));
}

#[test]
fn cvss_base_scores() {
    let s = |k, v| advisories::score_vector(k, v).map(|s| (s.score.unwrap(), s.rating));
    assert_eq!(s("CVSS_V3", "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H"), Some((10.0, Rating::Critical)));
    assert_eq!(s("CVSS_V3", "CVSS:3.1/AV:N/AC:H/PR:N/UI:R/S:U/C:H/I:N/A:N"), Some((5.3, Rating::Medium)));
    assert_eq!(s("CVSS_V3", "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:N/I:N/A:L"), Some((3.3, Rating::Low)));
    assert_eq!(s("CVSS_V3", "CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"), Some((9.8, Rating::Critical)));
    assert_eq!(s("CVSS_V4", "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"), Some((9.3, Rating::Critical)));
    assert_eq!(s("CVSS_V2", "AV:N/AC:L/Au:N/C:P/I:P/A:P"), Some((7.5, Rating::High)));
    assert_eq!(s("CVSS_V3", "CVSS:3.1/AV:X/garbage"), None);
    assert_eq!(s("CVSS_V3", ""), None);
}

#[test]
fn alpine_secdb_json_as_secdb_alpinelinux_org_serves_it() {
    // The JSON form of the same data (secdb.alpinelinux.org/v3.19/main.json has this shape).
    let json = r#"{"apkurl":"{{urlprefix}}/{{distroversion}}/{{reponame}}/{{arch}}/{{pkg.name}}-{{pkg.ver}}.apk",
        "archs":["x86_64"],"reponame":"main","urlprefix":"https://dl-cdn.alpinelinux.org/alpine","distroversion":"v3.19",
        "packages":[{"pkg":{"name":"openssl","secfixes":{"3.1.4-r1":["CVE-2023-5678"],"3.1.4-r3":["CVE-2023-6129 CVE-2023-6237"],"0":["CVE-2022-0001"]}}},
                    {"pkg":{"name":"busybox","secfixes":{"1.36.1-r6":["CVE-2023-42366"]}}}]}"#;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("main.json"), json).unwrap();
    let mut db = Db::empty();
    let r = db.import_path(dir.path(), 1).unwrap();
    assert!(r.problems.is_empty(), "{:#?}", r.problems);
    affected(&db, "Alpine:v3.19", "openssl", "3.1.4-r0", "CVE-2023-5678");
    not_affected(&db, "Alpine:v3.19", "openssl", "3.1.4-r1", "CVE-2023-5678");
    // Two ids on one line are two vulnerabilities.
    affected(&db, "Alpine:v3.19", "openssl", "3.1.4-r2", "CVE-2023-6129");
    affected(&db, "Alpine:v3.19", "openssl", "3.1.4-r2", "CVE-2023-6237");
    // A fix of "0" means never affected.
    not_affected(&db, "Alpine:v3.19", "openssl", "1.0.0-r0", "CVE-2022-0001");
    affected(&db, "Alpine:v3.19", "busybox", "1.36.1-r5", "CVE-2023-42366");
    let v = db.vulnerabilities("Alpine:v3.19", "busybox", "1.36.1-r5");
    assert_eq!(v[0].aliases, vec!["ALPINE-CVE-2023-42366".to_owned()]);
}

#[test]
fn changes_between_two_dbs_name_exactly_the_packages_whose_answers_can_differ() {
    let before = db();
    assert!(db().changed_since(&before).is_empty(), "the same records: nothing changed");

    // A day's update: one jinja2 record rewords its summary, and Log4Shell is withdrawn.
    let update = tempfile::tempdir().unwrap();
    let mut jinja: serde_json::Value = serde_json::from_slice(&std::fs::read(data().join("osv/PyPI/PYSEC-2014-8.json")).unwrap()).unwrap();
    jinja["summary"] = serde_json::json!("reworded");
    std::fs::write(update.path().join("PYSEC-2014-8.json"), serde_json::to_vec(&jinja).unwrap()).unwrap();
    let mut log4shell: serde_json::Value = serde_json::from_slice(&std::fs::read(data().join("osv/Maven/GHSA-jfh8-c2jp-5v3q.json")).unwrap()).unwrap();
    log4shell["withdrawn"] = serde_json::json!("2026-11-24T00:00:00Z");
    std::fs::write(update.path().join("GHSA-jfh8-c2jp-5v3q.json"), serde_json::to_vec(&log4shell).unwrap()).unwrap();
    let mut after = db();
    after.import_path(update.path(), 1_700_000_000).unwrap();

    let changes = after.changed_since(&before);
    assert_eq!(changes.len(), 2, "{changes:?}");
    // Names are compared as the matcher compares them (PyPI's are case- and separator-insensitive).
    assert!(changes.touches("PyPI", "Jinja2") && changes.touches("PyPI", "jinja2"));
    assert!(changes.touches("Maven", "org.apache.logging.log4j:log4j-core"));
    assert!(!changes.touches("PyPI", "requests") && !changes.touches("Maven", "org.apache.logging.log4j:log4j-api"));
    assert_eq!(after.changed_since(&before).len(), before.changed_since(&after).len(), "symmetric");

    // What it promises: a package it does not touch gets the same answer from both DBs, and the
    // packages it does touch got a different one here.
    for (eco, name, version) in [("PyPI", "requests", "2.19.0"), ("PyPI", "arrayfire", "3.3.0"), ("Go", "golang.org/x/net", "0.0.1")] {
        assert!(!changes.touches(eco, name));
        assert_eq!(after.vulnerabilities(eco, name, version), before.vulnerabilities(eco, name, version), "{name}");
    }
    assert_ne!(after.vulnerabilities("Maven", "org.apache.logging.log4j:log4j-core", "2.14.1"), before.vulnerabilities("Maven", "org.apache.logging.log4j:log4j-core", "2.14.1"));
    assert_ne!(after.vulnerabilities("PyPI", "jinja2", "2.7.1"), before.vulnerabilities("PyPI", "jinja2", "2.7.1"));
}

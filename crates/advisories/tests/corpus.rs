//! The whole of ../shared/advisories (9.8k real records), when it is beside the checkout: every
//! record is read or its problem named, the 40 withdrawn ones are skipped, and the DB it makes
//! round-trips. Where the directory is absent this test says so and checks nothing else; the
//! exact-match tests in records.rs run on the subset committed in tests/data either way.

use advisories::Db;
use std::path::Path;

#[test]
fn the_shared_corpus_imports() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/advisories");
    if !dir.is_dir() {
        eprintln!("skipped: {} is not here", dir.display());
        return;
    }
    let started = std::time::Instant::now();
    let mut db = Db::empty();
    let r = db.import_path(&dir, 1).unwrap();
    eprintln!("imported {} records from {} files in {:?}", db.advisories().len(), r.files, started.elapsed());
    assert_eq!(r.withdrawn, 40, "13 crates.io + 10 PyPI + 17 Go");
    // What is not an advisory: the README, the GHSA manifest, the OSV schema files, the CISA KEV
    // catalogue, and the PyPA YAML originals (OSV is imported as JSON).
    for p in &r.problems {
        let expected = ["README.md", "GHSA-MANIFEST.tsv", "osv-schema/", "cisa-kev/", "PyPI-yaml-sample/"];
        assert!(expected.iter().any(|e| p.contains(e)), "unexpected problem: {p}");
    }
    assert!(db.advisories().len() > 9_000, "{}", db.advisories().len());
    let status = db.status();
    for eco in ["Go", "PyPI", "crates.io", "npm", "Maven", "AlmaLinux:9", "Debian:10", "Debian:11", "Alpine:v3.10"] {
        assert!(status.ecosystems.get(eco).is_some_and(|n| *n > 0), "{eco}");
    }
    let file = tempfile::tempdir().unwrap();
    let path = file.path().join("advisories.db");
    db.save(&path).unwrap();
    let size = std::fs::metadata(&path).unwrap().len();
    let started = std::time::Instant::now();
    let loaded = Db::load(&path).unwrap();
    eprintln!("DB file {} KiB, loaded in {:?}", size / 1024, started.elapsed());
    assert_eq!(loaded.version(), db.version());
    assert!(loaded.vulnerabilities("Maven", "org.apache.logging.log4j:log4j-core", "2.14.1").iter().any(|v| v.id == "CVE-2021-44228"));
}

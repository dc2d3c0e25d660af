//! Judging again after an advisory update, in process on a data directory: a round works through
//! the stale verdicts a page at a time, and the outcome does not depend on where pages break (one
//! image held by three repositories spans pages of two).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use blobs::{Blobs, FsBlobStore};
use bytes::Bytes;
use futures::StreamExt;
use meta::{Findings, Inspections, Meta, SqlMeta, StoredReport, Verdict};
use oci::{Digest, Reference, RepoName};
use registry::{Registry, RegistryConfig};

fn stream(bytes: Bytes) -> blobs::ByteStream {
    futures::stream::once(async move { Ok::<_, std::io::Error>(bytes) }).boxed()
}

fn repo(name: &str) -> RepoName {
    name.parse().unwrap()
}

/// Stores an image holding `package` (ecosystem, name, version) in each of `repos`, with its
/// report matched against no DB and an allowing verdict on `basis`; its digest.
async fn image(registry: &Registry, meta: &SqlMeta, package: (&str, &str, &str), repos: &[&str], basis: &str) -> Digest {
    let (eco, name, version) = package;
    let layer = Bytes::from(test_support::layer_tar_gz(&[("etc/app", format!("{name}@{version}").as_bytes(), 0o644)]));
    let layer_digest = Digest::sha256_of(&layer);
    let config = Bytes::from(
        serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux", "created": "2026-01-01T00:00:00Z",
            "rootfs": { "type": "layers", "diff_ids": [] },
        }))
        .unwrap(),
    );
    let config_digest = Digest::sha256_of(&config);
    let manifest = Bytes::from(
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": oci::media_type::OCI_MANIFEST,
            "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest.to_string(), "size": config.len() },
            "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest.to_string(), "size": layer.len() }],
        }))
        .unwrap(),
    );
    let digest = Digest::sha256_of(&manifest);
    let report = serde_json::json!({
        "schema": "customs.report/v1",
        "target": { "kind": "registry", "name": format!("test@{digest}"), "digest": digest.to_string() },
        "scanned_at": "2026-11-24T00:00:00Z", "db": null,
        "layers": [layer_digest.to_string()],
        "packages": [{ "name": name, "version": version, "ecosystem": eco, "purl": format!("pkg:{eco}/{}@{version}", name.replace(':', "/")), "layer": layer_digest.to_string(), "path": "app.jar" }],
        "vulnerabilities": [], "problems": [], "secrets": [], "malware": [], "misconfigurations": [],
    });
    let stored = StoredReport::from_report(&digest, &report, "", 0, 0);
    for (i, r) in repos.iter().enumerate() {
        let r = repo(r);
        registry.upload_whole(&r, &layer_digest, Some(layer.len() as u64), stream(layer.clone())).await.unwrap();
        registry.upload_whole(&r, &config_digest, Some(config.len() as u64), stream(config.clone())).await.unwrap();
        registry.put_manifest(&r, &Reference::Tag("v1".parse().unwrap()), Some(oci::media_type::OCI_MANIFEST), manifest.clone(), None).await.unwrap();
        let verdict = Verdict {
            repo: r,
            digest: digest.clone(),
            allowed: true,
            enforced: true,
            policy: "paved-road.rego".into(),
            reasons: vec![],
            warnings: vec![],
            basis: basis.into(),
            judged_at_ms: 0,
        };
        // The report goes with the first verdict, as the inspection stores it.
        let report = (i == 0).then(|| (&stored, registry::report_index(&report)));
        meta.record_verdict(report.as_ref().map(|(s, i)| (*s, i)), &verdict).await.unwrap();
    }
    digest
}

/// What a round decided, whatever the page size.
#[derive(Debug, PartialEq)]
struct Outcome {
    judged: usize,
    carried: usize,
    changed: usize,
    /// (repository, image, allowed, the first reason) of every verdict, on the new basis.
    verdicts: Vec<(String, String, bool, String)>,
    /// The images the Log4Shell CVE now hits, by repository.
    log4shell: Vec<String>,
}

async fn round(page: usize) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let meta = Arc::new(SqlMeta::open(&dir.path().join("meta.db")).await.unwrap());
    let registry = Arc::new(Registry::new(Blobs(Arc::new(FsBlobStore::open(dir.path()).unwrap())), Meta(meta.clone()), RegistryConfig::default()));
    let before = registry.basis("", 0).await.unwrap().fingerprint;
    let log4j = image(&registry, &meta, ("maven", "org.apache.logging.log4j:log4j-core", "2.14.1"), &["t/a", "t/b", "t/c"], &before).await;
    let fixed = image(&registry, &meta, ("maven", "org.apache.logging.log4j:log4j-core", "2.17.1"), &["t/a"], &before).await;
    let python = image(&registry, &meta, ("pypi", "jinja2", "2.7.1"), &["t/b", "t/c"], &before).await;

    // Today's DB: the Maven records (no PyPI ones: the Python image's matches stay empty).
    let mut db = advisories::Db::empty();
    db.import_path(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../advisories/tests/data/osv/Maven"), 1_700_000_000).unwrap();
    let db_path = dir.path().join("advisories.db");
    db.save(&db_path).unwrap();
    let settings = workers::InspectionSettings {
        lease: Duration::from_secs(600),
        max_attempts: 1,
        poll: Duration::from_secs(1),
        advisory_db: db_path,
        limits: scanner::Limits::default(),
        engines: String::new(),
        page,
    };
    let worker = workers::InspectionWorker::new(registry.clone(), Meta(meta.clone()), scanner::Inspection::default(), settings);
    let done = worker.rejudge().await.unwrap();

    let now = registry.basis(db.version(), 0).await.unwrap().fingerprint;
    assert_ne!(now, before);
    assert_eq!(meta.stale_verdicts(&now, None, 100).await.unwrap(), vec![], "every verdict judged on the new basis");
    let again = worker.rejudge().await.unwrap();
    assert_eq!((again.verdicts, again.carried), (0, 0), "a second round finds nothing stale");
    // The reports that did not change are restamped with the DB; the changed one is stored anew.
    let facts = meta.report_facts(&[log4j.clone(), fixed.clone(), python.clone()]).await.unwrap();
    assert_eq!(facts.len(), 3);
    assert!(facts.iter().all(|f| f.db_version == db.version()), "{facts:?}");
    let report = registry.image_report(&repo("t/c"), &log4j).await.unwrap().report;
    assert!(report["vulnerabilities"].as_array().unwrap().iter().any(|v| v["id"] == "CVE-2021-44228"), "{report}");

    let name = |d: &Digest| ["log4j", "fixed", "python"][[&log4j, &fixed, &python].iter().position(|x| *x == d).unwrap()].to_owned();
    let mut verdicts = Vec::new();
    for (r, d) in [("t/a", &log4j), ("t/b", &log4j), ("t/c", &log4j), ("t/a", &fixed), ("t/b", &python), ("t/c", &python)] {
        let v = meta.verdict(&repo(r), d).await.unwrap().unwrap();
        assert_eq!(v.basis, now);
        verdicts.push((r.to_owned(), name(d), v.allowed, v.reasons.first().cloned().unwrap_or_default()));
    }
    let mut log4shell: Vec<String> = meta.images_with_vulnerability("CVE-2021-44228", 100).await.unwrap().into_iter().map(|f| format!("{}@{}", f.repo, name(&f.digest))).collect();
    log4shell.sort();
    Outcome { judged: done.verdicts, carried: done.carried, changed: done.changed, verdicts, log4shell }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_spans_pages_and_decides_as_one() {
    let paged = round(2).await;
    // The log4j image is judged again in each of its three repositories and blocked; the others'
    // matches did not change, so their verdicts stand on the new basis.
    assert_eq!((paged.judged, paged.carried, paged.changed), (3, 3, 3), "{paged:?}");
    for (r, image, allowed, reason) in &paged.verdicts {
        match image.as_str() {
            "log4j" => assert!(!allowed && reason.contains("log4j-core"), "{r}: {reason}"),
            _ => assert!(allowed, "{r} {image}: {reason}"),
        }
    }
    assert_eq!(paged.log4shell, ["t/a@log4j", "t/b@log4j", "t/c@log4j"]);
    assert_eq!(round(500).await, paged, "one page or many: the same round");
}

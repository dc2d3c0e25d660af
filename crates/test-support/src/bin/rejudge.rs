//! bench: re-judging N stored images against the full advisory DB, and the CVE → images and
//! package → images queries at that size.
//!
//! `rejudge ADVISORIES_DIR [IMAGES]` imports the advisory corpus into a DB (and, as the day
//! before's DB, the corpus without one OSV record in a hundred), stores IMAGES images (default
//! 10,000) through the registry — each a manifest, a config and a report of 100 packages
//! (80 Debian 11 packages (the corpus's tracker data predates bookworm) just below their newest fix,
//! 20 from PyPI, npm, Go, crates.io and Maven at their newest affected version, drawn from the names
//! the corpus has advisories for; about a third at that affected version, the rest past every
//! range) matched against no DB — then times `InspectionWorker::rejudge` (no layer read):
//! against the day before's DB (every report gains its vulnerabilities, every verdict is judged
//! by the paved-road policy); against today's (the worker knows what changed: reports none of
//! whose packages a changed record names are not matched; only those whose matches changed are
//! stored and judged again); back to the day before's; and against today's again by a fresh
//! worker, as after a restart (every report matched whole). Then the queries. Prints the figures
//! and the goals (≤ 10 s, ≤ 50 ms).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use blobs::{Blobs, FsBlobStore};
use bytes::Bytes;
use meta::{Inspections, Meta, PackageQuery, Repositories, SqlMeta, StoredReport, Verdict};
use oci::{Digest, Reference, RepoName};
use registry::{Registry, RegistryConfig, VersionFilter};
use test_support::Rng;

/// (ecosystem as the scanner names it, package, a version the corpus says is affected).
type Pool = Vec<(&'static str, String, String)>;

fn pools(corpus: &Path) -> anyhow::Result<(Pool, Pool)> {
    let mut deb = Pool::new();
    let mut lang = Pool::new();
    for (dir, eco) in [("Debian-derived-from-tracker", "deb"), ("PyPI", "pypi"), ("npm", "npm"), ("Go", "golang"), ("crates.io", "cargo"), ("Maven", "maven")] {
        let Ok(entries) = std::fs::read_dir(corpus.join(dir)) else { continue };
        for e in entries.flatten() {
            let Ok(text) = std::fs::read(e.path()) else { continue };
            let Ok(record) = serde_json::from_slice::<serde_json::Value>(&text) else { continue };
            for a in record["affected"].as_array().into_iter().flatten() {
                let name = a["package"]["name"].as_str().unwrap_or_default().to_owned();
                let ecosystem = a["package"]["ecosystem"].as_str().unwrap_or_default();
                if name.is_empty() || (eco == "deb" && ecosystem != "Debian:11") {
                    continue;
                }
                let events = a["ranges"].as_array().into_iter().flatten().flat_map(|r| r["events"].as_array().into_iter().flatten());
                let introduced = events.clone().filter_map(|e| e["introduced"].as_str()).find(|v| *v != "0").map(str::to_owned);
                let fixed = events.filter_map(|e| e["fixed"].as_str()).next().map(str::to_owned);
                // The newest version the record lists as affected: an image a release behind.
                let version = a["versions"].as_array().and_then(|v| v.last()).and_then(|v| v.as_str()).map(str::to_owned).or(introduced);
                // Debian's derived records only have `fixed`: `~` sorts before it, so just below is affected.
                let version = match (version, eco, fixed) {
                    (Some(v), _, _) => v,
                    (None, "deb", Some(f)) => format!("{f}~bench"),
                    _ => continue,
                };
                let pool = if eco == "deb" { &mut deb } else { &mut lang };
                pool.push((eco, name, version));
            }
        }
    }
    // One entry per Debian package, just below its newest fix: an image a release behind, as most
    // are, not one that missed every advisory since the distribution came out (a browser's
    // thousands of CVEs).
    let mut newest: std::collections::BTreeMap<String, String> = std::collections::BTreeMap::new();
    for (_, name, version) in deb {
        let fixed = version.trim_end_matches("~bench").to_owned();
        let keep = newest.get(&name).is_none_or(|v| advisories::Scheme::Dpkg.compare(&fixed, v) == Some(std::cmp::Ordering::Greater));
        if keep {
            newest.insert(name, fixed);
        }
    }
    let deb: Pool = newest.into_iter().map(|(name, fixed)| ("deb", name, format!("{fixed}~bench"))).collect();
    // Likewise one entry per language package: its newest affected version across the records.
    let mut newest: std::collections::BTreeMap<(&str, String), String> = std::collections::BTreeMap::new();
    for (eco, name, version) in lang {
        let scheme = advisories::ecosystem::scheme(match eco {
            "pypi" => "PyPI",
            "golang" => "Go",
            "cargo" => "crates.io",
            "maven" => "Maven",
            other => other,
        });
        let key = (eco, name);
        let keep = newest.get(&key).is_none_or(|v| scheme.and_then(|s| s.compare(&version, v)) == Some(std::cmp::Ordering::Greater));
        if keep {
            newest.insert(key, version);
        }
    }
    let lang: Pool = newest.into_iter().map(|((eco, name), version)| (eco, name, version)).collect();
    anyhow::ensure!(!deb.is_empty() && !lang.is_empty(), "no Debian 11 or language advisories under {}", corpus.display());
    Ok((deb, lang))
}

fn purl(eco: &str, name: &str, version: &str) -> String {
    let kind = match eco {
        "deb" => "deb/debian",
        "golang" => "golang",
        other => other,
    };
    format!("pkg:{kind}/{}@{version}", name.replace(':', "/"))
}

/// A report (the stored JSON) of 100 packages drawn from the pools.
fn report(rng: &mut Rng, deb: &Pool, lang: &Pool, digest: &Digest, layer: &str) -> serde_json::Value {
    let mut packages = Vec::new();
    let mut pick = |pool: &Pool, n: usize, rng: &mut Rng| {
        for _ in 0..n {
            let (eco, name, affected) = &pool[(rng.next_u64() % pool.len() as u64) as usize];
            // About a third at an affected version, the rest at one past every range.
            let version = if rng.next_u64().is_multiple_of(3) { affected.clone() } else { "999.0.0".to_owned() };
            let mut p = serde_json::json!({
                "name": name, "version": version, "ecosystem": eco, "purl": purl(eco, name, &version),
                "layer": layer, "path": "var/lib/dpkg/status",
            });
            if *eco == "deb" {
                p["source"] = serde_json::json!({ "name": name, "version": version });
            }
            packages.push(p);
        }
    };
    pick(deb, 80, rng);
    pick(lang, 20, rng);
    serde_json::json!({
        "schema": "customs.report/v1",
        "target": { "kind": "registry", "name": format!("bench@{digest}"), "digest": digest.to_string() },
        "scanned_at": "2026-11-24T00:00:00Z", "db": null,
        "os": { "id": "debian", "version": "11", "codename": "bullseye" },
        "layers": [layer], "packages": packages, "vulnerabilities": [], "problems": [],
        "secrets": [], "malware": [], "misconfigurations": [],
    })
}

/// Copies the corpus from `from` to `to`, leaving out every hundredth OSV record (`.json`); how many were left out.
fn copy_holding_back(from: &Path, to: &Path, seen: &mut usize, top: bool) -> anyhow::Result<usize> {
    std::fs::create_dir_all(to)?;
    let mut entries: Vec<_> = std::fs::read_dir(from)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    let mut held = 0;
    for e in entries {
        let (path, target) = (e.path(), to.join(e.file_name()));
        if e.file_type()?.is_dir() {
            held += copy_holding_back(&path, &target, seen, false)?;
        } else if path.extension().is_some_and(|x| x == "json") && !top {
            *seen += 1;
            if seen.is_multiple_of(100) {
                held += 1;
            } else {
                std::fs::copy(&path, &target)?;
            }
        } else {
            std::fs::copy(&path, &target)?;
        }
    }
    Ok(held)
}

fn stream(bytes: Bytes) -> blobs::ByteStream {
    use futures::StreamExt;
    futures::stream::once(async move { Ok::<_, std::io::Error>(bytes) }).boxed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The allocator `customs` runs with.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let corpus = args.next().context("usage: rejudge ADVISORIES_DIR [IMAGES]")?;
    let images: usize = args.next().map(|n| n.parse()).transpose()?.unwrap_or(10_000);
    let tmp = tempfile::tempdir()?;
    if std::env::var_os("REJUDGE_KEEP").is_some() {
        println!("keeping {}", tmp.path().display());
    }
    // Records kept by an earlier run (`REJUDGE_KEEP`): only advisory updates are timed, back and
    // forth between the two DBs (for profiling).
    let reuse = std::env::var_os("REJUDGE_REUSE").map(std::path::PathBuf::from);
    let state = reuse.as_deref().unwrap_or(tmp.path());
    let started = Instant::now();
    let mut db = advisories::Db::empty();
    let imported = db.import_path(Path::new(&corpus), 1_795_478_400)?;
    let db_path = state.join("advisories.db");
    println!("advisory DB: {} records from {} files in {:.1} s", db.status().advisories, imported.files, started.elapsed().as_secs_f64());
    // The day before: the corpus without one OSV record in a hundred.
    let older = tmp.path().join("corpus-older");
    let held_back = copy_holding_back(Path::new(&corpus), &older, &mut 0, true)?;
    let mut db_older = advisories::Db::empty();
    db_older.import_path(&older, 1_795_478_400)?;
    println!("the day before: {} records ({held_back} files held back)", db_older.status().advisories);
    let (deb, lang) = pools(Path::new(&corpus))?;
    println!("package pools: {} Debian 11, {} language", deb.len(), lang.len());

    let meta = Arc::new(SqlMeta::open(&state.join("meta.db")).await?);
    let blobs = FsBlobStore::open(state)?;
    let registry = Arc::new(Registry::new(Blobs(Arc::new(blobs)), Meta(meta.clone()), RegistryConfig::default()));
    let layer = Bytes::from(test_support::layer_tar_gz(&[("etc/bench", b"x", 0o644)]));
    let layer_digest = Digest::sha256_of(&layer);
    let mut rng = Rng(0x5eed_cafe);
    let started = Instant::now();
    for i in 0..if reuse.is_some() { 0 } else { images } {
        let repo: RepoName = format!("bench/app-{}", i % 100).parse()?;
        if i < 100 {
            registry.upload_whole(&repo, &layer_digest, Some(layer.len() as u64), stream(layer.clone())).await?;
        }
        let config = Bytes::from(serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux", "created": "2026-01-01T00:00:00Z", "config": { "Labels": { "n": i.to_string() } },
            "rootfs": { "type": "layers", "diff_ids": [] },
        }))?);
        let config_digest = Digest::sha256_of(&config);
        registry.upload_whole(&repo, &config_digest, Some(config.len() as u64), stream(config.clone())).await?;
        let manifest = Bytes::from(serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": oci::media_type::OCI_MANIFEST,
            "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest.to_string(), "size": config.len() },
            "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest.to_string(), "size": layer.len() }],
        }))?);
        let digest = Digest::sha256_of(&manifest);
        registry.put_manifest(&repo, &Reference::Tag(format!("v{i}").parse()?), Some(oci::media_type::OCI_MANIFEST), manifest, None).await?;
        let json = report(&mut rng, &deb, &lang, &digest, &layer_digest.to_string());
        let stored = StoredReport::from_report(&digest, &json, "", 0, 0);
        let verdict = Verdict {
            repo,
            digest,
            allowed: true,
            enforced: true,
            policy: "paved-road.rego".into(),
            reasons: vec![],
            warnings: vec![],
            basis: "before".into(),
            judged_at_ms: 0,
        };
        meta.record_verdict(Some((&stored, &registry::report_index(&json))), &verdict).await?;
    }
    println!("stored {images} images in {:.1} s", started.elapsed().as_secs_f64());

    let settings = workers::InspectionSettings {
        lease: Duration::from_secs(600),
        max_attempts: 1,
        poll: Duration::from_secs(1),
        advisory_db: db_path.clone(),
        limits: scanner::Limits::default(),
        engines: String::new(),
        page: workers::InspectionSettings::PAGE,
    };
    let new_worker = || workers::InspectionWorker::new(registry.clone(), Meta(meta.clone()), scanner::Inspection::default(), settings.clone());
    let mut worker = new_worker();
    // (what, the DB (0: the day before's, 1: today's), whether the worker starts afresh: it then
    // knows no earlier DB).
    let runs = if reuse.is_some() {
        vec![("advisory update (today -> the day before)", 0, false), ("advisory update (the day before -> today)", 1, false)]
    } else {
        vec![
            ("first match (no DB -> the day before's)", 0, false),
            ("advisory update (the day before -> today)", 1, false),
            ("advisory update back (today -> the day before)", 0, false),
            ("advisory update after a restart, every report matched whole (the day before -> today)", 1, true),
        ]
    };
    let mut dbs = [db_older, db];
    for (what, which, fresh) in runs {
        if fresh {
            worker = new_worker();
        }
        dbs[which].save(&db_path)?;
        let started = Instant::now();
        let done = worker.rejudge().await.map_err(anyhow::Error::msg)?;
        let took = started.elapsed();
        let size = ["meta.db", "meta.db-wal"].iter().map(|f| std::fs::metadata(state.join(f)).map_or(0, |m| m.len())).sum::<u64>();
        println!(
            "rejudge, {what}: {images} images re-matched in {:.2} s (goal <= 10 s for 10,000): {} untouched by the update, {} judged by the policy, {} stand, {} changed; records now {} MB",
            took.as_secs_f64(),
            done.untouched,
            done.verdicts,
            done.carried,
            done.changed,
            size >> 20
        );
        println!(
            "  of which reading and re-matching {:.2} s, judging {:.2} s, writing {:.2} s",
            done.matching.as_secs_f64(),
            (done.judging - done.matching).as_secs_f64(),
            done.writing.as_secs_f64()
        );
    }

    // The CVEs of a few stored images, then each asked for 20 times.
    let mut ids = Vec::new();
    for i in 0..5 {
        let repo: RepoName = format!("bench/app-{i}").parse()?;
        let tag = format!("v{i}").parse()?;
        let record = meta.manifest(&repo, &Reference::Tag(tag)).await?.context("a stored image")?;
        let report = registry.image_report(&repo, &record.digest).await?.report;
        let vulns = report["vulnerabilities"].as_array().map_or(0, Vec::len);
        println!("image {repo}:v{i}: {vulns} vulnerabilities, report {} KB", report.to_string().len() >> 10);
        if let Some(id) = report["vulnerabilities"].as_array().and_then(|v| v.first()).and_then(|v| v["id"].as_str()) {
            ids.push(id.to_owned());
        }
    }
    ids.push("CVE-2021-44228".into());
    for id in ids {
        let mut times = Vec::new();
        let mut hits = 0;
        for _ in 0..20 {
            let t = Instant::now();
            hits = registry.images_with_vulnerability(&id).await?.len();
            times.push(t.elapsed());
        }
        println!("query {id}: {hits} images, median {:.1} ms (goal <= 50 ms)", median(times).as_secs_f64() * 1000.0);
    }
    let (_, name, _) = &deb[0];
    let mut times = Vec::new();
    let mut hits = 0;
    for _ in 0..20 {
        let t = Instant::now();
        hits = registry.images_with_package(&PackageQuery { name: Some(name.clone()), ..PackageQuery::default() }, &VersionFilter::parse_range("<999")?).await?.len();
        times.push(t.elapsed());
    }
    println!("query package {name} <999: {hits} images, median {:.1} ms", median(times).as_secs_f64() * 1000.0);
    if std::env::var_os("REJUDGE_KEEP").is_some() {
        let _ = tmp.keep();
    }
    Ok(())
}

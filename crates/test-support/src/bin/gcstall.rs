//! gcstall: how long the writes of a replica wait while its garbage collection deletes. Stores
//! `--garbage` blobs that no record needs, then runs one gc pass while `--writers` tasks each
//! upload and commit 4 KiB blobs one after another, as pushes do. Prints one JSON line: the pass's
//! seconds and blobs deleted, and the commits made during it: how many, and their p50, p99 and
//! longest milliseconds.
//!
//! `gcstall [--garbage 5000] [--writers 8] [--postgres]`
//!
//! The blobs are on the filesystem; the records in SQLite, or with `--postgres` in a PostgreSQL
//! cluster this starts on loopback (Debian's `postgresql`, as the tests use).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use oci::{Digest, RepoName};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (mut garbage, mut writers, mut postgres) = (5000usize, 8usize, false);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--garbage" => garbage = args.next().ok_or_else(|| anyhow::anyhow!("--garbage needs a value"))?.parse()?,
            "--writers" => writers = args.next().ok_or_else(|| anyhow::anyhow!("--writers needs a value"))?.parse()?,
            "--postgres" => postgres = true,
            _ => anyhow::bail!("usage: gcstall [--garbage N] [--writers N] [--postgres]"),
        }
    }
    let dir = tempfile::tempdir()?;
    let blobs = blobs::Blobs(Arc::new(blobs::FsBlobStore::open(dir.path())?));
    let pg = postgres.then(test_support::Postgres::start);
    let meta = match &pg {
        Some(pg) => meta::Meta(Arc::new(meta::SqlMeta::connect(&pg.database()).await?)),
        None => meta::Meta(Arc::new(meta::SqlMeta::open(&dir.path().join("meta.db")).await?)),
    };
    let registry = Arc::new(registry::Registry::new(blobs.clone(), meta, registry::RegistryConfig::default()));
    for i in 0..garbage {
        let bytes = Bytes::from(format!("garbage {i}").repeat(64));
        blobs.put(&Digest::sha256_of(&bytes), bytes).await?;
    }

    let collecting = Arc::new(AtomicBool::new(true));
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (registry, collecting) = (registry.clone(), collecting.clone());
        tasks.push(tokio::spawn(async move {
            let repo: RepoName = format!("gcstall/w{w}").parse()?;
            let mut took = Vec::new();
            for n in 0u64.. {
                if !collecting.load(Relaxed) {
                    break;
                }
                let mut bytes = vec![0u8; 4096];
                bytes[..16].copy_from_slice(&[(w as u64).to_be_bytes(), n.to_be_bytes()].concat());
                let bytes = Bytes::from(bytes);
                let digest = Digest::sha256_of(&bytes);
                let started = Instant::now();
                let body = futures::stream::iter([Ok(bytes)]).boxed();
                registry.upload_whole(&repo, &digest, None, body).await?;
                took.push(started.elapsed());
            }
            anyhow::Ok(took)
        }));
    }
    let started = Instant::now();
    let collected = registry.collect_garbage(Duration::ZERO).await?;
    let pass = started.elapsed();
    collecting.store(false, Relaxed);
    let mut took: Vec<Duration> = Vec::new();
    for task in tasks {
        took.extend(task.await??);
    }
    anyhow::ensure!(collected.blobs >= garbage, "the pass deleted {} of {garbage} blobs", collected.blobs);
    took.sort();
    let ms = |q: f64| took.get(((took.len() as f64 * q) as usize).min(took.len().saturating_sub(1))).map_or(0.0, |d| d.as_secs_f64() * 1e3);
    println!(
        "{{\"records\": \"{}\", \"pass_s\": {:.3}, \"deleted\": {}, \"commits\": {}, \"p50_ms\": {:.2}, \"p99_ms\": {:.2}, \"max_ms\": {:.2}}}",
        if postgres { "postgres" } else { "sqlite" },
        pass.as_secs_f64(),
        collected.blobs,
        took.len(),
        ms(0.5),
        ms(0.99),
        took.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
    );
    Ok(())
}

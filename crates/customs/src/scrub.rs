//! `customs scrub`: one pass of the scrub over a data directory no server is using (a running
//! server does its own passes, `[scrub]`), and the worker that runs them while serving.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use meta::{Meta, Task};
use registry::Registry;
use tokio::sync::watch;

use crate::config::Config;
use crate::serve::{DataDir, Offline};

#[derive(clap::Args)]
pub struct ScrubArgs {
    /// Read at most this many bytes a second [default: as fast as the disk goes]
    #[arg(long, default_value_t = 0)]
    bytes_per_sec: u64,
    /// Only list the blobs found damaged so far; read nothing
    #[arg(long)]
    list: bool,
}

/// Exits 0 if no blob in use is damaged, 1 if one is (found now or before and not pushed again).
pub fn run(config: Config, args: ScrubArgs) -> anyhow::Result<u8> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let Offline { registry, meta, .. } =
            DataDir::offline(&config, "a running server scrubs its own store (scrub.enabled); stop it to run customs scrub").await?;
        let done = async {
            if !args.list {
                let found = registry.scrub(args.bytes_per_sec).await?;
                for d in &found.damaged {
                    println!("damaged {}: {}; its bytes were moved to {}", d.digest, d.reason, d.kept_at);
                }
                println!(
                    "checked {} blobs ({} bytes): {} damaged, {} unreadable",
                    found.blobs,
                    found.bytes,
                    found.damaged.len(),
                    found.unreadable
                );
            }
            Ok::<_, anyhow::Error>(meta::Integrity::damaged_blobs(&*meta, 10_000).await?)
        }
        .await;
        meta.close().await;
        let damaged: Vec<_> = done?.into_iter().filter(|d| d.in_use).collect();
        for d in &damaged {
            println!("needs a push: {} ({}, found {})", d.digest, d.reason, oci::rfc3339((d.found_at_ms / 1000).max(0) as u64));
        }
        Ok(if damaged.is_empty() { 0 } else { 1 })
    })
}

/// Worker "scrub": a pass `interval_secs` after the last one ended, paced to `bytes_per_sec`, when
/// this replica leads it (else it asks again each minute), until shutdown, which cuts a pass
/// short (it resumes at the next start, or on the replica that leads next: the place is a record).
pub async fn worker(registry: Arc<Registry>, meta: Meta, scrub: crate::config::Scrub, mut stop: watch::Receiver<bool>) {
    let interval = Duration::from_secs(scrub.interval_secs.max(1));
    loop {
        let wait = match registry.scrub_due_in(interval).await {
            Ok(wait) => wait,
            Err(e) => {
                tracing::warn!(worker = "scrub", error = %e, "cannot read the scrub's progress");
                interval.min(Duration::from_secs(300))
            }
        };
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            () = tokio::time::sleep(wait) => {}
        }
        if !meta.leads(Task::Scrub).await {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                () = tokio::time::sleep(Duration::from_secs(60)) => {}
            }
            continue;
        }
        let started = std::time::Instant::now();
        let pass = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            pass = registry.scrub(scrub.bytes_per_sec) => pass,
        };
        match pass {
            Ok(found) => tracing::info!(
                worker = "scrub", blobs = found.blobs, bytes = found.bytes, damaged = found.damaged.len(),
                unreadable = found.unreadable, ms = started.elapsed().as_millis() as u64, "a scrub pass"
            ),
            Err(e) => {
                tracing::warn!(worker = "scrub", error = %e, "a scrub pass failed");
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => return,
                    () = tokio::time::sleep(Duration::from_secs(300)) => {}
                }
            }
        }
    }
}

//! `customs gc`: one pass of garbage collection over a data directory no server is using (a
//! running server does its own passes, `[gc]`).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use blobs::Blobs;
use meta::Meta;
use registry::Registry;

use crate::config::Config;
use crate::serve::DataDir;

#[derive(clap::Args)]
pub struct GcArgs {
    /// Spare layers linked and bytes written less than this many seconds ago [default: gc.delay_secs]
    #[arg(long)]
    delay_secs: Option<u64>,
}

pub fn run(config: Config, args: GcArgs) -> anyhow::Result<()> {
    anyhow::ensure!(config.data.is_dir(), "no data directory at {}", config.data.display());
    let delay = Duration::from_secs(args.delay_secs.unwrap_or(config.gc.delay_secs));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let dir = DataDir::open(&config.data)
            .await
            .context("a running server collects its own garbage (gc.enabled); stop it to run customs gc")?;
        let meta = Arc::new(dir.meta);
        let registry = Registry::new(Blobs(Arc::new(dir.blobs)), Meta(meta.clone()), config.limits.registry());
        let collected = registry.collect_garbage(delay).await;
        meta.close().await;
        let c = collected?;
        println!(
            "deleted {} referrers of deleted manifests; unlinked {} layers no manifest referenced; \
             deleted {} blobs ({} bytes) no record needed",
            c.referrers, c.links, c.blobs, c.bytes
        );
        Ok(())
    })
}

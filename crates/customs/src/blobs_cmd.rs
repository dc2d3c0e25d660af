//! `customs blobs copy`: copies a stopped server's blobs from its data directory into the bucket
//! `[storage.s3]` names, so one server can become replicas that share a blob store. The data
//! directory's blobs are left as they were.

use anyhow::{Context, bail};

use crate::config::Config;

#[derive(clap::Subcommand)]
pub enum BlobsCommand {
    /// Copy every blob of the data directory into the S3 bucket [storage.s3] names, with the
    /// server stopped; blobs already there are skipped, so a copy cut short is run again
    Copy,
}

pub fn run(config: Config, command: BlobsCommand) -> anyhow::Result<()> {
    let BlobsCommand::Copy = command;
    if config.storage.s3.bucket.is_empty() {
        bail!("no bucket to copy into: set [storage.s3] (CUSTOMS_STORAGE__S3__BUCKET and the rest) as the replicas will have it");
    }
    let data = &config.data;
    anyhow::ensure!(data.join("blobs").is_dir(), "no blobs in data directory {}", data.display());
    let _lock = crate::serve::lock_data_dir(data).context("stop the server before copying its blobs")?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let from = blobs::FsBlobStore::open(data).with_context(|| format!("cannot open the blobs of {}", data.display()))?;
        // The bucket is claimed as a server would claim it: for the records in PostgreSQL if
        // they are there already, else for this data directory (whose records take its id when
        // `customs records copy` moves them).
        let records = if config.records.postgres() { Some(crate::storage::records(&config, data, true).await?) } else { None };
        let to = crate::storage::open(&config, data, true, records.as_ref()).await;
        if let Some(r) = &records {
            r.close().await;
        }
        let to = to?;
        let started = std::time::Instant::now();
        let done = blobs::copy(&from, &*to.blobs, |digest, n| println!("copied {digest} ({})", blobs::human_size(n)))
            .await
            .context("copying stopped; run it again to go on (blobs already copied are skipped)")?;
        println!(
            "copied {} blobs ({}) into {} in {:.1} s; {} were there already",
            done.blobs,
            blobs::human_size(done.bytes),
            to.place,
            started.elapsed().as_secs_f64(),
            done.skipped
        );
        for (digest, got) in &done.damaged {
            println!("not copied: {digest} is damaged (its bytes hash to {got})");
        }
        if !done.damaged.is_empty() {
            bail!("{} damaged blobs were not copied (customs scrub moves them aside; push their images again)", done.damaged.len());
        }
        Ok(())
    })
}

//! The blob store the settings name: the data directory's `blobs/` by default, an S3-compatible
//! bucket when `storage.s3.bucket` is set. Records stay in the data directory either way.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use blobs::{Blobs, FsBlobStore, MappedRegions, S3BlobStore};

use crate::config::Config;

pub(crate) struct Storage {
    pub blobs: Blobs,
    /// Blob windows mapped from files, for connections that send them with sendfile (none for S3).
    pub regions: Arc<MappedRegions>,
    /// Where the bytes are, for the start-up line.
    pub place: String,
}

/// Opens the configured store and checks that it can be written (`write`: a server that could not
/// store a push must not start), or read (a read-only server, a query: they write nothing).
pub(crate) async fn open(config: &Config, data: &Path, write: bool) -> anyhow::Result<Storage> {
    let Some(settings) = config.storage.s3.settings() else {
        let fs = FsBlobStore::open(data).with_context(|| format!("data directory {} is not writable", data.display()))?;
        if fs.part_writes() == blobs::PartWrites::Buffered {
            tracing::warn!(data = %data.display(), "the filesystem refuses O_DIRECT: uploads are written through the page cache, at more CPU per byte");
        }
        let regions = fs.mapped_regions();
        return Ok(Storage { blobs: Blobs(Arc::new(fs)), regions, place: data.join("blobs").display().to_string() });
    };
    let s3 = &config.storage.s3;
    let ca = if s3.ca_file.as_os_str().is_empty() {
        None
    } else {
        Some(std::fs::read(&s3.ca_file).with_context(|| format!("storage.s3.ca_file {}", s3.ca_file.display()))?)
    };
    let connector = remote::https_connector(ca.as_deref()).context("storage.s3: the TLS settings")?;
    let store = S3BlobStore::new(&settings, connector).context("storage.s3")?;
    store.check(write).await.context("the S3 store cannot be used (storage.s3; credentials from AWS_* variables)")?;
    let place = store.url().to_owned();
    Ok(Storage { blobs: Blobs(Arc::new(store)), regions: MappedRegions::new(), place })
}

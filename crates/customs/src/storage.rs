//! Where things are kept, as the settings name them: blobs in the data directory's `blobs/` by
//! default, in an S3-compatible bucket when `storage.s3.bucket` is set; records in the data
//! directory's `meta.db` by default, in PostgreSQL when `records.url` is set ([`records`]).

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use blobs::{Blobs, FsBlobStore, MappedRegions, S3BlobStore};

use crate::config::Config;
use meta::SqlMeta;

/// Opens the records the settings name: PostgreSQL at `records.url`, else `meta.db` in `data`
/// (created unless `existing`: a CLI command needs the records a server made).
pub(crate) async fn records(config: &Config, data: &Path, existing: bool) -> anyhow::Result<SqlMeta> {
    if config.records.postgres() {
        let meta = SqlMeta::connect(&config.records.url).await.context("cannot open the records in PostgreSQL (records.url)")?;
        if config.storage.s3.bucket.is_empty() {
            tracing::warn!(
                "records are in PostgreSQL but blobs in the data directory: several replicas need a blob store they share ([storage.s3])"
            );
        }
        return Ok(meta);
    }
    let path = data.join("meta.db");
    if existing && !path.exists() {
        anyhow::bail!("no records at {} (is --data right? start `customs serve` once first)", path.display());
    }
    SqlMeta::open(&path).await.with_context(|| format!("cannot open the records database {}", path.display()))
}

pub(crate) struct Storage {
    pub blobs: Blobs,
    /// Blob windows mapped from files, for connections that send them with sendfile (none for S3).
    pub regions: Arc<MappedRegions>,
    /// Where the bytes are, for the start-up line.
    pub place: String,
}

/// Opens the configured store and checks that it can be written (`write`: a server that could not
/// store a push must not start), or read (a read-only server, a query: they write nothing). A
/// writer also claims an S3 prefix for its records (`records`: the id of records shared in
/// PostgreSQL, else the data directory `data`'s own, [`data_dir_id`]): a prefix claimed for other
/// records is refused.
pub(crate) async fn open(config: &Config, data: &Path, write: bool, records: Option<&SqlMeta>) -> anyhow::Result<Storage> {
    let Some(settings) = config.storage.s3.settings() else {
        let fs = FsBlobStore::open(data)
            .with_context(|| format!("data directory {} is not writable", data.display()))?
            .with_reserve(config.storage.min_free_bytes);
        if let Some(space) = blobs::BlobStore::space(&fs)
            && space.available() == 0
        {
            tracing::warn!(
                data = %data.display(),
                free = space.free,
                reserve = space.reserve,
                "the data directory's filesystem is at its reserve of free space: uploads are refused until space is freed (storage.min_free_bytes)"
            );
        }
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
    if write {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let owner = match records {
            Some(meta) if config.records.postgres() => {
                let id = meta.id(&uuid::Uuid::new_v4().simple().to_string()).await.context("cannot read the records' id")?;
                format!("{id}\ncustoms records in PostgreSQL, shared by replicas\n")
            }
            _ => format!("{}\ncustoms data directory {} on {}\n", data_dir_id(data)?, data.display(), host.trim()),
        };
        store.claim(&owner).await.context("storage.s3")?;
    }
    let place = store.url().to_owned();
    Ok(Storage { blobs: Blobs(Arc::new(store)), regions: MappedRegions::new(), place })
}

/// The data directory's own id (`<data>/id`, made at its first use and synced, so a crash cannot
/// leave a directory that no longer matches its claim): what an S3 prefix's claim names.
pub(crate) fn data_dir_id(data: &Path) -> anyhow::Result<String> {
    let file = data.join("id");
    match std::fs::read_to_string(&file) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", file.display())),
    }
    let id = uuid::Uuid::new_v4().simple().to_string();
    let tmp = data.join("id.tmp");
    let written = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        std::io::Write::write_all(&mut f, format!("{id}\n").as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &file)?;
        std::fs::File::open(data)?.sync_all()
    })();
    written.with_context(|| format!("cannot write {}", file.display()))?;
    Ok(id)
}

//! `customs records copy --to URL`: moves a stopped server's records from `meta.db` into an empty
//! PostgreSQL database, so an installation that began on the embedded default can run as
//! replicas (`records.url`) without a push again. `meta.db` is left as it was.

use anyhow::{Context, bail};

use crate::config::{Config, Records};

#[derive(clap::Subcommand)]
pub enum RecordsCommand {
    /// Copy every record of the data directory's meta.db into an empty PostgreSQL database
    /// (postgres://USER@HOST:PORT/DB; TLS with ?sslmode=verify-full), with the server stopped
    Copy {
        /// The PostgreSQL database to copy into [env: CUSTOMS_RECORDS_COPY_TO]
        #[arg(long, env = "CUSTOMS_RECORDS_COPY_TO", hide_env_values = true)]
        to: String,
    },
}

pub fn run(config: Config, command: RecordsCommand) -> anyhow::Result<()> {
    let RecordsCommand::Copy { to } = command;
    let target = Records { url: to };
    target.check().map_err(|e| anyhow::anyhow!("--to {e}"))?;
    if config.records.postgres() {
        bail!("the records are in PostgreSQL already (records.url {}): there is no meta.db to copy", config.records.shown());
    }
    let data = &config.data;
    anyhow::ensure!(data.is_dir(), "no data directory at {}", data.display());
    let _lock = crate::serve::lock_data_dir(data).context("stop the server before copying its records")?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let source = crate::storage::records(&config, data, true).await?;
        let into = meta::SqlMeta::connect(&target.url).await.with_context(|| format!("cannot open {}", target.shown()));
        let into = match into {
            Ok(into) => into,
            Err(e) => {
                source.close().await;
                return Err(e);
            }
        };
        let started = std::time::Instant::now();
        let copied = source.copy_into(&into, |table, rows| println!("copied {table}: {rows} rows")).await;
        // A bucket prefix this data directory claimed stays theirs: the records take its id
        // (unless they had one of their own already).
        let id = match &copied {
            Ok(_) if !config.storage.s3.bucket.is_empty() => Some(into.id(&crate::storage::data_dir_id(data)?).await),
            _ => None,
        };
        source.close().await;
        into.close().await;
        let copied = copied.context("no record was copied; the PostgreSQL database holds none of them")?;
        if let Some(id) = id {
            id.context("cannot give the records the data directory's id")?;
        }
        let rows: u64 = copied.iter().map(|(_, n)| n).sum();
        println!("copied {rows} rows into {} in {:.1} s", target.shown(), started.elapsed().as_secs_f64());
        println!("now start every replica with records.url (CUSTOMS_RECORDS__URL) set to it; {} is kept as it was and no longer read", data.join("meta.db").display());
        if config.storage.s3.bucket.is_empty() {
            println!("the blobs are in this data directory: replicas need a blob store they share ([storage.s3])");
        }
        Ok(())
    })
}

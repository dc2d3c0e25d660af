//! `customs db import|update|status`: the local advisory DB.

use crate::config::Config;
use anyhow::Context;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(clap::Subcommand)]
pub enum DbCommand {
    /// Import OSV records (a directory, a JSON file or an OSV all.zip), Alpine secdb files or the
    /// Debian tracker's DSA/DLA lists into the DB.
    Import {
        path: PathBuf,
        #[arg(long)]
        db: Option<PathBuf>,
    },
    /// Download each ecosystem's all.zip from advisories.update_url and import it.
    Update {
        #[arg(long)]
        db: Option<PathBuf>,
        /// Base URL [default: advisories.update_url].
        #[arg(long)]
        url: Option<String>,
        /// Ecosystems to fetch [default: advisories.ecosystems].
        #[arg(long = "ecosystem")]
        ecosystems: Vec<String>,
    },
    /// The DB's version, age, sources and counts per ecosystem.
    Status {
        #[arg(long)]
        db: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn open(path: &Path) -> anyhow::Result<advisories::Db> {
    match advisories::Db::load(path) {
        Ok(db) => Ok(db),
        Err(advisories::Error::Missing(_)) => Ok(advisories::Db::empty()),
        Err(e) => Err(e.into()),
    }
}

fn summary(source: &str, r: &advisories::ImportReport) {
    println!(
        "{source}: {} files, {} new, {} updated, {} withdrawn, {} problems",
        r.files,
        r.added,
        r.replaced,
        r.withdrawn,
        r.problems.len()
    );
    for p in r.problems.iter().take(20) {
        println!("  skipped: {p}");
    }
    if r.problems.len() > 20 {
        println!("  … and {} more", r.problems.len() - 20);
    }
}

pub fn run(config: Config, command: DbCommand) -> anyhow::Result<()> {
    match command {
        DbCommand::Import { path, db } => {
            let db_path = db.unwrap_or_else(|| config.advisory_db());
            let mut db = open(&db_path)?;
            let report = db.import_path(&path, now()).with_context(|| format!("cannot import {}", path.display()))?;
            db.save(&db_path)?;
            summary(&path.display().to_string(), &report);
            println!("{}: {} advisories, version {}", db_path.display(), db.advisories().len(), db.version());
            Ok(())
        }
        DbCommand::Update { db, url, ecosystems } => {
            let db_path = db.unwrap_or_else(|| config.advisory_db());
            let url = url.unwrap_or(config.advisories.update_url.clone());
            let ecosystems = if ecosystems.is_empty() { config.advisories.ecosystems.clone() } else { ecosystems };
            let mut db = open(&db_path)?;
            let dir = db_path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_owned();
            std::fs::create_dir_all(&dir)?;
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let client = remote::Client::new(None, false, None)?;
            let mut failed = Vec::new();
            for eco in &ecosystems {
                let zip_url = format!("{}/{}/all.zip", url.trim_end_matches('/'), eco.replace(' ', "%20"));
                let tmp = dir.join(format!(".download-{}.zip", eco.replace(|c: char| !c.is_ascii_alphanumeric(), "_")));
                let fetched = rt.block_on(download(&client, &zip_url, &tmp));
                let result = fetched.and_then(|()| db.import_path(&tmp, now()).map_err(anyhow::Error::from));
                let _ = std::fs::remove_file(&tmp);
                match result {
                    Ok(r) => summary(&zip_url, &r),
                    Err(e) => {
                        eprintln!("customs: {eco}: {e:#}");
                        failed.push(eco.clone());
                    }
                }
            }
            if failed.len() == ecosystems.len() {
                anyhow::bail!("no ecosystem could be updated; the DB is unchanged");
            }
            db.save(&db_path)?;
            println!("{}: {} advisories, version {}", db_path.display(), db.advisories().len(), db.version());
            if !failed.is_empty() {
                anyhow::bail!("not updated: {}", failed.join(", "));
            }
            Ok(())
        }
        DbCommand::Status { db, json } => {
            let db_path = db.unwrap_or_else(|| config.advisory_db());
            let db = advisories::Db::load(&db_path)?;
            let s = db.status();
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
                return Ok(());
            }
            let mut out = std::io::stdout().lock();
            writeln!(out, "db:          {}", db_path.display())?;
            writeln!(out, "format:      {}", s.format)?;
            writeln!(out, "version:     {}", s.digest)?;
            writeln!(out, "updated:     {}", oci::rfc3339(s.updated_at))?;
            writeln!(out, "advisories:  {}", s.advisories)?;
            for src in &s.sources {
                writeln!(out, "source:      {} ({} records, {})", src.path, src.records, oci::rfc3339(src.imported_at))?;
            }
            for (eco, n) in &s.ecosystems {
                writeln!(out, "  {eco:<16} {n}")?;
            }
            Ok(())
        }
    }
}

/// Streams a URL to a file (never whole in memory).
async fn download(client: &remote::Client, url: &str, to: &Path) -> anyhow::Result<()> {
    use http_body_util::BodyExt;
    let mut body = client.fetch(url).await?;
    let mut f = std::fs::File::create(to).with_context(|| format!("cannot write {}", to.display()))?;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            f.write_all(&data)?;
        }
    }
    f.sync_all()?;
    Ok(())
}

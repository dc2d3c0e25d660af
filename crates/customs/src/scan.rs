//! `customs scan TARGET`: an image (OCI layout, `docker save` archive, registry reference) or a
//! directory (a root filesystem), inspected offline against the local advisory DB.

use crate::config::Config;
use crate::source::{self, Image, Platform};
use anyhow::{Context, bail};
use registry::inspect::{self, Severity, Target};
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Cyclonedx,
    Spdx,
    Sarif,
}

#[derive(Clone, Copy, Debug, PartialEq, clap::ValueEnum)]
pub enum Kind {
    Vuln,
    Secret,
    Malware,
    Config,
}

#[derive(clap::Args)]
pub struct ScanArgs {
    /// An OCI layout directory (DIR or DIR:REF), a `docker save` archive, a registry reference
    /// (host/repo:tag, repo@sha256:…), or any other directory (scanned as a root filesystem).
    target: String,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Write the report here instead of standard output.
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Only these severities (comma-separated: CRITICAL,HIGH,MEDIUM,LOW,UNKNOWN).
    #[arg(long, value_delimiter = ',')]
    severity: Vec<Severity>,
    /// Leave out vulnerabilities without a fixed version.
    #[arg(long)]
    ignore_unfixed: bool,
    /// Exit with this code when any vulnerability is reported (after the filters): CI gating.
    #[arg(long, default_value_t = 0)]
    exit_code: u8,
    /// The advisory DB file [default: <data>/advisories.db].
    #[arg(long)]
    db: Option<PathBuf>,
    /// List packages only, without an advisory DB.
    #[arg(long)]
    skip_db: bool,
    /// The platform to pick from a multi-arch index.
    #[arg(long, default_value = "linux/amd64")]
    platform: Platform,
    /// Registry user name (the password from CUSTOMS_SCAN_PASSWORD or --password-stdin).
    #[arg(long)]
    username: Option<String>,
    #[arg(long)]
    password_stdin: bool,
    /// Talk plain HTTP to the registry (loopback hosts do unless --ca-file is given).
    #[arg(long)]
    plain_http: bool,
    /// Trust these CA certificates (PEM) too, for a registry with a private CA.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// What to look for (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "vuln,secret,malware,config")]
    scanners: Vec<Kind>,
    /// More secret rule files (added to scan.secret_rules).
    #[arg(long)]
    secret_rules: Vec<PathBuf>,
    /// More YARA rule files or directories (added to scan.malware_rules).
    #[arg(long)]
    malware_rules: Vec<PathBuf>,
    /// clamd's socket (overrides scan.clamd_socket).
    #[arg(long)]
    clamd: Option<PathBuf>,
}

/// A layer reader that shows progress on a terminal.
struct Progress<R> {
    inner: R,
    read: u64,
    shown: u64,
    label: String,
    total: Option<u64>,
    tty: bool,
}

impl<R: Read> Read for Progress<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.tty && (self.read - self.shown >= 1 << 20 || n == 0) {
            self.shown = self.read;
            let total = self.total.map(|t| format!(" / {:.1} MB", t as f64 / 1e6)).unwrap_or_default();
            eprint!("\r\x1b[K{}  {:.1} MB{total}", self.label, self.read as f64 / 1e6);
        }
        Ok(n)
    }
}

pub fn run(config: Config, args: ScanArgs) -> anyhow::Result<u8> {
    let db_path = args.db.clone().unwrap_or_else(|| config.advisory_db());
    let vuln = args.scanners.contains(&Kind::Vuln);
    let db = if args.skip_db || !vuln {
        None
    } else {
        Some(advisories::Db::load(&db_path).with_context(|| "the advisory DB is needed to match vulnerabilities (or pass --skip-db to list packages only)")?)
    };
    let password = if args.password_stdin {
        let mut p = String::new();
        std::io::stdin().read_to_string(&mut p)?;
        Some(p.trim_end_matches(['\r', '\n']).to_owned())
    } else {
        std::env::var("CUSTOMS_SCAN_PASSWORD").ok()
    };
    let credentials = match (&args.username, password) {
        (Some(u), Some(p)) => Some(remote::Credentials { username: u.clone(), password: p }),
        (Some(_), None) => bail!("--username needs a password: CUSTOMS_SCAN_PASSWORD or --password-stdin"),
        _ => None,
    };
    let tty = std::io::stderr().is_terminal();
    let on = |k: Kind| args.scanners.contains(&k);
    let insp = crate::engines::build(
        &config,
        &crate::engines::Wanted { secrets: on(Kind::Secret), malware: on(Kind::Malware), misconfig: on(Kind::Config) },
        &args.secret_rules,
        &args.malware_rules,
        args.clamd.as_deref(),
    )?
    .inspection;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let target = args.target.clone();
    let platform = args.platform.clone();
    let plain_http = args.plain_http;
    let ca = match &args.ca_file {
        Some(p) => Some(std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?),
        None => None,
    };
    let handle = rt.handle().clone();
    let (inventory, image) = rt.block_on(async move {
        tokio::task::spawn_blocking(move || -> anyhow::Result<(scanner::Inventory, Option<Image>)> {
            let path = PathBuf::from(&target);
            let (dir_part, ref_part) = match target.rsplit_once(':') {
                Some((d, r)) if PathBuf::from(d).join("oci-layout").is_file() => (PathBuf::from(d), Some(r.to_owned())),
                _ => (path.clone(), None),
            };
            let mut scanner = scanner::Scanner::new(scanner::Limits::default()).with_inspection(insp);
            let image = if dir_part.join("oci-layout").is_file() {
                Some(source::oci_layout(&dir_part, ref_part.as_deref(), &platform)?)
            } else if path.is_dir() {
                scanner.add_dir(&path);
                None
            } else if path.is_file() {
                Some(source::docker_archive(&path).with_context(|| format!("{target}: not a docker save archive"))?)
            } else {
                let client = std::sync::Arc::new(remote::Client::new(credentials, plain_http, ca.as_deref())?);
                Some(source::registry(&handle, &target, client, &platform).with_context(|| format!("{target}: neither a path nor a reachable image"))?)
            };
            let mut image = image;
            if let Some(img) = image.as_mut() {
                let n = img.layers.len();
                for (i, layer) in std::mem::take(&mut img.layers).into_iter().enumerate() {
                    let short: String = layer.digest.chars().take(19).collect();
                    let label = format!("layer {}/{n} {short}", i + 1);
                    scanner.add_layer(&layer.digest, Progress { inner: layer.reader, read: 0, shown: 0, label, total: layer.size, tty });
                }
                if tty {
                    eprint!("\r\x1b[K");
                }
                if let Some(config) = &img.config {
                    scanner.add_config(config);
                }
            }
            Ok((scanner.finish(), image))
        })
        .await?
    })?;
    let target = match &image {
        Some(img) => Target { kind: img.kind.into(), name: img.name.clone(), digest: img.digest.clone() },
        None => Target { kind: "rootfs".into(), name: args.target.clone(), digest: None },
    };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let mut report = inspect::report(inventory, db.as_ref(), target, now);
    report.filter(&args.severity, args.ignore_unfixed);
    let id = uuid::Uuid::new_v4().to_string();
    let text = match args.format {
        Format::Table => report.to_table(),
        Format::Json => serde_json::to_string_pretty(&report.to_json())? + "\n",
        Format::Cyclonedx => serde_json::to_string_pretty(&report.to_cyclonedx(&id))? + "\n",
        Format::Spdx => serde_json::to_string_pretty(&report.to_spdx(&id))? + "\n",
        Format::Sarif => serde_json::to_string_pretty(&report.to_sarif())? + "\n",
    };
    match &args.output {
        Some(p) => std::fs::write(p, text).with_context(|| format!("cannot write {}", p.display()))?,
        None => std::io::stdout().write_all(text.as_bytes())?,
    }
    Ok(if report.gating_findings() > 0 { args.exit_code } else { 0 })
}

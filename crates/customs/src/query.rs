//! `customs query …` and `customs waiver …`: the gate's questions, waivers and storage quotas on
//! the local data directory, through the same `Registry` calls as `/api/v1`.


use anyhow::Context;
use meta::{ImageMatch, Meta, NewWaiver, PackageQuery};
use oci::{Digest, RepoName};
use registry::{Actor, Registry, VersionFilter};

use crate::config::Config;

#[derive(clap::Subcommand)]
pub enum QueryCommand {
    /// Images (and their tags) hit by a vulnerability, by its CVE or any alias.
    Vuln { id: String },
    /// Images that contain a package.
    Package {
        /// A purl; without `@version`, any version.
        #[arg(long)]
        purl: Option<String>,
        /// The package name (for Maven, the artifact id alone also matches).
        #[arg(long)]
        name: Option<String>,
        /// deb, rpm, apk, pypi, npm, golang, cargo, maven, gem, composer, nuget.
        #[arg(long)]
        ecosystem: Option<String>,
        /// A version, or its prefix at a component boundary (`2.14` matches `2.14.1`).
        #[arg(long, conflicts_with = "range")]
        version: Option<String>,
        /// Bounds in the ecosystem's order: `>=2.0,<2.15`.
        #[arg(long)]
        range: Option<String>,
    },
    /// An image's stored report and verdict (REPO@DIGEST), as JSON.
    Report { image: String },
    /// Storage quotas and what each namespace holds: every one, or the one a namespace or
    /// repository counts against.
    Quota { name: Option<String> },
}

#[derive(clap::Subcommand)]
pub enum WaiverCommand {
    /// Set a finding aside: a CVE (or alias), a secret's fingerprint or a misconfiguration id.
    Add {
        finding: String,
        /// The repositories it holds in (a glob).
        #[arg(long, default_value = "**")]
        repositories: String,
        #[arg(long)]
        reason: String,
        /// When it stops holding: an RFC 3339 time or a date.
        #[arg(long)]
        expires: String,
    },
    List,
    Remove { id: i64 },
}

/// What to run: a query or a waiver change.
pub enum Command {
    Query(QueryCommand),
    Waiver(WaiverCommand),
}

pub fn run(config: Config, command: Command) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async move {
        let meta = crate::access::open_records(&config).await?;
        let blobs = crate::storage::open(&config, &config.data, false, None).await?.blobs;
        let registry = Registry::new(blobs, Meta(meta.clone()), config.registry()?);
        let actor_name = crate::access::cli_actor_name();
        let actor = Actor { name: &actor_name, client: None };
        let result = command_on(&registry, &actor, command).await;
        meta.close().await;
        result
    })
}

/// `namespace  used of max (free)`, sizes in decimal units as refusals give them.
fn quota_line(q: &registry::QuotaUsage) -> String {
    let size = blobs::human_size;
    let free = q.max_bytes.saturating_sub(q.used_bytes);
    format!("{}\t{} of {}\t({} free)", q.namespace, size(q.used_bytes), size(q.max_bytes), size(free))
}

fn image<T>(m: &ImageMatch<T>) -> String {
    let tags = if m.tags.is_empty() { String::new() } else { format!(" ({})", m.tags.join(", ")) };
    format!("{}@{}{tags}", m.repo, m.digest)
}

async fn command_on(registry: &Registry, actor: &Actor<'_>, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Query(QueryCommand::Vuln { id }) => {
            let found = registry.images_with_vulnerability(&id).await?;
            for m in &found {
                let f = &m.found;
                let fixed = f.fixed.as_deref().map_or_else(|| "no fix".to_owned(), |v| format!("fixed in {v}"));
                println!("{}\t{} {} {} ({}, {fixed})", image(m), f.canonical, f.package, f.version, f.severity);
            }
            eprintln!("{} image(s)", found.len());
        }
        Command::Query(QueryCommand::Package { purl, name, ecosystem, version, range }) => {
            let versions = match (version, range) {
                (Some(v), _) => VersionFilter::Prefix(v),
                (None, Some(r)) => VersionFilter::parse_range(&r)?,
                (None, None) => VersionFilter::Any,
            };
            let found = registry.images_with_package(&PackageQuery { purl, ecosystem, name }, &versions).await?;
            for m in &found {
                println!("{}\t{}", image(m), m.found.purl);
            }
            eprintln!("{} image(s)", found.len());
        }
        Command::Query(QueryCommand::Report { image }) => {
            let (repo, digest) = image.split_once('@').context("give the image as REPO@DIGEST")?;
            let (repo, digest): (RepoName, Digest) = (repo.parse()?, digest.parse()?);
            let registry::ImageReport { report: mut out, verdict, .. } = registry.image_report(&repo, &digest).await?;
            if let Some(v) = verdict {
                out["verdict"] = serde_json::json!({ "served": v.serves(), "allowed": v.allowed, "policy": v.policy, "reasons": v.reasons, "warnings": v.warnings });
            }
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        Command::Query(QueryCommand::Quota { name: Some(name) }) => {
            let name: RepoName = name.parse()?;
            let q = registry.quota_of(name.as_str()).await?.with_context(|| format!("no storage quota applies to {name}"))?;
            println!("{}", quota_line(&q));
        }
        Command::Query(QueryCommand::Quota { name: None }) => {
            let mut last = None;
            loop {
                let page = registry.quota_page(1000, last.as_deref()).await?;
                for q in &page.entries {
                    println!("{}", quota_line(q));
                }
                last = page.entries.last().map(|q| q.namespace.clone());
                if !page.more {
                    break;
                }
            }
        }
        Command::Waiver(WaiverCommand::Add { finding, repositories, reason, expires }) => {
            let expires_at = oci::parse_rfc3339(&expires).with_context(|| format!("--expires {expires:?} is not an RFC 3339 time or a date"))?;
            let waiver = NewWaiver { finding, repositories, reason, expires_at_ms: expires_at as i64 * 1000, created_by: actor.name.to_owned() };
            let w = registry.add_waiver(actor, waiver).await?;
            println!("waiver {} added: {} in {} until {}", w.id, w.finding, w.repositories, oci::rfc3339(expires_at));
        }
        Command::Waiver(WaiverCommand::List) => {
            for w in registry.waivers().await? {
                let until = oci::rfc3339((w.expires_at_ms / 1000).max(0) as u64);
                println!("{}\t{}\t{}\tuntil {until}\tby {}\t{}", w.id, w.finding, w.repositories, w.created_by, w.reason);
            }
        }
        Command::Waiver(WaiverCommand::Remove { id }) => {
            registry.remove_waiver(actor, id).await?;
            println!("waiver {id} removed");
        }
    }
    Ok(())
}

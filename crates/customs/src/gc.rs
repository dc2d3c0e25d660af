//! `customs gc`: one pass of retention and garbage collection over a data directory no server is
//! using (a running server does its own passes, `[gc]`), and what both share: the pass itself
//! and the `[retention]` settings made into policies.

use std::time::Duration;

use anyhow::Context;
use registry::{Collected, Expired, KeepTags, Registry, Retention, RetentionPolicy};

use crate::config::Config;
use crate::serve::{DataDir, Offline};

#[derive(clap::Args)]
pub struct GcArgs {
    /// Spare layers linked and bytes written less than this many seconds ago [default: gc.delay_secs]
    #[arg(long)]
    delay_secs: Option<u64>,
    /// Print what the retention policies would delete; delete nothing, collect nothing
    #[arg(long)]
    dry_run: bool,
}

pub fn run(config: Config, args: GcArgs) -> anyhow::Result<()> {
    let delay = Duration::from_secs(args.delay_secs.unwrap_or(config.gc.delay_secs));
    let mut retention = retention(&config)?;
    retention.dry_run |= args.dry_run;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let Offline { registry, meta, .. } =
            DataDir::offline(&config, "a running server collects its own garbage (gc.enabled); stop it to run customs gc").await?;
        let done = pass(&registry, &retention, delay, !args.dry_run).await;
        meta.close().await;
        let (expired, collected) = done?;
        let would = if retention.dry_run { "would delete" } else { "deleted" };
        for (repo, tag) in &expired.tags {
            println!("retention {would} tag {repo}:{tag}");
        }
        for (repo, digest) in &expired.manifests {
            println!("retention {would} untagged manifest {repo}@{digest}");
        }
        if !retention.policies.is_empty() {
            println!("retention {would} {} tags and {} untagged manifests", expired.tags.len(), expired.manifests.len());
        }
        match collected {
            Some(c) => println!(
                "deleted {} referrers of deleted manifests; unlinked {} layers no manifest referenced; \
                 deleted {} blobs ({} bytes) no record needed",
                c.referrers, c.links, c.blobs, c.bytes
            ),
            None => println!("nothing deleted (--dry-run)"),
        }
        Ok(())
    })
}

/// One pass: the pulls noted so far written (retention goes by them), `retention` applied, then,
/// if `collect`, the garbage collected (what retention deleted included).
pub async fn pass(registry: &Registry, retention: &Retention, delay: Duration, collect: bool) -> anyhow::Result<(Expired, Option<Collected>)> {
    registry.flush_pulls().await?;
    let expired = registry.expire(retention).await?;
    let collected = if collect { Some(registry.collect_garbage(delay).await?) } else { None };
    Ok((expired, collected))
}

/// The `[retention]` settings as policies, or what is wrong with them.
pub fn retention(config: &Config) -> anyhow::Result<Retention> {
    let secs = |s: Option<u64>| s.map(Duration::from_secs);
    let mut policies = Vec::new();
    for (i, p) in config.retention.policies.iter().enumerate() {
        let at = || format!("[[retention.policies]] #{}", i + 1);
        let repositories = crate::config::repository_globs(&p.repositories, at)?;
        let mut keep_tags = Vec::new();
        for k in &p.keep_tags {
            keep_tags.push(KeepTags {
                patterns: k.patterns.iter().map(|g| g.parse()).collect::<Result<_, _>>().with_context(at)?,
                most_recently_pushed: k.most_recently_pushed,
                most_recently_pulled: k.most_recently_pulled,
                pushed_within: secs(k.pushed_within_secs),
                pulled_within: secs(k.pulled_within_secs),
            });
        }
        policies.push(RetentionPolicy { repositories, keep_tags, delete_untagged_after: secs(p.delete_untagged_after_secs) });
    }
    Ok(Retention { policies, dry_run: config.retention.dry_run })
}

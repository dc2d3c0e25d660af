//! Eviction: what a mirror caches is taken out again when it has not been pulled for a while,
//! or, least recently pulled first, when the cache holds more than its upstream may keep.
//!
//! Pulls are remembered in memory ([`registry::Registry::record_pull`]) and written to the
//! records before each pass, so a pull costs no write. An image pulled within `keep_pulled_within` is never
//! evicted, whatever the size (a node may be pulling it right now); nor is one whose
//! repository has a fetch under way. Evicting removes the manifest, its tags and referrers,
//! the blob links nothing else in the repository needs, and the bytes nothing anywhere needs
//! (`Registry::evict`). A client that asks again later fetches the image from the upstream again.

use std::sync::atomic::Ordering;

use oci::{Digest, RepoName};
use registry::Result;

use crate::{Mirror, Upstream};

/// Manifests looked at per query.
const BATCH: usize = 100;

/// What one pass evicted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Evictions {
    pub images: usize,
    pub bytes: u64,
}

impl Mirror {
    /// One pass over every upstream with an eviction policy, as of `now_ms`.
    pub async fn evict(&self, now_ms: i64) -> Result<Evictions> {
        self.registry.flush_pulls().await?;
        let mut done = Evictions::default();
        for upstream in &self.upstreams {
            self.evict_upstream(upstream, now_ms, &mut done).await?;
        }
        Ok(done)
    }

    async fn evict_upstream(&self, upstream: &Upstream, now_ms: i64, done: &mut Evictions) -> Result<()> {
        let config = &upstream.config;
        let name = config.name.as_str();
        let in_use_since = now_ms.saturating_sub(config.keep_pulled_within.as_millis() as i64);
        if let Some(idle) = config.evict_unpulled_after {
            let before = now_ms.saturating_sub(idle.as_millis() as i64).min(in_use_since);
            loop {
                let batch = self.meta.least_recently_pulled(name, before, BATCH).await?;
                let mut evicted_any = false;
                for image in &batch {
                    evicted_any |= self.evict_one(name, &image.repo, &image.digest, "not pulled recently", done).await?;
                }
                if batch.len() < BATCH || !evicted_any {
                    break;
                }
            }
        }
        let Some(max) = config.max_bytes else { return Ok(()) };
        'over: while self.meta.linked_bytes(name, &[]).await? > max {
            let batch = self.meta.least_recently_pulled(name, in_use_since, BATCH).await?;
            let mut evicted_any = false;
            for image in &batch {
                evicted_any |= self.evict_one(name, &image.repo, &image.digest, "the cache is over max_bytes", done).await?;
                if self.meta.linked_bytes(name, &[]).await? <= max {
                    break 'over;
                }
            }
            if !evicted_any {
                let held = self.meta.linked_bytes(name, &[]).await?;
                tracing::warn!(worker = "mirror-evict", upstream = name, held, max, "the cache is over max_bytes, but what it holds is in use");
                break;
            }
        }
        Ok(())
    }

    /// Evicts one image unless its repository has a fetch under way; whether it did.
    async fn evict_one(&self, upstream: &str, repo: &RepoName, digest: &Digest, why: &str, done: &mut Evictions) -> Result<bool> {
        if self.busy(repo) {
            return Ok(false);
        }
        let evicted = self.registry.evict(repo, digest).await?;
        self.stats.evicted_images.fetch_add(1, Ordering::Relaxed);
        self.stats.evicted_bytes.fetch_add(evicted.bytes, Ordering::Relaxed);
        done.images += 1;
        done.bytes += evicted.bytes;
        tracing::info!(worker = "mirror-evict", upstream, %repo, %digest, bytes = evicted.bytes, why, "evicted");
        Ok(true)
    }

    /// Whether a manifest or blob of `repo` is being fetched.
    fn busy(&self, repo: &RepoName) -> bool {
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).keys().any(|(r, _)| r == repo)
            || self.fills.lock().unwrap_or_else(|p| p.into_inner()).keys().any(|(r, _)| r == repo)
    }
}

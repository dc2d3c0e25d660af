//! When each manifest was last pulled: what mirror eviction and retention go by. A pull is noted
//! in memory ([`Registry::record_pull`], no write on the read path) and written to the records
//! by [`Registry::flush_pulls`], which the server calls every minute, before each eviction and
//! retention pass, and at shutdown. A crash loses at most the pulls since the last flush.

use std::collections::HashMap;
use std::sync::Mutex;

use oci::{Digest, RepoName};

use crate::{Registry, Result};

/// Manifests remembered between flushes, at most (later pulls of those still count).
const PULLS_MAX: usize = 100_000;

/// Pulls since the last flush, by repository, then digest (a lookup allocates nothing).
#[derive(Default)]
pub(crate) struct Pulls {
    by_repo: Mutex<HashMap<RepoName, HashMap<Digest, i64>>>,
    count: std::sync::atomic::AtomicUsize,
}

impl Registry {
    /// Notes that `digest` was pulled (GET or HEAD) from `repo` at `at_ms`.
    pub fn record_pull(&self, repo: &RepoName, digest: &Digest, at_ms: i64) {
        use std::sync::atomic::Ordering::Relaxed;
        let mut by_repo = self.pulls.by_repo.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(at) = by_repo.get_mut(repo).and_then(|m| m.get_mut(digest)) {
            *at = (*at).max(at_ms);
        } else if self.pulls.count.load(Relaxed) < PULLS_MAX {
            by_repo.entry(repo.clone()).or_default().insert(digest.clone(), at_ms);
            self.pulls.count.fetch_add(1, Relaxed);
        }
    }

    /// Writes the pulls noted so far to the records.
    pub async fn flush_pulls(&self) -> Result<()> {
        let pulls: Vec<(RepoName, Digest, i64)> = {
            let mut by_repo = self.pulls.by_repo.lock().unwrap_or_else(|p| p.into_inner());
            self.pulls.count.store(0, std::sync::atomic::Ordering::Relaxed);
            by_repo
                .drain()
                .flat_map(|(repo, digests)| digests.into_iter().map(move |(digest, at)| (repo.clone(), digest, at)))
                .collect()
        };
        if pulls.is_empty() {
            return Ok(());
        }
        Ok(self.meta.record_pulls(&pulls).await?)
    }
}

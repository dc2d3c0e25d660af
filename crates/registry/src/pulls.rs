//! When each manifest was last pulled: what mirror eviction and retention go by. A pull is noted
//! in memory ([`Registry::record_pull`], no write on the read path) and written to the records
//! by [`Registry::flush_pulls`], which the server calls every minute, before each eviction and
//! retention pass, and at shutdown. A crash loses at most the pulls since the last flush.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use oci::{Digest, RepoName};

use crate::{Registry, Result};

/// Entries a [`Noted`] holds at most (later times of those it holds still count).
pub(crate) const NOTED_MAX: usize = 100_000;

/// The latest time each (repository, digest) was noted, in memory and bounded: pulls between
/// flushes, and the blob links a HEAD renewed (so each is renewed once a while). By repository, then
/// digest, so that noting one already held allocates nothing.
#[derive(Default)]
pub(crate) struct Noted {
    by_repo: Mutex<HashMap<RepoName, HashMap<Digest, i64>>>,
    count: AtomicUsize,
}

impl Noted {
    pub fn note(&self, repo: &RepoName, digest: &Digest, at_ms: i64) {
        let mut by_repo = self.by_repo.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(at) = by_repo.get_mut(repo).and_then(|m| m.get_mut(digest)) {
            *at = (*at).max(at_ms);
        } else if self.count.load(Relaxed) < NOTED_MAX {
            by_repo.entry(repo.clone()).or_default().insert(digest.clone(), at_ms);
            self.count.fetch_add(1, Relaxed);
        }
    }

    /// How many entries there are.
    pub fn len(&self) -> usize {
        self.count.load(Relaxed)
    }

    pub fn get(&self, repo: &RepoName, digest: &Digest) -> Option<i64> {
        let by_repo = self.by_repo.lock().unwrap_or_else(|p| p.into_inner());
        by_repo.get(repo).and_then(|m| m.get(digest)).copied()
    }

    /// Takes every entry out.
    pub fn drain(&self) -> Vec<(RepoName, Digest, i64)> {
        let mut by_repo = self.by_repo.lock().unwrap_or_else(|p| p.into_inner());
        self.count.store(0, Relaxed);
        by_repo
            .drain()
            .flat_map(|(repo, digests)| digests.into_iter().map(move |(digest, at)| (repo.clone(), digest, at)))
            .collect()
    }

    /// Forgets the entries noted at or before `cutoff`.
    pub fn forget_until(&self, cutoff: i64) {
        let mut by_repo = self.by_repo.lock().unwrap_or_else(|p| p.into_inner());
        by_repo.retain(|_, digests| {
            digests.retain(|_, at| *at > cutoff);
            !digests.is_empty()
        });
        self.count.store(by_repo.values().map(HashMap::len).sum(), Relaxed);
    }
}

impl Registry {
    /// Notes that `digest` was pulled (GET or HEAD) from `repo` at `at_ms`.
    pub fn record_pull(&self, repo: &RepoName, digest: &Digest, at_ms: i64) {
        self.pulls.note(repo, digest, at_ms);
    }

    /// Writes the pulls noted so far to the records.
    pub async fn flush_pulls(&self) -> Result<()> {
        let pulls = self.pulls.drain();
        if pulls.is_empty() {
            return Ok(());
        }
        Ok(self.meta.record_pulls(&pulls).await?)
    }
}

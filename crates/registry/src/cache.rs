//! A bounded in-memory cache of manifest lookups, for the read path kubelets hammer.
//!
//! Keyed by repository and reference (tag or digest). Any write to a repository drops that
//! repository's entries; a global generation counter stops a read that started before a write
//! from caching what it read. Entries also expire after a TTL, which bounds staleness when
//! another replica writes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use oci::{Reference, RepoName};

use crate::ManifestContent;

pub(crate) struct ManifestCache {
    budget: usize,
    ttl: Duration,
    generation: AtomicU64,
    inner: RwLock<Inner>,
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
}

#[derive(Default)]
struct Inner {
    bytes: usize,
    repos: HashMap<RepoName, HashMap<Reference, Entry>>,
}

struct Entry {
    content: Arc<ManifestContent>,
    at: Instant,
}

impl ManifestCache {
    pub(crate) fn new(budget: usize, ttl: Duration) -> ManifestCache {
        ManifestCache {
            budget,
            ttl,
            generation: AtomicU64::new(0),
            inner: RwLock::default(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The generation to pass to [`ManifestCache::insert`] for a lookup starting now.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub(crate) fn get(&self, repo: &RepoName, reference: &Reference) -> Option<Arc<ManifestContent>> {
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        let hit = inner.repos.get(repo).and_then(|r| r.get(reference)).filter(|e| e.at.elapsed() < self.ttl);
        let counter = if hit.is_some() { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
        hit.map(|e| e.content.clone())
    }

    /// Caches `content` unless a write happened since `generation` was read.
    pub(crate) fn insert(&self, generation: u64, repo: &RepoName, reference: &Reference, content: Arc<ManifestContent>) {
        let size = content.bytes.len();
        if size * 4 > self.budget {
            return;
        }
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        if self.generation.load(Ordering::Acquire) != generation {
            return;
        }
        if inner.bytes + size > self.budget {
            // Simple and bounded: start over rather than track recency on the hot path.
            inner.repos.clear();
            inner.bytes = 0;
        }
        let entry = Entry { content, at: Instant::now() };
        let old = inner.repos.entry(repo.clone()).or_default().insert(reference.clone(), entry);
        inner.bytes = inner.bytes + size - old.map_or(0, |o| o.content.bytes.len());
    }

    /// Drops every entry of `repo`; called after each write to it.
    pub(crate) fn invalidate(&self, repo: &RepoName) {
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        if let Some(entries) = inner.repos.remove(repo) {
            let freed: usize = entries.values().map(|e| e.content.bytes.len()).sum();
            inner.bytes -= freed;
        }
    }
}

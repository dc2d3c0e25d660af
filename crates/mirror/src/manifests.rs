//! Manifests through a mirror: from the records when they can answer, else fetched from the
//! upstream once (joined by every concurrent request), stored after their blobs, and served
//! stale when the upstream fails.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use oci::{Digest, Manifest, Reference, RepoName, media_type};
use registry::{Error, ManifestContent, Result};
use tokio::sync::watch;

use crate::{Mirror, Route, Served, upstream_error};

/// What a client waits for when the gate is on and the image is not stored yet.
const RETRY_AFTER_SECS: u64 = 5;

enum Known {
    Pending(Arc<Pending>),
    Fresh(Arc<ManifestContent>),
    /// A tag past its TTL.
    Stale(Arc<ManifestContent>),
    Unknown,
}

/// A manifest answered from the upstream (or the cache) and, when fetched, being stored.
pub(crate) struct Pending {
    content: Arc<ManifestContent>,
    stale: bool,
    /// `None` while its blobs are fetched and it is stored; then how that ended.
    stored: watch::Receiver<Option<Result<()>>>,
}

impl Pending {
    /// A manifest already in the records.
    fn stored(content: Arc<ManifestContent>, stale: bool) -> Arc<Pending> {
        let (_, stored) = watch::channel(Some(Ok(())));
        Arc::new(Pending { content, stale, stored })
    }
}

impl Mirror {
    /// The manifest `reference` names in `repo`, through `route`'s upstream.
    pub async fn manifest(self: &Arc<Self>, route: &Route, repo: &RepoName, reference: &Reference) -> Result<Served> {
        let key = (repo.clone(), reference.clone());
        let pending = match self.known(route, repo, reference).await? {
            Known::Pending(p) => p,
            Known::Fresh(content) => return Ok(Served { content, stale: false }),
            // The first asker asks the upstream; those who come while it does wait for it.
            Known::Stale(_) | Known::Unknown => self.manifest_flight.run(key, || self.resolve(route, repo, reference)).await?,
        };
        self.answer(&pending).await
    }

    /// What is known here of the manifest, without asking the upstream.
    async fn known(&self, route: &Route, repo: &RepoName, reference: &Reference) -> Result<Known> {
        // Pending fetches first: one is removed only after its manifest is in the records.
        let key = (repo.clone(), reference.clone());
        if let Some(p) = self.pending.lock().unwrap_or_else(|p| p.into_inner()).get(&key).cloned() {
            self.stats.joined.fetch_add(1, Ordering::Relaxed);
            return Ok(Known::Pending(p));
        }
        match self.registry.get_manifest(repo, reference).await {
            Ok(local) => Ok(match reference {
                Reference::Digest(_) => Known::Fresh(local),
                Reference::Tag(tag) if route.upstream.fresh(repo, tag) => Known::Fresh(local),
                Reference::Tag(_) => Known::Stale(local),
            }),
            Err(Error::ManifestUnknown(_)) => Ok(Known::Unknown),
            Err(e) => Err(e),
        }
    }

    /// The one flight that asks the upstream. It looks again first: an earlier flight may have
    /// landed between this caller's look and its joining.
    async fn resolve(self: &Arc<Self>, route: &Route, repo: &RepoName, reference: &Reference) -> Result<Arc<Pending>> {
        match self.known(route, repo, reference).await? {
            Known::Pending(p) => Ok(p),
            Known::Fresh(content) => Ok(Pending::stored(content, false)),
            Known::Stale(local) => self.revalidate(route, repo, reference, local).await,
            Known::Unknown => self.fetch(route, repo, reference, None).await,
        }
    }

    /// With the gate off, what was fetched is served at once (its blobs stream through as they
    /// arrive). With it on, only a stored manifest is: the client waits within the gate's
    /// budget, then is asked to come back.
    async fn answer(&self, pending: &Pending) -> Result<Served> {
        let served = || Served { content: pending.content.clone(), stale: pending.stale };
        let Some(wait) = self.registry.config().gate_wait else { return Ok(served()) };
        let mut stored = pending.stored.clone();
        let outcome = match tokio::time::timeout(wait, stored.wait_for(Option::is_some)).await {
            Ok(Ok(state)) => state.clone(),
            // The sender is gone: its last word stands.
            Ok(Err(_)) => pending.stored.borrow().clone(),
            Err(_) => return Err(Error::Pending { retry_after_secs: RETRY_AFTER_SECS }),
        };
        match outcome {
            Some(Ok(())) => Ok(served()),
            Some(Err(e)) => Err(e),
            None => Err(Error::Upstream("storing the mirrored image ended without a word".into())),
        }
    }

    /// A cached tag past its TTL: a HEAD says whether it still names the same manifest.
    async fn revalidate(self: &Arc<Self>, route: &Route, repo: &RepoName, reference: &Reference, local: Arc<ManifestContent>) -> Result<Arc<Pending>> {
        let Reference::Tag(tag) = reference else { return Ok(Pending::stored(local, false)) };
        self.stats.upstream_manifest_heads.fetch_add(1, Ordering::Relaxed);
        match route.upstream.client.manifest_digest(&route.image(), tag.as_str()).await {
            Ok(Some(now)) if now == local.digest.to_string() => {
                route.upstream.mark_validated(repo, tag);
                Ok(Pending::stored(local, false))
            }
            Ok(_) => self.fetch(route, repo, reference, Some(local)).await,
            Err(e) => {
                self.stats.upstream_errors.fetch_add(1, Ordering::Relaxed);
                Ok(self.stale(route, repo, reference, local, &e.to_string()))
            }
        }
    }

    fn stale(&self, route: &Route, repo: &RepoName, reference: &Reference, local: Arc<ManifestContent>, why: &str) -> Arc<Pending> {
        tracing::warn!(upstream = route.upstream(), %repo, %reference, why, "serving the cached manifest: the upstream could not be asked");
        self.stats.stale_served.fetch_add(1, Ordering::Relaxed);
        Pending::stored(local, true)
    }

    /// GETs the manifest from the upstream and starts storing it; `local` stands in when the
    /// upstream fails.
    async fn fetch(self: &Arc<Self>, route: &Route, repo: &RepoName, reference: &Reference, local: Option<Arc<ManifestContent>>) -> Result<Arc<Pending>> {
        let name = route.upstream();
        if let Some(budget) = &route.upstream.budget
            && let Err(wait) = budget.take()
        {
            return match local {
                Some(local) => Ok(self.stale(route, repo, reference, local, "the budget of manifest GETs is spent")),
                None => Err(Error::UpstreamBusy {
                    message: format!("mirror {name}: its budget of manifest requests to the upstream is spent"),
                    retry_after_secs: wait.as_secs().max(1),
                }),
            };
        }
        self.stats.upstream_manifest_gets.fetch_add(1, Ordering::Relaxed);
        let what = format!("{}:{reference}", route.remote());
        let (bytes, content_type, stated) = match route.upstream.client.manifest(&route.image(), &reference.to_string()).await {
            Ok(fetched) => fetched,
            Err(e) => {
                self.stats.upstream_errors.fetch_add(1, Ordering::Relaxed);
                return match local {
                    Some(local) => Ok(self.stale(route, repo, reference, local, &e.to_string())),
                    None => Err(upstream_error(route, &what, &e, Error::ManifestUnknown(reference.clone()))),
                };
            }
        };
        let invalid = |m: String| Error::Upstream(format!("mirror {name}: the upstream's manifest {what} {m}"));
        let digest = match reference {
            Reference::Digest(asked) => Digest::of(asked.algorithm(), &bytes),
            Reference::Tag(_) => Digest::sha256_of(&bytes),
        };
        if let Reference::Digest(asked) = reference
            && *asked != digest
        {
            return Err(invalid(format!("has digest {digest}, not the one asked")));
        }
        if let Some(stated) = stated.and_then(|s| s.parse::<Digest>().ok())
            && stated.algorithm() == digest.algorithm()
            && stated != digest
        {
            return Err(invalid(format!("has digest {digest}, not the {stated} the upstream states")));
        }
        let limit = self.registry.config().max_manifest_bytes;
        if bytes.len() > limit {
            return Err(invalid(format!("is larger than the limit of {limit} bytes")));
        }
        let content_type = (!content_type.is_empty()).then_some(content_type);
        let manifest = Manifest::parse(content_type.as_deref(), &bytes).map_err(|e| invalid(format!("is not valid: {e}")))?;
        let content = Arc::new(ManifestContent { digest, media_type: manifest.media_type.clone(), bytes });
        let (tx, stored) = watch::channel(None);
        let pending = Arc::new(Pending { content: content.clone(), stale: false, stored });
        let key = (repo.clone(), reference.clone());
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).insert(key.clone(), pending.clone());
        let (mirror, route, this) = (self.clone(), route.clone(), pending.clone());
        tokio::spawn(async move {
            let outcome = mirror.store(&route, &key.0, &key.1, &manifest, &content).await;
            if let Err(e) = &outcome {
                tracing::warn!(upstream = route.upstream(), repo = %key.0, reference = %key.1, error = %e, "storing a mirrored manifest failed");
            }
            tx.send_replace(Some(outcome));
            let mut pending = mirror.pending.lock().unwrap_or_else(|p| p.into_inner());
            if pending.get(&key).is_some_and(|p| Arc::ptr_eq(p, &this)) {
                pending.remove(&key);
            }
        });
        Ok(pending)
    }

    /// Fetches every blob the manifest names (the ones not here yet), then stores the manifest
    /// exactly as it came, with its tag.
    async fn store(self: &Arc<Self>, route: &Route, repo: &RepoName, reference: &Reference, manifest: &Manifest, content: &ManifestContent) -> Result<()> {
        let mut fills = Vec::new();
        for d in manifest.blobs().filter(|d| !media_type::is_foreign_layer(&d.media_type) || d.urls.is_empty()) {
            if self.meta.linked_blob(repo, &d.digest).await?.is_none() {
                fills.push((d.digest.clone(), self.fill(route, repo, &d.digest, Some(d.size))));
            }
        }
        for (digest, fill) in fills {
            fill.done(&digest).await?;
        }
        let tag = match reference {
            Reference::Tag(t) => Some(t),
            Reference::Digest(_) => None,
        };
        self.registry.put_mirrored_manifest(repo, &content.digest, tag, &content.media_type, content.bytes.clone(), route.upstream()).await?;
        if let Some(tag) = tag {
            route.upstream.mark_validated(repo, tag);
        }
        Ok(())
    }
}

//! The pull gate and the push gate. A pull of an inspected image is served only once its
//! repository's verdict allows it (or its namespace only audits); a pull of a pending image waits
//! for the verdict up to `gate_wait`, then gets 429 with `Retry-After`; a blocked one gets DENIED
//! naming the policy and its first reasons. An index is judged through its children (meta's
//! `gate_state`); artifacts and manifests from before inspection pass. A blob is served by GET only
//! if some manifest of the repository that references it may be served (or none references it
//! yet); HEAD stays open, since pushers ask it before uploading. In a `reject` namespace a push
//! waits for its verdict and is refused if it fails.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use meta::GateState;
use oci::{Digest, RepoName};

use crate::{Error, PushMode, Registry, Result};

const CACHE_TTL: Duration = Duration::from_secs(60);
const CACHE_MAX: usize = 10_000;

#[derive(Default)]
pub(crate) struct Servable(Mutex<HashMap<(RepoName, Digest), Instant>>);

impl Servable {
    fn contains(&self, key: &(RepoName, Digest)) -> bool {
        self.0.lock().unwrap().get(key).is_some_and(|at| at.elapsed() < CACHE_TTL)
    }

    fn insert(&self, key: (RepoName, Digest)) {
        let mut map = self.0.lock().unwrap();
        if map.len() >= CACHE_MAX {
            map.retain(|_, at| at.elapsed() < CACHE_TTL);
            if map.len() >= CACHE_MAX {
                map.clear();
            }
        }
        map.insert(key, Instant::now());
    }
}

/// The most permissive state among several manifests: one servable manifest is enough.
fn combined(states: Vec<GateState>) -> GateState {
    let rank = |s: &GateState| match s {
        GateState::Unjudged | GateState::Allowed => 3,
        GateState::Pending => 2,
        GateState::Blocked { .. } => 1,
        GateState::Failed(_) => 0,
    };
    states.into_iter().max_by_key(rank).unwrap_or(GateState::Unjudged)
}

impl Registry {
    /// Drops every remembered "servable" answer: verdicts were judged again.
    pub fn forget_verdicts(&self) {
        self.servable.0.lock().unwrap().clear();
    }

    /// Whether manifest `digest` may be pulled from `repo` now; `bypass` for those who may pull
    /// anything.
    pub async fn check_gate(&self, repo: &RepoName, digest: &Digest, bypass: bool) -> Result<()> {
        self.gate_loop(repo, digest, bypass, |r, d| async move { self.meta.gate_state(&r, &d).await.map_err(|e| Error::Unavailable(e.to_string())) })
            .await
    }

    /// Whether blob `digest` may be downloaded from `repo` now. `mirrored`: the repository is a
    /// mirror's, whose blobs arrive before their manifest is stored, so a blob no manifest
    /// references yet waits for one (a pushed blob is served, since its pusher has it anyway).
    pub async fn check_blob_gate(&self, repo: &RepoName, digest: &Digest, bypass: bool, mirrored: bool) -> Result<()> {
        self.gate_loop(repo, digest, bypass, |r, d| async move {
            let users = self.meta.manifests_referencing(&r, &d).await.map_err(|e| Error::Unavailable(e.to_string()))?;
            if users.is_empty() && mirrored {
                return Ok(GateState::Pending);
            }
            let mut states = Vec::with_capacity(users.len());
            for m in users {
                states.push(self.meta.gate_state(&r, &m).await.map_err(|e| Error::Unavailable(e.to_string()))?);
            }
            Ok(combined(states))
        })
        .await
    }

    async fn gate_loop<F, Fut>(&self, repo: &RepoName, digest: &Digest, bypass: bool, state: F) -> Result<()>
    where
        F: Fn(RepoName, Digest) -> Fut,
        Fut: std::future::Future<Output = Result<GateState>>,
    {
        let Some(wait) = self.config.gate_wait else { return Ok(()) };
        if bypass {
            return Ok(());
        }
        let key = (repo.clone(), digest.clone());
        if self.servable.contains(&key) {
            return Ok(());
        }
        match self.settled(repo, digest, wait, state).await? {
            GateState::Unjudged | GateState::Allowed => {
                self.servable.insert(key);
                Ok(())
            }
            GateState::Pending => Err(Error::Pending { retry_after_secs: 5 }),
            refused => Err(refusal(refused)),
        }
    }

    /// Whether pushes to `repo` that fail are refused rather than quarantined.
    pub(crate) fn rejects_failing_pushes(&self, repo: &RepoName) -> bool {
        self.config.gate_wait.is_some() && self.gate_rules().rule_for(repo).push == PushMode::Reject
    }

    /// Waits (within the gate's budget) for the verdict on a pushed image; refuses the push if it
    /// fails, removing the manifest unless it was there before. A verdict not ready in time
    /// leaves the push quarantined: its pulls wait for the verdict.
    pub(crate) async fn push_gate(&self, repo: &RepoName, digest: &Digest, existed: bool) -> Result<()> {
        let wait = self.config.gate_wait.unwrap_or_default();
        let state = self
            .settled(repo, digest, wait, |r, d| async move { self.meta.gate_state(&r, &d).await.map_err(|e| Error::Unavailable(e.to_string())) })
            .await?;
        match state {
            GateState::Unjudged | GateState::Allowed => Ok(()),
            GateState::Pending => {
                tracing::warn!(%repo, %digest, "no verdict within the gate's budget: the push stays quarantined");
                Ok(())
            }
            refused => {
                if !existed {
                    self.meta.delete_manifest(repo, digest, meta::NO_KEPT_TAGS).await?;
                    self.cache.invalidate(repo);
                }
                Err(refusal(refused))
            }
        }
    }

    /// The state once it is no longer pending, or still pending after `wait`.
    async fn settled<F, Fut>(&self, repo: &RepoName, digest: &Digest, wait: Duration, state: F) -> Result<GateState>
    where
        F: Fn(RepoName, Digest) -> Fut,
        Fut: std::future::Future<Output = Result<GateState>>,
    {
        let started = Instant::now();
        loop {
            let now = state(repo.clone(), digest.clone()).await?;
            if now != GateState::Pending || started.elapsed() >= wait {
                return Ok(now);
            }
            tokio::time::sleep(Duration::from_millis(100).min(wait.saturating_sub(started.elapsed()))).await;
        }
    }
}

/// The DENIED error for a blocked or failed image: the policy and its first reasons.
fn refusal(state: GateState) -> Error {
    match state {
        GateState::Blocked { policy, reasons } => {
            let shown: Vec<&str> = reasons.iter().take(3).map(String::as_str).collect();
            let more = if reasons.len() > 3 { format!(" (and {} more)", reasons.len() - 3) } else { String::new() };
            Error::Blocked(format!("blocked by policy {policy}: {}{more}", shown.join("; ")))
        }
        GateState::Failed(e) => Error::Blocked(format!("not served: its inspection failed ({e})")),
        other => Error::Unavailable(format!("not a refusal: {other:?}")),
    }
}

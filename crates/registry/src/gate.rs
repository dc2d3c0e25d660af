//! The pull gate: an inspected image is served only once its verdict allows it. A pull of a pending
//! image waits for the verdict up to `gate_wait`, then gets 429 with `Retry-After`; a blocked one
//! gets DENIED naming the policy and its first reasons. Manifests that are not inspected (indexes,
//! whose children are gated one by one; artifacts; manifests from before inspection) pass. A blob
//! is served by GET only if some manifest of the repository that references it may be served (or
//! none references it yet); HEAD stays open, since pushers ask it before uploading.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use meta::GateState;
use oci::{Digest, RepoName};

use crate::{Error, Registry, Result};

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

    /// Whether blob `digest` may be downloaded from `repo` now.
    pub async fn check_blob_gate(&self, repo: &RepoName, digest: &Digest, bypass: bool) -> Result<()> {
        self.gate_loop(repo, digest, bypass, |r, d| async move {
            let users = self.meta.manifests_referencing(&r, &d).await.map_err(|e| Error::Unavailable(e.to_string()))?;
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
        let started = Instant::now();
        loop {
            match state(repo.clone(), digest.clone()).await? {
                GateState::Unjudged | GateState::Allowed => {
                    self.servable.insert(key);
                    return Ok(());
                }
                GateState::Blocked { policy, reasons } => {
                    let shown: Vec<&str> = reasons.iter().take(3).map(String::as_str).collect();
                    let more = if reasons.len() > 3 { format!(" (and {} more)", reasons.len() - 3) } else { String::new() };
                    return Err(Error::Blocked(format!("blocked by policy {policy}: {}{more}", shown.join("; "))));
                }
                GateState::Failed(e) => return Err(Error::Blocked(format!("not served: its inspection failed ({e})"))),
                GateState::Pending => {
                    if started.elapsed() >= wait {
                        return Err(Error::Pending { retry_after_secs: 5 });
                    }
                    tokio::time::sleep(Duration::from_millis(100).min(wait.saturating_sub(started.elapsed()))).await;
                }
            }
        }
    }
}

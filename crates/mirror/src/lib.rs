//! Pull-through cache: pulls of a name under an upstream's prefix (`/v2/<upstream>/<name>/...`)
//! are answered from the records when they can be, and from the upstream once when they cannot.
//!
//! - A manifest by digest is served from the records without asking the upstream; a tag is
//!   re-validated with a HEAD once its TTL has passed. What the upstream sent is stored byte for
//!   byte, under the digest of those bytes.
//! - Every manifest and blob is fetched once however many clients ask at once: a fetch under way
//!   is joined, and a blob's waiters stream from its download as it arrives (`fill.rs`).
//! - An image's blobs are all fetched before its manifest is stored, so the stored manifest is
//!   inspected like a push (its job is queued in the same transaction) and its pulls are gated;
//!   with the gate off, the manifest is served as soon as it arrives and its blobs stream
//!   through.
//! - When the upstream fails, answers 429 or 5xx, refuses our credentials, or its budget of
//!   manifest GETs is spent, a cached copy is served and marked stale.
//!
//! Architecture Invariant: nothing partial is visible. A blob becomes visible (committed and
//! linked) only after all its bytes matched its digest; a download that fails is removed and
//! fails its waiters' streams; a manifest is stored only once its blobs are.

mod budget;
mod evict;
mod fill;
mod manifests;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use auth::RepoGlob;
use blobs::Blobs;
use meta::Meta;
use oci::{Digest, Reference, RepoName, Tag};
use registry::{Error, ManifestContent, Registry, Result, SingleFlight};

pub use evict::Evictions;
pub use fill::FLUSH_BYTES;

use budget::Budget;
use fill::Fill;
use manifests::Pending;

/// One upstream registry, as configured.
#[derive(Clone, Debug)]
pub struct UpstreamConfig {
    /// The path prefix that routes to it: one name component (`dockerhub`).
    pub name: String,
    /// `https://registry-1.docker.io`, `http://127.0.0.1:5000`.
    pub url: String,
    pub credentials: Option<remote::Credentials>,
    /// Globs over the upstream's repository names that may be fetched (empty: all)...
    pub allow: Vec<String>,
    /// ...and that may not, whatever `allow` says.
    pub deny: Vec<String>,
    /// How long a tag is served from the cache before it is re-validated with a HEAD.
    pub tag_ttl: Duration,
    /// Requests to the upstream at once (a blob download holds one for its whole body).
    pub max_connections: usize,
    /// Manifest GETs sent to the upstream per hour (Docker Hub counts them); `None`: no cap.
    pub manifest_gets_per_hour: Option<u32>,
    /// More trusted CA certificates (PEM) for the upstream.
    pub ca_pem: Option<Vec<u8>>,
    /// Serves names without a prefix that are not local repositories (Docker's
    /// `registry-mirrors`): at most one upstream.
    pub default: bool,
    /// Evict, least recently pulled first, while the cache's blobs take more than this.
    pub max_bytes: Option<u64>,
    /// Evict images not pulled for this long.
    pub evict_unpulled_after: Option<Duration>,
    /// Never evict an image pulled this recently, whatever the size.
    pub keep_pulled_within: Duration,
}

impl UpstreamConfig {
    pub fn new(name: &str, url: &str) -> UpstreamConfig {
        UpstreamConfig {
            name: name.to_owned(),
            url: url.to_owned(),
            credentials: None,
            allow: Vec::new(),
            deny: Vec::new(),
            tag_ttl: Duration::from_secs(300),
            max_connections: 32,
            manifest_gets_per_hour: None,
            ca_pem: None,
            default: false,
            max_bytes: None,
            evict_unpulled_after: None,
            keep_pulled_within: Duration::from_secs(3600),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("mirror {name}: {reason}")]
pub struct ConfigError {
    pub name: String,
    pub reason: String,
}

/// What the mirrors did, for `/metrics`.
#[derive(Default)]
pub struct Stats {
    pub upstream_manifest_gets: AtomicU64,
    pub upstream_manifest_heads: AtomicU64,
    pub upstream_blob_gets: AtomicU64,
    /// Answers served from the cache because the upstream failed or its budget was spent.
    pub stale_served: AtomicU64,
    /// Requests that joined a fetch already under way.
    pub joined: AtomicU64,
    pub upstream_errors: AtomicU64,
    pub evicted_images: AtomicU64,
    /// Bytes deleted from the blob store by eviction.
    pub evicted_bytes: AtomicU64,
}

pub(crate) struct Upstream {
    config: UpstreamConfig,
    client: remote::Client,
    /// `host[:port]` for [`remote::ImageRef`].
    host: String,
    docker_hub: bool,
    allow: Vec<RepoGlob>,
    deny: Vec<RepoGlob>,
    budget: Option<Budget>,
    /// When each tag was last confirmed with the upstream (bounded).
    validated: Mutex<HashMap<(RepoName, Tag), Instant>>,
}

const VALIDATED_MAX: usize = 100_000;

impl Upstream {
    fn new(config: UpstreamConfig) -> Result<Upstream, ConfigError> {
        let bad = |reason: String| ConfigError { name: config.name.clone(), reason };
        if config.name.is_empty() || config.name.contains('/') || format!("{}/x", config.name).parse::<RepoName>().is_err() {
            return Err(bad("the name must be one lowercase repository-name component".into()));
        }
        let (scheme, rest) = config.url.split_once("://").ok_or_else(|| bad(format!("{:?} is not an http(s) URL", config.url)))?;
        let host = rest.trim_end_matches('/').to_owned();
        if !matches!(scheme, "http" | "https") || host.is_empty() || host.contains('/') {
            return Err(bad(format!("{:?} must be http(s)://host[:port]", config.url)));
        }
        let client = remote::Client::new(config.credentials.clone(), scheme == "http", config.ca_pem.as_deref())
            .map_err(|e| bad(e.to_string()))?
            .with_connection_limit(config.max_connections)
            .with_timeout(Duration::from_secs(30));
        let globs = |list: &[String]| -> Result<Vec<RepoGlob>, ConfigError> {
            list.iter().map(|g| g.parse::<RepoGlob>().map_err(|e| bad(e.to_string()))).collect()
        };
        let docker_hub = matches!(host.as_str(), "registry-1.docker.io" | "docker.io" | "index.docker.io");
        Ok(Upstream {
            allow: globs(&config.allow)?,
            deny: globs(&config.deny)?,
            budget: config.manifest_gets_per_hour.map(|n| Budget::new(n, Duration::from_secs(3600))),
            validated: Mutex::default(),
            host,
            docker_hub,
            client,
            config,
        })
    }

    /// Whether the upstream's repository `name` may be fetched.
    fn allows(&self, name: &RepoName) -> bool {
        (self.allow.is_empty() || self.allow.iter().any(|g| g.matches(name))) && !self.deny.iter().any(|g| g.matches(name))
    }

    fn image(&self, remote: &RepoName) -> remote::ImageRef {
        remote::ImageRef { registry: self.host.clone(), repository: remote.to_string(), tag: None, digest: None }
    }

    fn fresh(&self, repo: &RepoName, tag: &Tag) -> bool {
        let validated = self.validated.lock().unwrap_or_else(|p| p.into_inner());
        validated.get(&(repo.clone(), tag.clone())).is_some_and(|at| at.elapsed() < self.config.tag_ttl)
    }

    fn mark_validated(&self, repo: &RepoName, tag: &Tag) {
        let mut validated = self.validated.lock().unwrap_or_else(|p| p.into_inner());
        if validated.len() >= VALIDATED_MAX {
            let ttl = self.config.tag_ttl;
            validated.retain(|_, at| at.elapsed() < ttl);
            if validated.len() >= VALIDATED_MAX {
                validated.clear();
            }
        }
        validated.insert((repo.clone(), tag.clone()), Instant::now());
    }
}

/// Where a repository's pulls go: the upstream and the name there.
#[derive(Clone)]
pub struct Route {
    upstream: Arc<Upstream>,
    /// The repository's name at the upstream (`library/` added for Docker Hub's single names).
    remote: RepoName,
}

impl Route {
    pub fn upstream(&self) -> &str {
        &self.upstream.config.name
    }

    pub fn remote(&self) -> &RepoName {
        &self.remote
    }

    fn image(&self) -> remote::ImageRef {
        self.upstream.image(&self.remote)
    }
}

/// A manifest to answer with; `stale` when it is a cached copy served because the upstream
/// could not be asked.
pub struct Served {
    pub content: Arc<ManifestContent>,
    pub stale: bool,
}

/// The pull-through caches of every configured upstream.
pub struct Mirror {
    registry: Arc<Registry>,
    blobs: Blobs,
    meta: Meta,
    upstreams: Vec<Arc<Upstream>>,
    manifest_flight: SingleFlight<(RepoName, Reference), Result<Arc<Pending>>>,
    /// Manifests fetched and being stored, by what was asked (found before the records are).
    pending: Mutex<HashMap<(RepoName, Reference), Arc<Pending>>>,
    /// Blob downloads under way, by repository and digest (found before the records are).
    fills: Mutex<HashMap<(RepoName, Digest), Arc<Fill>>>,
    /// Names found to be local repositories, so the default upstream leaves them alone (bounded).
    local: Mutex<HashSet<RepoName>>,
    pub stats: Stats,
}

const LOCAL_MAX: usize = 10_000;

impl Mirror {
    pub fn new(registry: Arc<Registry>, blobs: Blobs, meta: Meta, upstreams: Vec<UpstreamConfig>) -> Result<Mirror, ConfigError> {
        let mut built: Vec<Arc<Upstream>> = Vec::new();
        for config in upstreams {
            if built.iter().any(|u| u.config.name == config.name) {
                return Err(ConfigError { name: config.name, reason: "configured twice".into() });
            }
            if config.default && built.iter().any(|u| u.config.default) {
                return Err(ConfigError { name: config.name, reason: "a second default upstream: only one may serve names without a prefix".into() });
            }
            built.push(Arc::new(Upstream::new(config)?));
        }
        Ok(Mirror {
            registry,
            blobs,
            meta,
            upstreams: built,
            manifest_flight: SingleFlight::new(),
            pending: Mutex::default(),
            fills: Mutex::default(),
            local: Mutex::default(),
            stats: Stats::default(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.upstreams.is_empty()
    }

    /// The local name under which `repo` of registry `ns` (containerd's `?ns=`: `docker.io`,
    /// `ghcr.io`, `host:port`) is mirrored, when an upstream serves that registry: its name
    /// prefixed. `None` when no upstream does (the request is answered as a local one).
    pub fn for_namespace(&self, ns: &str, repo: &RepoName) -> Option<Result<RepoName>> {
        let ns = ns.trim().to_ascii_lowercase();
        let docker_hub = matches!(ns.as_str(), "docker.io" | "index.docker.io" | "registry-1.docker.io");
        let upstream = self.upstreams.iter().find(|u| u.host == ns || u.config.name == ns || (docker_hub && u.docker_hub))?;
        let name = format!("{}/{repo}", upstream.config.name);
        Some(name.parse::<RepoName>().map_err(|e| Error::NameInvalid(format!("{name}: {e}"))))
    }

    /// The name under which a pull of `repo`, a name without an upstream's prefix, is served by
    /// the default upstream (Docker's `registry-mirrors` asks for `library/nginx`): its name
    /// prefixed, unless `repo` is a local repository. `None` when there is no default upstream or
    /// the name is local or already prefixed.
    ///
    /// A local repository always wins: once pushed to, a name is never fetched from the
    /// upstream again; until then its pulls go to the upstream (its allow globs keep that to
    /// the names it should serve).
    pub async fn for_default(&self, repo: &RepoName) -> Option<Result<RepoName>> {
        let upstream = self.upstreams.iter().find(|u| u.config.default)?;
        let first = repo.as_str().split('/').next().unwrap_or_default();
        if repo.as_str().contains('/') && self.upstreams.iter().any(|u| u.config.name == first) {
            return None;
        }
        if self.local.lock().unwrap_or_else(|p| p.into_inner()).contains(repo) {
            return None;
        }
        match self.meta.tags(repo, &meta::Page { n: 1, last: None }).await {
            Err(e) => return Some(Err(e.into())),
            Ok(Some(_)) => {
                let mut local = self.local.lock().unwrap_or_else(|p| p.into_inner());
                if local.len() >= LOCAL_MAX {
                    local.clear();
                }
                local.insert(repo.clone());
                return None;
            }
            Ok(None) => {}
        }
        let name = format!("{}/{repo}", upstream.config.name);
        Some(name.parse::<RepoName>().map_err(|e| Error::NameInvalid(format!("{name}: {e}"))))
    }

    /// The upstream `repo` is routed to, by its first component; `None` for local repositories.
    /// A name the upstream's rules do not allow is refused.
    pub fn route(&self, repo: &RepoName) -> Option<Result<Route>> {
        let (prefix, rest) = repo.as_str().split_once('/')?;
        let upstream = self.upstreams.iter().find(|u| u.config.name == prefix)?;
        let remote = if upstream.docker_hub && !rest.contains('/') { format!("library/{rest}") } else { rest.to_owned() };
        let Ok(remote) = remote.parse::<RepoName>() else {
            return Some(Err(Error::NameInvalid(format!("{remote:?} is not a repository name"))));
        };
        if !upstream.allows(&remote) {
            let name = &upstream.config.name;
            return Some(Err(Error::Denied(format!("mirror {name} does not fetch {remote}: not allowed by its rules"))));
        }
        Some(Ok(Route { upstream: upstream.clone(), remote }))
    }
}

/// The error a client sees for an upstream's failure when nothing cached can stand in;
/// `unknown` when the upstream does not have it.
fn upstream_error(route: &Route, what: &str, e: &remote::Error, unknown: Error) -> Error {
    let name = route.upstream();
    match e {
        e if e.is_not_found() => unknown,
        remote::Error::Status { status, .. } if status.as_u16() == 429 => Error::UpstreamBusy {
            message: format!("mirror {name}: the upstream asks us to slow down ({e})"),
            retry_after_secs: e.retry_after().map_or(30, |d| d.as_secs().max(1)),
        },
        remote::Error::Auth { .. } => Error::Upstream(format!("mirror {name}: the upstream refused customs' credentials ({e})")),
        e => Error::Upstream(format!("mirror {name}: fetching {what} failed: {e}")),
    }
}

//! Settings: defaults, then the config file (TOML), then `CUSTOMS_*` environment variables, then
//! command-line flags. Every setting exists in all three places: environment names are the
//! file's keys upper-cased with `__` between levels (`limits.max_upload_sessions` is
//! `CUSTOMS_LIMITS__MAX_UPLOAD_SESSIONS`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    pub listen: String,
    /// Directory holding blobs (`blobs/`, `uploads/`) and records (`meta.db`).
    pub data: PathBuf,
    /// Where blobs live instead of the data directory (an S3-compatible store).
    pub storage: Storage,
    /// Where records live instead of the data directory's `meta.db` (PostgreSQL).
    pub records: Records,
    /// Log filter (`info`, `debug`, `customs=debug,sqlx=warn`, ...).
    pub log: String,
    /// `text` (human) or `json` (one object per line, for log pipelines).
    pub log_format: LogFormat,
    /// How long in-flight requests may take to finish after a shutdown signal.
    pub shutdown_grace_secs: u64,
    pub limits: Limits,
    /// Connection and request-body limits against slow and greedy clients.
    pub http: Http,
    /// HTTPS: certificate and key files (PEM), re-read when they change. Empty: plain HTTP.
    pub tls: Tls,
    /// Concurrency limit and queue per route class; past both, requests get 503 + Retry-After.
    pub admission: Admission,
    /// Request rate per client and route class; past it, requests get 429 + Retry-After.
    pub rate: Rate,
    /// Users, robots, roles and Docker token authentication. Off by default.
    pub auth: Auth,
    /// The local advisory DB and where `customs db update` fetches OSV data.
    pub advisories: Advisories,
    /// Secret, malware and ClamAV settings of `customs scan` and of the inspection of pushes.
    pub scan: Scan,
    /// Inspection of every image pushed: a persistent queue and its workers.
    pub inspection: Inspection,
    /// The pull gate over inspection verdicts.
    pub gate: Gate,
    /// Where events (pushed, inspected, blocked, unblocked) are POSTed as CloudEvents.
    pub webhooks: Vec<Webhook>,
    /// Upstream registries pulled through: `/v2/<name>/<repository>/...` is fetched from the
    /// upstream's `<repository>` (also `customs serve --mirror NAME=URL`).
    pub mirrors: Vec<Mirror>,
    /// Garbage collection: freeing the bytes that deletes and abandoned pushes leave.
    pub gc: Gc,
    /// Which tags and untagged manifests repositories keep, applied at each `[gc]` pass.
    pub retention: Retention,
    /// Every stored blob read back and hashed, so damaged bytes are found before a pull.
    pub scrub: Scrub,
    /// Tags that, once pushed, keep pointing at the manifest they were pushed with.
    pub immutable_tags: Vec<ImmutableTags>,
    /// Storage quotas per namespace: pushes that would pass them are refused.
    pub quotas: Quotas,
    /// Maintenance: pulls are served; pushes, deletes and management changes are refused, and
    /// no worker changes what is stored (mirrors fetch nothing; what they cached is served
    /// under their prefix).
    pub read_only: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Storage {
    /// Blobs in an S3-compatible bucket (AWS S3, MinIO, Ceph RGW, Garage) when `bucket` is set;
    /// records stay in the data directory's `meta.db`.
    pub s3: S3,
    /// Free bytes kept on the data directory's filesystem: below them new uploads are refused
    /// (507), so the records, pulls, deletes and garbage collection still have room. 0: none.
    pub min_free_bytes: u64,
}

impl Default for Storage {
    fn default() -> Self {
        Storage { s3: S3::default(), min_free_bytes: 1 << 30 }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Records {
    /// Empty: SQLite, `meta.db` in the data directory. `postgres://USER:PASSWORD@HOST:PORT/DB`
    /// (`?sslmode=require` and the rest of libpq's URL options): PostgreSQL, which several
    /// replicas share; their blobs must then be shared too (`[storage.s3]`). Best given as
    /// Leave the password out of it and set `PGPASSWORD` (libpq's variable), or give the whole
    /// URL as `CUSTOMS_RECORDS__URL`; `customs config` and the start-up line show `***` for it.
    pub url: String,
}

impl Records {
    pub fn postgres(&self) -> bool {
        !self.url.is_empty()
    }

    /// Refuses a URL that is not a PostgreSQL one, shown without its password.
    pub fn check(&self) -> anyhow::Result<()> {
        let url = &self.url;
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            bail!("{}: not a PostgreSQL URL (postgres://USER@HOST:PORT/DB); leave records.url empty for meta.db in the data directory", self.shown());
        }
        Ok(())
    }

    /// The URL without its password (in the authority or a `password=` parameter), to print.
    pub fn shown(&self) -> String {
        let url = &self.url;
        let Some(start) = url.find("://").map(|i| i + 3) else { return url.clone() };
        let authority = &url[start..url[start..].find(['/', '?']).map_or(url.len(), |i| start + i)];
        let url = match authority.rsplit_once('@').and_then(|(user, _)| user.split_once(':').map(|(name, _)| (user.len(), name))) {
            Some((user_len, name)) => format!("{}{name}:***{}", &url[..start], &url[start + user_len..]),
            None => url.clone(),
        };
        let Some((base, query)) = url.split_once('?') else { return url };
        let params: Vec<String> =
            query.split('&').map(|p| if p.starts_with("password=") { "password=***".to_owned() } else { p.to_owned() }).collect();
        format!("{base}?{}", params.join("&"))
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Quotas {
    /// Bytes each namespace (a repository's first path component) may hold when no
    /// `[[quotas.namespaces]]` entry names it; 0: no quota.
    pub default_bytes: u64,
    pub namespaces: Vec<NamespaceQuota>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NamespaceQuota {
    /// Repositories under `NAMESPACE/` (`team-a`, `org/team`); the longest entry applies.
    pub namespace: String,
    /// The distinct blobs linked in them, at most this many bytes; 0: no quota, default or not.
    pub max_bytes: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3 {
    /// Empty: blobs stay in the data directory.
    pub bucket: String,
    /// Empty: `AWS_REGION` or `us-east-1`.
    pub region: String,
    /// A store other than AWS: its URL (`https://minio.example:9000`); requests are path-style.
    pub endpoint: String,
    /// Keys go under this prefix within the bucket (Distribution's `rootdirectory`).
    pub prefix: String,
    /// Allow an `http://` endpoint.
    pub allow_http: bool,
    /// More trusted CA certificates (PEM) for the endpoint's TLS.
    pub ca_file: PathBuf,
    /// Send clients a presigned URL (307) for a whole-blob GET instead of streaming it through
    /// customs. Every client must reach `endpoint` (or AWS) itself.
    pub redirect: bool,
    /// How long a presigned URL is good for.
    pub redirect_secs: u64,
    // Credentials are not settings: the standard AWS variables (AWS_ACCESS_KEY_ID,
    // AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN), a web identity token or the instance's role.
}

impl Default for S3 {
    fn default() -> Self {
        S3 {
            bucket: String::new(),
            region: String::new(),
            endpoint: String::new(),
            prefix: String::new(),
            allow_http: false,
            ca_file: PathBuf::new(),
            redirect: false,
            redirect_secs: 1200,
        }
    }
}

impl S3 {
    /// The adapter's settings, or `None` when blobs stay in the data directory.
    pub fn settings(&self) -> Option<blobs::S3Settings> {
        let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        (!self.bucket.is_empty()).then(|| blobs::S3Settings {
            bucket: self.bucket.clone(),
            region: some(&self.region),
            endpoint: some(&self.endpoint),
            prefix: self.prefix.clone(),
            allow_http: self.allow_http,
            credentials: None,
            redirect_for: self.redirect.then(|| Duration::from_secs(self.redirect_secs.max(1))),
        })
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImmutableTags {
    /// Repository globs (`prod/**`).
    pub repositories: Vec<String>,
    /// Tag globs (`v*`); empty: every tag.
    pub tags: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Gc {
    /// Run a pass in the background every `interval_secs` while serving (`customs gc` runs one
    /// on a stopped server's data directory either way).
    pub enabled: bool,
    pub interval_secs: u64,
    /// Layers linked and bytes written less than this long ago are spared: a push in progress
    /// has its layers in before the manifest that references them.
    pub delay_secs: u64,
}

impl Default for Gc {
    fn default() -> Self {
        Gc { enabled: true, interval_secs: 3600, delay_secs: 3600 }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Scrub {
    /// Run passes in the background while serving (`customs scrub` runs one on a stopped
    /// server's data directory either way).
    pub enabled: bool,
    /// A pass starts this long after the last one ended (the first: this long after the first
    /// start); a pass cut short by a restart resumes at the next start.
    pub interval_secs: u64,
    /// Reads are paced to at most this many bytes a second (0: as fast as the disk goes).
    pub bytes_per_sec: u64,
}

impl Default for Scrub {
    fn default() -> Self {
        Scrub { enabled: true, interval_secs: 86_400, bytes_per_sec: 64 << 20 }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Retention {
    /// Log what the policies would delete, and delete nothing (garbage collection still runs).
    pub dry_run: bool,
    /// Per repository glob, the first policy that names a repository deciding. A repository no
    /// policy names keeps everything (the default: no policies).
    pub policies: Vec<RetentionPolicy>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionPolicy {
    /// Repository globs (`ci/**`, `team/*-dev`).
    pub repositories: Vec<String>,
    /// Rules that each keep some tags. None: every tag is kept. Any: a tag none keeps is deleted
    /// (the tag, not its image).
    pub keep_tags: Vec<KeepTags>,
    /// Delete untagged manifests stored, untagged and pulled last more than this long ago
    /// (not an index's children, not referrers: those go with what keeps them). Unset: kept.
    pub delete_untagged_after_secs: Option<u64>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeepTags {
    /// Tag globs (`v*`, `latest`) the rule looks at; empty: every tag.
    pub patterns: Vec<String>,
    /// Of those, keep the N pushed last, the N pulled last, and those pushed or pulled within
    /// the time; with none of these set, keep every tag the patterns name.
    pub most_recently_pushed: Option<usize>,
    pub most_recently_pulled: Option<usize>,
    pub pushed_within_secs: Option<u64>,
    pub pulled_within_secs: Option<u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Mirror {
    /// The path prefix routed to the upstream: one repository-name component.
    pub name: String,
    /// `https://registry-1.docker.io`, `https://ghcr.io`, `http://10.0.0.5:5000`.
    pub url: String,
    /// Credentials for the upstream: the user name, and the environment variable holding the
    /// password or token (never the secret itself in this file). Empty: anonymous.
    pub username: String,
    pub password_env: String,
    /// Globs over the upstream's repository names (`library/*`, `myorg/**`) that may be fetched;
    /// empty: all. `deny` wins over `allow`.
    pub allow: Vec<String>,
    pub deny: Vec<String>,
    /// A tag is served from the cache this long before a HEAD asks the upstream again.
    pub tag_ttl_secs: u64,
    /// Requests to the upstream at once.
    pub max_connections: usize,
    /// Manifest GETs sent to the upstream per hour at most (Docker Hub counts them); 0: no cap.
    pub manifest_gets_per_hour: u32,
    /// More trusted CA certificates (PEM) for the upstream.
    pub ca_file: PathBuf,
    /// Also serve names without a prefix that are not local repositories (`/v2/library/nginx`,
    /// as Docker's `registry-mirrors` asks): at most one mirror (also `--default-mirror NAME`).
    pub default: bool,
    /// Evict cached images, least recently pulled first, while their blobs take more than this
    /// many bytes; 0: no limit.
    pub max_bytes: u64,
    /// Evict cached images not pulled for this long; 0: never.
    pub evict_unpulled_after_secs: u64,
    /// Never evict an image pulled this recently, whatever the size.
    pub keep_pulled_within_secs: u64,
}

impl Default for Mirror {
    fn default() -> Self {
        Mirror {
            name: String::new(),
            url: String::new(),
            username: String::new(),
            password_env: String::new(),
            allow: Vec::new(),
            deny: Vec::new(),
            tag_ttl_secs: 300,
            max_connections: 32,
            manifest_gets_per_hour: 0,
            ca_file: PathBuf::new(),
            default: false,
            max_bytes: 0,
            evict_unpulled_after_secs: 0,
            keep_pulled_within_secs: 3600,
        }
    }
}

impl Mirror {
    /// `NAME=URL`, as `--mirror` takes it.
    pub fn from_flag(flag: &str) -> anyhow::Result<Mirror> {
        let Some((name, url)) = flag.split_once('=') else { bail!("--mirror {flag:?}: expected NAME=URL") };
        Ok(Mirror { name: name.trim().to_owned(), url: url.trim().to_owned(), ..Mirror::default() })
    }

    /// The mirror's settings with its secrets read from the environment and its CA file.
    pub fn upstream(&self) -> anyhow::Result<mirror::UpstreamConfig> {
        let credentials = match (self.username.is_empty(), self.password_env.is_empty()) {
            (true, true) => None,
            (false, false) => {
                let password = std::env::var(&self.password_env)
                    .with_context(|| format!("mirror {}: the environment variable {} (password_env) is not set", self.name, self.password_env))?;
                Some(remote::Credentials { username: self.username.clone(), password })
            }
            _ => bail!("mirror {}: give both username and password_env, or neither", self.name),
        };
        let ca_pem = if self.ca_file.as_os_str().is_empty() {
            None
        } else {
            Some(std::fs::read(&self.ca_file).with_context(|| format!("mirror {}: cannot read {}", self.name, self.ca_file.display()))?)
        };
        Ok(mirror::UpstreamConfig {
            name: self.name.clone(),
            url: self.url.clone(),
            credentials,
            allow: self.allow.clone(),
            deny: self.deny.clone(),
            tag_ttl: Duration::from_secs(self.tag_ttl_secs),
            max_connections: self.max_connections.max(1),
            manifest_gets_per_hour: (self.manifest_gets_per_hour > 0).then_some(self.manifest_gets_per_hour),
            ca_pem,
            default: self.default,
            max_bytes: (self.max_bytes > 0).then_some(self.max_bytes),
            evict_unpulled_after: (self.evict_unpulled_after_secs > 0).then(|| Duration::from_secs(self.evict_unpulled_after_secs)),
            keep_pulled_within: Duration::from_secs(self.keep_pulled_within_secs),
        })
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Webhook {
    /// Names the webhook's place in the event log: renaming it starts it afresh.
    pub name: String,
    pub url: String,
    /// The environment variable holding the HMAC-SHA256 key of the `X-Customs-Signature-256`
    /// header (never the key itself in this file). Empty: unsigned.
    pub secret_env: String,
    /// Of `pushed`, `inspected`, `blocked`, `unblocked`; empty: all.
    pub events: Vec<String>,
    /// Only images in repositories this glob names; empty: all.
    pub repositories: String,
    /// Attempts at one event before it is given up (and recorded); retries back off
    /// exponentially from `retry_secs` to at most five minutes, later events waiting.
    pub max_attempts: u32,
    pub retry_secs: u64,
    /// More trusted CA certificates (PEM) for the receiver.
    pub ca_file: PathBuf,
    /// The CloudEvents `source` of the events.
    pub source: String,
}

impl Default for Webhook {
    fn default() -> Self {
        Webhook {
            name: String::new(),
            url: String::new(),
            secret_env: String::new(),
            events: Vec::new(),
            repositories: String::new(),
            max_attempts: 10,
            retry_secs: 1,
            ca_file: PathBuf::new(),
            source: "/customs".into(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Gate {
    /// Serve inspected images only once the policy allows them (needs `inspection.enabled`).
    pub enabled: bool,
    /// How long a pull waits for a pending verdict before 429 + Retry-After (and a push in
    /// `reject` mode waits for its verdict).
    pub wait_secs: u64,
    /// Where policies are found by name (`NAME.rego`); empty: `<data>/policies`.
    pub policy_dir: PathBuf,
    /// For repositories no `[[gate.namespaces]]` entry names: `paved-road` (shipped), a policy
    /// name in `policy_dir`, or a `.rego` path.
    pub policy: String,
    /// `enforce`: failing images are not served; `audit`: verdicts are only recorded.
    pub mode: GateMode,
    /// `quarantine`: a failing push is kept and its pulls refused; `reject`: the push is refused.
    pub push: PushMode,
    /// PEM public keys (ECDSA P-256, Ed25519) whose cosign signatures count as verified.
    pub keys: Vec<PathBuf>,
    /// Rules per repository glob, the first that matches deciding (the same four settings).
    pub namespaces: Vec<GateNamespace>,
}

impl Default for Gate {
    fn default() -> Self {
        Gate {
            enabled: true,
            wait_secs: 10,
            policy_dir: PathBuf::new(),
            policy: "paved-road".into(),
            mode: GateMode::Enforce,
            push: PushMode::Quarantine,
            keys: Vec::new(),
            namespaces: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GateNamespace {
    /// A repository glob (`team/*`, `prod/**`).
    pub repositories: String,
    pub policy: String,
    pub mode: GateMode,
    pub push: PushMode,
    pub keys: Vec<PathBuf>,
}

impl Default for GateNamespace {
    fn default() -> Self {
        let g = Gate::default();
        GateNamespace { repositories: String::new(), policy: g.policy, mode: g.mode, push: g.push, keys: g.keys }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GateMode {
    Enforce,
    Audit,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PushMode {
    Quarantine,
    Reject,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Inspection {
    /// Inspect pushed images in the background (jobs are queued with the manifest either way).
    pub enabled: bool,
    /// Images inspected at once by this server (0: queue only; another replica inspects).
    pub workers: usize,
    /// A job not finished in this time is taken again (its worker is presumed dead).
    pub lease_secs: u64,
    /// Attempts before a job is failed for good (retries back off exponentially).
    pub max_attempts: u32,
    /// How often an idle worker looks for jobs.
    pub poll_ms: u64,
}

impl Default for Inspection {
    fn default() -> Self {
        Inspection { enabled: true, workers: 1, lease_secs: 600, max_attempts: 5, poll_ms: 1000 }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Scan {
    /// Secret rule files (TOML, the shape of the built-in rules: add, override, disable, allow).
    pub secret_rules: Vec<PathBuf>,
    /// YARA rule files, or directories of `*.yar`/`*.yara`, added to the built-in rules.
    pub malware_rules: Vec<PathBuf>,
    /// SHA-256 blocklists: `<hex>  <name>` lines.
    pub malware_hashes: Vec<PathBuf>,
    /// clamd's local socket; empty: ClamAV is not asked.
    pub clamd_socket: PathBuf,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Advisories {
    /// The DB file; empty: `<data>/advisories.db`.
    pub db: PathBuf,
    /// Base URL of OSV's per-ecosystem exports (`<url>/<ecosystem>/all.zip`), or a mirror of it.
    pub update_url: String,
    /// The ecosystems `customs db update` fetches.
    pub ecosystems: Vec<String>,
}

impl Default for Advisories {
    fn default() -> Self {
        Advisories {
            db: PathBuf::new(),
            update_url: "https://osv-vulnerabilities.storage.googleapis.com".into(),
            ecosystems: [
                "Debian", "Ubuntu", "Alpine", "AlmaLinux", "Rocky Linux", "PyPI", "npm", "Go", "crates.io", "Maven", "RubyGems",
                "Packagist", "NuGet",
            ]
            .map(String::from)
            .to_vec(),
        }
    }
}

impl Config {
    /// The advisory DB file in effect.
    pub fn advisory_db(&self) -> PathBuf {
        if self.advisories.db.as_os_str().is_empty() { self.data.join("advisories.db") } else { self.advisories.db.clone() }
    }

    /// The directory policies are found in by name.
    pub fn policy_dir(&self) -> PathBuf {
        if self.gate.policy_dir.as_os_str().is_empty() { self.data.join("policies") } else { self.gate.policy_dir.clone() }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Auth {
    /// Require credentials (except where `anonymous` is granted reader).
    pub enabled: bool,
    /// The `service` of challenges and the audience of tokens.
    pub service: String,
    /// The token endpoint's absolute URL in challenges; empty: `http(s)://<Host>/token`.
    pub realm: String,
    /// The ES256 signing key (PKCS#8 PEM, P-256); empty: `<data>/token-key.pem`, made on first
    /// start. Replicas must share one.
    pub token_key_file: PathBuf,
    pub token_ttl_secs: u64,
    /// How long a verified name and password are trusted without hashing again.
    pub credential_cache_secs: u64,
    /// Failed logins tolerated per name and per client at once ...
    pub failed_logins_burst: u32,
    /// ... and then this many more per minute.
    pub failed_logins_per_minute: f64,
    /// How often to look for access changes made elsewhere (other replicas, the CLI).
    pub refresh_secs: u64,
    /// The first admin, created on a start that finds no users, with `admin_password` (best
    /// given as `CUSTOMS_AUTH__ADMIN_PASSWORD`). There is no default password.
    pub admin_user: String,
    #[serde(skip_serializing)]
    pub admin_password: String,
}

impl Default for Auth {
    fn default() -> Self {
        let a = registry::AccessConfig::default();
        Auth {
            enabled: false,
            service: a.service,
            realm: String::new(),
            token_key_file: PathBuf::new(),
            token_ttl_secs: a.token_ttl.as_secs(),
            credential_cache_secs: a.credential_cache_ttl.as_secs(),
            failed_logins_burst: 10,
            failed_logins_per_minute: 2.0,
            refresh_secs: 2,
            admin_user: String::new(),
            admin_password: String::new(),
        }
    }
}

impl Auth {
    pub fn access(&self) -> registry::AccessConfig {
        registry::AccessConfig {
            service: self.service.clone(),
            issuer: self.service.clone(),
            token_ttl: Duration::from_secs(self.token_ttl_secs.max(1)),
            credential_cache_ttl: Duration::from_secs(self.credential_cache_secs),
            ..registry::AccessConfig::default()
        }
    }

    pub fn failed_logins(&self) -> api::RateLimit {
        api::RateLimit { per_second: self.failed_logins_per_minute / 60.0, burst: self.failed_logins_burst }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Http {
    /// Longest a client may take to send a request head or finish a TLS handshake.
    pub header_read_timeout_ms: u64,
    /// Largest request head accepted.
    pub max_header_bytes: usize,
    /// Serve HTTP/2 (h2c with prior knowledge; h2 over TLS by ALPN) besides HTTP/1.1.
    pub http2: bool,
    /// Slowest acceptable request body, averaged over each window; 0 turns the check off.
    pub min_body_bytes_per_sec: u64,
    pub body_rate_window_secs: u64,
    /// Upload requests one client may run at once; 0 means no limit.
    pub max_uploads_per_client: usize,
    /// Send blob bytes to clients on this host by copying them through a small socket buffer,
    /// which is faster over loopback than sendfile; remote clients always get sendfile.
    pub copy_to_local_peers: bool,
}

impl Default for Http {
    fn default() -> Self {
        let s = api::ServerConfig::default();
        let u = api::UploadLimits::default();
        Http {
            header_read_timeout_ms: s.header_read_timeout.as_millis() as u64,
            max_header_bytes: s.max_header_bytes,
            http2: s.http2,
            min_body_bytes_per_sec: u.min_bytes_per_sec,
            body_rate_window_secs: u.rate_window.as_secs(),
            max_uploads_per_client: u.max_per_client,
            copy_to_local_peers: s.copy_to_local_peers,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Tls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// How often to look for changed files.
    pub reload_secs: u64,
}

impl Default for Tls {
    fn default() -> Self {
        Tls { cert_file: PathBuf::new(), key_file: PathBuf::new(), reload_secs: 10 }
    }
}

impl Tls {
    /// The files to serve HTTPS with, or `None` for plain HTTP.
    pub fn files(&self) -> Option<api::TlsFiles> {
        (!self.cert_file.as_os_str().is_empty() || !self.key_file.as_os_str().is_empty()).then(|| api::TlsFiles {
            cert: self.cert_file.clone(),
            key: self.key_file.clone(),
            reload_every: Duration::from_secs(self.reload_secs.max(1)),
        })
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Rate {
    pub manifest_read: ClassRate,
    pub blob_read: ClassRate,
    pub upload: ClassRate,
    pub write: ClassRate,
    pub api: ClassRate,
    pub token: ClassRate,
    /// Addresses of proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Most clients tracked at once (memory stays bounded whatever the number of clients).
    pub max_clients: usize,
}

/// `per_second = 0` turns the limit off (the default: set budgets for your fleet).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClassRate {
    pub per_second: f64,
    pub burst: u32,
}

impl Default for Rate {
    fn default() -> Self {
        let d = api::RateConfig::default();
        Rate {
            manifest_read: ClassRate::default(),
            blob_read: ClassRate::default(),
            upload: ClassRate::default(),
            write: ClassRate::default(),
            api: ClassRate::default(),
            token: ClassRate::default(),
            trusted_proxies: d.trusted_proxies,
            max_clients: d.max_clients,
        }
    }
}

impl Config {
    /// The HTTP layer's limits.
    pub fn http_limits(&self) -> api::HttpLimits {
        let r = &self.rate;
        let rate = |c: &ClassRate| api::RateLimit { per_second: c.per_second, burst: c.burst };
        api::HttpLimits {
            admission: self.admission.api(),
            rate: api::RateConfig {
                // In RouteClass::ALL order.
                classes: [
                    rate(&r.manifest_read),
                    rate(&r.blob_read),
                    rate(&r.upload),
                    rate(&r.write),
                    rate(&r.api),
                    rate(&r.token),
                ],
                trusted_proxies: r.trusted_proxies.clone(),
                max_clients: r.max_clients,
            },
            uploads: api::UploadLimits {
                min_bytes_per_sec: self.http.min_body_bytes_per_sec,
                rate_window: Duration::from_secs(self.http.body_rate_window_secs.max(1)),
                max_per_client: self.http.max_uploads_per_client,
            },
        }
    }

    /// The accept loop's settings.
    pub fn server(&self) -> api::ServerConfig {
        api::ServerConfig {
            header_read_timeout: Duration::from_millis(self.http.header_read_timeout_ms.max(1)),
            max_header_bytes: self.http.max_header_bytes,
            http2: self.http.http2,
            shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
            copy_to_local_peers: self.http.copy_to_local_peers,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Admission {
    pub manifest_read: ClassLimit,
    pub blob_read: ClassLimit,
    pub upload: ClassLimit,
    pub write: ClassLimit,
    pub api: ClassLimit,
    pub token: ClassLimit,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassLimit {
    pub concurrency: usize,
    pub queue: usize,
    pub queue_timeout_ms: u64,
}

impl Default for Admission {
    fn default() -> Self {
        let [manifest_read, blob_read, upload, write, api, token] = api::AdmissionConfig::default().0.map(ClassLimit::from);
        Admission { manifest_read, blob_read, upload, write, api, token }
    }
}

impl From<api::ClassLimit> for ClassLimit {
    fn from(l: api::ClassLimit) -> Self {
        ClassLimit { concurrency: l.concurrency, queue: l.queue, queue_timeout_ms: l.queue_timeout.as_millis() as u64 }
    }
}

impl Admission {
    pub fn api(&self) -> api::AdmissionConfig {
        let l = |c: &ClassLimit| api::ClassLimit {
            concurrency: c.concurrency,
            queue: c.queue,
            queue_timeout: Duration::from_millis(c.queue_timeout_ms),
        };
        // In RouteClass::ALL order.
        api::AdmissionConfig([
            l(&self.manifest_read),
            l(&self.blob_read),
            l(&self.upload),
            l(&self.write),
            l(&self.api),
            l(&self.token),
        ])
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    pub max_manifest_bytes: usize,
    pub max_upload_sessions: u64,
    pub upload_session_ttl_secs: u64,
    pub manifest_cache_bytes: usize,
    pub manifest_cache_ttl_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:5000".into(),
            data: PathBuf::from("customs-data"),
            log: "info".into(),
            log_format: LogFormat::Text,
            shutdown_grace_secs: 30,
            limits: Limits::default(),
            http: Http::default(),
            tls: Tls::default(),
            admission: Admission::default(),
            rate: Rate::default(),
            auth: Auth::default(),
            advisories: Advisories::default(),
            scan: Scan::default(),
            inspection: Inspection::default(),
            gate: Gate::default(),
            webhooks: Vec::new(),
            mirrors: Vec::new(),
            gc: Gc::default(),
            retention: Retention::default(),
            scrub: Scrub::default(),
            immutable_tags: Vec::new(),
            quotas: Quotas::default(),
            read_only: false,
            storage: Storage::default(),
            records: Records::default(),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        let r = registry::RegistryConfig::default();
        Limits {
            max_manifest_bytes: r.max_manifest_bytes,
            max_upload_sessions: r.max_upload_sessions,
            upload_session_ttl_secs: r.upload_session_ttl.as_secs(),
            manifest_cache_bytes: r.manifest_cache_bytes,
            manifest_cache_ttl_secs: r.manifest_cache_ttl.as_secs(),
        }
    }
}

impl Config {
    /// The registry core's settings (the pull gate's wait aside), or what is wrong with them.
    pub fn registry(&self) -> anyhow::Result<registry::RegistryConfig> {
        let limits = &self.limits;
        let mut rules = Vec::new();
        for (i, rule) in self.immutable_tags.iter().enumerate() {
            let at = || format!("[[immutable_tags]] #{}", i + 1);
            rules.push(registry::ImmutableRule {
                repositories: repository_globs(&rule.repositories, at)?,
                tags: rule.tags.iter().map(|g| g.parse()).collect::<Result<_, _>>().with_context(at)?,
            });
        }
        let mut namespaces = Vec::new();
        for (i, q) in self.quotas.namespaces.iter().enumerate() {
            let at = || format!("[[quotas.namespaces]] #{}", i + 1);
            q.namespace.parse::<oci::RepoName>().map_err(|e| anyhow::anyhow!("{}: namespace {:?}: {e}", at(), q.namespace))?;
            anyhow::ensure!(
                !namespaces.iter().any(|n: &registry::NamespaceQuota| n.namespace == q.namespace),
                "{}: namespace {} is named twice",
                at(),
                q.namespace
            );
            namespaces.push(registry::NamespaceQuota { namespace: q.namespace.clone(), max_bytes: (q.max_bytes > 0).then_some(q.max_bytes) });
        }
        let default_bytes = (self.quotas.default_bytes > 0).then_some(self.quotas.default_bytes);
        Ok(registry::RegistryConfig {
            max_manifest_bytes: limits.max_manifest_bytes,
            max_upload_sessions: limits.max_upload_sessions,
            upload_session_ttl: Duration::from_secs(limits.upload_session_ttl_secs),
            manifest_cache_bytes: limits.manifest_cache_bytes,
            manifest_cache_ttl: Duration::from_secs(limits.manifest_cache_ttl_secs),
            gate_wait: None,
            immutable_tags: registry::ImmutableTags { rules },
            read_only: self.read_only,
            quotas: registry::Quotas { namespaces, default_bytes },
            link_renewal: Duration::from_secs(self.gc.delay_secs / 2),
        })
    }
}

/// The repository globs of the rule `at` names, at least one.
pub fn repository_globs(globs: &[String], at: impl Fn() -> String) -> anyhow::Result<Vec<auth::RepoGlob>> {
    anyhow::ensure!(!globs.is_empty(), "{}: `repositories` names no repository glob", at());
    globs.iter().map(|g| g.parse()).collect::<Result<_, _>>().with_context(at)
}

const ENV_PREFIX: &str = "CUSTOMS_";
/// Environment variables that are flags of their own, not settings.
const ENV_NOT_SETTINGS: &[&str] = &["CUSTOMS_CONFIG", "CUSTOMS_SCAN_PASSWORD", "CUSTOMS_RECORDS_COPY_TO"];

impl Config {
    /// Loads defaults, then `file` (if given), then the environment `vars`.
    pub fn load(file: Option<&Path>, vars: impl Iterator<Item = (String, String)>) -> anyhow::Result<Config> {
        // Start from the defaults as a table, so that any single key can be set on its own and
        // every other key keeps its own default (each route class has different ones).
        let mut table = toml::Table::try_from(Config::default()).context("defaults serialize")?;
        if let Some(path) = file {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?;
            let from_file = toml::from_str::<toml::Table>(&text)
                .with_context(|| format!("config file {} is not valid TOML", path.display()))?;
            merge(&mut table, from_file);
        }
        for (name, raw) in vars {
            let Some(key) = name.strip_prefix(ENV_PREFIX) else { continue };
            if ENV_NOT_SETTINGS.contains(&name.as_str()) {
                continue;
            }
            let path: Vec<String> = key.split("__").map(str::to_lowercase).collect();
            if path.iter().any(String::is_empty) {
                bail!("environment variable {name} does not name a setting");
            }
            set(&mut table, &path, env_value(&raw));
        }
        let config: Config = table
            .try_into()
            .map_err(|e: toml::de::Error| anyhow::anyhow!("invalid settings (config file or CUSTOMS_* variables): {}", e.message()))?;
        if config.records.postgres() {
            config.records.check().map_err(|e| anyhow::anyhow!("records.url {e}"))?;
        }
        Ok(config)
    }
}

/// Overlays `over` onto `base`, table by table.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// A number, boolean or TOML array (`["PyPI","npm"]`) where the text is one, else the text itself.
fn env_value(raw: &str) -> toml::Value {
    match format!("v = {raw}").parse::<toml::Table>() {
        Ok(mut t) => match t.remove("v") {
            Some(v @ (toml::Value::Integer(_) | toml::Value::Boolean(_) | toml::Value::Float(_) | toml::Value::Array(_))) => v,
            _ => toml::Value::String(raw.to_owned()),
        },
        Err(_) => toml::Value::String(raw.to_owned()),
    }
}

fn set(table: &mut toml::Table, path: &[String], value: toml::Value) {
    let (last, parents) = path.split_last().expect("at least one key");
    let mut t = table;
    for p in parents {
        let entry = t.entry(p.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        t = entry.as_table_mut().expect("just made a table");
    }
    t.insert(last.clone(), value);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Iterator<Item = (String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>().into_iter()
    }

    #[test]
    fn the_records_url_comes_from_the_environment_and_is_shown_without_its_password() {
        let c = Config::load(None, env(&[("CUSTOMS_RECORDS__URL", "postgres://customs:s3cr%40t@db:5432/reg?sslmode=require")])).unwrap();
        assert!(c.records.postgres());
        assert_eq!(c.records.shown(), "postgres://customs:***@db:5432/reg?sslmode=require");
        for (url, shown) in [
            ("postgres://customs@db/reg", "postgres://customs@db/reg"),
            ("postgres://db/reg", "postgres://db/reg"),
            ("postgres://u:p@db", "postgres://u:***@db"),
            ("postgres://db/reg?user=a@b", "postgres://db/reg?user=a@b"),
            ("postgres://u@db/reg?sslmode=verify-full&password=p:q&sslrootcert=/ca.pem", "postgres://u@db/reg?sslmode=verify-full&password=***&sslrootcert=/ca.pem"),
            ("postgres://db?password=p", "postgres://db?password=***"),
        ] {
            assert_eq!(Records { url: url.into() }.shown(), shown, "{url}");
        }
        assert!(!Config::load(None, env(&[])).unwrap().records.postgres(), "SQLite by default");
        let wrong = Config::load(None, env(&[("CUSTOMS_RECORDS__URL", "sqlite://u:pw@x/meta.db")])).unwrap_err().to_string();
        assert!(wrong.contains("not a PostgreSQL URL") && !wrong.contains("pw"), "{wrong}");
    }

    #[test]
    fn defaults_file_then_environment() {
        let c = Config::load(None, env(&[])).unwrap();
        assert_eq!(c.listen, "127.0.0.1:5000");
        assert_eq!(c.limits.max_manifest_bytes, 4 * 1024 * 1024);
        assert_eq!(c.admission.api().0, api::AdmissionConfig::default().0);
        let c = Config::load(None, env(&[("CUSTOMS_RATE__UPLOAD__PER_SECOND", "2.5")])).unwrap();
        let limits = c.http_limits();
        assert_eq!(limits.rate.classes[api::RouteClass::Upload as usize], api::RateLimit { per_second: 2.5, burst: 0 });
        assert_eq!(limits.rate.classes[api::RouteClass::ManifestRead as usize], api::RateLimit::OFF);
        let c = Config::load(None, env(&[("CUSTOMS_ADMISSION__BLOB_READ__CONCURRENCY", "3")])).unwrap();
        assert_eq!(c.admission.blob_read.concurrency, 3);
        assert_eq!(c.admission.api().0[api::RouteClass::BlobRead as usize].concurrency, 3);

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("customs.toml");
        std::fs::write(&file, "listen = \"0.0.0.0:6000\"\ndata = \"/srv/x\"\n[limits]\nmax_upload_sessions = 7\n[admission.upload]\nqueue = 9\n").unwrap();
        let c = Config::load(Some(&file), env(&[])).unwrap();
        assert_eq!((c.listen.as_str(), c.data.to_str().unwrap(), c.limits.max_upload_sessions), ("0.0.0.0:6000", "/srv/x", 7));
        assert_eq!(c.limits.manifest_cache_ttl_secs, 5, "unset keys keep defaults");
        assert_eq!(c.admission.upload.queue, 9);
        assert_eq!(c.admission.upload.concurrency, Admission::default().upload.concurrency, "and so do their siblings");

        let vars = [
            ("CUSTOMS_LISTEN", "127.0.0.1:7000"),
            ("CUSTOMS_LIMITS__MAX_UPLOAD_SESSIONS", "9"),
            ("CUSTOMS_LOG", "debug"),
            ("CUSTOMS_CONFIG", "ignored.toml"),
            ("OTHER", "x"),
        ];
        let c = Config::load(Some(&file), env(&vars)).unwrap();
        assert_eq!((c.listen.as_str(), c.limits.max_upload_sessions, c.log.as_str()), ("127.0.0.1:7000", 9, "debug"));
        assert_eq!(c.data.to_str().unwrap(), "/srv/x");
    }

    #[test]
    fn unknown_or_mistyped_settings_are_refused() {
        let typo = Config::load(None, env(&[("CUSTOMS_LIMITS__MAX_UPLOADS", "3")])).unwrap_err();
        assert!(typo.to_string().contains("max_uploads"), "{typo}");
        let wrong_type = Config::load(None, env(&[("CUSTOMS_LIMITS__MAX_UPLOAD_SESSIONS", "many")])).unwrap_err();
        assert!(wrong_type.to_string().contains("invalid settings"), "{wrong_type}");
        assert!(Config::load(Some(Path::new("/nonexistent/customs.toml")), env(&[])).is_err());
    }

    #[test]
    fn quotas_and_the_storage_reserve_from_file_and_environment() {
        let c = Config::load(None, env(&[])).unwrap();
        assert_eq!(c.storage.min_free_bytes, 1 << 30, "1 GiB kept free unless set");
        assert!(c.registry().unwrap().quotas.is_empty());

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("customs.toml");
        let text = "[quotas]\ndefault_bytes = 5000\n[[quotas.namespaces]]\nnamespace = \"org/team\"\nmax_bytes = 100\n\
                    [[quotas.namespaces]]\nnamespace = \"ci\"\nmax_bytes = 0\n";
        std::fs::write(&file, text).unwrap();
        let c = Config::load(Some(&file), env(&[("CUSTOMS_STORAGE__MIN_FREE_BYTES", "0")])).unwrap();
        assert_eq!(c.storage.min_free_bytes, 0);
        let quotas = c.registry().unwrap().quotas;
        let of = |repo: &str| quotas.of(&repo.parse().unwrap()).map(|(ns, max)| (ns.to_owned(), max));
        assert_eq!(of("org/team/app"), Some(("org/team".to_owned(), 100)));
        assert_eq!(of("org/app"), Some(("org".to_owned(), 5000)));
        assert_eq!(of("ci/job"), None, "0: no quota, not even the default");

        for (bad, says) in [
            ("[[quotas.namespaces]]\nnamespace = \"Team\"\nmax_bytes = 1\n", "[[quotas.namespaces]] #1: namespace \"Team\""),
            ("[[quotas.namespaces]]\nnamespace = \"a\"\n[[quotas.namespaces]]\nnamespace = \"a\"\n", "#2: namespace a is named twice"),
        ] {
            std::fs::write(&file, bad).unwrap();
            let err = Config::load(Some(&file), env(&[])).unwrap().registry().unwrap_err();
            assert!(err.to_string().contains(says), "{err}");
        }
    }
}

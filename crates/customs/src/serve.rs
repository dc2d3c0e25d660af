//! `customs serve`: open the stores, bind, serve until a signal, drain, stop workers.

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use api::{Server, Stopped};
use blobs::{Blobs, MappedRegions};
use meta::{Meta, SqlMeta, Task};
use registry::Registry;
use tokio::sync::watch;

use crate::config::{Config, LogFormat};

pub fn run(config: Config) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log)
        .with_context(|| format!("log filter {:?} is not valid", config.log))?;
    // Colours only for a terminal: a log file or collector gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match config.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().with_current_span(true).with_span_list(false).init(),
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(serve(config))
}

/// A data directory opened for the one process that may change its bytes: locked, its blob
/// store (there or in S3) and its records.
pub(crate) struct DataDir {
    pub path: PathBuf,
    pub blobs: Blobs,
    pub regions: Arc<MappedRegions>,
    /// Where the blobs are.
    pub place: String,
    pub meta: SqlMeta,
    _lock: File,
}

impl DataDir {
    pub(crate) async fn open(config: &Config) -> anyhow::Result<DataDir> {
        let data = &config.data;
        std::fs::create_dir_all(data).with_context(|| format!("cannot create data directory {}", data.display()))?;
        let path = data.canonicalize().with_context(|| format!("cannot resolve data directory {}", data.display()))?;
        let lock = lock_data_dir(&path)?;
        let meta = crate::storage::records(config, &path, false).await?;
        let crate::storage::Storage { blobs, regions, place } = crate::storage::open(config, &path, !config.read_only, Some(&meta)).await?;
        Ok(DataDir { path, blobs, regions, place, meta, _lock: lock })
    }

    /// The registry over a stopped server's data directory, for one command (`gc`, `scrub`);
    /// `instead` tells what a running server does in its place, for the refusal when one runs.
    pub(crate) async fn offline(config: &Config, instead: &str) -> anyhow::Result<Offline> {
        anyhow::ensure!(config.data.is_dir(), "no data directory at {}", config.data.display());
        anyhow::ensure!(!config.read_only, "read_only = true: this would change what is stored; turn read_only off first");
        let dir = DataDir::open(config).await.with_context(|| instead.to_owned())?;
        let meta = Arc::new(dir.meta);
        let registry = Registry::new(dir.blobs, Meta(meta.clone()), config.registry()?);
        Ok(Offline { registry, meta, _lock: dir._lock })
    }
}

/// What [`DataDir::offline`] opens; the directory stays locked while it lives.
pub(crate) struct Offline {
    pub registry: Registry,
    pub meta: Arc<SqlMeta>,
    _lock: File,
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let DataDir { path: data, blobs, regions, place, meta, _lock } = DataDir::open(&config).await?;
    let meta = Arc::new(meta);
    let mut registry_config = config.registry()?;
    if config.gate.enabled {
        if config.inspection.enabled {
            registry_config.gate_wait = Some(Duration::from_secs(config.gate.wait_secs));
        } else {
            tracing::warn!("the pull gate is off: inspection is off (inspection.enabled = false)");
        }
    }
    let rules = crate::gate::rules(&config)?;
    let registry = Arc::new(Registry::new(blobs.clone(), Meta(meta.clone()), registry_config).with_gate_rules(rules));
    let mut upstreams = config.mirrors.iter().map(crate::config::Mirror::upstream).collect::<anyhow::Result<Vec<_>>>()?;
    // Read-only: nothing a worker or a fetch would store; what mirrors cached is served as it is.
    let writes = !config.read_only;
    if config.read_only {
        tracing::warn!(
            "read-only (read_only = true): pushes, deletes and management changes are refused; upload expiry, pull records, \
             gc, retention, the scrub, inspection, webhooks and mirror fetches are paused"
        );
        upstreams.clear();
    }
    let mirror = if upstreams.is_empty() {
        None
    } else {
        for u in &upstreams {
            tracing::info!(name = %u.name, url = %u.url, "pulling through an upstream under /v2/{}/", u.name);
        }
        Some(Arc::new(mirror::Mirror::new(registry.clone(), blobs, Meta(meta.clone()), upstreams)?))
    };

    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("cannot listen on {} (is another server using it? set --listen or CUSTOMS_LISTEN)", config.listen))?;
    let addr = listener.local_addr()?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let tls = match config.tls.files() {
        None => None,
        Some(files) => {
            let cert = api::ReloadingCert::load(files).context("cannot load the TLS certificate and key")?;
            tokio::spawn(cert.clone().watch(stopped(stop_rx.clone())));
            Some(cert.server_config())
        }
    };
    let scheme = if tls.is_some() { "https" } else { "http" };

    let janitor = writes.then(|| tokio::spawn(upload_janitor(registry.clone(), Meta(meta.clone()), stop_rx.clone())));
    let pull_log = writes.then(|| tokio::spawn(pull_recorder(registry.clone(), stop_rx.clone())));
    let retention = crate::gc::retention(&config)?;
    if !config.gc.enabled && !retention.policies.is_empty() && writes {
        tracing::warn!("retention policies are set but gc.enabled = false: they apply only when customs gc runs");
    }
    let collector =
        (config.gc.enabled && writes).then(|| tokio::spawn(garbage_collector(registry.clone(), Meta(meta.clone()), config.gc.clone(), retention, stop_rx.clone())));
    let scrubber = (config.scrub.enabled && writes)
        .then(|| tokio::spawn(crate::scrub::worker(registry.clone(), Meta(meta.clone()), config.scrub.clone(), stop_rx.clone())));
    let evictor = mirror.clone().map(|m| tokio::spawn(mirror_evictor(m, Meta(meta.clone()), stop_rx.clone())));
    let inspectors = if config.inspection.enabled && writes {
        let engines = crate::engines::build(&config, &crate::engines::Wanted { secrets: true, malware: true, misconfig: true }, &[], &[], None)
            .context("cannot load the inspection engines ([scan] settings)")?;
        let settings = workers::InspectionSettings {
            lease: Duration::from_secs(config.inspection.lease_secs.max(1)),
            max_attempts: config.inspection.max_attempts.max(1),
            poll: Duration::from_millis(config.inspection.poll_ms.max(10)),
            advisory_db: config.advisory_db(),
            limits: scanner::Limits::default(),
            engines: engines.fingerprint,
            page: workers::InspectionSettings::PAGE,
        };
        let worker = Arc::new(workers::InspectionWorker::new(registry.clone(), Meta(meta.clone()), engines.inspection, settings));
        (0..config.inspection.workers).map(|_| tokio::spawn(worker.clone().run(stop_rx.clone()))).collect()
    } else {
        Vec::new()
    };
    let hooks = crate::webhooks::worker(&config, Meta(meta.clone()))?.filter(|_| writes).map(|worker| tokio::spawn(worker.run(stop_rx.clone())));
    let stats = Arc::new(api::ConnectionStats::default());
    let (auth, refresher) = if config.auth.enabled {
        let access = crate::access::open(&config, &data, Meta(meta.clone())).await?;
        let every = Duration::from_secs(config.auth.refresh_secs.max(1));
        let refresher = tokio::spawn(crate::access::refresh_worker(access.clone(), every, stop_rx.clone()));
        let realm = (!config.auth.realm.is_empty()).then(|| config.auth.realm.clone());
        (Some(api::AuthSettings { access, realm, failed_logins: config.auth.failed_logins() }), Some(refresher))
    } else {
        if !addr.ip().is_loopback() {
            tracing::warn!(%addr, "authentication is off: anyone who can reach this address can push and delete");
        }
        (None, None)
    };
    let services = api::Services { registry, auth, connections: stats.clone(), mirror };
    let server = Server {
        listener,
        regions,
        app: api::build(services, &config.http_limits()),
        config: config.server(),
        tls,
        stats,
    };
    // The handlers go in before the line below: a SIGTERM that follows it at once (an orchestrator
    // that changed its mind, a test) must drain the server, not kill it.
    let stop_signals = ShutdownSignals::install().context("cannot install the SIGTERM and SIGINT handlers")?;
    // Said only once everything is ready (the first admin, the engines), so that whoever waits for
    // this line finds a complete server.
    println!("customs listening on {scheme}://{addr}");
    println!("customs data in {}", data.display());
    if place != data.join("blobs").display().to_string() {
        println!("customs blobs in {place}");
    }
    if config.records.postgres() {
        println!("customs records in {}", config.records.shown());
    }
    println!("customs web UI at {scheme}://{addr}/ui/");
    let signal = async {
        stop_signals.recv().await;
        tracing::info!("shutting down: no new connections, draining requests");
    };
    match server.run(signal).await {
        Stopped::Drained => tracing::info!("all requests finished"),
        Stopped::GraceExpired { connections } => {
            tracing::warn!(connections, "requests still running after the grace period; stopping anyway")
        }
    }
    let _ = stop_tx.send(true);
    let workers = janitor.into_iter().chain(pull_log).chain(collector).chain(evictor).chain(scrubber).chain(inspectors).chain(hooks);
    for w in workers.chain(refresher) {
        let _ = w.await;
    }
    meta.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Worker "upload-janitor": removes upload sessions idle past their TTL, hourly (or sooner for
/// short TTLs), until shutdown, when this replica leads it.
async fn upload_janitor(registry: Arc<Registry>, meta: Meta, mut stop: watch::Receiver<bool>) {
    let period = (registry.config().upload_session_ttl / 4).clamp(Duration::from_secs(1), Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            () = tokio::time::sleep(period) => {}
        }
        if !meta.leads(Task::UploadJanitor).await {
            continue;
        }
        match registry.purge_stale_uploads().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(worker = "upload-janitor", purged = n, "removed abandoned upload sessions"),
            Err(e) => tracing::warn!(worker = "upload-janitor", error = %e, "purging upload sessions failed"),
        }
    }
}

/// Worker "gc": a pass of retention and garbage collection every `interval_secs` when this
/// replica leads it, until shutdown, which waits for a pass under way to finish.
async fn garbage_collector(
    registry: Arc<Registry>,
    meta: Meta,
    gc: crate::config::Gc,
    retention: registry::Retention,
    mut stop: watch::Receiver<bool>,
) {
    let period = Duration::from_secs(gc.interval_secs.max(1));
    let delay = Duration::from_secs(gc.delay_secs);
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            () = tokio::time::sleep(period) => {}
        }
        if !meta.leads(Task::Gc).await {
            continue;
        }
        let started = std::time::Instant::now();
        match crate::gc::pass(&registry, &retention, delay, true).await {
            Ok((expired, collected)) => {
                let c = collected.unwrap_or_default();
                if expired != registry::Expired::default() || c != registry::Collected::default() {
                    tracing::info!(
                        worker = "gc", dry_run = retention.dry_run, expired_tags = expired.tags.len(),
                        expired_manifests = expired.manifests.len(), referrers = c.referrers, links = c.links,
                        blobs = c.blobs, bytes = c.bytes, ms = started.elapsed().as_millis() as u64,
                        "a pass of retention and garbage collection"
                    );
                }
            }
            Err(e) => tracing::warn!(worker = "gc", error = %e, "a retention and garbage collection pass failed"),
        }
    }
}

/// Worker "pulls": writes the pulls noted in memory every minute and at shutdown.
async fn pull_recorder(registry: Arc<Registry>, mut stop: watch::Receiver<bool>) {
    loop {
        let stopping = tokio::select! {
            _ = stop.wait_for(|s| *s) => true,
            () = tokio::time::sleep(Duration::from_secs(60)) => false,
        };
        if let Err(e) = registry.flush_pulls().await {
            tracing::warn!(worker = "pulls", error = %e, "recording pulls failed");
        }
        if stopping {
            return;
        }
    }
}

/// Worker "mirror-evict": a pass of the mirrors' eviction every minute when this replica leads it.
async fn mirror_evictor(mirror: Arc<mirror::Mirror>, meta: Meta, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            () = tokio::time::sleep(Duration::from_secs(60)) => {}
        }
        if !meta.leads(Task::MirrorEviction).await {
            continue;
        }
        if let Err(e) = mirror.evict(registry::now_ms()).await {
            tracing::warn!(worker = "mirror-evict", error = %e, "an eviction pass failed");
        }
    }
}

/// One server per data directory: a second one would race the first on the same files.
pub(crate) fn lock_data_dir(data: &std::path::Path) -> anyhow::Result<File> {
    let path = data.join("customs.lock");
    let file = File::create(&path).with_context(|| format!("cannot write {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            anyhow::bail!("data directory {} is in use by another customs server", data.display())
        }
        Err(std::fs::TryLockError::Error(e)) => Err(e).with_context(|| format!("cannot lock {}", path.display())),
    }
}

/// SIGTERM and SIGINT, caught from the moment they are installed.
struct ShutdownSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    fn install() -> std::io::Result<ShutdownSignals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(ShutdownSignals { term: signal(SignalKind::terminate())?, int: signal(SignalKind::interrupt())? })
    }

    async fn recv(mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

//! `customs serve`: open the stores, bind, serve until a signal, drain, stop workers.

use std::fs::File;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use api::{Peer, ZeroCopyListener, router};
use blobs::{Blobs, FsBlobStore};
use meta::{Meta, SqliteMeta};
use registry::Registry;
use tokio::sync::watch;

use crate::config::Config;

pub fn run(config: Config) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log)
        .with_context(|| format!("log filter {:?} is not valid", config.log))?;
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(serve(config))
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let data = &config.data;
    std::fs::create_dir_all(data).with_context(|| format!("cannot create data directory {}", data.display()))?;
    let data = data.canonicalize().with_context(|| format!("cannot resolve data directory {}", data.display()))?;
    let _lock = lock_data_dir(&data)?;
    let blobs = FsBlobStore::open(&data).with_context(|| format!("data directory {} is not writable", data.display()))?;
    let regions = blobs.mapped_regions();
    let meta = SqliteMeta::open(&data.join("meta.db"))
        .await
        .with_context(|| format!("cannot open the records database in {}", data.display()))?;
    let meta = Arc::new(meta);
    let registry = Arc::new(Registry::new(Blobs(Arc::new(blobs)), Meta(meta.clone()), config.limits.registry()));

    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("cannot listen on {} (is another server using it? set --listen or CUSTOMS_LISTEN)", config.listen))?;
    let addr = listener.local_addr()?;
    println!("customs listening on http://{addr}");
    println!("customs data in {}", data.display());

    let (stop_tx, stop_rx) = watch::channel(false);
    let janitor = tokio::spawn(upload_janitor(registry.clone(), stop_rx.clone()));
    let app = router(registry, &config.http_limits()).into_make_service_with_connect_info::<Peer>();
    let listener = ZeroCopyListener::new(listener, regions);
    let mut drain_rx = stop_rx.clone();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        let _ = drain_rx.wait_for(|stop| *stop).await;
    });
    let grace = Duration::from_secs(config.shutdown_grace_secs);
    let mut server = std::pin::pin!(server.into_future());
    tokio::select! {
        result = &mut server => result.context("server failed")?,
        () = shutdown_signal() => {
            tracing::info!(grace_secs = grace.as_secs(), "shutting down: no new connections, draining requests");
            let _ = stop_tx.send(true);
            if tokio::time::timeout(grace, &mut server).await.is_err() {
                tracing::warn!("requests still running after the grace period; stopping anyway");
            }
        }
    }
    let _ = stop_tx.send(true);
    let _ = janitor.await;
    meta.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Worker "upload-janitor": removes upload sessions idle past their TTL, hourly (or sooner for
/// short TTLs), until shutdown.
async fn upload_janitor(registry: Arc<Registry>, mut stop: watch::Receiver<bool>) {
    let period = (registry.config().upload_session_ttl / 4).clamp(Duration::from_secs(1), Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            () = tokio::time::sleep(period) => {}
        }
        match registry.purge_stale_uploads().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(worker = "upload-janitor", purged = n, "removed abandoned upload sessions"),
            Err(e) => tracing::warn!(worker = "upload-janitor", error = %e, "purging upload sessions failed"),
        }
    }
}

/// One server per data directory: a second one would race the first on the same files.
fn lock_data_dir(data: &std::path::Path) -> anyhow::Result<File> {
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

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

//! TLS with rustls: a certificate and key read from PEM files, re-read when they change.
//!
//! Certificates are rotated by replacing the files (cert-manager, certbot); the server watches
//! their modification times and swaps the key pair in for new handshakes. Connections already
//! open keep theirs. A pair that fails to load is logged and the previous one stays in use, so a
//! half-written rotation never takes the registry off the air.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::crypto::ring::default_provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Where the certificate chain and its key live, and how often to look for new ones.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub reload_every: Duration,
}

/// The key pair handed to every new handshake.
#[derive(Debug)]
pub struct ReloadingCert {
    files: TlsFiles,
    current: RwLock<(Arc<CertifiedKey>, Stamp)>,
}

/// What the files looked like when last loaded.
type Stamp = (Option<SystemTime>, Option<SystemTime>);

impl ReloadingCert {
    /// Loads the pair now; an unusable pair at start is an error, not a warning.
    pub fn load(files: TlsFiles) -> io::Result<Arc<ReloadingCert>> {
        let stamp = stamp(&files);
        let key = load_pair(&files.cert, &files.key)?;
        Ok(Arc::new(ReloadingCert { files, current: RwLock::new((key, stamp)) }))
    }

    /// The rustls configuration serving this pair, offering HTTP/2 and HTTP/1.1 by ALPN.
    pub fn server_config(self: &Arc<Self>) -> Arc<rustls::ServerConfig> {
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(default_provider()))
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions")
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(config)
    }

    /// Re-reads the files if they changed since the last load. Returns whether a new pair is in use.
    pub fn reload_if_changed(&self) -> bool {
        let now = stamp(&self.files);
        if self.current.read().expect("cert lock").1 == now {
            return false;
        }
        match load_pair(&self.files.cert, &self.files.key) {
            Ok(key) => {
                *self.current.write().expect("cert lock") = (key, now);
                tracing::info!(cert = %self.files.cert.display(), "TLS certificate reloaded");
                true
            }
            Err(e) => {
                // Often a rotation caught half-way (new cert, old key): try again next round.
                tracing::warn!(cert = %self.files.cert.display(), error = %e, "TLS certificate changed but cannot be loaded; keeping the previous one");
                false
            }
        }
    }

    /// Checks the files every `reload_every` until `stop` resolves.
    pub async fn watch(self: Arc<Self>, stop: impl Future<Output = ()>) {
        let mut stop = std::pin::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => return,
                () = tokio::time::sleep(self.files.reload_every) => {}
            }
            let this = self.clone();
            let _ = tokio::task::spawn_blocking(move || this.reload_if_changed()).await;
        }
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().expect("cert lock").0.clone())
    }
}

fn stamp(files: &TlsFiles) -> Stamp {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    (modified(&files.cert), modified(&files.key))
}

fn load_pair(cert: &Path, key: &Path) -> io::Result<Arc<CertifiedKey>> {
    let invalid = |what: &str, path: &Path, e: &dyn std::fmt::Display| {
        io::Error::new(io::ErrorKind::InvalidData, format!("{what} {}: {e}", path.display()))
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| invalid("cannot read certificates from", cert, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| invalid("malformed certificate in", cert, &e))?;
    if chain.is_empty() {
        return Err(invalid("no certificate in", cert, &"expected PEM CERTIFICATE blocks"));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| invalid("cannot read a private key from", key, &e))?;
    let certified = CertifiedKey::from_der(chain, key_der, &default_provider())
        .map_err(|e| invalid("certificate and key do not form a usable pair:", cert, &e))?;
    Ok(Arc::new(certified))
}

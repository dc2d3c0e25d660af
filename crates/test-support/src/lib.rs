//! Helpers for customs' tests and benchmarks.
//!
//! - [`TestRegistry`]: the whole HTTP surface in-process over temporary storage; requests go
//!   through `Router::oneshot`, no sockets.
//! - [`ServerProcess`]: a real `customs serve` child process on 127.0.0.1:0.
//! - [`Client`]: a small HTTP/1.1 client for talking to a real server.
//! - [`ImageBuilder`]: deterministic images (tar.gz layers, config, manifest, index) and OCI
//!   image layouts that skopeo can copy from.
//! - [`S3Server`]: a real S3 server (s3s-fs, SigV4 checked) on 127.0.0.1:0.

mod client;
mod image;
mod process;
mod postgres;
mod s3;
mod webhooks;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

pub use client::{Client, Refused};
pub use image::{Blob, Image, ImageBuilder, Index, Rng, layer_tar_gz, write_image, write_oci_layout};
pub use process::ServerProcess;
pub use postgres::Postgres;
pub use s3::{BUCKET as S3_BUCKET, S3Server};
pub use webhooks::{Delivery, Receiver as WebhookReceiver};

/// skopeo with the given arguments (and `--insecure-policy`: the tests keep no signature policy):
/// its stdout, failing the test with its stderr.
pub fn skopeo(args: &[&str]) -> String {
    let mut all = vec!["--insecure-policy"];
    all.extend_from_slice(args);
    run("skopeo", &all)
}

/// Runs a client program the test command installed (skopeo, openssl, ...); its standard output.
/// Panics with its output when it fails.
pub fn run(program: &str, args: &[&str]) -> String {
    let mut command = std::process::Command::new(program);
    command.args(args);
    run_command(&mut command)
}

/// [`run`] for a command with more set up than its arguments (its environment, say).
pub fn run_command(command: &mut std::process::Command) -> String {
    let program = command.get_program().to_string_lossy().into_owned();
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{program} is not runnable ({e}); the test command installs it"));
    assert!(
        out.status.success(),
        "{program} {:?} failed:\n{}\n{}",
        command.get_args().collect::<Vec<_>>(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Where the filesystem blob store under the data directory `data` keeps `digest`'s bytes
/// (`blobs/<algorithm>/<first two hex>/<hex>`), for tests that look at or spoil them.
pub fn stored_blob_path(data: &std::path::Path, digest: &oci::Digest) -> std::path::PathBuf {
    data.join("blobs").join(digest.algorithm().as_str()).join(&digest.hex()[..2]).join(digest.hex())
}

/// Every file under `dir`, however deep, sorted; none if `dir` is not there.
pub fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let (mut files, mut dirs) = (Vec::new(), vec![dir.to_owned()]);
    while let Some(d) = dirs.pop() {
        for path in std::fs::read_dir(&d).into_iter().flatten().flatten().map(|e| e.path()) {
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The value of one series (`name{labels}` exactly as exposed) in Prometheus text.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    let prefix = format!("{series} ");
    text.lines().find_map(|l| l.strip_prefix(&prefix)).and_then(|v| v.parse().ok())
}

/// A response with its body read.
#[derive(Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl TestResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }

    /// The spec error code of an error body.
    pub fn error_code(&self) -> String {
        self.json()["errors"][0]["code"].as_str().unwrap_or_default().to_owned()
    }
}

/// customs' router over temporary filesystem blobs and SQLite records.
pub struct TestRegistry {
    pub router: Router,
    pub registry: Arc<registry::Registry>,
    pub dir: tempfile::TempDir,
    /// With authentication on: the access service the server uses.
    pub access: Option<Arc<registry::Access>>,
    /// The PEM of the token signing key (to forge tokens the server must refuse, or accept).
    pub token_key: String,
    /// The first admin's password (the admin is `admin`), random per registry.
    pub admin_password: String,
    /// What a [`TestRegistry::replica`] shares.
    stores: (blobs::Blobs, meta::Meta),
}

/// An `Authorization: Basic` value.
pub fn basic(name: &str, secret: &str) -> String {
    use base64::Engine;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{name}:{secret}")))
}

impl TestRegistry {
    pub async fn new() -> TestRegistry {
        TestRegistry::with_config(registry::RegistryConfig::default()).await
    }

    pub async fn with_config(config: registry::RegistryConfig) -> TestRegistry {
        let dir = tempfile::tempdir().expect("temp dir");
        TestRegistry::open(dir, config).await
    }

    /// A registry with the given admission limits per route class.
    pub async fn with_admission(admission: api::AdmissionConfig) -> TestRegistry {
        TestRegistry::with_limits(api::HttpLimits { admission, ..Default::default() }).await
    }

    /// A registry with the given HTTP limits (admission and per-client rates).
    pub async fn with_limits(limits: api::HttpLimits) -> TestRegistry {
        let dir = tempfile::tempdir().expect("temp dir");
        TestRegistry::build(dir, registry::RegistryConfig::default(), &limits).await
    }

    /// A registry over an existing directory (to show what survives a restart).
    pub async fn open(dir: tempfile::TempDir, config: registry::RegistryConfig) -> TestRegistry {
        TestRegistry::build(dir, config, &api::HttpLimits::default()).await
    }

    async fn build(dir: tempfile::TempDir, config: registry::RegistryConfig, limits: &api::HttpLimits) -> TestRegistry {
        TestRegistry::assemble(dir, config, limits, None, 0).await
    }

    /// A registry over `dir` whose blob store keeps `reserve` bytes of its filesystem free.
    pub async fn with_reserve(dir: tempfile::TempDir, reserve: u64, config: registry::RegistryConfig) -> TestRegistry {
        TestRegistry::assemble(dir, config, &api::HttpLimits::default(), None, reserve).await
    }

    /// A registry with authentication on: the first admin is `admin` with `admin_password`;
    /// `failed_logins` bounds wrong passwords per name and client.
    pub async fn with_auth(limits: api::HttpLimits, failed_logins: api::RateLimit) -> TestRegistry {
        let dir = tempfile::tempdir().expect("temp dir");
        TestRegistry::assemble(dir, registry::RegistryConfig::default(), &limits, Some(failed_logins), 0).await
    }

    async fn assemble(
        dir: tempfile::TempDir,
        config: registry::RegistryConfig,
        limits: &api::HttpLimits,
        auth: Option<api::RateLimit>,
        reserve: u64,
    ) -> TestRegistry {
        let blobs = blobs::FsBlobStore::open(dir.path()).expect("blob store").with_reserve(reserve);
        let meta = meta::Meta(Arc::new(meta::SqlMeta::open(&dir.path().join("meta.db")).await.expect("meta store")));
        let blobs = blobs::Blobs(Arc::new(blobs));
        let registry = Arc::new(registry::Registry::new(blobs.clone(), meta.clone(), config));
        let stores = (blobs, meta.clone());
        let token_key = auth::TokenKeys::generate_pem();
        let admin_password = auth::password::new_robot_secret();
        let (access, settings) = match auth {
            None => (None, None),
            Some(failed_logins) => {
                let keys = auth::TokenKeys::from_pem(&token_key).expect("token key");
                let access = registry::Access::new(meta, keys, registry::AccessConfig::default()).await.expect("access");
                assert!(access.bootstrap_admin("admin", &admin_password).await.expect("first admin"));
                let access = Arc::new(access);
                (Some(access.clone()), Some(api::AuthSettings { access, realm: None, failed_logins }))
            }
        };
        let services = api::Services { registry: registry.clone(), auth: settings, connections: Arc::default(), mirror: None };
        TestRegistry { router: api::build(services, limits), registry, dir, access, token_key, admin_password, stores }
    }

    /// Another replica beside this one: the same blobs and records, a registry and router of its
    /// own (what it keeps in memory is its own), and a data directory of its own, empty.
    /// Authentication is off in it.
    pub fn replica(&self) -> TestRegistry {
        let (blobs, meta) = self.stores.clone();
        let registry = Arc::new(registry::Registry::new(blobs.clone(), meta.clone(), self.registry.config().clone()));
        let services = api::Services { registry: registry.clone(), auth: None, connections: Arc::default(), mirror: None };
        TestRegistry {
            router: api::build(services, &api::HttpLimits::default()),
            registry,
            dir: tempfile::tempdir().expect("temp dir"),
            access: None,
            token_key: self.token_key.clone(),
            admin_password: self.admin_password.clone(),
            stores: (blobs, meta),
        }
    }

    pub async fn send(&self, request: Request<Body>) -> TestResponse {
        let response = self.router.clone().oneshot(request).await.expect("router is infallible");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("response body").to_bytes();
        TestResponse { status: parts.status, headers: parts.headers, body }
    }

    /// Sends `method path` with `headers` and `body`.
    pub async fn call(&self, method: Method, path: &str, headers: &[(&str, &str)], body: impl Into<Body>) -> TestResponse {
        let mut r = Request::builder().method(method).uri(path);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        self.send(r.body(body.into()).expect("valid request")).await
    }

    pub async fn get(&self, path: &str) -> TestResponse {
        self.call(Method::GET, path, &[], Body::empty()).await
    }

    pub async fn head(&self, path: &str) -> TestResponse {
        self.call(Method::HEAD, path, &[], Body::empty()).await
    }

    pub async fn delete(&self, path: &str) -> TestResponse {
        self.call(Method::DELETE, path, &[], Body::empty()).await
    }

    /// Uploads `bytes` to `repo` monolithically and checks it was created.
    pub async fn push_blob(&self, repo: &str, bytes: &[u8]) -> oci::Digest {
        let digest = oci::Digest::sha256_of(bytes);
        let r = self
            .call(Method::POST, &format!("/v2/{repo}/blobs/uploads/?digest={digest}"), &[], Bytes::copy_from_slice(bytes))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "push_blob: {:?}", r.body);
        digest
    }

    /// Pushes every blob of `image` and its manifest under `reference`; returns the response.
    pub async fn push_image(&self, repo: &str, image: &Image, reference: &str) -> TestResponse {
        for blob in image.blobs() {
            self.push_blob(repo, &blob.bytes).await;
        }
        self.put_manifest(repo, reference, &image.media_type, image.manifest.clone()).await
    }

    pub async fn put_manifest(&self, repo: &str, reference: &str, media_type: &str, bytes: Bytes) -> TestResponse {
        self.call(Method::PUT, &format!("/v2/{repo}/manifests/{reference}"), &[("content-type", media_type)], bytes)
            .await
    }
}

//! A real S3 server for tests: s3s-fs (the S3 API generated from AWS's Smithy model, with SigV4
//! checked) on 127.0.0.1, in a thread of its own, storing objects as files under a directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use hyper_util::rt::{TokioExecutor, TokioIo};
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;

/// The bucket every [`S3Server`] starts with.
pub const BUCKET: &str = "customs-test";

pub struct S3Server {
    pub addr: SocketAddr,
    /// Keys made for this server alone.
    pub access_key: String,
    pub secret_key: String,
    root: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl S3Server {
    /// Serves `root` (created if needed; objects of [`BUCKET`] go under `root/customs-test/`).
    pub fn start(root: &Path) -> S3Server {
        std::fs::create_dir_all(root.join(BUCKET)).expect("S3 root");
        let (access_key, secret_key) = (format!("AK{}", random_hex(8)).to_uppercase(), random_hex(20));
        let fs = s3s_fs::FileSystem::new(root).expect("s3s-fs over the root");
        let mut builder = S3ServiceBuilder::new(fs);
        builder.set_auth(SimpleAuth::from_single(access_key.clone(), secret_key.clone()));
        let service = builder.build();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the S3 server");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let http = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                loop {
                    let socket = tokio::select! {
                        accepted = listener.accept() => match accepted {
                            Ok((socket, _)) => socket,
                            Err(_) => continue,
                        },
                        _ = &mut stopped => break,
                    };
                    let conn = http.serve_connection(TokioIo::new(socket), service.clone()).into_owned();
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                }
            });
        });
        S3Server { addr, access_key, secret_key, root: root.to_owned(), stop: Some(stop), thread: Some(thread) }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Settings for a blob store over [`BUCKET`] under `prefix`, with this server's keys.
    pub fn settings(&self, prefix: &str) -> blobs::S3Settings {
        blobs::S3Settings {
            bucket: BUCKET.into(),
            region: Some("us-east-1".into()),
            endpoint: Some(self.endpoint()),
            prefix: prefix.into(),
            allow_http: true,
            credentials: Some(blobs::S3Credentials {
                access_key_id: self.access_key.clone(),
                secret_access_key: self.secret_key.clone(),
            }),
            redirect_for: None,
        }
    }

    /// The environment that points `customs serve` at [`BUCKET`] under `prefix`. The keys go
    /// through the standard AWS variables, as they would in a Pod.
    pub fn serve_env(&self, prefix: &str) -> Vec<(String, String)> {
        [
            ("CUSTOMS_STORAGE__S3__BUCKET", BUCKET.to_owned()),
            ("CUSTOMS_STORAGE__S3__ENDPOINT", self.endpoint()),
            ("CUSTOMS_STORAGE__S3__REGION", "us-east-1".to_owned()),
            ("CUSTOMS_STORAGE__S3__PREFIX", prefix.to_owned()),
            ("CUSTOMS_STORAGE__S3__ALLOW_HTTP", "true".to_owned()),
            ("AWS_ACCESS_KEY_ID", self.access_key.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret_key.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// Every object's key in [`BUCKET`] that starts with `prefix`, sorted, read from the server's
    /// directory (what is stored, whatever the API would say).
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        let bucket = self.root.join(BUCKET);
        let keys = crate::files_under(&bucket).into_iter().filter_map(|f| Some(f.strip_prefix(&bucket).ok()?.to_string_lossy().into_owned()));
        keys.filter(|k| k.starts_with(prefix)).collect()
    }

    /// Multipart uploads begun and neither completed nor aborted (their parts lie in the root).
    pub fn open_multipart_parts(&self) -> usize {
        std::fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(".upload_id-"))
            .count()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    use std::io::Read as _;
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buf)).expect("random bytes");
    hex::encode(buf)
}

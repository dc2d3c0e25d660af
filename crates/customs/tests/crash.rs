//! SIGKILL a real server in the middle of concurrent uploads and manifest pushes, restart it,
//! and check that every acknowledged write reads back intact and nothing half-written shows:
//! with blobs in the data directory, with blobs in S3, and with blobs in S3 and records in
//! PostgreSQL (read back by another replica).

use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Method, StatusCode};
use oci::Digest;
use test_support::{Client, Postgres, Rng, S3_BUCKET, S3Server, ServerProcess};

fn customs() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_customs"))
}

#[derive(Default)]
struct Acked {
    blobs: Vec<(String, Digest)>,
    manifests: Vec<(String, String, Digest, Bytes)>,
}

/// One writer: pushes blobs (chunked or whole) and manifests over them until the server dies.
async fn writer(client: Client, n: u64, acked: Arc<Mutex<Acked>>, enough: Arc<tokio::sync::Notify>) {
    let repo = format!("crash/w{n}");
    let mut rng = Rng(n * 7919 + 1);
    for round in 0.. {
        let size = 50_000 + (rng.next_u64() % 2_000_000) as usize;
        let mut data = vec![0; size];
        rng.fill(&mut data);
        let digest = Digest::sha256_of(&data);
        let pushed = if round % 2 == 0 {
            push_whole(&client, &repo, &digest, data).await
        } else {
            push_chunked(&client, &repo, &digest, &data).await
        };
        if !pushed {
            return;
        }
        acked.lock().unwrap().blobs.push((repo.clone(), digest.clone()));
        let config = format!(r#"{{"architecture":"amd64","os":"linux","round":{round}}}"#);
        let config_digest = Digest::sha256_of(config.as_bytes());
        if !push_whole(&client, &repo, &config_digest, config.clone().into_bytes()).await {
            return;
        }
        let manifest = Bytes::from(format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{digest}","size":{size}}}]}}"#,
            config.len()
        ));
        let tag = format!("r{round}");
        let put = client
            .call(
                Method::PUT,
                &format!("/v2/{repo}/manifests/{tag}"),
                &[("content-type", "application/vnd.oci.image.manifest.v1+json")],
                manifest.clone(),
            )
            .await;
        match put {
            Ok(r) if r.status == StatusCode::CREATED => {
                let mut a = acked.lock().unwrap();
                a.manifests.push((repo.clone(), tag, Digest::sha256_of(&manifest), manifest));
                if a.manifests.len() >= 24 {
                    enough.notify_one();
                }
            }
            Ok(r) => panic!("manifest push refused while the server was up: {} {:?}", r.status, r.body),
            Err(_) => return,
        }
    }
}

async fn push_whole(client: &Client, repo: &str, digest: &Digest, data: Vec<u8>) -> bool {
    match client.call(Method::POST, &format!("/v2/{repo}/blobs/uploads/?digest={digest}"), &[], data).await {
        Ok(r) => {
            assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
            true
        }
        Err(_) => false,
    }
}

async fn push_chunked(client: &Client, repo: &str, digest: &Digest, data: &[u8]) -> bool {
    let Ok(start) = client.call(Method::POST, &format!("/v2/{repo}/blobs/uploads/"), &[], Bytes::new()).await else {
        return false;
    };
    assert_eq!(start.status, StatusCode::ACCEPTED);
    let mut location = start.header("location").unwrap().to_owned();
    let mut offset = 0;
    for chunk in data.chunks(400_000) {
        let range = format!("{}-{}", offset, offset + chunk.len() - 1);
        let r = client
            .call(Method::PATCH, &location, &[("content-range", &range)], Bytes::copy_from_slice(chunk))
            .await;
        let Ok(r) = r else { return false };
        assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
        location = r.header("location").unwrap().to_owned();
        offset += chunk.len();
    }
    let sep = if location.contains('?') { '&' } else { '?' };
    match client.call(Method::PUT, &format!("{location}{sep}digest={digest}"), &[], Bytes::new()).await {
        Ok(r) => {
            assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
            true
        }
        Err(_) => false,
    }
}

/// Every file under `root` (a store's `blobs/`) must hash to its own name, under the directory
/// named by its algorithm: no prefix of a blob is ever visible.
fn assert_blob_files_complete(root: &Path) -> usize {
    let files = test_support::files_under(root);
    for path in &files {
        let name = path.file_name().unwrap().to_str().unwrap();
        let alg = path.ancestors().filter_map(|a| a.file_name()?.to_str()).find(|a| a.starts_with("sha")).unwrap();
        let want: Digest = format!("{alg}:{name}").parse().unwrap();
        let got = Digest::of(want.algorithm(), &std::fs::read(path).unwrap());
        assert_eq!(got, want, "{} holds bytes of another digest", path.display());
    }
    files.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_during_pushes_loses_nothing_acknowledged() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    crash_and_check(&data, &[], &data.join("blobs")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_during_pushes_to_s3_loses_nothing_acknowledged() {
    let tmp = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(&tmp.path().join("s3"));
    let env = s3.serve_env("crash");
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let data = tmp.path().join("data");
    crash_and_check(&data, &env, &tmp.path().join("s3").join(S3_BUCKET).join("crash/blobs")).await;
    assert!(!data.join("blobs").join("sha256").exists(), "the blobs went to S3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_during_pushes_with_records_in_postgres_loses_nothing_acknowledged() {
    let tmp = tempfile::tempdir().unwrap();
    let pg = Postgres::start();
    let s3 = S3Server::start(&tmp.path().join("s3"));
    let mut env = s3.serve_env("crash");
    env.push(("CUSTOMS_RECORDS__URL".into(), pg.database()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    // What the killed server acknowledged is read back by another replica, with a data
    // directory of its own: nothing it relies on stayed in the first one's.
    let (data, replica) = (tmp.path().join("data"), tmp.path().join("replica"));
    crash_and_check_on(&data, &replica, &env, &tmp.path().join("s3").join(S3_BUCKET).join("crash/blobs")).await;
    assert!(!data.join("meta.db").exists(), "the records went to PostgreSQL");
}

/// Pushes with 8 writers to a server over `data` (and `env`), kills it, restarts it and checks
/// what it acknowledged; `blob_files` is where the store keeps committed blobs as files.
async fn crash_and_check(data: &Path, env: &[(&str, &str)], blob_files: &Path) {
    crash_and_check_on(data, data, env, blob_files).await
}

/// [`crash_and_check`], the server started again over `after` (a replica's data directory, or
/// `data` itself).
async fn crash_and_check_on(data: &Path, after: &Path, env: &[(&str, &str)], blob_files: &Path) {
    let server = ServerProcess::start_with(customs(), data, env).unwrap();
    let client = Client::new(&server.url());
    let acked = Arc::new(Mutex::new(Acked::default()));
    let enough = Arc::new(tokio::sync::Notify::new());
    let writers: Vec<_> =
        (0..8).map(|n| tokio::spawn(writer(client.clone(), n, acked.clone(), enough.clone()))).collect();
    tokio::time::timeout(std::time::Duration::from_secs(120), enough.notified())
        .await
        .expect("writers acknowledged enough pushes");
    // Writers are mid-request right now: kill without warning.
    server.kill_hard();
    for w in writers {
        w.await.expect("writer ended without panicking");
    }
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    assert!(acked.manifests.len() >= 24 && acked.blobs.len() >= 24);

    let files = assert_blob_files_complete(blob_files);
    assert!(files >= acked.blobs.len());

    let server = ServerProcess::start_with(customs(), after, env).unwrap();
    let client = Client::new(&server.url());
    for (repo, digest) in &acked.blobs {
        let r = client.call(Method::GET, &format!("/v2/{repo}/blobs/{digest}"), &[], Bytes::new()).await.unwrap();
        assert_eq!(r.status, StatusCode::OK, "acknowledged blob {digest} in {repo} is gone");
        assert_eq!(&Digest::sha256_of(&r.body), digest, "acknowledged blob {digest} is corrupt");
    }
    for (repo, tag, digest, bytes) in &acked.manifests {
        for reference in [tag.clone(), digest.to_string()] {
            let r = client.call(Method::GET, &format!("/v2/{repo}/manifests/{reference}"), &[], Bytes::new()).await.unwrap();
            assert_eq!(r.status, StatusCode::OK, "acknowledged manifest {repo}:{reference} is gone");
            assert_eq!(&r.body, bytes);
        }
    }
    // Whatever else is visible is whole: every tagged manifest resolves, and its blobs read back.
    let catalog = client.call(Method::GET, "/v2/_catalog", &[], Bytes::new()).await.unwrap().json();
    for repo in catalog["repositories"].as_array().unwrap() {
        let repo = repo.as_str().unwrap();
        let tags = client.call(Method::GET, &format!("/v2/{repo}/tags/list"), &[], Bytes::new()).await.unwrap().json();
        for tag in tags["tags"].as_array().unwrap() {
            let m = client.call(Method::GET, &format!("/v2/{repo}/manifests/{}", tag.as_str().unwrap()), &[], Bytes::new()).await.unwrap();
            assert_eq!(m.status, StatusCode::OK);
            let manifest = m.json();
            let layers = manifest["layers"].as_array().unwrap().iter();
            for d in std::iter::once(&manifest["config"]).chain(layers) {
                let digest: Digest = d["digest"].as_str().unwrap().parse().unwrap();
                let b = client.call(Method::GET, &format!("/v2/{repo}/blobs/{digest}"), &[], Bytes::new()).await.unwrap();
                assert_eq!(b.status, StatusCode::OK, "{repo}:{tag} references a blob that is not readable");
                assert_eq!(Digest::sha256_of(&b.body), digest);
            }
        }
    }
    // The server still takes writes after the crash.
    let digest = Digest::sha256_of(b"after the crash");
    assert!(push_whole(&client, "crash/after", &digest, b"after the crash".to_vec()).await);
    assert!(server.stop());
}

//! Routing, and blob downloads that break.
//!
//! Routing: names under an upstream's prefix go to it (`library/` added to Docker Hub's single
//! names), containerd's `?ns=` names find the upstream of their registry.
//!
//! Blob downloads that break: an upstream of the test's own (a plain TCP server, since a real
//! registry cannot be made to cut a body half way) sends half a blob and closes the connection.
//! Resumed with a `Range` request, every waiter gets the whole blob from two upstream GETs; when
//! every try breaks, every waiter's stream fails and nothing of the blob is left, visible or not.
//!
//! A store at its reserve of free space: nothing is fetched, and the client is told why (507).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};

use blobs::{BlobBody, Blobs, FsBlobStore};
use futures::StreamExt;
use meta::{Meta, SqlMeta};
use mirror::{Mirror, UpstreamConfig};
use oci::{Digest, RepoName};
use registry::{Registry, RegistryConfig};

/// What the test's upstream was asked: the `Range` header of each blob GET ("" for none).
type Asked = Arc<Mutex<Vec<String>>>;

/// Serves `blob` at any `/blobs/` path: a request without `Range` gets the whole length
/// announced and only the first half sent; a `Range: bytes=K-` request gets the rest, unless
/// `always_cut`, when it too is cut in half.
fn cutting_upstream(blob: Vec<u8>, always_cut: bool) -> (String, Asked) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let asked: Asked = Arc::default();
    let seen = asked.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut range = String::new();
            let mut line = String::new();
            let mut first = true;
            let mut path = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 {
                if first {
                    path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
                    first = false;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("range:") {
                    range = v.trim().to_owned();
                }
                if line == "\r\n" {
                    break;
                }
                line.clear();
            }
            if !path.contains("/blobs/") {
                let _ = conn.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                continue;
            }
            seen.lock().unwrap().push(range.clone());
            let start: usize = range.strip_prefix("bytes=").and_then(|r| r.trim_end_matches('-').parse().ok()).unwrap_or(0);
            let rest = &blob[start..];
            let head = if start == 0 {
                format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", blob.len())
            } else {
                format!(
                    "HTTP/1.1 206 Partial Content\r\ncontent-length: {}\r\ncontent-range: bytes {start}-{}/{}\r\nconnection: close\r\n\r\n",
                    rest.len(),
                    blob.len() - 1,
                    blob.len()
                )
            };
            let cut = start == 0 || always_cut;
            let send = if cut { &rest[..rest.len() / 2] } else { rest };
            let _ = conn.write_all(head.as_bytes());
            let _ = conn.write_all(send);
            let _ = conn.flush();
            // Closing with bytes announced but not sent: the client sees the body break off.
            let _ = conn.shutdown(std::net::Shutdown::Both);
            let mut sink = [0u8; 1];
            let _ = conn.read(&mut sink);
        }
    });
    (url, asked)
}

/// A mirror of `upstream` over `dir`, its blob store keeping `reserve` bytes of the disk free.
async fn mirror(dir: &Path, upstream: &str, reserve: u64) -> (Arc<Mirror>, Arc<Registry>) {
    let blobs = Blobs(Arc::new(FsBlobStore::open(dir).unwrap().with_reserve(reserve)));
    let meta = Meta(Arc::new(SqlMeta::open(&dir.join("meta.db")).await.unwrap()));
    let registry = Arc::new(Registry::new(blobs.clone(), meta.clone(), RegistryConfig::default()));
    let mirror = Mirror::new(registry.clone(), blobs, meta, vec![UpstreamConfig::new("up", upstream)]).unwrap();
    (Arc::new(mirror), registry)
}

/// Ten clients read the blob at once; each one's bytes, or its error.
async fn ten_reads(mirror: &Arc<Mirror>, repo: &RepoName, digest: &Digest) -> Vec<Result<Vec<u8>, String>> {
    let route = mirror.route(repo).unwrap().unwrap();
    let reads: Vec<_> = (0..10)
        .map(|_| {
            let (mirror, route, repo, digest) = (mirror.clone(), route.clone(), repo.clone(), digest.clone());
            tokio::spawn(async move {
                let read = mirror.blob(&route, &repo, &digest, None).await.map_err(|e| e.to_string())?;
                let BlobBody::Stream { mut stream, len } = read.body else { return Err("a redirect".to_owned()) };
                let mut bytes = Vec::new();
                while let Some(chunk) = stream.next().await {
                    bytes.extend_from_slice(&chunk.map_err(|e| e.to_string())?);
                }
                assert_eq!(bytes.len() as u64, len, "a stream that ends gives all it announced");
                Ok(bytes)
            })
        })
        .collect();
    let mut out = Vec::new();
    for r in reads {
        out.push(r.await.unwrap());
    }
    out
}

struct Setup {
    tmp: tempfile::TempDir,
    bytes: Vec<u8>,
    digest: Digest,
    asked: Asked,
    mirror: Arc<Mirror>,
    registry: Arc<Registry>,
    repo: RepoName,
}

/// A mirror of a cutting upstream serving 3 MiB of varied bytes (several flushes before and
/// after the cut).
async fn setup(always_cut: bool) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let bytes: Vec<u8> = (0..3u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let digest = Digest::sha256_of(&bytes);
    let (url, asked) = cutting_upstream(bytes.clone(), always_cut);
    let (mirror, registry) = mirror(tmp.path(), &url, 0).await;
    Setup { tmp, bytes, digest, asked, mirror, registry, repo: "up/team/app".parse().unwrap() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_cut_half_way_is_resumed_with_a_range_and_every_waiter_gets_it_whole() {
    let Setup { tmp: _tmp, bytes, digest, asked, mirror, registry, repo } = setup(false).await;
    for read in ten_reads(&mirror, &repo, &digest).await {
        assert!(read.as_ref().is_ok_and(|b| *b == bytes), "every waiter gets the whole blob: {:?}", read.err());
    }
    let half = bytes.len() / 2;
    assert_eq!(*asked.lock().unwrap(), vec![String::new(), format!("bytes={half}-")], "one GET, then one resumed from where it broke");
    assert_eq!(registry.stat_blob(&repo, &digest).await.unwrap(), bytes.len() as u64, "committed and linked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_that_keeps_breaking_fails_every_waiter_and_leaves_nothing() {
    let Setup { tmp, bytes: _, digest, asked, mirror, registry, repo } = setup(true).await;
    for read in ten_reads(&mirror, &repo, &digest).await {
        let err = read.expect_err("no waiter gets a blob that never arrived whole");
        assert!(err.contains("broke off") || err.contains("download failed"), "{err}");
    }
    assert_eq!(asked.lock().unwrap().len(), 4, "tried four times, resuming each time");
    assert!(matches!(registry.stat_blob(&repo, &digest).await, Err(registry::Error::BlobUnknown(_))), "nothing linked");
    let uploads: Vec<_> = std::fs::read_dir(tmp.path().join("uploads")).unwrap().collect();
    assert!(uploads.is_empty(), "the part is removed: {uploads:?}");
    assert!(!tmp.path().join("blobs/sha256").join(&digest.hex()[..2]).join(digest.hex()).exists(), "nothing committed");
    // The failure is not remembered: the next reader tries again.
    let _ = ten_reads(&mirror, &repo, &digest).await;
    assert_eq!(asked.lock().unwrap().len(), 8);
}

#[tokio::test]
async fn names_route_by_prefix_and_by_containerd_namespace() {
    let tmp = tempfile::tempdir().unwrap();
    let blobs = Blobs(Arc::new(FsBlobStore::open(tmp.path()).unwrap()));
    let meta = Meta(Arc::new(SqlMeta::open(&tmp.path().join("meta.db")).await.unwrap()));
    let registry = Arc::new(Registry::new(blobs.clone(), meta.clone(), RegistryConfig::default()));
    let mut ghcr = UpstreamConfig::new("ghcr", "https://ghcr.io");
    ghcr.allow = vec!["myorg/**".into()];
    ghcr.deny = vec!["myorg/secret".into()];
    let mut hub = UpstreamConfig::new("hub", "https://registry-1.docker.io");
    hub.default = true;
    let upstreams = vec![hub, ghcr, UpstreamConfig::new("local", "http://127.0.0.1:5999")];
    let mirror = Mirror::new(registry.clone(), blobs.clone(), meta.clone(), upstreams).unwrap();
    let name = |s: &str| s.parse::<RepoName>().unwrap();
    let remote = |s: &str| mirror.route(&name(s)).map(|r| r.map(|r| r.remote().to_string()).map_err(|e| e.to_string()));

    assert_eq!(remote("hub/nginx"), Some(Ok("library/nginx".into())), "Docker Hub's single names are library/");
    assert_eq!(remote("hub/bitnami/redis"), Some(Ok("bitnami/redis".into())));
    assert_eq!(remote("local/nginx"), Some(Ok("nginx".into())), "only Docker Hub gets library/");
    assert_eq!(remote("ghcr/myorg/tool"), Some(Ok("myorg/tool".into())));
    assert!(remote("ghcr/other/tool").unwrap().unwrap_err().contains("not allowed by its rules"), "outside allow");
    assert!(remote("ghcr/myorg/secret").unwrap().unwrap_err().contains("not allowed by its rules"), "deny wins");
    assert_eq!(remote("team/app"), None, "a local name");
    assert_eq!(remote("hubx/nginx"), None);

    let ns = |ns: &str, repo: &str| mirror.for_namespace(ns, &name(repo)).map(|r| r.unwrap().to_string());
    assert_eq!(ns("docker.io", "library/nginx"), Some("hub/library/nginx".into()));
    assert_eq!(ns("ghcr.io", "myorg/tool"), Some("ghcr/myorg/tool".into()));
    assert_eq!(ns("127.0.0.1:5999", "team/app"), Some("local/team/app".into()));
    assert_eq!(ns("quay.io", "x/y"), None, "no upstream for that registry");

    // Docker's `registry-mirrors`: names without a prefix go to the default upstream until a
    // local repository of that name exists.
    assert_eq!(mirror.for_default(&name("library/nginx")).await.map(|r| r.unwrap().to_string()), Some("hub/library/nginx".into()));
    assert_eq!(mirror.for_default(&name("nginx")).await.map(|r| r.unwrap().to_string()), Some("hub/nginx".into()));
    assert_eq!(remote("hub/nginx"), Some(Ok("library/nginx".into())), "and then library/ as for any Docker Hub name");
    assert!(mirror.for_default(&name("ghcr/myorg/tool")).await.is_none(), "already an upstream's");
    assert!(mirror.for_default(&name("team/app")).await.is_some());
    meta.link_blob(&name("team/app"), &Digest::sha256_of(b"x"), 1).await.unwrap();
    assert!(mirror.for_default(&name("team/app")).await.is_none(), "a local repository wins");

    let invalid = |config: UpstreamConfig| Mirror::new(registry.clone(), blobs.clone(), meta.clone(), vec![config]).err().map(|e| e.to_string());
    let mut second = UpstreamConfig::new("b", "https://h");
    second.default = true;
    let mut first = second.clone();
    first.name = "a".into();
    let two_defaults = Mirror::new(registry.clone(), blobs.clone(), meta.clone(), vec![first, second]).err().map(|e| e.to_string());
    assert!(two_defaults.is_some_and(|e| e.contains("second default")));
    assert!(invalid(UpstreamConfig::new("x", "ftp://h")).is_some_and(|e| e.contains("http(s)")));
    assert!(invalid(UpstreamConfig::new("a/b", "https://h")).is_some_and(|e| e.contains("one lowercase")));
    assert!(invalid(UpstreamConfig::new("x", "https://h/path")).is_some());
    assert!(invalid(UpstreamConfig::new("x", "https://h:5000")).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_that_do_not_match_the_digest_are_never_made_visible() {
    let Setup { tmp, bytes: _, digest: _, asked: _, mirror, registry, repo } = setup(false).await;
    // The upstream answers this digest with other bytes.
    let claimed = Digest::sha256_of(b"what the client asked for");
    for read in ten_reads(&mirror, &repo, &claimed).await {
        let err = read.expect_err("no waiter gets bytes of another digest");
        assert!(err.contains(&format!("not {claimed}")), "the error says the digest did not match: {err}");
    }
    assert!(matches!(registry.stat_blob(&repo, &claimed).await, Err(registry::Error::BlobUnknown(_))));
    assert_eq!(std::fs::read_dir(tmp.path().join("uploads")).unwrap().count(), 0, "the part is removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_at_its_reserve_fetches_nothing_and_says_why() {
    let tmp = tempfile::tempdir().unwrap();
    let bytes = b"a layer the mirror does not hold yet".to_vec();
    let digest = Digest::sha256_of(&bytes);
    let (url, asked) = cutting_upstream(bytes, false);
    // A reserve larger than any disk: the store is at it from the start.
    let (mirror, registry) = mirror(tmp.path(), &url, u64::MAX / 4).await;
    let repo: RepoName = "up/team/app".parse().unwrap();
    let route = mirror.route(&repo).unwrap().unwrap();
    for _ in 0..2 {
        let Err(e) = mirror.blob(&route, &repo, &digest, None).await else { panic!("a blob that cannot be stored is not served") };
        assert!(matches!(e, registry::Error::InsufficientStorage(_)), "507, not a failure of the upstream: {e:?}");
        assert!(e.to_string().contains(&digest.to_string()) && e.to_string().contains("storage is nearly full"), "{e}");
    }
    assert!(asked.lock().unwrap().is_empty(), "nothing was fetched that could not be kept: {:?}", asked.lock().unwrap());
    assert_eq!(mirror.stats.upstream_errors.load(std::sync::atomic::Ordering::Relaxed), 0, "the upstream did nothing wrong");
    assert!(matches!(registry.stat_blob(&repo, &digest).await, Err(registry::Error::BlobUnknown(_))));
    assert_eq!(std::fs::read_dir(tmp.path().join("uploads")).unwrap().count(), 0, "no part was made");
}

//! The S3 adapter against a real S3 server (s3s-fs in-process, SigV4 checked): the port's
//! conformance suite, then what only S3 has (parts, segments, keys, credentials).
#![cfg(feature = "s3")]

use blobs::{BlobBody, BlobStore, ByteStream, Error, S3BlobStore, UploadId};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt, stream};
use hyper_util::client::legacy::connect::HttpConnector;
use oci::Digest;
use test_support::S3Server;

fn store(server: &S3Server, prefix: &str) -> S3BlobStore {
    S3BlobStore::new(&server.settings(prefix), HttpConnector::new()).unwrap()
}

/// `data` in pieces of `piece` bytes, as a client's body arrives.
fn body(data: &[u8], piece: usize) -> ByteStream {
    let pieces: Vec<_> = data.chunks(piece).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    stream::iter(pieces).boxed()
}

fn data(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32).map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 13) as u8).collect()
}

async fn read(store: &S3BlobStore, d: &Digest) -> Vec<u8> {
    let BlobBody::Stream { stream, len } = store.open(d, None).await.unwrap() else { panic!("a stream") };
    let bytes: Vec<Bytes> = stream.try_collect().await.unwrap();
    let all = bytes.concat();
    assert_eq!(all.len() as u64, len);
    all
}

/// Every path under `dir`, directories and the server's own metadata files included.
fn tree(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut all: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().map(|e| e.path()).collect();
    for sub in all.clone().iter().filter(|p| p.is_dir()) {
        all.extend(tree(sub));
    }
    all.sort();
    all
}

#[tokio::test]
async fn the_s3_adapter_passes_the_port_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let server = S3Server::start(dir.path());
    let store = store(&server, "conformance");
    // A check for reading (a read-only server) leaves no trace; one for writing works.
    let before = tree(dir.path());
    store.check(false).await.unwrap();
    assert_eq!(tree(dir.path()), before, "a read check writes nothing");
    store.check(true).await.unwrap();
    assert_eq!(server.keys(""), Vec::<String>::new(), "the write probe is removed");
    blobs::conformance::run(&store).await;
    // Every request was answered; HEADs of absent blobs are 404s.
    let stats = store.stats().unwrap();
    let answered = |class: &str| stats.answered.iter().find(|(c, _)| *c == class).unwrap().1;
    assert!(answered("2xx") > 50 && answered("4xx") > 0, "{stats:?}");
    assert_eq!((answered("5xx"), stats.failed), (0, 0), "{stats:?}");
    assert!(stats.wait_micros > 0);
    // What the suite leaves is under the prefix, and no upload's segments are left behind.
    let keys = server.keys("");
    assert!(!keys.is_empty());
    assert!(keys.iter().all(|k| k.starts_with("conformance/blobs/") || k.starts_with("conformance/quarantine/")), "{keys:?}");
    assert_eq!(server.open_multipart_parts(), 0);
}

#[tokio::test]
async fn a_large_body_goes_in_parts_and_a_failed_one_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = S3Server::start(dir.path());
    let store = store(&server, "");

    // 21 MiB in 64 KiB pieces: three parts of a multipart upload, then a server-side copy.
    let big = data(21 << 20, 1);
    let id = UploadId::new("big").unwrap();
    assert_eq!(store.write_part(&id, 0, body(&big, 64 << 10)).await.unwrap(), big.len() as u64);
    assert_eq!(server.keys("uploads/"), vec![format!("uploads/big/{:020}", 0)]);
    let d = Digest::sha256_of(&big);
    store.commit(&id, big.len() as u64, &d).await.unwrap();
    assert_eq!(server.keys(""), vec![format!("blobs/sha256/{}", d.hex())]);
    assert!(read(&store, &d).await == big, "the blob reads back whole");

    // A body that fails after two parts were sent: the multipart upload is aborted, so no
    // segment is visible and no part is left on the server.
    let id = UploadId::new("broken").unwrap();
    let pieces = data(17 << 20, 2);
    let broken = body(&pieces, 1 << 20)
        .chain(stream::once(async { Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "client went away")) }))
        .boxed();
    assert!(matches!(store.write_part(&id, 0, broken).await, Err(Error::Body(_))));
    assert_eq!(server.keys("uploads/"), Vec::<String>::new());
    assert_eq!(server.open_multipart_parts(), 0);
    assert!(matches!(store.read_part(&id, 0, 1).await, Err(Error::UploadNotFound(_))));
}

#[tokio::test]
async fn an_upload_of_many_chunks_commits_whole_and_reads_across_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = S3Server::start(dir.path());
    let store = store(&server, "registry/one");
    // Chunks as a chunked client sends them: small, larger than a part, small.
    let all = data((9 << 20) + 300_001, 3);
    let cuts = [0, 100_000, 100_000 + (8 << 20) + 5, all.len()];
    let id = UploadId::new("chunked").unwrap();
    for w in cuts.windows(2) {
        let n = store.write_part(&id, w[0] as u64, body(&all[w[0]..w[1]], 32 << 10)).await.unwrap();
        assert_eq!(n, (w[1] - w[0]) as u64);
    }
    assert_eq!(server.keys("registry/one/uploads/").len(), 3, "a segment per chunk");
    // A read across all three segments' boundaries.
    let (start, len) = (99_000u64, (8 << 20) + 10_000u64);
    let got: Vec<Bytes> = store.read_part(&id, start, len).await.unwrap().try_collect().await.unwrap();
    assert!(got.concat() == all[start as usize..(start + len) as usize], "a read across segments");

    let d = Digest::sha256_of(&all);
    store.commit(&id, all.len() as u64, &d).await.unwrap();
    assert!(read(&store, &d).await == all, "the segments joined in order");
    assert_eq!(server.keys(""), vec![format!("registry/one/blobs/sha256/{}", d.hex())]);
    assert_eq!(server.open_multipart_parts(), 0);
}

#[tokio::test]
async fn wrong_keys_and_an_unreachable_store_are_refused_with_a_message_that_says_where() {
    let dir = tempfile::tempdir().unwrap();
    let server = S3Server::start(dir.path());
    let mut settings = server.settings("p");
    settings.credentials.as_mut().unwrap().secret_access_key = "not-the-secret".into();
    let wrong = S3BlobStore::new(&settings, HttpConnector::new()).unwrap();
    let refused = wrong.check(true).await.unwrap_err().to_string();
    assert!(refused.contains("cannot write to s3://customs-test/p"), "{refused}");
    assert!(refused.contains("SignatureDoesNotMatch"), "{refused}");
    let refused = wrong.check(false).await.unwrap_err().to_string();
    assert!(refused.contains("cannot list s3://customs-test/p") && refused.contains("SignatureDoesNotMatch"), "{refused}");
    let stats = wrong.stats().unwrap();
    assert_eq!(stats.answered, vec![("2xx", 0), ("3xx", 0), ("4xx", 2), ("5xx", 0)], "a 403 is not retried");

    assert!(server.keys("").is_empty(), "nothing written");

    // Nothing listens there: refused after a few quick retries, not after minutes.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut settings = server.settings("");
    settings.endpoint = Some(format!("http://{closed}"));
    let started = std::time::Instant::now();
    let closed_store = S3BlobStore::new(&settings, HttpConnector::new()).unwrap();
    let unreachable = closed_store.check(true).await.unwrap_err().to_string();
    assert_eq!(closed_store.stats().unwrap().failed, 5, "the first attempt and four retries, each counted");
    assert!(unreachable.contains("cannot write to s3://customs-test/"), "{unreachable}");
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "gave up after {:?}", started.elapsed());
}

#[tokio::test]
async fn a_prefix_belongs_to_the_first_registry_that_claims_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = S3Server::start(dir.path());
    let (one, other) = (store(&server, "shared"), store(&server, "shared"));
    one.claim("id-one\ncustoms data directory /srv/one on host-a\n").await.unwrap();
    one.claim("id-one\ncustoms data directory /moved/one on host-b\n").await.unwrap();
    let refused = other.claim("id-two\ncustoms data directory /srv/two on host-c\n").await.unwrap_err().to_string();
    assert!(
        refused.contains("s3://customs-test/shared holds the blobs of customs data directory /srv/one on host-a (id id-one)"),
        "{refused}"
    );
    assert!(refused.contains("another bucket or prefix"), "{refused}");
    // Another prefix in the same bucket is free.
    store(&server, "elsewhere").claim("id-two\nsomewhere\n").await.unwrap();
    assert_eq!(server.keys(""), vec!["elsewhere/.customs-owner".to_owned(), "shared/.customs-owner".to_owned()]);
}

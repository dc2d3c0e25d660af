//! The distribution spec, endpoint by endpoint, in-process (`Router::oneshot`): status codes,
//! headers, error codes, and hostile input that must end in a clear error with nothing partial.

use axum::body::Body;
use bytes::Bytes;
use http::{Method, StatusCode};
use oci::{Algorithm, Digest, media_type as mt};
use serde_json::json;
use test_support::{ImageBuilder, Index, TestRegistry, TestResponse};

const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

fn assert_error(r: &TestResponse, status: StatusCode, code: &str) {
    assert_eq!(r.status, status, "body: {:?}", r.body);
    assert_eq!(r.error_code(), code, "body: {:?}", r.body);
    assert_eq!(r.header("content-type"), Some("application/json"));
}

fn bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0; n];
    test_support::Rng(seed | 1).fill(&mut v);
    v
}

/// The session path from a Location header.
fn location(r: &TestResponse) -> String {
    r.header("location").expect("Location header").to_owned()
}

async fn start_upload(reg: &TestRegistry, repo: &str) -> String {
    let r = reg.call(Method::POST, &format!("/v2/{repo}/blobs/uploads/"), &[], Body::empty()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    location(&r)
}

async fn patch(reg: &TestRegistry, session: &str, range: Option<(u64, u64)>, data: &[u8]) -> TestResponse {
    let cr = range.map(|(a, b)| format!("{a}-{b}"));
    let len = data.len().to_string();
    let mut headers = vec![("content-length", len.as_str()), ("content-type", "application/octet-stream")];
    if let Some(cr) = &cr {
        headers.push(("content-range", cr.as_str()));
    }
    reg.call(Method::PATCH, session, &headers, Bytes::copy_from_slice(data)).await
}

async fn blob_files(reg: &TestRegistry) -> usize {
    fn count(p: &std::path::Path) -> usize {
        std::fs::read_dir(p).map_or(0, |d| {
            d.flatten().map(|e| if e.path().is_dir() { count(&e.path()) } else { 1 }).sum()
        })
    }
    count(&reg.dir.path().join("blobs"))
}

#[tokio::test]
async fn base_endpoint_answers() {
    let reg = TestRegistry::new().await;
    for path in ["/v2/", "/v2"] {
        let r = reg.get(path).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.header("docker-distribution-api-version"), Some("registry/2.0"));
        assert_eq!(r.json(), json!({}));
    }
    assert_eq!(reg.get("/healthz").await.status, StatusCode::OK);
    assert_eq!(reg.get("/readyz").await.status, StatusCode::OK);
}

#[tokio::test]
async fn monolithic_upload_then_blob_reads_with_ranges_and_etags() {
    let reg = TestRegistry::new().await;
    let data = bytes(300_000, 7);
    let digest = Digest::sha256_of(&data);
    let r = reg.call(Method::POST, &format!("/v2/a/b/blobs/uploads/?digest={digest}"), &[], data.clone()).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.header("location"), Some(format!("/v2/a/b/blobs/{digest}").as_str()));
    assert_eq!(r.header("docker-content-digest"), Some(digest.to_string().as_str()));

    let path = format!("/v2/a/b/blobs/{digest}");
    let head = reg.head(&path).await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.header("content-length"), Some("300000"));
    assert_eq!(head.header("docker-content-digest"), Some(digest.to_string().as_str()));
    assert_eq!(head.header("etag"), Some(format!("\"{digest}\"").as_str()));
    assert!(head.body.is_empty());

    let get = reg.get(&path).await;
    assert_eq!(get.status, StatusCode::OK);
    assert_eq!(get.header("accept-ranges"), Some("bytes"));
    assert_eq!(&get.body[..], &data[..]);

    for (range, start, end) in [("bytes=0-9", 0, 9), ("bytes=299990-", 299_990, 299_999), ("bytes=-5", 299_995, 299_999), ("bytes=100-999999", 100, 299_999)] {
        let r = reg.call(Method::GET, &path, &[("range", range)], Body::empty()).await;
        assert_eq!(r.status, StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(r.header("content-range"), Some(format!("bytes {start}-{end}/300000").as_str()), "{range}");
        assert_eq!(r.header("content-length"), Some((end - start + 1).to_string().as_str()));
        assert_eq!(&r.body[..], &data[start..=end], "{range}");
    }
    for range in ["bytes=300000-", "bytes=400000-400010", "bytes=9-3"] {
        let r = reg.call(Method::GET, &path, &[("range", range)], Body::empty()).await;
        assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE, "{range}");
        assert_eq!(r.header("content-range"), Some("bytes */300000"));
    }
    let r = reg.call(Method::GET, &path, &[("range", "bytes=a-b")], Body::empty()).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "SIZE_INVALID");
    let r = reg.call(Method::GET, &path, &[("if-none-match", &format!("\"{digest}\""))], Body::empty()).await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    assert!(r.body.is_empty());

    // A blob is readable only where it was pushed or mounted.
    assert_error(&reg.get(&format!("/v2/other/blobs/{digest}")).await, StatusCode::NOT_FOUND, "BLOB_UNKNOWN");
    assert_eq!(reg.head(&format!("/v2/other/blobs/{digest}")).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn empty_and_sha512_blobs() {
    let reg = TestRegistry::new().await;
    let empty = Digest::sha256_of(b"");
    let r = reg.call(Method::POST, &format!("/v2/r/blobs/uploads/?digest={empty}"), &[], Body::empty()).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let get = reg.get(&format!("/v2/r/blobs/{empty}")).await;
    assert_eq!((get.status, get.body.len()), (StatusCode::OK, 0));

    let data = bytes(5000, 9);
    let long = Digest::of(Algorithm::Sha512, &data);
    let session = start_upload(&reg, "r").await;
    assert_eq!(patch(&reg, &session, None, &data).await.status, StatusCode::ACCEPTED);
    let r = reg.call(Method::PUT, &format!("{session}?digest={long}"), &[], Body::empty()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(&reg.get(&format!("/v2/r/blobs/{long}")).await.body[..], &data[..]);
}

#[tokio::test]
async fn chunked_upload_in_order_out_of_order_and_replayed() {
    let reg = TestRegistry::new().await;
    let data = bytes(15, 3);
    let digest = Digest::sha256_of(&data);
    let session = start_upload(&reg, "chunks").await;
    assert!(session.starts_with("/v2/chunks/blobs/uploads/"));

    let status = reg.get(&session).await;
    assert_eq!(status.status, StatusCode::NO_CONTENT);
    assert_eq!(status.header("range"), Some("0-0"));
    assert_eq!(status.header("location"), Some(session.as_str()));

    let r = patch(&reg, &session, Some((0, 4)), &data[0..5]).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(r.header("range"), Some("0-4"));
    assert!(r.header("docker-upload-uuid").is_some());
    let session = location(&r);

    // Out of order, then a replay: 416, and the session still says 0-4.
    for (range, part) in [((10, 14), &data[10..15]), ((0, 4), &data[0..5])] {
        let r = patch(&reg, &session, Some(range), part).await;
        assert_error(&r, StatusCode::RANGE_NOT_SATISFIABLE, "BLOB_UPLOAD_INVALID");
        assert_eq!(r.header("range"), Some("0-4"));
        assert_eq!(r.header("location"), Some(session.as_str()));
    }
    let r = reg.get(&session).await;
    assert_eq!((r.status, r.header("range")), (StatusCode::NO_CONTENT, Some("0-4")));

    let r = patch(&reg, &session, Some((5, 9)), &data[5..10]).await;
    assert_eq!((r.status, r.header("range")), (StatusCode::ACCEPTED, Some("0-9")));
    // The final chunk rides on the PUT.
    let r = reg
        .call(
            Method::PUT,
            &format!("{session}?digest={digest}"),
            &[("content-range", "10-14"), ("content-length", "5")],
            Bytes::copy_from_slice(&data[10..]),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.header("docker-content-digest"), Some(digest.to_string().as_str()));
    assert_eq!(&reg.get(&format!("/v2/chunks/blobs/{digest}")).await.body[..], &data[..]);
    assert_error(&reg.get(&session).await, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test]
async fn streamed_patch_then_put_without_body() {
    let reg = TestRegistry::new().await;
    let data = bytes(2_500_000, 11);
    let digest = Digest::sha256_of(&data);
    let session = start_upload(&reg, "stream").await;
    let chunks: Vec<Result<Bytes, std::io::Error>> = data.chunks(64 * 1024).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    let body = Body::from_stream(futures::stream::iter(chunks));
    let r = reg.call(Method::PATCH, &session, &[], body).await;
    assert_eq!((r.status, r.header("range")), (StatusCode::ACCEPTED, Some("0-2499999")));
    let r = reg.call(Method::PUT, &format!("{}?digest={digest}", location(&r)), &[], Body::empty()).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(reg.get(&format!("/v2/stream/blobs/{digest}")).await.body.len(), data.len());
}

#[tokio::test]
async fn hostile_uploads_leave_nothing_partial() {
    let reg = TestRegistry::new().await;
    let data = bytes(10_000, 5);
    let digest = Digest::sha256_of(&data);
    let files_before = blob_files(&reg).await;

    // Digest mismatch on a monolithic upload.
    let wrong = Digest::sha256_of(b"something else");
    let r = reg.call(Method::POST, &format!("/v2/h/blobs/uploads/?digest={wrong}"), &[], data.clone()).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "DIGEST_INVALID");
    assert_eq!(reg.head(&format!("/v2/h/blobs/{wrong}")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(reg.head(&format!("/v2/h/blobs/{digest}")).await.status, StatusCode::NOT_FOUND);

    // Malformed and unsupported digests.
    for d in ["sha256:abc", "nope", "md5:d41d8cd98f00b204e9800998ecf8427e", "sha256:"] {
        let r = reg.call(Method::POST, &format!("/v2/h/blobs/uploads/?digest={d}"), &[], data.clone()).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "DIGEST_INVALID");
    }

    // A truncated body: Content-Length promises more than arrives.
    let session = start_upload(&reg, "h").await;
    let r = reg
        .call(Method::PATCH, &session, &[("content-length", "20000")], Bytes::copy_from_slice(&data))
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "SIZE_INVALID");
    assert_eq!(reg.get(&session).await.header("range"), Some("0-0"), "nothing counted");

    // A body that breaks half way (the client went away).
    let broken = Body::from_stream(futures::stream::iter(vec![
        Ok(Bytes::copy_from_slice(&data[..4000])),
        Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset")),
    ]));
    let r = reg.call(Method::PATCH, &session, &[], broken).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "BLOB_UPLOAD_INVALID");
    assert_eq!(reg.get(&session).await.header("range"), Some("0-0"), "half a chunk is not kept");

    // Content-Range and Content-Length that disagree; a malformed Content-Range.
    let r = reg
        .call(Method::PATCH, &session, &[("content-range", "0-99"), ("content-length", "5")], Bytes::from_static(b"12345"))
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "SIZE_INVALID");
    let r = reg.call(Method::PATCH, &session, &[("content-range", "zero-four")], Bytes::from_static(b"12345")).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "BLOB_UPLOAD_INVALID");
    let r = reg.call(Method::PATCH, &session, &[("content-range", "9-3")], Bytes::from_static(b"12345")).await;
    assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE);

    // After all that the session still works and yields exactly the right bytes.
    let r = patch(&reg, &session, Some((0, 9999)), &data).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let r = reg.call(Method::PUT, &format!("{session}?digest={wrong}"), &[], Body::empty()).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "DIGEST_INVALID");
    assert_error(&reg.get(&session).await, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN");
    assert_eq!(blob_files(&reg).await, files_before, "no blob file was written by any failure");

    // PUT without ?digest=.
    let session = start_upload(&reg, "h").await;
    assert_error(&reg.call(Method::PUT, &session, &[], Body::empty()).await, StatusCode::BAD_REQUEST, "DIGEST_INVALID");
    // Sessions are per repository, and unknown or malformed ids are unknown.
    let id = session.rsplit('/').next().unwrap();
    for path in [format!("/v2/elsewhere/blobs/uploads/{id}"), "/v2/h/blobs/uploads/00000000-0000-0000-0000-000000000000".into(), "/v2/h/blobs/uploads/..%2F..".into()] {
        assert_error(&reg.get(&path).await, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN");
        assert_error(&patch(&reg, &path, None, b"x").await, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN");
        let put = reg.call(Method::PUT, &format!("{path}?digest={digest}"), &[], Body::empty()).await;
        assert_error(&put, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN");
        assert_error(&reg.delete(&path).await, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN");
    }
    // DELETE of a session.
    assert_eq!(reg.delete(&session).await.status, StatusCode::NO_CONTENT);
    assert_error(&reg.get(&session).await, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test]
async fn a_second_writer_on_a_busy_session_gets_416() {
    let reg = TestRegistry::new().await;
    let session = start_upload(&reg, "busy").await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
    // Over the store's 1 MiB write batch, so it reaches the part file at once.
    let first_chunk = Bytes::from(vec![7u8; (1 << 20) + 1]);
    tx.send(Ok(first_chunk.clone())).await.unwrap();
    let slow = Body::from_stream(tokio_stream(rx));
    let first = {
        let router = reg.router.clone();
        let request = http::Request::builder().method(Method::PATCH).uri(&session).body(slow).unwrap();
        tokio::spawn(async move { tower::ServiceExt::oneshot(router, request).await.unwrap().status() })
    };
    // Wait until the first PATCH holds the session (its first chunk reached the store).
    let part = reg.dir.path().join("uploads").join(session.rsplit('/').next().unwrap());
    let holding = async {
        while std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0) == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(20), holding).await.expect("first PATCH reached the store");
    let second = patch(&reg, &session, None, b"second").await;
    assert_error(&second, StatusCode::RANGE_NOT_SATISFIABLE, "BLOB_UPLOAD_INVALID");
    drop(tx);
    assert_eq!(first.await.unwrap(), StatusCode::ACCEPTED);
    let want = format!("0-{}", first_chunk.len() - 1);
    assert_eq!(reg.get(&session).await.header("range"), Some(want.as_str()), "only the first writer's bytes count");
}

fn tokio_stream(
    mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test]
async fn cross_repository_mount() {
    let reg = TestRegistry::new().await;
    let digest = reg.push_blob("src/repo", b"shared layer").await;
    let r = reg.call(Method::POST, &format!("/v2/dst/blobs/uploads/?mount={digest}&from=src/repo"), &[], Body::empty()).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.header("location"), Some(format!("/v2/dst/blobs/{digest}").as_str()));
    assert_eq!(r.header("docker-content-digest"), Some(digest.to_string().as_str()));
    assert_eq!(&reg.get(&format!("/v2/dst/blobs/{digest}")).await.body[..], b"shared layer");

    // Not in `from` (or no `from`): a new session instead.
    let missing = Digest::sha256_of(b"absent");
    for q in [format!("mount={missing}&from=src/repo"), format!("mount={digest}&from=empty/repo"), format!("mount={digest}")] {
        let r = reg.call(Method::POST, &format!("/v2/third/blobs/uploads/?{q}"), &[], Body::empty()).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{q}");
        assert!(location(&r).starts_with("/v2/third/blobs/uploads/"));
    }
    assert_eq!(reg.head(&format!("/v2/third/blobs/{digest}")).await.status, StatusCode::NOT_FOUND);
    let r = reg.call(Method::POST, &format!("/v2/x/blobs/uploads/?mount={digest}&from=Bad//Name"), &[], Body::empty()).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "NAME_INVALID");
    let r = reg.call(Method::POST, "/v2/x/blobs/uploads/?mount=sha256:zz&from=src/repo", &[], Body::empty()).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "DIGEST_INVALID");
}

#[tokio::test]
async fn manifests_by_tag_and_digest_exactly_as_sent() {
    let reg = TestRegistry::new().await;
    let image = ImageBuilder::new(1).layer(2, 1000).build();
    // Unknown fields and unusual formatting must survive: the digest is of these bytes.
    let mut raw: serde_json::Value = serde_json::from_slice(&image.manifest).unwrap();
    raw["x-extension"] = json!({"kept": true});
    let body = Bytes::from(format!("{}\n\n", serde_json::to_string_pretty(&raw).unwrap()));
    let digest = Digest::sha256_of(&body);
    for blob in image.blobs() {
        reg.push_blob("m/app", &blob.bytes).await;
    }
    let r = reg.put_manifest("m/app", "v1", mt::OCI_MANIFEST, body.clone()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.header("location"), Some(format!("/v2/m/app/manifests/{digest}").as_str()));
    assert_eq!(r.header("docker-content-digest"), Some(digest.to_string().as_str()));
    assert_eq!(r.header("oci-subject"), None);

    for reference in ["v1".to_owned(), digest.to_string()] {
        let path = format!("/v2/m/app/manifests/{reference}");
        let get = reg.get(&path).await;
        assert_eq!(get.status, StatusCode::OK);
        assert_eq!(get.header("content-type"), Some(mt::OCI_MANIFEST));
        assert_eq!(get.header("docker-content-digest"), Some(digest.to_string().as_str()));
        assert_eq!(get.header("content-length"), Some(body.len().to_string().as_str()));
        assert_eq!(get.body, body);
        let head = reg.head(&path).await;
        assert_eq!(head.status, StatusCode::OK);
        assert_eq!(head.header("content-length"), Some(body.len().to_string().as_str()));
        assert_eq!(head.header("docker-content-digest"), Some(digest.to_string().as_str()));
        assert!(head.body.is_empty());
        let etag = get.header("etag").unwrap().to_owned();
        let r = reg.call(Method::GET, &path, &[("if-none-match", &etag)], Body::empty()).await;
        assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    }

    // PUT by digest: must be the digest of the body.
    let other = ImageBuilder::new(2).layer(1, 10).build();
    for blob in other.blobs() {
        reg.push_blob("m/app", &blob.bytes).await;
    }
    let r = reg.put_manifest("m/app", &other.digest.to_string(), mt::OCI_MANIFEST, other.manifest.clone()).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = reg.put_manifest("m/app", &digest.to_string(), mt::OCI_MANIFEST, other.manifest.clone()).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "DIGEST_INVALID");

    // Re-pointing a tag is seen at once by readers (the cache is invalidated on write).
    assert_eq!(reg.get("/v2/m/app/manifests/v1").await.header("docker-content-digest"), Some(digest.to_string().as_str()));
    let r = reg.put_manifest("m/app", "v1", mt::OCI_MANIFEST, other.manifest.clone()).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(reg.get("/v2/m/app/manifests/v1").await.body, other.manifest);

    assert_error(&reg.get("/v2/m/app/manifests/nope").await, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN");
    assert_error(&reg.get("/v2/other/manifests/v1").await, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN");
    assert_eq!(reg.head("/v2/m/app/manifests/nope").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn docker_schema2_and_indexes_keep_their_media_types() {
    let reg = TestRegistry::new().await;
    let docker = ImageBuilder::new(5).layer(1, 100).docker().build();
    assert_eq!(reg.push_image("d", &docker, "v2s2").await.status, StatusCode::CREATED);
    assert_eq!(reg.get("/v2/d/manifests/v2s2").await.header("content-type"), Some(mt::DOCKER_MANIFEST));

    let arm = ImageBuilder::new(6).layer(1, 100).docker().arch("arm64").build();
    let list = Index::new(vec![docker.clone(), arm.clone()]);
    // A child is missing: refused, nothing stored.
    let r = reg.put_manifest("d", "list", &list.media_type, list.manifest.clone()).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN");
    assert_error(&reg.get("/v2/d/manifests/list").await, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN");
    assert_eq!(reg.push_image("d", &arm, &arm.digest.to_string()).await.status, StatusCode::CREATED);
    let r = reg.put_manifest("d", "list", &list.media_type, list.manifest.clone()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let get = reg.get("/v2/d/manifests/list").await;
    assert_eq!((get.header("content-type"), get.body.clone()), (Some(mt::DOCKER_MANIFEST_LIST), list.manifest.clone()));

    // A Windows-style foreign layer with `urls` is not distributed by registries, so it need not
    // be pushed; the same media type without `urls` must be present.
    let config = reg.push_blob("d", b"{\"os\":\"windows\"}").await;
    let foreign = |urls: bool| {
        let mut layer = json!({
            "mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
            "digest": Digest::sha256_of(b"windows base layer").to_string(),
            "size": 18,
        });
        if urls {
            layer["urls"] = json!(["https://example.invalid/layer"]);
        }
        Bytes::from(json!({
            "schemaVersion": 2, "mediaType": mt::DOCKER_MANIFEST,
            "config": { "mediaType": "application/vnd.docker.container.image.v1+json", "digest": config.to_string(), "size": 16 },
            "layers": [layer],
        }).to_string())
    };
    assert_eq!(reg.put_manifest("d", "win", mt::DOCKER_MANIFEST, foreign(true)).await.status, StatusCode::CREATED);
    let r = reg.put_manifest("d", "win2", mt::DOCKER_MANIFEST, foreign(false)).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN");

    let oci_index = Index::new(vec![ImageBuilder::new(7).layer(1, 10).build()]);
    reg.push_image("o", &oci_index.images[0], "child").await;
    assert_eq!(reg.put_manifest("o", "idx", mt::OCI_INDEX, oci_index.manifest.clone()).await.status, StatusCode::CREATED);
    assert_eq!(reg.get("/v2/o/manifests/idx").await.header("content-type"), Some(mt::OCI_INDEX));
}

#[tokio::test]
async fn invalid_manifests_are_refused_with_the_right_code() {
    let reg = TestRegistry::with_config(registry::RegistryConfig { max_manifest_bytes: 2048, ..Default::default() }).await;
    let image = ImageBuilder::new(8).layer(1, 100).build();

    // A layer that was never pushed.
    reg.push_blob("bad", &image.config.bytes).await;
    let r = reg.put_manifest("bad", "v1", mt::OCI_MANIFEST, image.manifest.clone()).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN");
    assert_error(&reg.get("/v2/bad/manifests/v1").await, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN");
    assert_error(&reg.get(&format!("/v2/bad/manifests/{}", image.digest)).await, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN");
    // A declared size that is not the blob's.
    reg.push_blob("bad", &image.layers[0].bytes).await;
    let lied = String::from_utf8(image.manifest.to_vec()).unwrap().replace(
        &format!("\"size\": {}", image.layers[0].bytes.len()),
        &format!("\"size\": {}", image.layers[0].bytes.len() + 1),
    );
    let r = reg.put_manifest("bad", "v1", mt::OCI_MANIFEST, Bytes::from(lied)).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "MANIFEST_INVALID");

    let cases: Vec<(&str, Bytes, StatusCode, &str)> = vec![
        (mt::OCI_MANIFEST, Bytes::from_static(b"{not json"), StatusCode::BAD_REQUEST, "MANIFEST_INVALID"),
        (mt::DOCKER_MANIFEST, image.manifest.clone(), StatusCode::BAD_REQUEST, "MANIFEST_INVALID"),
        ("text/plain", Bytes::from_static(br#"{"schemaVersion":2}"#), StatusCode::BAD_REQUEST, "MANIFEST_INVALID"),
        (
            mt::DOCKER_SCHEMA1_SIGNED,
            Bytes::from_static(br#"{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[]}"#),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED",
        ),
        (mt::OCI_MANIFEST, Bytes::from(vec![b' '; 2049]), StatusCode::PAYLOAD_TOO_LARGE, "MANIFEST_INVALID"),
    ];
    for (ct, body, status, code) in cases {
        let r = reg.put_manifest("bad", "v1", ct, body).await;
        assert_error(&r, status, code);
    }
    // Oversize without a Content-Length (streamed): still refused.
    let stream = Body::from_stream(futures::stream::iter((0..10).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b' '; 500])))));
    let r = reg.call(Method::PUT, "/v2/bad/manifests/v1", &[("content-type", mt::OCI_MANIFEST)], stream).await;
    assert_error(&r, StatusCode::PAYLOAD_TOO_LARGE, "MANIFEST_INVALID");
    assert_error(&reg.get("/v2/bad/manifests/v1").await, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN");
    let tags = reg.get("/v2/bad/tags/list").await;
    assert_eq!(tags.json()["tags"], json!([]), "no failed push left a tag");
    let manifest_bytes = test_support::stored_blob_path(reg.dir.path(), &image.digest);
    assert!(!manifest_bytes.exists(), "a refused manifest leaves no bytes behind");
}

#[tokio::test]
async fn artifacts_subjects_and_referrers() {
    let reg = TestRegistry::new().await;
    let image = ImageBuilder::new(9).layer(1, 100).build();
    reg.push_image("art", &image, "v1").await;
    let empty = reg.push_blob("art", b"{}").await;
    let payload = reg.push_blob("art", b"sbom bytes").await;
    let artifact = |artifact_type: &str, n: u32| {
        Bytes::from(
            json!({
                "schemaVersion": 2,
                "mediaType": mt::OCI_MANIFEST,
                "artifactType": artifact_type,
                "config": { "mediaType": mt::OCI_EMPTY, "digest": empty.to_string(), "size": 2 },
                "layers": [{ "mediaType": "application/octet-stream", "digest": payload.to_string(), "size": 10 }],
                "subject": { "mediaType": mt::OCI_MANIFEST, "digest": image.digest.to_string(), "size": image.manifest.len() },
                "annotations": { "n": n.to_string() },
            })
            .to_string(),
        )
    };
    let sbom = artifact("application/vnd.example.sbom", 1);
    let sig = artifact("application/vnd.example.sig+json", 2);
    for a in [&sbom, &sig] {
        let d = Digest::sha256_of(a);
        let r = reg.put_manifest("art", &d.to_string(), mt::OCI_MANIFEST, a.clone()).await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        assert_eq!(r.header("oci-subject"), Some(image.digest.to_string().as_str()));
    }
    // An image manifest without artifactType is listed under its config media type.
    let plain = ImageBuilder::new(10).layer(1, 10).build();
    let mut with_subject: serde_json::Value = serde_json::from_slice(&plain.manifest).unwrap();
    with_subject["subject"] = json!({ "mediaType": mt::OCI_MANIFEST, "digest": image.digest.to_string(), "size": image.manifest.len() });
    let with_subject = Bytes::from(with_subject.to_string());
    for b in plain.blobs() {
        reg.push_blob("art", &b.bytes).await;
    }
    assert_eq!(reg.put_manifest("art", "plain", mt::OCI_MANIFEST, with_subject.clone()).await.status, StatusCode::CREATED);

    let all = reg.get(&format!("/v2/art/referrers/{}", image.digest)).await;
    assert_eq!(all.status, StatusCode::OK);
    assert_eq!(all.header("content-type"), Some(mt::OCI_INDEX));
    assert_eq!(all.header("oci-filters-applied"), None);
    let index = all.json();
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(index["mediaType"], mt::OCI_INDEX);
    let listed = index["manifests"].as_array().unwrap();
    assert_eq!(listed.len(), 3);
    let by_digest = |b: &Bytes| listed.iter().find(|d| d["digest"] == Digest::sha256_of(b).to_string()).unwrap().clone();
    let d = by_digest(&sbom);
    assert_eq!(d["artifactType"], "application/vnd.example.sbom");
    assert_eq!(d["mediaType"], mt::OCI_MANIFEST);
    assert_eq!(d["size"], sbom.len());
    assert_eq!(d["annotations"], json!({ "n": "1" }));
    assert_eq!(by_digest(&with_subject)["artifactType"], OCI_CONFIG);

    // The filter's `+` encoded as a client library does, and left bare as in a shell's curl.
    for encoded in ["application/vnd.example.sig%2Bjson", "application/vnd.example.sig+json"] {
        let filtered = reg.get(&format!("/v2/art/referrers/{}?artifactType={encoded}", image.digest)).await;
        assert_eq!(filtered.header("oci-filters-applied"), Some("artifactType"));
        let listed = filtered.json()["manifests"].as_array().unwrap().clone();
        assert_eq!(listed.len(), 1, "{encoded}");
        assert_eq!(listed[0]["digest"], Digest::sha256_of(&sig).to_string());
        assert_eq!(listed[0]["artifactType"], "application/vnd.example.sig+json");
    }
    let none = reg.get(&format!("/v2/art/referrers/{}?artifactType=application/vnd.example.sig", image.digest)).await;
    assert_eq!(none.header("oci-filters-applied"), Some("artifactType"));
    assert_eq!(none.json()["manifests"], json!([]), "the filter matches the whole type, not a prefix");

    let unknown = reg.get(&format!("/v2/art/referrers/{}", Digest::sha256_of(b"nothing"))).await;
    assert_eq!(unknown.status, StatusCode::OK);
    assert_eq!(unknown.json()["manifests"], json!([]));
    assert_error(&reg.get("/v2/art/referrers/sha256:nothex").await, StatusCode::BAD_REQUEST, "DIGEST_INVALID");

    // Deleting a referrer removes it from the listing.
    assert_eq!(reg.delete(&format!("/v2/art/manifests/{}", Digest::sha256_of(&sig))).await.status, StatusCode::ACCEPTED);
    let after = reg.get(&format!("/v2/art/referrers/{}", image.digest)).await;
    assert_eq!(after.json()["manifests"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn tags_and_catalog_page_with_links() {
    let reg = TestRegistry::new().await;
    let image = ImageBuilder::new(11).layer(1, 10).build();
    for tag in ["b", "a", "c", "10", "2"] {
        assert_eq!(reg.push_image("p/one", &image, tag).await.status, StatusCode::CREATED);
    }
    let all = reg.get("/v2/p/one/tags/list").await;
    assert_eq!(all.json(), json!({ "name": "p/one", "tags": ["10", "2", "a", "b", "c"] }));
    assert_eq!(all.header("link"), None);

    let first = reg.get("/v2/p/one/tags/list?n=2").await;
    assert_eq!(first.json()["tags"], json!(["10", "2"]));
    let link = first.header("link").unwrap();
    assert_eq!(link, "</v2/p/one/tags/list?n=2&last=2>; rel=\"next\"");
    let next = reg.get("/v2/p/one/tags/list?n=2&last=2").await;
    assert_eq!(next.json()["tags"], json!(["a", "b"]));
    let last = reg.get("/v2/p/one/tags/list?n=2&last=b").await;
    assert_eq!(last.json()["tags"], json!(["c"]));
    assert_eq!(last.header("link"), None);
    assert_eq!(reg.get("/v2/p/one/tags/list?n=0").await.json()["tags"], json!([]));
    assert_error(&reg.get("/v2/p/one/tags/list?n=many").await, StatusCode::BAD_REQUEST, "UNSUPPORTED");
    assert_error(&reg.get("/v2/p/none/tags/list").await, StatusCode::NOT_FOUND, "NAME_UNKNOWN");

    for repo in ["p/two", "a/first", "z/last"] {
        reg.push_image(repo, &image, "t").await;
    }
    let catalog = reg.get("/v2/_catalog").await;
    assert_eq!(catalog.json(), json!({ "repositories": ["a/first", "p/one", "p/two", "z/last"] }));
    let page = reg.get("/v2/_catalog?n=3").await;
    assert_eq!(page.json()["repositories"], json!(["a/first", "p/one", "p/two"]));
    assert_eq!(page.header("link"), Some("</v2/_catalog?n=3&last=p%2Ftwo>; rel=\"next\""));
    let rest = reg.get("/v2/_catalog?n=3&last=p%2Ftwo").await;
    assert_eq!(rest.json()["repositories"], json!(["z/last"]));
    assert_eq!(rest.header("link"), None);
}

#[tokio::test]
async fn deletes_of_tags_manifests_and_blobs() {
    let reg = TestRegistry::new().await;
    let image = ImageBuilder::new(12).layer(1, 10).build();
    reg.push_image("del", &image, "v1").await;
    reg.push_image("del", &image, "v2").await;

    assert_eq!(reg.delete("/v2/del/manifests/v1").await.status, StatusCode::ACCEPTED);
    assert_error(&reg.get("/v2/del/manifests/v1").await, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN");
    assert_eq!(reg.get("/v2/del/manifests/v2").await.status, StatusCode::OK, "deleting a tag keeps the manifest");
    assert_error(&reg.delete("/v2/del/manifests/v1").await, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN");

    let by_digest = format!("/v2/del/manifests/{}", image.digest);
    assert_eq!(reg.delete(&by_digest).await.status, StatusCode::ACCEPTED);
    assert_error(&reg.get(&by_digest).await, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN");
    assert_error(&reg.get("/v2/del/manifests/v2").await, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN");
    assert_error(&reg.delete(&by_digest).await, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN");

    let layer = format!("/v2/del/blobs/{}", image.layers[0].digest);
    assert_eq!(reg.delete(&layer).await.status, StatusCode::ACCEPTED);
    assert_error(&reg.get(&layer).await, StatusCode::NOT_FOUND, "BLOB_UNKNOWN");
    assert_error(&reg.delete(&layer).await, StatusCode::NOT_FOUND, "BLOB_UNKNOWN");
}

#[tokio::test]
async fn immutable_tags_keep_their_manifest_through_pushes_deletes_and_retention() {
    let rule = |repos: &[&str], tags: &[&str]| registry::ImmutableRule {
        repositories: repos.iter().map(|g| g.parse().unwrap()).collect(),
        tags: tags.iter().map(|g| g.parse().unwrap()).collect(),
    };
    let immutable_tags = registry::ImmutableTags { rules: vec![rule(&["prod/**"], &["v*"]), rule(&["base/*"], &[])] };
    let reg = TestRegistry::with_config(registry::RegistryConfig { immutable_tags, ..Default::default() }).await;
    let (a, b) = (ImageBuilder::new(31).layer(1, 10).build(), ImageBuilder::new(32).layer(1, 10).build());
    let digest_of = async |reference: &str| {
        let r = reg.head(&format!("/v2/prod/app/manifests/{reference}")).await;
        r.header("docker-content-digest").map(str::to_owned)
    };
    assert_eq!(reg.push_image("prod/app", &a, "v1").await.status, StatusCode::CREATED);
    assert_eq!(reg.push_image("prod/app", &a, "v1").await.status, StatusCode::CREATED, "the same push again");

    // Another image under v1: refused before its manifest is stored, and v1 stays.
    let refused = reg.push_image("prod/app", &b, "v1").await;
    assert_error(&refused, StatusCode::FORBIDDEN, "DENIED");
    let message = refused.json()["errors"][0]["message"].as_str().unwrap().to_owned();
    assert_eq!(message, format!("tag v1 is immutable here: it stays on {}", a.digest));
    assert_eq!(digest_of("v1").await, Some(a.digest.to_string()));
    assert_error(&reg.get(&format!("/v2/prod/app/manifests/{}", b.digest)).await, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN");
    assert!(!test_support::stored_blob_path(reg.dir.path(), &b.digest).exists(), "the refused manifest's bytes are not kept");
    // Tags no rule names move freely, here and in other repositories.
    for (repo, tag) in [("prod/app", "latest"), ("prod/app", "rc-1"), ("dev/app", "v1")] {
        assert_eq!(reg.push_image(repo, &a, tag).await.status, StatusCode::CREATED);
        assert_eq!(reg.push_image(repo, &b, tag).await.status, StatusCode::CREATED, "{repo}:{tag} moves");
    }
    assert_eq!(reg.push_image("prod/app", &b, "v2").await.status, StatusCode::CREATED, "a new immutable tag");

    // Neither the tag nor the manifest carrying it can be deleted; a mutable tag can.
    assert_error(&reg.delete("/v2/prod/app/manifests/v1").await, StatusCode::FORBIDDEN, "DENIED");
    assert_error(&reg.delete(&format!("/v2/prod/app/manifests/{}", a.digest)).await, StatusCode::FORBIDDEN, "DENIED");
    assert_error(&reg.delete("/v2/prod/app/manifests/v9").await, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN");
    assert_eq!(digest_of("v1").await, Some(a.digest.to_string()));
    assert_eq!(reg.delete("/v2/prod/app/manifests/latest").await.status, StatusCode::ACCEPTED);
    assert_eq!(reg.delete(&format!("/v2/dev/app/manifests/{}", b.digest)).await.status, StatusCode::ACCEPTED);

    // cosign adds a signature by moving its `.sig` tag, which no rule holds.
    let sig_tag = format!("{}.sig", a.digest.to_string().replace(':', "-"));
    assert_eq!(reg.push_image("base/img", &a, "latest").await.status, StatusCode::CREATED);
    assert_error(&reg.push_image("base/img", &b, "latest").await, StatusCode::FORBIDDEN, "DENIED");
    assert_eq!(reg.push_image("base/img", &a, &sig_tag).await.status, StatusCode::CREATED);
    assert_eq!(reg.push_image("base/img", &b, &sig_tag).await.status, StatusCode::CREATED);

    // Retention keeps them even when no rule of its own does.
    let retention = registry::Retention {
        policies: vec![registry::RetentionPolicy {
            repositories: vec!["prod/**".parse().unwrap()],
            keep_tags: vec![registry::KeepTags { patterns: vec!["nothing-*".parse().unwrap()], ..Default::default() }],
            delete_untagged_after: None,
        }],
        dry_run: false,
    };
    let expired = reg.registry.expire(&retention).await.unwrap();
    assert_eq!(expired.tags, vec![("prod/app".parse().unwrap(), "rc-1".parse().unwrap())]);
    let tags = reg.get("/v2/prod/app/tags/list").await.json();
    assert_eq!(tags["tags"], json!(["v1", "v2"]));
}

#[tokio::test]
async fn malformed_paths_are_4xx_never_5xx() {
    let reg = TestRegistry::new().await;
    let cases: &[(Method, &str, StatusCode, &str)] = &[
        (Method::GET, "/v2/Upper/tags/list", StatusCode::BAD_REQUEST, "NAME_INVALID"),
        (Method::GET, "/v2/a..b/manifests/latest", StatusCode::BAD_REQUEST, "NAME_INVALID"),
        (Method::GET, "/v2/-a/blobs/uploads/x", StatusCode::BAD_REQUEST, "NAME_INVALID"),
        (Method::GET, "/v2/a/blobs/sha256:1234", StatusCode::BAD_REQUEST, "DIGEST_INVALID"),
        (Method::HEAD, "/v2/a/blobs/sha256:1234", StatusCode::BAD_REQUEST, ""),
        (Method::DELETE, "/v2/a/blobs/garbage", StatusCode::BAD_REQUEST, "DIGEST_INVALID"),
        (Method::GET, "/v2/a/manifests/sha256:XYZ", StatusCode::BAD_REQUEST, "DIGEST_INVALID"),
        (Method::PUT, "/v2/a/manifests/sha999:abcd", StatusCode::BAD_REQUEST, "DIGEST_INVALID"),
        (Method::GET, "/v2/a/manifests/.hidden", StatusCode::BAD_REQUEST, "MANIFEST_INVALID"),
        (Method::GET, "/v2/a/nothing/here", StatusCode::NOT_FOUND, "NAME_UNKNOWN"),
        (Method::POST, "/v2/a/manifests/latest", StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED"),
        (Method::PATCH, "/v2/a/blobs/uploads/", StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED"),
    ];
    for (m, path, status, code) in cases {
        let r = reg.call(m.clone(), path, &[], Body::empty()).await;
        assert_eq!(r.status, *status, "{m} {path}: {:?}", r.body);
        if !code.is_empty() {
            assert_eq!(r.error_code(), *code, "{m} {path}");
        }
    }
    let long = format!("/v2/{}/tags/list", "a".repeat(256));
    assert_error(&reg.get(&long).await, StatusCode::BAD_REQUEST, "NAME_INVALID");
}

#[tokio::test]
async fn read_only_serves_pulls_and_refuses_every_write() {
    let reg = TestRegistry::new().await;
    let image = ImageBuilder::new(51).layer(2, 100).build();
    assert_eq!(reg.push_image("ro/app", &image, "v1").await.status, StatusCode::CREATED);
    let session = start_upload(&reg, "ro/app").await;
    assert_eq!(patch(&reg, &session, Some((0, 9)), &bytes(10, 3)).await.status, StatusCode::ACCEPTED);

    // The same directory, read-only.
    let TestRegistry { dir, router, registry, .. } = reg;
    drop((router, registry));
    let reg = TestRegistry::open(dir, registry::RegistryConfig { read_only: true, ..Default::default() }).await;
    let files = blob_files(&reg).await;
    assert_eq!(&reg.get("/v2/ro/app/manifests/v1").await.body[..], &image.manifest[..]);
    assert_eq!(&reg.get(&format!("/v2/ro/app/blobs/{}", image.layers[0].digest)).await.body[..], &image.layers[0].bytes[..]);
    assert_eq!(reg.get("/v2/ro/app/tags/list").await.json()["tags"], json!(["v1"]));
    assert_eq!(reg.get("/v2/_catalog").await.json()["repositories"], json!(["ro/app"]));
    let status = reg.get(&session).await;
    assert_eq!((status.status, status.header("range")), (StatusCode::NO_CONTENT, Some("0-9")), "a session can be asked about");

    let other = ImageBuilder::new(52).layer(1, 100).build();
    let digest = &other.layers[0].digest;
    let writes = [
        (Method::POST, "/v2/ro/app/blobs/uploads/".to_owned()),
        (Method::POST, format!("/v2/ro/app/blobs/uploads/?digest={digest}")),
        (Method::POST, format!("/v2/ro/new/blobs/uploads/?mount={}&from=ro/app", image.layers[0].digest)),
        (Method::PATCH, session.clone()),
        (Method::PUT, format!("{session}?digest={digest}")),
        (Method::DELETE, session.clone()),
        (Method::PUT, "/v2/ro/app/manifests/v2".to_owned()),
        (Method::DELETE, "/v2/ro/app/manifests/v1".to_owned()),
        (Method::DELETE, format!("/v2/ro/app/manifests/{}", image.digest)),
        (Method::DELETE, format!("/v2/ro/app/blobs/{}", image.layers[0].digest)),
        (Method::POST, "/api/v1/waivers".to_owned()),
    ];
    for (method, path) in writes {
        let r = reg.call(method.clone(), &path, &[("content-type", mt::OCI_MANIFEST)], Bytes::from_static(b"{}")).await;
        assert_error(&r, StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED");
        let message = r.json()["errors"][0]["message"].as_str().unwrap().to_owned();
        assert!(message.starts_with("the registry is read-only for maintenance"), "{method} {path}: {message}");
    }
    assert_eq!(blob_files(&reg).await, files);
    assert_eq!(reg.get(&session).await.header("range"), Some("0-9"));
    assert_eq!(reg.get("/v2/ro/app/tags/list").await.json()["tags"], json!(["v1"]));
    assert_error(&reg.get("/v2/ro/new/tags/list").await, StatusCode::NOT_FOUND, "NAME_UNKNOWN");
}

#[tokio::test]
async fn upload_sessions_survive_a_restart_and_are_bounded() {
    let config = registry::RegistryConfig { max_upload_sessions: 2, ..Default::default() };
    let reg = TestRegistry::with_config(config.clone()).await;
    let data = bytes(3_000_000, 13);
    let digest = Digest::sha256_of(&data);
    let session = start_upload(&reg, "restart").await;
    let r = patch(&reg, &session, Some((0, 1_999_999)), &data[..2_000_000]).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);

    // A second session fits, a third does not.
    let other = start_upload(&reg, "restart").await;
    let r = reg.call(Method::POST, "/v2/restart/blobs/uploads/", &[], Body::empty()).await;
    assert_error(&r, StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS");
    assert!(r.header("retry-after").is_some());
    assert_eq!(reg.delete(&other).await.status, StatusCode::NO_CONTENT);

    // Restart: a new registry over the same directory.
    let TestRegistry { dir, router, registry, .. } = reg;
    drop((router, registry));
    let reg = TestRegistry::open(dir, config).await;
    let r = reg.get(&session).await;
    assert_eq!((r.status, r.header("range")), (StatusCode::NO_CONTENT, Some("0-1999999")));
    let r = reg
        .call(
            Method::PUT,
            &format!("{session}?digest={digest}"),
            &[("content-range", "2000000-2999999")],
            Bytes::copy_from_slice(&data[2_000_000..]),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "the hash state resumed: {:?}", r.body);
    assert_eq!(&reg.get(&format!("/v2/restart/blobs/{digest}")).await.body[..], &data[..]);
}

#[tokio::test]
async fn abandoned_sessions_are_purged() {
    let config = registry::RegistryConfig { upload_session_ttl: std::time::Duration::ZERO, ..Default::default() };
    let reg = TestRegistry::with_config(config).await;
    let session = start_upload(&reg, "old").await;
    assert_eq!(patch(&reg, &session, None, b"abandoned").await.status, StatusCode::ACCEPTED);
    let part = reg.dir.path().join("uploads").join(session.rsplit('/').next().unwrap());
    assert!(part.exists());
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    assert_eq!(reg.registry.purge_stale_uploads().await.unwrap(), 1);
    assert_error(&reg.get(&session).await, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN");
    assert!(!part.exists(), "the janitor removes the temporary bytes too");
}

/// The gate's `/api/v1` endpoints answer bad input with a clear error and keep nothing of it.
#[tokio::test]
async fn gate_endpoints_refuse_bad_input_and_keep_nothing() {
    let reg = TestRegistry::new().await;
    let waiver = |body: &str| reg.call(Method::POST, "/api/v1/waivers", &[("content-type", "application/json")], Bytes::copy_from_slice(body.as_bytes()));
    for (body, why) in [
        ("not json", "not JSON"),
        (r#"{"finding": "CVE-1"}"#, "no reason or expiry"),
        (r#"{"finding": "CVE-1", "reason": "r", "expires": "someday"}"#, "an expiry that is not a date"),
        (r#"{"finding": "CVE-1", "reason": "r", "expires": "2099-01-01", "repositories": "Team//**"}"#, "a bad glob"),
        (r#"{"finding": " ", "reason": "r", "expires": "2099-01-01"}"#, "an empty finding"),
        (r#"{"finding": "CVE-1", "reason": "r", "expires": "2099-01-01", "extra": 1}"#, "an unknown field"),
    ] {
        let r = waiver(body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{why}: {:?}", r.body);
        assert!(!r.error_code().is_empty(), "{why}: an error body");
    }
    let r = reg.get("/api/v1/waivers").await;
    assert_eq!(r.json()["waivers"], json!([]), "nothing kept");
    let r = waiver(r#"{"finding": "CVE-1", "reason": "accepted", "expires": "2099-01-01"}"#).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.json()["repositories"], "**");

    assert_eq!(reg.delete("/api/v1/waivers/999").await.status, StatusCode::NOT_FOUND);
    assert_eq!(reg.delete("/api/v1/waivers/x").await.status, StatusCode::BAD_REQUEST);
    assert_eq!(reg.call(Method::PUT, "/api/v1/waivers", &[], Body::empty()).await.status, StatusCode::METHOD_NOT_ALLOWED);
    for (path, status) in [
        ("/api/v1/packages", StatusCode::BAD_REQUEST),
        ("/api/v1/packages?name=x&range=2.0", StatusCode::BAD_REQUEST),
        ("/api/v1/packages?name=x&version=1&range=%3C2", StatusCode::BAD_REQUEST),
        ("/api/v1/images/team/app/sha256:zz/report", StatusCode::BAD_REQUEST),
        ("/api/v1/images/Team/app/sha256:0000000000000000000000000000000000000000000000000000000000000000/report", StatusCode::BAD_REQUEST),
        ("/api/v1/images/team/app/sha256:0000000000000000000000000000000000000000000000000000000000000000/report", StatusCode::NOT_FOUND),
    ] {
        let r = reg.get(path).await;
        assert_eq!(r.status, status, "{path}: {:?}", r.body);
    }
    let r = reg.get("/api/v1/vulnerabilities/CVE-2021-44228/images").await;
    assert_eq!((r.status, r.json()["images"].clone()), (StatusCode::OK, json!([])));
    // An image stored but not inspected yet: its report is not there, said so.
    let image = ImageBuilder::new(7).layer(1, 64).build();
    reg.push_image("team/app", &image, "1").await;
    let r = reg.get(&format!("/api/v1/images/team/app/{}/report", image.digest)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{:?}", r.body);
}

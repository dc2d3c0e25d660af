//! Garbage collection as an operator meets it: `customs gc` on a stopped server's data directory
//! after skopeo deleted an image, and the background pass of a running server.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};
use oci::Digest;
use test_support::{Client, ImageBuilder, ServerProcess, run, stored_blob_path};

fn customs() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_customs"))
}

fn skopeo(args: &[&str]) -> String {
    let mut all = vec!["--insecure-policy"];
    all.extend_from_slice(args);
    run("skopeo", &all)
}

#[test]
fn customs_gc_frees_a_deleted_image_once_the_server_is_stopped() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let src = tmp.path().join("src");
    let kept = ImageBuilder::new(31).layer(2, 20_000).layer(1, 5_000).build();
    let deleted = ImageBuilder::new(32).layer(1, 30_000).build();
    kept.write_layout(&src, "kept").unwrap();
    deleted.write_layout(&src, "deleted").unwrap();

    // Inspection off: its SBOM and report (referrers of each image, collected with a deleted
    // one) would otherwise come in at their own pace; tests in api/tests/gc.rs count those.
    let quiet = [("CUSTOMS_INSPECTION__ENABLED", "false")];
    let server = ServerProcess::start_with(customs(), &data, &quiet).unwrap();
    let host = server.addr.clone();
    for tag in ["kept", "deleted"] {
        let to = format!("docker://{host}/team/app:{tag}");
        skopeo(&["copy", "--dest-tls-verify=false", &format!("oci:{}:{tag}", src.display()), &to]);
    }
    skopeo(&["delete", "--tls-verify=false", &format!("docker://{host}/team/app@{}", deleted.digest)]);
    let deleted_files: Vec<PathBuf> =
        std::iter::once(&deleted.digest).chain(deleted.blobs().map(|b| &b.digest)).map(|d| stored_blob_path(&data, d)).collect();
    assert!(deleted_files.iter().all(|f| f.exists()), "a delete takes records away, not bytes");

    // Not while a server uses the directory: its own passes do the work there.
    let out = Command::new(customs()).args(["gc", "--data"]).arg(&data).stdin(Stdio::null()).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another customs server") && err.contains("stop it"), "{err}");
    assert!(deleted_files.iter().all(|f| f.exists()));
    assert!(server.stop());

    let out = run(customs().to_str().unwrap(), &["gc", "--data", data.to_str().unwrap(), "--delay-secs", "0"]);
    let bytes = deleted.manifest.len() + deleted.blobs().map(|b| b.bytes.len()).sum::<usize>();
    assert_eq!(
        out.trim(),
        format!(
            "deleted 0 referrers of deleted manifests; unlinked 2 layers no manifest referenced; \
             deleted 3 blobs ({bytes} bytes) no record needed"
        )
    );
    for f in &deleted_files {
        assert!(!f.exists(), "{} freed", f.display());
    }

    // The image still tagged comes back whole.
    let server = ServerProcess::start(customs(), &data).unwrap();
    let out_dir = tmp.path().join("out");
    let from = format!("docker://{}/team/app:kept", server.addr);
    skopeo(&["copy", "--src-tls-verify=false", &from, &format!("oci:{}:kept", out_dir.display())]);
    for blob in kept.blobs() {
        assert_eq!(std::fs::read(out_dir.join("blobs/sha256").join(blob.digest.hex())).unwrap(), blob.bytes);
    }
    assert!(server.stop());
}

#[tokio::test]
async fn a_running_server_collects_in_the_background() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let image = ImageBuilder::new(33).layer(1, 4_000).build();
    // The image is pushed before collection starts, so no pass can fall between its layers and
    // its manifest (a pass with no delay would unlink them; the manifest would then be refused).
    let server = ServerProcess::start_with(customs(), &data, &[("CUSTOMS_GC__ENABLED", "false")]).unwrap();
    let client = Client::new(&server.url());
    for blob in image.blobs() {
        let path = format!("/v2/keep/blobs/uploads/?digest={}", blob.digest);
        assert_eq!(client.call(Method::POST, &path, &[], blob.bytes.clone()).await.unwrap().status, StatusCode::CREATED);
    }
    let put = client
        .call(Method::PUT, "/v2/keep/manifests/v1", &[("content-type", image.media_type.as_str())], image.manifest.clone())
        .await
        .unwrap();
    assert_eq!(put.status, StatusCode::CREATED);
    assert!(server.stop());

    let gc = [("CUSTOMS_GC__INTERVAL_SECS", "1"), ("CUSTOMS_GC__DELAY_SECS", "0")];
    let server = ServerProcess::start_with(customs(), &data, &gc).unwrap();
    let client = Client::new(&server.url());
    let abandoned = Bytes::from_static(b"a layer whose manifest never came");
    let digest = Digest::sha256_of(&abandoned);
    let path = format!("/v2/abandoned/blobs/uploads/?digest={digest}");
    assert_eq!(client.call(Method::POST, &path, &[], abandoned).await.unwrap().status, StatusCode::CREATED);
    let deadline = Instant::now() + Duration::from_secs(30);
    while stored_blob_path(&data, &digest).exists() {
        assert!(Instant::now() < deadline, "no pass freed the abandoned layer in 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let head = client.call(Method::HEAD, &format!("/v2/abandoned/blobs/{digest}"), &[], Bytes::new()).await.unwrap();
    assert_eq!(head.status, StatusCode::NOT_FOUND);
    for blob in image.blobs() {
        assert!(stored_blob_path(&data, &blob.digest).exists(), "a referenced blob is kept");
        let r = client.call(Method::GET, &format!("/v2/keep/blobs/{}", blob.digest), &[], Bytes::new()).await.unwrap();
        assert_eq!(r.body, blob.bytes);
    }
    assert!(server.stop());
}

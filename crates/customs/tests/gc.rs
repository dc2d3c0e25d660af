//! Garbage collection and retention as an operator meets them: `customs gc` on a stopped
//! server's data directory after skopeo deleted an image or a retention policy expired one, and
//! the background pass of a running server.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};
use oci::Digest;
use test_support::{Client, ImageBuilder, ServerProcess, metric, run, skopeo, stored_blob_path};

fn customs() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_customs"))
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
    Client::new(&server.url()).push_image("keep", &image, "v1").await;
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
    // Counted for /metrics once the pass ends.
    loop {
        let metrics = client.metrics().await;
        if metric(&metrics, "customs_gc_passes_total").unwrap() >= 1.0 {
            assert_eq!(metric(&metrics, "customs_gc_blobs_deleted_total"), Some(1.0), "{metrics}");
            assert_eq!(metric(&metrics, "customs_gc_bytes_deleted_total"), Some(33.0));
            assert!(metric(&metrics, "customs_gc_last_pass_timestamp_seconds").unwrap() > 1.7e9);
            break;
        }
        assert!(Instant::now() < deadline, "no pass ended in 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for blob in image.blobs() {
        assert!(stored_blob_path(&data, &blob.digest).exists(), "a referenced blob is kept");
        let r = client.call(Method::GET, &format!("/v2/keep/blobs/{}", blob.digest), &[], Bytes::new()).await.unwrap();
        assert_eq!(r.body, blob.bytes);
    }
    assert!(server.stop());
}

#[test]
fn retention_policies_keep_what_they_name_and_customs_gc_deletes_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let src = tmp.path().join("src");
    let images: Vec<_> = (0..5).map(|i| ImageBuilder::new(40 + i).layer(1, 3_000).build()).collect();
    let refs = ["release-1", "build-2", "build-3", "build-4", "build-9"];
    for (image, tag) in images.iter().zip(refs) {
        image.write_layout(&src, tag).unwrap();
    }
    let config = tmp.path().join("customs.toml");
    std::fs::write(
        &config,
        r#"
[inspection]
enabled = false

[[retention.policies]]
repositories = ["ci/**"]
delete_untagged_after_secs = 0

[[retention.policies.keep_tags]]
patterns = ["release-*"]

[[retention.policies.keep_tags]]
patterns = ["build-*"]
most_recently_pushed = 1

[[retention.policies.keep_tags]]
pulled_within_secs = 3600
"#,
    )
    .unwrap();
    let config_arg = config.to_str().unwrap();
    let log = tmp.path().join("serve.log");
    let server = ServerProcess::start_args(customs(), &data, &["--config", config_arg], &[], &log).unwrap();
    let host = server.addr.clone();
    for (tag, repo) in refs.iter().zip(["ci/app", "ci/app", "ci/app", "ci/app", "team/app"]) {
        let to = format!("docker://{host}/{repo}:{tag}");
        skopeo(&["copy", "--dest-tls-verify=false", &format!("oci:{}:{tag}", src.display()), &to]);
        std::thread::sleep(Duration::from_millis(5));
    }
    // build-2 is in use: pulled (the server writes its pulls when it stops).
    skopeo(&["inspect", "--tls-verify=false", &format!("docker://{host}/ci/app:build-2")]);
    assert!(server.stop());

    let gc = |extra: &[&str]| {
        let mut args = vec!["gc", "--config", config_arg, "--data", data.to_str().unwrap(), "--delay-secs", "0"];
        args.extend_from_slice(extra);
        run(customs().to_str().unwrap(), &args)
    };
    let build_3 = &images[2];
    let files: Vec<PathBuf> =
        std::iter::once(&build_3.digest).chain(build_3.blobs().map(|b| &b.digest)).map(|d| stored_blob_path(&data, d)).collect();

    // A dry run says what would go, and nothing goes.
    let out = gc(&["--dry-run"]);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "retention would delete tag ci/app:build-3",
            "retention would delete 1 tags and 0 untagged manifests",
            "nothing deleted (--dry-run)"
        ]
    );
    assert!(files.iter().all(|f| f.exists()));

    // build-3: not release-*, not the newest build-*, not pulled. Its image is untagged from
    // now on, so the next pass deletes it, and its bytes.
    let out = gc(&[]);
    assert!(out.starts_with("retention deleted tag ci/app:build-3\nretention deleted 1 tags and 0 untagged manifests\n"), "{out}");
    assert!(files.iter().all(|f| f.exists()));
    let out = gc(&[]);
    let bytes = build_3.manifest.len() + build_3.blobs().map(|b| b.bytes.len()).sum::<usize>();
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            format!("retention deleted untagged manifest ci/app@{}", build_3.digest).as_str(),
            "retention deleted 0 tags and 1 untagged manifests",
            &format!(
                "deleted 0 referrers of deleted manifests; unlinked 2 layers no manifest referenced; \
                 deleted 3 blobs ({bytes} bytes) no record needed"
            ),
        ]
    );
    for f in &files {
        assert!(!f.exists(), "{} freed", f.display());
    }

    // What the policy keeps, and what no policy names, comes back whole.
    let server = ServerProcess::start_args(customs(), &data, &["--config", config_arg], &[], &log).unwrap();
    let listed: serde_json::Value =
        serde_json::from_str(&skopeo(&["list-tags", "--tls-verify=false", &format!("docker://{}/ci/app", server.addr)])).unwrap();
    assert_eq!(listed["Tags"], serde_json::json!(["build-2", "build-4", "release-1"]));
    let out_dir = tmp.path().join("out");
    for (image, (tag, repo)) in images.iter().zip(refs.iter().zip(["ci/app", "ci/app", "ci/app", "ci/app", "team/app"])) {
        if *tag == "build-3" {
            continue;
        }
        let from = format!("docker://{}/{repo}:{tag}", server.addr);
        skopeo(&["copy", "--src-tls-verify=false", &from, &format!("oci:{}:{tag}", out_dir.display())]);
        for blob in image.blobs() {
            assert_eq!(std::fs::read(out_dir.join("blobs/sha256").join(blob.digest.hex())).unwrap(), blob.bytes, "{tag}");
        }
    }
    assert!(server.stop());

    // A policy that names no repository is refused, with where it is.
    std::fs::write(&config, "[[retention.policies]]\ndelete_untagged_after_secs = 60\n").unwrap();
    let out = Command::new(customs()).args(["gc", "--config", config_arg, "--data"]).arg(&data).stdin(Stdio::null()).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("[[retention.policies]] #1: `repositories` names no repository glob"), "{err}");
    std::fs::write(&config, "[[retention.policies]]\nrepositories = [\"ci/**\"]\n[[retention.policies.keep_tags]]\npatterns = [\"v?\"]\n").unwrap();
    let out = Command::new(customs()).args(["gc", "--config", config_arg, "--data"]).arg(&data).stdin(Stdio::null()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("tag glob \"v?\""), "{err}");
}

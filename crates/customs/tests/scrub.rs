//! The scrub as an operator meets it: `customs scrub` on a stopped server's data directory finds a
//! layer that rotted on disk, skopeo is then refused the layer instead of handed bad bytes, and
//! pushing the image again repairs it; and a running server's own passes.

use std::io::{Seek, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};
use oci::Digest;
use test_support::{Client, ImageBuilder, ServerProcess, metric, skopeo, stored_blob_path};

fn customs() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_customs"))
}

/// Overwrites a few bytes in the middle of a stored blob, as a failing disk would.
fn rot(data: &Path, d: &Digest) {
    let mut f = std::fs::OpenOptions::new().write(true).open(stored_blob_path(data, d)).unwrap();
    f.seek(std::io::SeekFrom::Start(1000)).unwrap();
    f.write_all(b"bit rot").unwrap();
    f.sync_all().unwrap();
}

/// `customs scrub ARGS --data DATA`: its exit code and standard output.
fn scrub(data: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(customs()).arg("scrub").args(args).arg("--data").arg(data).stdin(Stdio::null()).output().unwrap();
    (out.status.code().unwrap(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn customs_scrub_finds_a_rotten_layer_and_pushing_the_image_again_repairs_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, src, out) = (tmp.path().join("data"), tmp.path().join("src"), tmp.path().join("out"));
    let image = ImageBuilder::new(41).layer(2, 40_000).layer(1, 9_000).build();
    image.write_layout(&src, "v1").unwrap();
    let quiet = [("CUSTOMS_INSPECTION__ENABLED", "false")];
    let server = ServerProcess::start_with(customs(), &data, &quiet).unwrap();
    let oci_src = format!("oci:{}:v1", src.display());
    for repo in ["team/app", "other/app"] {
        skopeo(&["copy", "--dest-tls-verify=false", &oci_src, &format!("docker://{}/{repo}:v1", server.addr)]);
    }
    let (code, said) = scrub(&data, &[]);
    assert_eq!(code, 1, "{said}");
    assert!(said.contains("in use by another customs server") && said.contains("stop it"), "{said}");
    assert!(server.stop());

    let (code, said) = scrub(&data, &[]);
    let clean = format!("checked 4 blobs ({} bytes): 0 damaged, 0 unreadable", stored_bytes(&image));
    assert_eq!((code, said.trim()), (0, clean.as_str()));

    let layer = &image.layers[0];
    rot(&data, &layer.digest);
    let (code, said) = scrub(&data, &[]);
    assert_eq!(code, 1, "{said}");
    let lines: Vec<&str> = said.lines().collect();
    assert_eq!(lines.len(), 3, "{said}");
    let damaged = format!("damaged {}: its {} bytes hash to sha256:", layer.digest, layer.bytes.len());
    assert!(lines[0].starts_with(&damaged), "{said}");
    assert!(lines[0].contains(&format!("its bytes were moved to {}", data.join("quarantine").display())), "{said}");
    assert!(lines[1].starts_with("checked 4 blobs") && lines[1].ends_with("1 damaged, 0 unreadable"), "{said}");
    assert!(lines[2].starts_with(&format!("needs a push: {} (its {} bytes hash to", layer.digest, layer.bytes.len())), "{said}");
    let (code, listed) = scrub(&data, &["--list"]);
    assert_eq!((code, listed.trim()), (1, lines[2]), "--list reads nothing and says the same");

    // skopeo is refused the layer (in both repositories), not handed bytes that fail its check.
    let server = ServerProcess::start_with(customs(), &data, &quiet).unwrap();
    let from = |repo: &str| format!("docker://{}/{repo}:v1", server.addr);
    let copy_out = |repo: &str| {
        Command::new("skopeo")
            .args(["copy", "--src-tls-verify=false", &from(repo), &format!("oci:{}:v1", out.display())])
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let refused = copy_out("other/app");
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains(&layer.digest.to_string()) && !err.contains("did not match"), "{err}");

    // Pushing the image again into one repository repairs it in both.
    skopeo(&["copy", "--dest-tls-verify=false", &oci_src, &from("team/app")]);
    let copied = copy_out("other/app");
    assert!(copied.status.success(), "{}", String::from_utf8_lossy(&copied.stderr));
    for blob in image.blobs() {
        assert_eq!(std::fs::read(out.join("blobs/sha256").join(blob.digest.hex())).unwrap(), blob.bytes);
    }
    assert!(server.stop());
    let (code, said) = scrub(&data, &[]);
    assert_eq!((code, said.lines().count()), (0, 1), "{said}");
}

fn stored_bytes(image: &test_support::Image) -> String {
    (image.manifest.len() + image.blobs().map(|b| b.bytes.len()).sum::<usize>()).to_string()
}

#[tokio::test]
async fn a_running_server_scrubs_in_the_background() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let image = ImageBuilder::new(42).layer(1, 6_000).build();
    let env = [("CUSTOMS_INSPECTION__ENABLED", "false"), ("CUSTOMS_SCRUB__INTERVAL_SECS", "1")];
    let server = ServerProcess::start_with(customs(), &data, &env).unwrap();
    let client = Client::new(&server.url());
    client.push_image("bg", &image, "v1").await;
    let layer = &image.layers[0];
    rot(&data, &layer.digest);
    let head = format!("/v2/bg/blobs/{}", layer.digest);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = client.call(Method::GET, "/metrics", &[], Bytes::new()).await.unwrap().body;
        let metrics = String::from_utf8(metrics.to_vec()).unwrap();
        if metric(&metrics, "customs_blobs_damaged_total") == Some(1.0) {
            assert!(metric(&metrics, "customs_scrub_blobs_checked_total").unwrap() >= 3.0, "{metrics}");
            break;
        }
        assert!(Instant::now() < deadline, "no pass found the damage in 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(client.call(Method::HEAD, &head, &[], Bytes::new()).await.unwrap().status, StatusCode::NOT_FOUND);
    let path = format!("/v2/bg/blobs/uploads/?digest={}", layer.digest);
    assert_eq!(client.call(Method::POST, &path, &[], layer.bytes.clone()).await.unwrap().status, StatusCode::CREATED);
    assert_eq!(client.call(Method::GET, &head, &[], Bytes::new()).await.unwrap().body, layer.bytes);
    assert!(server.stop());
}

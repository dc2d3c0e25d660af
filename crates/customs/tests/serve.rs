//! `customs serve` as an operator meets it: where it listens, clear refusals, settings from the
//! environment and the config file, and blob bytes over a real socket (copied to a client on this
//! host, sent with sendfile to any other).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use bytes::Bytes;
use http::{Method, StatusCode};
use oci::Digest;
use test_support::{Client, Rng, ServerProcess};

fn customs() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_customs"))
}

/// Runs `customs args`, expecting failure; returns stderr.
fn refused(args: &[&str]) -> String {
    let out = Command::new(customs()).args(args).stdin(Stdio::null()).output().unwrap();
    assert!(!out.status.success(), "customs {args:?} should have failed");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn prints_where_it_listens_and_where_data_lives() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("d");
    let mut child = Command::new(customs())
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(&data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let second = lines.next().unwrap().unwrap();
    let third = lines.next().unwrap().unwrap();
    let base = first.strip_prefix("customs listening on ").unwrap_or_else(|| panic!("{first}")).to_owned();
    // The web UI answers where it says.
    let ui = third.strip_prefix("customs web UI at ").unwrap_or_else(|| panic!("{third}"));
    let page = Command::new("curl").args(["-s", "-w", "%{http_code}", ui]).output().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(base.starts_with("http://127.0.0.1:"), "{first}");
    assert!(!base.ends_with(":0"), "the real port is printed: {first}");
    assert_eq!(second, format!("customs data in {}", data.canonicalize().unwrap().display()));
    assert_eq!(ui, format!("{base}/ui/"));
    let page = String::from_utf8_lossy(&page.stdout);
    assert!(page.ends_with("200") && page.contains("<h1>Repositories</h1>"), "{page}");
}

#[test]
fn a_sigterm_right_after_the_listening_line_drains_and_exits_cleanly() {
    // The handlers were installed only once the server ran, a moment after the line: a SIGTERM
    // in between killed the process (exit by signal, no drain): 1 start in 12 when measured.
    let tmp = tempfile::tempdir().unwrap();
    for n in 0..20 {
        let server = ServerProcess::start(customs(), &tmp.path().join("data")).unwrap();
        assert!(server.stop(), "start {n}: customs did not exit cleanly on a SIGTERM right after it listened");
    }
}

#[test]
fn refuses_a_port_in_use_an_unusable_directory_and_a_shared_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let data = tmp.path().join("data");
    let err = refused(&["serve", "--listen", &addr, "--data", data.to_str().unwrap()]);
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");

    let file = tmp.path().join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let err = refused(&["serve", "--listen", "127.0.0.1:0", "--data", file.to_str().unwrap()]);
    assert!(err.contains("cannot create data directory"), "{err}");

    let _first = ServerProcess::start(customs(), &data).unwrap();
    let err = refused(&["serve", "--listen", "127.0.0.1:0", "--data", data.to_str().unwrap()]);
    assert!(err.contains("in use by another customs server"), "{err}");

    let elsewhere = tmp.path().join("elsewhere");
    let err = refused(&["serve", "--listen", "not-an-address", "--data", elsewhere.to_str().unwrap()]);
    assert!(err.contains("cannot listen on not-an-address"), "{err}");

    // TLS files that are missing, or not a certificate and key: a clear refusal at start.
    let garbage = tmp.path().join("garbage.pem");
    std::fs::write(&garbage, b"-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n").unwrap();
    for cert in [tmp.path().join("missing.crt"), garbage] {
        let out = Command::new(customs())
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(tmp.path().join("tls-data"))
            .env("CUSTOMS_TLS__CERT_FILE", &cert)
            .env("CUSTOMS_TLS__KEY_FILE", &cert)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "served with {}", cert.display());
        assert!(err.contains("cannot load the TLS certificate and key") && err.contains(cert.to_str().unwrap()), "{err}");
    }
}

#[tokio::test]
async fn settings_reach_the_server_from_environment_and_file() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("customs.toml");
    std::fs::write(&file, "[limits]\nmax_manifest_bytes = 300\nmax_upload_sessions = 1\n").unwrap();
    let config = file.to_str().unwrap();
    // The environment overrides the file for one key; the file's other key still holds.
    let server = ServerProcess::start_with(
        customs(),
        &tmp.path().join("data"),
        &[("CUSTOMS_CONFIG", config), ("CUSTOMS_LIMITS__MAX_MANIFEST_BYTES", "100")],
    )
    .unwrap();
    let client = Client::new(&server.url());
    let put = client
        .call(Method::PUT, "/v2/s/manifests/t", &[("content-type", oci::media_type::OCI_MANIFEST)], vec![b' '; 150])
        .await
        .unwrap();
    assert_eq!(put.status, StatusCode::PAYLOAD_TOO_LARGE, "the environment's 100-byte limit applies");
    let first = client.call(Method::POST, "/v2/s/blobs/uploads/", &[], Bytes::new()).await.unwrap();
    assert_eq!(first.status, StatusCode::ACCEPTED);
    let second = client.call(Method::POST, "/v2/s/blobs/uploads/", &[], Bytes::new()).await.unwrap();
    assert_eq!(second.status, StatusCode::TOO_MANY_REQUESTS, "the file's session limit applies");

    let out = Command::new(customs()).args(["config", "--config", config]).output().unwrap();
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(printed.contains("max_manifest_bytes = 300") && printed.contains("max_upload_sessions = 1"), "{printed}");
    let err = refused(&["config", "--config", "/nonexistent.toml"]);
    assert!(err.contains("cannot read config file"), "{err}");
}

#[tokio::test]
async fn blob_bytes_over_a_real_socket_are_exact_copied_to_a_local_client() {
    let bytes_read = blob_bytes_over_a_real_socket(&[]).await;
    // Copying reads the mapped pages, not the file: no read calls for the blob bytes.
    assert!(bytes_read < 4_000_000, "the blob went out through read calls: {bytes_read} bytes read");
}

#[tokio::test]
async fn blob_bytes_over_a_real_socket_are_exact_with_sendfile() {
    let bytes_read = blob_bytes_over_a_real_socket(&[("CUSTOMS_HTTP__COPY_TO_LOCAL_PEERS", "false")]).await;
    // sendfile counts what it sends as read from the file; 8 whole reads and the ranges.
    assert!(bytes_read >= 8 * 3_500_123, "sendfile was not used: {bytes_read} bytes read");
}

/// Pushes a blob, reads it whole 8 times at once and in ranges, checks every byte, and returns
/// how many bytes the server read with read-like calls meanwhile (`rchar` of /proc/PID/io).
async fn blob_bytes_over_a_real_socket(env: &[(&str, &str)]) -> u64 {
    let tmp = tempfile::tempdir().unwrap();
    let server = ServerProcess::start_with(customs(), &tmp.path().join("data"), env).unwrap();
    let client = Client::new(&server.url());
    // Several windows, and a tail that is not page aligned.
    let mut data = vec![0; 3_500_123];
    Rng(99).fill(&mut data);
    let digest = Digest::sha256_of(&data);
    let r = client.call(Method::POST, &format!("/v2/sock/blobs/uploads/?digest={digest}"), &[], data.clone()).await.unwrap();
    assert_eq!(r.status, StatusCode::CREATED);
    let path = format!("/v2/sock/blobs/{digest}");

    let before = bytes_read(server.pid());
    let reads: Vec<_> = (0..8).map(|_| client.call(Method::GET, &path, &[], Bytes::new())).collect();
    for r in futures::future::join_all(reads).await {
        let r = r.unwrap();
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(Digest::sha256_of(&r.body), digest, "concurrent full reads are exact");
    }
    let ranges = [(0, 0), (4095, 4097), (1_048_575, 1_048_577), (1_000_001, 3_500_122), (3_000_000, 3_499_999), (17, 2_100_000)];
    for (start, end) in ranges {
        let range = format!("bytes={start}-{end}");
        let r = client.call(Method::GET, &path, &[("range", &range)], Bytes::new()).await.unwrap();
        assert_eq!(r.status, StatusCode::PARTIAL_CONTENT, "{range}");
        assert!(r.body[..] == data[start..=end], "{range} returned other bytes");
    }
    let read = bytes_read(server.pid()) - before;
    assert!(server.stop());
    read
}

/// Bytes a process has read with read-like system calls (sendfile included).
fn bytes_read(pid: u32) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap();
    let line = io.lines().find_map(|l| l.strip_prefix("rchar: ")).unwrap();
    line.trim().parse().unwrap()
}

#[tokio::test]
async fn an_upload_continues_after_the_server_restarts() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let mut data = vec![0; 2_000_000];
    Rng(5).fill(&mut data);
    let digest = Digest::sha256_of(&data);

    let server = ServerProcess::start(customs(), &data_dir).unwrap();
    let client = Client::new(&server.url());
    let start = client.call(Method::POST, "/v2/resume/blobs/uploads/", &[], Bytes::new()).await.unwrap();
    let session = start.header("location").unwrap().to_owned();
    let first = Bytes::copy_from_slice(&data[..1_200_000]);
    let r = client.call(Method::PATCH, &session, &[("content-range", "0-1199999")], first).await.unwrap();
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert!(server.stop(), "clean stop");

    let server = ServerProcess::start(customs(), &data_dir).unwrap();
    let client = Client::new(&server.url());
    let status = client.call(Method::GET, &session, &[], Bytes::new()).await.unwrap();
    assert_eq!((status.status, status.header("range")), (StatusCode::NO_CONTENT, Some("0-1199999")));
    let rest = Bytes::copy_from_slice(&data[1_200_000..]);
    let r = client
        .call(Method::PUT, &format!("{session}?digest={digest}"), &[("content-range", "1200000-1999999")], rest)
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let back = client.call(Method::GET, &format!("/v2/resume/blobs/{digest}"), &[], Bytes::new()).await.unwrap();
    assert_eq!(Digest::sha256_of(&back.body), digest);
}

#[tokio::test]
async fn json_access_logs_carry_the_request_id() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("customs.log");
    let server = ServerProcess::start_logged(
        customs(),
        &tmp.path().join("data"),
        &[("CUSTOMS_LOG_FORMAT", "json"), ("CUSTOMS_LOG", "info,customs::access=debug")],
        &log,
    )
    .unwrap();
    let client = Client::new(&server.url());
    let ok = client.call(Method::GET, "/v2/", &[("x-request-id", "trace-abc-1")], "").await.unwrap();
    assert_eq!(ok.status, StatusCode::OK);
    let missing = client.call(Method::GET, "/v2/logs/app/manifests/v9", &[], "").await.unwrap();
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let generated = missing.header("x-request-id").unwrap().to_owned();
    assert!(server.stop());

    let events: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("log line is not JSON ({e}): {l}")))
        .collect();
    let access = |id: &str| {
        events
            .iter()
            .find(|e| e["target"] == "customs::access" && e["fields"]["request_id"] == id)
            .unwrap_or_else(|| panic!("no access event for {id} in {events:#?}"))
    };
    let first = access("trace-abc-1");
    assert_eq!((first["fields"]["status"].as_u64(), first["level"].as_str()), (Some(200), Some("DEBUG")));
    assert_eq!(first["fields"]["path"], "/v2/");
    assert_eq!(first["fields"]["client"], "127.0.0.1");
    let second = access(&generated);
    assert_eq!((second["fields"]["status"].as_u64(), second["level"].as_str()), (Some(404), Some("INFO")));
    assert_eq!(second["fields"]["class"], "manifest_read");
}

//! HTTP/2 and TLS against a real `customs serve`, with real clients: curl for the protocol
//! versions, skopeo for a push and pull over HTTPS, and certificate rotation without a restart.
//! Keys and certificates are generated here with openssl, never committed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use http::{Method, StatusCode};
use oci::Digest;
use test_support::{Client, ImageBuilder, Rng, ServerProcess};

fn customs() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_customs"))
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A self-signed certificate for 127.0.0.1 and localhost, in `dir/{name}.crt` and `.key`.
fn certificate(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (crt, key) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
    run(Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
        .args(["-subj", &format!("/CN=customs-test-{name}"), "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&crt));
    (crt, key)
}

/// `curl` of `url`, printing the HTTP version and status; `None` if curl refuses (e.g. TLS).
fn curl(url: &str, args: &[&str]) -> Option<(String, String)> {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-w", "%{http_version} %{http_code}"]).args(args);
    if !args.contains(&"-o") {
        cmd.args(["-o", "/dev/null"]);
    }
    let out = cmd.arg(url).output().unwrap();
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (version, status) = text.split_once(' ')?;
    Some((version.to_owned(), status.to_owned()))
}

#[tokio::test]
async fn http2_cleartext_and_http1_on_one_port_with_exact_blob_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(customs(), &tmp.path().join("data")).unwrap();
    let url = format!("{}/v2/", server.url());
    assert_eq!(curl(&url, &["--http2-prior-knowledge"]), Some(("2".into(), "200".into())));
    assert_eq!(curl(&url, &["--http1.1"]), Some(("1.1".into(), "200".into())));

    // A blob large enough to be served from mapped windows, fetched over h2c, byte for byte.
    let blob = Rng(8).bytes(5 << 20);
    let digest = Digest::sha256_of(&blob);
    let client = Client::new(&server.url());
    let pushed = client
        .call(Method::POST, &format!("/v2/h2/app/blobs/uploads/?digest={digest}"), &[], blob.clone())
        .await
        .unwrap();
    assert_eq!(pushed.status, StatusCode::CREATED);
    let out = tmp.path().join("blob.out");
    let blob_url = format!("{}/v2/h2/app/blobs/{digest}", server.url());
    let got = curl(&blob_url, &["--http2-prior-knowledge", "-o", out.to_str().unwrap()]);
    assert_eq!(got, Some(("2".into(), "200".into())));
    assert!(std::fs::read(&out).unwrap() == blob[..], "blob bytes over h2c are exact");
}

#[test]
fn https_with_h2_by_alpn_skopeo_round_trip_and_certificate_rotation() {
    let tmp = tempfile::tempdir().unwrap();
    let (crt_a, key_a) = certificate(tmp.path(), "a");
    let (crt_b, key_b) = certificate(tmp.path(), "b");
    let (live_crt, live_key) = (tmp.path().join("live.crt"), tmp.path().join("live.key"));
    std::fs::copy(&crt_a, &live_crt).unwrap();
    std::fs::copy(&key_a, &live_key).unwrap();
    let server = ServerProcess::start_with(
        customs(),
        &tmp.path().join("data"),
        &[
            ("CUSTOMS_TLS__CERT_FILE", live_crt.to_str().unwrap()),
            ("CUSTOMS_TLS__KEY_FILE", live_key.to_str().unwrap()),
            ("CUSTOMS_TLS__RELOAD_SECS", "1"),
        ],
    )
    .unwrap();
    assert_eq!(server.scheme, "https");
    let url = format!("{}/v2/", server.url());
    let trust_a = ["--cacert", crt_a.to_str().unwrap()];
    let trust_b = ["--cacert", crt_b.to_str().unwrap()];
    assert_eq!(curl(&url, &trust_a), Some(("2".into(), "200".into())), "h2 negotiated by ALPN");
    assert_eq!(curl(&url, &[&trust_a[..], &["--http1.1"]].concat()), Some(("1.1".into(), "200".into())));
    assert_eq!(curl(&url, &trust_b), None, "a client trusting only b refuses a's certificate");
    assert_eq!(curl(&format!("http://{}/v2/", server.addr), &[]), None, "no plain HTTP on a TLS port");

    // skopeo pushes and pulls over HTTPS, verifying the certificate.
    let certs = tmp.path().join("certs.d");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::copy(&crt_a, certs.join("ca.crt")).unwrap();
    let image = ImageBuilder::new(21).layer(2, 150_000).layer(3, 20_000).build();
    let layout = tmp.path().join("layout");
    image.write_layout(&layout, "v1").unwrap();
    let dest = format!("docker://{}/tls/app:v1", server.addr);
    run(Command::new("skopeo").args(["--insecure-policy", "copy", "--quiet", "--dest-cert-dir"]).arg(&certs).arg(format!("oci:{}:v1", layout.display())).arg(&dest));
    let inspected = run(Command::new("skopeo").args(["inspect", "--raw", "--cert-dir"]).arg(&certs).arg(&dest));
    assert_eq!(inspected.as_bytes(), &image.manifest[..], "the manifest comes back byte for byte over TLS");

    // Rotation: replace the files; new handshakes get b without a restart.
    std::fs::write(&live_key, std::fs::read(&key_b).unwrap()).unwrap();
    std::fs::write(&live_crt, std::fs::read(&crt_b).unwrap()).unwrap();
    let mut rotated = false;
    for _ in 0..100 {
        if curl(&url, &trust_b).is_some() {
            rotated = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(rotated, "the server picked up the new certificate");
    assert_eq!(curl(&url, &trust_a), None, "the old certificate is no longer served");
    assert!(server.stop(), "clean exit");
}

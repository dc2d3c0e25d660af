//! The gate end to end: a real `customs serve` with namespace rules from a config file, images
//! pushed with skopeo, keys and signatures made here with openssl. A planted private key is
//! refused at pull naming the finding and served after a waiver; a policy that requires a
//! signature admits an image signed with a configured key (Ed25519 or ECDSA P-256) and refuses
//! one signed with another; a `reject` namespace refuses the push itself; an `audit` namespace
//! records the failure and serves; an index is judged through its children; and the queries
//! find images by package. Every verdict is in the audit log, and a webhook receiver (a plain
//! HTTP server of the test's own) is sent the team's events as signed CloudEvents, the first
//! delivery retried after a 500.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use test_support::{Blob, ServerProcess, run};

fn customs() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_customs"))
}


/// (status, body) of a GET.
fn get(url: &str) -> (u16, String) {
    let out = Command::new("curl").args(["-s", "-w", "\n%{http_code}", "-H", "Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json", url]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap();
    (status.trim().parse().unwrap(), body.to_owned())
}

/// Polls `url` until it answers `want`; the body.
fn wait_for(url: &str, want: u16) -> String {
    let started = Instant::now();
    loop {
        let (status, body) = get(url);
        if status == want {
            return body;
        }
        assert!(started.elapsed() < Duration::from_secs(90), "{url}: still {status}, waiting for {want}: {body}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn pkg_jar() -> Vec<u8> {
    use std::io::Write;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    zip.start_file("META-INF/maven/org.apache.logging.log4j/log4j-core/pom.properties", zip::write::SimpleFileOptions::default()).unwrap();
    zip.write_all(b"groupId=org.apache.logging.log4j\nartifactId=log4j-core\nversion=2.14.1\n").unwrap();
    zip.finish().unwrap().into_inner()
}

/// An image in the layout at `dir` under `tag`; with `key`, a private key (PEM) planted in it.
fn image(dir: &Path, tag: &str, key: Option<&[u8]>) -> String {
    let jar = pkg_jar();
    let mut files: Vec<(&str, &[u8], u32)> = vec![("app/name.txt", tag.as_bytes(), 0o644), ("opt/app/log4j-core.jar", &jar, 0o644)];
    if let Some(k) = key {
        files.push(("etc/ssl/private/server.key", k, 0o600));
    }
    let config = serde_json::json!({"architecture": "amd64", "os": "linux", "config": {"User": "app"}, "rootfs": {"type": "layers", "diff_ids": []}});
    test_support::write_image(dir, tag, &config, vec![test_support::layer_tar_gz(&files)]).unwrap().to_string()
}

fn push(layout: &Path, tag: &str, addr: &str, target: &str) -> std::process::Output {
    Command::new("skopeo")
        .args(["--insecure-policy", "copy", "--all", "--quiet", "--preserve-digests", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:{tag}", layout.display()))
        .arg(format!("docker://{addr}/{target}"))
        .output()
        .unwrap()
}

fn pushed(layout: &Path, tag: &str, addr: &str, target: &str) {
    let out = push(layout, tag, addr, target);
    assert!(out.status.success(), "push {target}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A key pair made by openssl: (private PEM path, public PEM path).
fn keypair(dir: &Path, name: &str, ec: bool) -> (PathBuf, PathBuf) {
    let private = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub"));
    let p = private.to_str().unwrap();
    if ec {
        run("openssl", &["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", p]);
        run("openssl", &["ec", "-in", p, "-pubout", "-out", public.to_str().unwrap()]);
    } else {
        run("openssl", &["genpkey", "-algorithm", "ed25519", "-out", p]);
        run("openssl", &["pkey", "-in", p, "-pubout", "-out", public.to_str().unwrap()]);
    }
    (private, public)
}

/// Signs `image` (its digest) the way `cosign sign --key` does: a simple-signing payload as the
/// layer of a manifest tagged `sha256-<hex>.sig`, its signature in the layer's annotation.
fn sign(tmp: &Path, private: &Path, ec: bool, image: &str, addr: &str, repo: &str) {
    let payload = serde_json::to_vec(&serde_json::json!({
        "critical": {
            "identity": {"docker-reference": format!("{addr}/{repo}")},
            "image": {"docker-manifest-digest": image},
            "type": "cosign container image signature"
        },
        "optional": null
    }))
    .unwrap();
    let payload_file = tmp.join("payload.json");
    std::fs::write(&payload_file, &payload).unwrap();
    let sig_file = tmp.join("payload.sig");
    let (p, inp, out) = (private.to_str().unwrap(), payload_file.to_str().unwrap(), sig_file.to_str().unwrap());
    if ec {
        run("openssl", &["dgst", "-sha256", "-sign", p, "-out", out, inp]);
    } else {
        run("openssl", &["pkeyutl", "-sign", "-inkey", p, "-rawin", "-in", inp, "-out", out]);
    }
    use base64::Engine as _;
    let signature = base64::engine::general_purpose::STANDARD.encode(std::fs::read(&sig_file).unwrap());
    let layer = Blob::new("application/vnd.dev.cosign.simplesigning.v1+json", payload);
    let config = Blob::new(
        "application/vnd.oci.image.config.v1+json",
        serde_json::to_vec(&serde_json::json!({"architecture": "", "os": "", "config": {}, "rootfs": {"type": "layers", "diff_ids": [layer.digest.to_string()]}})).unwrap(),
    );
    let mut layer_descriptor = layer.descriptor();
    layer_descriptor["annotations"] = serde_json::json!({ "dev.cosignproject.cosign/signature": signature });
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config.descriptor(), "layers": [layer_descriptor],
    });
    let manifest = bytes::Bytes::from(serde_json::to_vec(&manifest).unwrap());
    let layout = tmp.join(format!("sig-{}", &image[7..19]));
    test_support::write_oci_layout(&layout, "sig", ("application/vnd.oci.image.manifest.v1+json", &manifest), [&config, &layer].into_iter()).unwrap();
    let tag = image.replacen(':', "-", 1) + ".sig";
    pushed(&layout, "sig", addr, &format!("{repo}:{tag}"));
}

const SIGNED_POLICY: &str = r#"package customs

import rego.v1

deny contains "no signature by a trusted key" if not verified

warn contains sprintf("pushed by %s", [input.pushed_by])

verified if {
	some s in input.signatures
	s.verified
}
"#;

#[test]
fn the_gate_waives_verifies_rejects_audits_and_answers_queries() {
    let tmp = tempfile::tempdir().unwrap();
    let tmp = tmp.path();
    let data = tmp.join("data");
    let policies = tmp.join("policies");
    let keys = tmp.join("keys");
    for d in [&data, &policies, &keys] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(policies.join("signed.rego"), SIGNED_POLICY).unwrap();
    let (ed_private, ed_public) = keypair(&keys, "release-ed25519", false);
    let (ec_private, ec_public) = keypair(&keys, "release-p256", true);
    let (rogue_private, _) = keypair(&keys, "rogue", false);
    let config = tmp.join("customs.toml");
    let hook = test_support::WebhookReceiver::start(1);
    let hook_url = &hook.url;
    // The webhook's key, made here and handed over in the environment as an operator would.
    let hook_key = {
        let mut b = [0u8; 16];
        std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom").unwrap(), &mut b).unwrap();
        b.iter().map(|x| format!("{x:02x}")).collect::<String>()
    };
    std::fs::write(
        &config,
        format!(
            r#"[[webhooks]]
name = "ci"
url = "{hook_url}"
secret_env = "HOOK_KEY_OF_THE_TEST"
repositories = "team/**"

[gate]
policy_dir = "{}"

[[gate.namespaces]]
repositories = "signed/**"
policy = "signed"
keys = ["{}", "{}"]

[[gate.namespaces]]
repositories = "strict/**"
push = "reject"

[[gate.namespaces]]
repositories = "audit/**"
mode = "audit"
"#,
            policies.display(),
            ed_public.display(),
            ec_public.display()
        ),
    )
    .unwrap();
    let config_path = config.to_str().unwrap();
    let server = ServerProcess::start_with(
        customs(),
        &data,
        &[("CUSTOMS_CONFIG", config_path), ("CUSTOMS_INSPECTION__POLL_MS", "100"), ("HOOK_KEY_OF_THE_TEST", &hook_key)],
    )
    .unwrap();
    let (base, addr) = (server.url(), server.addr.clone());
    let layout = tmp.join("layout");
    // A private key, generated here: never a committed one.
    let (planted, _) = keypair(tmp, "planted", false);
    let planted = std::fs::read(planted).unwrap();

    // 1. An index is judged through its children: one bad child blocks it, naming the child.
    let index_layout = tmp.join("index");
    let good = image(&index_layout, "good", None);
    let bad = image(&index_layout, "bad", Some(&planted));
    let manifest_of = |d: &str| std::fs::read(index_layout.join("blobs/sha256").join(&d[7..])).unwrap();
    let entry = |d: &str, arch: &str| {
        serde_json::json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d, "size": manifest_of(d).len(), "platform": {"os": "linux", "architecture": arch}})
    };
    let index = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [entry(&good, "amd64"), entry(&bad, "arm64")]});
    let index = bytes::Bytes::from(serde_json::to_vec(&index).unwrap());
    test_support::write_oci_layout(&index_layout, "multi", ("application/vnd.oci.image.index.v1+json", &index), std::iter::empty()).unwrap();
    pushed(&index_layout, "multi", &addr, "team/multi:1");
    wait_for(&format!("{base}/v2/team/multi/manifests/{bad}"), 403);
    let body = wait_for(&format!("{base}/v2/team/multi/manifests/1"), 403);
    assert!(body.contains(&bad) && body.contains("private-key-pkcs8"), "{body}");
    assert!(!wait_for(&format!("{base}/v2/team/multi/manifests/{good}"), 200).is_empty());

    // 2. The planted key is refused at pull, naming the finding.
    let keyed = image(&layout, "keyed", Some(&planted));
    pushed(&layout, "keyed", &addr, "team/keyed:1");
    let body = wait_for(&format!("{base}/v2/team/keyed/manifests/1"), 403);
    assert!(body.contains("DENIED") && body.contains("secret: private-key-pkcs8 in etc/ssl/private/server.key"), "{body}");
    let out = Command::new("skopeo").args(["inspect", "--tls-verify=false", &format!("docker://{addr}/team/keyed:1")]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("private-key-pkcs8"), "skopeo shows why: {}", String::from_utf8_lossy(&out.stderr));
    // The report and verdict through the API; the finding's fingerprint waives it.
    let (status, body) = get(&format!("{base}/api/v1/images/team/keyed/{keyed}/report"));
    assert_eq!(status, 200, "{body}");
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!((report["verdict"]["allowed"].as_bool(), report["verdict"]["served"].as_bool()), (Some(false), Some(false)));
    assert_eq!(report["verdict"]["policy"], "paved-road.rego");
    let fingerprint = report["report"]["secrets"][0]["fingerprint"].as_str().unwrap().to_owned();
    let data_arg = data.to_str().unwrap();
    // A waiver for another namespace changes nothing; one for this namespace serves the image.
    run(customs().to_str().unwrap(), &["waiver", "add", &fingerprint, "--repositories", "other/**", "--reason", "not ours", "--expires", "2099-01-01", "--data", data_arg]);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(get(&format!("{base}/v2/team/keyed/manifests/1")).0, 403, "another namespace's waiver");
    run(customs().to_str().unwrap(), &["waiver", "add", &fingerprint, "--repositories", "team/**", "--reason", "a test key, rotated", "--expires", "2099-01-01", "--data", data_arg]);
    wait_for(&format!("{base}/v2/team/keyed/manifests/1"), 200);
    let back = tmp.join("back");
    run("skopeo", &["--insecure-policy", "copy", "--quiet", "--src-tls-verify=false", &format!("docker://{addr}/team/keyed:1"), &format!("oci:{}:keyed", back.display())]);
    let listed = run(customs().to_str().unwrap(), &["waiver", "list", "--data", data_arg]);
    assert!(listed.contains("a test key, rotated") && listed.contains("team/**"), "{listed}");
    // The webhook heard the keyed image pushed, inspected, blocked and unblocked, in that order.
    let subject = format!("team/keyed@{keyed}");
    let events_for = |subject: &str| -> Vec<(String, serde_json::Value, test_support::Delivery)> {
        hook.deliveries()
            .into_iter()
            .filter(|d| d.status == 200)
            .map(|d| {
                let e: serde_json::Value = serde_json::from_slice(&d.body).unwrap();
                (e["type"].as_str().unwrap().to_owned(), e, d)
            })
            .filter(|(_, e, _)| e["subject"] == subject)
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while events_for(&subject).len() < 4 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let events = events_for(&subject);
    let kinds: Vec<&str> = events.iter().map(|(k, _, _)| k.as_str()).collect();
    assert_eq!(kinds, ["dev.customs.image.pushed", "dev.customs.image.inspected", "dev.customs.image.blocked", "dev.customs.image.unblocked"]);
    let (_, pushed_event, delivery) = &events[0];
    assert_eq!((pushed_event["specversion"].as_str(), pushed_event["data"]["tag"].as_str()), (Some("1.0"), Some("1")), "{pushed_event}");
    assert!(events[2].1["data"]["reasons"].to_string().contains("private-key-pkcs8"), "{}", events[2].1);
    assert!(delivery.headers.contains(&("content-type".into(), "application/cloudevents+json".into())));
    // Signed: openssl computes the same HMAC-SHA256 of the body with the key.
    let body_file = tmp.join("event.json");
    std::fs::write(&body_file, &delivery.body).unwrap();
    let mac = run("openssl", &["dgst", "-sha256", "-hmac", &hook_key, "-r", body_file.to_str().unwrap()]);
    let signature = delivery.headers.iter().find(|(k, _)| k == "x-customs-signature-256").map(|(_, v)| v.clone()).expect("a signature header");
    assert_eq!(signature, format!("sha256={}", mac.split_whitespace().next().unwrap()));
    // The first attempt was answered 500 and the same event delivered again; other namespaces are not the webhook's.
    let all = hook.deliveries();
    assert_eq!(all[0].status, 500);
    let id = |d: &test_support::Delivery| d.event()["id"].clone();
    assert_eq!(id(&all[0]), id(&all[1]), "retried after the 500");
    assert!(all.iter().all(|d| serde_json::from_slice::<serde_json::Value>(&d.body).unwrap()["subject"].as_str().unwrap().starts_with("team/")));

    // 3. Queries: which images contain log4j-core 2.14?
    let (status, body) = get(&format!("{base}/api/v1/packages?name=log4j-core&version=2.14"));
    assert_eq!(status, 200, "{body}");
    let found: serde_json::Value = serde_json::from_str(&body).unwrap();
    let hit = found["images"].as_array().unwrap().iter().find(|i| i["repository"] == "team/keyed").expect("team/keyed holds it");
    assert_eq!((hit["digest"].as_str(), &hit["tags"]), (Some(keyed.as_str()), &serde_json::json!(["1"])));
    assert_eq!(hit["package"]["purl"], "pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1");
    let (_, body) = get(&format!("{base}/api/v1/packages?name=log4j-core&range=%3E%3D2.15.0"));
    assert_eq!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["images"], serde_json::json!([]), "{body}");
    let cli = run(customs().to_str().unwrap(), &["query", "package", "--name", "log4j-core", "--range", ">=2.0,<2.15", "--data", data_arg]);
    assert!(cli.contains(&format!("team/keyed@{keyed} (1)")), "{cli}");

    // 4. Signatures: unsigned is refused; signed with a configured key (Ed25519, P-256) is served;
    //    signed with another key stays refused.
    let unsigned = image(&layout, "unsigned", None);
    pushed(&layout, "unsigned", &addr, "signed/app:1");
    let body = wait_for(&format!("{base}/v2/signed/app/manifests/1"), 403);
    assert!(body.contains("blocked by policy signed.rego: no signature by a trusted key"), "{body}");
    sign(tmp, &ed_private, false, &unsigned, &addr, "signed/app");
    wait_for(&format!("{base}/v2/signed/app/manifests/1"), 200);
    let report: serde_json::Value = serde_json::from_str(&get(&format!("{base}/api/v1/images/signed/app/{unsigned}/report")).1).unwrap();
    assert_eq!(report["verdict"]["served"], true);
    assert_eq!(report["verdict"]["warnings"], serde_json::json!(["pushed by anonymous"]), "who pushed reaches the policy");
    let ec_image = image(&layout, "ec", None);
    pushed(&layout, "ec", &addr, "signed/ec:1");
    wait_for(&format!("{base}/v2/signed/ec/manifests/1"), 403);
    sign(tmp, &ec_private, true, &ec_image, &addr, "signed/ec");
    wait_for(&format!("{base}/v2/signed/ec/manifests/1"), 200);
    let rogue_image = image(&layout, "rogue", None);
    pushed(&layout, "rogue", &addr, "signed/rogue:1");
    wait_for(&format!("{base}/v2/signed/rogue/manifests/1"), 403);
    sign(tmp, &rogue_private, false, &rogue_image, &addr, "signed/rogue");
    std::thread::sleep(Duration::from_millis(1500));
    let (status, body) = get(&format!("{base}/v2/signed/rogue/manifests/1"));
    assert_eq!(status, 403, "signed by an unknown key: {body}");

    // 5. Reject mode: the push itself is refused and nothing is kept; a clean push lands.
    let out = push(&layout, "keyed", &addr, "strict/app:1");
    assert!(!out.status.success(), "a failing push to a reject namespace is refused");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("private-key-pkcs8"), "the pusher sees why: {stderr}");
    assert_eq!(get(&format!("{base}/v2/strict/app/manifests/1")).0, 404, "the tag was never moved");
    assert_eq!(get(&format!("{base}/v2/strict/app/manifests/{keyed}")).0, 404, "the manifest was not kept");
    pushed(&layout, "unsigned", &addr, "strict/app:2");
    assert_eq!(get(&format!("{base}/v2/strict/app/manifests/2")).0, 200);

    // 6. Audit mode: recorded as failing, served.
    pushed(&layout, "keyed", &addr, "audit/app:1");
    wait_for(&format!("{base}/v2/audit/app/manifests/1"), 200);
    let report: serde_json::Value = serde_json::from_str(&get(&format!("{base}/api/v1/images/audit/app/{keyed}/report")).1).unwrap();
    assert_eq!((report["verdict"]["allowed"].as_bool(), report["verdict"]["served"].as_bool()), (Some(false), Some(true)), "{report}");

    // Every verdict and waiver is in the audit log.
    let audit = run(customs().to_str().unwrap(), &["audit", "--limit", "1000", "--data", data_arg]);
    assert!(audit.contains(&format!("gate.blocked\tteam/keyed@{keyed}")), "{audit}");
    assert!(audit.contains(&format!("gate.allowed\tteam/keyed@{keyed}")), "{audit}");
    assert!(audit.contains("waiver.add"), "{audit}");
    assert!(audit.contains(&format!("gate.audit-failed\taudit/app@{keyed}")), "{audit}");
    assert!(server.stop());
}

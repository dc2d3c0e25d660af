//! Every push is inspected: a real `customs serve`, images pushed with skopeo, the inspection queue
//! worked in the background, and the SBOM (CycloneDX) and the report attached to each image as OCI
//! artifacts that the referrers API lists. The pull gate serves an image once the shipped policy
//! allows it, refuses a blocked one naming the reasons (skopeo prints them), and answers 429 with
//! Retry-After while a verdict is pending. Jobs are queued with the manifest, so an image pushed
//! while no worker runs is inspected after a restart.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use test_support::{ServerProcess, run};

fn customs() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_customs"))
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../advisories/tests/data")
}


fn tar_gz(files: &[(&str, &[u8])]) -> Vec<u8> {
    let files: Vec<(&str, &[u8], u32)> = files.iter().map(|(p, d)| (*p, *d, 0o644)).collect();
    test_support::layer_tar_gz(&files)
}

fn jar(group: &str, artifact: &str, version: &str) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    zip.start_file(format!("META-INF/maven/{group}/{artifact}/pom.properties"), zip::write::SimpleFileOptions::default()).unwrap();
    zip.write_all(format!("groupId={group}\nartifactId={artifact}\nversion={version}\n").as_bytes()).unwrap();
    zip.finish().unwrap().into_inner()
}

/// 36 random characters, the body of a GitHub token generated here.
fn token() -> String {
    let mut x = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    (0..36)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"[(x % 62) as usize] as char
        })
        .collect()
}

/// An image as an OCI layout; its digest. A `bad` one holds log4j-core 2.14.1 and a GitHub token
/// generated here.
fn image(dir: &Path, tag: &str, extra: &str, bad: bool) -> String {
    let token = token();
    let log4j = jar("org.apache.logging.log4j", "log4j-core", "2.14.1");
    let env = format!("GITHUB_TOKEN=ghp_{token}\n");
    let mut files: Vec<(&str, &[u8])> = vec![("app/extra.txt", extra.as_bytes())];
    if bad {
        files.push(("opt/app/log4j-core.jar", &log4j));
        files.push(("app/.env", env.as_bytes()));
    }
    let layer = tar_gz(&files);
    let config = serde_json::json!({"architecture": "amd64", "os": "linux", "config": {"User": "app"}, "rootfs": {"type": "layers", "diff_ids": []}});
    test_support::write_image(dir, tag, &config, vec![layer]).unwrap().to_string()
}

/// Status, headers and body of a GET.
fn fetch(url: &str) -> (u16, String, String) {
    let out = Command::new("curl")
        .args(["-s", "-D", "-", "-H", "Accept: application/vnd.oci.image.manifest.v1+json", url])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, head.to_ascii_lowercase(), body.to_owned())
}

fn get(url: &str, accept: &str) -> Option<Vec<u8>> {
    let out = Command::new("curl").args(["-sf", "-H", &format!("Accept: {accept}"), url]).output().unwrap();
    out.status.success().then_some(out.stdout)
}

/// The referrers of `digest`, polled until `n` are there.
fn referrers(base: &str, repo: &str, digest: &str, n: usize) -> Vec<serde_json::Value> {
    let started = Instant::now();
    loop {
        let body = get(&format!("{base}/v2/{repo}/referrers/{digest}"), "application/vnd.oci.image.index.v1+json").expect("referrers answer");
        let index: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let list = index["manifests"].as_array().cloned().unwrap_or_default();
        if list.len() >= n {
            return list;
        }
        assert!(started.elapsed() < Duration::from_secs(90), "{n} referrers of {digest} did not appear: {index}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The one layer of the artifact of `artifact_type` among `list`.
fn artifact(base: &str, repo: &str, list: &[serde_json::Value], artifact_type: &str) -> Vec<u8> {
    let d = list.iter().find(|m| m["artifactType"] == artifact_type).unwrap_or_else(|| panic!("no {artifact_type} in {list:?}"));
    let manifest = get(&format!("{base}/v2/{repo}/manifests/{}", d["digest"].as_str().unwrap()), "application/vnd.oci.image.manifest.v1+json").unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    get(&format!("{base}/v2/{repo}/blobs/{}", manifest["layers"][0]["digest"].as_str().unwrap()), "*/*").unwrap()
}

#[test]
fn every_push_is_inspected_and_its_sbom_and_report_are_referrers() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    run(customs().to_str().unwrap(), &["db", "import", fixtures().to_str().unwrap(), "--data", data.to_str().unwrap()]);
    let env = [("CUSTOMS_INSPECTION__POLL_MS", "100")];
    let server = ServerProcess::start_with(customs(), &data, &env).unwrap();
    let base = server.url();
    let layout = tmp.path().join("layout");
    let first = image(&layout, "one", "one", true);
    run("skopeo", &["--insecure-policy", "copy", "--quiet", "--dest-tls-verify=false", &format!("oci:{}:one", layout.display()), &format!("docker://{}/team/app:1", server.addr)]);
    let list = referrers(&base, "team/app", &first, 2);
    assert_eq!(list.len(), 2, "an SBOM and a report, nothing else: {list:?}");
    let report: serde_json::Value = serde_json::from_slice(&artifact(&base, "team/app", &list, "application/vnd.customs.report.v1+json")).unwrap();
    assert_eq!(report["schema"], "customs.report/v1");
    assert_eq!(report["target"]["digest"], first);
    assert!(report["db"]["version"].as_str().unwrap().starts_with("sha256:"), "matched against the imported DB");
    let log4shell = report["vulnerabilities"].as_array().unwrap().iter().find(|v| v["id"] == "CVE-2021-44228").expect("Log4Shell found");
    assert_eq!(log4shell["purl"], "pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1");
    assert!(report["secrets"].as_array().unwrap().iter().any(|s| s["rule"] == "github-pat" && s["path"] == "app/.env"));
    let sbom = artifact(&base, "team/app", &list, "application/vnd.cyclonedx+json");
    let sbom_file = tmp.path().join("sbom.json");
    std::fs::write(&sbom_file, &sbom).unwrap();
    let python = std::env::var("TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/validate-sbom.py");
    let out = Command::new(python).arg(script).arg("cyclonedx").arg(&sbom_file).output().unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // The same image pushed to a second repository: its report is reused, and attached there too,
    // naming that repository; the first keeps its two.
    run("skopeo", &["--insecure-policy", "copy", "--quiet", "--dest-tls-verify=false", &format!("oci:{}:one", layout.display()), &format!("docker://{}/team/copy:1", server.addr)]);
    let copied = referrers(&base, "team/copy", &first, 2);
    let again: serde_json::Value = serde_json::from_slice(&artifact(&base, "team/copy", &copied, "application/vnd.customs.report.v1+json")).unwrap();
    assert_eq!(again["target"]["name"], format!("team/copy@{first}"));
    assert_eq!((&again["packages"], &again["vulnerabilities"], &again["scanned_at"]), (&report["packages"], &report["vulnerabilities"], &report["scanned_at"]), "the same report, not read again");
    assert!(copied.iter().any(|m| m["artifactType"] == "application/vnd.cyclonedx+json"), "{copied:?}");
    assert_eq!(referrers(&base, "team/app", &first, 2).len(), 2);
    // Tags are untouched by the attachments.
    let tags: serde_json::Value = serde_json::from_slice(&get(&format!("{base}/v2/team/app/tags/list"), "*/*").unwrap()).unwrap();
    assert_eq!(tags["tags"], serde_json::json!(["1"]));
    // The gate: the shipped policy blocks a planted credential and a critical CVE with a fix.
    let (status, _, body) = fetch(&format!("{base}/v2/team/app/manifests/1"));
    assert_eq!(status, 403, "{body}");
    let error: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["errors"][0]["code"], "DENIED");
    let message = error["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("blocked by policy paved-road.rego") && message.contains("secret: github-pat in app/.env"), "{message}");
    assert!(message.contains("CVE-2021-44228"), "{message}");
    // Its blobs are not handed out by digest either (HEAD stays open for pushers).
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("blobs/sha256").join(first.trim_start_matches("sha256:"))).unwrap()).unwrap();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap();
    let (status, _, body) = fetch(&format!("{base}/v2/team/app/blobs/{layer}"));
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("blocked by policy"), "{body}");
    let head = Command::new("curl").args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-I", &format!("{base}/v2/team/app/blobs/{layer}")]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&head.stdout), "200");
    let out = Command::new("skopeo").args(["inspect", "--tls-verify=false", &format!("docker://{}/team/app:1", server.addr)]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("blocked by policy"), "skopeo shows why: {}", String::from_utf8_lossy(&out.stderr));
    // A clean image is served once judged: the pull waits for the verdict.
    let clean = image(&layout, "clean", "clean", false);
    run("skopeo", &["--insecure-policy", "copy", "--quiet", "--dest-tls-verify=false", &format!("oci:{}:clean", layout.display()), &format!("docker://{}/team/clean:1", server.addr)]);
    let back = tmp.path().join("back");
    run("skopeo", &["--insecure-policy", "copy", "--quiet", "--src-tls-verify=false", &format!("docker://{}/team/clean:1", server.addr), &format!("oci:{}:clean", back.display())]);
    assert!(referrers(&base, "team/clean", &clean, 2).len() == 2);
    assert!(server.stop());

    // Pushed while no worker runs here: the job waits in the records, a pull waits up to the gate's
    // budget and gets 429 with Retry-After, and the image is judged after a restart.
    let server = ServerProcess::start_with(customs(), &data, &[("CUSTOMS_INSPECTION__WORKERS", "0"), ("CUSTOMS_GATE__WAIT_SECS", "1")]).unwrap();
    let second = image(&layout, "two", "two", false);
    run("skopeo", &["--insecure-policy", "copy", "--quiet", "--dest-tls-verify=false", &format!("oci:{}:two", layout.display()), &format!("docker://{}/team/app:2", server.addr)]);
    std::thread::sleep(Duration::from_millis(500));
    let index: serde_json::Value = serde_json::from_slice(&get(&format!("{}/v2/team/app/referrers/{second}", server.url()), "*/*").unwrap()).unwrap();
    assert_eq!(index["manifests"], serde_json::json!([]), "not inspected while the workers are off");
    let started = Instant::now();
    let (status, head, body) = fetch(&format!("{}/v2/team/app/manifests/2", server.url()));
    assert_eq!(status, 429, "{body}");
    assert!(head.contains("retry-after: 5"), "{head}");
    assert!(started.elapsed() >= Duration::from_millis(900), "the pull waited for a verdict first");
    assert!(body.contains("TOOMANYREQUESTS"), "{body}");
    assert!(server.stop());
    let server = ServerProcess::start_with(customs(), &data, &env).unwrap();
    let list = referrers(&server.url(), "team/app", &second, 2);
    let report: serde_json::Value = serde_json::from_slice(&artifact(&server.url(), "team/app", &list, "application/vnd.customs.report.v1+json")).unwrap();
    assert_eq!(report["target"]["digest"], second);
    let (status, _, _) = fetch(&format!("{}/v2/team/app/manifests/2", server.url()));
    assert_eq!(status, 200, "judged and allowed after the restart");
    assert!(server.stop());
}

/// Copies `from` into `to`, leaving out the directories named in `skip`.
fn copy_tree(from: &Path, to: &Path, skip: &[&str]) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if skip.contains(&name.as_str()) {
            continue;
        }
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &to.join(&name), skip);
        } else {
            std::fs::copy(e.path(), to.join(&name)).unwrap();
        }
    }
}

fn status_of(base: &str, path: &str) -> u16 {
    fetch(&format!("{base}{path}")).0
}

#[test]
fn new_advisories_rejudge_stored_images_without_reading_their_layers() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    // Advisories without the Maven records first.
    let partial = tmp.path().join("partial");
    copy_tree(&fixtures(), &partial, &["Maven"]);
    let customs_bin = customs().to_str().unwrap();
    run(customs_bin, &["db", "import", partial.to_str().unwrap(), "--data", data.to_str().unwrap()]);
    let log = tmp.path().join("server.log");
    let server = ServerProcess::start_logged(customs(), &data, &[("CUSTOMS_INSPECTION__POLL_MS", "100"), ("CUSTOMS_LOG", "info")], &log).unwrap();
    let base = server.url();
    // A Python image beside it: the Maven records to come cannot touch it.
    let py = tmp.path().join("py");
    let py_layer = tar_gz(&[("usr/lib/python3/dist-packages/jinja2-2.7.1.dist-info/METADATA", b"Metadata-Version: 2.1\nName: Jinja2\nVersion: 2.7.1\n\n")]);
    let config = serde_json::json!({"architecture": "amd64", "os": "linux", "config": {"User": "app"}, "rootfs": {"type": "layers", "diff_ids": []}});
    test_support::write_image(&py, "py", &config, vec![py_layer]).unwrap();
    run("skopeo", &["--insecure-policy", "copy", "--quiet", "--dest-tls-verify=false", &format!("oci:{}:py", py.display()), &format!("docker://{}/team/py:1", server.addr)]);
    // log4j-core 2.14.1, and no secret: only the advisories can block it.
    let layout = tmp.path().join("layout");
    let layer = tar_gz(&[("opt/app/log4j-core.jar", &jar("org.apache.logging.log4j", "log4j-core", "2.14.1"))]);
    let layer_digest = oci::Digest::sha256_of(&layer);
    let config = serde_json::json!({"architecture": "amd64", "os": "linux", "config": {"User": "app"}, "rootfs": {"type": "layers", "diff_ids": []}});
    test_support::write_image(&layout, "log4j", &config, vec![layer]).unwrap();
    run("skopeo", &["--insecure-policy", "copy", "--quiet", "--dest-tls-verify=false", &format!("oci:{}:log4j", layout.display()), &format!("docker://{}/team/java:1", server.addr)]);
    assert_eq!(status_of(&base, "/v2/team/java/manifests/1"), 200, "no Maven advisories yet: allowed");
    assert_eq!(status_of(&base, "/v2/team/py/manifests/1"), 200, "judged: only warnings");
    // Take the layer away: re-judging must not need it.
    let stored = test_support::stored_blob_path(&data, &layer_digest);
    assert!(stored.exists(), "the layer is stored at {}", stored.display());
    std::fs::remove_file(&stored).unwrap();

    let wait_for = |want: u16| {
        let started = Instant::now();
        loop {
            let (status, _, body) = fetch(&format!("{base}/v2/team/java/manifests/1"));
            if status == want {
                return body;
            }
            assert!(started.elapsed() < Duration::from_secs(60), "still {status}, waiting for {want}: {body}");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    // Log4Shell arrives: the stored image is blocked.
    run(customs_bin, &["db", "import", fixtures().join("osv/Maven").to_str().unwrap(), "--data", data.to_str().unwrap()]);
    let body = wait_for(403);
    assert!(body.contains("CVE-2021-44228"), "{body}");
    // The update touched Maven's log4j-core alone: the Python image's matches stand without being
    // matched again, and its verdict with them (jinja2 2.7.1 has advisories: it was matched before).
    let py_report = |base: &str| -> serde_json::Value {
        let digest = fetch(&format!("{base}/v2/team/py/manifests/1")).1;
        let digest = digest.lines().find_map(|l| l.strip_prefix("docker-content-digest: ")).unwrap().trim().to_owned();
        let (status, _, body) = fetch(&format!("{base}/api/v1/images/team/py/{digest}/report"));
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    };
    let report = py_report(&base);
    assert!(report["report"]["vulnerabilities"].as_array().is_some_and(|v| v.iter().any(|v| v["package"].as_str().is_some_and(|p| p.eq_ignore_ascii_case("jinja2")))), "{report}");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.lines().any(|l| l.contains("judged again") && l.contains("untouched=1")), "{logged}");
    // Which images does Log4Shell hit? Asked by an alias, answered with repository and tags.
    let hits = |id: &str| -> serde_json::Value {
        let (status, _, body) = fetch(&format!("{base}/api/v1/vulnerabilities/{id}/images"));
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["images"].clone()
    };
    let images = hits("GHSA-jfh8-c2jp-5v3q");
    assert_eq!(images.as_array().map(Vec::len), Some(1), "{images}");
    assert_eq!((images[0]["repository"].as_str(), &images[0]["tags"], images[0]["id"].as_str()), (Some("team/java"), &serde_json::json!(["1"]), Some("CVE-2021-44228")));
    assert_eq!(images[0]["fixed_version"], "2.15.0");
    let cli = run(customs_bin, &["query", "vuln", "CVE-2021-44228", "--data", data.to_str().unwrap()]);
    assert!(cli.contains("team/java@") && cli.contains("(1)") && cli.contains("fixed in 2.15.0"), "{cli}");
    // The records are withdrawn: unblocked again.
    let withdrawn = tmp.path().join("withdrawn");
    std::fs::create_dir_all(&withdrawn).unwrap();
    for f in std::fs::read_dir(fixtures().join("osv/Maven")).unwrap().flatten() {
        let mut record: serde_json::Value = serde_json::from_slice(&std::fs::read(f.path()).unwrap()).unwrap();
        record["withdrawn"] = serde_json::json!("2026-11-24T00:00:00Z");
        std::fs::write(withdrawn.join(f.file_name()), serde_json::to_vec(&record).unwrap()).unwrap();
    }
    run(customs_bin, &["db", "import", withdrawn.to_str().unwrap(), "--data", data.to_str().unwrap()]);
    wait_for(200);
    assert_eq!(hits("CVE-2021-44228"), serde_json::json!([]), "re-matched: the rows follow the report");
    assert!(!stored.exists(), "the layer was never needed again");
    assert!(server.stop());
}

#[test]
fn layers_inspected_before_are_not_read_again() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let server = ServerProcess::start_with(customs(), &data, &[("CUSTOMS_INSPECTION__POLL_MS", "100")]).unwrap();
    let base = server.url();
    let layout = tmp.path().join("layout");
    // A shared base layer with a package and a planted token; each image adds its own.
    let env = format!("GITHUB_TOKEN=ghp_{}\n", token());
    let shared = tar_gz(&[("usr/lib/node_modules/left-pad/package.json", br#"{"name":"left-pad","version":"1.3.0"}"#), ("etc/app.env", env.as_bytes())]);
    let shared_digest = oci::Digest::sha256_of(&shared).to_string();
    let config = serde_json::json!({"architecture": "amd64", "os": "linux", "config": {"User": "app"}, "rootfs": {"type": "layers", "diff_ids": []}});
    let own = |name: &str| tar_gz(&[(&format!("srv/{name}/node_modules/{name}/package.json"), format!(r#"{{"name":"{name}","version":"2.0.0"}}"#).as_bytes())]);
    let first = test_support::write_image(&layout, "first", &config, vec![shared.clone(), own("alpha")]).unwrap().to_string();
    let second = test_support::write_image(&layout, "second", &config, vec![shared.clone(), own("beta")]).unwrap().to_string();
    let push = |tag: &str, to: &str| run("skopeo", &["--insecure-policy", "copy", "--quiet", "--dest-tls-verify=false", &format!("oci:{}:{tag}", layout.display()), &format!("docker://{}/team/app:{to}", server.addr)]);
    let report_of = |digest: &str| -> serde_json::Value {
        let list = referrers(&base, "team/app", digest, 2);
        serde_json::from_slice(&artifact(&base, "team/app", &list, "application/vnd.customs.report.v1+json")).unwrap()
    };
    push("first", "1");
    let report = report_of(&first);
    let packages = |r: &serde_json::Value| -> Vec<(String, String)> {
        r["packages"].as_array().unwrap().iter().map(|p| (p["name"].as_str().unwrap().to_owned(), p["layer"].as_str().unwrap_or("").to_owned())).collect()
    };
    assert!(packages(&report).contains(&("left-pad".to_owned(), shared_digest.clone())), "{report}");

    // Spoil the stored bytes of the shared layer (same length, so the push finds it there): a
    // read of it now finds nothing but a broken gzip stream.
    let stored = test_support::stored_blob_path(&data, &shared_digest.parse().unwrap());
    assert_eq!(std::fs::read(&stored).unwrap(), shared, "the layer is stored at {}", stored.display());
    std::fs::write(&stored, vec![0u8; shared.len()]).unwrap();
    push("second", "2");
    let report = report_of(&second);
    // Everything the shared layer holds is there, from its record: it was not read.
    let found = packages(&report);
    assert!(found.contains(&("left-pad".to_owned(), shared_digest.clone())), "{found:?}");
    assert!(found.iter().any(|(name, _)| name == "beta"), "the new layer was read: {found:?}");
    assert_eq!(report["problems"], serde_json::json!([]), "nothing unreadable");
    let secret = report["secrets"].as_array().unwrap().iter().find(|s| s["rule"] == "github-pat").expect("the shared layer's token, from its record");
    assert_eq!((secret["path"].as_str(), secret["layer"].as_str()), (Some("etc/app.env"), Some(shared_digest.as_str())));
    assert_eq!(report["layers"][0], shared_digest);
    assert!(server.stop());
}

/// The DOM headless Chromium (Debian's) builds from `url`, with the browser's console log.
fn chromium(profile: &Path, url: &str) -> (String, String) {
    let out = Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--enable-logging=stderr", "--v=0"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--dump-dom", url])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("chromium runs");
    assert!(out.status.success(), "chromium {url}: {}", String::from_utf8_lossy(&out.stderr));
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The web UI in a real browser: headless Chromium loads the pages of an image inspected by a real
/// `customs serve`, under their Content-Security-Policy (the stylesheet is fetched, no violation is
/// logged), and the DOM it builds shows the tag, the gate's refusal with its reasons, what the
/// inspection found, the SBOM and report attached as referrers, and the answer to "which of our
/// images contain log4j-core 2.14?".
#[test]
fn the_web_ui_shows_an_inspected_image_in_a_real_browser() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    run(customs().to_str().unwrap(), &["db", "import", fixtures().to_str().unwrap(), "--data", data.to_str().unwrap()]);
    let log = tmp.path().join("serve.log");
    let env = [("CUSTOMS_INSPECTION__POLL_MS", "100"), ("CUSTOMS_LOG", "warn,customs::access=debug")];
    let server = ServerProcess::start_logged(customs(), &data, &env, &log).unwrap();
    let base = server.url();
    let layout = tmp.path().join("layout");
    let bad = image(&layout, "bad", "bad", true);
    let clean = image(&layout, "clean", "clean", false);
    for (tag, to) in [("bad", "team/app:1"), ("clean", "team/clean:1")] {
        run("skopeo", &["--insecure-policy", "copy", "--quiet", "--dest-tls-verify=false", &format!("oci:{}:{tag}", layout.display()), &format!("docker://{}/{to}", server.addr)]);
    }
    referrers(&base, "team/app", &bad, 2);
    referrers(&base, "team/clean", &clean, 2);
    let profile = tmp.path().join("chromium");

    let (dom, console) = chromium(&profile, &format!("{base}/ui/"));
    for repo in ["team/app", "team/clean"] {
        assert!(dom.contains(&format!("<a href=\"/ui/r/{repo}\">{repo}</a>")), "{repo} listed: {dom}");
    }
    assert!(!console.contains("Content Security Policy"), "{console}");

    let (dom, _) = chromium(&profile, &format!("{base}/ui/r/team/app"));
    assert!(dom.contains("<td class=\"tag\">1</td>") && dom.contains(&format!("/ui/r/team/app/manifests/{bad}")), "{dom}");
    assert!(dom.contains("<span class=\"badge blocked\">blocked</span>"), "{dom}");
    let (dom, _) = chromium(&profile, &format!("{base}/ui/r/team/clean"));
    assert!(dom.contains("<span class=\"badge allowed\">allowed</span>"), "{dom}");

    let (dom, console) = chromium(&profile, &format!("{base}/ui/r/team/app/manifests/{bad}"));
    assert!(dom.contains("Pulls are refused by policy <b>paved-road.rego</b>"), "{dom}");
    assert!(dom.contains("secret: github-pat in app/.env"), "the reasons: {dom}");
    assert!(dom.contains("<a href=\"/ui/search?vulnerability=CVE-2021-44228\">CVE-2021-44228</a>"), "{dom}");
    assert!(dom.contains("<td>org.apache.logging.log4j:log4j-core</td><td>2.14.1</td>"), "{dom}");
    let redacted = dom.split("<code>ghp_").nth(1).unwrap_or_else(|| panic!("the token: {dom}"));
    assert!(redacted.starts_with("***"), "shown redacted: {dom}");
    for artifact_type in ["application/vnd.cyclonedx+json", "application/vnd.customs.report.v1+json"] {
        assert!(dom.contains(&format!("<td>{artifact_type}</td>")), "{artifact_type} attached: {dom}");
    }
    assert!(!console.contains("Content Security Policy"), "{console}");

    let (dom, _) = chromium(&profile, &format!("{base}/ui/search?package=log4j-core&version=2.14"));
    assert!(dom.contains("1 images hold log4j-core 2.14."), "{dom}");
    assert!(dom.contains(&format!("/ui/r/team/app/manifests/{bad}")) && !dom.contains("/ui/r/team/clean/manifests"), "{dom}");
    assert!(server.stop());
    // The browser fetched the stylesheet: its CSP let it.
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.lines().any(|l| l.contains("/ui/style.css") && l.contains("200")), "{log}");
}

//! `customs scan` and `customs db` end to end: an image built here (a dpkg status file with
//! os-release, Python site-packages, a node_modules tree, a Spring Boot jar with log4j inside, a
//! Cargo.lock, a Go binary from `go build`) is scanned as an OCI layout, as a `docker save`
//! archive written by skopeo, from a running customs (with authentication, through the token
//! flow) and as a root filesystem. Every package must be found with its purl, the expected
//! advisories must match, and the SBOMs must pass their formats' validators.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use test_support::ServerProcess;

fn customs() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_customs"))
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../advisories/tests/data")
}

fn cli(args: &[&str], env: &[(&str, &str)], stdin: &str) -> Output {
    let mut child = Command::new(customs())
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("customs runs");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn cli_ok(args: &[&str]) -> String {
    let out = cli(args, &[], "");
    assert!(out.status.success(), "customs {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn run(program: &str, args: &[&str], dir: Option<&Path>, env: &[(&str, &str)]) -> String {
    let mut c = Command::new(program);
    c.args(args).envs(env.iter().copied());
    if let Some(d) = dir {
        c.current_dir(d);
    }
    let out = c.output().unwrap_or_else(|e| panic!("{program} is not runnable ({e}); scripts/test.sh installs it"));
    assert!(out.status.success(), "{program} {args:?}:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn tar_layer(files: &[(&str, &[u8], u32)]) -> Vec<u8> {
    test_support::layer_tar_gz(files)
}

fn jar(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, data) in entries {
        zip.start_file(*name, zip::write::SimpleFileOptions::default()).unwrap();
        zip.write_all(data).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

fn go_binary(dir: &Path) -> Vec<u8> {
    std::fs::create_dir_all(dir.join("app")).unwrap();
    std::fs::create_dir_all(dir.join("text")).unwrap();
    std::fs::write(dir.join("text/go.mod"), "module golang.org/x/text\n\ngo 1.18\n").unwrap();
    std::fs::write(dir.join("text/text.go"), "package text\n\nfunc Hello() string { return \"hello\" }\n").unwrap();
    std::fs::write(dir.join("app/go.mod"), "module example.com/app\n\ngo 1.18\n\nrequire golang.org/x/text v0.3.6\n\nreplace golang.org/x/text v0.3.6 => ../text\n").unwrap();
    std::fs::write(dir.join("app/main.go"), "package main\n\nimport (\n\t\"fmt\"\n\t\"golang.org/x/text\"\n)\n\nfunc main() { fmt.Println(text.Hello()) }\n").unwrap();
    let cache = dir.join("cache");
    let gopath = dir.join("gopath");
    run(
        "go",
        &["build", "-o", "../app-bin", "."],
        Some(&dir.join("app")),
        &[("GOFLAGS", "-mod=mod"), ("GOPROXY", "off"), ("GOCACHE", cache.to_str().unwrap()), ("GOPATH", gopath.to_str().unwrap())],
    );
    std::fs::read(dir.join("app-bin")).unwrap()
}

/// The image: three layers, as an OCI layout at `dir` tagged `app`.
fn build_image(work: &Path, dir: &Path) {
    let status = "Package: base-files\nStatus: install ok installed\nArchitecture: amd64\nVersion: 11.1+deb11u5\nDescription: base\n\n\
                  Package: libssl1.1\nStatus: install ok installed\nArchitecture: amd64\nSource: openssl\nVersion: 1.1.1n-0+deb11u3\nDescription: ssl\n\n";
    let os_release = "PRETTY_NAME=\"Debian GNU/Linux 11 (bullseye)\"\nID=debian\nVERSION_ID=\"11\"\nVERSION_CODENAME=bullseye\n";
    let base = tar_layer(&[("usr/lib/os-release", os_release.as_bytes(), 0o644), ("var/lib/dpkg/status", status.as_bytes(), 0o644)]);
    let log4j = jar(&[
        ("META-INF/MANIFEST.MF", b"Manifest-Version: 1.0\n\n"),
        ("META-INF/maven/org.apache.logging.log4j/log4j-core/pom.properties", b"groupId=org.apache.logging.log4j\nartifactId=log4j-core\nversion=2.14.1\n"),
    ]);
    let app_jar = jar(&[
        ("META-INF/MANIFEST.MF", b"Manifest-Version: 1.0\nMain-Class: org.springframework.boot.loader.JarLauncher\n\n"),
        ("META-INF/maven/com.example/app/pom.properties", b"groupId=com.example\nartifactId=app\nversion=1.0.0\n"),
        ("BOOT-INF/lib/log4j-core-2.14.1.jar", &log4j),
    ]);
    let langs = tar_layer(&[
        ("usr/lib/python3/dist-packages/requests-2.30.0.dist-info/METADATA", b"Metadata-Version: 2.1\nName: requests\nVersion: 2.30.0\n\n", 0o644),
        ("srv/app/node_modules/lodash/package.json", br#"{"name":"lodash","version":"4.17.20"}"#, 0o644),
        ("srv/app/node_modules/node-fetch/package.json", br#"{"name":"node-fetch","version":"2.6.1"}"#, 0o644),
        ("opt/app/app.jar", &app_jar, 0o644),
    ]);
    let lock = "version = 3\n\n[[package]]\nname = \"smallvec\"\nversion = \"1.6.0\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n";
    let bin = go_binary(&work.join("go"));
    let tools = tar_layer(&[("src/tool/Cargo.lock", lock.as_bytes(), 0o644), ("usr/local/bin/app", &bin, 0o755)]);
    let config = serde_json::json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}, "config": {}});
    test_support::write_image(dir, "app", &config, vec![base, langs, tools]).unwrap();
}

/// (package, vulnerability id) pairs in a JSON report.
fn findings(report: &serde_json::Value) -> Vec<(String, String)> {
    report["vulnerabilities"].as_array().unwrap().iter().map(|v| (v["package"].as_str().unwrap().to_owned(), v["id"].as_str().unwrap().to_owned())).collect()
}

fn findings_by_severity(report: &serde_json::Value) -> Vec<String> {
    report["vulnerabilities"].as_array().unwrap().iter().map(|v| v["severity"].as_str().unwrap().to_owned()).collect()
}

fn purls(report: &serde_json::Value) -> Vec<String> {
    report["packages"].as_array().unwrap().iter().map(|p| p["purl"].as_str().unwrap().to_owned()).collect()
}

const EXPECTED_PURLS: &[&str] = &[
    "pkg:deb/debian/base-files@11.1%2Bdeb11u5?arch=amd64&distro=debian-11",
    "pkg:deb/debian/libssl1.1@1.1.1n-0%2Bdeb11u3?arch=amd64&distro=debian-11&upstream=openssl",
    "pkg:pypi/requests@2.30.0",
    "pkg:npm/lodash@4.17.20",
    "pkg:npm/node-fetch@2.6.1",
    "pkg:maven/com.example/app@1.0.0",
    "pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1",
    "pkg:cargo/smallvec@1.6.0",
    "pkg:golang/golang.org/x/text@v0.3.6",
];

const EXPECTED_FINDINGS: &[(&str, &str)] = &[
    ("libssl1.1", "CVE-2023-0286"),
    ("libssl1.1", "CVE-2022-4450"),
    ("requests", "CVE-2023-32681"),
    ("lodash", "CVE-2020-28500"),
    ("node-fetch", "CVE-2022-0235"),
    ("org.apache.logging.log4j:log4j-core", "CVE-2021-44228"),
    ("smallvec", "CVE-2021-25900"),
    ("golang.org/x/text", "CVE-2021-38561"),
    ("golang.org/x/text", "CVE-2022-32149"),
];

#[track_caller]
fn check(report: &serde_json::Value, what: &str) {
    let found = purls(report);
    for p in EXPECTED_PURLS {
        assert!(found.iter().any(|f| f == p), "{what}: {p} not found in {found:#?}");
    }
    let f = findings(report);
    for (pkg, id) in EXPECTED_FINDINGS {
        assert!(f.iter().any(|(p, i)| p == pkg && i == id), "{what}: {id} in {pkg} not reported; got {f:#?}");
    }
    assert!(!f.iter().any(|(p, _)| p == "base-files" || p == "com.example:app"), "{what}: a clean package was reported: {f:#?}");
    assert!(report["problems"].as_array().unwrap().is_empty(), "{what}: {}", report["problems"]);
}

fn python() -> String {
    std::env::var("TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

fn validate(kind: &str, file: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/validate-sbom.py");
    let out = Command::new(python()).arg(&script).arg(kind).arg(file).output().expect("python runs");
    assert!(
        out.status.success(),
        "{kind} validation failed (scripts/test.sh provides the validators in TEST_PYTHON):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn scan_finds_every_package_and_its_advisories_in_every_kind_of_target() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("advisories.db");
    let db_s = db.to_str().unwrap();
    let imported = cli_ok(&["db", "import", fixtures().to_str().unwrap(), "--db", db_s]);
    assert!(imported.contains("advisories, version sha256:"), "{imported}");
    let status = cli_ok(&["db", "status", "--db", db_s]);
    assert!(status.contains("Maven") && status.contains("Debian:11"), "{status}");

    let layout = tmp.path().join("layout");
    build_image(tmp.path(), &layout);

    // 1. The OCI layout, as JSON.
    let target = format!("{}:app", layout.display());
    let json: serde_json::Value = serde_json::from_str(&cli_ok(&["scan", &target, "--db", db_s, "--format", "json"])).unwrap();
    assert_eq!(json["schema"], "customs.report/v1");
    assert_eq!(json["target"]["kind"], "oci-layout");
    assert_eq!(json["os"]["id"], "debian");
    for key in ["packages", "vulnerabilities", "problems", "secrets", "malware", "misconfigurations", "layers"] {
        assert!(json[key].is_array(), "{key} is an array");
    }
    check(&json, "oci layout");
    let log4shell = json["vulnerabilities"].as_array().unwrap().iter().find(|v| v["id"] == "CVE-2021-44228").unwrap();
    assert_eq!(log4shell["fixed_version"], "2.15.0");
    assert_eq!(log4shell["severity"], "CRITICAL");
    assert_eq!(log4shell["cvss_score"], 10.0);
    assert_eq!(log4shell["installed_version"], "2.14.1");
    assert_eq!(log4shell["aliases"], serde_json::json!(["GHSA-jfh8-c2jp-5v3q"]));
    assert_eq!(log4shell["path"], "opt/app/app.jar!/BOOT-INF/lib/log4j-core-2.14.1.jar");
    let layers = json["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 3);
    assert_eq!(log4shell["layer"], layers[1], "log4j came in the second layer");
    let ssl = json["packages"].as_array().unwrap().iter().find(|p| p["name"] == "libssl1.1").unwrap();
    assert_eq!(ssl["layer"], layers[0]);

    // 2. SBOMs, validated by their formats' own tools.
    for (format, kind) in [("cyclonedx", "cyclonedx"), ("spdx", "spdx")] {
        let out = tmp.path().join(format!("sbom.{format}.json"));
        cli_ok(&["scan", &target, "--db", db_s, "--format", format, "--output", out.to_str().unwrap()]);
        validate(kind, &out);
        let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
        let text = doc.to_string();
        for p in EXPECTED_PURLS {
            assert!(text.contains(&p.replace('&', "\\u0026")) || text.contains(p), "{format}: {p} missing");
        }
        if format == "cyclonedx" {
            let v = doc["vulnerabilities"].as_array().unwrap();
            assert!(v.iter().any(|v| v["id"] == "CVE-2021-44228" && v["ratings"][0]["severity"] == "critical"));
        }
    }
    let sarif: serde_json::Value = serde_json::from_str(&cli_ok(&["scan", &target, "--db", db_s, "--format", "sarif"])).unwrap();
    assert_eq!(sarif["version"], "2.1.0");
    assert!(sarif["runs"][0]["results"].as_array().unwrap().iter().any(|r| r["ruleId"] == "CVE-2021-44228" && r["level"] == "error"));

    // 3. Filters and CI gating.
    let crit: serde_json::Value = serde_json::from_str(&cli_ok(&["scan", &target, "--db", db_s, "--format", "json", "--severity", "CRITICAL"])).unwrap();
    assert!(crit["vulnerabilities"].as_array().unwrap().iter().all(|v| v["severity"] == "CRITICAL"));
    assert!(findings(&crit).iter().any(|(_, id)| id == "CVE-2021-44228"));
    let out = cli(&["scan", &target, "--db", db_s, "--exit-code", "3"], &[], "");
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.contains("CRITICAL") && table.contains("CVE-2021-44228") && table.contains("log4j-core 2.14.1"), "{table}");
    let unfixed: serde_json::Value = serde_json::from_str(&cli_ok(&["scan", &target, "--db", db_s, "--format", "json", "--ignore-unfixed"])).unwrap();
    assert!(unfixed["vulnerabilities"].as_array().unwrap().iter().all(|v| !v["fixed_version"].is_null()));
    // A severity nothing has: exit 0 even with --exit-code.
    let all = findings_by_severity(&unfixed);
    let empty = ["LOW", "MEDIUM", "HIGH", "UNKNOWN"].into_iter().find(|s| !all.contains(&s.to_string())).expect("some severity is absent");
    let out = cli(&["scan", &target, "--db", db_s, "--scanners", "vuln", "--exit-code", "3", "--severity", empty, "--ignore-unfixed"], &[], "");
    assert_eq!(out.status.code(), Some(0), "nothing left after the filters: exit 0");

    // 4. A docker save archive, written by skopeo.
    let archive = tmp.path().join("app.tar");
    run("skopeo", &["--insecure-policy", "copy", &format!("oci:{}:app", layout.display()), &format!("docker-archive:{}:team/app:1", archive.display())], None, &[]);
    let json: serde_json::Value = serde_json::from_str(&cli_ok(&["scan", archive.to_str().unwrap(), "--db", db_s, "--format", "json"])).unwrap();
    assert_eq!(json["target"]["kind"], "docker-archive");
    check(&json, "docker archive");

    // 5. A registry with authentication: pushed with skopeo, scanned through the token flow.
    let data = tmp.path().join("data");
    let admin = auth::password::new_robot_secret();
    let server = ServerProcess::start_with(
        customs(),
        &data,
        &[
            ("CUSTOMS_AUTH__ENABLED", "true"),
            ("CUSTOMS_AUTH__ADMIN_USER", "admin"),
            ("CUSTOMS_AUTH__ADMIN_PASSWORD", admin.as_str()),
            ("CUSTOMS_AUTH__REFRESH_SECS", "1"),
        ],
    )
    .unwrap();
    let host = server.url().trim_start_matches("http://").to_owned();
    let creds = format!("admin:{admin}");
    run(
        "skopeo",
        &["--insecure-policy", "copy", "--dest-tls-verify=false", "--dest-creds", &creds, &format!("oci:{}:app", layout.display()), &format!("docker://{host}/team/app:1")],
        None,
        &[],
    );
    let reference = format!("{host}/team/app:1");
    let anonymous = cli(&["scan", &reference, "--db", db_s], &[], "");
    assert!(!anonymous.status.success());
    let err = String::from_utf8_lossy(&anonymous.stderr);
    assert!(err.contains("401") || err.contains("authentication"), "{err}");
    let out = cli(&["scan", &reference, "--db", db_s, "--format", "json", "--username", "admin", "--password-stdin"], &[], &admin);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["target"]["kind"], "registry");
    assert!(json["target"]["digest"].as_str().unwrap().starts_with("sha256:"));
    check(&json, "registry");
    // Anonymous pulls granted on the namespace: the scan gets an anonymous token from the realm.
    cli_ok(&["role", "grant", "anonymous", "reader", "team/**", "--data", data.to_str().unwrap()]);
    let mut anonymous = None;
    for _ in 0..50 {
        let out = cli(&["scan", &reference, "--db", db_s, "--format", "json"], &[], "");
        if out.status.success() {
            anonymous = Some(out);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let out = anonymous.expect("an anonymous scan works once anonymous may pull");
    check(&serde_json::from_slice(&out.stdout).unwrap(), "registry, anonymous");
    drop(server);

    // 6. The same files as a root filesystem.
    let root = tmp.path().join("rootfs");
    for layer in std::fs::read_dir(layout.join("blobs/sha256")).unwrap().flatten() {
        let bytes = std::fs::read(layer.path()).unwrap();
        if bytes.starts_with(&[0x1f, 0x8b]) {
            tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..])).unpack(&root).unwrap();
        }
    }
    let json: serde_json::Value = serde_json::from_str(&cli_ok(&["scan", root.to_str().unwrap(), "--db", db_s, "--format", "json"])).unwrap();
    assert_eq!(json["target"]["kind"], "rootfs");
    check(&json, "rootfs");
}

#[test]
fn scan_without_a_db_says_what_to_do_and_skip_db_lists_packages() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir_all(root.join("n/node_modules/minimist")).unwrap();
    std::fs::write(root.join("n/node_modules/minimist/package.json"), r#"{"name":"minimist","version":"1.2.5"}"#).unwrap();
    let missing = tmp.path().join("none.db");
    let out = cli(&["scan", root.to_str().unwrap(), "--db", missing.to_str().unwrap()], &[], "");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("customs db import") && err.contains("--skip-db"), "{err}");
    let json: serde_json::Value = serde_json::from_str(&cli_ok(&["scan", root.to_str().unwrap(), "--skip-db", "--format", "json"])).unwrap();
    assert_eq!(purls(&json), vec!["pkg:npm/minimist@1.2.5"]);
    assert!(json["db"].is_null());
    let out = cli(&["scan", "no/such/thing:here", "--skip-db"], &[], "");
    assert!(!out.status.success());
}

#[test]
fn db_update_downloads_osv_zips_from_a_mirror() {
    let tmp = tempfile::tempdir().unwrap();
    let mirror = tmp.path().join("mirror");
    for eco in ["Maven", "npm", "PyPI"] {
        std::fs::create_dir_all(mirror.join(eco)).unwrap();
        let mut zip = zip::ZipWriter::new(std::fs::File::create(mirror.join(eco).join("all.zip")).unwrap());
        for f in std::fs::read_dir(fixtures().join("osv").join(eco)).unwrap().flatten() {
            zip.start_file(f.file_name().to_string_lossy(), zip::write::SimpleFileOptions::default()).unwrap();
            zip.write_all(&std::fs::read(f.path()).unwrap()).unwrap();
        }
        zip.finish().unwrap();
    }
    // Python's http.server on a free loopback port, serving the mirror.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut server = Command::new("python3")
        .args(["-m", "http.server", "--bind", "127.0.0.1", &port.to_string(), "--directory"])
        .arg(&mirror)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let db = tmp.path().join("data/advisories.db");
    let db_s = db.to_str().unwrap();
    let out = cli(&["db", "update", "--db", db_s, "--url", &url, "--ecosystem", "Maven", "--ecosystem", "npm", "--ecosystem", "RubyGems"], &[], "");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "RubyGems is not on the mirror: the command says so");
    assert!(stderr.contains("RubyGems") && stderr.contains("404"), "{stderr}");
    assert!(stdout.contains("Maven/all.zip: 1 files, 10 new"), "{stdout}");
    let status: serde_json::Value = serde_json::from_str(&cli_ok(&["db", "status", "--db", db_s, "--json"])).unwrap();
    assert!(status["ecosystems"]["Maven"].as_u64().unwrap() > 0 && status["ecosystems"]["npm"].as_u64().unwrap() > 0);
    let v1 = status["digest"].as_str().unwrap().to_owned();
    // Via the config's settings this time, and with one more ecosystem: a new DB version.
    let out = cli(&["db", "update", "--db", db_s], &[("CUSTOMS_ADVISORIES__UPDATE_URL", url.as_str()), ("CUSTOMS_ADVISORIES__ECOSYSTEMS", "[\"PyPI\"]")], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let status: serde_json::Value = serde_json::from_str(&cli_ok(&["db", "status", "--db", db_s, "--json"])).unwrap();
    assert!(status["ecosystems"]["PyPI"].as_u64().unwrap() > 0);
    assert_ne!(status["digest"].as_str().unwrap(), v1);
    // A mirror that is down changes nothing.
    let _ = server.kill();
    let _ = server.wait();
    let out = cli(&["db", "update", "--db", db_s, "--url", &url, "--ecosystem", "npm"], &[], "");
    assert!(!out.status.success());
    let again: serde_json::Value = serde_json::from_str(&cli_ok(&["db", "status", "--db", db_s, "--json"])).unwrap();
    assert_eq!(again["digest"], status["digest"]);
}

#[test]
fn a_multi_arch_index_is_resolved_to_the_asked_platform() {
    let tmp = tempfile::tempdir().unwrap();
    let amd = test_support::ImageBuilder::new(11).layer(2, 100).arch("amd64").build();
    let arm = test_support::ImageBuilder::new(12).layer(2, 100).arch("arm64").build();
    let index = test_support::Index::new(vec![amd.clone(), arm.clone()]);
    let layout = tmp.path().join("layout");
    index.write_layout(&layout, "multi").unwrap();
    let target = format!("{}:multi", layout.display());
    for (platform, image) in [("linux/amd64", &amd), ("linux/arm64", &arm)] {
        let json: serde_json::Value = serde_json::from_str(&cli_ok(&["scan", &target, "--skip-db", "--platform", platform, "--format", "json"])).unwrap();
        assert_eq!(json["target"]["digest"], image.digest.to_string(), "{platform}");
        let layers: Vec<String> = image.layers.iter().map(|l| l.digest.to_string()).collect();
        assert_eq!(json["layers"], serde_json::json!(layers));
    }
    let out = cli(&["scan", &target, "--skip-db", "--platform", "linux/s390x"], &[], "");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("linux/s390x") && err.contains("linux/amd64") && err.contains("linux/arm64"), "{err}");
}

#[test]
fn a_terminal_sees_a_progress_line_while_layers_are_read() {
    // `script` gives customs a pseudo-terminal for stderr, as a person's shell would.
    let tmp = tempfile::tempdir().unwrap();
    let image = test_support::ImageBuilder::new(21).layer(3, 700_000).build();
    let layout = tmp.path().join("layout");
    image.write_layout(&layout, "big").unwrap();
    let log = tmp.path().join("tty.log");
    let command = format!("{} scan {}:big --skip-db --format json --output {}", customs().display(), layout.display(), tmp.path().join("r.json").display());
    let out = Command::new("script").args(["-qefc", &command]).arg(&log).stdin(Stdio::null()).output().expect("script (bsdutils) runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let seen = std::fs::read_to_string(&log).unwrap();
    assert!(seen.contains("layer 1/1") && seen.contains("MB"), "{seen:?}");
    // Not on a pipe: the JSON on stdout stays clean and stderr quiet.
    let out = cli(&["scan", &format!("{}:big", layout.display()), "--skip-db", "--format", "json"], &[], "");
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A private CA (`dir/{name}-ca.crt`) and a server certificate it signed for 127.0.0.1 and
/// localhost: (CA certificate, server certificate, server key).
fn private_ca(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let p = |f: &str| dir.join(format!("{name}-{f}"));
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl").args(args).current_dir(dir).output().unwrap();
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let s = |p: PathBuf| p.to_str().unwrap().to_owned();
    openssl(&["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", &format!("/CN={name} test CA"), "-keyout", &s(p("ca.key")), "-out", &s(p("ca.crt"))]);
    openssl(&["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", "/CN=localhost", "-keyout", &s(p("server.key")), "-out", &s(p("server.csr"))]);
    std::fs::write(p("ext"), "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n").unwrap();
    openssl(&["x509", "-req", "-in", &s(p("server.csr")), "-CA", &s(p("ca.crt")), "-CAkey", &s(p("ca.key")), "-CAcreateserial", "-days", "1", "-extfile", &s(p("ext")), "-out", &s(p("server.crt"))]);
    (p("ca.crt"), p("server.crt"), p("server.key"))
}

#[test]
fn a_registry_with_a_private_ca_is_scanned_over_https() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, crt, key) = private_ca(tmp.path(), "ours");
    let (other, _, _) = private_ca(tmp.path(), "other");
    let server = ServerProcess::start_with(
        customs(),
        &tmp.path().join("data"),
        &[("CUSTOMS_TLS__CERT_FILE", crt.to_str().unwrap()), ("CUSTOMS_TLS__KEY_FILE", key.to_str().unwrap())],
    )
    .unwrap();
    assert_eq!(server.scheme, "https");
    let image = test_support::ImageBuilder::new(31).layer(2, 1000).build();
    let layout = tmp.path().join("layout");
    image.write_layout(&layout, "v1").unwrap();
    let certs = tmp.path().join("certs.d");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::copy(&ca, certs.join("ca.crt")).unwrap();
    let dest = format!("{}/tls/app:v1", server.addr);
    run("skopeo", &["--insecure-policy", "copy", "--quiet", "--dest-cert-dir", certs.to_str().unwrap(), &format!("oci:{}:v1", layout.display()), &format!("docker://{dest}")], None, &[]);
    let json: serde_json::Value = serde_json::from_str(&cli_ok(&["scan", &dest, "--skip-db", "--ca-file", ca.to_str().unwrap(), "--format", "json"])).unwrap();
    assert_eq!(json["target"]["digest"], image.digest.to_string());
    // Another CA's certificate is not trusted for this server.
    let out = cli(&["scan", &dest, "--skip-db", "--ca-file", other.to_str().unwrap()], &[], "");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    let bad = tmp.path().join("not-a-cert.pem");
    std::fs::write(&bad, "hello").unwrap();
    let out = cli(&["scan", &dest, "--skip-db", "--ca-file", bad.to_str().unwrap()], &[], "");
    assert!(String::from_utf8_lossy(&out.stderr).contains("CA certificates"), "{}", String::from_utf8_lossy(&out.stderr));
}

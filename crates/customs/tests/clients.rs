//! End to end with real clients: skopeo, buildah, podman, containerd and docker against a real
//! `customs serve` on 127.0.0.1:0, and the oras project's Python client. The test command installs
//! the clients from Debian's packages, and oras from PyPI into the test venv (`TEST_PYTHON`).

use std::path::Path;

use test_support::{ImageBuilder, Index, ServerProcess, run, run_command, skopeo};

fn customs() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_customs"))
}

/// Copies `tag` of the OCI layout `src` to the registry reference `to` with skopeo, with `extra`
/// options of `skopeo copy` (`--all`: every platform of an index).
fn skopeo_push(src: &Path, tag: &str, to: &str, extra: &[&str]) {
    let (from, to) = (format!("oci:{}:{tag}", src.display()), format!("docker://{to}"));
    let mut args = vec!["copy", "--dest-tls-verify=false"];
    args.extend_from_slice(extra);
    args.extend([from.as_str(), to.as_str()]);
    skopeo(&args);
}

/// skopeo with `args`, which must fail: its standard error.
fn skopeo_refused(args: &[&str]) -> String {
    let out = std::process::Command::new("skopeo").arg("--insecure-policy").args(args).output().unwrap();
    assert!(!out.status.success(), "skopeo {args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `customs ARGS --data DATA` with `env`, which must fail: its standard error.
fn customs_refused(args: &[&str], data: &Path, env: &[(&str, &str)]) -> String {
    let out = std::process::Command::new(customs())
        .args(args)
        .arg("--data")
        .arg(data)
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "customs {args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The digest recorded for `tag` in an OCI layout's index.json.
fn layout_digest(dir: &Path, tag: &str) -> String {
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .map(|m| m["digest"].as_str().unwrap().to_owned())
        .unwrap_or_else(|| panic!("{tag} not in {index}"))
}

/// A multi-arch index of two small images, seeded `seed` and `seed + 1`.
fn amd64_and_arm64(seed: u64) -> Index {
    Index::new(vec![
        ImageBuilder::new(seed).layer(2, 10_000).arch("amd64").build(),
        ImageBuilder::new(seed + 1).layer(2, 10_000).arch("arm64").build(),
    ])
}

#[test]
fn skopeo_copies_images_in_and_out_with_identical_digests() {
    let tmp = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(customs(), &tmp.path().join("data")).unwrap();
    let host = server.addr.clone();
    let src = tmp.path().join("src");

    let image = ImageBuilder::new(1).layer(3, 40_000).layer(1, 300_000).layer(5, 1000).build();
    image.write_layout(&src, "v1").unwrap();
    // skopeo's oci: transport only reads OCI types; it converts to Docker schema 2 on push.
    let for_docker = ImageBuilder::new(2).layer(2, 5000).layer(1, 70_000).build();
    for_docker.write_layout(&src, "docker").unwrap();
    let index = amd64_and_arm64(3);
    index.write_layout(&src, "multi").unwrap();

    skopeo_push(&src, "v1", &format!("{host}/e2e/app:v1"), &[]);
    skopeo_push(&src, "docker", &format!("{host}/e2e/app:docker"), &["--format", "v2s2"]);
    skopeo_push(&src, "multi", &format!("{host}/e2e/multi:multi"), &["--all"]);

    // The Docker schema 2 manifest: served with its own media type, and a `dir:` copy (which
    // keeps manifest bytes) hashes to the digest the registry reports.
    let docker_ref = format!("docker://{host}/e2e/app:docker");
    let docker_raw = skopeo(&["inspect", "--tls-verify=false", "--raw", &docker_ref]);
    let docker_manifest: serde_json::Value = serde_json::from_str(&docker_raw).unwrap();
    assert_eq!(docker_manifest["mediaType"], oci::media_type::DOCKER_MANIFEST);
    let docker_digest = oci::Digest::sha256_of(docker_raw.as_bytes());
    let dir_copy = tmp.path().join("docker-dir");
    skopeo(&["copy", "--src-tls-verify=false", &docker_ref, &format!("dir:{}", dir_copy.display())]);
    let copied = std::fs::read(dir_copy.join("manifest.json")).unwrap();
    assert_eq!(oci::Digest::sha256_of(&copied), docker_digest);
    for layer in docker_manifest["layers"].as_array().unwrap() {
        let digest: oci::Digest = layer["digest"].as_str().unwrap().parse().unwrap();
        let bytes = std::fs::read(dir_copy.join(digest.hex())).unwrap();
        assert_eq!(oci::Digest::sha256_of(&bytes), digest, "docker layer intact");
    }

    // Back out into a fresh layout: the same digests, byte for byte.
    let out = tmp.path().join("out");
    for (repo, tag, want, all) in [
        ("e2e/app", "v1", image.digest.to_string(), false),
        ("e2e/multi", "multi", index.digest.to_string(), true),
    ] {
        let from = format!("docker://{host}/{repo}:{tag}");
        let to = format!("oci:{}:{tag}", out.display());
        let mut args = vec!["copy", "--src-tls-verify=false"];
        if all {
            args.push("--all");
        }
        args.extend([from.as_str(), to.as_str()]);
        skopeo(&args);
        assert_eq!(layout_digest(&out, tag), want, "{repo}:{tag} came back with another digest");
    }
    for child in &index.images {
        let path = out.join("blobs/sha256").join(child.digest.hex());
        assert_eq!(std::fs::read(path).unwrap(), child.manifest, "child manifest of the index came back");
        for blob in child.blobs() {
            let path = out.join("blobs/sha256").join(blob.digest.hex());
            assert_eq!(std::fs::read(path).unwrap(), blob.bytes, "layer of {} came back", child.arch);
        }
    }

    let raw = skopeo(&["inspect", "--tls-verify=false", "--raw", &format!("docker://{host}/e2e/app:v1")]);
    assert_eq!(raw.as_bytes(), &image.manifest[..], "the manifest is served byte for byte");
    let inspect: serde_json::Value =
        serde_json::from_str(&skopeo(&["inspect", "--tls-verify=false", &format!("docker://{host}/e2e/app:v1")])).unwrap();
    assert_eq!(inspect["Digest"], image.digest.to_string());
    assert_eq!(inspect["Layers"].as_array().unwrap().len(), 3);
    assert_eq!(inspect["Labels"]["seed"], "1");

    let tags: serde_json::Value =
        serde_json::from_str(&skopeo(&["list-tags", "--tls-verify=false", &format!("docker://{host}/e2e/app")])).unwrap();
    assert_eq!(tags["Tags"], serde_json::json!(["docker", "v1"]));

    skopeo(&["delete", "--tls-verify=false", &format!("docker://{host}/e2e/app@{docker_digest}")]);
    let tags: serde_json::Value =
        serde_json::from_str(&skopeo(&["list-tags", "--tls-verify=false", &format!("docker://{host}/e2e/app")])).unwrap();
    assert_eq!(tags["Tags"], serde_json::json!(["v1"]), "deleting by digest removed its tag");
    assert!(server.stop(), "customs exits cleanly on SIGTERM");
}

/// A temp directory with a config file, a data directory and a log for a server started with them.
struct Configured {
    tmp: tempfile::TempDir,
    config: std::path::PathBuf,
    data: std::path::PathBuf,
    log: std::path::PathBuf,
}

impl Configured {
    /// `customs.toml` holds `toml`.
    fn new(toml: &str) -> Configured {
        let tmp = tempfile::tempdir().unwrap();
        let (config, data, log) = (tmp.path().join("customs.toml"), tmp.path().join("data"), tmp.path().join("log"));
        std::fs::write(&config, toml).unwrap();
        Configured { tmp, config, data, log }
    }

    /// `customs serve --config` with `env`.
    fn serve(&self, env: &[(&str, &str)]) -> ServerProcess {
        let args = ["--config", self.config.to_str().unwrap()];
        ServerProcess::start_args(customs(), &self.data, &args, env, &self.log).unwrap()
    }
}

#[test]
fn skopeo_cannot_move_or_delete_an_immutable_tag() {
    let setup = Configured::new("[[immutable_tags]]\nrepositories = [\"prod/**\"]\ntags = [\"v*\"]\n");
    let (tmp, config, data) = (&setup.tmp, &setup.config, &setup.data);
    let config_arg = config.to_str().unwrap();
    let server = setup.serve(&[]);
    let host = server.addr.clone();
    let src = tmp.path().join("src");
    let (a, b) = (ImageBuilder::new(41).layer(2, 5000).build(), ImageBuilder::new(42).layer(2, 5000).build());
    a.write_layout(&src, "a").unwrap();
    b.write_layout(&src, "b").unwrap();
    let (v1, latest) = (format!("docker://{host}/prod/app:v1"), format!("docker://{host}/prod/app:latest"));
    let digest = |reference: &str| {
        let inspect: serde_json::Value = serde_json::from_str(&skopeo(&["inspect", "--tls-verify=false", reference])).unwrap();
        inspect["Digest"].as_str().unwrap().to_owned()
    };

    skopeo_push(&src, "a", &format!("{host}/prod/app:v1"), &[]);
    skopeo_push(&src, "a", &format!("{host}/prod/app:v1"), &[]);
    let b_layout = format!("oci:{}:b", src.display());
    let err = skopeo_refused(&["copy", "--dest-tls-verify=false", &b_layout, &v1]);
    assert!(err.contains(&format!("denied: tag v1 is immutable here: it stays on {}", a.digest)), "{err}");
    assert_eq!(digest(&v1), a.digest.to_string());
    // Deleting by tag is a DELETE of the digest the tag points at: refused too.
    let err = skopeo_refused(&["delete", "--tls-verify=false", &v1]);
    assert!(err.contains(&format!("tag v1 is immutable here: it stays on {}", a.digest)) && err.contains("403 Forbidden"), "{err}");
    assert_eq!(digest(&v1), a.digest.to_string());
    // A tag no rule names moves and goes as always.
    skopeo_push(&src, "a", &format!("{host}/prod/app:latest"), &[]);
    skopeo(&["copy", "--dest-tls-verify=false", &b_layout, &latest]);
    assert_eq!(digest(&latest), b.digest.to_string());
    skopeo(&["delete", "--tls-verify=false", &latest]);
    let tags: serde_json::Value =
        serde_json::from_str(&skopeo(&["list-tags", "--tls-verify=false", &format!("docker://{host}/prod/app")])).unwrap();
    assert_eq!(tags["Tags"], serde_json::json!(["v1"]));
    assert!(server.stop());

    // A rule that names no repository stops the server, saying which rule.
    std::fs::write(config, "[[immutable_tags]]\ntags = [\"v*\"]\n").unwrap();
    let err = customs_refused(&["serve", "--listen", "127.0.0.1:0", "--config", config_arg], data, &[]);
    assert!(err.contains("[[immutable_tags]] #1: `repositories` names no repository glob"), "{err}");
}

/// What skopeo is told when storage is short: a namespace's quota (403, with the numbers) and a
/// disk at the reserve customs keeps free (507); pulls go on either way. The quota's usage, from
/// `/api/v1/quotas` and from `customs query quota`.
#[test]
fn skopeo_is_told_when_a_quota_or_the_disk_refuses_a_push() {
    let setup = Configured::new("[[quotas.namespaces]]\nnamespace = \"team-a\"\nmax_bytes = 30000\n");
    let tmp = &setup.tmp;
    let server = setup.serve(&[]);
    let host = server.addr.clone();
    let src = tmp.path().join("src");
    let (small, large) = (ImageBuilder::new(71).layer(2, 5000).build(), ImageBuilder::new(72).layer(8, 5000).build());
    small.write_layout(&src, "small").unwrap();
    large.write_layout(&src, "large").unwrap();

    skopeo_push(&src, "small", &format!("{host}/team-a/app:small"), &[]);
    let large_layout = format!("oci:{}:large", src.display());
    let err = skopeo_refused(&["copy", "--dest-tls-verify=false", &large_layout, &format!("docker://{host}/team-a/app:large")]);
    assert!(err.contains("denied: storing this") && err.contains("namespace team-a") && err.contains("30 kB storage quota"), "{err}");
    skopeo_push(&src, "large", &format!("{host}/team-b/app:large"), &[]);
    let api: serde_json::Value = serde_json::from_str(&run("curl", &["-sf", &format!("http://{host}/api/v1/quotas/team-a/app")])).unwrap();
    let held = small.blobs().map(|b| b.bytes.len() as u64).sum::<u64>() + small.manifest.len() as u64;
    assert_eq!((api["namespace"].as_str(), api["max_bytes"].as_u64(), api["used_bytes"].as_u64()), (Some("team-a"), Some(30_000), Some(held)));
    assert!(server.stop());
    // The same numbers from the command line, on the stopped server's data.
    let (config, data) = (setup.config.to_str().unwrap(), setup.data.to_str().unwrap());
    let listed = run(customs().to_str().unwrap(), &["query", "quota", "--config", config, "--data", data]);
    assert_eq!(listed.trim(), format!("team-a\t{} of 30 kB\t({} free)", blobs::human_size(held), blobs::human_size(30_000 - held)));

    // The same data with more free space asked for than the disk has: the server says so at start,
    // pushes are refused with 507, pulls are served.
    let env = [("CUSTOMS_STORAGE__MIN_FREE_BYTES", "9000000000000000000")];
    let server = setup.serve(&env);
    let host = server.addr.clone();
    let err = skopeo_refused(&["copy", "--dest-tls-verify=false", &large_layout, &format!("docker://{host}/team-c/app:large")]);
    assert!(err.contains("507 Insufficient Storage"), "{err}");
    let out = tmp.path().join("out");
    skopeo(&["copy", "--src-tls-verify=false", &format!("docker://{host}/team-b/app:large"), &format!("oci:{}:large", out.display())]);
    assert_eq!(layout_digest(&out, "large"), large.digest.to_string());
    assert!(server.stop());
    let log = std::fs::read_to_string(&setup.log).unwrap();
    assert!(log.contains("at its reserve of free space"), "the server says so at start");
}

/// Every file under `dir` with a digest of its bytes, in path order.
fn tree(dir: &Path) -> Vec<(String, oci::Digest)> {
    let hashed = |f: std::path::PathBuf| (f.display().to_string(), oci::Digest::sha256_of(&std::fs::read(&f).unwrap()));
    test_support::files_under(dir).into_iter().map(hashed).collect()
}

#[test]
fn read_only_serves_skopeo_what_is_stored_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, log) = (tmp.path().join("data"), tmp.path().join("log"));
    let src = tmp.path().join("src");
    let (a, b) = (ImageBuilder::new(61).layer(2, 5000).build(), ImageBuilder::new(62).layer(1, 5000).build());
    a.write_layout(&src, "a").unwrap();
    b.write_layout(&src, "b").unwrap();
    let server = ServerProcess::start(customs(), &data).unwrap();
    skopeo_push(&src, "a", &format!("{}/ro/app:v1", server.addr), &[]);
    // A pull waits for the verdict; a read-only server judges nothing.
    skopeo(&["inspect", "--tls-verify=false", &format!("docker://{}/ro/app:v1", server.addr)]);
    assert!(server.stop());
    let before = tree(&data);

    let server = ServerProcess::start_logged(customs(), &data, &[("CUSTOMS_READ_ONLY", "true")], &log).unwrap();
    let host = server.addr.clone();
    let out = tmp.path().join("out");
    skopeo(&["copy", "--src-tls-verify=false", &format!("docker://{host}/ro/app:v1"), &format!("oci:{}:v1", out.display())]);
    assert_eq!(layout_digest(&out, "v1"), a.digest.to_string());
    let err = skopeo_refused(&["copy", "--dest-tls-verify=false", &format!("oci:{}:b", src.display()), &format!("docker://{host}/ro/app:v2")]);
    assert!(err.contains("the registry is read-only for maintenance"), "{err}");
    let err = skopeo_refused(&["delete", "--tls-verify=false", &format!("docker://{host}/ro/app:v1")]);
    assert!(err.contains("the registry is read-only for maintenance"), "{err}");
    assert!(server.stop());
    assert!(std::fs::read_to_string(&log).unwrap().contains("read-only (read_only = true)"), "the server says so at start");
    assert_eq!(tree(&data), before, "not a byte of the data directory changed");

    // Nor may an offline pass change it.
    let err = customs_refused(&["gc"], &data, &[("CUSTOMS_READ_ONLY", "true")]);
    assert!(err.contains("read_only = true: this would change what is stored"), "{err}");
}

#[test]
fn oras_pushes_pulls_and_finds_referrers() {
    let tmp = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(customs(), &tmp.path().join("data")).unwrap();
    let work = tmp.path().join("work");
    let art = work.join("art");
    std::fs::create_dir_all(&art).unwrap();
    // Three and a bit chunks of the script's 1 MiB: the last PATCH is a short one.
    let model = test_support::Rng(11).bytes(3 * (1 << 20) + 4321);
    std::fs::write(art.join("model.bin"), &model).unwrap();
    std::fs::write(art.join("README.txt"), "an artifact pushed by oras\n").unwrap();
    std::fs::write(art.join("config.json"), r#"{"created-by":"clients.rs"}"#).unwrap();
    std::fs::write(art.join("signature.json"), r#"{"signature":"not a real one"}"#).unwrap();
    let index = amd64_and_arm64(21);
    index.write_layout(&work.join("layout"), "multi").unwrap();

    let python = std::env::var("TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oras_client.py");
    run_command(std::process::Command::new(&python).args([script, &server.addr, work.to_str().unwrap()]));
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(work.join("report.json")).unwrap()).unwrap();
    let client = test_support::Client::new(&server.url());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let get = |path: &str| rt.block_on(client.call(http::Method::GET, path, &[], "")).unwrap();

    // The artifact: its manifest kept byte for byte, its files back whole.
    let artifact = &report["artifact"];
    let raw = get("/v2/oras/artifact/manifests/v1");
    let digest = oci::Digest::sha256_of(&raw.body).to_string();
    assert_eq!(artifact["served_digest"], digest.as_str());
    assert_eq!(artifact["subject_digest"], digest.as_str(), "oras' own hash of the manifest it sent");
    assert_eq!(artifact["config_media_type"], "application/vnd.customs.test.config.v1+json");
    assert_eq!(artifact["layer_titles"], serde_json::json!(["model.bin", "README.txt"]));
    assert_eq!(report["pulled"], serde_json::json!(["pulled/README.txt", "pulled/model.bin"]));
    assert_eq!(std::fs::read(work.join("pulled/model.bin")).unwrap(), &model[..], "the chunked file came back whole");
    assert_eq!(std::fs::read(work.join("pulled/README.txt")).unwrap(), b"an artifact pushed by oras\n");

    // The signature, found through the referrers API, with and without the artifactType filter.
    let signature = report["signature_digest"].as_str().unwrap();
    let sig_type = "application/vnd.customs.test.signature.v1+json";
    let referrers = &report["referrers"];
    for (name, filtered) in [("all", None), ("signatures", Some("artifactType"))] {
        let r = &referrers[name];
        assert_eq!(r["status"], 200, "{name}: {r}");
        assert_eq!(r["content_type"], oci::media_type::OCI_INDEX, "{name}");
        assert_eq!(r["filters_applied"].as_str(), filtered, "{name}");
        let manifests = r["manifests"].as_array().unwrap();
        assert_eq!(manifests.len(), 1, "{name}: {r}");
        assert_eq!(manifests[0]["digest"], signature, "{name}");
        assert_eq!(manifests[0]["artifactType"], sig_type, "{name}: the config's media type stands for it");
        assert_eq!(manifests[0]["annotations"]["org.example.signed-by"], "test", "{name}");
    }
    assert_eq!(referrers["other"]["filters_applied"], "artifactType");
    assert_eq!(referrers["other"]["manifests"], serde_json::json!([]), "no referrer of another type");

    // Tags: oras followed the Link header two at a time through the sorted list.
    let all_tags = ["t1", "t2", "t3", "t4", "t5", "v1", "v1-sig"];
    let pages: Vec<Vec<String>> = serde_json::from_value(report["tag_pages"].clone()).unwrap();
    assert_eq!(pages.len(), 4, "{pages:?}");
    assert!(pages.iter().all(|p| p.len() <= 2), "{pages:?}");
    assert_eq!(pages.concat(), all_tags);
    assert_eq!(report["tags_limited"], serde_json::json!(["t1", "t2", "t3"]));
    assert_eq!(report["deleted"], serde_json::json!(["t2"]));
    let left: Vec<&str> = all_tags.iter().copied().filter(|t| *t != "t2").collect();
    assert_eq!(report["tags_after_delete"], serde_json::json!(left));
    assert_eq!(get("/v2/oras/artifact/manifests/t2").status, http::StatusCode::NOT_FOUND);

    // The layout went in as the same index and came back as the same blobs.
    assert_eq!(oci::Digest::sha256_of(&get("/v2/oras/multi/manifests/multi").body), index.digest);
    let back = work.join("layout-back/blobs/sha256");
    assert_eq!(std::fs::read(back.join(index.digest.hex())).unwrap(), index.manifest);
    for child in &index.images {
        assert_eq!(std::fs::read(back.join(child.digest.hex())).unwrap(), child.manifest);
        for blob in child.blobs() {
            assert_eq!(std::fs::read(back.join(blob.digest.hex())).unwrap(), blob.bytes, "{} blob", child.arch);
        }
    }

    // oras retries a request that failed with a 500: none may have been needed.
    let metrics = String::from_utf8_lossy(&get("/metrics").body).into_owned();
    let errors: Vec<&str> = metrics.lines().filter(|l| l.starts_with("customs_requests_total") && l.contains("status=\"5")).collect();
    assert!(errors.is_empty(), "server errors: {errors:?}");
    assert!(metrics.lines().any(|l| l.starts_with("customs_requests_total") && l.contains("status=\"202\"")), "{metrics}");
    assert!(server.stop());
}

/// podman and buildah with their own throwaway storage (vfs), so the test touches no global state.
fn container_tool(tool: &str, root: &Path, args: &[&str]) -> String {
    let (store, run_root) = (root.join("storage"), root.join("run"));
    let mut all = vec![
        "--root".to_owned(),
        store.display().to_string(),
        "--runroot".to_owned(),
        run_root.display().to_string(),
        "--storage-driver".to_owned(),
        "vfs".to_owned(),
    ];
    all.extend(args.iter().map(|a| a.to_string()));
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    run(tool, &all)
}

#[test]
fn buildah_builds_and_pushes_podman_pulls_and_pushes() {
    let tmp = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(customs(), &tmp.path().join("data")).unwrap();
    let host = server.addr.clone();
    let context = tmp.path().join("context");
    std::fs::create_dir_all(&context).unwrap();
    std::fs::write(context.join("hello.txt"), "hello from buildah\n").unwrap();
    std::fs::write(context.join("Containerfile"), "FROM scratch\nCOPY hello.txt /hello.txt\nLABEL built.by=buildah\n").unwrap();
    let tools = tmp.path().join("tools");
    let image = format!("{host}/tools/hello:1");

    container_tool("buildah", &tools, &["bud", "--quiet", "-t", &image, context.to_str().unwrap()]);
    container_tool("buildah", &tools, &["push", "--tls-verify=false", &image]);
    let pushed: serde_json::Value =
        serde_json::from_str(&skopeo(&["inspect", "--tls-verify=false", &format!("docker://{image}")])).unwrap();
    assert_eq!(pushed["Labels"]["built.by"], "buildah");

    // podman starts from empty storage, pulls what buildah pushed, and pushes it elsewhere.
    let podman_root = tmp.path().join("podman");
    container_tool("podman", &podman_root, &["pull", "--quiet", "--tls-verify=false", &image]);
    let copy = format!("{host}/tools/copy:2");
    container_tool("podman", &podman_root, &["push", "--quiet", "--tls-verify=false", &image, &copy]);
    let copied: serde_json::Value =
        serde_json::from_str(&skopeo(&["inspect", "--tls-verify=false", &format!("docker://{copy}")])).unwrap();
    assert_eq!(copied["Layers"], pushed["Layers"], "the same layers went round the trip");
    assert_eq!(copied["Labels"]["built.by"], "buildah");
    assert!(server.stop());
}

/// A containerd of its own (root, state and socket in `dir`; the CRI plugin off), driven with
/// `ctr`: the resolver, fetcher, unpacker and pusher a kubelet's containerd uses.
struct Containerd {
    child: std::process::Child,
    socket: std::path::PathBuf,
}

impl Containerd {
    fn start(dir: &Path) -> Containerd {
        std::fs::create_dir_all(dir).unwrap();
        let socket = dir.join("containerd.sock");
        let config = dir.join("config.toml");
        let (root, state) = (dir.join("root"), dir.join("state"));
        std::fs::write(
            &config,
            format!(
                "version = 2\nroot = \"{}\"\nstate = \"{}\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
                 [grpc]\n  address = \"{}\"\n",
                root.display(),
                state.display(),
                socket.display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("containerd.log")).unwrap();
        let child = std::process::Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("containerd runs (scripts/test.sh installs it)");
        let started = std::time::Instant::now();
        while !socket.exists() {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(30),
                "containerd did not open its socket: {}",
                std::fs::read_to_string(dir.join("containerd.log")).unwrap_or_default()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Containerd { child, socket }
    }

    /// `ctr` in the namespace `e2e`: its stdout, failing the test with its output.
    fn ctr(&self, args: &[&str]) -> String {
        let address = self.socket.display().to_string();
        let mut all = vec!["--address", address.as_str(), "--namespace", "e2e"];
        all.extend_from_slice(args);
        run("ctr", &all)
    }

    /// The digest containerd recorded for an image it holds.
    fn image_digest(&self, reference: &str) -> String {
        let list = self.ctr(&["images", "ls"]);
        list.lines()
            .find(|l| l.split_whitespace().next() == Some(reference))
            .and_then(|l| l.split_whitespace().find(|w| w.starts_with("sha256:")))
            .unwrap_or_else(|| panic!("{reference} is not among containerd's images:\n{list}"))
            .to_owned()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}


#[test]
fn containerd_pulls_unpacks_and_pushes() {
    let tmp = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(customs(), &tmp.path().join("data")).unwrap();
    let host = server.addr.clone();
    let src = tmp.path().join("src");
    let image = ImageBuilder::new(11).layer(3, 20_000).layer(1, 200_000).build();
    image.write_layout(&src, "v1").unwrap();
    let index = amd64_and_arm64(12);
    index.write_layout(&src, "multi").unwrap();
    skopeo_push(&src, "v1", &format!("{host}/e2e/app:v1"), &[]);
    skopeo_push(&src, "multi", &format!("{host}/e2e/multi:multi"), &["--all"]);

    let containerd = Containerd::start(&tmp.path().join("containerd"));
    // A pull by tag, unpacked into the snapshotter: containerd checks every layer's uncompressed
    // digest against the config's diff_ids as it applies it.
    let app = format!("{host}/e2e/app:v1");
    let pulled = containerd.ctr(&["images", "pull", "--plain-http", &app]);
    assert!(pulled.contains("unpacking linux/amd64"), "{pulled}");
    assert_eq!(containerd.image_digest(&app), image.digest.to_string());
    // By digest, as a kubelet pulls a pinned image.
    let pinned = format!("{host}/e2e/app@{}", image.digest);
    containerd.ctr(&["images", "pull", "--plain-http", &pinned]);
    assert_eq!(containerd.image_digest(&pinned), image.digest.to_string());
    // The multi-arch index, every platform.
    let multi = format!("{host}/e2e/multi:multi");
    containerd.ctr(&["images", "pull", "--plain-http", "--all-platforms", &multi]);
    assert_eq!(containerd.image_digest(&multi), index.digest.to_string());

    // Pushes: into another repository of the same registry (containerd mounts the blobs it
    // pulled from there), and into a fresh registry, where every blob is uploaded.
    let mounted = format!("{host}/ctr/app:copied");
    containerd.ctr(&["images", "tag", &app, &mounted]);
    containerd.ctr(&["images", "push", "--plain-http", &mounted]);
    let other = ServerProcess::start(customs(), &tmp.path().join("other")).unwrap();
    let uploaded = format!("{}/ctr/multi:copied", other.addr);
    containerd.ctr(&["images", "tag", &multi, &uploaded]);
    containerd.ctr(&["images", "push", "--plain-http", &uploaded]);
    for (reference, want) in [(&mounted, &image.digest), (&uploaded, &index.digest)] {
        let raw = skopeo(&["inspect", "--tls-verify=false", "--raw", &format!("docker://{reference}")]);
        assert_eq!(oci::Digest::sha256_of(raw.as_bytes()), *want, "{reference} holds the same manifest bytes");
    }
    // What containerd pushed reads back whole: skopeo copies every platform out of the fresh registry.
    let out = tmp.path().join("out");
    let (from, to) = (format!("docker://{uploaded}"), format!("oci:{}:back", out.display()));
    skopeo(&["copy", "--all", "--src-tls-verify=false", &from, &to]);
    assert_eq!(layout_digest(&out, "back"), index.digest.to_string());
    drop(containerd);
    assert!(other.stop());
    assert!(server.stop());
}

/// Debian's docker CLI, the version of its dockerd (another may come first on PATH).
const DOCKER: &str = "/usr/bin/docker";

/// A dockerd of its own (data, exec root and socket in `dir`; no bridge, no iptables, vfs
/// storage), driven with Debian's docker CLI.
struct Dockerd {
    child: std::process::Child,
    host: String,
    dir: std::path::PathBuf,
}

impl Dockerd {
    fn start(dir: &Path) -> Dockerd {
        std::fs::create_dir_all(dir).unwrap();
        let log = std::fs::File::create(dir.join("dockerd.log")).unwrap();
        // dockerd lives in /usr/sbin, which a user's PATH may not hold.
        let dockerd = ["/usr/sbin/dockerd", "dockerd"].into_iter().find(|c| Path::new(c).exists()).unwrap_or("dockerd");
        let host = format!("unix://{}", dir.join("docker.sock").display());
        let child = std::process::Command::new(dockerd)
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("dockerd.pid"))
            .args(["-H", &host, "--iptables=false", "--ip-forward=false", "--bridge=none", "--storage-driver=vfs"])
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("dockerd runs (scripts/test.sh installs docker.io)");
        let docker = Dockerd { child, host, dir: dir.to_owned() };
        let started = std::time::Instant::now();
        loop {
            let version = std::process::Command::new(DOCKER).args(["-H", &docker.host, "version"]).output();
            if version.is_ok_and(|o| o.status.success()) {
                return docker;
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(60),
                "dockerd did not answer: {}",
                std::fs::read_to_string(dir.join("dockerd.log")).unwrap_or_default()
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// `docker` with the given arguments: its stdout, failing the test with its output.
    fn docker(&self, args: &[&str]) -> String {
        let mut docker = std::process::Command::new(DOCKER);
        docker.args(["-H", &self.host]).args(args);
        run_command(docker.env("DOCKER_BUILDKIT", "0").env("DOCKER_CONFIG", self.dir.join("config")))
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        // SIGTERM, so that dockerd stops the containerd it started.
        let _ = std::process::Command::new("kill").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }
}

#[test]
fn docker_pulls_builds_and_pushes() {
    let tmp = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(customs(), &tmp.path().join("data")).unwrap();
    let other = ServerProcess::start(customs(), &tmp.path().join("other")).unwrap();
    let host = server.addr.clone();
    let src = tmp.path().join("src");
    let image = ImageBuilder::new(21).layer(2, 30_000).layer(1, 100_000).build();
    image.write_layout(&src, "v1").unwrap();
    let base = format!("{host}/e2e/base:v1");
    skopeo_push(&src, "v1", &base, &[]);

    // docker talks plain HTTP to registries on 127.0.0.0/8 without being told.
    let docker = Dockerd::start(&tmp.path().join("docker"));
    let pulled = docker.docker(&["pull", &base]);
    assert!(pulled.contains(&format!("Digest: {}", image.digest)), "{pulled}");
    let pinned = docker.docker(&["pull", &format!("{host}/e2e/base@{}", image.digest)]);
    assert!(pinned.contains(&format!("Digest: {}", image.digest)), "{pinned}");

    // Into another repository of the same registry: docker mounts the layers it pulled from there.
    let copy = format!("{host}/e2e/copy:v2");
    docker.docker(&["tag", &base, &copy]);
    let pushed = docker.docker(&["push", &copy]);
    assert!(pushed.contains("Mounted from e2e/base"), "{pushed}");

    // A build on top of it, pushed to a fresh registry: every layer uploaded.
    let context = tmp.path().join("context");
    std::fs::create_dir_all(&context).unwrap();
    std::fs::write(context.join("hello.txt"), "hello from docker\n").unwrap();
    std::fs::write(context.join("Dockerfile"), format!("FROM {base}\nCOPY hello.txt /hello.txt\n")).unwrap();
    let built = format!("{}/team/hello:1", other.addr);
    docker.docker(&["build", "--quiet", "-t", &built, context.to_str().unwrap()]);
    let pushed = docker.docker(&["push", &built]);
    let digest = pushed
        .split_whitespace()
        .skip_while(|w| *w != "digest:")
        .nth(1)
        .unwrap_or_else(|| panic!("no digest in docker's push output:\n{pushed}"))
        .to_owned();
    for (reference, layers) in [(&copy, 2), (&built, 3)] {
        let raw = skopeo(&["inspect", "--tls-verify=false", "--raw", &format!("docker://{reference}")]);
        let manifest: serde_json::Value = serde_json::from_str(&raw).unwrap();
        assert_eq!(manifest["mediaType"], oci::media_type::DOCKER_MANIFEST, "{reference}");
        assert_eq!(manifest["layers"].as_array().unwrap().len(), layers, "{reference}");
        if reference == &built {
            assert_eq!(oci::Digest::sha256_of(raw.as_bytes()).to_string(), digest, "the bytes docker pushed");
        }
    }
    // The built image comes back whole into an empty docker.
    docker.docker(&["rmi", &built, &base, &copy]);
    assert!(!docker.docker(&["images", "-q"]).contains(|c: char| c.is_ascii_hexdigit()), "docker holds no image");
    let again = docker.docker(&["pull", &built]);
    assert!(again.contains(&format!("Digest: {digest}")), "{again}");
    let history = docker.docker(&["history", "--no-trunc", &built]);
    assert!(history.contains("COPY file:"), "{history}");
    drop(docker);
    assert!(other.stop());
    assert!(server.stop());
}

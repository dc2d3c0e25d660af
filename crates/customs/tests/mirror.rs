//! Pull-through end to end: a real `customs serve` is the upstream on 127.0.0.1 (its access log,
//! JSON, counts what it was asked), a second one mirrors it. A hundred concurrent pulls of an
//! uncached image send one GET per blob and per manifest upstream; with the upstream stopped,
//! cached images still pull (marked stale) and an uncached one gets a clear error; first pulls
//! wait for the gate, and an image the policy refuses is never served; the token flow with
//! credentials from the environment; allow/deny rules; pushes into a mirror are refused.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use http::Method;
use oci::Digest;
use test_support::{Client, ImageBuilder, Index, ServerProcess, run};

const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json";

fn customs() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_customs"))
}


fn secret() -> String {
    auth::password::new_robot_secret()
}

/// An upstream customs: no gate, no inspection, every request in its JSON access log.
fn upstream(dir: &Path, extra: &[(&str, &str)]) -> (ServerProcess, PathBuf) {
    let log = dir.join("upstream.log");
    let mut env = vec![
        ("CUSTOMS_GATE__ENABLED", "false"),
        ("CUSTOMS_INSPECTION__ENABLED", "false"),
        ("CUSTOMS_LOG", "customs::access=debug,warn"),
        ("CUSTOMS_LOG_FORMAT", "json"),
    ];
    env.extend_from_slice(extra);
    let server = ServerProcess::start_logged(customs(), &dir.join("upstream"), &env, &log).unwrap();
    (server, log)
}

/// How often the upstream was sent each (method, path), from its access log; a 401 that starts
/// the token flow is not counted (the request is sent again with the token).
fn upstream_requests(log: &Path) -> HashMap<(String, String), usize> {
    let mut counts = HashMap::new();
    for line in std::fs::read_to_string(log).unwrap().lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        if v["target"] != "customs::access" {
            continue;
        }
        let f = &v["fields"];
        if f["status"] == 401 {
            continue;
        }
        let key = (f["method"].as_str().unwrap_or("").to_owned(), f["path"].as_str().unwrap_or("").to_owned());
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
}

fn push_layout(layout: &Path, tag: &str, addr: &str, target: &str, creds: Option<&str>) {
    let mut cmd = Command::new("skopeo");
    cmd.args(["--insecure-policy", "copy", "--all", "--quiet", "--preserve-digests", "--dest-tls-verify=false"]);
    if let Some(c) = creds {
        cmd.args(["--dest-creds", c]);
    }
    let out = cmd.arg(format!("oci:{}:{tag}", layout.display())).arg(format!("docker://{addr}/{target}")).output().unwrap();
    assert!(out.status.success(), "push {target}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Pulls `repo:tag` as a client does, waiting out 429s; the manifest's digest, after checking
/// every blob's bytes against its digest.
async fn pull(client: &Client, repo: &str, tag: &str) -> Result<String, (u16, String)> {
    let started = Instant::now();
    let manifest = loop {
        let r = client.call(Method::GET, &format!("/v2/{repo}/manifests/{tag}"), &[("Accept", ACCEPT)], "").await.unwrap();
        match r.status.as_u16() {
            200 => break r,
            429 if started.elapsed() < Duration::from_secs(120) => tokio::time::sleep(Duration::from_millis(200)).await,
            status => return Err((status, String::from_utf8_lossy(&r.body).into_owned())),
        }
    };
    let digest = manifest.header("docker-content-digest").unwrap().to_owned();
    assert_eq!(Digest::sha256_of(&manifest.body).to_string(), digest, "the manifest's bytes are those of its digest");
    let m: serde_json::Value = serde_json::from_slice(&manifest.body).unwrap();
    let blobs = std::iter::once(&m["config"]).chain(m["layers"].as_array().unwrap());
    for d in blobs {
        let want = d["digest"].as_str().unwrap();
        let r = client.call(Method::GET, &format!("/v2/{repo}/blobs/{want}"), &[], "").await.unwrap();
        if r.status != 200 {
            return Err((r.status.as_u16(), format!("blob {want}: {}", String::from_utf8_lossy(&r.body))));
        }
        assert_eq!(Digest::sha256_of(&r.body).to_string(), want, "blob bytes match their digest");
    }
    Ok(digest)
}

fn metric(text: &str, name: &str) -> f64 {
    test_support::metric(text, name).unwrap_or_else(|| panic!("no {name} in the metrics"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_pulls_fetch_once_and_the_cache_outlives_the_upstream() {
    let tmp = tempfile::tempdir().unwrap();
    let (up, up_log) = upstream(tmp.path(), &[]);
    let layout = tmp.path().join("layout");
    // Two layers of incompressible bytes (8 MiB and 128 KiB): the big one is written in many
    // pieces while clients stream it.
    let image = ImageBuilder::new(11).layer(4, 2 << 20).layer(2, 64 << 10).build();
    image.write_layout(&layout, "v1").unwrap();
    push_layout(&layout, "v1", &up.addr, "team/app:v1", None);
    push_layout(&layout, "v1", &up.addr, "team/app:v2", None);
    let multi = Index::new(vec![ImageBuilder::new(21).layer(1, 4096).build(), ImageBuilder::new(22).layer(1, 4096).arch("arm64").build()]);
    let multi_layout = tmp.path().join("multi");
    multi.write_layout(&multi_layout, "v1").unwrap();
    push_layout(&multi_layout, "v1", &up.addr, "team/multi:v1", None);
    let before = upstream_requests(&up_log);

    // The mirror, from the command line; the gate off, so first pulls stream straight through.
    let mirror_flag = format!("up={}", up.url());
    let mirror_env = [("CUSTOMS_GATE__ENABLED", "false"), ("CUSTOMS_INSPECTION__ENABLED", "false")];
    let data = tmp.path().join("mirror");
    let mirror = ServerProcess::start_args(customs(), &data, &["--mirror", &mirror_flag], &mirror_env, &tmp.path().join("m1.log")).unwrap();
    let client = Client::new(&mirror.url());
    let pulls: Vec<_> = (0..100)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { pull(&client, "up/team/app", "v1").await })
        })
        .collect();
    for p in pulls {
        assert_eq!(p.await.unwrap().unwrap(), image.digest.to_string());
    }
    let after = upstream_requests(&up_log);
    let sent = |method: &str, path: &str| {
        let key = (method.to_owned(), path.to_owned());
        after.get(&key).copied().unwrap_or(0) - before.get(&key).copied().unwrap_or(0)
    };
    assert_eq!(sent("GET", "/v2/team/app/manifests/v1"), 1, "one manifest GET upstream for 100 clients: {after:?}");
    for blob in image.blobs() {
        assert_eq!(sent("GET", &format!("/v2/team/app/blobs/{}", blob.digest)), 1, "one GET of {} for 100 clients", blob.digest);
    }
    let text = client.metrics().await;
    assert_eq!(metric(&text, "customs_mirror_upstream_manifest_gets_total"), 1.0);
    assert!(metric(&text, "customs_mirror_joined_total") >= 99.0, "{text}");
    // Pulling by digest again asks the upstream nothing.
    let by_digest = client.call(Method::GET, &format!("/v2/up/team/app/manifests/{}", image.digest), &[("Accept", ACCEPT)], "").await.unwrap();
    assert_eq!(by_digest.status, 200);
    assert_eq!(upstream_requests(&up_log).len(), after.len(), "no new upstream path");
    // containerd's mirror requests: the local name with `?ns=` naming the upstream's registry.
    let ns = format!("/v2/team/app/manifests/v1?ns={}", up.addr);
    let via_ns = client.call(Method::GET, &ns, &[("Accept", ACCEPT)], "").await.unwrap();
    assert_eq!((via_ns.status.as_u16(), via_ns.header("docker-content-digest")), (200, Some(image.digest.to_string().as_str())));
    let layer = &image.layers[0].digest;
    let via_ns = client.call(Method::GET, &format!("/v2/team/app/blobs/{layer}?ns={}", up.addr), &[], "").await.unwrap();
    assert_eq!(Digest::sha256_of(&via_ns.body), *layer);
    // A multi-platform index: stored as the upstream sent it, each platform's image fetched as
    // it is pulled by digest; skopeo copies all of them out with every digest intact.
    let out = tmp.path().join("multi-out");
    let src = format!("docker://{}/up/team/multi:v1", mirror.addr);
    run("skopeo", &["--insecure-policy", "copy", "--all", "--preserve-digests", "--src-tls-verify=false", &src, &format!("oci:{}:v1", out.display())]);
    let copied: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("index.json")).unwrap()).unwrap();
    assert_eq!(copied["manifests"][0]["digest"], multi.digest.to_string());
    for image in &multi.images {
        for blob in image.blobs().map(|b| &b.digest).chain([&image.digest]) {
            let path = out.join("blobs/sha256").join(blob.to_string().trim_start_matches("sha256:"));
            assert_eq!(Digest::sha256_of(&std::fs::read(&path).unwrap()), *blob, "{blob} copied out whole");
        }
    }
    // A mirror's repositories are filled from the upstream, never pushed to.
    let push = client.call(Method::POST, "/v2/up/team/app/blobs/uploads/", &[], "").await.unwrap();
    assert_eq!((push.status.as_u16(), push.error_code().as_str()), (403, "DENIED"));
    assert!(mirror.stop());

    // The same cache under a config file: tags re-validated at once, a deny rule, a budget of
    // one manifest GET an hour, and the default upstream for names without a prefix.
    let config = tmp.path().join("mirror.toml");
    std::fs::write(
        &config,
        format!(
            "[[mirrors]]\nname = \"up\"\nurl = \"{}\"\ntag_ttl_secs = 0\ndeny = [\"team/secret*\"]\nmanifest_gets_per_hour = 1\ndefault = true\n\n\
             [[mirrors]]\nname = \"up2\"\nurl = \"{}\"\n",
            up.url(),
            up.url()
        ),
    )
    .unwrap();
    let config_env = [mirror_env[0], mirror_env[1], ("CUSTOMS_CONFIG", config.to_str().unwrap())];
    let mirror = ServerProcess::start_args(customs(), &data, &[], &config_env, &tmp.path().join("m2.log")).unwrap();
    let client = Client::new(&mirror.url());
    assert_eq!(pull(&client, "up/team/app", "v1").await.unwrap(), image.digest.to_string());
    let requests = upstream_requests(&up_log);
    assert_eq!(requests.get(&("HEAD".into(), "/v2/team/app/manifests/v1".into())), Some(&1), "a tag past its TTL is re-validated by HEAD");
    assert_eq!(requests.get(&("GET".into(), "/v2/team/app/manifests/v1".into())), Some(&1), "and not fetched again");
    let denied = client.call(Method::GET, "/v2/up/team/secret-app/manifests/v1", &[("Accept", ACCEPT)], "").await.unwrap();
    assert_eq!((denied.status.as_u16(), denied.error_code().as_str()), (403, "DENIED"));
    assert!(String::from_utf8_lossy(&denied.body).contains("not allowed by its rules"));
    assert!(!upstream_requests(&up_log).keys().any(|(_, p)| p.contains("secret")), "a denied name is never asked upstream");

    // Docker's `registry-mirrors` asks for names without a prefix: the default upstream serves
    // them from the same cache, unless they are local repositories.
    assert_eq!(pull(&client, "team/app", "v1").await.unwrap(), image.digest.to_string());
    let requests = upstream_requests(&up_log);
    assert_eq!(requests.get(&("GET".into(), "/v2/team/app/manifests/v1".into())), Some(&1), "served from the cache: {requests:?}");
    let (status, _) = pull(&client, "local/thing", "v1").await.unwrap_err();
    assert_eq!(status, 404, "not local yet: asked of the upstream, which has no such image");
    assert_eq!(upstream_requests(&up_log).get(&("GET".into(), "/v2/local/thing/manifests/v1".into())), Some(&1));
    push_layout(&layout, "v1", &mirror.addr, "local/thing:v1", None);
    assert_eq!(pull(&client, "local/thing", "v1").await.unwrap(), image.digest.to_string());
    let requests = upstream_requests(&up_log);
    assert_eq!(requests.get(&("GET".into(), "/v2/local/thing/manifests/v1".into())), Some(&1), "a local repository is never asked upstream");
    assert!(!requests.keys().any(|(_, p)| p.starts_with("/v2/local/thing/blobs")), "a push's blob checks stay local: {requests:?}");

    // The budget: that 404 was its one manifest GET this hour. A tag not cached waits with a
    // Retry-After, and the upstream is not asked.
    let r = client.call(Method::GET, "/v2/up/team/app/manifests/v2", &[("Accept", ACCEPT)], "").await.unwrap();
    assert_eq!((r.status.as_u16(), r.error_code().as_str()), (429, "TOOMANYREQUESTS"));
    assert!(String::from_utf8_lossy(&r.body).contains("budget"));
    let retry: u64 = r.header("retry-after").expect("Retry-After").parse().unwrap();
    assert!((1..=3600).contains(&retry), "{retry}");
    assert_eq!(upstream_requests(&up_log).get(&("GET".into(), "/v2/team/app/manifests/v2".into())), None);

    // The upstream goes away: the cached image still pulls, marked stale; an uncached one gets
    // a clear error.
    assert!(up.stop());
    let r = client.call(Method::GET, "/v2/up/team/app/manifests/v1", &[("Accept", ACCEPT)], "").await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("warning"), Some("110 customs \"Response is Stale\""));
    assert_eq!(pull(&client, "up/team/app", "v1").await.unwrap(), image.digest.to_string());
    let (status, body) = pull(&client, "up2/team/other", "v1").await.unwrap_err();
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("mirror up2") && body.contains("team/other:v1"), "{body}");
    assert!(metric(&client.metrics().await, "customs_mirror_stale_served_total") >= 2.0);
}

/// An image in the layout at `dir` under `tag`, with a private key planted in it or not.
fn keyed_image(dir: &Path, tag: &str, key: Option<&[u8]>) -> String {
    let mut files: Vec<(&str, &[u8], u32)> = vec![("app/name.txt", tag.as_bytes(), 0o644)];
    if let Some(k) = key {
        files.push(("etc/ssl/private/server.key", k, 0o600));
    }
    let config = serde_json::json!({"architecture": "amd64", "os": "linux", "config": {"User": "app"}, "rootfs": {"type": "layers", "diff_ids": []}});
    test_support::write_image(dir, tag, &config, vec![test_support::layer_tar_gz(&files)]).unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_pulls_wait_for_the_gate_and_refused_images_are_never_served() {
    let tmp = tempfile::tempdir().unwrap();
    // The upstream wants a token: the mirror logs in with credentials from its environment.
    let password = secret();
    let auth = [("CUSTOMS_AUTH__ENABLED", "true"), ("CUSTOMS_AUTH__ADMIN_USER", "admin"), ("CUSTOMS_AUTH__ADMIN_PASSWORD", password.as_str())];
    let (up, up_log) = upstream(tmp.path(), &auth);
    let creds = format!("admin:{password}");
    let layout = tmp.path().join("layout");
    let key_path = tmp.path().join("key.pem");
    run("openssl", &["genpkey", "-algorithm", "ed25519", "-out", key_path.to_str().unwrap()]);
    let clean = keyed_image(&layout, "clean", None);
    let keyed = keyed_image(&layout, "keyed", Some(&std::fs::read(&key_path).unwrap()));
    push_layout(&layout, "clean", &up.addr, "team/clean:1", Some(&creds));
    push_layout(&layout, "keyed", &up.addr, "team/keyed:1", Some(&creds));

    // The clean image's namespace has a policy of its own that names the upstream it came from.
    let policies = tmp.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(policies.join("via.rego"), "package customs\n\nimport rego.v1\n\nwarn contains sprintf(\"pulled through %s\", [input.upstream])\n").unwrap();
    let config = tmp.path().join("mirror.toml");
    let toml = format!(
        "[[mirrors]]\nname = \"up\"\nurl = \"{}\"\nusername = \"admin\"\npassword_env = \"MIRROR_TEST_UPSTREAM_PASSWORD\"\n\n[gate]\npolicy_dir = \"{}\"\n\n[[gate.namespaces]]\nrepositories = \"up/team/clean\"\npolicy = \"via\"\n",
        up.url(),
        policies.display()
    );
    std::fs::write(&config, toml).unwrap();
    // The gate on (the default), with a short wait so that first pulls see 429 + Retry-After.
    let env = [
        ("CUSTOMS_CONFIG", config.to_str().unwrap()),
        ("CUSTOMS_GATE__WAIT_SECS", "0"),
        ("CUSTOMS_INSPECTION__POLL_MS", "100"),
        ("MIRROR_TEST_UPSTREAM_PASSWORD", password.as_str()),
    ];
    let mirror = ServerProcess::start_args(customs(), &tmp.path().join("mirror"), &[], &env, &tmp.path().join("m.log")).unwrap();
    let client = Client::new(&mirror.url());

    let first = client.call(Method::GET, "/v2/up/team/clean/manifests/1", &[("Accept", ACCEPT)], "").await.unwrap();
    assert_eq!(first.status, 429, "an unjudged first pull waits: {:?}", String::from_utf8_lossy(&first.body));
    assert!(first.header("retry-after").is_some());
    let pulls: Vec<_> = (0..20)
        .map(|i| {
            let client = client.clone();
            let repo = if i % 2 == 0 { "up/team/clean" } else { "up/team/keyed" };
            tokio::spawn(async move { pull(&client, repo, "1").await })
        })
        .collect();
    for (i, p) in pulls.into_iter().enumerate() {
        match p.await.unwrap() {
            Ok(digest) => {
                assert_eq!(i % 2, 0, "only the clean image is served");
                assert_eq!(digest, clean);
            }
            Err((status, body)) => {
                assert_eq!(i % 2, 1, "the clean image is served: {status} {body}");
                assert_eq!(status, 403, "{body}");
                assert!(body.contains("private-key"), "the refusal says why: {body}");
            }
        }
    }
    let report = client.call(Method::GET, &format!("/api/v1/images/up/team/clean/{clean}/report"), &[], "").await.unwrap();
    assert_eq!(report.json()["verdict"]["warnings"], serde_json::json!(["pulled through up"]), "the upstream reaches the policy");
    // The refused image's layer is not served either, by digest.
    let keyed_manifest = std::fs::read(layout.join("blobs/sha256").join(keyed.trim_start_matches("sha256:"))).unwrap();
    let m: serde_json::Value = serde_json::from_slice(&keyed_manifest).unwrap();
    let layer = m["layers"][0]["digest"].as_str().unwrap();
    let r = client.call(Method::GET, &format!("/v2/up/team/keyed/blobs/{layer}"), &[], "").await.unwrap();
    assert_eq!(r.status, 403);
    let requests = upstream_requests(&up_log);
    for repo in ["clean", "keyed"] {
        assert_eq!(requests.get(&("GET".into(), format!("/v2/team/{repo}/manifests/1"))), Some(&1), "{requests:?}");
    }
    assert_eq!(requests.get(&("GET".into(), format!("/v2/team/keyed/blobs/{layer}"))), Some(&1));
    // A real client pulls the served image through the mirror with its digest intact.
    let out = tmp.path().join("out");
    run("skopeo", &["--insecure-policy", "copy", "--quiet", "--src-tls-verify=false", &format!("docker://{}/up/team/clean:1", mirror.addr), &format!("oci:{}:c", out.display())]);
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["digest"], clean.as_str());
    drop(mirror);

    // Credentials the upstream refuses: a clear error, not a hang or an empty image.
    let env = [
        ("CUSTOMS_CONFIG", config.to_str().unwrap()),
        ("MIRROR_TEST_UPSTREAM_PASSWORD", "not-the-password"),
        ("CUSTOMS_GATE__ENABLED", "false"),
    ];
    let mirror = ServerProcess::start_args(customs(), &tmp.path().join("mirror2"), &[], &env, &tmp.path().join("m2.log")).unwrap();
    let client = Client::new(&mirror.url());
    let (status, body) = pull(&client, "up/team/clean", "1").await.unwrap_err();
    assert_eq!(status, 502);
    assert!(body.contains("credentials"), "{body}");
}

/// Eviction, with the mirror in process (so that the test sets the clock) over a real upstream:
/// least recently pulled first while over `max_bytes`, never an image pulled within
/// `keep_pulled_within`, never bytes another repository needs, and a read under way finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eviction_takes_the_least_recently_pulled_and_spares_what_is_in_use() {
    use blobs::{BlobBody, Blobs, FsBlobStore};
    use futures::StreamExt;
    use meta::{Meta, SqlMeta};
    use mirror::{Mirror, UpstreamConfig};
    use oci::{Reference, RepoName};
    use registry::{Registry, RegistryConfig};
    use std::sync::Arc;

    let tmp = tempfile::tempdir().unwrap();
    let (up, up_log) = upstream(tmp.path(), &[]);
    // a and b share their first layer; b's second is big enough to be read in several pieces.
    let a = ImageBuilder::new(7).layer(1, 1 << 20).build();
    let b = ImageBuilder::new(7).layer(1, 1 << 20).layer(3, 1 << 20).build();
    let c = ImageBuilder::new(9).layer(1, 1 << 20).build();
    assert_eq!(a.layers[0].digest, b.layers[0].digest);
    for (name, image) in [("a", &a), ("b", &b), ("c", &c)] {
        let layout = tmp.path().join(format!("layout-{name}"));
        image.write_layout(&layout, "v1").unwrap();
        push_layout(&layout, "v1", &up.addr, &format!("team/{name}:v1"), None);
    }

    let dir = tmp.path().join("mirror");
    let blobs = Blobs(Arc::new(FsBlobStore::open(&dir).unwrap()));
    let meta = Meta(Arc::new(SqlMeta::open(&dir.join("meta.db")).await.unwrap()));
    let registry = Arc::new(Registry::new(blobs.clone(), meta.clone(), RegistryConfig::default()));
    let mirror_with = |config: UpstreamConfig| Arc::new(Mirror::new(registry.clone(), blobs.clone(), meta.clone(), vec![config]).unwrap());
    let puller = mirror_with(UpstreamConfig::new("up", &up.url()));
    let name = |s: &str| s.parse::<RepoName>().unwrap();
    let v1 = Reference::Tag("v1".parse().unwrap());
    let pull_into_cache = |repo: RepoName, digest: Digest| {
        let (puller, meta) = (puller.clone(), meta.clone());
        let v1 = v1.clone();
        async move {
            let route = puller.route(&repo).unwrap().unwrap();
            assert_eq!(puller.manifest(&route, &repo, &v1).await.unwrap().content.digest, digest);
            let started = Instant::now();
            while meta.manifest(&repo, &Reference::Digest(digest.clone())).await.unwrap().is_none() {
                assert!(started.elapsed() < Duration::from_secs(30), "{repo} never stored");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    for (repo, image) in [("up/team/a", &a), ("up/team/b", &b), ("up/team/c", &c)] {
        pull_into_cache(name(repo), image.digest.clone()).await;
    }
    // The shared layer is also in a local repository.
    registry.mount(&name("local/base"), &a.layers[0].digest, Some(&name("up/team/a"))).await.unwrap();
    let stored = |d: &Digest| {
        let blobs = blobs.clone();
        let d = d.clone();
        async move { blobs.stat(&d).await.unwrap().is_some() }
    };

    // The clock: a pulled first, then b; c is pulled ten minutes before the passes, so it is in use.
    let now = 4_000_000_000_000_i64;
    let hour = 3_600_000;
    registry.record_pull(&name("up/team/a"), &a.digest, now - 3 * hour);
    registry.record_pull(&name("up/team/b"), &b.digest, now - 2 * hour);
    registry.record_pull(&name("up/team/c"), &c.digest, now - 600_000);
    registry.flush_pulls().await.unwrap();
    let total = meta.linked_bytes("up", &[]).await.unwrap();

    // One byte over: the least recently pulled image goes, and only it.
    let mut config = UpstreamConfig::new("up", &up.url());
    config.max_bytes = Some(total - 1);
    let done = mirror_with(config.clone()).evict(now).await.unwrap();
    assert_eq!(done.images, 1);
    assert!(meta.manifest(&name("up/team/a"), &v1).await.unwrap().is_none(), "a is gone");
    assert!(!stored(&a.config.digest).await, "its own bytes are deleted");
    assert!(stored(&a.layers[0].digest).await, "bytes b still needs are kept");
    assert!(meta.linked_bytes("up", &[]).await.unwrap() < total);
    for repo in ["up/team/b", "up/team/c"] {
        assert!(meta.manifest(&name(repo), &v1).await.unwrap().is_some(), "{repo} is kept");
    }

    // A client part way through b's big layer when b is evicted still gets all of it.
    let big = &b.layers[1];
    let read = registry.get_blob(&name("up/team/b"), &big.digest, None).await.unwrap();
    let BlobBody::Stream { mut stream, .. } = read.body else { panic!("a stream") };
    let mut got = stream.next().await.unwrap().unwrap().to_vec();
    assert!(got.len() < big.bytes.len(), "read in pieces");

    // Nothing may stay: everything not in use goes; c, pulled ten minutes ago, stays.
    config.max_bytes = Some(0);
    let evictor = mirror_with(config);
    let done = evictor.evict(now).await.unwrap();
    assert_eq!(done.images, 1, "only b could go");
    assert!(meta.manifest(&name("up/team/b"), &v1).await.unwrap().is_none());
    assert!(meta.manifest(&name("up/team/c"), &v1).await.unwrap().is_some(), "an image in use is never evicted");
    assert!(!stored(&big.digest).await && !stored(&b.config.digest).await);
    assert!(stored(&a.layers[0].digest).await, "bytes a local repository links are kept");
    assert!(stored(&c.layers[0].digest).await);
    assert_eq!(evictor.stats.evicted_images.load(std::sync::atomic::Ordering::Relaxed), 1);
    while let Some(chunk) = stream.next().await {
        got.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(Digest::sha256_of(&got), big.digest, "the read under way finished whole");

    // Pulled again, an evicted image comes from the upstream again.
    pull_into_cache(name("up/team/a"), a.digest.clone()).await;
    assert_eq!(upstream_requests(&up_log).get(&("GET".into(), "/v2/team/a/manifests/v1".into())), Some(&2));
    assert!(stored(&a.config.digest).await);

    // Not pulled for a day: evicted whatever the size, unless pulled within the hour.
    let mut idle = UpstreamConfig::new("up", &up.url());
    idle.evict_unpulled_after = Some(Duration::from_secs(24 * 3600));
    let later = now + 30 * hour;
    registry.record_pull(&name("up/team/a"), &a.digest, later - 60_000);
    registry.flush_pulls().await.unwrap();
    let done = mirror_with(idle.clone()).evict(later).await.unwrap();
    assert_eq!(done.images, 1, "c, last pulled 30 hours ago");
    assert!(meta.manifest(&name("up/team/c"), &v1).await.unwrap().is_none());
    assert!(meta.manifest(&name("up/team/a"), &v1).await.unwrap().is_some());
    assert!(!stored(&c.layers[0].digest).await);
    assert!(mirror_with(idle).evict(later).await.unwrap().images == 0, "a second pass finds nothing more");
}

/// A cached layer that rotted on the mirror's disk: the scrub moves it aside, and the next pull
/// fetches it from the upstream again instead of failing (or serving the bad bytes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_cached_layer_is_fetched_again_from_the_upstream() {
    use blobs::{BlobBody, Blobs, FsBlobStore};
    use futures::TryStreamExt;
    use meta::{Meta, SqlMeta};
    use mirror::{Mirror, UpstreamConfig};
    use oci::{Reference, RepoName};
    use registry::{Registry, RegistryConfig};
    use std::sync::Arc;

    let tmp = tempfile::tempdir().unwrap();
    let (up, up_log) = upstream(tmp.path(), &[]);
    let image = ImageBuilder::new(13).layer(1, 300_000).build();
    let layout = tmp.path().join("layout");
    image.write_layout(&layout, "v1").unwrap();
    push_layout(&layout, "v1", &up.addr, "team/rot:v1", None);

    let dir = tmp.path().join("mirror");
    let blobs = Blobs(Arc::new(FsBlobStore::open(&dir).unwrap()));
    let meta = Meta(Arc::new(SqlMeta::open(&dir.join("meta.db")).await.unwrap()));
    let registry = Arc::new(Registry::new(blobs.clone(), meta.clone(), RegistryConfig::default()));
    let mirror = Arc::new(Mirror::new(registry.clone(), blobs.clone(), meta.clone(), vec![UpstreamConfig::new("up", &up.url())]).unwrap());
    let repo: RepoName = "up/team/rot".parse().unwrap();
    let route = mirror.route(&repo).unwrap().unwrap();
    let layer = &image.layers[0];
    let read = |mirror: Arc<Mirror>| {
        let (route, repo, digest) = (route.clone(), repo.clone(), layer.digest.clone());
        async move {
            let BlobBody::Stream { stream, .. } = mirror.blob(&route, &repo, &digest, None).await.unwrap().body else { panic!() };
            let chunks: Vec<bytes::Bytes> = stream.try_collect().await.unwrap();
            chunks.concat()
        }
    };
    assert_eq!(mirror.manifest(&route, &repo, &Reference::Tag("v1".parse().unwrap())).await.unwrap().content.digest, image.digest);
    assert_eq!(read(mirror.clone()).await, &layer.bytes[..]);
    let fetched = || upstream_requests(&up_log).get(&("GET".to_owned(), format!("/v2/team/rot/blobs/{}", layer.digest))).copied();
    assert_eq!(fetched(), Some(1));

    let path = test_support::stored_blob_path(&dir, &layer.digest);
    let mut rotten = std::fs::read(&path).unwrap();
    rotten[5000] ^= 0xff;
    std::fs::write(&path, rotten).unwrap();
    let found = registry.scrub(0).await.unwrap();
    assert_eq!(found.damaged.iter().map(|d| &d.digest).collect::<Vec<_>>(), vec![&layer.digest], "{found:?}");

    assert_eq!(read(mirror.clone()).await, &layer.bytes[..], "fetched again");
    assert_eq!(fetched(), Some(2));
    assert_eq!(registry.scrub(0).await.unwrap().damaged, vec![], "and stored whole");
    assert!(up.stop());
}

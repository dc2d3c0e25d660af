//! Two `customs serve` replicas sharing their records in a real PostgreSQL over TLS (`records.url`) and
//! their blobs in a real S3 server (s3s-fs), each with a data directory of its own, used by a real
//! skopeo: what is pushed to one is pulled whole from the other, a chunked upload begun on one is
//! finished on the other, a delete on one is seen by the other, each image is inspected once and
//! each event delivered to a webhook once (by the replica that leads the deliveries; when it dies
//! the other takes over), and a server with records of its own is refused the
//! replicas' bucket prefix. PostgreSQL crashing under the replicas' pushes loses no acknowledged
//! push, and they take pushes again once it is back.

use std::path::Path;
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use test_support::{Client, ImageBuilder, Index, Postgres, S3Server, ServerProcess, WebhookReceiver, skopeo};

fn customs() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_customs"))
}

/// Waits until `check` holds, up to `limit`.
async fn eventually<F: std::future::Future<Output = bool>>(limit: Duration, what: &str, mut check: impl FnMut() -> F) {
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < limit, "{what} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_over_postgres_and_s3_serve_one_registry() {
    let tmp = tempfile::tempdir().unwrap();
    // The database takes only TLS with a client certificate, as a managed one may.
    let pg = Postgres::start_tls();
    let (crt, key) = pg.client_certificate();
    let records = format!("{}?sslmode=verify-full&sslrootcert={}&sslcert={}&sslkey={}", pg.database(), pg.ca_file().display(), crt.display(), key.display());
    let s3 = S3Server::start(&tmp.path().join("s3"));
    // Both replicas deliver to one webhook receiver.
    let hook = WebhookReceiver::start(0);
    let settings = tmp.path().join("customs.toml");
    let quota = "[[quotas.namespaces]]\nnamespace = \"quota\"\nmax_bytes = 10000\n";
    std::fs::write(&settings, format!("[[webhooks]]\nname = \"ci\"\nurl = \"{}\"\n{quota}", hook.url)).unwrap();
    let mut env = s3.serve_env("registry");
    env.push(("CUSTOMS_RECORDS__URL".into(), records));
    env.push(("CUSTOMS_CONFIG".into(), settings.display().to_string()));
    env.push(("CUSTOMS_LOG".into(), "info".into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let logs = [tmp.path().join("a.log"), tmp.path().join("b.log")];
    let a = ServerProcess::start_logged(customs(), &tmp.path().join("a"), &env, &logs[0]).unwrap();
    let b = ServerProcess::start_logged(customs(), &tmp.path().join("b"), &env, &logs[1]).unwrap();
    let (ca, cb) = (Client::new(&a.url()), Client::new(&b.url()));

    // skopeo pushes an image to one replica and an index to the other; each comes back whole,
    // with the same digests, from the replica it was not pushed to.
    let image = ImageBuilder::new(81).layer(1, 300_000).layer(2, 50_000).build();
    let index = Index::new(vec![
        ImageBuilder::new(82).layer(3, 20_000).arch("amd64").build(),
        ImageBuilder::new(83).layer(3, 20_000).arch("arm64").build(),
    ]);
    let src = tmp.path().join("src");
    image.write_layout(&src, "one").unwrap();
    index.write_layout(&src, "multi").unwrap();
    skopeo(&["copy", "--dest-tls-verify=false", &format!("oci:{}:one", src.display()), &format!("docker://{}/team/app:one", a.addr)]);
    skopeo(&["copy", "--all", "--dest-tls-verify=false", &format!("oci:{}:multi", src.display()), &format!("docker://{}/team/app:multi", b.addr)]);
    let out = tmp.path().join("out");
    skopeo(&["copy", "--src-tls-verify=false", &format!("docker://{}/team/app:one", b.addr), &format!("oci:{}:one", out.display())]);
    for blob in image.blobs() {
        assert!(std::fs::read(out.join("blobs/sha256").join(blob.digest.hex())).unwrap() == blob.bytes, "{} whole", blob.digest);
    }
    let inspected = skopeo(&["inspect", "--raw", "--tls-verify=false", &format!("docker://{}/team/app:multi", a.addr)]);
    assert_eq!(inspected.as_bytes(), &index.manifest[..], "the index pushed to b, from a");
    for (replica, server) in [("a", &a), ("b", &b)] {
        let tags = skopeo(&["list-tags", "--tls-verify=false", &format!("docker://{}/team/app", server.addr)]);
        assert!(tags.contains("\"one\"") && tags.contains("\"multi\""), "{replica}: {tags}");
    }

    // A chunked upload: begun on a, its second chunk and commit on b (the session is a record,
    // its part in the bucket).
    let bytes: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let digest = oci::Digest::sha256_of(&bytes);
    let started = ca.call(Method::POST, "/v2/team/chunked/blobs/uploads/", &[], Vec::new()).await.unwrap();
    assert_eq!(started.status, StatusCode::ACCEPTED);
    let location = started.headers["location"].to_str().unwrap().to_owned();
    let first = ca.call(Method::PATCH, &location, &[("content-range", "0-99999")], bytes[..100_000].to_vec()).await.unwrap();
    assert_eq!(first.status, StatusCode::ACCEPTED, "{:?}", first.body);
    let location = first.headers["location"].to_str().unwrap().to_owned();
    let on_b = |path: &str| if path.starts_with("http") { path.replacen(&a.url(), &b.url(), 1) } else { path.to_owned() };
    let second = cb.call(Method::PATCH, &on_b(&location), &[("content-range", "100000-199999")], bytes[100_000..].to_vec()).await.unwrap();
    assert_eq!(second.status, StatusCode::ACCEPTED, "{:?}", second.body);
    let location = on_b(second.headers["location"].to_str().unwrap());
    let sep = if location.contains('?') { '&' } else { '?' };
    let done = cb.call(Method::PUT, &format!("{location}{sep}digest={digest}"), &[], Vec::new()).await.unwrap();
    assert_eq!(done.status, StatusCode::CREATED, "{:?}", done.body);
    let read = ca.call(Method::GET, &format!("/v2/team/chunked/blobs/{digest}"), &[], Vec::new()).await.unwrap();
    assert_eq!((read.status, read.body.len()), (StatusCode::OK, bytes.len()));
    assert!(read.body[..] == bytes[..], "the blob committed on b reads whole on a");

    // A namespace's quota holds across replicas: with 9 000 bytes left, of six pushes of 4 000
    // at once, three to each replica, two land, though each replica counted the namespace first.
    let post_whole = |client: &Client, repo: &str, bytes: Vec<u8>| {
        let path = format!("/v2/{repo}/blobs/uploads/?digest={}", oci::Digest::sha256_of(&bytes));
        let client = client.clone();
        async move { client.call(Method::POST, &path, &[], bytes).await.unwrap().status }
    };
    assert_eq!(post_whole(&ca, "quota/first", vec![7; 1_000]).await, StatusCode::CREATED);
    let used = async |client: &Client| test_support::metric(&client.metrics().await, "customs_quota_used_bytes{namespace=\"quota\"}");
    assert_eq!((used(&ca).await, used(&cb).await), (Some(1_000.0), Some(1_000.0)));
    let pushes = (0..6u8).map(|i| post_whole(if i % 2 == 0 { &ca } else { &cb }, &format!("quota/job-{i}"), vec![i; 4_000]));
    let statuses = futures::future::join_all(pushes).await;
    let created = statuses.iter().filter(|s| **s == StatusCode::CREATED).count();
    let refused = statuses.iter().filter(|s| **s == StatusCode::FORBIDDEN).count();
    assert_eq!((created, refused), (2, 4), "{statuses:?}");
    assert_eq!((used(&ca).await, used(&cb).await), (Some(9_000.0), Some(9_000.0)));

    // Each replica runs an inspection worker; the image is inspected once, and its SBOM and
    // report are referrers on both.
    let referrers = format!("/v2/team/app/referrers/{}", image.digest);
    eventually(Duration::from_secs(90), "the image's SBOM and report", || async {
        let r = cb.call(Method::GET, &referrers, &[], Vec::new()).await.unwrap();
        let listed: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        listed["manifests"].as_array().is_some_and(|m| m.len() >= 2)
    })
    .await;
    let listed: serde_json::Value = serde_json::from_slice(&ca.call(Method::GET, &referrers, &[], Vec::new()).await.unwrap().body).unwrap();
    let mut kinds: Vec<&str> = listed["manifests"].as_array().unwrap().iter().map(|m| m["artifactType"].as_str().unwrap()).collect();
    kinds.sort();
    assert_eq!(kinds, ["application/vnd.customs.report.v1+json", "application/vnd.cyclonedx+json"], "attached once, not once per replica");

    // The webhook hears of each push and verdict once, from the replica that leads deliveries,
    // not once per replica.
    let subject = format!("team/app@{}", image.digest);
    let heard = |kind: &str| hook.deliveries().iter().filter(|d| d.event()["subject"] == subject && d.event()["type"] == kind).count();
    eventually(Duration::from_secs(30), "the image's push and verdict delivered", || async {
        heard("dev.customs.image.pushed") >= 1 && heard("dev.customs.image.inspected") >= 1
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut ids: Vec<String> = hook.deliveries().iter().map(|d| d.event()["id"].as_str().unwrap().to_owned()).collect();
    let delivered = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), delivered, "an event was delivered twice: {:?}", hook.deliveries().iter().map(|d| d.event()["id"].clone()).collect::<Vec<_>>());
    let leaders: Vec<usize> = (0..2).filter(|&i| std::fs::read_to_string(&logs[i]).unwrap().contains("this replica leads webhooks now")).collect();
    assert_eq!(leaders.len(), 1, "one replica leads the deliveries: {leaders:?}");
    // `/metrics` says which, on both.
    for (i, client) in [&ca, &cb].into_iter().enumerate() {
        let shown = test_support::metric(&client.metrics().await, "customs_leads{task=\"webhooks\"}");
        assert_eq!(shown, Some(if leaders[0] == i { 1.0 } else { 0.0 }), "replica {i}");
    }

    // A delete on b is seen on a (its manifest cache trusts a lookup for 5 s at most).
    let deleted = cb.call(Method::DELETE, &format!("/v2/team/app/manifests/{}", image.digest), &[], Vec::new()).await.unwrap();
    assert_eq!(deleted.status, StatusCode::ACCEPTED);
    eventually(Duration::from_secs(10), "a to see b's delete", || async {
        ca.call(Method::GET, "/v2/team/app/manifests/one", &[], Vec::new()).await.unwrap().status == StatusCode::NOT_FOUND
    })
    .await;

    // A server whose records are its own (SQLite in its data directory) may not share the
    // replicas' prefix: the bucket is claimed for their records.
    let own: Vec<(&str, &str)> = env.iter().filter(|(k, _)| *k != "CUSTOMS_RECORDS__URL").copied().collect();
    let log = tmp.path().join("c.log");
    let refused = ServerProcess::start_logged(customs(), &tmp.path().join("c"), &own, &log);
    assert!(refused.is_err(), "a server with other records started on the replicas' prefix");
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(said.contains("holds the blobs of customs records in PostgreSQL, shared by replicas"), "{said}");

    // The replica that leads the deliveries dies (SIGKILL: no goodbye); its session ends with
    // it, the other takes the lead over and delivers what is pushed next.
    let (leader, survivor, survivor_log) = if leaders[0] == 0 { (a, b, &logs[1]) } else { (b, a, &logs[0]) };
    leader.kill_hard();
    let later = ImageBuilder::new(84).layer(5, 10_000).build();
    Client::new(&survivor.url()).push_image("team/later", &later, "v1").await;
    let subject = format!("team/later@{}", later.digest);
    eventually(Duration::from_secs(30), "the survivor to deliver the next push", || async {
        hook.deliveries().iter().any(|d| d.event()["subject"] == subject && d.event()["type"] == "dev.customs.image.pushed")
    })
    .await;
    assert!(std::fs::read_to_string(survivor_log).unwrap().contains("this replica leads webhooks now"));
    assert!(survivor.stop(), "the survivor drains and exits cleanly");
}

/// PostgreSQL crashes (an immediate stop: no checkpoint, every session cut) and comes back while
/// two replicas take pushes from four clients. No push is acknowledged that is not kept: every
/// image answered 201 reads back whole from both replicas afterwards, and every push refused in
/// between was told so with a 5xx. The replicas take pushes again once the database is back,
/// without being restarted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_pushes_outlive_a_database_crash() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

    let tmp = tempfile::tempdir().unwrap();
    let pg = Postgres::start();
    let s3 = S3Server::start(&tmp.path().join("s3"));
    let mut env = s3.serve_env("registry");
    env.push(("CUSTOMS_RECORDS__URL".into(), pg.durable_database()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let a = ServerProcess::start_logged(customs(), &tmp.path().join("a"), &env, &tmp.path().join("a.log")).unwrap();
    let b = ServerProcess::start_logged(customs(), &tmp.path().join("b"), &env, &tmp.path().join("b.log")).unwrap();
    let clients = [Client::new(&a.url()), Client::new(&b.url())];

    /// A push's image, where it went, when it began, and how it was answered.
    struct Push {
        image: test_support::Image,
        /// The replica it was sent to.
        replica: usize,
        repo: String,
        tag: String,
        began: Instant,
        ended: Instant,
        refused: Option<test_support::Refused>,
    }
    let stop = Arc::new(AtomicBool::new(false));
    let pushers: Vec<_> = (0..4u64)
        .map(|p| {
            let replica = p as usize % 2;
            let (client, stop) = (clients[replica].clone(), stop.clone());
            tokio::spawn(async move {
                let mut pushes = Vec::new();
                for n in 0u64.. {
                    if stop.load(Relaxed) {
                        break;
                    }
                    let image = ImageBuilder::new(1_000 * p + n).layer(1, 2_000).build();
                    let (repo, tag, began) = (format!("crash/p{p}"), format!("v{n}"), Instant::now());
                    let refused = client.try_push_image(&repo, &image, &tag).await.err();
                    pushes.push(Push { image, replica, repo, tag, began, ended: Instant::now(), refused });
                    // A CI fleet's pace, not a flood: what matters is what is under way at the crash.
                    tokio::time::sleep(Duration::from_millis(150)).await;
                }
                pushes
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let crashed = Instant::now();
    pg.crash();
    // Longer than a replica waits for a connection (10 s): requests meanwhile are refused.
    tokio::time::sleep(Duration::from_secs(12)).await;
    pg.start_again();
    let back = Instant::now();
    tokio::time::sleep(Duration::from_secs(8)).await;
    stop.store(true, Relaxed);
    let mut pushes = Vec::new();
    for pusher in pushers {
        pushes.extend(pusher.await.unwrap());
    }

    let refused: Vec<&Push> = pushes.iter().filter(|p| p.refused.is_some()).collect();
    let acknowledged: Vec<&Push> = pushes.iter().filter(|p| p.refused.is_none()).collect();
    eprintln!("{} pushes acknowledged, {} refused", acknowledged.len(), refused.len());
    for push in &refused {
        let answer = push.refused.as_ref().unwrap();
        assert!(answer.status.is_some_and(|s| s.is_server_error()), "refused with a 5xx: {answer}");
    }
    // Under way while the database was down: begun before it was back, ended after it went.
    let around = |p: &Push| p.began <= back && p.ended >= crashed;
    assert!(pushes.iter().any(around), "pushes were under way while the database was down");
    for (i, client) in clients.iter().enumerate() {
        let recovered = acknowledged.iter().filter(|p| p.replica == i && p.began > back + Duration::from_secs(2)).count();
        assert!(recovered > 0, "replica {i} took pushes again once the database was back");
        let ready = client.call(Method::GET, "/readyz", &[], Vec::new()).await.unwrap();
        assert_eq!(ready.status, StatusCode::OK, "replica {i} is ready");
    }
    // Every acknowledged image is let through by the pull gate once inspected, including those
    // whose inspection the crash broke off.
    let deadline = Instant::now() + Duration::from_secs(60);
    for push in &acknowledged {
        let path = format!("/v2/{}/manifests/{}", push.repo, push.tag);
        loop {
            let status = clients[0].call(Method::HEAD, &path, &[], Vec::new()).await.unwrap().status;
            if status != StatusCode::TOO_MANY_REQUESTS {
                break;
            }
            assert!(Instant::now() < deadline, "{}:{} still waits for its inspection", push.repo, push.tag);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // Every acknowledged push is in the records, read through the replica it was not pushed to;
    // those under way while the database was down are read back whole from both.
    for push in &acknowledged {
        let around = around(push);
        for client in clients.iter().enumerate().filter(|(i, _)| around || *i != push.replica).map(|(_, c)| c) {
            let method = if around { Method::GET } else { Method::HEAD };
            let manifest = client.call(method.clone(), &format!("/v2/{}/manifests/{}", push.repo, push.tag), &[], Vec::new()).await.unwrap();
            assert_eq!(manifest.status, StatusCode::OK, "{}:{} from {}", push.repo, push.tag, client.base());
            assert_eq!(manifest.headers["docker-content-digest"], push.image.digest.to_string().as_str(), "{}:{}", push.repo, push.tag);
            assert!(!around || manifest.body == push.image.manifest, "{}:{} whole", push.repo, push.tag);
            for blob in push.image.blobs() {
                let read = client.call(method.clone(), &format!("/v2/{}/blobs/{}", push.repo, blob.digest), &[], Vec::new()).await.unwrap();
                assert_eq!(read.status, StatusCode::OK, "{} of {}:{}", blob.digest, push.repo, push.tag);
                assert!(!around || read.body == blob.bytes, "{} whole", blob.digest);
            }
        }
    }
}

/// An installation that began as one server on the embedded default (blobs and `meta.db` in its
/// data directory; access on) moves its blobs into S3 with `customs blobs copy` and its records
/// into PostgreSQL with `customs records copy`, and two replicas (one on the old data directory,
/// one on a new one) serve what it held: the image whole, its inspection's SBOM and report (not
/// inspected again), its user, its audit log; then new pushes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_server_moves_its_records_into_postgres_for_replicas() {
    use base64::Engine;
    let tmp = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(&tmp.path().join("s3"));
    let pg = Postgres::start();
    // The first admin's password, made here.
    let password: String = {
        let mut b = [0u8; 12];
        std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom").unwrap(), &mut b).unwrap();
        b.iter().map(|x| format!("{x:02x}")).collect()
    };
    let mut env: Vec<(String, String)> =
        [("CUSTOMS_AUTH__ENABLED", "true"), ("CUSTOMS_AUTH__ADMIN_USER", "admin")].map(|(k, v)| (k.to_owned(), v.to_owned())).into();
    env.push(("CUSTOMS_AUTH__ADMIN_PASSWORD".into(), password.clone()));
    let access = env.len();
    env.extend(s3.serve_env("moved"));
    let moved: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let single = &moved[..access];
    let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));
    let creds = format!("admin:{password}");
    let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(&creds));
    let auth = [("authorization", basic.as_str())];

    // One server on the embedded default records: an image pushed, inspected, its SBOM and report attached.
    let server = ServerProcess::start_with(customs(), &one, single).unwrap();
    let image = ImageBuilder::new(91).layer(1, 200_000).build();
    let src = tmp.path().join("src");
    image.write_layout(&src, "v1").unwrap();
    skopeo(&["copy", "--dest-tls-verify=false", "--dest-creds", &creds, &format!("oci:{}:v1", src.display()), &format!("docker://{}/team/app:v1", server.addr)]);
    let referrers = format!("/v2/team/app/referrers/{}", image.digest);
    let attached = |client: Client| {
        let referrers = referrers.clone();
        async move {
            let r = client.call(Method::GET, &referrers, &auth, Vec::new()).await.unwrap();
            assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
            let listed: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            listed["manifests"].as_array().unwrap().iter().map(|m| m["digest"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
        }
    };
    let client = Client::new(&server.url());
    eventually(Duration::from_secs(90), "the image's SBOM and report", || async { attached(client.clone()).await.len() == 2 }).await;
    let before = attached(client.clone()).await;
    assert!(server.stop());
    assert!(one.join("meta.db").exists());

    // The copies, with the server stopped and the settings the replicas will have: blobs, then
    // records. A second blob copy finds everything there; a second records copy is refused and
    // changes nothing.
    let url = pg.database();
    let copy = |args: &[&str], expect_ok: bool| {
        let mut command = std::process::Command::new(customs());
        command.args(args).arg("--data").arg(&one).envs(moved.iter().copied());
        let out = command.output().unwrap();
        let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.status.success(), expect_ok, "{args:?}: {said}");
        said
    };
    let said = copy(&["blobs", "copy"], true);
    let stored = test_support::files_under(&one.join("blobs")).len();
    assert!(stored >= 4, "the image's blobs and its artifacts' ({stored})");
    assert!(said.contains(&format!("copied {stored} blobs")) && said.contains("0 were there already"), "{said}");
    let said = copy(&["blobs", "copy"], true);
    assert!(said.contains("copied 0 blobs (0 bytes)") && said.contains(&format!("{stored} were there already")), "{said}");
    let said = copy(&["records", "copy", "--to", &url], true);
    assert!(said.contains("copied manifests: ") && said.contains("copied audit: ") && said.contains("now start every replica with records.url"), "{said}");
    let again = copy(&["records", "copy", "--to", &url], false);
    assert!(again.contains("already holds records") && again.contains("no record was copied"), "{again}");
    std::fs::remove_dir_all(one.join("blobs")).unwrap();

    // Two replicas over the copied records: the old data directory's, and a new one.
    let mut replicated = env.clone();
    replicated.push(("CUSTOMS_RECORDS__URL".into(), url.clone()));
    let replicated: Vec<(&str, &str)> = replicated.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let a = ServerProcess::start_with(customs(), &one, &replicated).unwrap();
    let b = ServerProcess::start_with(customs(), &two, &replicated).unwrap();
    assert!(!two.join("meta.db").exists(), "the new replica keeps no records of its own");
    let out = tmp.path().join("out");
    skopeo(&["copy", "--src-tls-verify=false", "--src-creds", &creds, &format!("docker://{}/team/app:v1", b.addr), &format!("oci:{}:v1", out.display())]);
    for blob in image.blobs() {
        assert!(std::fs::read(out.join("blobs/sha256").join(blob.digest.hex())).unwrap() == blob.bytes, "{} whole", blob.digest);
    }
    let cb = Client::new(&b.url());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(attached(cb.clone()).await, before, "the inspection's artifacts were copied, not made again");
    let audit = cb.call(Method::GET, "/api/v1/audit?limit=1000", &auth, Vec::new()).await.unwrap();
    assert_eq!(audit.status, StatusCode::OK, "{:?}", audit.body);
    let audit = String::from_utf8_lossy(&audit.body).into_owned();
    assert!(audit.contains(&format!("team/app:v1@{}", image.digest)), "the push before the move is in the audit log: {audit}");
    let anonymous = cb.call(Method::GET, "/v2/team/app/manifests/v1", &[], Vec::new()).await.unwrap();
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED, "access control came along");

    // New pushes after the move, to one replica, are seen on the other.
    let later = ImageBuilder::new(92).layer(2, 30_000).build();
    later.write_layout(&src, "v2").unwrap();
    skopeo(&["copy", "--dest-tls-verify=false", "--dest-creds", &creds, &format!("oci:{}:v2", src.display()), &format!("docker://{}/team/app:v2", a.addr)]);
    let tags = cb.call(Method::GET, "/v2/team/app/tags/list", &auth, Vec::new()).await.unwrap();
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&tags.body).unwrap()["tags"], serde_json::json!(["v1", "v2"]));
    assert!(a.stop() && b.stop());
}

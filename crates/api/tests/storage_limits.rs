//! Storage limits through the protocol: namespace quotas (403 DENIED with the numbers, nothing
//! kept, a blob the namespace holds costs nothing, concurrent pushes never pass a quota together,
//! through one replica or several)
//! and the blob store's reserve of free space (507, pulls and deletes go on); `/api/v1/quotas`.

use std::time::Duration;

use http::{Method, StatusCode};
use oci::Digest;
use test_support::{ImageBuilder, TestRegistry, TestResponse, metric};

fn quotas(named: &[(&str, u64)]) -> registry::RegistryConfig {
    let namespaces = named
        .iter()
        .map(|(ns, max)| registry::NamespaceQuota { namespace: (*ns).into(), max_bytes: Some(*max) })
        .collect();
    registry::RegistryConfig { quotas: registry::Quotas { namespaces, default_bytes: None }, ..Default::default() }
}

async fn post_whole(reg: &TestRegistry, repo: &str, bytes: &[u8]) -> TestResponse {
    let digest = Digest::sha256_of(bytes);
    reg.call(Method::POST, &format!("/v2/{repo}/blobs/uploads/?digest={digest}"), &[], bytes.to_vec()).await
}

fn message(r: &TestResponse) -> String {
    r.json()["errors"][0]["message"].as_str().unwrap_or_default().to_owned()
}

/// Nothing of a refused upload is left: no session record, no part on disk.
async fn nothing_pending(reg: &TestRegistry) {
    let stats = reg.registry.stats().await;
    assert_eq!(stats.upload_sessions_open, Some(0), "no session is left open");
    assert!(test_support::files_under(&reg.dir.path().join("uploads")).is_empty(), "no part is left on disk");
}

async fn used(reg: &TestRegistry, namespace: &str) -> f64 {
    let text = String::from_utf8(reg.get("/metrics").await.body.to_vec()).unwrap();
    metric(&text, &format!("customs_quota_used_bytes{{namespace=\"{namespace}\"}}")).expect("the namespace's usage is shown")
}

#[tokio::test]
async fn a_namespace_at_its_quota_refuses_what_would_pass_it_and_only_that() {
    let reg = TestRegistry::with_config(quotas(&[("team-a", 20_000), ("team-b", 1_000)])).await;
    let image = ImageBuilder::new(7).layer(1, 6_000).layer(1, 6_000).build();
    assert_eq!(reg.push_image("team-a/app", &image, "v1").await.status, StatusCode::CREATED);
    // The manifest counts as well as its blobs.
    let held: u64 = image.blobs().map(|b| b.bytes.len() as u64).sum::<u64>() + image.manifest.len() as u64;
    assert!(held > 12_000 && held < 15_000, "{held}");
    assert_eq!(used(&reg, "team-a").await, held as f64);

    // 8 000 more bytes would pass 20 000: refused whole, monolithic or chunked, and nothing kept.
    let big = vec![b'x'; 8_000];
    let refused = post_whole(&reg, "team-a/app", &big).await;
    assert_eq!((refused.status, refused.error_code().as_str()), (StatusCode::FORBIDDEN, "DENIED"));
    let said = message(&refused);
    assert!(said.contains("namespace team-a") && said.contains("20 kB storage quota") && said.contains("8.0 kB blob"), "{said}");
    assert_eq!(reg.head(&format!("/v2/team-a/app/blobs/{}", Digest::sha256_of(&big))).await.status, StatusCode::NOT_FOUND);
    nothing_pending(&reg).await;

    let started = reg.call(Method::POST, "/v2/team-a/other/blobs/uploads/", &[], vec![]).await;
    assert_eq!(started.status, StatusCode::ACCEPTED);
    let location = started.header("location").unwrap().to_owned();
    let range = format!("0-{}", big.len() - 1);
    let patched = reg.call(Method::PATCH, &location, &[("content-range", range.as_str())], big.clone()).await;
    assert_eq!(patched.status, StatusCode::ACCEPTED);
    let sep = if location.contains('?') { '&' } else { '?' };
    let put = reg.call(Method::PUT, &format!("{location}{sep}digest={}", Digest::sha256_of(&big)), &[], vec![]).await;
    assert_eq!((put.status, put.error_code().as_str()), (StatusCode::FORBIDDEN, "DENIED"), "{}", message(&put));
    assert_eq!(reg.get(&location).await.status, StatusCode::NOT_FOUND, "the session ended with the refusal");
    nothing_pending(&reg).await;

    // What the namespace already holds costs nothing: pushed again, mounted, or into another of
    // its repositories. Another namespace has its own quota; a namespace with none has no limit.
    let layer = &image.layers[0];
    assert_eq!(post_whole(&reg, "team-a/other", &layer.bytes).await.status, StatusCode::CREATED);
    let mount = format!("/v2/team-a/third/blobs/uploads/?mount={}&from=team-a/app", layer.digest);
    assert_eq!(reg.call(Method::POST, &mount, &[], vec![]).await.status, StatusCode::CREATED);
    assert_eq!(used(&reg, "team-a").await, held as f64);
    assert_eq!(post_whole(&reg, "team-c/app", &big).await.status, StatusCode::CREATED);
    assert_eq!(post_whole(&reg, "team-b/app", &[b'b'; 1_000]).await.status, StatusCode::CREATED);

    // A namespace at its quota refuses a new session before a byte is sent, and a mount of a blob
    // it does not hold.
    let early = reg.call(Method::POST, "/v2/team-b/app/blobs/uploads/", &[], vec![]).await;
    assert_eq!(early.status, StatusCode::FORBIDDEN);
    assert!(message(&early).contains("namespace team-b is at its storage quota: 1.0 kB used of 1.0 kB"), "{}", message(&early));
    let mount = format!("/v2/team-b/app/blobs/uploads/?mount={}&from=team-c/app", Digest::sha256_of(&big));
    assert_eq!(reg.call(Method::POST, &mount, &[], vec![]).await.status, StatusCode::FORBIDDEN);
    nothing_pending(&reg).await;
    // So is a manifest, even one that names only what the namespace holds.
    let held_blob = Digest::sha256_of(&[b'b'; 1_000]);
    let artifact = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/x.test",
            "config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{held_blob}","size":1000}},
            "layers":[{{"mediaType":"application/x.test","digest":"{held_blob}","size":1000}}]}}"#
    );
    let put = reg.put_manifest("team-b/app", "v1", "application/vnd.oci.image.manifest.v1+json", artifact.clone().into()).await;
    assert_eq!((put.status, put.error_code().as_str()), (StatusCode::FORBIDDEN, "DENIED"), "{}", message(&put));
    assert!(message(&put).contains("manifest would take namespace team-b"), "{}", message(&put));
    assert_eq!(reg.head("/v2/team-b/app/manifests/v1").await.status, StatusCode::NOT_FOUND, "nothing stored");
    // What customs attaches itself (an inspection's SBOM) is never refused, and counts.
    let team_b: oci::RepoName = "team-b/app".parse().unwrap();
    let sbom = bytes::Bytes::from_static(b"{\"bomFormat\":\"CycloneDX\"}");
    let (sbom_digest, sbom_len) = reg.registry.put_own_blob(&team_b, sbom.clone()).await.unwrap();
    assert_eq!(reg.get(&format!("/v2/team-b/app/blobs/{sbom_digest}")).await.body, sbom);
    let own = reg.registry.put_own_manifest(&team_b, artifact.clone().into(), "customs").await.unwrap();
    assert_eq!(reg.head(&format!("/v2/team-b/app/manifests/{}", own.digest)).await.status, StatusCode::OK);

    let text = String::from_utf8(reg.get("/metrics").await.body.to_vec()).unwrap();
    assert_eq!(metric(&text, "customs_quota_limit_bytes{namespace=\"team-a\"}"), Some(20_000.0));
    assert_eq!(metric(&text, "customs_quota_used_bytes{namespace=\"team-b\"}"), Some((1_000 + sbom_len + artifact.len() as u64) as f64));
    assert_eq!(metric(&text, "customs_quota_used_bytes{namespace=\"team-c\"}"), None, "team-c has no quota");

    // Deleting the image frees its bytes once garbage collection unlinks them; then the blob fits.
    assert_eq!(reg.delete(&format!("/v2/team-a/app/manifests/{}", image.digest)).await.status, StatusCode::ACCEPTED);
    assert_eq!(post_whole(&reg, "team-a/app", &big).await.status, StatusCode::FORBIDDEN, "deleted, not yet collected");
    reg.registry.collect_garbage(Duration::ZERO).await.unwrap();
    assert_eq!(used(&reg, "team-a").await, 0.0);
    assert_eq!(post_whole(&reg, "team-a/app", &big).await.status, StatusCode::CREATED);
    assert_eq!(used(&reg, "team-a").await, 8_000.0);
}

#[tokio::test]
async fn concurrent_pushes_never_pass_a_quota_together() {
    let reg = TestRegistry::with_config(quotas(&[("ci", 10_000)])).await;
    let blobs: Vec<Vec<u8>> = (0..8u8).map(|i| vec![i; 2_000]).collect();
    let pushes = blobs.iter().enumerate().map(|(i, b)| {
        let reg = &reg;
        async move { post_whole(reg, &format!("ci/job-{i}"), b).await.status }
    });
    let statuses = futures::future::join_all(pushes).await;
    let created = statuses.iter().filter(|s| **s == StatusCode::CREATED).count();
    let refused = statuses.iter().filter(|s| **s == StatusCode::FORBIDDEN).count();
    assert_eq!((created, refused), (5, 3), "{statuses:?}");
    assert_eq!(used(&reg, "ci").await, 10_000.0);
    nothing_pending(&reg).await;
}

#[tokio::test]
async fn replicas_never_pass_a_quota_together() {
    // Two replicas over the same blobs and records; each has counted the namespace (and so
    // trusts its count for a while) before the pushes begin.
    let a = TestRegistry::with_config(quotas(&[("ci", 10_000)])).await;
    let b = a.replica();
    assert_eq!(a.push_blob("ci/first", &[7; 1_000]).await, Digest::sha256_of(&[7; 1_000]));
    assert_eq!((used(&a, "ci").await, used(&b, "ci").await), (1_000.0, 1_000.0));

    // 9 000 bytes are left: of three pushes of 4 000 on each replica at once, two can land.
    let blobs: Vec<Vec<u8>> = (0..6u8).map(|i| vec![i; 4_000]).collect();
    let pushes = blobs.iter().enumerate().map(|(i, bytes)| {
        let replica = if i % 2 == 0 { &a } else { &b };
        async move { post_whole(replica, &format!("ci/job-{i}"), bytes).await }
    });
    let responses = futures::future::join_all(pushes).await;
    let statuses: Vec<StatusCode> = responses.iter().map(|r| r.status).collect();
    let created = statuses.iter().filter(|s| **s == StatusCode::CREATED).count();
    assert_eq!(created, 2, "{statuses:?}");
    for refused in responses.iter().filter(|r| r.status != StatusCode::CREATED) {
        assert_eq!((refused.status, refused.error_code().as_str()), (StatusCode::FORBIDDEN, "DENIED"));
    }
    // Both replicas see what both stored, without waiting for a new count.
    assert_eq!((used(&a, "ci").await, used(&b, "ci").await), (9_000.0, 9_000.0));
    assert_eq!(b.call(Method::POST, "/v2/ci/late/blobs/uploads/", &[], vec![]).await.status, StatusCode::ACCEPTED);
    assert_eq!(post_whole(&b, "ci/late", &[9; 1_001]).await.status, StatusCode::FORBIDDEN, "1 000 bytes are left");
    assert_eq!(post_whole(&a, "ci/late", &[9; 1_000]).await.status, StatusCode::CREATED);
    assert_eq!(b.call(Method::POST, "/v2/ci/later/blobs/uploads/", &[], vec![]).await.status, StatusCode::FORBIDDEN, "at the quota");
}

#[tokio::test]
async fn a_store_at_its_reserve_refuses_uploads_with_507_and_still_serves() {
    let reg = TestRegistry::new().await;
    let image = ImageBuilder::new(9).layer(1, 4_000).build();
    assert_eq!(reg.push_image("app/web", &image, "v1").await.status, StatusCode::CREATED);
    let TestRegistry { dir, .. } = reg;

    // The same data, with a reserve larger than the disk's free space.
    let free = blobs::BlobStore::space(&blobs::FsBlobStore::open(dir.path()).unwrap()).unwrap().free;
    let reg = TestRegistry::with_reserve(dir, free + (1 << 40), Default::default()).await;
    let refused = post_whole(&reg, "app/web", b"a new layer").await;
    assert_eq!((refused.status, refused.error_code().as_str()), (StatusCode::INSUFFICIENT_STORAGE, "DENIED"));
    assert!(message(&refused).contains("storage is nearly full") && message(&refused).contains("kept in reserve"), "{}", message(&refused));
    let started = reg.call(Method::POST, "/v2/app/web/blobs/uploads/", &[], vec![]).await;
    assert_eq!(started.status, StatusCode::INSUFFICIENT_STORAGE);
    nothing_pending(&reg).await;

    // Pulls, tags of what is stored, and deletes go on.
    assert_eq!(reg.get("/v2/app/web/manifests/v1").await.status, StatusCode::OK);
    assert_eq!(reg.get(&format!("/v2/app/web/blobs/{}", image.layers[0].digest)).await.body, image.layers[0].bytes);
    let retag = reg.put_manifest("app/web", "v2", &image.media_type, image.manifest.clone()).await;
    assert_eq!(retag.status, StatusCode::CREATED);
    assert_eq!(reg.delete("/v2/app/web/manifests/v2").await.status, StatusCode::ACCEPTED);

    let text = String::from_utf8(reg.get("/metrics").await.body.to_vec()).unwrap();
    let (shown_free, reserve) =
        (metric(&text, "customs_storage_free_bytes").unwrap(), metric(&text, "customs_storage_reserve_bytes").unwrap());
    assert!(shown_free > 0.0 && shown_free < reserve, "{shown_free} {reserve}");
}

#[tokio::test]
async fn the_quota_api_lists_every_namespace_a_quota_applies_to_and_answers_for_one() {
    let mut config = quotas(&[("team-a", 20_000), ("org/team", 5_000)]);
    config.quotas.namespaces.push(registry::NamespaceQuota { namespace: "ci".into(), max_bytes: None });
    config.quotas.default_bytes = Some(50_000);
    let reg = TestRegistry::with_config(config).await;
    // "team-a-x" sorts between "team-a" and "team-a/…": a namespace the listing must not skip.
    let stored = [
        ("team-a/app", 1_000),
        ("team-a/web", 2_000),
        ("team-a-x/app", 300),
        ("org/team/app", 400),
        ("org/other", 500),
        ("ci/app", 600),
        ("alpine", 700),
        ("team-b/x", 800),
        ("zeta/app", 900),
    ];
    for (i, (repo, size)) in stored.iter().enumerate() {
        let bytes = vec![i as u8; *size];
        assert_eq!(post_whole(&reg, repo, &bytes).await.status, StatusCode::CREATED, "{repo}");
    }
    let expected = [
        ("org", 50_000, 500),
        ("org/team", 5_000, 400),
        ("team-a", 20_000, 3_000),
        ("team-a-x", 50_000, 300),
        ("team-b", 50_000, 800),
        ("zeta", 50_000, 900),
    ];
    let entry = |v: &serde_json::Value| {
        let n = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("{k} in {v}"));
        assert_eq!(n("free_bytes"), n("max_bytes") - n("used_bytes"));
        (v["namespace"].as_str().unwrap().to_owned(), n("max_bytes"), n("used_bytes"))
    };
    let want: Vec<_> = expected.iter().map(|(ns, max, used)| (ns.to_string(), *max, *used)).collect();
    let all = reg.get("/api/v1/quotas").await;
    assert_eq!(all.status, StatusCode::OK);
    assert!(all.header("link").is_none());
    assert_eq!(all.json()["quotas"].as_array().unwrap().iter().map(entry).collect::<Vec<_>>(), want);

    // Page by page, following the links, the same list.
    let (mut pages, mut next, mut seen) = (0, Some("/api/v1/quotas?n=2".to_owned()), Vec::new());
    while let Some(path) = next.take() {
        let page = reg.get(&path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}");
        let entries = page.json()["quotas"].as_array().unwrap().clone();
        assert!(entries.len() <= 2);
        seen.extend(entries.iter().map(entry));
        next = page.header("link").map(|l| l.trim_start_matches('<').split('>').next().unwrap().to_owned());
        pages += 1;
    }
    assert_eq!((seen, pages), (want, 3));
    let after = reg.get("/api/v1/quotas?last=team-a").await.json();
    let names: Vec<_> = after["quotas"].as_array().unwrap().iter().map(|q| q["namespace"].as_str().unwrap().to_owned()).collect();
    assert_eq!(names, ["team-a-x", "team-b", "zeta"]);
    // Hostile paging: a clear 400, or a page after whatever string `last` is.
    assert_eq!(reg.get("/api/v1/quotas?n=lots").await.status, StatusCode::BAD_REQUEST);
    let odd = reg.get("/api/v1/quotas?last=%27%3B%20DROP%20TABLE%20repositories%3B--&n=1").await;
    assert_eq!(odd.status, StatusCode::OK);
    assert_eq!(odd.json()["quotas"][0]["namespace"], "org", "every name sorts after that one");

    // One: a namespace, or the one a repository counts against.
    let reg = &reg;
    let one = |path: &'static str| async move { reg.get(&format!("/api/v1/quotas/{path}")).await };
    assert_eq!(entry(&one("team-a").await.json()), ("team-a".to_owned(), 20_000, 3_000));
    assert_eq!(entry(&one("team-a/app").await.json()), ("team-a".to_owned(), 20_000, 3_000));
    assert_eq!(entry(&one("org/team/app").await.json()), ("org/team".to_owned(), 5_000, 400));
    assert_eq!(entry(&one("org/other").await.json()), ("org".to_owned(), 50_000, 500));
    // A layer of org/team/app is new to org: the inner namespace's bytes are not the outer one's.
    assert_eq!(post_whole(reg, "org/other", &[3u8; 400]).await.status, StatusCode::CREATED);
    assert_eq!(entry(&one("org").await.json()), ("org".to_owned(), 50_000, 900));
    assert_eq!(entry(&one("org/team").await.json()), ("org/team".to_owned(), 5_000, 400));
    let exempt = one("ci/app").await;
    assert_eq!((exempt.status, exempt.error_code().as_str()), (StatusCode::NOT_FOUND, "NAME_UNKNOWN"));
    assert!(message(&exempt).contains("no storage quota applies to ci/app"), "{}", message(&exempt));
    assert_eq!(one("Bad%20Name").await.status, StatusCode::BAD_REQUEST);
    assert_eq!(reg.call(Method::POST, "/api/v1/quotas", &[], vec![]).await.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(reg.delete("/api/v1/quotas/team-a").await.status, StatusCode::METHOD_NOT_ALLOWED);
}

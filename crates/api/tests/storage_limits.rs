//! Storage limits through the protocol: namespace quotas (403 DENIED with the numbers, nothing
//! kept, a blob the namespace holds costs nothing, concurrent pushes never pass a quota together)
//! and the blob store's reserve of free space (507, pulls and deletes go on).

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
    let held: u64 = image.blobs().map(|b| b.bytes.len() as u64).sum();
    assert!(held > 12_000 && held < 14_000, "{held}");
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
    // What customs attaches itself (an inspection's SBOM) is never refused, and counts.
    let team_b: oci::RepoName = "team-b/app".parse().unwrap();
    let sbom = bytes::Bytes::from_static(b"{\"bomFormat\":\"CycloneDX\"}");
    let (sbom_digest, sbom_len) = reg.registry.put_own_blob(&team_b, sbom.clone()).await.unwrap();
    assert_eq!(reg.get(&format!("/v2/team-b/app/blobs/{sbom_digest}")).await.body, sbom);

    let text = String::from_utf8(reg.get("/metrics").await.body.to_vec()).unwrap();
    assert_eq!(metric(&text, "customs_quota_limit_bytes{namespace=\"team-a\"}"), Some(20_000.0));
    assert_eq!(metric(&text, "customs_quota_used_bytes{namespace=\"team-b\"}"), Some((1_000 + sbom_len) as f64));
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

//! The scrub and damaged blobs, through the protocol: bytes changed or removed on disk behind
//! the registry's back are found, read as absent in every repository, and repaired by a push.

use std::io::{Seek, Write};
use std::time::Duration;

use http::StatusCode;
use meta::Integrity;
use oci::Digest;
use oci::media_type as mt;
use test_support::{ImageBuilder, TestRegistry, metric, stored_blob_path};

/// Overwrites a few bytes in the middle of a stored blob, as a failing disk would.
fn rot(reg: &TestRegistry, d: &Digest) {
    let mut f = std::fs::OpenOptions::new().write(true).open(stored_blob_path(reg.dir.path(), d)).unwrap();
    f.seek(std::io::SeekFrom::Start(100)).unwrap();
    f.write_all(b"rotten").unwrap();
    f.sync_all().unwrap();
}

async fn records(reg: &TestRegistry) -> meta::SqlMeta {
    meta::SqlMeta::open(&reg.dir.path().join("meta.db")).await.unwrap()
}

#[tokio::test]
async fn a_damaged_layer_is_moved_aside_reads_as_absent_everywhere_and_one_push_repairs_it() {
    let reg = TestRegistry::new().await;
    // The layer spans more than one block of a stored read (1 MiB) and ends mid-block.
    let image = ImageBuilder::new(1).layer(1, 1_500_000).layer(2, 3000).build();
    assert_eq!(reg.push_image("scrub/a", &image, "v1").await.status, StatusCode::CREATED);
    let layer = &image.layers[0];
    let mounted = reg.call(http::Method::POST, &format!("/v2/scrub/b/blobs/uploads/?mount={}&from=scrub/a", layer.digest), &[], "").await;
    assert_eq!(mounted.status, StatusCode::CREATED);

    let clean = reg.registry.scrub(0).await.unwrap();
    assert_eq!((clean.blobs, clean.damaged.len(), clean.unreadable), (4, 0, 0), "{clean:?}");

    rot(&reg, &layer.digest);
    let found = reg.registry.scrub(0).await.unwrap();
    assert_eq!(found.blobs, 4);
    assert_eq!(found.damaged.len(), 1, "{found:?}");
    let damage = &found.damaged[0];
    assert_eq!(damage.digest, layer.digest);
    assert!(layer.bytes.len() > 1 << 20);
    let said = format!("its {} bytes hash to sha256:", layer.bytes.len());
    assert!(damage.reason.starts_with(&said), "{}", damage.reason);
    let kept = std::path::PathBuf::from(&damage.kept_at);
    assert!(kept.starts_with(reg.dir.path().join("quarantine")), "{kept:?}");
    assert_eq!(&std::fs::read(&kept).unwrap()[100..106], b"rotten", "the damaged bytes are kept for the operator");
    assert!(!stored_blob_path(reg.dir.path(), &layer.digest).exists());

    // Absent in both repositories: HEAD tells a client to push it, GET does not hand out bad bytes.
    for repo in ["scrub/a", "scrub/b"] {
        let path = format!("/v2/{repo}/blobs/{}", layer.digest);
        assert_eq!(reg.head(&path).await.status, StatusCode::NOT_FOUND, "{repo}");
        let got = reg.get(&path).await;
        assert_eq!((got.status, got.error_code()), (StatusCode::NOT_FOUND, "BLOB_UNKNOWN".to_owned()), "{repo}");
    }
    let from = reg.call(http::Method::POST, &format!("/v2/scrub/c/blobs/uploads/?mount={}&from=scrub/a", layer.digest), &[], "").await;
    assert_eq!(from.status, StatusCode::ACCEPTED, "no mount of a damaged blob: an upload instead");
    let again = reg.put_manifest("scrub/a", "v2", mt::OCI_MANIFEST, image.manifest.clone()).await;
    assert_eq!((again.status, again.error_code()), (StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN".to_owned()));
    let listed = records(&reg).await.damaged_blobs(10).await.unwrap();
    assert_eq!(listed.iter().map(|d| (&d.digest, d.in_use)).collect::<Vec<_>>(), vec![(&layer.digest, true)]);
    let metrics = String::from_utf8(reg.get("/metrics").await.body.to_vec()).unwrap();
    assert_eq!(metric(&metrics, "customs_blobs_damaged_total"), Some(1.0));
    assert_eq!(metric(&metrics, "customs_scrub_passes_total"), Some(2.0));
    assert_eq!(metric(&metrics, "customs_scrub_blobs_checked_total"), Some(8.0));
    let stored: usize = image.config.bytes.len() + image.layers.iter().map(|l| l.bytes.len()).sum::<usize>() + image.manifest.len();
    let bytes = 2.0 * stored as f64;
    assert_eq!(metric(&metrics, "customs_scrub_bytes_checked_total"), Some(bytes));

    // The image pushed again into one repository: the upload repairs the layer in both.
    assert_eq!(reg.push_image("scrub/a", &image, "v1").await.status, StatusCode::CREATED);
    let got = reg.get(&format!("/v2/scrub/b/blobs/{}", layer.digest)).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body, layer.bytes, "the good bytes, in the repository that did not push them");
    assert_eq!(records(&reg).await.damaged_blobs(10).await.unwrap(), vec![]);
    let after = reg.registry.scrub(0).await.unwrap();
    assert_eq!((after.blobs, after.damaged.len()), (4, 0));
}

#[tokio::test]
async fn a_blob_whose_bytes_are_gone_reads_as_absent_after_the_first_read_finds_it() {
    let reg = TestRegistry::new().await;
    let image = ImageBuilder::new(3).layer(1, 5000).build();
    assert_eq!(reg.push_image("scrub/gone", &image, "v1").await.status, StatusCode::CREATED);
    let layer = &image.layers[0];
    std::fs::remove_file(stored_blob_path(reg.dir.path(), &layer.digest)).unwrap();
    let path = format!("/v2/scrub/gone/blobs/{}", layer.digest);
    assert_eq!(reg.head(&path).await.status, StatusCode::OK, "the records alone still say it is there");
    let got = reg.get(&path).await;
    assert_eq!((got.status, got.error_code()), (StatusCode::NOT_FOUND, "BLOB_UNKNOWN".to_owned()));
    assert_eq!(reg.head(&path).await.status, StatusCode::NOT_FOUND, "now HEAD tells a client to push it again");
    let listed = records(&reg).await.damaged_blobs(10).await.unwrap();
    assert_eq!((&listed[0].digest, listed[0].reason.as_str()), (&layer.digest, "missing"));
    assert_eq!(reg.push_image("scrub/gone", &image, "v1").await.status, StatusCode::CREATED);
    assert_eq!(reg.get(&path).await.body, layer.bytes);
}

#[tokio::test]
async fn a_manifest_whose_bytes_changed_is_never_served_and_a_push_repairs_it() {
    // No manifest cache, so every read goes to the stored bytes.
    let config = registry::RegistryConfig { manifest_cache_ttl: Duration::ZERO, ..Default::default() };
    let reg = TestRegistry::with_config(config).await;
    let image = ImageBuilder::new(4).layer(1, 700).build();
    assert_eq!(reg.push_image("scrub/m", &image, "v1").await.status, StatusCode::CREATED);
    rot(&reg, &image.digest);
    for reference in ["v1".to_owned(), image.digest.to_string()] {
        let got = reg.get(&format!("/v2/scrub/m/manifests/{reference}")).await;
        assert_eq!((got.status, got.error_code()), (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN".to_owned()), "{reference}");
    }
    let listed = records(&reg).await.damaged_blobs(10).await.unwrap();
    assert_eq!(listed[0].digest, image.digest);
    assert!(listed[0].reason.contains("hash to"), "{}", listed[0].reason);
    assert_eq!(reg.put_manifest("scrub/m", "v1", mt::OCI_MANIFEST, image.manifest.clone()).await.status, StatusCode::CREATED);
    let got = reg.get("/v2/scrub/m/manifests/v1").await;
    assert_eq!((got.status, &got.body), (StatusCode::OK, &image.manifest));
    assert_eq!(records(&reg).await.damaged_blobs(10).await.unwrap(), vec![]);
}

#[tokio::test]
async fn a_pass_cut_short_resumes_where_it_stood() {
    let reg = TestRegistry::new().await;
    // Enough blobs for more than one page of the walk (64 a page).
    for i in 0..70u32 {
        reg.push_blob("scrub/many", format!("blob {i}").as_bytes()).await;
    }
    let day = Duration::from_secs(86_400);
    let first = reg.registry.scrub_due_in(day).await.unwrap();
    assert!(first > day - Duration::from_secs(60), "a store never scrubbed waits a whole interval: {first:?}");
    let done = reg.registry.scrub(0).await.unwrap();
    assert_eq!(done.blobs, 70);
    assert!(reg.registry.scrub_due_in(day).await.unwrap() > day - Duration::from_secs(60));
    assert_eq!(reg.registry.scrub_due_in(Duration::ZERO).await.unwrap(), Duration::ZERO);

    // A pass stopped after its first page: due at once, and it checks only what is left.
    let all = records(&reg).await;
    let mut digests: Vec<String> = (0..70u32).map(|i| Digest::sha256_of(format!("blob {i}").as_bytes()).to_string()).collect();
    digests.sort();
    let after: Digest = digests[63].parse().unwrap();
    let progress = meta::ScrubProgress { after: Some(after), pass_started_ms: 1, last_pass_ended_ms: Some(0) };
    all.save_scrub_progress(&progress).await.unwrap();
    assert_eq!(reg.registry.scrub_due_in(day).await.unwrap(), Duration::ZERO);
    let rest = reg.registry.scrub(0).await.unwrap();
    assert_eq!(rest.blobs, 6, "{rest:?}");
    let saved = all.scrub_progress().await.unwrap().unwrap();
    assert_eq!((saved.after, saved.pass_started_ms), (None, 1));
    assert!(saved.last_pass_ended_ms.unwrap() > 0);
}

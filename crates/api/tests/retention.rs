//! Retention over what was pushed, tagged and pulled through the protocol: the registry's
//! `expire` pass, then garbage collection of what it left unreferenced.

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use meta::{AuditQuery, Identities};
use oci::media_type as mt;
use oci::Digest;
use registry::{KeepTags, Retention, RetentionPolicy};
use test_support::{ImageBuilder, Index, TestRegistry};

fn globs<T: std::str::FromStr>(patterns: &[&str]) -> Vec<T>
where
    T::Err: std::fmt::Debug,
{
    patterns.iter().map(|p| p.parse().unwrap()).collect()
}

async fn tags(reg: &TestRegistry, repo: &str) -> Vec<String> {
    let list = reg.get(&format!("/v2/{repo}/tags/list")).await.json();
    list["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_owned()).collect()
}

async fn status(reg: &TestRegistry, repo: &str, reference: &str) -> StatusCode {
    reg.head(&format!("/v2/{repo}/manifests/{reference}")).await.status
}

/// Pushes are ordered by time: a millisecond apart at least.
async fn tick() {
    tokio::time::sleep(Duration::from_millis(3)).await;
}

#[tokio::test]
async fn tags_no_rule_keeps_go_then_untagged_idle_manifests_then_their_bytes() {
    let reg = TestRegistry::new().await;
    let images: Vec<_> = (0..5).map(|i| ImageBuilder::new(70 + i).layer(1, 500).build()).collect();
    assert_eq!(reg.push_image("ci/app", &images[0], "v1.0").await.status, StatusCode::CREATED);
    for (i, image) in images.iter().enumerate().skip(1) {
        tick().await;
        assert_eq!(reg.push_image("ci/app", image, &format!("main-{i}")).await.status, StatusCode::CREATED);
    }
    // An untagged multi-arch index pushed by digest, and its two platforms.
    let index = Index::new(vec![ImageBuilder::new(80).arch("amd64").build(), ImageBuilder::new(81).arch("arm64").build()]);
    for child in &index.images {
        reg.push_image("ci/app", child, &child.digest.to_string()).await;
    }
    let r = reg.put_manifest("ci/app", &index.digest.to_string(), mt::OCI_INDEX, index.manifest.clone()).await;
    assert_eq!(r.status, StatusCode::CREATED);
    // A cosign-style signature of main-4 in the referrers tag schema, and an SBOM of main-1.
    let empty = reg.push_blob("ci/app", b"{}").await;
    let artifact = |subject: Option<&Digest>, kind: &str| {
        let mut m = serde_json::json!({
            "schemaVersion": 2, "mediaType": mt::OCI_MANIFEST, "artifactType": kind,
            "config": { "mediaType": mt::OCI_EMPTY, "digest": empty.to_string(), "size": 2 },
            "layers": [{ "mediaType": mt::OCI_EMPTY, "digest": empty.to_string(), "size": 2 }],
        });
        if let Some(s) = subject {
            m["subject"] = serde_json::json!({ "mediaType": mt::OCI_MANIFEST, "digest": s.to_string(), "size": 1 });
        }
        Bytes::from(m.to_string())
    };
    let signature = artifact(None, "application/vnd.dev.cosign.artifact.sig.v1+json");
    let sig_tag = format!("sha256-{}.sig", images[4].digest.hex());
    assert_eq!(reg.put_manifest("ci/app", &sig_tag, mt::OCI_MANIFEST, signature).await.status, StatusCode::CREATED);
    let sbom = artifact(Some(&images[1].digest), "application/spdx+json");
    let sbom_digest = Digest::sha256_of(&sbom);
    assert_eq!(reg.put_manifest("ci/app", &sbom_digest.to_string(), mt::OCI_MANIFEST, sbom).await.status, StatusCode::CREATED);
    // Another namespace, no policy: its untagged image stays whatever happens.
    let elsewhere = ImageBuilder::new(90).layer(1, 300).build();
    reg.push_image("prod/app", &elsewhere, &elsewhere.digest.to_string()).await;
    // main-2 is in use: pulled.
    assert_eq!(reg.get("/v2/ci/app/manifests/main-2").await.status, StatusCode::OK);
    reg.registry.flush_pulls().await.unwrap();
    tick().await;

    let policy = RetentionPolicy {
        repositories: globs(&["ci/**"]),
        keep_tags: vec![
            KeepTags { patterns: globs(&["v*"]), ..KeepTags::default() },
            KeepTags { patterns: globs(&["main-*"]), most_recently_pushed: Some(2), ..KeepTags::default() },
            KeepTags { pulled_within: Some(Duration::from_secs(3600)), ..KeepTags::default() },
        ],
        delete_untagged_after: Some(Duration::ZERO),
    };
    let ci_app: oci::RepoName = "ci/app".parse().unwrap();
    let mut retention = Retention { policies: vec![policy], dry_run: true };
    let all_tags = ["main-1", "main-2", "main-3", "main-4", sig_tag.as_str(), "v1.0"];

    // Dry: the report, and nothing deleted.
    let would = reg.registry.expire(&retention).await.unwrap();
    assert_eq!(would.tags, vec![(ci_app.clone(), "main-1".parse().unwrap())]);
    assert_eq!(would.manifests, vec![(ci_app.clone(), index.digest.clone())], "its children only once it is gone");
    assert_eq!(tags(&reg, "ci/app").await, all_tags);
    assert_eq!(status(&reg, "ci/app", &index.digest.to_string()).await, StatusCode::OK);

    // main-1 goes: not v*, not among the two newest main-*, not pulled; main-2 was pulled, the
    // signature's subject is here. The index goes, then its platforms; main-1's image was
    // untagged only now, so it waits for the next pass.
    retention.dry_run = false;
    let expired = reg.registry.expire(&retention).await.unwrap();
    assert_eq!(expired.tags, would.tags);
    let mut children: Vec<Digest> = index.images.iter().map(|i| i.digest.clone()).collect();
    children.sort();
    let want: Vec<_> = std::iter::once(index.digest.clone()).chain(children).map(|d| (ci_app.clone(), d)).collect();
    assert_eq!(expired.manifests, want);
    assert_eq!(tags(&reg, "ci/app").await, ["main-2", "main-3", "main-4", sig_tag.as_str(), "v1.0"]);
    assert_eq!(status(&reg, "ci/app", "main-1").await, StatusCode::NOT_FOUND);
    assert_eq!(status(&reg, "ci/app", &images[1].digest.to_string()).await, StatusCode::OK);
    for gone in std::iter::once(&index.digest).chain(index.images.iter().map(|i| &i.digest)) {
        assert_eq!(status(&reg, "ci/app", &gone.to_string()).await, StatusCode::NOT_FOUND);
    }
    assert_eq!(status(&reg, "prod/app", &elsewhere.digest.to_string()).await, StatusCode::OK);

    // Garbage collection frees the platforms' layers and configs and the index's bytes.
    let collected = reg.registry.collect_garbage(Duration::ZERO).await.unwrap();
    let freed = 1 + index.images.iter().map(|i| 1 + i.blobs().count()).sum::<usize>();
    assert_eq!((collected.referrers, collected.blobs), (0, freed), "{collected:?}");
    for image in &index.images {
        for blob in image.blobs() {
            assert!(!test_support::stored_blob_path(reg.dir.path(), &blob.digest).exists());
        }
    }

    // The next pass: main-1's image has been untagged for a while now (the HEADs above are
    // noted in memory, not yet written); its SBOM goes with it.
    tick().await;
    let expired = reg.registry.expire(&retention).await.unwrap();
    assert!(expired.tags.is_empty());
    assert_eq!(expired.manifests, vec![(ci_app.clone(), images[1].digest.clone())]);
    let collected = reg.registry.collect_garbage(Duration::ZERO).await.unwrap();
    assert_eq!(collected.referrers, 1, "the SBOM of the deleted image: {collected:?}");
    assert_eq!(status(&reg, "ci/app", &sbom_digest.to_string()).await, StatusCode::NOT_FOUND);
    let again = reg.registry.expire(&retention).await.unwrap();
    assert_eq!(again, registry::Expired::default(), "a pass over a kept state deletes nothing");

    // What is kept is whole.
    for (i, tag) in [(2, "main-2"), (3, "main-3"), (4, "main-4"), (0, "v1.0")] {
        let m = reg.get(&format!("/v2/ci/app/manifests/{tag}")).await;
        assert_eq!(m.body, images[i].manifest, "{tag}");
        for blob in images[i].blobs() {
            assert_eq!(reg.get(&format!("/v2/ci/app/blobs/{}", blob.digest)).await.body, blob.bytes);
        }
    }

    // And counted for /metrics (the dry run counts nothing).
    let metrics = String::from_utf8(reg.get("/metrics").await.body.to_vec()).unwrap();
    let metric = |series: &str| test_support::metric(&metrics, series);
    assert_eq!(metric("customs_retention_tags_deleted_total"), Some(1.0));
    assert_eq!(metric("customs_retention_manifests_deleted_total"), Some(4.0));
    assert_eq!(metric("customs_gc_passes_total"), Some(2.0));
    assert_eq!(metric("customs_gc_referrers_deleted_total"), Some(1.0));
    let second = 2 + images[1].blobs().count();
    assert_eq!(metric("customs_gc_blobs_deleted_total"), Some((freed + second) as f64), "and main-1's image and SBOM");

    // Each deletion is in the audit log, by `retention`.
    let meta = meta::SqlMeta::open(&reg.dir.path().join("meta.db")).await.unwrap();
    let query = AuditQuery { after_id: 0, limit: 100, actor: Some("retention".into()), action_prefix: None };
    let log: Vec<String> = meta.audit(&query).await.unwrap().into_iter().map(|r| format!("{} {}", r.entry.action, r.entry.target)).collect();
    assert_eq!(log.len(), 5, "{log:?}");
    assert_eq!(log[0], "delete ci/app:main-1");
    assert_eq!(log[4], format!("delete ci/app@{}", images[1].digest));
    meta.close().await;
}

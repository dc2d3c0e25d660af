//! Garbage collection over what pushes and deletes through the protocol left behind: the
//! registry's `collect_garbage` pass, with the bytes looked for in the store's own directory.

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use oci::media_type as mt;
use oci::Digest;
use test_support::{ImageBuilder, TestRegistry};

fn stored(reg: &TestRegistry, d: &Digest) -> bool {
    test_support::stored_blob_path(reg.dir.path(), d).exists()
}

#[tokio::test]
async fn a_pass_frees_what_deletes_and_abandoned_pushes_left_and_nothing_else() {
    let reg = TestRegistry::new().await;
    // One image kept, one deleted; the kept one's first layer also linked where the other was.
    let kept = ImageBuilder::new(1).layer(1, 1000).layer(1, 2000).build();
    let gone = ImageBuilder::new(2).layer(1, 3000).build();
    assert_eq!(reg.push_image("gc/kept", &kept, "v1").await.status, StatusCode::CREATED);
    assert_eq!(reg.push_image("gc/gone", &gone, "v1").await.status, StatusCode::CREATED);
    let shared = &kept.layers[0];
    reg.push_blob("gc/gone", &shared.bytes).await;
    // A push whose manifest never came, and a blob whose link was deleted.
    let abandoned = reg.push_blob("gc/abandoned", b"a layer nobody referenced").await;
    let unlinked = reg.push_blob("gc/kept", b"deleted by digest").await;
    assert_eq!(reg.delete(&format!("/v2/gc/kept/blobs/{unlinked}")).await.status, StatusCode::ACCEPTED);
    // An SBOM of the image to be deleted, and one of the image kept.
    let empty = reg.push_blob("gc/gone", b"{}").await;
    reg.push_blob("gc/kept", b"{}").await;
    let sbom = |subject: &test_support::Image| {
        Bytes::from(
            serde_json::json!({
                "schemaVersion": 2, "mediaType": mt::OCI_MANIFEST, "artifactType": "application/spdx+json",
                "config": { "mediaType": mt::OCI_EMPTY, "digest": empty.to_string(), "size": 2 },
                "layers": [{ "mediaType": mt::OCI_EMPTY, "digest": empty.to_string(), "size": 2 }],
                "subject": { "mediaType": mt::OCI_MANIFEST, "digest": subject.digest.to_string(), "size": subject.manifest.len() },
            })
            .to_string(),
        )
    };
    let (gone_sbom, kept_sbom) = (sbom(&gone), sbom(&kept));
    for (repo, m) in [("gc/gone", &gone_sbom), ("gc/kept", &kept_sbom)] {
        let d = Digest::sha256_of(m).to_string();
        assert_eq!(reg.put_manifest(repo, &d, mt::OCI_MANIFEST, m.clone()).await.status, StatusCode::CREATED);
    }
    assert_eq!(reg.delete(&format!("/v2/gc/gone/manifests/{}", gone.digest)).await.status, StatusCode::ACCEPTED);

    // Nothing is old enough yet.
    let young = reg.registry.collect_garbage(Duration::from_secs(3600)).await.unwrap();
    assert_eq!(young, registry::Collected::default());
    assert!(stored(&reg, &gone.digest) && stored(&reg, &abandoned) && stored(&reg, &unlinked));

    let collected = reg.registry.collect_garbage(Duration::ZERO).await.unwrap();
    // The deleted image's SBOM; links: gone's config and layer, the SBOM's empty blob, the
    // shared layer's second link, the abandoned blob. The empty blob's bytes stay for kept's SBOM.
    assert_eq!(collected.referrers, 1, "{collected:?}");
    assert_eq!(collected.links, 5, "{collected:?}");
    let gone_sbom_digest = Digest::sha256_of(&gone_sbom);
    let freed: Vec<&Digest> =
        vec![&gone.digest, &gone_sbom_digest, &gone.config.digest, &gone.layers[0].digest, &abandoned, &unlinked];
    assert_eq!(collected.blobs, freed.len(), "{collected:?}");
    let sizes = gone.manifest.len() + gone_sbom.len() + gone.config.bytes.len() + gone.layers[0].bytes.len() + 25 + 17;
    assert_eq!(collected.bytes, sizes as u64);
    for d in freed {
        assert!(!stored(&reg, d), "{d} freed");
    }
    assert_eq!(reg.head(&format!("/v2/gc/abandoned/blobs/{abandoned}")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(reg.head(&format!("/v2/gc/gone/blobs/{}", shared.digest)).await.status, StatusCode::NOT_FOUND);

    assert_eq!(reg.get(&format!("/v2/gc/gone/referrers/{}", gone.digest)).await.json()["manifests"], serde_json::json!([]));
    let kept_referrers = reg.get(&format!("/v2/gc/kept/referrers/{}", kept.digest)).await.json();
    assert_eq!(kept_referrers["manifests"][0]["digest"], Digest::sha256_of(&kept_sbom).to_string());
    assert!(stored(&reg, &empty));

    // The image still referenced is whole and served.
    let manifest = reg.get("/v2/gc/kept/manifests/v1").await;
    assert_eq!(manifest.status, StatusCode::OK);
    assert_eq!(manifest.body, kept.manifest);
    for blob in kept.blobs() {
        let r = reg.get(&format!("/v2/gc/kept/blobs/{}", blob.digest)).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body, blob.bytes);
    }
    // A second pass finds nothing more.
    assert_eq!(reg.registry.collect_garbage(Duration::ZERO).await.unwrap(), registry::Collected::default());
}

#[tokio::test]
async fn a_manifest_after_its_layers_were_collected_is_refused_and_the_push_can_be_redone() {
    let reg = TestRegistry::new().await;
    let image = ImageBuilder::new(3).layer(1, 500).build();
    for blob in image.blobs() {
        reg.push_blob("gc/slow", &blob.bytes).await;
    }
    // The pass ran between the layers and the manifest, with no delay to spare them.
    assert_eq!(reg.registry.collect_garbage(Duration::ZERO).await.unwrap().blobs, 2);
    let late = reg.put_manifest("gc/slow", "v1", &image.media_type, image.manifest.clone()).await;
    assert_eq!(late.status, StatusCode::BAD_REQUEST);
    assert_eq!(late.error_code(), "MANIFEST_BLOB_UNKNOWN");
    assert_eq!(reg.get("/v2/gc/slow/manifests/v1").await.status, StatusCode::NOT_FOUND, "nothing points at nothing");
    // What a client does next: push the layers again, then the manifest.
    assert_eq!(reg.push_image("gc/slow", &image, "v1").await.status, StatusCode::CREATED);
    let r = reg.get(&format!("/v2/gc/slow/blobs/{}", image.layers[0].digest)).await;
    assert_eq!(r.body, image.layers[0].bytes);
}

#[tokio::test]
async fn a_layer_a_client_found_with_head_is_spared_for_the_delay() {
    let delay = Duration::from_secs(1);
    // As `serve` sets it: a HEAD renews a link older than half of gc's delay.
    let reg = TestRegistry::with_config(registry::RegistryConfig { link_renewal: delay / 2, ..Default::default() }).await;
    // A push whose manifest never came, retried later: the client HEADs the layers, finds them,
    // and sends only the manifest. A pass between the HEADs and the manifest must not unlink them.
    let image = ImageBuilder::new(5).layer(1, 700).build();
    for blob in image.blobs() {
        reg.push_blob("gc/retried", &blob.bytes).await;
    }
    let abandoned = reg.push_blob("gc/retried", b"nobody asks about this one").await;
    tokio::time::sleep(delay + Duration::from_millis(200)).await;
    for blob in image.blobs() {
        assert_eq!(reg.head(&format!("/v2/gc/retried/blobs/{}", blob.digest)).await.status, StatusCode::OK);
    }
    let collected = reg.registry.collect_garbage(delay).await.unwrap();
    assert_eq!((collected.links, collected.blobs), (1, 1), "only the layer nobody found: {collected:?}");
    assert!(!stored(&reg, &abandoned));
    let put = reg.put_manifest("gc/retried", "v1", &image.media_type, image.manifest.clone()).await;
    assert_eq!(put.status, StatusCode::CREATED, "{:?}", put.body);

    // A HEAD counts for the delay, not longer: once it is old, an unreferenced layer goes.
    let found = reg.push_blob("gc/found", b"found once, long ago").await;
    assert_eq!(reg.head(&format!("/v2/gc/found/blobs/{found}")).await.status, StatusCode::OK);
    tokio::time::sleep(delay + Duration::from_millis(200)).await;
    let collected = reg.registry.collect_garbage(delay).await.unwrap();
    assert_eq!((collected.links, collected.blobs), (1, 1), "{collected:?}");
    assert!(!stored(&reg, &found));
    for blob in image.blobs() {
        assert!(stored(&reg, &blob.digest), "referenced now");
    }
}

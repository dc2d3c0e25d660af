//! What requests leave behind: request ids, and `/metrics` counting requests by class and
//! status, latency to the last byte, bytes in and out, manifest cache hits, shared lookups and
//! open upload sessions.

use std::sync::Arc;

use http::{Method, StatusCode};
use test_support::{ImageBuilder, TestRegistry};

fn value(text: &str, series: &str) -> u64 {
    test_support::metric(text, series).unwrap_or_else(|| panic!("{series} not in:\n{text}")) as u64
}

async fn metrics(reg: &TestRegistry) -> String {
    String::from_utf8(reg.get("/metrics").await.body.to_vec()).unwrap()
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_a_sane_incoming_one_is_kept() {
    let reg = TestRegistry::new().await;
    let a = reg.get("/v2/").await;
    let b = reg.get("/v2/").await;
    let (a, b) = (a.header("x-request-id").unwrap(), b.header("x-request-id").unwrap());
    assert_ne!(a, b, "ids are unique");
    let kept = reg.call(Method::GET, "/v2/", &[("x-request-id", "lb-7f3a.1")], "").await;
    assert_eq!(kept.header("x-request-id"), Some("lb-7f3a.1"));
    let replaced = reg.call(Method::GET, "/v2/", &[("x-request-id", "has spaces and \"quotes\"")], "").await;
    assert_ne!(replaced.header("x-request-id"), Some("has spaces and \"quotes\""));
    let errors_too = reg.get("/v2/nothing/here/manifests/v1").await;
    assert_eq!(errors_too.status, StatusCode::NOT_FOUND);
    assert!(errors_too.header("x-request-id").is_some());
}

#[tokio::test]
async fn metrics_count_requests_latency_bytes_cache_hits_and_upload_sessions() {
    let reg = TestRegistry::new().await;
    let image = ImageBuilder::new(5).layer(1, 20_000).build();
    reg.push_image("obs/app", &image, "v1").await;
    let layer = &image.layers[0];
    for _ in 0..3 {
        assert_eq!(reg.get("/v2/obs/app/manifests/v1").await.status, StatusCode::OK);
    }
    assert_eq!(reg.get("/v2/obs/app/manifests/nope").await.status, StatusCode::NOT_FOUND);
    let blob = reg.get(&format!("/v2/obs/app/blobs/{}", layer.digest)).await;
    assert_eq!(blob.body.len(), layer.bytes.len());
    let open = reg.call(Method::POST, "/v2/obs/app/blobs/uploads/", &[], "").await;
    assert_eq!(open.status, StatusCode::ACCEPTED);

    let text = metrics(&reg).await;
    assert_eq!(value(&text, "customs_requests_total{class=\"manifest_read\",status=\"200\"}"), 3);
    assert_eq!(value(&text, "customs_requests_total{class=\"manifest_read\",status=\"404\"}"), 1);
    assert_eq!(value(&text, "customs_requests_total{class=\"blob_read\",status=\"200\"}"), 1);
    assert_eq!(value(&text, "customs_request_duration_seconds_count{class=\"manifest_read\"}"), 4);
    assert_eq!(value(&text, "customs_request_duration_seconds_bucket{class=\"manifest_read\",le=\"+Inf\"}"), 4);
    assert_eq!(value(&text, "customs_response_body_bytes_total{class=\"blob_read\"}"), layer.bytes.len() as u64);
    let pushed: usize = image.blobs().map(|b| b.bytes.len()).sum::<usize>() + image.manifest.len();
    assert_eq!(value(&text, "customs_request_body_bytes_total"), pushed as u64);
    // The first read of v1 missed; the two after it hit.
    assert_eq!(value(&text, "customs_manifest_cache_hits_total"), 2);
    assert!(value(&text, "customs_manifest_cache_misses_total") >= 2);
    assert_eq!(value(&text, "customs_upload_sessions_open"), 1);
    // Records of its own: this process leads every background task.
    for task in ["upload-janitor", "gc", "scrub", "mirror-evict", "webhooks", "re-judging"] {
        assert_eq!(value(&text, &format!("customs_leads{{task=\"{task}\"}}")), 1, "{task}");
    }
}

#[tokio::test]
async fn a_cold_manifest_asked_by_many_at_once_is_looked_up_far_fewer_times() {
    let reg = Arc::new(TestRegistry::new().await);
    let image = ImageBuilder::new(6).layer(1, 1000).build();
    reg.push_image("herd/app", &image, "v1").await;
    // The push dropped the repository's cache entries: 200 concurrent readers find it cold.
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let reg = reg.clone();
            tokio::spawn(async move { reg.get("/v2/herd/app/manifests/v1").await.status })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::OK);
    }
    let text = metrics(&reg).await;
    let misses = value(&text, "customs_manifest_cache_misses_total");
    let shared = value(&text, "customs_single_flight_shared_total");
    let hits = value(&text, "customs_manifest_cache_hits_total");
    assert_eq!(hits + misses, 200);
    // Every miss either did a lookup or shared one in flight.
    let lookups = misses - shared;
    assert!(lookups <= 20, "200 concurrent readers caused {lookups} lookups (misses {misses}, shared {shared})");
}

//! The HTTP layer's limits. Admission per route class: past a class's concurrency and queue,
//! requests are shed at once with 503 and Retry-After, and other classes keep being served.
//! Per-client rates: a noisy client gets 429 with Retry-After while a quiet one is served.
//! Metrics count what happened.

use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use test_support::{ImageBuilder, TestRegistry};
use tower::ServiceExt;

fn limits(blob: (usize, usize, u64)) -> api::AdmissionConfig {
    let mut config = api::AdmissionConfig::default();
    config.0[api::RouteClass::BlobRead as usize] =
        api::ClassLimit { concurrency: blob.0, queue: blob.1, queue_timeout: Duration::from_millis(blob.2) };
    config
}

/// Sends a request and returns the response with its body unread: the slot stays taken.
async fn open(reg: &TestRegistry, path: &str) -> Response {
    let request = Request::builder().method(Method::GET).uri(path).body(Body::empty()).unwrap();
    reg.router.clone().oneshot(request).await.unwrap()
}

fn metric(text: &str, name: &str, class: &str) -> u64 {
    let series = format!("{name}{{class=\"{class}\"}}");
    test_support::metric(text, &series).unwrap_or_else(|| panic!("{series} in {text}")) as u64
}

#[tokio::test]
async fn past_the_limit_requests_are_shed_with_retry_after_and_other_classes_still_served() {
    let reg = TestRegistry::with_admission(limits((2, 0, 1000))).await;
    let image = ImageBuilder::new(1).layer(1, 1000).build();
    reg.push_image("lim", &image, "v1").await;
    let blob = format!("/v2/lim/blobs/{}", image.layers[0].digest);

    let held = [open(&reg, &blob).await, open(&reg, &blob).await];
    assert!(held.iter().all(|r| r.status() == StatusCode::OK));
    let k = 3;
    for _ in 0..k {
        let r = reg.get(&blob).await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.error_code(), "TOOMANYREQUESTS");
        let retry: u64 = r.header("retry-after").expect("Retry-After").parse().unwrap();
        assert!((1..=60).contains(&retry));
    }
    // Manifest reads have their own slots: kubelets still get manifests.
    assert_eq!(reg.get("/v2/lim/manifests/v1").await.status, StatusCode::OK);

    let metrics = reg.get("/metrics").await;
    let text = String::from_utf8(metrics.body.to_vec()).unwrap();
    assert_eq!(metric(&text, "customs_shed_total", "blob_read"), k);
    assert_eq!(metric(&text, "customs_in_flight", "blob_read"), 2);
    assert_eq!(metric(&text, "customs_shed_total", "manifest_read"), 0);
    assert!(metric(&text, "customs_admitted_total", "manifest_read") >= 1);

    // A download holds its slot until its body is sent; then the slot is free again.
    let [first, second] = held;
    let body = first.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, image.layers[0].bytes);
    assert_eq!(reg.get(&blob).await.status, StatusCode::OK);
    drop(second);
    let text = String::from_utf8(reg.get("/metrics").await.body.to_vec()).unwrap();
    assert_eq!(metric(&text, "customs_in_flight", "blob_read"), 0);
}

#[tokio::test]
async fn a_short_queue_waits_for_a_slot_and_overflows_at_once() {
    let reg = TestRegistry::with_admission(limits((1, 1, 10_000))).await;
    let digest = reg.push_blob("q", b"queued bytes").await;
    let blob = format!("/v2/q/blobs/{digest}");
    let held = open(&reg, &blob).await;

    let waiter = {
        let router = reg.router.clone();
        let request = Request::builder().uri(blob.clone()).body(Body::empty()).unwrap();
        tokio::spawn(async move { router.oneshot(request).await.unwrap().status() })
    };
    // Wait until the waiter is queued (as the metrics report it), not for a fixed time.
    let queued = async {
        loop {
            let text = String::from_utf8(reg.get("/metrics").await.body.to_vec()).unwrap();
            if metric(&text, "customs_queued", "blob_read") == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), queued).await.expect("the second request queued");
    // The queue (1) is full: the third is shed at once.
    assert_eq!(reg.get(&blob).await.status, StatusCode::SERVICE_UNAVAILABLE);
    drop(held);
    assert_eq!(waiter.await.unwrap(), StatusCode::OK, "the queued request got the freed slot");
}

#[tokio::test]
async fn a_queued_request_is_shed_when_its_wait_runs_out() {
    let reg = TestRegistry::with_admission(limits((1, 4, 20))).await;
    let digest = reg.push_blob("t", b"bytes").await;
    let blob = format!("/v2/t/blobs/{digest}");
    let _held = open(&reg, &blob).await;
    let r = reg.get(&blob).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.header("retry-after").is_some());
}

/// A GET as sent by the client at `ip` (as the real server's connect info would say).
async fn get_from(reg: &TestRegistry, path: &str, ip: &str, forwarded_for: Option<&str>) -> Response {
    let peer = api::Peer(std::net::SocketAddr::new(ip.parse().unwrap(), 40000));
    let mut r = Request::builder().uri(path).extension(axum::extract::ConnectInfo(peer));
    if let Some(f) = forwarded_for {
        r = r.header("x-forwarded-for", f);
    }
    reg.router.clone().oneshot(r.body(Body::empty()).unwrap()).await.unwrap()
}

#[tokio::test]
async fn a_noisy_client_is_limited_while_a_quiet_one_is_not() {
    let mut limits = api::HttpLimits::default();
    limits.rate.classes[api::RouteClass::ManifestRead as usize] = api::RateLimit { per_second: 0.5, burst: 5 };
    limits.rate.trusted_proxies = vec!["10.1.1.1".parse().unwrap()];
    let reg = TestRegistry::with_limits(limits).await;
    let image = ImageBuilder::new(3).layer(1, 10).build();
    reg.push_image("rate", &image, "v1").await;
    let path = "/v2/rate/manifests/v1";

    for _ in 0..5 {
        assert_eq!(get_from(&reg, path, "192.0.2.10", None).await.status(), StatusCode::OK, "the burst passes");
    }
    let limited = get_from(&reg, path, "192.0.2.10", None).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = limited.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "at 0.5/s the next request conforms within 2 s, said {retry}");
    let body = limited.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&body).unwrap()["errors"][0]["code"], "TOOMANYREQUESTS");

    assert_eq!(get_from(&reg, path, "192.0.2.20", None).await.status(), StatusCode::OK, "a quiet client is served");
    let blob = format!("/v2/rate/blobs/{}", image.layers[0].digest);
    assert_eq!(get_from(&reg, &blob, "192.0.2.10", None).await.status(), StatusCode::OK, "blob reads have their own budget");

    // Behind a trusted proxy, clients are told apart by X-Forwarded-For; an untrusted peer
    // cannot choose its key by sending the header.
    for _ in 0..5 {
        assert_eq!(get_from(&reg, path, "10.1.1.1", Some("203.0.113.1")).await.status(), StatusCode::OK);
    }
    assert_eq!(get_from(&reg, path, "10.1.1.1", Some("203.0.113.1")).await.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(get_from(&reg, path, "10.1.1.1", Some("203.0.113.2")).await.status(), StatusCode::OK);
    assert_eq!(
        get_from(&reg, path, "192.0.2.10", Some("203.0.113.99")).await.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "the header from an untrusted peer is ignored"
    );

    let text = String::from_utf8(reg.get("/metrics").await.body.to_vec()).unwrap();
    assert_eq!(metric(&text, "customs_rate_limited_total", "manifest_read"), 3);
    assert_eq!(metric(&text, "customs_rate_limited_total", "blob_read"), 0);
}

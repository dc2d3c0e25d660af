//! Slow and hostile clients against a real `customs serve`, over raw sockets: each mechanism
//! must engage (the assertions are on what the server answers, never on how long it took).

use std::path::Path;
use std::time::Duration;

use http::{Method, StatusCode};
use oci::Digest;
use test_support::{Client, Rng, ServerProcess};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn customs() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_customs"))
}

/// Reads until the server closes the connection (or `limit` passes, which fails the test).
async fn read_to_close(stream: &mut (impl tokio::io::AsyncRead + Unpin), limit: Duration) -> String {
    let mut out = Vec::new();
    match tokio::time::timeout(limit, stream.read_to_end(&mut out)).await {
        Ok(_) => String::from_utf8_lossy(&out).into_owned(),
        Err(_) => panic!("the server kept the connection open; read so far: {:?}", String::from_utf8_lossy(&out)),
    }
}

fn status_of(response: &str) -> Option<u16> {
    response.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

#[tokio::test]
async fn a_request_head_that_never_ends_is_cut_and_an_oversized_one_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let server = ServerProcess::start_with(
        customs(),
        &tmp.path().join("data"),
        &[("CUSTOMS_HTTP__HEADER_READ_TIMEOUT_MS", "300"), ("CUSTOMS_HTTP__MAX_HEADER_BYTES", "16384")],
    )
    .unwrap();

    // Slowloris on headers: a head that never ends.
    let mut slow = TcpStream::connect(&server.addr).await.unwrap();
    slow.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Slow: 1\r\n").await.unwrap();
    // Meanwhile, others are served.
    let client = Client::new(&server.url());
    assert_eq!(client.call(Method::GET, "/v2/", &[], "").await.unwrap().status, StatusCode::OK);
    let answer = read_to_close(&mut slow, Duration::from_secs(20)).await;
    assert!(!answer.contains(" 200 "), "an unfinished head is never served: {answer:?}");

    // A head larger than the limit.
    let mut big = TcpStream::connect(&server.addr).await.unwrap();
    let padding = "a".repeat(64 * 1024);
    big.write_all(format!("GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Big: {padding}\r\n\r\n").as_bytes()).await.ok();
    let answer = read_to_close(&mut big, Duration::from_secs(20)).await;
    assert_eq!(status_of(&answer), Some(431), "oversized head: {answer:?}");

    // A head within the limits still works on a raw socket.
    let mut fine = TcpStream::connect(&server.addr).await.unwrap();
    fine.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    assert_eq!(status_of(&read_to_close(&mut fine, Duration::from_secs(20)).await), Some(200));
}

#[tokio::test]
async fn a_slowloris_upload_is_cut_with_408_and_the_session_keeps_nothing_of_it() {
    let tmp = tempfile::tempdir().unwrap();
    let server = ServerProcess::start_with(
        customs(),
        &tmp.path().join("data"),
        &[("CUSTOMS_HTTP__MIN_BODY_BYTES_PER_SEC", "2000"), ("CUSTOMS_HTTP__BODY_RATE_WINDOW_SECS", "1")],
    )
    .unwrap();
    let client = Client::new(&server.url());
    let started = client.call(Method::POST, "/v2/slow/app/blobs/uploads/", &[], "").await.unwrap();
    assert_eq!(started.status, StatusCode::ACCEPTED);
    let location = started.header("location").unwrap().to_owned();

    // Declares 100 kB, sends 10 bytes every 200 ms: 50 B/s against a minimum of 2000 B/s.
    let (mut reader, mut slow) = TcpStream::connect(&server.addr).await.unwrap().into_split();
    let head = format!(
        "PATCH {location} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 100000\r\nContent-Range: 0-99999\r\n\r\n"
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    let trickle = async {
        for _ in 0..500 {
            if slow.write_all(&[7u8; 10]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let answer = tokio::select! {
        a = read_to_close(&mut reader, Duration::from_secs(60)) => a,
        () = trickle => panic!("the whole trickle was accepted"),
    };
    assert_eq!(status_of(&answer), Some(408), "slow body: {answer:?}");
    assert!(answer.contains("BLOB_UPLOAD_INVALID"), "{answer}");

    // The session is where it was before the cut chunk, and a normal client can complete it.
    let status = client.call(Method::GET, &location, &[], "").await.unwrap();
    assert_eq!(status.status, StatusCode::NO_CONTENT);
    assert_eq!(status.header("range"), Some("0-0"));
    let bytes = Rng(3).bytes(50_000);
    let digest = Digest::sha256_of(&bytes);
    let put = client
        .call(Method::PUT, &format!("{location}?digest={digest}"), &[("content-type", "application/octet-stream")], bytes.clone())
        .await
        .unwrap();
    assert_eq!(put.status, StatusCode::CREATED, "{:?}", put.body);
    let back = client.call(Method::GET, &format!("/v2/slow/app/blobs/{digest}"), &[], "").await.unwrap();
    assert_eq!(back.body, bytes);
}

#[tokio::test]
async fn one_client_cannot_hold_more_than_its_uploads_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let server = ServerProcess::start_with(
        customs(),
        &tmp.path().join("data"),
        &[("CUSTOMS_HTTP__MAX_UPLOADS_PER_CLIENT", "2"), ("CUSTOMS_HTTP__MIN_BODY_BYTES_PER_SEC", "0")],
    )
    .unwrap();
    let client = Client::new(&server.url());
    // Two uploads whose bodies are still on their way, each seen in flight before the next.
    let mut open = Vec::new();
    for i in 0..2 {
        let started = client.call(Method::POST, "/v2/greedy/app/blobs/uploads/", &[], "").await.unwrap();
        let location = started.header("location").unwrap().to_owned();
        let mut s = TcpStream::connect(&server.addr).await.unwrap();
        let head = format!("PATCH {location} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n");
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(&[1u8; 10]).await.unwrap();
        open.push(s);
        let mut seen = false;
        for _ in 0..200 {
            if metric(&client, "customs_in_flight{class=\"upload\"}").await == i + 1 {
                seen = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(seen, "upload {i} is in flight");
    }
    let refused = client.call(Method::POST, "/v2/greedy/app/blobs/uploads/", &[], "").await.unwrap();
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS, "a third concurrent upload of the same client");
    assert_eq!(refused.error_code(), "TOOMANYREQUESTS");
    assert!(refused.header("retry-after").is_some());
    // Reads are not uploads: still served.
    assert_eq!(client.call(Method::GET, "/v2/", &[], "").await.unwrap().status, StatusCode::OK);

    // Once one upload ends, the client may start another.
    let mut first = open.remove(0);
    first.write_all(&[1u8; 990]).await.unwrap();
    let mut buf = [0u8; 512];
    let n = first.read(&mut buf).await.unwrap();
    assert_eq!(status_of(&String::from_utf8_lossy(&buf[..n])), Some(202));
    let again = client.call(Method::POST, "/v2/greedy/app/blobs/uploads/", &[], "").await.unwrap();
    assert_eq!(again.status, StatusCode::ACCEPTED, "{:?}", again.body);

    assert_eq!(metric(&client, "customs_uploads_per_client_refused_total").await, 1);
}

/// The value of one series in the server's `/metrics`.
async fn metric(client: &Client, series: &str) -> u64 {
    let text = client.metrics().await;
    test_support::metric(&text, series).unwrap_or_else(|| panic!("{series} not in {text}")) as u64
}

#[tokio::test]
async fn graceful_shutdown_finishes_a_pull_in_flight_and_refuses_new_connections() {
    let tmp = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(customs(), &tmp.path().join("data")).unwrap();
    let client = Client::new(&server.url());
    let blob = Rng(11).bytes(24 << 20);
    let digest = Digest::sha256_of(&blob);
    let pushed = client
        .call(Method::POST, &format!("/v2/drain/app/blobs/uploads/?digest={digest}"), &[], blob.clone())
        .await
        .unwrap();
    assert_eq!(pushed.status, StatusCode::CREATED);

    // A pull that has started but reads slowly.
    let mut pull = TcpStream::connect(&server.addr).await.unwrap();
    let get = format!("GET /v2/drain/app/blobs/{digest} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    pull.write_all(get.as_bytes()).await.unwrap();
    let mut first = vec![0u8; 64 * 1024];
    let n = pull.read(&mut first).await.unwrap();
    assert!(n > 0);
    first.truncate(n);

    server.terminate();
    // New connections are refused once the listener closes.
    let mut refused = false;
    for _ in 0..100 {
        if TcpStream::connect(&server.addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "the listener is closed after SIGTERM");

    // The pull in flight completes, byte for byte.
    let mut rest = Vec::new();
    loop {
        let mut chunk = vec![0u8; 256 * 1024];
        let n = pull.read(&mut chunk).await.unwrap();
        if n == 0 {
            break;
        }
        rest.extend_from_slice(&chunk[..n]);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut response = first;
    response.extend_from_slice(&rest);
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").expect("response head") + 4;
    assert_eq!(status_of(&String::from_utf8_lossy(&response[..split])), Some(200));
    assert_eq!(response.len() - split, blob.len());
    assert!(response[split..] == blob[..], "the drained pull is exact");
    assert!(server.wait(), "the server exits cleanly after draining");
}

//! pushload: N clients push small images as fast as they are acknowledged, as a CI fleet does, to
//! measure how many pushes a second the records take (the bytes are tiny on purpose).
//!
//! `pushload URL [URL...] [--clients 32] [--seconds 10] [--layers 1]`
//!
//! Client `i` keeps one connection to `URL[i % URLs]` and pushes images to `load/c<i>` in a
//! closed loop, each blob as skopeo does (HEAD, POST, PATCH, PUT `?digest=`), then the manifest
//! by tag. Every blob is new (its bytes name the client and the image), so every push writes.
//! Prints one JSON line: images pushed, requests, images/s, p50/p99 seconds per image, and the
//! first failure (any unexpected status fails the client).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use oci::Digest;

struct Args {
    urls: Vec<http::Uri>,
    clients: usize,
    seconds: u64,
    layers: usize,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut it = std::env::args().skip(1);
    let mut args = Args { urls: vec![], clients: 32, seconds: 10, layers: 1 };
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or_else(|| anyhow::anyhow!("{a} needs a value"));
        match a.as_str() {
            "--clients" => args.clients = value()?.parse()?,
            "--seconds" => args.seconds = value()?.parse()?,
            "--layers" => args.layers = value()?.parse()?,
            _ => args.urls.push(a.parse()?),
        }
    }
    anyhow::ensure!(!args.urls.is_empty(), "usage: pushload URL [URL...] [--clients N] [--seconds S] [--layers N]");
    Ok(args)
}

struct Conn {
    authority: String,
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    requests: u64,
}

impl Conn {
    async fn open(url: &http::Uri) -> anyhow::Result<Conn> {
        let authority = url.authority().ok_or_else(|| anyhow::anyhow!("{url} has no host"))?.to_string();
        let stream = tokio::net::TcpStream::connect(&authority).await?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        Ok(Conn { authority, sender, requests: 0 })
    }

    /// Sends one request and checks its status; the response's `Location`, if any.
    async fn call(&mut self, method: Method, path: &str, headers: &[(&str, &str)], body: Bytes, want: StatusCode) -> anyhow::Result<Option<String>> {
        let mut r = Request::builder().method(method.clone()).uri(path).header(http::header::HOST, &self.authority);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        let response = self.sender.send_request(r.body(Full::new(body))?).await?;
        self.requests += 1;
        let status = response.status();
        let location = response.headers().get(http::header::LOCATION).and_then(|l| l.to_str().ok()).map(str::to_owned);
        let body = response.into_body().collect().await?.to_bytes();
        anyhow::ensure!(status == want, "{method} {path}: {status} (wanted {want}): {}", String::from_utf8_lossy(&body));
        Ok(location)
    }

    /// Pushes one blob as skopeo does: asks whether it is there, then one streamed chunk and an
    /// empty final PUT.
    async fn push_blob(&mut self, repo: &str, bytes: Bytes) -> anyhow::Result<Digest> {
        let digest = Digest::sha256_of(&bytes);
        self.call(Method::HEAD, &format!("/v2/{repo}/blobs/{digest}"), &[], Bytes::new(), StatusCode::NOT_FOUND).await?;
        let started = self.call(Method::POST, &format!("/v2/{repo}/blobs/uploads/"), &[], Bytes::new(), StatusCode::ACCEPTED).await?;
        let session = path_of(&started.ok_or_else(|| anyhow::anyhow!("POST without Location"))?);
        let patched = self.call(Method::PATCH, &session, &[("Content-Type", "application/octet-stream")], bytes, StatusCode::ACCEPTED).await?;
        let session = path_of(&patched.ok_or_else(|| anyhow::anyhow!("PATCH without Location"))?);
        let sep = if session.contains('?') { '&' } else { '?' };
        self.call(Method::PUT, &format!("{session}{sep}digest={digest}"), &[], Bytes::new(), StatusCode::CREATED).await?;
        Ok(digest)
    }
}

/// A `Location`'s path and query (it may be absolute).
fn path_of(location: &str) -> String {
    match location.parse::<http::Uri>() {
        Ok(uri) if uri.authority().is_some() => uri.path_and_query().map_or("/".into(), |p| p.to_string()),
        _ => location.to_owned(),
    }
}

async fn push_image(conn: &mut Conn, client: usize, n: u64, layers: usize) -> anyhow::Result<()> {
    let repo = format!("load/c{client}");
    let mut descriptors = Vec::new();
    for l in 0..layers {
        let mut bytes = format!("client {client} image {n} layer {l}\n").into_bytes();
        bytes.resize(4096, b'.');
        let digest = conn.push_blob(&repo, Bytes::from(bytes)).await?;
        descriptors.push(format!(r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{digest}","size":4096}}"#));
    }
    let config = Bytes::from(format!(r#"{{"architecture":"amd64","os":"linux","client":{client},"image":{n}}}"#));
    let config_len = config.len();
    let config_digest = conn.push_blob(&repo, config).await?;
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{config_len}}},"layers":[{}]}}"#,
        descriptors.join(",")
    );
    let path = format!("/v2/{repo}/manifests/t{n}");
    conn.call(Method::PUT, &path, &[("Content-Type", "application/vnd.oci.image.manifest.v1+json")], Bytes::from(manifest), StatusCode::CREATED)
        .await?;
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Arc::new(parse_args()?);
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let start = Instant::now();
    let tasks: Vec<_> = (0..args.clients)
        .map(|client| {
            let args = args.clone();
            tokio::spawn(async move {
                let mut times = Vec::new();
                let mut conn = Conn::open(&args.urls[client % args.urls.len()]).await?;
                let mut failure = None;
                while Instant::now() < deadline {
                    let began = Instant::now();
                    if let Err(e) = push_image(&mut conn, client, times.len() as u64, args.layers).await {
                        failure = Some(e.to_string());
                        break;
                    }
                    times.push(began.elapsed().as_secs_f64());
                }
                anyhow::Ok((times, conn.requests, failure))
            })
        })
        .collect();
    let (mut times, mut requests, mut failures) = (Vec::new(), 0, Vec::new());
    for t in tasks {
        let (t, r, f) = t.await??;
        times.extend(t);
        requests += r;
        failures.extend(f);
    }
    let seconds = start.elapsed().as_secs_f64();
    times.sort_by(f64::total_cmp);
    let at = |q: f64| times.get(((times.len() as f64 * q) as usize).min(times.len().saturating_sub(1))).copied().unwrap_or(0.0);
    println!(
        r#"{{"images":{},"requests":{requests},"seconds":{seconds:.3},"images_per_s":{:.1},"p50_s":{:.4},"p99_s":{:.4},"failed_clients":{},"first_failure":{}}}"#,
        times.len(),
        times.len() as f64 / seconds,
        at(0.5),
        at(0.99),
        failures.len(),
        serde_json::to_string(&failures.first()).unwrap_or_default()
    );
    Ok(())
}

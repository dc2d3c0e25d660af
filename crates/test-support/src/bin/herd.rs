//! herd: N clients pull the same image at the same moment, as every node of a cluster does when
//! a deployment rolls out, and honour `Retry-After` as kubelets and containerd do.
//!
//! `herd BASE_URL REPO REFERENCE [--clients 500] [--timeout-secs 600]`
//!
//! Each client has its own connection, fetches the manifest, then the config and every layer
//! in order, checking each body's length against the manifest. A 429 or 503 waits the
//! `Retry-After` it names (1 s if none) and asks again. A pull fails on any other status, a
//! short body, a connection error, or when it is not done within the timeout. Prints one JSON
//! line: completed, failed, p50/p99/max pull seconds, retries (responses that said wait), and
//! the first few failure reasons.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json,application/vnd.docker.distribution.manifest.v2+json";

struct Args {
    base: http::Uri,
    repo: String,
    reference: String,
    clients: usize,
    timeout: Duration,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut positional = Vec::new();
    let (mut clients, mut timeout) = (500, 600);
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--clients" => clients = it.next().ok_or_else(|| anyhow::anyhow!("--clients N"))?.parse()?,
            "--timeout-secs" => timeout = it.next().ok_or_else(|| anyhow::anyhow!("--timeout-secs S"))?.parse()?,
            _ => positional.push(a),
        }
    }
    let [base, repo, reference] = <[String; 3]>::try_from(positional)
        .map_err(|_| anyhow::anyhow!("usage: herd BASE_URL REPO REFERENCE [--clients N] [--timeout-secs S]"))?;
    Ok(Args { base: base.parse()?, repo, reference, clients, timeout: Duration::from_secs(timeout) })
}

/// One client's connection.
struct Conn {
    authority: String,
    sender: Option<hyper::client::conn::http1::SendRequest<Empty<Bytes>>>,
}

impl Conn {
    /// The connection, made again if the server closed it (a kept-alive connection the server
    /// has just closed shows as not ready).
    async fn sender(&mut self) -> anyhow::Result<&mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>> {
        if let Some(s) = self.sender.as_mut()
            && s.ready().await.is_err()
        {
            self.sender = None;
        }
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            let stream = tokio::net::TcpStream::connect(&self.authority).await?;
            stream.set_nodelay(true)?;
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(conn);
            self.sender = Some(sender);
        }
        Ok(self.sender.as_mut().expect("connected above"))
    }

    /// GETs `path` until it is not told to wait; returns the body (or its length when `keep` is
    /// false) and how many times it was told to wait.
    async fn get(&mut self, path: &str, accept: Option<&str>, keep: bool) -> anyhow::Result<(Bytes, u64, u64)> {
        let mut waits = 0;
        loop {
            let mut r = Request::get(path).header(http::header::HOST, &self.authority);
            if let Some(a) = accept {
                r = r.header(http::header::ACCEPT, a);
            }
            let request = r.body(Empty::new())?;
            let reused = self.sender.is_some();
            let response = match self.sender().await?.send_request(request).await {
                Ok(response) => response,
                // The server closed a kept-alive connection as the request went out: a GET is
                // sent again on a new one, as HTTP clients do.
                Err(e) if reused && (e.is_canceled() || e.is_closed() || e.is_incomplete_message()) => {
                    self.sender = None;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let status = response.status();
            if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
                let wait = response
                    .headers()
                    .get(http::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(1);
                response.into_body().collect().await?;
                waits += 1;
                tokio::time::sleep(Duration::from_secs(wait)).await;
                continue;
            }
            anyhow::ensure!(status == StatusCode::OK, "GET {path}: {status}");
            let mut body = response.into_body();
            let (mut kept, mut len) = (bytes::BytesMut::new(), 0u64);
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame?.into_data() {
                    len += data.len() as u64;
                    if keep {
                        kept.extend_from_slice(&data);
                    }
                }
            }
            return Ok((kept.freeze(), len, waits));
        }
    }
}

/// One pull: manifest, config, layers. Returns how many times it was told to wait.
async fn pull(args: &Args, authority: &str) -> anyhow::Result<u64> {
    let mut conn = Conn { authority: authority.to_owned(), sender: None };
    let (manifest, _, mut waits) =
        conn.get(&format!("/v2/{}/manifests/{}", args.repo, args.reference), Some(ACCEPT), true).await?;
    let manifest: serde_json::Value = serde_json::from_slice(&manifest)?;
    let layers = manifest["layers"].as_array().cloned().unwrap_or_default();
    for descriptor in std::iter::once(&manifest["config"]).chain(layers.iter()) {
        let digest = descriptor["digest"].as_str().ok_or_else(|| anyhow::anyhow!("descriptor without digest"))?;
        let size = descriptor["size"].as_u64().ok_or_else(|| anyhow::anyhow!("descriptor without size"))?;
        let (_, len, w) = conn.get(&format!("/v2/{}/blobs/{digest}", args.repo), None, false).await?;
        anyhow::ensure!(len == size, "blob {digest}: {len} bytes, manifest says {size}");
        waits += w;
    }
    Ok(waits)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Arc::new(parse_args()?);
    let authority = args.base.authority().ok_or_else(|| anyhow::anyhow!("URL has no host"))?.to_string();
    let start = Instant::now();
    let tasks: Vec<_> = (0..args.clients)
        .map(|_| {
            let (args, authority) = (args.clone(), authority.clone());
            tokio::spawn(async move {
                let began = Instant::now();
                let result = tokio::time::timeout(args.timeout, pull(&args, &authority)).await;
                let result = result.unwrap_or_else(|_| Err(anyhow::anyhow!("not done within {:?}", args.timeout)));
                (began.elapsed(), result)
            })
        })
        .collect();
    let (mut times, mut failures, mut retries) = (Vec::new(), Vec::new(), 0u64);
    for t in tasks {
        let (elapsed, result) = t.await?;
        match result {
            Ok(waits) => {
                retries += waits;
                times.push(elapsed.as_secs_f64());
            }
            Err(e) => failures.push(format!("{e:#}")),
        }
    }
    times.sort_by(f64::total_cmp);
    let pct = |p: f64| times.get(((times.len() as f64 * p).ceil() as usize).saturating_sub(1)).copied().unwrap_or(f64::NAN);
    failures.sort();
    failures.dedup();
    let out = serde_json::json!({
        "clients": args.clients,
        "completed": times.len(),
        "failed": args.clients - times.len(),
        "p50_s": pct(0.50),
        "p99_s": pct(0.99),
        "max_s": times.last().copied().unwrap_or(f64::NAN),
        "wall_s": start.elapsed().as_secs_f64(),
        "told_to_wait": retries,
        "failures": failures.into_iter().take(5).collect::<Vec<_>>(),
    });
    println!("{out}");
    Ok(())
}

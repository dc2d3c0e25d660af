//! loadgen: a closed-loop HTTP/1.1 load generator for `bench/` (wrk cannot time HEAD requests).
//!
//! `loadgen URL [--method M] [--connections N] [--seconds S] [--header 'Name: value']...`
//! Each connection sends its next request when the previous response is read in full. Prints
//! one JSON line: requests, seconds, rps, and how many responses were not 2xx.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

struct Args {
    url: http::Uri,
    method: Method,
    connections: usize,
    seconds: u64,
    headers: Vec<(String, String)>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut it = std::env::args().skip(1);
    let mut args = Args { url: http::Uri::default(), method: Method::GET, connections: 64, seconds: 10, headers: vec![] };
    let mut url = None;
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or_else(|| anyhow::anyhow!("{a} needs a value"));
        match a.as_str() {
            "--method" => args.method = value()?.parse()?,
            "--connections" => args.connections = value()?.parse()?,
            "--seconds" => args.seconds = value()?.parse()?,
            "--header" => {
                let h = value()?;
                let (k, v) = h.split_once(':').ok_or_else(|| anyhow::anyhow!("header {h:?} has no ':'"))?;
                args.headers.push((k.trim().to_owned(), v.trim().to_owned()));
            }
            _ => url = Some(a.parse()?),
        }
    }
    args.url = url.ok_or_else(|| anyhow::anyhow!("usage: loadgen URL [--method M] [--connections N] [--seconds S] [--header H]"))?;
    Ok(args)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = std::sync::Arc::new(parse_args()?);
    let authority = args.url.authority().ok_or_else(|| anyhow::anyhow!("URL has no host"))?.to_string();
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.connections {
        let (args, authority) = (args.clone(), authority.clone());
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(&authority).await?;
            stream.set_nodelay(true)?;
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(conn);
            let (mut ok, mut bad) = (0u64, 0u64);
            while Instant::now() < deadline {
                let mut r = Request::builder().method(args.method.clone()).uri(args.url.path_and_query().map_or("/", |p| p.as_str()));
                r = r.header(http::header::HOST, &authority);
                for (k, v) in &args.headers {
                    r = r.header(k, v);
                }
                let response = sender.send_request(r.body(Empty::<Bytes>::new())?).await?;
                let status = response.status();
                response.into_body().collect().await?;
                if status.is_success() { ok += 1 } else { bad += 1 }
            }
            anyhow::Ok((ok, bad))
        }));
    }
    let (mut ok, mut bad) = (0, 0);
    for t in tasks {
        let (o, b) = t.await??;
        ok += o;
        bad += b;
    }
    let seconds = start.elapsed().as_secs_f64();
    println!(r#"{{"requests":{ok},"non2xx":{bad},"seconds":{seconds:.3},"rps":{:.1}}}"#, ok as f64 / seconds);
    Ok(())
}

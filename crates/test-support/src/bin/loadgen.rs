//! loadgen: a closed-loop HTTP/1.1 load generator for `bench/` (wrk cannot time HEAD requests).
//!
//! `loadgen URL [--method M] [--connections N] [--seconds S] [--header 'Name: value']... [--discard]`
//! Each connection sends its next request when the previous response is read in full. Prints
//! one JSON line: requests, seconds, rps, body bytes per second, and how many were not 2xx.
//!
//! `--discard` (GET only) reads bodies with `recv(MSG_TRUNC)`, which drops the bytes in the kernel
//! without copying them out: on one machine the client then takes little of the CPU it shares
//! with the server, so a blob benchmark measures the server rather than the client.

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
    discard: bool,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut it = std::env::args().skip(1);
    let mut args = Args { url: http::Uri::default(), method: Method::GET, connections: 64, seconds: 10, headers: vec![], discard: false };
    let mut url = None;
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or_else(|| anyhow::anyhow!("{a} needs a value"));
        match a.as_str() {
            "--method" => args.method = value()?.parse()?,
            "--connections" => args.connections = value()?.parse()?,
            "--seconds" => args.seconds = value()?.parse()?,
            "--discard" => args.discard = true,
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

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    if args.discard {
        return discarding(&args);
    }
    hyper_load(args)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn hyper_load(args: Args) -> anyhow::Result<()> {
    let args = std::sync::Arc::new(args);
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
    report(ok, bad, 0, start.elapsed().as_secs_f64());
    Ok(())
}

fn report(ok: u64, bad: u64, body_bytes: u64, seconds: f64) {
    println!(
        r#"{{"requests":{ok},"non2xx":{bad},"seconds":{seconds:.3},"rps":{:.1},"body_bytes_per_s":{:.0}}}"#,
        ok as f64 / seconds,
        body_bytes as f64 / seconds
    );
}

/// GETs over plain keep-alive sockets, one thread per connection, bodies dropped in the kernel.
fn discarding(args: &Args) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;

    let authority = args.url.authority().ok_or_else(|| anyhow::anyhow!("URL has no host"))?.to_string();
    let path = args.url.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\n");
    for (k, v) in &args.headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let start = Instant::now();
    let threads: Vec<_> = (0..args.connections)
        .map(|_| {
            let (authority, request) = (authority.clone(), request.clone());
            std::thread::spawn(move || -> anyhow::Result<(u64, u64, u64)> {
                let mut sock = std::net::TcpStream::connect(&authority)?;
                sock.set_nodelay(true)?;
                let (mut ok, mut bad, mut bytes) = (0u64, 0u64, 0u64);
                let mut head = Vec::with_capacity(4096);
                while Instant::now() < deadline {
                    sock.write_all(request.as_bytes())?;
                    // Read the status line and headers byte-exactly, then drop the body.
                    head.clear();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        if sock.read(&mut byte)? == 0 {
                            anyhow::bail!("connection closed mid-response");
                        }
                        head.push(byte[0]);
                    }
                    let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
                    let status: u16 = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
                    let len: u64 = text
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .ok_or_else(|| anyhow::anyhow!("response without Content-Length"))?;
                    let mut left = len;
                    while left > 0 {
                        let want = left.min(1 << 30) as usize;
                        // SAFETY: MSG_TRUNC on a TCP socket discards up to `want` bytes; the null
                        // buffer is never written.
                        let n = unsafe { libc::recv(sock.as_raw_fd(), std::ptr::null_mut(), want, libc::MSG_TRUNC) };
                        if n <= 0 {
                            anyhow::bail!("connection closed mid-body: {}", std::io::Error::last_os_error());
                        }
                        left -= n as u64;
                    }
                    bytes += len;
                    if (200..300).contains(&status) { ok += 1 } else { bad += 1 }
                }
                Ok((ok, bad, bytes))
            })
        })
        .collect();
    let (mut ok, mut bad, mut bytes) = (0, 0, 0);
    for t in threads {
        let (o, b, n) = t.join().map_err(|_| anyhow::anyhow!("a connection thread panicked"))??;
        ok += o;
        bad += b;
        bytes += n;
    }
    report(ok, bad, bytes, start.elapsed().as_secs_f64());
    Ok(())
}

//! A push target that does only part of a registry's work, to measure the floor under a push:
//! what the client and the machine cost with the server doing nothing, hashing, writing, syncing.
//! `bench/push_floor.py` runs skopeo against it beside customs and Distribution.
//!
//! Usage: `pushsink MODE DIR`, MODE one of
//!   `discard`              read and drop the bodies
//!   `hash`                 + SHA-256 of every body
//!   `hash-write`           + write it to a file in DIR through the page cache
//!   `hash-write-sync`      + fdatasync before answering
//!   `hash-direct-sync`     the same with O_DIRECT from aligned 1 MiB blocks, as customs does
//! It prints its port on stdout. One thread per connection, blocking I/O: the least machinery.
//! That is why it writes its own aligned blocks rather than call `blobs`: the async writer there
//! is part of what the floor is measured against.
//! It answers just enough of the distribution API for a push (HEAD 404, POST 202, PATCH 202,
//! PUT 201) and checks nothing: it is a measuring device, not a registry.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::Digest;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Discard,
    Hash,
    HashWrite,
    HashWriteSync,
    HashDirectSync,
}

const BLOCK: usize = 1 << 20;
const ALIGN: usize = 4096;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let mode = match args.get(1).map(String::as_str) {
        Some("discard") => Mode::Discard,
        Some("hash") => Mode::Hash,
        Some("hash-write") => Mode::HashWrite,
        Some("hash-write-sync") => Mode::HashWriteSync,
        Some("hash-direct-sync") => Mode::HashDirectSync,
        _ => anyhow::bail!("usage: pushsink discard|hash|hash-write|hash-write-sync|hash-direct-sync DIR"),
    };
    let dir = PathBuf::from(args.get(2).ok_or_else(|| anyhow::anyhow!("a directory for the written bodies"))?);
    let listener = TcpListener::bind("127.0.0.1:0")?;
    println!("{}", listener.local_addr()?.port());
    std::io::stdout().flush()?;
    for stream in listener.incoming() {
        let (stream, dir) = (stream?, dir.clone());
        std::thread::spawn(move || {
            if let Err(e) = serve(stream, mode, &dir) {
                eprintln!("pushsink: {e}");
            }
        });
    }
    Ok(())
}

fn serve(stream: TcpStream, mode: Mode, dir: &std::path::Path) -> std::io::Result<()> {
    static BODIES: AtomicU64 = AtomicU64::new(0);
    let mut out = stream.try_clone()?;
    let mut input = BufReader::with_capacity(BLOCK, stream);
    loop {
        let mut line = String::new();
        match input.read_line(&mut line) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            // A TLS hello: skopeo tries https first, and falls back to http when that fails.
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => return Ok(()),
            Err(e) => return Err(e),
        }
        let mut words = line.split_whitespace();
        let (method, path) = (words.next().unwrap_or("").to_owned(), words.next().unwrap_or("").to_owned());
        let (mut length, mut chunked) = (0u64, false);
        loop {
            let mut header = String::new();
            input.read_line(&mut header)?;
            let header = header.trim_end().to_ascii_lowercase();
            if header.is_empty() {
                break;
            }
            if let Some(v) = header.strip_prefix("content-length:") {
                length = v.trim().parse().map_err(std::io::Error::other)?;
            }
            chunked |= header.starts_with("transfer-encoding:") && header.contains("chunked");
        }
        let n = BODIES.fetch_add(1, Ordering::Relaxed);
        let with_body = if matches!(method.as_str(), "PATCH" | "PUT") { mode } else { Mode::Discard };
        let mut sink = Sink::new(with_body, &dir.join(format!("body-{n}")))?;
        let received = if chunked { read_chunked(&mut input, &mut sink)? } else { std::io::copy(&mut (&mut input).take(length), &mut sink)? };
        sink.finish()?;
        let answer = match method.as_str() {
            "GET" => "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}".to_owned(),
            "POST" => format!("HTTP/1.1 202 Accepted\r\nLocation: /v2/sink/blobs/uploads/u{n}\r\nRange: 0-0\r\nContent-Length: 0\r\n\r\n"),
            "PATCH" => format!(
                "HTTP/1.1 202 Accepted\r\nLocation: {}\r\nRange: 0-{}\r\nContent-Length: 0\r\n\r\n",
                path.split('?').next().unwrap_or(&path),
                received.saturating_sub(1)
            ),
            "PUT" => {
                let digest = path.split("digest=").nth(1).map(|d| d.replace("%3A", ":")).unwrap_or_default();
                format!("HTTP/1.1 201 Created\r\nLocation: {path}\r\nDocker-Content-Digest: {digest}\r\nContent-Length: 0\r\n\r\n")
            }
            _ => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_owned(),
        };
        out.write_all(answer.as_bytes())?;
    }
}

fn read_chunked(input: &mut impl BufRead, sink: &mut Sink) -> std::io::Result<u64> {
    let mut total = 0;
    loop {
        let mut size = String::new();
        input.read_line(&mut size)?;
        let size = u64::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16).map_err(std::io::Error::other)?;
        if size == 0 {
            input.read_line(&mut String::new())?;
            return Ok(total);
        }
        total += std::io::copy(&mut input.take(size), sink)?;
        input.read_exact(&mut [0; 2])?;
    }
}

/// Where a body goes, by mode.
struct Sink {
    mode: Mode,
    hash: sha2::Sha256,
    file: Option<File>,
    /// O_DIRECT: a 4 KiB-aligned block (a Vec that skips to the alignment and never grows).
    block: Vec<u8>,
    skip: usize,
    at: u64,
    len: u64,
}

impl Sink {
    fn new(mode: Mode, path: &std::path::Path) -> std::io::Result<Sink> {
        let file = match mode {
            Mode::Discard | Mode::Hash => None,
            Mode::HashWrite | Mode::HashWriteSync => Some(File::create(path)?),
            Mode::HashDirectSync => Some(std::fs::OpenOptions::new().write(true).create(true).truncate(true).custom_flags(libc::O_DIRECT).open(path)?),
        };
        let mut block: Vec<u8> = Vec::with_capacity(if mode == Mode::HashDirectSync { BLOCK + ALIGN } else { 0 });
        let skip = if mode == Mode::HashDirectSync { block.as_ptr().align_offset(ALIGN) } else { 0 };
        block.resize(skip, 0);
        Ok(Sink { mode, hash: sha2::Sha256::new(), file, block, skip, at: 0, len: 0 })
    }

    fn finish(mut self) -> std::io::Result<()> {
        if self.mode == Mode::HashDirectSync && self.block.len() > self.skip {
            let padded = (self.block.len() - self.skip).next_multiple_of(ALIGN);
            self.block.resize(self.skip + padded, 0);
            self.file.as_ref().expect("a file").write_all_at(&self.block[self.skip..], self.at)?;
            self.file.as_ref().expect("a file").set_len(self.len)?;
        }
        if matches!(self.mode, Mode::HashWriteSync | Mode::HashDirectSync) {
            self.file.as_ref().expect("a file").sync_data()?;
        }
        std::hint::black_box(self.hash.finalize());
        Ok(())
    }
}

impl Write for Sink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if self.mode == Mode::Discard {
            return Ok(bytes.len());
        }
        self.hash.update(bytes);
        match self.mode {
            Mode::HashWrite | Mode::HashWriteSync => self.file.as_mut().expect("a file").write_all(bytes)?,
            Mode::HashDirectSync => {
                let mut rest = bytes;
                while !rest.is_empty() {
                    let n = rest.len().min(self.skip + BLOCK - self.block.len());
                    self.block.extend_from_slice(&rest[..n]);
                    rest = &rest[n..];
                    if self.block.len() == self.skip + BLOCK {
                        self.file.as_ref().expect("a file").write_all_at(&self.block[self.skip..], self.at)?;
                        self.at += BLOCK as u64;
                        self.block.truncate(self.skip);
                    }
                }
                self.len += bytes.len() as u64;
            }
            Mode::Discard | Mode::Hash => {}
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

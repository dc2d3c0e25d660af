//! A webhook receiver on 127.0.0.1 that keeps every request it gets.

use std::io::{BufRead, BufReader, Read, Write};
use std::sync::{Arc, Mutex};

/// One request a receiver got: its headers (lower-cased names) and body, and the status it was
/// answered with.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub status: u16,
}

impl Delivery {
    /// The body as JSON (a CloudEvent).
    pub fn event(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// Answers the first `failures` requests 500, then 200, on a thread of its own.
pub struct Receiver {
    pub url: String,
    got: Arc<Mutex<Vec<Delivery>>>,
}

impl Receiver {
    pub fn start(failures: usize) -> Receiver {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let got = Arc::new(Mutex::new(Vec::<Delivery>::new()));
        let kept = got.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let kept = kept.clone();
                std::thread::spawn(move || serve(stream, &kept, failures));
            }
        });
        Receiver { url, got }
    }

    /// Every request so far, in the order they arrived.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.got.lock().unwrap().clone()
    }
}

fn serve(mut stream: std::net::TcpStream, kept: &Mutex<Vec<Delivery>>, failures: usize) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':').unwrap();
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
        let len: usize = headers.iter().find(|(k, _)| k == "content-length").map_or(0, |(_, v)| v.parse().unwrap());
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let mut all = kept.lock().unwrap();
        let status = if all.len() < failures { 500 } else { 200 };
        all.push(Delivery { headers, body, status });
        drop(all);
        let reason = if status == 200 { "OK" } else { "Internal Server Error" };
        let _ = write!(stream, "HTTP/1.1 {status} {reason}\r\ncontent-length: 0\r\n\r\n");
    }
}

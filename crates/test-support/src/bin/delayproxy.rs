//! delayproxy: a TCP proxy on loopback that holds every byte for a fixed time each way, so a
//! benchmark can put a database a network's round trip away (this machine has no `netem`).
//!
//! `delayproxy TARGET_ADDR ONE_WAY_MICROS` prints the address it listens on, then forwards each
//! connection to `TARGET_ADDR`. Each direction of each connection has a reader thread, which
//! stamps what it reads, and a writer thread, which sends it on once the stamp is the delay old
//! (threads and `sleep`, whose wake-ups are tens of microseconds late, not a 1 ms timer wheel).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn pipe(mut from: TcpStream, mut to: TcpStream, delay: Duration) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    std::thread::spawn(move || {
        let mut buf = vec![0; 64 << 10];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send((Instant::now() + delay, buf[..n].to_vec())).is_err() {
                        break;
                    }
                }
            }
        }
    });
    std::thread::spawn(move || {
        for (due, bytes) in rx {
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            if to.write_all(&bytes).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: delayproxy TARGET_ADDR ONE_WAY_MICROS";
    let target = args.next().ok_or_else(|| anyhow::anyhow!(usage))?;
    let delay = Duration::from_micros(args.next().ok_or_else(|| anyhow::anyhow!(usage))?.parse()?);
    let listener = TcpListener::bind("127.0.0.1:0")?;
    println!("{}", listener.local_addr()?);
    std::io::stdout().flush()?;
    for client in listener.incoming() {
        let client = client?;
        let server = TcpStream::connect(&target)?;
        client.set_nodelay(true)?;
        server.set_nodelay(true)?;
        pipe(client.try_clone()?, server.try_clone()?, delay);
        pipe(server, client, delay);
    }
    Ok(())
}

//! A real S3 server for benchmarks: [`test_support::S3Server`] (s3s-fs, SigV4 checked) over a
//! directory, as a process of its own so that registries under test share one store.
//!
//! Usage: `s3server DIR`. Prints `ENDPOINT BUCKET ACCESS_KEY SECRET_KEY` (keys made for this run)
//! on one line, then serves until it is killed.

fn main() {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: s3server DIR");
        std::process::exit(2);
    };
    let server = test_support::S3Server::start(std::path::Path::new(&dir));
    println!("{} {} {} {}", server.endpoint(), test_support::S3_BUCKET, server.access_key, server.secret_key);
    loop {
        std::thread::park();
    }
}

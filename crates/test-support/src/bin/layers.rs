//! What a layer record saves: one layer (a tar, gzip'd or not, e.g. a Debian root filesystem)
//! inspected by a full read with every built-in engine, then applied from its stored record, as an
//! image sharing the layer would be. Prints both times, the record's stored size, and whether the
//! two inventories are the same.
//!
//! `cargo build --release -p test-support --bin layers; target/release/layers LAYER.tar.gz [TRIALS]`

use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or_else(|| anyhow::anyhow!("usage: layers LAYER.tar[.gz] [TRIALS]"))?;
    let trials: usize = args.next().map(|t| t.parse()).transpose()?.unwrap_or(3);
    let bytes = std::fs::read(&path)?;
    let inspection = scanner::Inspection {
        secrets: Some(Arc::new(scanner::secrets::SecretScanner::new(&[]).map_err(anyhow::Error::msg)?)),
        malware: Some(Arc::new(scanner::malware::MalwareScanner::new(&[], &[]).map_err(anyhow::Error::msg)?)),
        external: Vec::new(),
        misconfig: true,
    };
    let (mut read, mut applied) = (Duration::MAX, Duration::MAX);
    let mut same = true;
    let mut stored_len = 0;
    let mut summary = String::new();
    for _ in 0..trials {
        let started = Instant::now();
        let mut s = scanner::Scanner::new(scanner::Limits::default()).with_inspection(inspection.clone()).recording();
        s.add_layer("sha256:layer", &bytes[..]);
        let (whole, records) = s.finish_recorded();
        read = read.min(started.elapsed());
        let record = records.into_iter().next().ok_or_else(|| anyhow::anyhow!("the layer was not recorded"))?;
        let stored = record.to_bytes();
        stored_len = stored.len();
        let started = Instant::now();
        let mut s = scanner::Scanner::new(scanner::Limits::default()).with_inspection(inspection.clone());
        s.add_recorded_layer(scanner::LayerRecord::from_bytes(&stored).map_err(anyhow::Error::msg)?);
        let again = s.finish();
        applied = applied.min(started.elapsed());
        same &= serde_json::to_value(&whole)? == serde_json::to_value(&again)?;
        summary = format!("{} bytes, {} entries, {} packages, {} secrets", bytes.len(), whole.entries, whole.packages.len(), whole.secrets.len());
    }
    println!("layer: {summary}");
    println!("read and inspected: {:.1} ms (best of {trials})", read.as_secs_f64() * 1e3);
    println!("applied from its record: {:.2} ms (best of {trials}), record stored in {stored_len} bytes", applied.as_secs_f64() * 1e3);
    println!("{:.0}x faster; same inventory and findings: {same}", read.as_secs_f64() / applied.as_secs_f64());
    anyhow::ensure!(same, "the record gave another inventory");
    Ok(())
}

//! Secret and malware scanning on a second thread, so that it overlaps with inflating and reading
//! the layers: the reading thread hands each file's bytes over and goes on. Bytes in flight are
//! bounded; buffers come back to be reused.

use crate::malware::MalwareFinding;
use crate::overlay::Inspection;
use crate::secrets::{SecretFinding, Severity};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// What the worker found.
#[derive(Default)]
pub(crate) struct Found {
    pub secrets: Vec<SecretFinding>,
    pub malware: Vec<MalwareFinding>,
    /// (path, message) of files an external engine could not check.
    pub problems: Vec<(String, String)>,
}

struct Job {
    path: String,
    bytes: Vec<u8>,
    layer: Option<String>,
}

/// Bytes handed over and not yet scanned.
struct InFlight {
    bytes: Mutex<u64>,
    freed: Condvar,
}

pub(crate) struct Inspector {
    tx: Option<SyncSender<Job>>,
    worker: Option<JoinHandle<Found>>,
    in_flight: Arc<InFlight>,
    limit: u64,
    recycled: Receiver<Vec<u8>>,
}

/// One file through every engine.
fn inspect_one(insp: &Inspection, max_binary_secrets: u64, job: &Job, found: &mut Found) {
    let bytes = &job.bytes;
    let binary = bytes[..bytes.len().min(8192)].contains(&0);
    if let Some(s) = &insp.secrets
        && (!binary || bytes.len() as u64 <= max_binary_secrets) {
            s.scan(&job.path, bytes, job.layer.as_deref(), &mut found.secrets);
        }
    if let Some(m) = &insp.malware {
        m.scan(&job.path, bytes, job.layer.as_deref(), &mut found.malware);
    }
    for check in &insp.external {
        match check.check(bytes) {
            Ok(Some(signature)) => found.malware.push(MalwareFinding {
                rule: signature.clone(),
                description: format!("{} signature {signature}", check.engine()),
                severity: Severity::High,
                path: job.path.clone(),
                layer: job.layer.clone(),
                engine: check.engine().into(),
            }),
            Ok(None) => {}
            Err(e) => found.problems.push((job.path.clone(), format!("{}: {e}", check.engine()))),
        }
    }
}

impl Inspector {
    pub fn start(insp: Inspection, max_binary_secrets: u64, limit: u64) -> Inspector {
        let (tx, rx) = sync_channel::<Job>(256);
        let (back, recycled) = sync_channel::<Vec<u8>>(16);
        let in_flight = Arc::new(InFlight { bytes: Mutex::new(0), freed: Condvar::new() });
        let shared = in_flight.clone();
        let worker = std::thread::Builder::new()
            .name("scan-inspect".into())
            .spawn(move || {
                let mut found = Found::default();
                for job in rx {
                    inspect_one(&insp, max_binary_secrets, &job, &mut found);
                    let len = job.bytes.len() as u64;
                    *shared.bytes.lock().unwrap() -= len;
                    shared.freed.notify_one();
                    if job.bytes.capacity() <= 8 << 20 {
                        let _ = back.try_send(job.bytes);
                    }
                }
                found
            })
            .expect("a thread can be started");
        Inspector { tx: Some(tx), worker: Some(worker), in_flight, limit, recycled }
    }

    /// An empty buffer, reused when one has come back.
    pub fn buffer(&self) -> Vec<u8> {
        let mut b = self.recycled.try_recv().unwrap_or_default();
        b.clear();
        b
    }

    /// Hands a file over; waits while more than `limit` bytes are waiting. `false` when the
    /// worker is gone (it panicked): nothing more can be inspected.
    pub fn submit(&mut self, path: &str, bytes: Vec<u8>, layer: Option<String>) -> bool {
        let len = bytes.len() as u64;
        {
            let mut held = self.in_flight.bytes.lock().unwrap();
            while *held > 0 && *held + len > self.limit {
                if self.worker.as_ref().is_none_or(|w| w.is_finished()) {
                    return false;
                }
                held = self.in_flight.freed.wait_timeout(held, std::time::Duration::from_millis(200)).unwrap().0;
            }
            *held += len;
        }
        let sent = self.tx.as_ref().is_some_and(|tx| tx.send(Job { path: path.to_owned(), bytes, layer }).is_ok());
        if !sent {
            *self.in_flight.bytes.lock().unwrap() -= len;
        }
        sent
    }

    /// Waits for every file handed over, and returns what was found; `Err` if the worker died.
    pub fn finish(mut self) -> Result<Found, String> {
        drop(self.tx.take());
        match self.worker.take() {
            Some(w) => w.join().map_err(|p| {
                let why = p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned())).unwrap_or_default();
                format!("secret and malware inspection stopped: {why}")
            }),
            None => Ok(Found::default()),
        }
    }
}

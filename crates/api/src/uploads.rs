//! Limits on request bodies and on uploads per client, against slow and greedy clients.
//!
//! - [`SlowBodyGuard`]: a request body must deliver at least `min_bytes_per_sec`, averaged over
//!   each window of `window`; a body that trickles (slowloris) or stalls is cut at the end of the
//!   first window that falls short, and the request answered with 408.
//! - [`UploadSlots`]: at most `max_per_client` upload requests of one client run at once, so one
//!   CI runner cannot take every upload slot of the registry; more get 429 + `Retry-After`.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use tokio::time::{Instant, Sleep};

use crate::rate::ClientKey;

/// Body and per-client upload limits.
#[derive(Clone, Debug)]
pub struct UploadLimits {
    /// Slowest acceptable request body, averaged over each `rate_window`; 0 turns the check off.
    pub min_bytes_per_sec: u64,
    pub rate_window: Duration,
    /// Upload requests one client may have running at once; 0 means no limit.
    pub max_per_client: usize,
}

impl Default for UploadLimits {
    fn default() -> Self {
        UploadLimits { min_bytes_per_sec: 1024, rate_window: Duration::from_secs(15), max_per_client: 64 }
    }
}

/// Wraps a body stream; fails it with `TimedOut` when a window delivers too few bytes, and
/// raises `cut` so the handler can answer 408 instead of a generic body error.
pub(crate) struct SlowBodyGuard<S> {
    inner: S,
    min_per_window: u64,
    window: Duration,
    in_window: u64,
    deadline: Pin<Box<Sleep>>,
    cut: Arc<AtomicBool>,
}

impl<S> SlowBodyGuard<S> {
    pub(crate) fn new(inner: S, limits: &UploadLimits, cut: Arc<AtomicBool>) -> SlowBodyGuard<S> {
        let min_per_window = (limits.min_bytes_per_sec as f64 * limits.rate_window.as_secs_f64()) as u64;
        SlowBodyGuard {
            inner,
            min_per_window,
            window: limits.rate_window,
            in_window: 0,
            deadline: Box::pin(tokio::time::sleep(limits.rate_window)),
            cut,
        }
    }
}

impl<S, E> Stream for SlowBodyGuard<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.min_per_window > 0 {
            // Every window that has ended must have carried its share.
            while this.deadline.as_mut().poll(cx).is_ready() {
                if this.in_window < this.min_per_window {
                    this.cut.store(true, Ordering::Relaxed);
                    let msg = format!(
                        "request body arrived at {} bytes in {} s, below the minimum rate",
                        this.in_window,
                        this.window.as_secs_f64()
                    );
                    return Poll::Ready(Some(Err(std::io::Error::new(std::io::ErrorKind::TimedOut, msg))));
                }
                this.in_window = 0;
                let next = this.deadline.deadline() + this.window;
                this.deadline.as_mut().reset(next.max(Instant::now()));
            }
        }
        match ready!(Pin::new(&mut this.inner).poll_next(cx)) {
            Some(Ok(chunk)) => {
                this.in_window += chunk.len() as u64;
                Poll::Ready(Some(Ok(chunk)))
            }
            Some(Err(e)) => Poll::Ready(Some(Err(std::io::Error::other(e)))),
            None => Poll::Ready(None),
        }
    }
}

/// Upload requests running per client, in a table of bounded size.
pub(crate) struct UploadSlots {
    max_per_client: usize,
    max_clients: usize,
    running: Arc<Mutex<HashMap<ClientKey, usize>>>,
    refused: AtomicU64,
}

/// One running upload request of a client, released when dropped.
pub(crate) struct UploadSlot {
    client: ClientKey,
    running: Arc<Mutex<HashMap<ClientKey, usize>>>,
}

impl Drop for UploadSlot {
    fn drop(&mut self) {
        let mut running = self.running.lock().expect("upload slots lock");
        if let Some(n) = running.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                running.remove(&self.client);
            }
        }
    }
}

impl UploadSlots {
    pub(crate) fn new(max_per_client: usize, max_clients: usize) -> UploadSlots {
        UploadSlots { max_per_client, max_clients, running: Arc::default(), refused: AtomicU64::new(0) }
    }

    /// A slot for `client`, or `None` when it already runs its maximum. Unknown clients, a
    /// limit of 0, and a table at its size bound (only under an address flood, which admission
    /// bounds anyway) are let through untracked.
    pub(crate) fn take(&self, client: Option<&ClientKey>) -> Result<Option<UploadSlot>, ()> {
        let Some(client) = client else { return Ok(None) };
        if self.max_per_client == 0 {
            return Ok(None);
        }
        let mut running = self.running.lock().expect("upload slots lock");
        if !running.contains_key(client) && running.len() >= self.max_clients {
            return Ok(None);
        }
        let n = running.entry(client.clone()).or_insert(0);
        if *n >= self.max_per_client {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(());
        }
        *n += 1;
        Ok(Some(UploadSlot { client: client.clone(), running: self.running.clone() }))
    }

    pub(crate) fn render_metrics(&self, out: &mut String) {
        crate::prom::single(
            out,
            "customs_uploads_per_client_refused_total",
            "counter",
            "Upload requests refused because the client ran its maximum at once.",
            self.refused.load(Ordering::Relaxed),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_gets_at_most_its_slots_and_gets_them_back() {
        let slots = UploadSlots::new(2, 10);
        let a = ClientKey::Address("10.0.0.1".parse().unwrap());
        let b = ClientKey::Principal("robot$b".into());
        let first = slots.take(Some(&a)).unwrap();
        let _second = slots.take(Some(&a)).unwrap();
        assert!(slots.take(Some(&a)).is_err(), "third concurrent upload of one client is refused");
        assert!(slots.take(Some(&b)).unwrap().is_some(), "another client is not affected");
        drop(first);
        assert!(slots.take(Some(&a)).unwrap().is_some(), "a finished upload frees its slot");
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickling_body_is_cut_and_a_steady_one_is_not() {
        use futures::StreamExt;
        let limits = UploadLimits { min_bytes_per_sec: 100, rate_window: Duration::from_secs(1), max_per_client: 0 };
        // 50 bytes per second: half the minimum.
        let trickle = futures::stream::unfold(0, |i| async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            (i < 100).then(|| (Ok::<_, std::io::Error>(Bytes::from(vec![0u8; 25])), i + 1))
        });
        let cut = Arc::new(AtomicBool::new(false));
        let mut guarded = SlowBodyGuard::new(Box::pin(trickle), &limits, cut.clone());
        let mut got = 0;
        let err = loop {
            match guarded.next().await {
                Some(Ok(c)) => got += c.len(),
                Some(Err(e)) => break e,
                None => panic!("a trickling body must not be read to the end"),
            }
        };
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        assert!(cut.load(Ordering::Relaxed));
        assert!(got <= 50, "cut in the first window, after {got} bytes");

        // 200 bytes per second for 5 s: read in full.
        let steady = futures::stream::unfold(0, |i| async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            (i < 50).then(|| (Ok::<_, std::io::Error>(Bytes::from(vec![0u8; 20])), i + 1))
        });
        let cut = Arc::new(AtomicBool::new(false));
        let total: usize = SlowBodyGuard::new(Box::pin(steady), &limits, cut.clone())
            .map(|c| c.expect("steady body is never cut").len())
            .fold(0, |a, b| async move { a + b })
            .await;
        assert_eq!(total, 1000);
        assert!(!cut.load(Ordering::Relaxed));
    }
}

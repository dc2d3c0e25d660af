//! Single flight: identical concurrent lookups share one execution.
//!
//! When every node of a cluster asks for the same manifest at once and the cache is cold (a new
//! tag, a restart, an expired entry), one lookup reaches the records and the bytes; the others
//! wait for its result. Cancellation-safe: if the caller doing the work goes away, the next
//! waiter does it. Nothing is kept after the flight lands: caching is the cache's job.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::OnceCell;

pub struct SingleFlight<K, V> {
    flights: Mutex<HashMap<K, Weak<OnceCell<V>>>>,
    shared: AtomicU64,
}

impl<K: Hash + Eq + Clone, V: Clone> Default for SingleFlight<K, V> {
    fn default() -> Self {
        SingleFlight::new()
    }
}

impl<K: Hash + Eq + Clone, V: Clone> SingleFlight<K, V> {
    pub fn new() -> SingleFlight<K, V> {
        SingleFlight { flights: Mutex::default(), shared: AtomicU64::new(0) }
    }

    /// Runs `work` for `key`, unless a run for `key` is already under way: then its result.
    pub async fn run<F: Future<Output = V>>(&self, key: K, work: impl FnOnce() -> F) -> V {
        let cell = {
            let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
            match flights.get(&key).and_then(Weak::upgrade) {
                Some(cell) => {
                    self.shared.fetch_add(1, Ordering::Relaxed);
                    cell
                }
                None => {
                    let cell = Arc::new(OnceCell::new());
                    flights.insert(key.clone(), Arc::downgrade(&cell));
                    cell
                }
            }
        };
        let value = cell.get_or_init(work).await.clone();
        let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
        if flights.get(&key).is_some_and(|w| w.as_ptr() == Arc::as_ptr(&cell)) {
            flights.remove(&key);
        }
        value
    }

    /// Callers that got another caller's result instead of doing the work.
    pub fn shared(&self) -> u64 {
        self.shared.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    #[tokio::test]
    async fn concurrent_callers_share_one_run_and_later_callers_run_again() {
        let flight = Arc::new(SingleFlight::<&str, u64>::new());
        let runs = Arc::new(AtomicUsize::new(0));
        let call = |flight: Arc<SingleFlight<&'static str, u64>>, runs: Arc<AtomicUsize>| async move {
            flight
                .run("m", || async {
                    runs.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    7
                })
                .await
        };
        let handles: Vec<_> = (0..20).map(|_| tokio::spawn(call(flight.clone(), runs.clone()))).collect();
        for h in handles {
            assert_eq!(h.await.unwrap(), 7);
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1, "twenty concurrent callers, one run");
        assert_eq!(flight.shared(), 19);
        assert_eq!(call(flight.clone(), runs.clone()).await, 7);
        assert_eq!(runs.load(Ordering::SeqCst), 2, "a later caller is not served a stale result");
        assert!(flight.flights.lock().unwrap().is_empty(), "nothing kept after landing");
    }

    #[tokio::test]
    async fn a_cancelled_leader_hands_the_work_to_a_waiter() {
        let flight = Arc::new(SingleFlight::<u8, u8>::new());
        let f = flight.clone();
        let leader = tokio::spawn(async move { f.run(1, std::future::pending::<u8>).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let f = flight.clone();
        let waiter = tokio::spawn(async move { f.run(1, || async { 9 }).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        leader.abort();
        assert_eq!(tokio::time::timeout(Duration::from_secs(5), waiter).await.unwrap().unwrap(), 9);
    }
}

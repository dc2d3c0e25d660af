//! Writes to the records that a moment's failure of the records themselves (a database
//! restarting, failing over) must not leave undone: what a request or a job leaves behind that
//! would otherwise stay wrong until it expired (a quota hold counting for an hour, an inspection
//! job leased for ten minutes).

use std::fmt::Display;
use std::time::Duration;

use tokio::time::Instant;

/// Runs `write` until it succeeds, waiting 250 ms after the first failure and twice as long after
/// each next one (at most 5 s), for up to `give_up_after`; its last error if it never succeeded.
/// `what` names the write in the log.
pub async fn until_recorded<T, E: Display, F: Future<Output = Result<T, E>>>(
    what: &str,
    give_up_after: Duration,
    mut write: impl FnMut() -> F,
) -> Result<T, E> {
    let give_up = Instant::now() + give_up_after;
    let mut wait = Duration::from_millis(250);
    loop {
        match write().await {
            Ok(done) => return Ok(done),
            Err(e) if Instant::now() + wait < give_up => {
                tracing::warn!(error = %e, "could not record {what}; trying again in {wait:?}");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn tries_until_it_works_or_the_time_is_up() {
        let tries = AtomicU32::new(0);
        let started = tokio::time::Instant::now();
        let third = until_recorded("a test write", Duration::from_secs(60), || async {
            if tries.fetch_add(1, Relaxed) < 2 { Err("down") } else { Ok(7) }
        })
        .await;
        assert_eq!(third, Ok(7));
        assert_eq!(started.elapsed(), Duration::from_millis(250 + 500), "backing off");

        tries.store(0, Relaxed);
        let never: Result<(), &str> = until_recorded("a test write", Duration::from_secs(10), || async {
            tries.fetch_add(1, Relaxed);
            Err("down")
        })
        .await;
        assert_eq!(never, Err("down"));
        // 0.25 + 0.5 + 1 + 2 + 4 s of waits fit in 10 s; the next (5 s) would not.
        assert_eq!(tries.load(Relaxed), 6);
    }
}

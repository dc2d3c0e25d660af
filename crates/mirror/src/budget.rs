//! A budget of requests per window (Docker Hub counts manifest GETs per six hours per
//! address), so a mirror never spends the organisation's pull quota.

use std::sync::Mutex;
use std::time::{Duration, Instant};

pub(crate) struct Budget {
    limit: u32,
    window: Duration,
    /// The window's start and what has been spent in it.
    spent: Mutex<(Instant, u32)>,
}

impl Budget {
    pub(crate) fn new(limit: u32, window: Duration) -> Budget {
        Budget { limit, window, spent: Mutex::new((Instant::now(), 0)) }
    }

    /// Takes one request from the budget, or says how long until the next window.
    pub(crate) fn take(&self) -> Result<(), Duration> {
        let mut spent = self.spent.lock().unwrap_or_else(|p| p.into_inner());
        let elapsed = spent.0.elapsed();
        if elapsed >= self.window {
            *spent = (Instant::now(), 0);
        } else if spent.1 >= self.limit {
            return Err(self.window - elapsed);
        }
        spent.1 += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spent_budget_refuses_until_its_window_ends() {
        let budget = Budget::new(2, Duration::from_millis(200));
        assert!(budget.take().is_ok() && budget.take().is_ok());
        let wait = budget.take().unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_millis(200));
        std::thread::sleep(wait + Duration::from_millis(10));
        assert!(budget.take().is_ok(), "a new window");
    }
}

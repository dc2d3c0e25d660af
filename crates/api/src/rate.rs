//! Per-client rate limits: GCRA (the generic cell rate algorithm) per route class, keyed by the
//! client (its address, or the address a trusted proxy forwarded), in a table of bounded size.
//!
//! GCRA keeps one number per client and class, the theoretical arrival time (TAT): a request at
//! `now` conforms if `now >= TAT - burst_tolerance`, and then moves TAT one emission interval on.
//! A refused request learns exactly when it would conform, which becomes its `Retry-After`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::admission::RouteClass;

/// A budget: `per_second` sustained, `burst` at once. `per_second == 0` means no limit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: u32,
}

impl RateLimit {
    pub const OFF: RateLimit = RateLimit { per_second: 0.0, burst: 0 };
}

/// Budgets per route class (in [`RouteClass::ALL`] order), who may speak for a client, and how
/// many clients are tracked at most.
#[derive(Clone, Debug)]
pub struct RateConfig {
    pub classes: [RateLimit; 5],
    /// Peers whose `X-Forwarded-For` names the real client (load balancers, ingress).
    pub trusted_proxies: Vec<IpAddr>,
    pub max_clients: usize,
}

impl Default for RateConfig {
    fn default() -> Self {
        RateConfig { classes: [RateLimit::OFF; 5], trusted_proxies: Vec::new(), max_clients: 100_000 }
    }
}

pub struct RateLimiter {
    config: RateConfig,
    epoch: Instant,
    table: Mutex<HashMap<(RouteClass, IpAddr), u64>>,
    limited: [AtomicU64; 5],
}

/// A refused request: seconds until it would conform.
#[derive(Debug, PartialEq, Eq)]
pub struct Limited {
    pub retry_after_secs: u64,
}

impl RateLimiter {
    pub fn new(config: RateConfig) -> RateLimiter {
        RateLimiter { config, epoch: Instant::now(), table: Mutex::default(), limited: Default::default() }
    }

    /// Who the client is: the peer, or the first address a trusted proxy forwarded.
    pub fn client(&self, peer: Option<IpAddr>, forwarded_for: Option<&str>) -> Option<IpAddr> {
        let peer = peer?;
        if self.config.trusted_proxies.contains(&peer)
            && let Some(ip) = forwarded_for.and_then(|f| f.split(',').next()).and_then(|f| f.trim().parse().ok())
        {
            return Some(ip);
        }
        Some(peer)
    }

    /// Counts one request of `class` from `client`; refuses it if it exceeds the budget.
    pub fn check(&self, class: RouteClass, client: Option<IpAddr>) -> Result<(), Limited> {
        let limit = self.config.classes[class as usize];
        let Some(client) = client else { return Ok(()) };
        if limit.per_second <= 0.0 {
            return Ok(());
        }
        let interval = (1e9 / limit.per_second) as u64;
        let tolerance = interval * u64::from(limit.burst.max(1) - 1);
        let now = self.epoch.elapsed().as_nanos() as u64;
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        if table.len() >= self.config.max_clients && !table.contains_key(&(class, client)) {
            // Bounded memory: forget clients whose debt is paid (they are as good as new); if
            // every tracked client is still in debt, start over rather than grow.
            table.retain(|_, tat| *tat > now);
            if table.len() >= self.config.max_clients {
                table.clear();
            }
        }
        let tat = table.get(&(class, client)).copied().unwrap_or(now).max(now);
        if now + tolerance < tat {
            drop(table);
            self.limited[class as usize].fetch_add(1, Ordering::Relaxed);
            let wait = Duration::from_nanos(tat - tolerance - now);
            return Err(Limited { retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64 });
        }
        table.insert((class, client), tat + interval);
        Ok(())
    }

    pub fn render_metrics(&self, out: &mut String) {
        crate::prom::per_class(
            out,
            "customs_rate_limited_total",
            "counter",
            "Requests refused with 429 by per-client limits, by route class.",
            |class| self.limited[class as usize].load(Ordering::Relaxed),
        );
        let tracked = self.table.lock().unwrap_or_else(|p| p.into_inner()).len();
        crate::prom::single(out, "customs_rate_clients", "gauge", "Clients tracked by the rate limiter.", tracked);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_second: f64, burst: u32, max_clients: usize) -> RateLimiter {
        let mut classes = [RateLimit::OFF; 5];
        classes[RouteClass::ManifestRead as usize] = RateLimit { per_second, burst };
        RateLimiter::new(RateConfig { classes, trusted_proxies: vec!["10.0.0.1".parse().unwrap()], max_clients })
    }

    #[test]
    fn a_burst_passes_then_the_rate_holds_per_client_and_class() {
        let l = limiter(1.0, 3, 100);
        let noisy = Some("192.0.2.1".parse().unwrap());
        let quiet = Some("192.0.2.2".parse().unwrap());
        for _ in 0..3 {
            assert_eq!(l.check(RouteClass::ManifestRead, noisy), Ok(()));
        }
        let refused = l.check(RouteClass::ManifestRead, noisy).unwrap_err();
        assert!((1..=2).contains(&refused.retry_after_secs), "{refused:?}");
        assert_eq!(l.check(RouteClass::ManifestRead, quiet), Ok(()), "another client has its own budget");
        assert_eq!(l.check(RouteClass::BlobRead, noisy), Ok(()), "a class without a limit is not limited");
        assert_eq!(l.check(RouteClass::ManifestRead, None), Ok(()), "no address, no key");
    }

    #[test]
    fn only_trusted_proxies_speak_for_clients() {
        let l = limiter(1.0, 1, 100);
        let proxy = Some("10.0.0.1".parse().unwrap());
        let stranger = Some("198.51.100.9".parse().unwrap());
        assert_eq!(l.client(proxy, Some("203.0.113.5, 10.0.0.1")), Some("203.0.113.5".parse().unwrap()));
        assert_eq!(l.client(stranger, Some("203.0.113.5")), stranger, "an untrusted peer cannot pick a key");
        assert_eq!(l.client(proxy, Some("garbage")), proxy);
    }

    #[test]
    fn the_table_stays_bounded() {
        let l = limiter(1.0, 1, 50);
        for i in 0..500u32 {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            let _ = l.check(RouteClass::ManifestRead, Some(ip));
            assert!(l.table.lock().unwrap().len() <= 50);
        }
    }
}

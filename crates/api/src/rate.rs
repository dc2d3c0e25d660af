//! Per-client rate limits: GCRA (the generic cell rate algorithm) per route class, keyed by the
//! client, in a table of bounded size. The client is the authenticated principal when there is
//! one (so robots behind one NAT address have their own budgets), else its address (or the
//! address a trusted proxy forwarded).
//!
//! GCRA keeps one number per client and class, the theoretical arrival time (TAT): a request at
//! `now` conforms if `now >= TAT - burst_tolerance`, and then moves TAT one emission interval on.
//! A refused request learns exactly when it would conform, which becomes its `Retry-After`.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::admission::{CLASSES, RouteClass};

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
    pub classes: [RateLimit; CLASSES],
    /// Peers whose `X-Forwarded-For` names the real client (load balancers, ingress).
    pub trusted_proxies: Vec<IpAddr>,
    pub max_clients: usize,
}

impl Default for RateConfig {
    fn default() -> Self {
        RateConfig { classes: [RateLimit::OFF; CLASSES], trusted_proxies: Vec::new(), max_clients: 100_000 }
    }
}

pub struct RateLimiter {
    config: RateConfig,
    table: Gcra<(RouteClass, ClientKey)>,
    limited: [AtomicU64; CLASSES],
}

/// Who a budget belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ClientKey {
    Address(IpAddr),
    Principal(Arc<str>),
}

/// A refused request: seconds until it would conform.
#[derive(Debug, PartialEq, Eq)]
pub struct Limited {
    pub retry_after_secs: u64,
}

impl RateLimiter {
    pub fn new(config: RateConfig) -> RateLimiter {
        let table = Gcra::new(config.max_clients);
        RateLimiter { config, table, limited: Default::default() }
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
    pub fn check(&self, class: RouteClass, client: Option<ClientKey>) -> Result<(), Limited> {
        let limit = self.config.classes[class as usize];
        let Some(client) = client else { return Ok(()) };
        self.table.take(&(class, client), limit).inspect_err(|_| {
            self.limited[class as usize].fetch_add(1, Ordering::Relaxed);
        })
    }

    pub fn render_metrics(&self, out: &mut String) {
        crate::prom::per_class(
            out,
            "customs_rate_limited_total",
            "counter",
            "Requests refused with 429 by per-client limits, by route class.",
            |class| self.limited[class as usize].load(Ordering::Relaxed),
        );
        let tracked = self.table.len();
        crate::prom::single(out, "customs_rate_clients", "gauge", "Clients tracked by the rate limiter.", tracked);
    }
}

/// GCRA over any key: one theoretical arrival time per key, at most `max_keys` keys.
pub(crate) struct Gcra<K> {
    epoch: Instant,
    table: Mutex<HashMap<K, u64>>,
    max_keys: usize,
}

impl<K: Hash + Eq + Clone> Gcra<K> {
    pub(crate) fn new(max_keys: usize) -> Gcra<K> {
        Gcra { epoch: Instant::now(), table: Mutex::default(), max_keys: max_keys.max(1) }
    }

    /// Takes one cell for `key`, or says how long until one conforms.
    pub(crate) fn take(&self, key: &K, limit: RateLimit) -> Result<(), Limited> {
        self.decide(key, limit, true)
    }

    /// Whether a cell for `key` would conform now, taking nothing.
    pub(crate) fn peek(&self, key: &K, limit: RateLimit) -> Result<(), Limited> {
        self.decide(key, limit, false)
    }

    fn decide(&self, key: &K, limit: RateLimit, take: bool) -> Result<(), Limited> {
        if limit.per_second <= 0.0 {
            return Ok(());
        }
        let interval = (1e9 / limit.per_second) as u64;
        let tolerance = interval * u64::from(limit.burst.max(1) - 1);
        let now = self.epoch.elapsed().as_nanos() as u64;
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let tat = table.get(key).copied().unwrap_or(now).max(now);
        if now + tolerance < tat {
            let wait = Duration::from_nanos(tat - tolerance - now);
            return Err(Limited { retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64 });
        }
        if !take {
            return Ok(());
        }
        if table.len() >= self.max_keys && !table.contains_key(key) {
            // Bounded memory: forget keys whose debt is paid (they are as good as new); if
            // every tracked key is still in debt, start over rather than grow.
            table.retain(|_, tat| *tat > now);
            if table.len() >= self.max_keys {
                table.clear();
            }
        }
        table.insert(key.clone(), tat + interval);
        Ok(())
    }

    pub(crate) fn len(&self) -> usize {
        self.table.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_second: f64, burst: u32, max_clients: usize) -> RateLimiter {
        let mut classes = [RateLimit::OFF; CLASSES];
        classes[RouteClass::ManifestRead as usize] = RateLimit { per_second, burst };
        RateLimiter::new(RateConfig { classes, trusted_proxies: vec!["10.0.0.1".parse().unwrap()], max_clients })
    }

    #[test]
    fn a_burst_passes_then_the_rate_holds_per_client_and_class() {
        let l = limiter(1.0, 3, 100);
        let noisy = Some(ClientKey::Address("192.0.2.1".parse().unwrap()));
        let quiet = Some(ClientKey::Address("192.0.2.2".parse().unwrap()));
        for _ in 0..3 {
            assert_eq!(l.check(RouteClass::ManifestRead, noisy.clone()), Ok(()));
        }
        let refused = l.check(RouteClass::ManifestRead, noisy.clone()).unwrap_err();
        assert!((1..=2).contains(&refused.retry_after_secs), "{refused:?}");
        assert_eq!(l.check(RouteClass::ManifestRead, quiet), Ok(()), "another client has its own budget");
        let robot = Some(ClientKey::Principal("robot$a".into()));
        assert_eq!(l.check(RouteClass::ManifestRead, robot), Ok(()), "a principal has its own budget");
        assert_eq!(l.check(RouteClass::BlobRead, noisy.clone()), Ok(()), "a class without a limit is not limited");
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
            let _ = l.check(RouteClass::ManifestRead, Some(ClientKey::Address(ip)));
            assert!(l.table.len() <= 50);
        }
    }
}

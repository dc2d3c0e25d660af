//! Bytes held against namespaces' quotas, in the records, so that every replica sharing them
//! counts every other one's writes.
//!
//! A quota is checked against what a namespace stores (a sum over its links, too costly to
//! compute at every write, so counted now and then) plus what this ledger holds: the writes under
//! way, and the writes recorded since the count began. Ledger ids only grow, in the order the
//! writes were made; a count begun after reading [`QuotaLedger::ledger_mark`] includes every
//! write settled at or below that mark, so the rows above it are exactly what it may miss (some
//! of them may be in the count as well: usage errs high for a while, never low).

use crate::Result;

/// A write about to link bytes into a namespace with a quota.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hold {
    pub namespace: String,
    pub bytes: u64,
    /// The namespace's stored bytes, counted after reading `mark`.
    pub stored: u64,
    pub mark: i64,
    /// Refuse the hold if usage would pass this; `None` holds whatever it comes to.
    pub max_bytes: Option<u64>,
    /// When a hold whose write never settled (its process died) stops counting.
    pub expires_ms: i64,
    /// Rows past their expiry are removed on the way.
    pub now_ms: i64,
}

/// What [`QuotaLedger::hold`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Held {
    /// Held under this id: settle it once the write is recorded, or release it.
    Granted(i64),
    /// Refused: the namespace's usage without these bytes.
    Refused { used: u64 },
}

#[async_trait::async_trait]
pub trait QuotaLedger: Send + Sync {
    /// The largest ledger id: read before counting a namespace's stored bytes.
    async fn ledger_mark(&self) -> Result<i64>;

    /// What the ledger holds for `namespace` beyond a count begun after `mark`: the writes under
    /// way and those settled above the mark.
    async fn ledger_bytes(&self, namespace: &str, mark: i64) -> Result<u64>;

    /// Holds `hold.bytes` unless `stored` plus [`Self::ledger_bytes`] plus them would pass
    /// `max_bytes`: one write, so holds made at once by several replicas take turns.
    async fn hold(&self, hold: &Hold) -> Result<Held>;

    /// The write held by `id` is recorded: the hold becomes a settled row with a new id (so counts
    /// begun before now still add it), kept until `expires_ms`, when every such count has ended.
    async fn settle_hold(&self, id: i64, expires_ms: i64) -> Result<()>;

    /// The write held by `id` failed: its bytes count no more.
    async fn release_hold(&self, id: i64) -> Result<()>;
}

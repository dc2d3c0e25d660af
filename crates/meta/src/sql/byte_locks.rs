//! [`ByteLocks`]: on SQLite nothing to do (one process per data directory, whose own lock
//! suffices); on PostgreSQL advisory locks keyed by digest, which every replica sees.
//!
//! - A claim is a transaction-scoped exclusive lock, tried (never waited for) in a transaction of
//!   its own on the reader pool; it ends with that transaction.
//! - Holds are session-scoped shared locks, all of a process's on one connection of their own
//!   (outside the pools) that a task owns: callers ask it by message, so a caller that gives up
//!   while its lock is being taken never leaves the connection mid-statement, and what it was given
//!   is released at once. Holds of one digest by several callers share one lock, counted here.
//!   A waiting hold waits only for claims, and a claim's holder waits for nothing a hold holds, so
//!   the two cannot deadlock.
//!
//! A hold is answered only after a statement of its session succeeded (taking its locks, or a
//! `SELECT 1` when they are held already), so it is never given by a session already ended; the
//! next hold after a failure makes a new session. If the session fails while holds are held (the
//! database restarts, the connection breaks), their locks go with it while their holders go on:
//! a deletion in that moment could take bytes a commit relies on. So a holder that releases with
//! [`DigestsHeld::release`] after its commit is told whether its session lasted: a statement of
//! that same session succeeds after the commit (the unlock, or a `SELECT 1`), or the answer is
//! no, and the holder looks at the bytes again (`registry`'s `release_bytes`).

use std::collections::HashMap;
use std::time::Duration;

use oci::Digest;
use sqlx::any::AnyConnectOptions;
use sqlx::{AnyConnection, Connection};
use tokio::sync::{mpsc, oneshot};

use super::{Dialect, SqlMeta, db};
use crate::byte_locks::Release;
use crate::{ByteLocks, DigestClaim, DigestsHeld, Error, Result};

/// The first key of the digests' two-key advisory locks ("byte"); the second is 32 bits of the
/// digest. Two-key locks never meet the one-key write and lead locks.
const BYTE_LOCKS: i32 = 0x6279_7465;

/// How long a statement of the holds' session may take (a hold waits for a claim, which lasts one
/// deletion) before the session is given up.
const ASK: Duration = Duration::from_secs(30);

fn key(digest: &Digest) -> i32 {
    let hex = digest.hex();
    u32::from_str_radix(&hex[..8], 16).unwrap_or(0) as i32
}

/// What the holds' task is asked.
enum Ask {
    Hold { keys: Vec<i32>, done: oneshot::Sender<Result<u64>> },
    /// Keys held since `session`; a release from a session since failed has nothing to give up.
    /// `kept`, if asked, is told whether the session lasted until a statement after this ask.
    Release { keys: Vec<i32>, session: u64, kept: Option<oneshot::Sender<bool>> },
    Close(oneshot::Sender<()>),
}

/// The sender of the holds' task; `None` for records of this process's own.
pub(super) struct Holds(Option<mpsc::UnboundedSender<Ask>>);

impl Holds {
    pub(super) fn alone() -> Holds {
        Holds(None)
    }

    /// Holds are taken by a task of their own in the PostgreSQL database `options` names.
    pub(super) fn shared(options: AnyConnectOptions) -> Holds {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(HoldsTask { options, conn: None, counts: HashMap::new(), session: 0 }.run(rx));
        Holds(Some(tx))
    }

    async fn hold(&self, digests: &[&Digest]) -> Result<DigestsHeld> {
        let Some(asks) = &self.0 else { return Ok(DigestsHeld::local()) };
        let mut keys: Vec<i32> = digests.iter().map(|d| key(d)).collect();
        keys.sort_unstable();
        keys.dedup();
        let (done, answer) = oneshot::channel();
        let gone = || Error::Unavailable("the records are closed".into());
        asks.send(Ask::Hold { keys: keys.clone(), done }).map_err(|_| gone())?;
        let session = answer.await.map_err(|_| gone())??;
        Ok(DigestsHeld::new(Held { asks: asks.clone(), keys, session }))
    }

    pub(super) async fn close(&self) {
        let Some(asks) = &self.0 else { return };
        let (done, closed) = oneshot::channel();
        if asks.send(Ask::Close(done)).is_ok() {
            let _ = closed.await;
        }
    }
}

/// Keys given to a hold in `session`.
struct Held {
    asks: mpsc::UnboundedSender<Ask>,
    keys: Vec<i32>,
    session: u64,
}

impl Release for Held {
    fn release(self: Box<Self>) {
        let _ = self.asks.send(Ask::Release { keys: self.keys, session: self.session, kept: None });
    }

    fn confirm(self: Box<Self>) -> std::pin::Pin<Box<dyn Future<Output = bool> + Send>> {
        let (kept, answer) = oneshot::channel();
        let sent = self.asks.send(Ask::Release { keys: self.keys, session: self.session, kept: Some(kept) });
        Box::pin(async move { sent.is_ok() && answer.await.unwrap_or(false) })
    }
}

struct HoldsTask {
    options: AnyConnectOptions,
    conn: Option<AnyConnection>,
    /// How many holds there are of each key this session holds.
    counts: HashMap<i32, usize>,
    /// Counts the sessions; a hold names the one it was taken in.
    session: u64,
}

impl HoldsTask {
    async fn run(mut self, mut asks: mpsc::UnboundedReceiver<Ask>) {
        while let Some(first) = asks.recv().await {
            // Everything asked meanwhile is answered together: one statement to release, one to take.
            let mut batch = vec![first];
            while let Ok(more) = asks.try_recv() {
                batch.push(more);
            }
            let mut holds = Vec::new();
            let mut released = Vec::new();
            let mut confirms = Vec::new();
            for ask in batch {
                match ask {
                    Ask::Hold { keys, done } => holds.push((keys, done)),
                    Ask::Release { keys, session, kept } if session == self.session && self.conn.is_some() => {
                        released.extend(keys);
                        confirms.extend(kept);
                    }
                    // Its session has ended since: its locks went with it.
                    Ask::Release { kept, .. } => {
                        if let Some(kept) = kept {
                            let _ = kept.send(false);
                        }
                    }
                    Ask::Close(done) => {
                        if let Some(conn) = self.conn.take() {
                            let _ = conn.close().await;
                        }
                        let _ = done.send(());
                        return;
                    }
                }
            }
            let wanted: Vec<i32> = holds.iter().flat_map(|(keys, _)| keys.iter().copied()).collect();
            let result = self.change(&wanted, &released, !holds.is_empty() || !confirms.is_empty()).await;
            for kept in confirms {
                let _ = kept.send(result.is_ok());
            }
            let mut unwanted = Vec::new();
            for (keys, done) in holds {
                let answer = result.as_ref().map(|()| self.session).map_err(|e| Error::Unavailable(e.to_string()));
                if done.send(answer).is_err() && result.is_ok() {
                    // Its caller gave up while it was taken.
                    unwanted.extend(keys);
                }
            }
            if !unwanted.is_empty() {
                let _ = self.change(&[], &unwanted, false).await;
            }
        }
    }

    /// Counts `wanted` in and `released` out; releases the keys no hold is left of, then takes the
    /// keys no hold had. With `confirm`, the session is asked even if nothing is to be taken or
    /// freed, so a hold is never answered, nor a release told the hold lasted, from a session that
    /// has ended unnoticed. On a failure the session is given up, with every lock it held.
    async fn change(&mut self, wanted: &[i32], released: &[i32], confirm: bool) -> Result<()> {
        for key in released {
            if let Some(n) = self.counts.get_mut(key) {
                *n = n.saturating_sub(1);
            }
        }
        // Each key once; a key released and wanted again in one batch is kept, not taken twice.
        let mut take = Vec::new();
        for key in wanted {
            let n = self.counts.entry(*key).or_default();
            if *n == 0 && !released.contains(key) {
                take.push(*key);
            }
            *n += 1;
        }
        let free: Vec<i32> = self.counts.iter().filter(|(_, n)| **n == 0).map(|(k, _)| *k).collect();
        self.counts.retain(|_, n| *n > 0);
        match self.run_locks(&free, &take, confirm).await {
            Ok(()) => Ok(()),
            Err(e) => {
                tracing::warn!(error = %e, "the session holding stored digests failed; it is made again at the next hold");
                self.conn = None;
                self.counts.clear();
                self.session += 1;
                Err(e)
            }
        }
    }

    async fn run_locks(&mut self, free: &[i32], take: &[i32], confirm: bool) -> Result<()> {
        if free.is_empty() && take.is_empty() && !confirm {
            return Ok(());
        }
        let conn = match &mut self.conn {
            Some(conn) => conn,
            // Nothing to release in a session not yet made.
            None if take.is_empty() && !confirm => return Ok(()),
            None => self.conn.insert(in_time(AnyConnection::connect_with(&self.options)).await?),
        };
        // The keys are numbers made here, written into the statement: sqlx's `Any` binds no arrays.
        let calls = |function: &str, keys: &[i32]| -> String {
            let calls: Vec<String> = keys.iter().map(|k| format!("{function}({BYTE_LOCKS}, {k})")).collect();
            format!("SELECT {}", calls.join(", "))
        };
        if !free.is_empty() {
            in_time(sqlx::raw_sql(sqlx::AssertSqlSafe(calls("pg_advisory_unlock_shared", free))).execute(&mut *conn)).await?;
        }
        if !take.is_empty() {
            in_time(sqlx::raw_sql(sqlx::AssertSqlSafe(calls("pg_advisory_lock_shared", take))).execute(&mut *conn)).await?;
        } else if confirm && free.is_empty() {
            in_time(sqlx::raw_sql("SELECT 1").execute(&mut *conn)).await?;
        }
        Ok(())
    }
}

async fn in_time<T>(f: impl Future<Output = Result<T, sqlx::Error>>) -> Result<T> {
    match tokio::time::timeout(ASK, f).await {
        Ok(done) => done.map_err(db),
        Err(_) => Err(Error::Unavailable(format!("no answer within {ASK:?}"))),
    }
}

#[async_trait::async_trait]
impl ByteLocks for SqlMeta {
    async fn hold_digests(&self, digests: &[&Digest]) -> Result<DigestsHeld> {
        self.holds.hold(digests).await
    }

    async fn claim_digest(&self, digest: &Digest) -> Result<Option<DigestClaim>> {
        if self.dialect == Dialect::Sqlite {
            return Ok(Some(DigestClaim::local()));
        }
        let mut tx = self.reader.begin().await.map_err(db)?;
        let got: i32 = sqlx::query_scalar("SELECT CASE WHEN pg_try_advisory_xact_lock($1, $2) THEN 1 ELSE 0 END")
            .bind(BYTE_LOCKS)
            .bind(key(digest))
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
        if got == 0 {
            let _ = tx.rollback().await;
            return Ok(None);
        }
        Ok(Some(DigestClaim::new(async move {
            let _ = tx.rollback().await;
        })))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn digest(byte: u8) -> Digest {
        Digest::sha256_of(&[byte])
    }

    #[tokio::test]
    async fn records_of_their_own_always_claim() {
        let dir = tempfile::tempdir().unwrap();
        let meta = SqlMeta::open(&dir.path().join("meta.db")).await.unwrap();
        let d = digest(1);
        let _held = meta.hold_digests(&[&d]).await.unwrap();
        assert!(meta.claim_digest(&d).await.unwrap().is_some(), "one process: its own lock decides");
    }

    mod postgres {
        use super::*;

        /// Polls `claim` until it is given, up to five seconds (a hold is released by message).
        async fn claimed_within(meta: &SqlMeta, d: &Digest) -> Option<DigestClaim> {
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(5) {
                if let Some(claim) = meta.claim_digest(d).await.unwrap() {
                    return Some(claim);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            None
        }

        /// Two replicas: a hold on one keeps the other from claiming the digest until the last
        /// hold of it is dropped; a claim makes holds wait until it is released; a hold whose
        /// caller gave up while it waited is released; a failed session is made again.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn holds_and_claims_exclude_each_other_across_replicas() {
            let pg = test_support::Postgres::start();
            let url = pg.database();
            let (a, b) = (SqlMeta::connect(&url).await.unwrap(), SqlMeta::connect(&url).await.unwrap());
            let (d, e) = (digest(1), digest(2));

            // Held twice on a (two commits of one digest): b claims it only once both are done.
            let first = a.hold_digests(&[&d, &e]).await.unwrap();
            let second = a.hold_digests(&[&d]).await.unwrap();
            assert!(b.claim_digest(&d).await.unwrap().is_none(), "held on a");
            assert!(b.claim_digest(&e).await.unwrap().is_none(), "held on a");
            drop(first);
            let claim = claimed_within(&b, &e).await.expect("e is free once its one hold is dropped");
            claim.release().await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert!(b.claim_digest(&d).await.unwrap().is_none(), "d is still held by the second hold");
            drop(second);
            let claim = claimed_within(&b, &d).await.expect("d is free once both holds are dropped");

            // A claim makes a hold wait, on either replica, until it is released.
            assert!(a.claim_digest(&d).await.unwrap().is_none(), "one claim at a time");
            let same = d.clone();
            let waiting = tokio::spawn(async move {
                let held = a.hold_digests(&[&same]).await.unwrap();
                (a, held)
            });
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert!(!waiting.is_finished(), "a hold waits while the digest is claimed");
            claim.release().await;
            let (a, held) = tokio::time::timeout(Duration::from_secs(5), waiting).await.expect("the hold is given once the claim is released").unwrap();
            assert!(b.claim_digest(&d).await.unwrap().is_none(), "held again");
            drop(held);
            let claim = claimed_within(&b, &d).await.expect("free again");

            // A caller that gives up while its hold waits leaves nothing held.
            let gave_up = tokio::time::timeout(Duration::from_millis(200), a.hold_digests(&[&d])).await;
            assert!(gave_up.is_err(), "it waited for the claim");
            claim.release().await;
            let claim = claimed_within(&b, &d).await.expect("the abandoned hold was released once taken");
            // A claim dropped without its release is released a moment later all the same.
            drop(claim);
            let claim = claimed_within(&b, &d).await.expect("a dropped claim is released");
            claim.release().await;

            // A hold released after its commit is told it lasted, and is free at once.
            let held = a.hold_digests(&[&d]).await.unwrap();
            assert!(held.release().await, "held without a break");
            b.claim_digest(&d).await.unwrap().expect("released before the answer").release().await;

            // The holds' session is ended by the database (a restart, a cut): its locks go, their
            // holders are told so when they release, and the next hold makes a new session.
            let held = a.hold_digests(&[&e]).await.unwrap();
            let earlier = a.hold_digests(&[&d]).await.unwrap();
            let ended: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_locks \
                 WHERE locktype = 'advisory' AND classid::bigint = $1 AND objid::bigint = $2 AND mode = 'ShareLock' AND granted) t",
            )
            .bind(i64::from(BYTE_LOCKS))
            .bind(i64::from(key(&e)) & 0xffff_ffff)
            .fetch_one(&b.writer)
            .await
            .unwrap();
            assert_eq!(ended, 1, "one session held e");
            claimed_within(&b, &e).await.expect("the ended session's locks are gone").release().await;
            assert!(!held.release().await, "its session ended while it was held");
            let mut worked = false;
            for _ in 0..3 {
                if let Ok(held) = a.hold_digests(&[&e]).await {
                    assert!(b.claim_digest(&e).await.unwrap().is_none(), "held in the new session");
                    assert!(held.release().await, "held in the new session without a break");
                    worked = true;
                    break;
                }
            }
            assert!(worked, "a new session is made");
            b.claim_digest(&e).await.unwrap().expect("released in the new session").release().await;
            assert!(!earlier.release().await, "given by the ended session, released from the new one");

            // Closed records hold nothing.
            a.close().await;
            assert!(a.hold_digests(&[&d]).await.is_err());
        }
    }
}

//! Who leads each [`Task`]: on SQLite this process, always (one server per data directory); on
//! PostgreSQL whoever holds the task's session-level advisory lock. This process holds its locks
//! on one connection kept for them, outside the pools, so they last as long as that session:
//! closing ([`SqlMeta::close`]) gives them up at once, and a process that dies or is cut off gives
//! them up when the database ends its session. A held lead is checked by a round trip on that
//! connection each time it is asked about.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sqlx::any::AnyConnectOptions;
use sqlx::{AnyConnection, Connection};

use super::{SqlMeta, db};
use crate::{Leadership, Task};

/// The first key of the tasks' advisory locks ("customs" with a 1 on top, the task's index in the
/// low byte); the write lock is `0x0063…`.
const LEAD_LOCKS: i64 = 0x0163_7573_746f_6d00;

/// How long a question to the database may take before its connection is given up.
const ASK: Duration = Duration::from_secs(5);

/// How long after a failed connection attempt the next is made.
const RECONNECT: Duration = Duration::from_secs(5);

pub(super) struct Leads {
    /// Where to connect; `None`: records of this process's own.
    options: Option<AnyConnectOptions>,
    state: tokio::sync::Mutex<State>,
    /// `State::held` as of its last change, readable without waiting for a question under way.
    shown: [AtomicBool; Task::ALL.len()],
}

#[derive(Default)]
struct State {
    conn: Option<AnyConnection>,
    held: [bool; Task::ALL.len()],
    failed_at: Option<Instant>,
    /// Closed: leads nothing again.
    closed: bool,
}

impl Leads {
    /// This process leads every task.
    pub(super) fn alone() -> Leads {
        Leads { options: None, state: Default::default(), shown: Default::default() }
    }

    /// Leads are taken with advisory locks in the PostgreSQL database `options` names.
    pub(super) fn shared(options: AnyConnectOptions) -> Leads {
        Leads { options: Some(options), state: Default::default(), shown: Default::default() }
    }

    async fn leads(&self, task: Task) -> bool {
        let Some(options) = &self.options else { return true };
        let mut state = self.state.lock().await;
        if state.closed {
            return false;
        }
        let i = task.index();
        match ask(&mut state, options, task).await {
            Ok(leads) => {
                if leads && !state.held[i] {
                    tracing::info!(task = task.name(), "this replica leads {} now", task.name());
                }
                state.held[i] = leads;
                self.show(&state);
                leads
            }
            Err(e) => {
                let lost: Vec<&str> = Task::ALL.iter().filter(|t| state.held[t.index()]).map(|t| t.name()).collect();
                let first = state.failed_at.is_none();
                *state = State { failed_at: Some(Instant::now()), ..State::default() };
                self.show(&state);
                if !lost.is_empty() {
                    tracing::warn!(tasks = ?lost, error = %e, "this replica no longer leads {}: its lock session failed", lost.join(", "));
                } else if first {
                    tracing::warn!(error = %e, "cannot ask the records who leads background tasks; this replica leads none until it can");
                }
                false
            }
        }
    }

    /// Gives every lead up (the session ends).
    pub(super) async fn close(&self) {
        let mut state = self.state.lock().await;
        if let Some(conn) = state.conn.take() {
            let _ = conn.close().await;
        }
        *state = State { closed: true, ..State::default() };
        self.show(&state);
    }

    fn show(&self, state: &State) {
        for (shown, held) in self.shown.iter().zip(state.held) {
            shown.store(held, Ordering::Relaxed);
        }
    }

    fn leading(&self) -> Vec<Task> {
        if self.options.is_none() {
            return Task::ALL.to_vec();
        }
        Task::ALL.into_iter().filter(|t| self.shown[t.index()].load(Ordering::Relaxed)).collect()
    }
}

/// Whether this process leads `task`: a held lead if its session still answers, else the lock if
/// it is free.
async fn ask(state: &mut State, options: &AnyConnectOptions, task: Task) -> crate::Result<bool> {
    let conn = match &mut state.conn {
        Some(conn) => conn,
        None if state.failed_at.is_some_and(|t| t.elapsed() < RECONNECT) => return Ok(false),
        None => {
            let conn = in_time(AnyConnection::connect_with(options)).await?;
            state.failed_at = None;
            state.conn.insert(conn)
        }
    };
    if state.held[task.index()] {
        in_time(sqlx::query("SELECT 1").execute(&mut *conn)).await?;
        return Ok(true);
    }
    let key = LEAD_LOCKS + task.index() as i64;
    let got: i32 =
        in_time(sqlx::query_scalar("SELECT CASE WHEN pg_try_advisory_lock($1) THEN 1 ELSE 0 END").bind(key).fetch_one(&mut *conn)).await?;
    Ok(got == 1)
}

async fn in_time<T>(f: impl Future<Output = Result<T, sqlx::Error>>) -> crate::Result<T> {
    match tokio::time::timeout(ASK, f).await {
        Ok(done) => done.map_err(db),
        Err(_) => Err(crate::Error::Unavailable(format!("no answer within {ASK:?}"))),
    }
}

#[async_trait::async_trait]
impl Leadership for SqlMeta {
    async fn leads(&self, task: Task) -> bool {
        self.leads.leads(task).await
    }

    fn leading(&self) -> Vec<Task> {
        self.leads.leading()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_of_its_own_lead_everything() {
        let dir = tempfile::tempdir().unwrap();
        let meta = SqlMeta::open(&dir.path().join("meta.db")).await.unwrap();
        assert_eq!(meta.leading(), Task::ALL, "before any question");
        for task in Task::ALL {
            assert!(meta.leads(task).await, "{task:?}");
        }
    }

    #[test]
    fn every_task_has_its_own_lock() {
        let keys: std::collections::HashSet<i64> = Task::ALL.iter().map(|t| LEAD_LOCKS + t.index() as i64).collect();
        assert_eq!(keys.len(), Task::ALL.len());
        assert!(!keys.contains(&super::super::WRITE_LOCK));
    }

    mod postgres {
        use super::*;

        async fn leaders(replicas: &[SqlMeta], task: Task) -> Vec<usize> {
            let mut leading = Vec::new();
            for (i, r) in replicas.iter().enumerate() {
                if r.leads(task).await {
                    leading.push(i);
                }
            }
            leading
        }

        /// One replica leads each task and keeps it; when it closes, or its session is ended by
        /// the database, another takes the task over, and the first learns it lost it.
        #[tokio::test]
        async fn one_replica_leads_each_task_until_its_session_ends() {
            let pg = test_support::Postgres::start();
            let url = pg.database();
            let mut replicas = Vec::new();
            for _ in 0..3 {
                replicas.push(SqlMeta::connect(&url).await.unwrap());
            }
            for task in Task::ALL {
                let first = leaders(&replicas, task).await;
                assert_eq!(first.len(), 1, "{task:?}: {first:?}");
                assert_eq!(leaders(&replicas, task).await, first, "{task:?}: the lead is kept");
            }
            assert_eq!(leaders(&replicas, Task::Gc).await, [0], "the first to ask took it");
            let shown: Vec<Vec<Task>> = replicas.iter().map(|r| r.leading()).collect();
            assert!(shown[0].contains(&Task::Gc) && !shown[1].contains(&Task::Gc) && !shown[2].contains(&Task::Gc), "{shown:?}");
            assert_eq!(shown.iter().map(Vec::len).sum::<usize>(), Task::ALL.len(), "each task shown led once: {shown:?}");

            // A leader that closes gives its leads up at once, and takes none again.
            replicas[0].close().await;
            assert!(!replicas[0].leads(Task::Gc).await, "a closed replica leads nothing");
            let rest = &replicas[1..];
            // Its backend ends a moment after the connection is closed, under load a long one.
            let mut next = leaders(rest, Task::Gc).await;
            for _ in 0..50 {
                if !next.is_empty() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                next = leaders(rest, Task::Gc).await;
            }
            assert_eq!(next.len(), 1, "{next:?}");
            let leader = &rest[next[0]];

            // A leader whose session the database ends (as a network cut would) learns it at the
            // next question; the other replica takes over.
            let ended: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_locks \
                 WHERE locktype = 'advisory' AND classid::bigint = $1 AND objid::bigint = $2 AND granted) t",
            )
            .bind(LEAD_LOCKS >> 32)
            .bind((LEAD_LOCKS + Task::Gc.index() as i64) & 0xffff_ffff)
            .fetch_one(&leader.writer)
            .await
            .unwrap();
            assert_eq!(ended, 1);
            assert!(!leader.leads(Task::Gc).await, "the leader whose session ended");
            assert_eq!(leader.leading(), [], "a failed session loses every lead");
            let other = &rest[1 - next[0]];
            let mut took = false;
            for _ in 0..50 {
                if other.leads(Task::Gc).await {
                    took = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert!(took, "the other replica took gc over");
            assert!(other.leading().contains(&Task::Gc));
            assert_eq!(replicas[0].leading(), [], "a closed replica shows no lead");
        }
    }
}

//! Background work that one process does for every replica sharing the records: garbage
//! collection, the scrub, re-judging, webhook deliveries. Each replica asks before a pass whether
//! it leads that task; with records of its own (SQLite, one server per data directory) it always
//! does.
//!
//! Leading is an economy, never what keeps data safe: every pass stays safe beside another
//! (gc spares what is younger than its delay, deletions recheck the records under the bytes
//! lock, claims and cursors are transactions), because a lead can be lost between the question
//! and the end of a pass (the leader's database session ends: a network cut, a database restart),
//! and another replica may then start the same pass while the first finishes its own.

/// A task that one process does for all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Task {
    /// Removing upload sessions idle past their time.
    UploadJanitor,
    /// Retention and garbage collection.
    Gc,
    /// Reading every stored blob to check its digest.
    Scrub,
    /// Evicting what mirrors cached, past their budgets.
    MirrorEviction,
    /// Delivering the audit log's events to webhooks.
    Webhooks,
    /// Judging stored images again when advisories, waivers or rules change.
    Rejudging,
}

impl Task {
    pub const ALL: [Task; 6] = [Task::UploadJanitor, Task::Gc, Task::Scrub, Task::MirrorEviction, Task::Webhooks, Task::Rejudging];

    /// The name logs and metrics use.
    pub fn name(self) -> &'static str {
        match self {
            Task::UploadJanitor => "upload-janitor",
            Task::Gc => "gc",
            Task::Scrub => "scrub",
            Task::MirrorEviction => "mirror-evict",
            Task::Webhooks => "webhooks",
            Task::Rejudging => "re-judging",
        }
    }

    pub(crate) fn index(self) -> usize {
        Task::ALL.iter().position(|t| *t == self).expect("every task is in ALL")
    }
}

#[async_trait::async_trait]
pub trait Leadership: Send + Sync {
    /// Whether this process leads `task` now: it takes the lead if no one holds it and keeps it
    /// until it closes or loses its session. Never an error: a database that cannot be asked
    /// means "no" (logged), so no two replicas lead because one of them could not check.
    async fn leads(&self, task: Task) -> bool;

    /// The tasks this process led when last asked about them, without asking again: what
    /// `/metrics` shows.
    fn leading(&self) -> Vec<Task>;
}

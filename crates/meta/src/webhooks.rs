//! Where each webhook stands in the audit log: events are the audit log's entries (pushes,
//! verdicts), delivered in order to each webhook from its cursor, so a delivery survives restarts
//! and a receiver that is down gets what it missed.

use crate::Result;

/// How far a webhook has delivered, and its retries of the next entry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WebhookCursor {
    /// The last audit entry dealt with (delivered, not for this webhook, or given up on).
    pub after_id: i64,
    /// Failed attempts at the next entry.
    pub attempts: u32,
    /// No attempt before this moment (ms since the epoch).
    pub next_at_ms: i64,
    pub last_error: Option<String>,
}

/// A delivery given up on after its retries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookFailure {
    pub hook: String,
    pub audit_id: i64,
    pub error: String,
    pub at_ms: i64,
}

#[async_trait::async_trait]
pub trait Webhooks: Send + Sync {
    async fn webhook_cursor(&self, hook: &str) -> Result<Option<WebhookCursor>>;
    /// Stores the cursor; with `gave_up`, records that failure in the same transaction.
    async fn save_webhook_cursor(&self, hook: &str, cursor: &WebhookCursor, gave_up: Option<&WebhookFailure>) -> Result<()>;
    /// Deliveries given up on, newest first.
    async fn webhook_failures(&self, limit: usize) -> Result<Vec<WebhookFailure>>;
    /// The id of the newest audit entry (0: none): where a new webhook starts.
    async fn audit_head(&self) -> Result<i64>;
}

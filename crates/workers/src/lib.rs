//! Named, cancellable background workers. Each runs until its stop signal and finishes the job in
//! hand first; state lives in the records store, so a worker that dies loses nothing (its job's
//! lease runs out and another takes it).

pub mod inspection;
pub mod webhooks;

pub use inspection::{InspectionSettings, InspectionWorker, Rejudged};
pub use webhooks::{Webhook, WebhookSettings, WebhookWorker};

/// Now, in milliseconds since the epoch: how the records keep time.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

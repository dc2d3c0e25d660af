//! Named, cancellable background workers. Each runs until its stop signal and finishes the job in
//! hand first; state lives in the records store, so a worker that dies loses nothing (its job's
//! lease runs out and another takes it).

pub mod inspection;
pub mod webhooks;

pub use inspection::{InspectionSettings, InspectionWorker, Rejudged};
pub use webhooks::{Webhook, WebhookSettings, WebhookWorker};

pub(crate) use registry::now_ms;

//! The webhook worker: turns the audit log's entries into CloudEvents (`pushed`, `inspected`,
//! `blocked`, `unblocked`) and POSTs them, in order, to each configured webhook, signed with an
//! HMAC-SHA256 of the body. Each webhook keeps its cursor in the records, so nothing is lost to a
//! restart or to a receiver that is down: a failed delivery is retried with exponential backoff
//! (the webhook's later events wait behind it) and given up after `max_attempts`, which is
//! recorded. Delivery is at least once: the event `id` lets a receiver drop a repeat.

use std::time::Duration;

use auth::RepoGlob;
use bytes::Bytes;
use meta::{AuditQuery, AuditRecord, Meta, WebhookCursor, WebhookFailure};
use oci::RepoName;

use crate::now_ms;

/// The kinds of events, by the name used in the configuration.
pub const EVENT_KINDS: [&str; 4] = ["pushed", "inspected", "blocked", "unblocked"];

/// The header carrying `sha256=<hex HMAC-SHA256 of the body>`.
pub const SIGNATURE_HEADER: &str = "x-customs-signature-256";

#[derive(Clone, Debug)]
pub struct Webhook {
    /// Names its cursor: renaming a webhook starts it afresh.
    pub name: String,
    pub url: String,
    /// The HMAC key; `None`: unsigned.
    pub secret: Option<Vec<u8>>,
    /// Of [`EVENT_KINDS`]; all when empty.
    pub events: Vec<String>,
    /// Only images in these repositories; all when `None`.
    pub repositories: Option<RepoGlob>,
    /// The CloudEvents `source` of its events.
    pub source: String,
    /// Attempts at one event before it is given up.
    pub max_attempts: u32,
    /// The first retry's delay; doubled each time, at most [`WebhookSettings::max_backoff`].
    pub backoff: Duration,
}

#[derive(Clone, Debug)]
pub struct WebhookSettings {
    pub max_backoff: Duration,
    /// How often to look for new events.
    pub poll: Duration,
}

/// One event of an audit entry.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub kind: &'static str,
    pub repo: RepoName,
    /// `repo@digest`.
    pub subject: String,
    pub data: serde_json::Value,
}

/// The events an audit entry stands for: a manifest push is `pushed`; a repository's first
/// verdict on an image is `inspected` (and `blocked` if it refuses it); a later verdict that
/// refuses an image served until then is `blocked`, one that serves an image refused until then
/// `unblocked`.
pub fn events_of(record: &AuditRecord) -> Vec<Event> {
    let e = &record.entry;
    let Some((repo_part, digest)) = e.target.rsplit_once('@') else { return Vec::new() };
    let (repo, tag) = match repo_part.rsplit_once(':') {
        // A `:` after the last `/` separates a tag (a registry port cannot occur here).
        Some((r, t)) if !t.contains('/') => (r, Some(t)),
        _ => (repo_part, None),
    };
    let Ok(repo) = repo.parse::<RepoName>() else { return Vec::new() };
    let subject = format!("{repo}@{digest}");
    let event = |kind, data| Event { kind, repo: repo.clone(), subject: subject.clone(), data };
    let detail: serde_json::Value = e.detail.as_deref().and_then(|d| serde_json::from_str(d).ok()).unwrap_or_default();
    let base = serde_json::json!({ "repository": repo.as_str(), "digest": digest });
    let with = |mut v: serde_json::Value, extra: serde_json::Value| {
        if let (Some(o), Some(x)) = (v.as_object_mut(), extra.as_object()) {
            o.extend(x.clone());
        }
        v
    };
    match e.action.as_str() {
        "push" => vec![event("pushed", with(base, serde_json::json!({ "tag": tag, "actor": e.actor })))],
        "gate.allowed" | "gate.blocked" | "gate.audit-failed" => {
            let served = e.action != "gate.blocked";
            let verdict = with(
                base,
                serde_json::json!({
                    "allowed": e.action == "gate.allowed", "served": served,
                    "policy": detail["policy"], "reasons": detail["reasons"], "warnings": detail["warnings"],
                }),
            );
            let mut out = Vec::new();
            let previous = detail["previous"].as_str();
            if previous.is_none() {
                out.push(event("inspected", verdict.clone()));
            }
            match (e.action.as_str(), previous) {
                ("gate.blocked", _) => out.push(event("blocked", verdict)),
                ("gate.allowed", Some("blocked")) => out.push(event("unblocked", verdict)),
                _ => {}
            }
            out
        }
        _ => Vec::new(),
    }
}

/// The CloudEvents 1.0 structured-mode JSON of `event`.
pub fn cloud_event(event: &Event, record: &AuditRecord, source: &str) -> serde_json::Value {
    serde_json::json!({
        "specversion": "1.0",
        "id": format!("{}-{}", record.id, event.kind),
        "source": source,
        "type": format!("dev.customs.image.{}", event.kind),
        "subject": event.subject,
        "time": oci::rfc3339((record.at_ms / 1000) as u64),
        "datacontenttype": "application/json",
        "data": event.data,
    })
}

/// `sha256=<hex>` of `body` under `key`.
pub fn signature(key: &[u8], body: &[u8]) -> String {
    let tag = ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key), body);
    format!("sha256={}", tag.as_ref().iter().map(|b| format!("{b:02x}")).collect::<String>())
}

pub struct WebhookWorker {
    meta: Meta,
    hooks: Vec<Webhook>,
    settings: WebhookSettings,
    poster: remote::Poster,
}

impl WebhookWorker {
    pub fn new(meta: Meta, hooks: Vec<Webhook>, settings: WebhookSettings, poster: remote::Poster) -> WebhookWorker {
        WebhookWorker { meta, hooks, settings, poster }
    }

    /// Delivers until `stop` turns true, while this process leads the deliveries (one replica
    /// sends each event, not each replica).
    pub async fn run(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            if *stop.borrow() {
                return;
            }
            let mut busy = false;
            let leads = self.meta.leads(meta::Task::Webhooks).await;
            for hook in self.hooks.iter().filter(|_| leads) {
                match self.deliver(hook).await {
                    Ok(more) => busy |= more,
                    Err(e) => tracing::warn!(webhook = %hook.name, error = %e, "webhook deliveries stopped"),
                }
            }
            if !busy {
                tokio::select! {
                    _ = tokio::time::sleep(self.settings.poll) => {}
                    _ = stop.changed() => {}
                }
            }
        }
    }

    /// Delivers `hook`'s due events, in order, until one fails or none is left; whether there
    /// may be more right away.
    pub async fn deliver(&self, hook: &Webhook) -> Result<bool, String> {
        let m = |e: meta::Error| e.to_string();
        let mut cursor = match self.meta.webhook_cursor(&hook.name).await.map_err(m)? {
            Some(c) => c,
            None => {
                // A new webhook hears what happens from now on, not the whole history.
                let c = WebhookCursor { after_id: self.meta.audit_head().await.map_err(m)?, ..WebhookCursor::default() };
                self.meta.save_webhook_cursor(&hook.name, &c, None).await.map_err(m)?;
                c
            }
        };
        if cursor.next_at_ms > now_ms() {
            return Ok(false);
        }
        let records = self.meta.audit(&AuditQuery { after_id: cursor.after_id, limit: 100, actor: None, action_prefix: None }).await.map_err(m)?;
        for record in &records {
            let events: Vec<Event> = events_of(record)
                .into_iter()
                .filter(|e| hook.events.is_empty() || hook.events.iter().any(|k| k == e.kind))
                .filter(|e| hook.repositories.as_ref().is_none_or(|g| g.matches(&e.repo)))
                .collect();
            for event in &events {
                if let Err(error) = self.send(hook, event, record).await {
                    cursor.attempts += 1;
                    let gave_up = cursor.attempts >= hook.max_attempts;
                    tracing::warn!(webhook = %hook.name, event = record.id, kind = event.kind, attempts = cursor.attempts, gave_up, %error, "webhook delivery failed");
                    if gave_up {
                        let failure = WebhookFailure { hook: hook.name.clone(), audit_id: record.id, error: error.clone(), at_ms: now_ms() };
                        let past = WebhookCursor { after_id: record.id, ..WebhookCursor::default() };
                        self.meta.save_webhook_cursor(&hook.name, &past, Some(&failure)).await.map_err(m)?;
                        return Ok(true);
                    }
                    let delay = hook.backoff.saturating_mul(1 << (cursor.attempts - 1).min(16)).min(self.settings.max_backoff);
                    cursor.next_at_ms = now_ms() + delay.as_millis() as i64;
                    cursor.last_error = Some(error);
                    self.meta.save_webhook_cursor(&hook.name, &cursor, None).await.map_err(m)?;
                    return Ok(false);
                }
            }
            // Saved after each delivery (a restart does not send it again), and once past entries
            // that were not this webhook's.
            let delivered = !events.is_empty();
            cursor = WebhookCursor { after_id: record.id, ..WebhookCursor::default() };
            if delivered || record.id == records.last().map_or(0, |r| r.id) {
                self.meta.save_webhook_cursor(&hook.name, &cursor, None).await.map_err(m)?;
            }
        }
        Ok(records.len() == 100)
    }

    async fn send(&self, hook: &Webhook, event: &Event, record: &AuditRecord) -> Result<(), String> {
        let body = Bytes::from(cloud_event(event, record, &hook.source).to_string());
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/cloudevents+json"));
        if let Some(key) = &hook.secret {
            headers.insert(SIGNATURE_HEADER, http::HeaderValue::from_str(&signature(key, &body)).map_err(|e| e.to_string())?);
        }
        self.poster.post(&hook.url, &headers, body).await.map(|_| ()).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(action: &str, target: &str, detail: Option<serde_json::Value>) -> AuditRecord {
        AuditRecord {
            id: 7,
            at_ms: 1_795_478_400_000,
            entry: meta::AuditEntry { actor: "ann".into(), action: action.into(), target: target.into(), client: None, detail: detail.map(|d| d.to_string()) },
        }
    }

    #[test]
    fn audit_entries_become_events() {
        let d = "sha256:aaaa";
        let pushed = events_of(&record("push", &format!("team/app:v1@{d}"), None));
        assert_eq!(pushed.len(), 1);
        assert_eq!((pushed[0].kind, pushed[0].subject.as_str()), ("pushed", "team/app@sha256:aaaa"));
        assert_eq!(pushed[0].data["tag"], "v1");
        assert_eq!(events_of(&record("push", &format!("team/app@{d}"), None))[0].data["tag"], serde_json::Value::Null);
        // A first verdict that blocks: inspected and blocked.
        let first = serde_json::json!({ "policy": "paved-road.rego", "reasons": ["secret: x"], "warnings": [], "previous": null });
        let kinds = |r: &AuditRecord| events_of(r).iter().map(|e| e.kind).collect::<Vec<_>>();
        assert_eq!(kinds(&record("gate.blocked", &format!("team/app@{d}"), Some(first.clone()))), ["inspected", "blocked"]);
        assert_eq!(kinds(&record("gate.allowed", &format!("team/app@{d}"), Some(first.clone()))), ["inspected"]);
        let after_block = serde_json::json!({ "policy": "p", "reasons": [], "warnings": [], "previous": "blocked" });
        assert_eq!(kinds(&record("gate.allowed", &format!("team/app@{d}"), Some(after_block))), ["unblocked"]);
        let after_allow = serde_json::json!({ "policy": "p", "reasons": ["r"], "warnings": [], "previous": "allowed" });
        assert_eq!(kinds(&record("gate.blocked", &format!("team/app@{d}"), Some(after_allow))), ["blocked"]);
        // Not events: other actions, targets without a digest.
        assert!(events_of(&record("login", "ann", None)).is_empty());
        assert!(events_of(&record("delete", "team/app:v1", None)).is_empty());
        let e = &events_of(&record("gate.blocked", &format!("team/app@{d}"), Some(first)))[1];
        let ce = cloud_event(e, &record("gate.blocked", "", None), "urn:customs:test");
        assert_eq!((ce["specversion"].as_str(), ce["type"].as_str(), ce["id"].as_str()), (Some("1.0"), Some("dev.customs.image.blocked"), Some("7-blocked")));
        assert_eq!(ce["data"]["reasons"], serde_json::json!(["secret: x"]));
    }

    #[test]
    fn signatures_are_hmac_sha256() {
        // RFC 4231, test case 2.
        assert_eq!(signature(b"Jefe", b"what do ya want for nothing?"), "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }
}

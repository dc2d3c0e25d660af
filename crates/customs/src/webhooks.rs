//! `[[webhooks]]` into the webhook worker: each checked at start, so a typo stops the start with
//! its name rather than losing events.

use std::time::Duration;

use anyhow::{Context, bail};
use meta::Meta;

use crate::config::Config;

/// The worker for the configured webhooks; `None` when there are none.
pub fn worker(config: &Config, meta: Meta) -> anyhow::Result<Option<workers::WebhookWorker>> {
    if config.webhooks.is_empty() {
        return Ok(None);
    }
    let mut hooks = Vec::new();
    let mut ca = Vec::new();
    for (i, w) in config.webhooks.iter().enumerate() {
        let what = if w.name.is_empty() { format!("webhook #{}", i + 1) } else { format!("webhook {:?}", w.name) };
        if w.name.is_empty() || hooks.iter().any(|h: &workers::Webhook| h.name == w.name) {
            bail!("{what}: every webhook needs a name of its own");
        }
        let host = w.url.strip_prefix("https://").or_else(|| w.url.strip_prefix("http://")).map(|rest| rest.split(['/', '?']).next().unwrap_or(""));
        if host.is_none_or(|h| h.is_empty() || h.contains(char::is_whitespace)) {
            bail!("{what}: url {:?} is not an http(s) URL", w.url);
        }
        for e in &w.events {
            if !workers::webhooks::EVENT_KINDS.contains(&e.as_str()) {
                bail!("{what}: unknown event {e:?} (known: {})", workers::webhooks::EVENT_KINDS.join(", "));
            }
        }
        let repositories = if w.repositories.is_empty() {
            None
        } else {
            Some(w.repositories.parse::<auth::RepoGlob>().map_err(|e| anyhow::anyhow!("{what}: repositories {:?}: {e}", w.repositories))?)
        };
        let secret = if w.secret_env.is_empty() {
            None
        } else {
            let key = std::env::var(&w.secret_env).with_context(|| format!("{what}: its key variable {} is not set", w.secret_env))?;
            if key.is_empty() {
                bail!("{what}: its key variable {} is empty", w.secret_env);
            }
            Some(key.into_bytes())
        };
        if !w.ca_file.as_os_str().is_empty() {
            ca.extend(std::fs::read(&w.ca_file).with_context(|| format!("{what}: ca_file {}", w.ca_file.display()))?);
        }
        hooks.push(workers::Webhook {
            name: w.name.clone(),
            url: w.url.clone(),
            secret,
            events: w.events.clone(),
            repositories,
            source: w.source.clone(),
            max_attempts: w.max_attempts.max(1),
            backoff: Duration::from_secs(w.retry_secs.max(1)),
        });
    }
    let settings = workers::WebhookSettings { max_backoff: Duration::from_secs(300), poll: Duration::from_millis(500) };
    let poster = remote::Poster::new((!ca.is_empty()).then_some(&ca[..]), Duration::from_secs(10)).context("webhooks")?;
    Ok(Some(workers::WebhookWorker::new(meta, hooks, settings, poster)))
}

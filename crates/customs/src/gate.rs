//! The gate's rules from `[gate]`: the policy, mode, push mode and signing keys of each namespace.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use registry::{GateRules, Mode, NamespaceRule, PushMode, signatures::TrustedKey};

use crate::config::{Config, GateMode, PushMode as ConfigPush};

/// Loads every policy and key the rules name; any that is missing or invalid stops the start.
pub fn rules(config: &Config) -> anyhow::Result<GateRules> {
    let dir = config.policy_dir();
    let mut policies: HashMap<String, Arc<policy::Policy>> = HashMap::new();
    let mut rule = |repositories: &str, policy: &str, mode: GateMode, push: ConfigPush, keys: &[std::path::PathBuf]| -> anyhow::Result<NamespaceRule> {
        let policy = match policies.get(policy) {
            Some(p) => p.clone(),
            None => {
                let loaded = Arc::new(crate::policy_cmd::load(policy, Some(&dir)).with_context(|| format!("[gate] policy {policy:?}"))?);
                policies.insert(policy.to_owned(), loaded.clone());
                loaded
            }
        };
        Ok(NamespaceRule {
            repositories: repositories.parse().map_err(|e| anyhow::anyhow!("[gate.namespaces] {e}"))?,
            policy,
            mode: match mode {
                GateMode::Enforce => Mode::Enforce,
                GateMode::Audit => Mode::Audit,
            },
            push: match push {
                ConfigPush::Quarantine => PushMode::Quarantine,
                ConfigPush::Reject => PushMode::Reject,
            },
            keys: keys.iter().map(|k| key(k)).collect::<anyhow::Result<_>>()?,
        })
    };
    let g = &config.gate;
    let mut namespaces = Vec::new();
    for n in &g.namespaces {
        namespaces.push(rule(&n.repositories, &n.policy, n.mode, n.push, &n.keys)?);
    }
    let default = rule("**", &g.policy, g.mode, g.push, &g.keys)?;
    Ok(GateRules::new(namespaces, default))
}

fn key(path: &Path) -> anyhow::Result<TrustedKey> {
    let pem = std::fs::read_to_string(path).with_context(|| format!("cannot read signing key {}", path.display()))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    TrustedKey::from_pem(&name, &pem).map_err(anyhow::Error::msg)
}

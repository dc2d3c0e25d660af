//! Judging: an image's evidence — its report, repository, tags, platform and config, signatures,
//! and the findings waived for it — put to the policy its namespace chose. The gate rules say,
//! per repository glob (first match wins), which policy judges, whether its verdict is enforced
//! or only recorded (`audit`), what a push that fails does (`quarantine` or `reject`), and which
//! keys sign.

use std::sync::Arc;

use auth::RepoGlob;
use meta::{ReportIndex, StoredReport, Verdict, Waiver};
use oci::{Digest, Reference, RepoName};

use crate::signatures::{self, TrustedKey};
use crate::{Error, Registry, Result};

/// Whether a namespace's verdicts are enforced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// A failing image is not served.
    Enforce,
    /// Verdicts are recorded and reported; everything is served.
    Audit,
}

/// What a push whose image fails does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushMode {
    /// The push is kept, its pulls refused.
    Quarantine,
    /// The manifest PUT waits for the verdict (within the gate's budget) and is refused with
    /// DENIED when it fails; the manifest is not kept.
    Reject,
}

/// The rule of the repositories one glob names.
#[derive(Clone, Debug)]
pub struct NamespaceRule {
    pub repositories: RepoGlob,
    pub policy: Arc<policy::Policy>,
    pub mode: Mode,
    pub push: PushMode,
    /// Keys whose cosign signatures count as verified.
    pub keys: Vec<TrustedKey>,
}

impl NamespaceRule {
    /// Every repository, judged by `policy`, enforced, quarantined, no keys.
    pub fn everything(policy: Arc<policy::Policy>) -> NamespaceRule {
        NamespaceRule { repositories: RepoGlob::everything(), policy, mode: Mode::Enforce, push: PushMode::Quarantine, keys: Vec::new() }
    }
}

/// The gate's rules, in order; the last is the default for every repository.
#[derive(Clone, Debug)]
pub struct GateRules {
    rules: Vec<NamespaceRule>,
    fingerprint: String,
}

impl GateRules {
    /// `rules` in order of precedence, then `default` for the rest.
    pub fn new(mut rules: Vec<NamespaceRule>, default: NamespaceRule) -> GateRules {
        rules.push(NamespaceRule { repositories: RepoGlob::everything(), ..default });
        let mut all = String::new();
        for r in &rules {
            all.push_str(&format!("{}\0{}\0{}\0{:?}\0{:?}\0", r.repositories.as_str(), r.policy.name(), r.policy.source(), r.mode, r.push));
            for k in &r.keys {
                all.push_str(&k.fingerprint());
            }
            all.push('\x01');
        }
        GateRules { rules, fingerprint: Digest::sha256_of(all.as_bytes()).to_string() }
    }

    /// The shipped paved-road policy for every repository.
    pub fn paved_road() -> GateRules {
        GateRules::new(Vec::new(), NamespaceRule::everything(Arc::new(policy::Policy::paved_road())))
    }

    pub fn rule_for(&self, repo: &RepoName) -> &NamespaceRule {
        self.rules.iter().find(|r| r.repositories.matches(repo)).unwrap_or_else(|| self.rules.last().expect("a default rule"))
    }

    /// Changes whenever a policy, mode or key does: stored verdicts are then judged again.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
}

/// What verdicts are judged on: changes of any part mean "judge again".
#[derive(Clone, Debug)]
pub struct Basis {
    pub db_version: String,
    /// The waivers in force.
    pub waivers: Vec<Waiver>,
    /// `RULES/DB`: a digest of the gate rules and waivers, and one of the advisory DB version.
    pub fingerprint: String,
}

impl Basis {
    /// Whether a verdict judged on `old` differs from this basis in the advisory DB alone: then,
    /// if the DB changed nothing in its image's matches, it stands as it is.
    pub fn only_db_changed(&self, old: &str) -> bool {
        let rules = |f: &str| f.split_once('/').map(|(rules, _)| rules.to_owned());
        old != self.fingerprint && rules(old).is_some() && rules(old) == rules(&self.fingerprint)
    }
}

/// The rows queries read, from a report.
pub fn index(report: &serde_json::Value) -> ReportIndex {
    let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    let mut index = ReportIndex { components: Some(Vec::new()), vulnerabilities: Vec::new() };
    for p in report["packages"].as_array().into_iter().flatten() {
        index.components.get_or_insert_default().push(meta::Component {
            ecosystem: s(&p["ecosystem"]),
            name: s(&p["name"]),
            version: s(&p["version"]),
            purl: s(&p["purl"]),
            layer: p["layer"].as_str().map(str::to_owned),
        });
    }
    for v in report["vulnerabilities"].as_array().into_iter().flatten() {
        let canonical = s(&v["id"]);
        let aliases = v["aliases"].as_array().into_iter().flatten().filter_map(|a| a.as_str()).map(str::to_owned);
        for id in std::iter::once(canonical.clone()).chain(aliases) {
            index.vulnerabilities.push(meta::ImageVulnerability {
                id,
                canonical: canonical.clone(),
                package: s(&v["package"]),
                version: s(&v["installed_version"]),
                severity: s(&v["severity"]),
                fixed: v["fixed_version"].as_str().map(str::to_owned),
            });
        }
    }
    index
}

/// The audit entry of a verdict that is new or changed; `None` when it did not change.
fn verdict_audit(verdict: &Verdict, old: Option<&Verdict>) -> Option<meta::AuditEntry> {
    let changed = old.is_none_or(|o| o.serves() != verdict.serves() || o.allowed != verdict.allowed);
    if !changed {
        return None;
    }
    let action = match (verdict.allowed, verdict.enforced) {
        (true, _) => "gate.allowed",
        (false, true) => "gate.blocked",
        (false, false) => "gate.audit-failed",
    };
    let detail = serde_json::json!({
        "policy": verdict.policy, "reasons": verdict.reasons, "warnings": verdict.warnings,
        "previous": old.map(|o| if o.allowed { "allowed" } else { "blocked" }),
    });
    Some(meta::AuditEntry {
        actor: "customs".into(),
        action: action.into(),
        target: format!("{}@{}", verdict.repo, verdict.digest),
        client: None,
        detail: Some(detail.to_string()),
    })
}

/// Moves the findings a waiver covers out of the evidence into `waived`.
fn apply_waivers(evidence: &mut serde_json::Value, repo: &RepoName, waivers: &[Waiver]) {
    let applicable: Vec<&Waiver> =
        waivers.iter().filter(|w| w.repositories.parse::<RepoGlob>().is_ok_and(|g| g.matches(repo))).collect();
    let mut waived = Vec::new();
    let mut sift = |kind: &str, keys: &dyn Fn(&serde_json::Value) -> Vec<String>| {
        let Some(list) = evidence[kind].as_array_mut() else { return };
        list.retain(|finding| {
            let ids = keys(finding);
            match applicable.iter().find(|w| ids.contains(&w.finding)) {
                Some(w) => {
                    waived.push(serde_json::json!({
                        "kind": kind, "finding": w.finding, "reason": w.reason,
                        "expires": oci::rfc3339((w.expires_at_ms / 1000).max(0) as u64), "by": w.created_by,
                    }));
                    false
                }
                None => true,
            }
        });
    };
    let strings = |v: &serde_json::Value| v.as_str().map(str::to_owned);
    sift("vulnerabilities", &|f| {
        let aliases = f["aliases"].as_array().into_iter().flatten().filter_map(strings);
        strings(&f["id"]).into_iter().chain(aliases).collect()
    });
    sift("secrets", &|f| strings(&f["fingerprint"]).into_iter().collect());
    sift("misconfigurations", &|f| strings(&f["id"]).into_iter().collect());
    evidence["waived"] = serde_json::Value::Array(waived);
}

/// Each signature's evidence entry.
pub(crate) fn signature_entries(found: &[signatures::Checked]) -> serde_json::Value {
    serde_json::Value::Array(
        found
            .iter()
            .map(|s| serde_json::json!({ "verified": s.key.is_some(), "key": s.key, "source": s.source, "error": s.error }))
            .collect(),
    )
}

impl Registry {
    /// The gate's rules (the paved road everywhere when none were configured).
    pub fn gate_rules(&self) -> &GateRules {
        &self.gate_rules
    }

    /// The basis verdicts are judged on now, given the advisory DB version in use.
    pub async fn basis(&self, db_version: &str, now_ms: i64) -> Result<Basis> {
        let waivers: Vec<Waiver> = self.meta.waivers().await?.into_iter().filter(|w| w.expires_at_ms > now_ms).collect();
        let mut rules = self.gate_rules.fingerprint().to_owned();
        for w in &waivers {
            rules.push_str(&format!("\0{}\0{}\0{}\0{}", w.id, w.finding, w.repositories, w.expires_at_ms));
        }
        let short = |s: &str| Digest::sha256_of(s.as_bytes()).hex()[..32].to_owned();
        let fingerprint = format!("{}/{}", short(&rules), short(db_version));
        Ok(Basis { db_version: db_version.to_owned(), waivers, fingerprint })
    }

    /// Judges the image `digest` of `repo` on its `report` (the `customs.report/v1` JSON).
    pub async fn judge(&self, repo: &RepoName, digest: &Digest, report: &serde_json::Value, basis: &Basis, now_ms: i64) -> Result<Verdict> {
        let rule = self.gate_rules.rule_for(repo);
        let mut evidence = report.clone();
        evidence["repository"] = serde_json::json!(repo.as_str());
        evidence["digest"] = serde_json::json!(digest.to_string());
        evidence["tags"] = serde_json::json!(self.meta.tags_of(repo, digest).await?);
        let config = self.image_config(repo, digest).await.unwrap_or_default();
        evidence["platform"] = serde_json::json!({
            "os": config["os"], "architecture": config["architecture"], "variant": config["variant"],
        });
        evidence["age_days"] = match config["created"].as_str().and_then(oci::parse_rfc3339) {
            Some(created) => serde_json::json!(((now_ms / 1000) as u64).saturating_sub(created) / 86_400),
            None => serde_json::Value::Null,
        };
        evidence["config"] = config;
        let found = signatures::find(self, repo, digest, &rule.keys).await?;
        evidence["signatures"] = signature_entries(&found);
        let pushed_by = self.meta.pushed_by(repo, digest).await?;
        let upstream = pushed_by.as_deref().and_then(|p| p.strip_prefix(crate::manifests::MIRRORED_BY));
        evidence["upstream"] = serde_json::json!(upstream);
        evidence["pushed_by"] = serde_json::json!(pushed_by);
        apply_waivers(&mut evidence, repo, &basis.waivers);
        // Evaluating is CPU work of a millisecond or more: off the async threads, which go on
        // serving requests (and driving the writes of a re-judging round) meanwhile.
        let policy = rule.policy.clone();
        let decision = tokio::task::spawn_blocking(move || policy.evaluate(&evidence))
            .await
            .unwrap_or_else(|e| Err(e.to_string()))
            .map_err(|e| Error::Unavailable(format!("policy {}: {e}", rule.policy.name())))?;
        Ok(Verdict {
            repo: repo.clone(),
            digest: digest.clone(),
            allowed: decision.allow,
            enforced: rule.mode == Mode::Enforce,
            policy: rule.policy.name().to_owned(),
            reasons: decision.deny,
            warnings: decision.warn,
            basis: basis.fingerprint.clone(),
            judged_at_ms: now_ms,
        })
    }

    /// Appends to the audit log (what webhooks are fed from) with authentication off; see
    /// [`crate::Access::audit`] for when it is on.
    pub async fn audit(&self, actor: crate::Actor<'_>, action: &str, target: &str, detail: Option<&str>) {
        crate::access::append_audit(&self.meta, &crate::access::entry(&actor, action, target, detail)).await;
    }

    /// Stores a verdict (with its report when new). A first verdict and every change of one is
    /// written to the audit log; remembered "servable" answers are dropped.
    pub async fn record_verdict(&self, report: Option<(&StoredReport, &ReportIndex)>, verdict: &Verdict) -> Result<Option<Verdict>> {
        let old = self.meta.record_verdict(report, verdict).await?;
        if let Some(entry) = verdict_audit(verdict, old.as_ref()) {
            crate::access::append_audit(&self.meta, &entry).await;
            self.forget_verdicts();
        }
        Ok(old)
    }

    /// Stores what judging again decided (`olds`: the verdict each judged one replaces) and the
    /// audit entries of the verdicts that changed, in one transaction.
    pub async fn record_verdicts(&self, batch: meta::VerdictBatch<'_>, olds: &[&Verdict]) -> Result<()> {
        let audit: Vec<meta::AuditEntry> = batch.judged.iter().zip(olds).filter_map(|(w, old)| verdict_audit(w.verdict, Some(old))).collect();
        self.meta.record_verdicts(&meta::VerdictBatch { audit: &audit, ..batch }).await?;
        if !audit.is_empty() {
            self.forget_verdicts();
        }
        Ok(())
    }

    /// The image config of manifest `digest`, at most 8 MiB; `Null` for anything else.
    async fn image_config(&self, repo: &RepoName, digest: &Digest) -> Result<serde_json::Value> {
        let content = self.get_manifest(repo, &Reference::Digest(digest.clone())).await?;
        let manifest = oci::Manifest::parse(Some(&content.media_type), &content.bytes).map_err(|e| Error::ManifestInvalid(e.to_string()))?;
        let Some(config) = manifest.config else { return Ok(serde_json::Value::Null) };
        let bytes = self.read_small_blob(repo, &config.digest, 8 << 20).await?;
        Ok(serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
    }

    /// A whole blob of at most `limit` bytes.
    pub(crate) async fn read_small_blob(&self, repo: &RepoName, digest: &Digest, limit: u64) -> Result<Vec<u8>> {
        use futures::StreamExt;
        let read = self.get_blob(repo, digest, None).await?;
        if read.size > limit {
            return Err(Error::Unavailable(format!("blob {digest} is larger than {limit} bytes")));
        }
        let blobs::BlobBody::Stream { mut stream, .. } = read.body else {
            return Err(Error::Unavailable(format!("blob {digest} is only reachable by redirect")));
        };
        let mut out = Vec::with_capacity(read.size as usize);
        while let Some(chunk) = stream.next().await {
            out.extend_from_slice(&chunk.map_err(|e| Error::Unavailable(e.to_string()))?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiver(finding: &str, repositories: &str) -> Waiver {
        Waiver { id: 1, finding: finding.into(), repositories: repositories.into(), reason: "accepted".into(), expires_at_ms: 2_000_000_000_000, created_at_ms: 0, created_by: "ann".into() }
    }

    #[test]
    fn waivers_set_aside_findings_by_any_id_in_their_repositories_only() {
        let evidence = serde_json::json!({
            "vulnerabilities": [{"id": "CVE-1", "aliases": ["GHSA-x"]}, {"id": "CVE-2", "aliases": []}],
            "secrets": [{"rule": "private-key-rsa", "fingerprint": "sha256:f"}],
            "misconfigurations": [{"id": "root-user"}],
            "malware": [{"rule": "EICAR"}],
        });
        let repo: RepoName = "team/app".parse().unwrap();
        let mut e = evidence.clone();
        apply_waivers(&mut e, &repo, &[waiver("GHSA-x", "team/*"), waiver("sha256:f", "**"), waiver("root-user", "other/**"), waiver("EICAR", "**")]);
        assert_eq!(e["vulnerabilities"], serde_json::json!([{"id": "CVE-2", "aliases": []}]));
        assert_eq!(e["secrets"], serde_json::json!([]));
        assert_eq!(e["misconfigurations"].as_array().unwrap().len(), 1, "another namespace's waiver");
        assert_eq!(e["malware"].as_array().unwrap().len(), 1, "malware is never waived");
        let waived: Vec<&str> = e["waived"].as_array().unwrap().iter().map(|w| w["finding"].as_str().unwrap()).collect();
        assert_eq!(waived, ["GHSA-x", "sha256:f"]);
    }

    #[test]
    fn the_index_holds_every_id_of_a_vulnerability() {
        let report = serde_json::json!({
            "packages": [{"ecosystem": "maven", "name": "log4j-core", "version": "2.14.1", "purl": "pkg:maven/a/log4j-core@2.14.1", "layer": null}],
            "vulnerabilities": [{"id": "CVE-2021-44228", "aliases": ["GHSA-jfh8-c2jp-5v3q"], "package": "log4j-core", "installed_version": "2.14.1", "severity": "CRITICAL", "fixed_version": "2.15.0"}],
        });
        let i = index(&report);
        assert_eq!(i.components.map(|c| c.len()), Some(1));
        let ids: Vec<(&str, &str)> = i.vulnerabilities.iter().map(|v| (v.id.as_str(), v.canonical.as_str())).collect();
        assert_eq!(ids, [("CVE-2021-44228", "CVE-2021-44228"), ("GHSA-jfh8-c2jp-5v3q", "CVE-2021-44228")]);
    }

    #[test]
    fn the_first_matching_namespace_rule_decides_and_the_default_takes_the_rest() {
        let strict = Arc::new(policy::Policy::new("strict.rego", "package customs\ndeny contains \"no\" if true").unwrap());
        let rules = GateRules::new(
            vec![NamespaceRule { repositories: "prod/**".parse().unwrap(), mode: Mode::Enforce, push: PushMode::Reject, ..NamespaceRule::everything(strict) }],
            NamespaceRule { mode: Mode::Audit, ..NamespaceRule::everything(Arc::new(policy::Policy::paved_road())) },
        );
        let rule = |r: &str| rules.rule_for(&r.parse().unwrap()).clone();
        assert_eq!((rule("prod/api").policy.name().to_owned(), rule("prod/api").push), ("strict.rego".to_owned(), PushMode::Reject));
        assert_eq!((rule("dev/api").policy.name().to_owned(), rule("dev/api").mode), ("paved-road.rego".to_owned(), Mode::Audit));
        assert_ne!(rules.fingerprint(), GateRules::paved_road().fingerprint());
    }
}

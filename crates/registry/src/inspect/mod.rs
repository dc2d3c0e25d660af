//! Inspection results: what the scanner found in an image, matched against the advisory DB, as
//! the report customs prints, stores and serves. The JSON form is a stable contract
//! (docs/report.md); CycloneDX, SPDX and SARIF are written from the same report.

mod cyclonedx;
mod sarif;
mod spdx;
mod table;

use advisories::{Db, Rating};
use scanner::malware::MalwareFinding;
use scanner::misconfig::Misconfiguration;
use scanner::secrets::{SecretFinding, Severity as FindingSeverity};
use scanner::{Inventory, Os, Package, Problem};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

pub use advisories::Rating as Severity;

/// The report format's identifier; bumped only for incompatible changes.
pub const SCHEMA: &str = "customs.report/v1";

/// What was scanned.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Target {
    /// `registry`, `oci-layout`, `docker-archive` or `rootfs`.
    pub kind: Cow<'static, str>,
    /// The reference or path as given.
    pub name: String,
    /// The manifest digest, when the target has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

/// The advisory DB a report was matched against.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DbInfo {
    pub version: String,
    pub updated_at: String,
}

/// One vulnerability of one installed package.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Finding {
    pub id: String,
    pub aliases: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub related: Vec<String>,
    pub package: String,
    pub ecosystem: String,
    pub purl: String,
    pub installed_version: String,
    /// `None` (JSON `null`): no fix yet.
    pub fixed_version: Option<String>,
    pub severity: Rating,
    /// The CVSS base score, when a vector was there to compute it from.
    pub cvss_score: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cvss_vector: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub title: String,
    pub layer: Option<String>,
    pub path: String,
}

/// A scan's whole result; read back from its JSON (a stored report) too.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub schema: Cow<'static, str>,
    pub target: Target,
    pub scanned_at: String,
    pub db: Option<DbInfo>,
    pub os: Option<Os>,
    pub layers: Vec<String>,
    pub packages: Vec<Package>,
    pub vulnerabilities: Vec<Finding>,
    pub problems: Vec<Problem>,
    /// Empty (not absent) when their scanner was not run.
    pub secrets: Vec<SecretFinding>,
    pub malware: Vec<MalwareFinding>,
    pub misconfigurations: Vec<Misconfiguration>,
}

/// A finding's severity on the vulnerability scale; INFO has no place there.
pub fn rating_of(s: FindingSeverity) -> Option<Rating> {
    match s {
        FindingSeverity::Info => None,
        FindingSeverity::Low => Some(Rating::Low),
        FindingSeverity::Medium => Some(Rating::Medium),
        FindingSeverity::High => Some(Rating::High),
        FindingSeverity::Critical => Some(Rating::Critical),
    }
}

/// Matches an inventory against the DB (when there is one) into a report.
pub fn report(inventory: Inventory, db: Option<&Db>, target: Target, now_secs: u64) -> Report {
    let vulnerabilities = db.map(|db| match_packages(&inventory.packages, inventory.os.as_ref(), db)).unwrap_or_default();
    Report {
        schema: SCHEMA.into(),
        target,
        scanned_at: oci::rfc3339(now_secs),
        db: db.map(db_info),
        os: inventory.os,
        layers: inventory.layers,
        packages: inventory.packages,
        vulnerabilities,
        problems: inventory.problems,
        secrets: inventory.secrets,
        malware: inventory.malware,
        misconfigurations: inventory.misconfigurations,
    }
}

fn db_info(d: &Db) -> DbInfo {
    DbInfo { version: d.version().to_owned(), updated_at: oci::rfc3339(d.updated_at()) }
}

/// The vulnerabilities of `packages`, most severe first.
pub fn match_packages(packages: &[Package], os: Option<&Os>, db: &Db) -> Vec<Finding> {
    Matcher::new(db).vulnerabilities(packages, os)
}

/// Matches packages against one DB, remembering each question's answer: stored images share most
/// of their packages, so matching many of them again asks each question once. The memory is
/// bounded: past [`Matcher::MAX_ANSWERS`] answers it starts over.
pub struct Matcher<'a> {
    db: &'a Db,
    answers: std::collections::HashMap<(String, String, String), Vec<advisories::Vulnerability>>,
}

impl<'a> Matcher<'a> {
    pub const MAX_ANSWERS: usize = 200_000;

    pub fn new(db: &'a Db) -> Matcher<'a> {
        Matcher { db, answers: std::collections::HashMap::new() }
    }

    pub fn db(&self) -> &'a Db {
        self.db
    }

    /// The vulnerabilities of `packages`, most severe first.
    pub fn vulnerabilities(&mut self, packages: &[Package], os: Option<&Os>) -> Vec<Finding> {
        let mut vulnerabilities = Vec::new();
        for p in packages {
            let mut seen = std::collections::BTreeSet::new();
            for query in p.advisory_queries(os) {
                if !self.answers.contains_key(&query) {
                    if self.answers.len() >= Self::MAX_ANSWERS {
                        self.answers.clear();
                    }
                    let answer = self.db.vulnerabilities(&query.0, &query.1, &query.2);
                    self.answers.insert(query.clone(), answer);
                }
                for v in &self.answers[&query] {
                    if !seen.insert(v.id.clone()) {
                        continue;
                    }
                    let sev = v.severity.as_ref();
                    vulnerabilities.push(Finding {
                        id: v.id.clone(),
                        aliases: v.aliases.clone(),
                        related: v.related.clone(),
                        package: p.name.clone(),
                        ecosystem: query.0.clone(),
                        purl: p.purl.clone(),
                        installed_version: p.version.clone(),
                        fixed_version: v.fixed_version.clone(),
                        severity: sev.map_or(Rating::Unknown, |s| s.rating),
                        cvss_score: sev.and_then(|s| s.score),
                        cvss_vector: sev.and_then(|s| s.vector.clone()),
                        title: v.summary.clone(),
                        layer: p.layer.clone(),
                        path: p.path.clone(),
                    });
                }
            }
        }
        vulnerabilities.sort_by(|a, b| b.severity.cmp(&a.severity).then_with(|| a.id.cmp(&b.id)).then_with(|| a.purl.cmp(&b.purl)));
        vulnerabilities
    }

    /// The `db` of a report matched here.
    pub fn db_info(&self) -> serde_json::Value {
        serde_json::to_value(db_info(self.db)).expect("serializes")
    }
}

/// Whether matching `packages` asks the DB about a package `changes` touches: if not, they match
/// against the new DB exactly as against the one the changes are from.
pub fn touched(packages: &[Package], os: Option<&Os>, changes: &advisories::Changes) -> bool {
    packages.iter().any(|p| p.advisory_queries(os).iter().any(|(ecosystem, name, _)| changes.touches(ecosystem, name)))
}

/// What matching reads of a stored report: its packages and OS.
#[derive(serde::Deserialize)]
pub struct StoredInventory {
    #[serde(default)]
    pub packages: Vec<Package>,
    #[serde(default)]
    pub os: Option<Os>,
}

impl StoredInventory {
    /// Reads the packages and OS of a stored report (or its facts), skipping everything else.
    pub fn parse(report_json: &str) -> Result<StoredInventory, String> {
        serde_json::from_str(report_json).map_err(|e| format!("stored report: {e}"))
    }
}

impl Report {
    /// Keeps only findings of the given severities (all kinds), and (when asked) only
    /// vulnerabilities with a fix.
    pub fn filter(&mut self, severities: &[Rating], ignore_unfixed: bool) {
        self.vulnerabilities.retain(|v| (severities.is_empty() || severities.contains(&v.severity)) && !(ignore_unfixed && v.fixed_version.is_none()));
        let keep = |s: FindingSeverity| severities.is_empty() || rating_of(s).is_some_and(|r| severities.contains(&r));
        self.secrets.retain(|f| keep(f.severity));
        self.malware.retain(|f| keep(f.severity));
        self.misconfigurations.retain(|f| keep(f.severity));
    }

    /// Findings that fail a CI gate: every vulnerability, secret and malware finding, and
    /// misconfigurations above INFO.
    pub fn gating_findings(&self) -> usize {
        self.vulnerabilities.len()
            + self.secrets.len()
            + self.malware.len()
            + self.misconfigurations.iter().filter(|m| m.severity > FindingSeverity::Info).count()
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("a report serializes")
    }

    pub fn to_cyclonedx(&self, serial: &str) -> serde_json::Value {
        cyclonedx::bom(self, serial)
    }

    pub fn to_spdx(&self, namespace_id: &str) -> serde_json::Value {
        spdx::document(self, namespace_id)
    }

    pub fn to_sarif(&self) -> serde_json::Value {
        sarif::log(self)
    }

    /// The table for people: a summary, then findings grouped by severity, then problems.
    pub fn to_table(&self) -> String {
        table::render(self)
    }

    /// Counts by severity, highest first.
    pub fn counts(&self) -> Vec<(Rating, usize)> {
        let mut out = Vec::new();
        for r in [Rating::Critical, Rating::High, Rating::Medium, Rating::Low, Rating::Unknown] {
            let n = self.vulnerabilities.iter().filter(|v| v.severity == r).count();
            if n > 0 {
                out.push((r, n));
            }
        }
        out
    }
}

/// One line per secret, malware and misconfiguration finding, for formats that carry them as
/// annotations (CycloneDX, SPDX). Secrets stay redacted.
pub(crate) fn finding_lines(r: &Report) -> Vec<String> {
    let mut out = Vec::new();
    for f in &r.secrets {
        let line = f.line.map(|l| format!(":{l}")).unwrap_or_default();
        out.push(format!("secret {} [{}] {}{line}: {} ({}), fingerprint {}", f.rule, f.severity.as_str(), f.path, f.title, f.redacted, f.fingerprint));
    }
    for f in &r.malware {
        out.push(format!("malware {} [{}] {}: {} (engine {})", f.rule, f.severity.as_str(), f.path, f.description, f.engine));
    }
    for f in &r.misconfigurations {
        out.push(format!("misconfiguration {} [{}]: {}: {}. Fix: {}", f.id, f.severity.as_str(), f.title, f.detail, f.fix));
    }
    out
}

pub(crate) const TOOL: &str = "customs";
pub(crate) const TOOL_VERSION: &str = env!("CARGO_PKG_VERSION");

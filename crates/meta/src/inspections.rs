//! The records of the gate: the inspection queue, each image's report (by digest: the same bytes
//! have the same facts everywhere), each repository's verdict on it, the components and
//! vulnerabilities that queries look up, and waivers.

use oci::{Digest, RepoName};

use crate::Result;

/// One inspection to do.
#[derive(Clone, Debug, PartialEq)]
pub struct InspectionJob {
    pub id: i64,
    pub repo: RepoName,
    pub digest: Digest,
    /// Including this one.
    pub attempts: u32,
}

/// Where an image's inspection stands.
#[derive(Clone, Debug, PartialEq)]
pub enum InspectionState {
    Queued,
    Running,
    Done,
    Failed(String),
}

/// An inspection's result, stored once per manifest digest, in two parts: what the layers showed
/// (written once) and what the advisory DB said of it (written again when a newer DB says
/// something else).
#[derive(Clone, Debug, PartialEq)]
pub struct StoredReport {
    pub digest: Digest,
    /// The `customs.report/v1` JSON without `db` and `vulnerabilities`.
    pub facts: String,
    pub matches: Matches,
    pub inspected_at_ms: i64,
    pub millis: i64,
}

/// A report's matches against one advisory DB.
#[derive(Clone, Debug, PartialEq)]
pub struct Matches {
    /// The advisory DB version (empty: none).
    pub db_version: String,
    /// The report's `db` (a JSON object, or `null`).
    pub db: String,
    /// The report's `vulnerabilities` (a JSON array).
    pub vulnerabilities: String,
    /// The sha256 of `vulnerabilities`: whether a new match changed anything, without reading them.
    pub digest: String,
}

impl Matches {
    /// `db`: the report's `db` as JSON text.
    pub fn new(db_version: &str, db: String, vulnerabilities: String) -> Matches {
        Matches { db_version: db_version.to_owned(), db, digest: Digest::sha256_of(vulnerabilities.as_bytes()).to_string(), vulnerabilities }
    }
}

impl StoredReport {
    /// Splits a `customs.report/v1` JSON into what is stored.
    pub fn from_report(digest: &Digest, report: &serde_json::Value, db_version: &str, inspected_at_ms: i64, millis: i64) -> StoredReport {
        let mut facts = report.clone();
        let (mut db, mut vulnerabilities) = (serde_json::Value::Null, serde_json::Value::Array(Vec::new()));
        if let Some(o) = facts.as_object_mut() {
            db = o.remove("db").unwrap_or_default();
            vulnerabilities = o.remove("vulnerabilities").unwrap_or(vulnerabilities);
        }
        StoredReport {
            digest: digest.clone(),
            facts: facts.to_string(),
            matches: Matches::new(db_version, db.to_string(), vulnerabilities.to_string()),
            inspected_at_ms,
            millis,
        }
    }

    /// The whole `customs.report/v1` JSON.
    pub fn to_json(&self) -> std::result::Result<serde_json::Value, String> {
        let broken = |e: serde_json::Error| format!("stored report of {}: {e}", self.digest);
        let mut report: serde_json::Value = serde_json::from_str(&self.facts).map_err(broken)?;
        report["db"] = serde_json::from_str(&self.matches.db).map_err(broken)?;
        report["vulnerabilities"] = serde_json::from_str(&self.matches.vulnerabilities).map_err(broken)?;
        Ok(report)
    }
}

/// What re-matching reads of a stored report: its facts and which matches it holds, not the
/// matches themselves.
#[derive(Clone, Debug, PartialEq)]
pub struct ReportFacts {
    pub digest: Digest,
    pub facts: String,
    pub db_version: String,
    /// [`Matches::digest`].
    pub matches_digest: String,
    pub inspected_at_ms: i64,
    pub millis: i64,
}

/// A report's rows for queries, written with it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReportIndex {
    /// `None`: unchanged (a report matched again against a newer DB has the same packages).
    pub components: Option<Vec<Component>>,
    pub vulnerabilities: Vec<ImageVulnerability>,
}

/// One package of an image.
#[derive(Clone, Debug, PartialEq)]
pub struct Component {
    pub ecosystem: String,
    pub name: String,
    pub version: String,
    pub purl: String,
    pub layer: Option<String>,
}

/// One vulnerability of an image, under one of its ids.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageVulnerability {
    /// The id this row is found by: the CVE, or one of its aliases.
    pub id: String,
    /// The id the report names it by.
    pub canonical: String,
    pub package: String,
    pub version: String,
    pub severity: String,
    pub fixed: Option<String>,
}

/// A repository's judgement of one image.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub repo: RepoName,
    pub digest: Digest,
    /// What the policy decided.
    pub allowed: bool,
    /// `false` in audit mode: recorded and reported, never refused.
    pub enforced: bool,
    pub policy: String,
    pub reasons: Vec<String>,
    pub warnings: Vec<String>,
    /// The fingerprint of what it was judged on; another basis means "judge again".
    pub basis: String,
    pub judged_at_ms: i64,
}

impl Verdict {
    /// Whether the gate serves the image.
    pub fn serves(&self) -> bool {
        self.allowed || !self.enforced
    }
}

/// One verdict to store, with the report (and its rows) it was judged on when that is new.
#[derive(Clone, Copy, Debug)]
pub struct VerdictWrite<'a> {
    pub report: Option<(&'a StoredReport, &'a ReportIndex)>,
    pub verdict: &'a Verdict,
}

/// The outcome of judging stored images again, written in one transaction.
#[derive(Clone, Copy, Debug)]
pub struct VerdictBatch<'a> {
    /// Verdicts judged anew, each with its report when that was matched again with new results.
    pub judged: &'a [VerdictWrite<'a>],
    /// Verdicts that stand on `basis` as they are: only the advisory DB changed, and it changed
    /// nothing in their image's matches.
    pub carried: &'a [(&'a RepoName, &'a Digest)],
    pub basis: &'a str,
    /// Reports matched again with the same vulnerabilities: only their DB stamp changes.
    pub restamped: &'a [&'a Digest],
    /// The stamp: [`Matches::db_version`] and [`Matches::db`].
    pub db_version: &'a str,
    pub db: &'a str,
    pub audit: &'a [crate::AuditEntry],
}

/// What the gate says about pulling an image.
#[derive(Clone, Debug, PartialEq)]
pub enum GateState {
    /// Not an image that is inspected (an artifact, an index of artifacts), or stored before
    /// inspection existed.
    Unjudged,
    Pending,
    Allowed,
    Blocked { policy: String, reasons: Vec<String> },
    /// Inspection gave up; the error says why.
    Failed(String),
}

/// The inspection queue, reports and verdicts. Jobs are leased: one whose lease expires (its
/// worker died) is taken again.
#[async_trait::async_trait]
pub trait Inspections: Send + Sync {
    /// Leases the oldest due job (queued and due, or running past its lease) until `now + lease`.
    async fn claim_inspection(&self, now_ms: i64, lease_ms: i64) -> Result<Option<InspectionJob>>;
    /// Stores the verdict (with a new or re-matched report and its rows, when given) and marks
    /// the job of its repository and digest done, in one transaction. Returns the verdict it
    /// replaced.
    async fn record_verdict(&self, report: Option<(&StoredReport, &ReportIndex)>, verdict: &Verdict) -> Result<Option<Verdict>>;
    /// Stores what judging again decided, in one transaction: how stored images are judged again
    /// in bulk.
    async fn record_verdicts(&self, batch: &VerdictBatch<'_>) -> Result<()>;
    /// Records a failure: due again at `retry_at_ms`, or failed for good when `None`.
    async fn fail_inspection(&self, job: i64, error: &str, retry_at_ms: Option<i64>) -> Result<()>;
    async fn inspection_report(&self, digest: &Digest) -> Result<Option<StoredReport>>;
    /// The facts of the stored reports of `digests` (those that have one), for matching again.
    async fn report_facts(&self, digests: &[Digest]) -> Result<Vec<ReportFacts>>;
    async fn inspection_state(&self, repo: &RepoName, digest: &Digest) -> Result<Option<InspectionState>>;
    async fn verdict(&self, repo: &RepoName, digest: &Digest) -> Result<Option<Verdict>>;
    /// `repo`'s verdict on `digest`, else where its job stands; an index that is neither is
    /// judged through its children (the strictest child's state).
    async fn gate_state(&self, repo: &RepoName, digest: &Digest) -> Result<GateState>;
    /// Up to `limit` verdicts judged on another basis than `basis`, ordered by (digest,
    /// repository), from after `after` (a page's last verdict) when given.
    async fn stale_verdicts(&self, basis: &str, after: Option<(&Digest, &RepoName)>, limit: usize) -> Result<Vec<Verdict>>;
    /// Asks for `repo`'s verdict on `digest` to be judged again (a signature arrived).
    async fn rejudge_verdict(&self, repo: &RepoName, digest: &Digest) -> Result<()>;
    /// The stored records of those of `layers` that were inspected by `engines` (what looked: the
    /// scanner, its rules and limits), as (layer, record).
    async fn layer_records(&self, engines: &str, layers: &[Digest]) -> Result<Vec<(Digest, Vec<u8>)>>;
    /// Keeps what `engines` saw of each layer; a layer already kept keeps its first record.
    async fn save_layer_records(&self, engines: &str, records: &[(Digest, Vec<u8>)]) -> Result<()>;
    /// Forgets the records kept under another key than `engines` before `before_ms` (a scanner,
    /// its rules or an engine's signatures changed since); how many.
    async fn prune_layer_records(&self, engines: &str, before_ms: i64) -> Result<u64>;
}

/// An image found by a query: where it is stored, its tags, and what matched.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageMatch<T> {
    pub repo: RepoName,
    pub digest: Digest,
    pub tags: Vec<String>,
    pub found: T,
}

/// Which packages to look for: every given field must match.
#[derive(Clone, Debug, Default)]
pub struct PackageQuery {
    /// A purl, exact; without `@version`, any version of it.
    pub purl: Option<String>,
    pub ecosystem: Option<String>,
    /// The name; for Maven, the artifact id alone also matches (`log4j-core`).
    pub name: Option<String>,
}

/// A finding set aside.
#[derive(Clone, Debug, PartialEq)]
pub struct Waiver {
    pub id: i64,
    /// A vulnerability id (CVE or alias), a secret's fingerprint, or a misconfiguration id.
    pub finding: String,
    /// A repository glob.
    pub repositories: String,
    pub reason: String,
    pub expires_at_ms: i64,
    pub created_at_ms: i64,
    pub created_by: String,
}

#[derive(Clone, Debug)]
pub struct NewWaiver {
    pub finding: String,
    pub repositories: String,
    pub reason: String,
    pub expires_at_ms: i64,
    pub created_by: String,
}

/// Queries across every inspected image, and waivers.
#[async_trait::async_trait]
pub trait Findings: Send + Sync {
    /// Every stored image (in every repository holding it) with a vulnerability known by `id`
    /// (its CVE or any alias).
    async fn images_with_vulnerability(&self, id: &str, limit: usize) -> Result<Vec<ImageMatch<ImageVulnerability>>>;
    /// Every stored image holding a package that matches.
    async fn images_with_package(&self, query: &PackageQuery, limit: usize) -> Result<Vec<ImageMatch<Component>>>;
    async fn add_waiver(&self, waiver: &NewWaiver) -> Result<Waiver>;
    /// Every waiver, expired ones included, by id.
    async fn waivers(&self) -> Result<Vec<Waiver>>;
    async fn remove_waiver(&self, id: i64) -> Result<bool>;
}

//! OSV JSON (schema 1.x) into the DB's records. Only the fields matching and reporting use are
//! read; unknown fields are ignored, as the schema asks.

use crate::model::{Advisory, Affected, Event, Range, Rating, Severity};
use serde::Deserialize;

#[derive(Deserialize)]
struct Record {
    id: String,
    #[serde(default)]
    modified: String,
    #[serde(default)]
    withdrawn: Option<String>,
    #[serde(default)]
    aliases: Vec<String>,
    #[serde(default)]
    upstream: Vec<String>,
    #[serde(default)]
    related: Vec<String>,
    #[serde(default)]
    summary: Option<String>,
    #[serde(default)]
    severity: Vec<SeverityEntry>,
    #[serde(default)]
    affected: Vec<AffectedEntry>,
    #[serde(default)]
    database_specific: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct SeverityEntry {
    #[serde(rename = "type")]
    kind: String,
    score: String,
}

#[derive(Deserialize)]
struct AffectedEntry {
    package: Option<Package>,
    #[serde(default)]
    ranges: Vec<RangeEntry>,
    #[serde(default)]
    versions: Vec<String>,
    #[serde(default)]
    severity: Vec<SeverityEntry>,
    #[serde(default)]
    ecosystem_specific: Option<serde_json::Value>,
    #[serde(default)]
    database_specific: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Package {
    ecosystem: String,
    name: String,
}

#[derive(Deserialize)]
struct RangeEntry {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    events: Vec<serde_json::Map<String, serde_json::Value>>,
}

/// What reading one OSV document gave.
pub enum Parsed {
    Advisory(Box<Advisory>),
    Withdrawn(String),
}

/// Parses one OSV record. `Err` says why it is not a usable record.
pub fn parse(bytes: &[u8]) -> Result<Parsed, String> {
    let r: Record = serde_json::from_slice(bytes).map_err(|e| format!("not an OSV record: {e}"))?;
    if r.id.trim().is_empty() {
        return Err("not an OSV record: empty id".into());
    }
    if r.withdrawn.as_deref().is_some_and(|w| !w.is_empty()) {
        return Ok(Parsed::Withdrawn(r.id));
    }
    let mut severities: Vec<Severity> = r.severity.iter().filter_map(cvss_severity).collect();
    let mut affected = Vec::new();
    for a in &r.affected {
        let Some(p) = &a.package else { continue };
        severities.extend(a.severity.iter().filter_map(cvss_severity));
        for v in [&a.ecosystem_specific, &a.database_specific] {
            if let Some(rating) = v.as_ref().and_then(|v| v.get("severity")).and_then(|s| s.as_str()).and_then(Rating::from_word) {
                severities.push(vendor(rating));
            }
        }
        let mut ranges = Vec::new();
        for range in &a.ranges {
            let semver = match range.kind.as_str() {
                "SEMVER" => true,
                "ECOSYSTEM" => false,
                _ => continue,
            };
            let mut events = Vec::new();
            for e in &range.events {
                for (k, v) in e {
                    let Some(v) = v.as_str() else { continue };
                    let v = v.to_owned();
                    events.push(match k.as_str() {
                        "introduced" => Event::Introduced(v),
                        "fixed" => Event::Fixed(v),
                        "last_affected" => Event::LastAffected(v),
                        "limit" => Event::Limit(v),
                        _ => continue,
                    });
                }
            }
            if !events.is_empty() {
                ranges.push(Range { semver, events });
            }
        }
        if ranges.is_empty() && a.versions.is_empty() {
            continue;
        }
        affected.push(Affected { ecosystem: p.ecosystem.clone(), name: p.name.clone(), ranges, versions: a.versions.clone() });
    }
    if let Some(rating) = r.database_specific.as_ref().and_then(|d| d.get("severity")).and_then(|s| s.as_str()).and_then(Rating::from_word) {
        severities.push(vendor(rating));
    }
    let summary = r.summary.unwrap_or_default();
    // Red Hat-style summaries state the rating: "Important: openssl security update".
    if let Some(rating) = summary.split_once(':').and_then(|(w, _)| Rating::from_word(w)) {
        severities.push(vendor(rating));
    }
    let mut aliases = r.aliases;
    for u in r.upstream {
        if !aliases.contains(&u) && u != r.id {
            aliases.push(u);
        }
    }
    Ok(Parsed::Advisory(Box::new(Advisory {
        id: r.id,
        aliases,
        related: r.related,
        summary,
        modified: r.modified,
        severity: best(severities),
        affected,
        source: "osv".into(),
    })))
}

fn vendor(rating: Rating) -> Severity {
    Severity { rating, score: None, vector: None, source: "vendor".into() }
}

/// A CVSS vector scored with the base-score formulas of its version.
fn cvss_severity(e: &SeverityEntry) -> Option<Severity> {
    score_vector(&e.kind, &e.score)
}

/// Scores a CVSS v2, v3.x or v4.0 vector string.
pub fn score_vector(kind: &str, vector: &str) -> Option<Severity> {
    let source = match kind {
        "CVSS_V2" | "CVSS_V3" | "CVSS_V4" => kind,
        _ => return None,
    };
    let parsed: cvss::Cvss = vector.trim().parse().ok()?;
    let score = (parsed.score() * 10.0).round() / 10.0;
    Some(Severity { rating: Rating::from_score(score), score: Some(score), vector: Some(vector.trim().to_owned()), source: source.into() })
}

/// The severity to report: a computed CVSS v3 score first (what NVD and GHSA report), then v4.0,
/// then v2, then the publisher's own word; the higher rating between equals.
pub fn best(mut all: Vec<Severity>) -> Option<Severity> {
    let rank = |s: &Severity| match s.source.as_str() {
        "CVSS_V3" => 4,
        "CVSS_V4" => 3,
        "CVSS_V2" => 2,
        _ => 1,
    };
    all.sort_by(|a, b| rank(b).cmp(&rank(a)).then(b.rating.cmp(&a.rating)));
    all.into_iter().next()
}

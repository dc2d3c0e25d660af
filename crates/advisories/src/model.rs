//! The DB's own record: what matching and reporting need from an advisory, whatever format it was
//! imported from. Small on purpose — it is what the DB file stores.

use serde::{Deserialize, Serialize};

/// One advisory (an OSV record, an Alpine secfix, a DSA/DLA entry).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Advisory {
    pub id: String,
    /// Other ids of the same vulnerability (OSV `aliases` and `upstream`), e.g. the CVE of a GHSA.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// OSV `related`: ids that are connected but not the same (an ALSA's CVEs, for example).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub related: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub summary: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub modified: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    pub affected: Vec<Affected>,
    /// The format it came from: `osv`, `alpine-secdb`, `debian-tracker`.
    pub source: String,
}

/// How bad, and on what evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Severity {
    pub rating: Rating,
    /// The CVSS base score computed from `vector`, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vector: Option<String>,
    /// `CVSS_V4`, `CVSS_V3`, `CVSS_V2`, or `vendor` for a rating stated by the record's publisher.
    pub source: String,
}

/// Severity ratings, ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Rating {
    Unknown,
    Low,
    Medium,
    High,
    Critical,
}

impl Rating {
    pub fn from_score(score: f64) -> Rating {
        match score {
            s if s >= 9.0 => Rating::Critical,
            s if s >= 7.0 => Rating::High,
            s if s >= 4.0 => Rating::Medium,
            s if s > 0.0 => Rating::Low,
            _ => Rating::Unknown,
        }
    }

    /// Reads a publisher's word for it: GHSA's `MODERATE`, Red Hat's `Important`, Debian's
    /// `low`/`medium`/`high`, CVSS's own names.
    pub fn from_word(word: &str) -> Option<Rating> {
        Some(match word.trim().to_ascii_lowercase().as_str() {
            "critical" => Rating::Critical,
            "high" | "important" => Rating::High,
            "medium" | "moderate" => Rating::Medium,
            "low" | "negligible" | "unimportant" => Rating::Low,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Rating::Unknown => "UNKNOWN",
            Rating::Low => "LOW",
            Rating::Medium => "MEDIUM",
            Rating::High => "HIGH",
            Rating::Critical => "CRITICAL",
        }
    }
}

impl std::str::FromStr for Rating {
    type Err = String;
    fn from_str(s: &str) -> Result<Rating, String> {
        if s.eq_ignore_ascii_case("unknown") {
            return Ok(Rating::Unknown);
        }
        Rating::from_word(s).ok_or_else(|| format!("unknown severity {s:?} (UNKNOWN, LOW, MEDIUM, HIGH, CRITICAL)"))
    }
}

/// One package an advisory affects, in one ecosystem.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Affected {
    /// OSV's ecosystem string: `PyPI`, `Debian:12`, `Alpine:v3.19`, `AlmaLinux:9`, …
    pub ecosystem: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ranges: Vec<Range>,
    /// Versions listed one by one (OSV `versions`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub versions: Vec<String>,
}

/// An OSV range of type ECOSYSTEM or SEMVER (GIT ranges name commits, which packages do not carry).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Range {
    /// SEMVER ranges are ordered as semver whatever the ecosystem.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub semver: bool,
    pub events: Vec<Event>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    Introduced(String),
    Fixed(String),
    LastAffected(String),
    Limit(String),
}

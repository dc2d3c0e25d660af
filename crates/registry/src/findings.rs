//! Questions across every stored image — "which images contain log4j-core 2.14?", "which are hit
//! by CVE-2021-44228 (or any alias of it)?" — and the waivers that set findings aside.

use std::cmp::Ordering;

use advisories::Scheme;
use auth::RepoGlob;
use meta::{Component, ImageMatch, ImageVulnerability, NewWaiver, PackageQuery, Verdict, Waiver};
use oci::{Digest, RepoName};

use crate::access::Actor;
use crate::{Error, Registry, Result};

/// At most this many images per answer.
pub const MAX_MATCHES: usize = 10_000;

/// Which versions a package query wants.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum VersionFilter {
    #[default]
    Any,
    /// This version, or any that starts with it at a component boundary (`2.14` → `2.14.1`).
    Prefix(String),
    /// Every bound must hold: `>=2.0,<2.15`.
    Range(Vec<(Ordering, bool, String)>),
}

impl VersionFilter {
    /// `>=2.0,<2.15` (`>`, `>=`, `<`, `<=`, `=`), comma-separated bounds that must all hold.
    pub fn parse_range(s: &str) -> Result<VersionFilter> {
        let mut bounds = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (ord, inclusive, v) = if let Some(v) = part.strip_prefix(">=") {
                (Ordering::Greater, true, v)
            } else if let Some(v) = part.strip_prefix("<=") {
                (Ordering::Less, true, v)
            } else if let Some(v) = part.strip_prefix('>') {
                (Ordering::Greater, false, v)
            } else if let Some(v) = part.strip_prefix('<') {
                (Ordering::Less, false, v)
            } else if let Some(v) = part.strip_prefix('=') {
                (Ordering::Equal, true, v)
            } else {
                return Err(Error::Invalid(format!("version bound {part:?} must start with >, >=, <, <= or =")));
            };
            bounds.push((ord, inclusive, v.trim().to_owned()));
        }
        if bounds.is_empty() {
            return Err(Error::Invalid("the version range is empty".into()));
        }
        Ok(VersionFilter::Range(bounds))
    }

    /// Whether `version` (of `ecosystem`, as the scanner names it) is wanted. A version the
    /// ecosystem's ordering cannot read is not.
    pub fn accepts(&self, ecosystem: &str, version: &str) -> bool {
        match self {
            VersionFilter::Any => true,
            VersionFilter::Prefix(p) => {
                version == p || version.strip_prefix(p.as_str()).is_some_and(|rest| rest.starts_with(['.', '-', '+', '~', '_']))
            }
            VersionFilter::Range(bounds) => {
                let Some(scheme) = scheme_of(ecosystem) else { return false };
                bounds.iter().all(|(want, inclusive, bound)| match scheme.compare(version, bound) {
                    Some(Ordering::Equal) => *inclusive,
                    Some(o) => o == *want && *want != Ordering::Equal,
                    None => false,
                })
            }
        }
    }
}

/// The version ordering of a scanner ecosystem.
fn scheme_of(ecosystem: &str) -> Option<Scheme> {
    Some(match ecosystem {
        "deb" => Scheme::Dpkg,
        "rpm" => Scheme::Rpm,
        "apk" => Scheme::Apk,
        "pypi" => Scheme::Pep440,
        "npm" | "cargo" | "composer" => Scheme::Semver,
        "golang" => Scheme::Go,
        "maven" => Scheme::Maven,
        "gem" => Scheme::RubyGems,
        "nuget" => Scheme::NuGet,
        _ => return None,
    })
}

/// An image's inspection report, as served.
#[derive(Clone, Debug)]
pub struct ImageReport {
    /// The `customs.report/v1` JSON.
    pub report: serde_json::Value,
    pub inspected_at_ms: i64,
    /// How long the inspection took.
    pub millis: i64,
    /// The repository's verdict on it.
    pub verdict: Option<Verdict>,
}

impl Registry {
    /// `repo`'s inspection report of `digest` and its verdict there.
    pub async fn image_report(&self, repo: &RepoName, digest: &Digest) -> Result<ImageReport> {
        let reference = oci::Reference::Digest(digest.clone());
        self.meta.manifest(repo, &reference).await?.ok_or(Error::ManifestUnknown(reference))?;
        let stored = self.meta.inspection_report(digest).await?.ok_or_else(|| Error::NotFound(format!("{digest} has not been inspected yet")))?;
        let report = stored.to_json().map_err(Error::Unavailable)?;
        let verdict = self.meta.verdict(repo, digest).await?;
        Ok(ImageReport { report, inspected_at_ms: stored.inspected_at_ms, millis: stored.millis, verdict })
    }

    pub async fn images_with_vulnerability(&self, id: &str) -> Result<Vec<ImageMatch<ImageVulnerability>>> {
        Ok(self.meta.images_with_vulnerability(id, MAX_MATCHES).await?)
    }

    pub async fn images_with_package(&self, query: &PackageQuery, versions: &VersionFilter) -> Result<Vec<ImageMatch<Component>>> {
        if query.purl.is_none() && query.name.is_none() {
            return Err(Error::Invalid("say which package: ?purl= or ?name=".into()));
        }
        let mut found = self.meta.images_with_package(query, MAX_MATCHES).await?;
        found.retain(|m| versions.accepts(&m.found.ecosystem, &m.found.version));
        Ok(found)
    }

    pub async fn waivers(&self) -> Result<Vec<Waiver>> {
        Ok(self.meta.waivers().await?)
    }

    /// Adds a waiver (audited); verdicts it touches are judged again by the inspection workers.
    pub async fn add_waiver(&self, actor: &Actor<'_>, waiver: NewWaiver) -> Result<Waiver> {
        waiver.repositories.parse::<RepoGlob>().map_err(|e| Error::Invalid(e.to_string()))?;
        if waiver.finding.trim().is_empty() || waiver.reason.trim().is_empty() {
            return Err(Error::Invalid("a waiver names a finding and gives a reason".into()));
        }
        let added = self.meta.add_waiver(&waiver).await?;
        let detail = serde_json::json!({ "reason": added.reason, "expires": oci::rfc3339((added.expires_at_ms / 1000).max(0) as u64) });
        self.audit_gate(actor, "waiver.add", &format!("{} in {}", added.finding, added.repositories), Some(&detail.to_string())).await;
        Ok(added)
    }

    pub async fn remove_waiver(&self, actor: &Actor<'_>, id: i64) -> Result<()> {
        if !self.meta.remove_waiver(id).await? {
            return Err(Error::NotFound(format!("no waiver {id}")));
        }
        self.audit_gate(actor, "waiver.remove", &id.to_string(), None).await;
        Ok(())
    }

    /// Appends a gate event to the audit log; a failure is logged, the act stands.
    pub(crate) async fn audit_gate(&self, actor: &Actor<'_>, action: &str, target: &str, detail: Option<&str>) {
        let entry = meta::AuditEntry {
            actor: actor.name.to_owned(),
            action: action.to_owned(),
            target: target.to_owned(),
            client: actor.client.map(|c| c.to_string()),
            detail: detail.map(str::to_owned),
        };
        if let Err(e) = self.meta.append_audit(&entry).await {
            tracing::error!(error = %e, action, "cannot append to the audit log");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_filtered_by_prefix_and_by_the_ecosystems_order() {
        let prefix = VersionFilter::Prefix("2.14".into());
        assert!(prefix.accepts("maven", "2.14.1") && prefix.accepts("maven", "2.14"));
        assert!(!prefix.accepts("maven", "2.141") && !prefix.accepts("maven", "2.15.0"));
        let range = VersionFilter::parse_range(">=2.0-beta9, <2.15.0").unwrap();
        assert!(range.accepts("maven", "2.14.1") && range.accepts("maven", "2.0-beta9"));
        assert!(!range.accepts("maven", "2.15.0") && !range.accepts("maven", "1.2.17"));
        // dpkg order: ~ sorts before anything.
        let deb = VersionFilter::parse_range("<3.0.11").unwrap();
        assert!(deb.accepts("deb", "3.0.11~rc1") && !deb.accepts("deb", "3.0.11-1"));
        assert!(VersionFilter::parse_range("=1.0").unwrap().accepts("npm", "1.0.0"));
        assert!(!VersionFilter::parse_range("=1.0").unwrap().accepts("npm", "1.0.1"));
        assert!(!range.accepts("unknown-ecosystem", "2.14.1"));
        assert!(VersionFilter::parse_range("2.0").is_err() && VersionFilter::parse_range(" , ").is_err());
    }
}

//! Matching one installed package against the DB, with OSV's range semantics, and merging the
//! records that describe the same vulnerability so each CVE is reported once per package.

use crate::db::Db;
use crate::ecosystem::scheme;
use crate::model::{Advisory, Affected, Event, Range, Severity};
use crate::Scheme;
use serde::Serialize;
use std::cmp::Ordering;
use std::collections::BTreeMap;

/// One vulnerability of one package, possibly stated by several advisories.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Vulnerability {
    /// The CVE when one is known, else the advisory's own id.
    pub id: String,
    /// Every other id of it: the advisories that matched (GHSA, DSA, PYSEC, …) and their aliases.
    pub aliases: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub related: Vec<String>,
    pub summary: String,
    /// The lowest version that fixes it for every matching advisory, or `None`: no fix yet.
    pub fixed_version: Option<String>,
    pub severity: Option<Severity>,
}

/// A single advisory's verdict on a version.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit<'a> {
    pub advisory: &'a Advisory,
    pub fixed: Option<String>,
}

impl Db {
    /// Every advisory that affects `version` of `name` in `ecosystem` (OSV's ecosystem string).
    pub fn affecting(&self, ecosystem: &str, name: &str, version: &str) -> Vec<Hit<'_>> {
        let Some(eco_scheme) = scheme(ecosystem) else { return Vec::new() };
        let mut hits: Vec<Hit<'_>> = Vec::new();
        for (adv, j) in self.candidates(ecosystem, name) {
            if let Some(fixed) = affects(&adv.affected[j], eco_scheme, version) {
                match hits.iter_mut().find(|h| std::ptr::eq(h.advisory, adv)) {
                    // Several `affected` entries of one record for the same package: keep the
                    // entry that names a fix.
                    Some(h) => {
                        if h.fixed.is_none() {
                            h.fixed = fixed;
                        }
                    }
                    None => hits.push(Hit { advisory: adv, fixed }),
                }
            }
        }
        hits
    }

    /// The vulnerabilities of one package: matching advisories grouped by the CVE they name, so a
    /// GHSA, a PYSEC and a DSA for one CVE are reported once.
    pub fn vulnerabilities(&self, ecosystem: &str, name: &str, version: &str) -> Vec<Vulnerability> {
        let hits = self.affecting(ecosystem, name, version);
        let scheme = scheme(ecosystem).unwrap_or(Scheme::Semver);
        let mut groups: BTreeMap<String, Vec<&Hit<'_>>> = BTreeMap::new();
        for h in &hits {
            let cves: Vec<&String> = h.advisory.aliases.iter().filter(|a| a.starts_with("CVE-")).collect();
            let keys: Vec<String> = if h.advisory.id.starts_with("CVE-") || cves.is_empty() {
                vec![h.advisory.id.clone()]
            } else {
                cves.into_iter().cloned().collect()
            };
            for k in keys {
                groups.entry(k).or_default().push(h);
            }
        }
        groups
            .into_iter()
            .map(|(id, hits)| {
                let mut aliases: Vec<String> = Vec::new();
                let mut related: Vec<String> = Vec::new();
                for h in &hits {
                    // An advisory naming several CVEs (a DSA fixing ten) is an alias of each, but
                    // they are not aliases of one another (`DEBIAN-CVE-x` belongs to `CVE-x`).
                    let own = |a: &String| !a.contains("CVE-") || a.ends_with(id.as_str());
                    for a in std::iter::once(&h.advisory.id).chain(h.advisory.aliases.iter().filter(|a| own(a))) {
                        if *a != id && !aliases.contains(a) {
                            aliases.push(a.clone());
                        }
                    }
                    for r in &h.advisory.related {
                        if !related.contains(r) {
                            related.push(r.clone());
                        }
                    }
                }
                aliases.sort();
                related.retain(|r| *r != id && !aliases.contains(r));
                // Fixed for good only when every record's fix is in: the highest of them, and
                // "no fix yet" if any record has none.
                let fixed_version = hits.iter().try_fold(None::<String>, |acc, h| {
                    let f = h.fixed.clone()?;
                    Some(Some(match acc {
                        Some(a) if scheme.compare(&a, &f) != Some(Ordering::Less) => a,
                        _ => f,
                    }))
                });
                let severity = hits
                    .iter()
                    .filter_map(|h| h.advisory.severity.clone())
                    .max_by(|a, b| a.rating.cmp(&b.rating).then(a.score.is_some().cmp(&b.score.is_some())));
                let summary = hits.iter().map(|h| h.advisory.summary.as_str()).find(|s| !s.is_empty()).unwrap_or("").to_owned();
                Vulnerability { id, aliases, related, summary, fixed_version: fixed_version.flatten(), severity }
            })
            .collect()
    }
}

/// `Some(fixed version or None)` when the entry affects `version`.
fn affects(af: &Affected, eco: Scheme, version: &str) -> Option<Option<String>> {
    if af.versions.iter().any(|v| v == version || eco.compare(v, version) == Some(Ordering::Equal)) {
        return Some(next_fix(af, eco, version));
    }
    for r in &af.ranges {
        let s = if r.semver { Scheme::Semver } else { eco };
        if in_range(r, s, version) {
            return Some(fixed_in(r, s, version));
        }
    }
    None
}

/// The fix named by any range of the entry, for a version found in its explicit list.
fn next_fix(af: &Affected, eco: Scheme, version: &str) -> Option<String> {
    af.ranges.iter().find_map(|r| fixed_in(r, if r.semver { Scheme::Semver } else { eco }, version))
}

fn event_version(e: &Event) -> &str {
    match e {
        Event::Introduced(v) | Event::Fixed(v) | Event::LastAffected(v) | Event::Limit(v) => v,
    }
}

fn sorted(r: &Range, s: Scheme) -> Vec<&Event> {
    let mut events: Vec<&Event> = r.events.iter().filter(|e| !matches!(e, Event::Limit(_))).collect();
    events.sort_by(|a, b| match (event_version(a), event_version(b)) {
        ("0", "0") => Ordering::Equal,
        ("0", _) if matches!(a, Event::Introduced(_)) => Ordering::Less,
        (_, "0") if matches!(b, Event::Introduced(_)) => Ordering::Greater,
        (x, y) => s.compare(x, y).unwrap_or(Ordering::Equal),
    });
    events
}

/// OSV's evaluation: walk the events in version order; an `introduced` at or below the version
/// turns it affected, a `fixed` at or below (or a `last_affected` below) turns it not affected.
/// A `limit` at or below the version puts it outside the range.
fn in_range(r: &Range, s: Scheme, version: &str) -> bool {
    for e in &r.events {
        if let Event::Limit(l) = e
            && l != "*"
            && s.compare(version, l).is_some_and(|o| o != Ordering::Less)
        {
            return false;
        }
    }
    let mut affected = false;
    for e in sorted(r, s) {
        match e {
            Event::Introduced(v) => {
                if v == "0" || s.compare(version, v).is_some_and(|o| o != Ordering::Less) {
                    affected = true;
                }
            }
            Event::Fixed(v) => {
                if s.compare(version, v).is_some_and(|o| o != Ordering::Less) {
                    affected = false;
                }
            }
            Event::LastAffected(v) => {
                if s.compare(version, v) == Some(Ordering::Greater) {
                    affected = false;
                }
            }
            Event::Limit(_) => {}
        }
    }
    affected && s.compare(version, version).is_some()
}

/// The first `fixed` above the version in this range.
fn fixed_in(r: &Range, s: Scheme, version: &str) -> Option<String> {
    sorted(r, s).into_iter().find_map(|e| match e {
        Event::Fixed(v) if s.compare(version, v) == Some(Ordering::Less) => Some(v.clone()),
        _ => None,
    })
}

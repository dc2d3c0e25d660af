//! Version ordering, one scheme per ecosystem. OSV states ranges as `introduced` / `fixed` /
//! `last_affected` / `limit` events, so an ordering is all matching needs — never a range syntax.
//!
//! Every scheme answers `None` for a version it cannot read: the matcher then reports nothing for
//! that range rather than guessing.

mod apk;
mod dpkg;
mod maven;
mod pep440;
mod rpm;
mod rubygems;
mod semver;

use std::cmp::Ordering;

/// How an ecosystem orders its versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scheme {
    /// Debian and Ubuntu: epochs, `~`, revisions (dpkg's `verrevcmp`).
    Dpkg,
    /// RPM distributions: `rpmvercmp`, with epochs and releases.
    Rpm,
    /// Alpine's apk-tools.
    Apk,
    /// Python, PEP 440.
    Pep440,
    /// Semantic versions as npm and crates.io use them (a missing minor or patch reads as 0).
    Semver,
    /// Go modules: semver with a `v` prefix, pseudo-versions and `+incompatible`.
    Go,
    /// Maven's `ComparableVersion`.
    Maven,
    /// RubyGems' `Gem::Version`.
    RubyGems,
    /// NuGet: up to four numeric parts, case-insensitive pre-release labels.
    NuGet,
}

impl Scheme {
    /// Orders two versions of this scheme, or `None` when either cannot be read.
    pub fn compare(self, a: &str, b: &str) -> Option<Ordering> {
        let (a, b) = (a.trim(), b.trim());
        if a.is_empty() || b.is_empty() {
            return None;
        }
        match self {
            Scheme::Dpkg => dpkg::compare(a, b),
            Scheme::Rpm => rpm::compare(a, b),
            Scheme::Apk => apk::compare(a, b),
            Scheme::Pep440 => pep440::compare(a, b),
            Scheme::Semver | Scheme::Go => semver::compare(a, b, false),
            Scheme::NuGet => semver::compare(a, b, true),
            Scheme::Maven => Some(maven::compare(a, b)),
            Scheme::RubyGems => rubygems::compare(a, b),
        }
    }
}

/// Compares two runs of ASCII digits as numbers of any length.
fn cmp_digits(a: &str, b: &str) -> Ordering {
    let a = a.trim_start_matches('0');
    let b = b.trim_start_matches('0');
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

#[cfg(test)]
mod tests;

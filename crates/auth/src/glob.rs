//! Repository globs: `/`-separated segments where `*` matches within one segment and a whole
//! `**` segment matches any number of segments (none included). Tag globs: `*` matches any run
//! of characters (a tag has no segments).

use std::fmt;
use std::str::FromStr;

use oci::RepoName;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RepoGlob(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GlobError {
    #[error("a namespace glob must not be empty")]
    Empty,
    #[error("namespace glob {0:?} has an empty segment")]
    EmptySegment(String),
    #[error("namespace glob {0:?} may hold only lowercase letters, digits, '.', '_', '-', '/' and '*'")]
    BadCharacter(String),
    #[error("tag glob {0:?} must be 1 to 128 letters, digits, '.', '_', '-' and '*'")]
    BadTagGlob(String),
}

impl RepoGlob {
    /// `**`: every repository.
    pub fn everything() -> RepoGlob {
        RepoGlob("**".into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_everything(&self) -> bool {
        self.0 == "**"
    }

    pub fn matches(&self, repo: &RepoName) -> bool {
        let pattern: Vec<&str> = self.0.split('/').collect();
        let name: Vec<&str> = repo.as_str().split('/').collect();
        segments_match(&pattern, &name)
    }
}

fn segments_match(pattern: &[&str], name: &[&str]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some((&"**", rest)) => (0..=name.len()).any(|skip| segments_match(rest, &name[skip..])),
        Some((first, rest)) => {
            name.split_first().is_some_and(|(n, name_rest)| segment_matches(first, n) && segments_match(rest, name_rest))
        }
    }
}

/// `*` matches any run of characters within the segment.
fn segment_matches(pattern: &str, segment: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = segment.strip_prefix(first) else { return false };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else { return rest.is_empty() };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

impl FromStr for RepoGlob {
    type Err = GlobError;

    fn from_str(s: &str) -> Result<RepoGlob, GlobError> {
        if s.is_empty() {
            return Err(GlobError::Empty);
        }
        if s.split('/').any(str::is_empty) {
            return Err(GlobError::EmptySegment(s.into()));
        }
        let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/*".contains(c);
        if !s.chars().all(allowed) {
            return Err(GlobError::BadCharacter(s.into()));
        }
        Ok(RepoGlob(s.into()))
    }
}

/// A set of tags named by a glob: `v*`, `release-*-rc*`, `latest`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TagGlob(String);

impl TagGlob {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn matches(&self, tag: &str) -> bool {
        segment_matches(&self.0, tag)
    }
}

impl FromStr for TagGlob {
    type Err = GlobError;

    fn from_str(s: &str) -> Result<TagGlob, GlobError> {
        let allowed = |c: char| c.is_ascii_alphanumeric() || "._-*".contains(c);
        if s.is_empty() || s.len() > 128 || !s.chars().all(allowed) {
            return Err(GlobError::BadTagGlob(s.into()));
        }
        Ok(TagGlob(s.into()))
    }
}

impl fmt::Display for TagGlob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for RepoGlob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_by_segment() {
        let cases: &[(&str, &str, bool)] = &[
            ("**", "a", true),
            ("**", "a/b/c", true),
            ("team/**", "team/app", true),
            ("team/**", "team/app/sub", true),
            ("team/**", "team", true),
            ("team/**", "teams/app", false),
            ("team/*", "team/app", true),
            ("team/*", "team/app/sub", false),
            ("team/*", "team", false),
            ("team/app", "team/app", true),
            ("team/app", "team/app2", false),
            ("team/app-*", "team/app-web", true),
            ("team/app-*", "team/app-1", true),
            ("team/app-*", "team/ap", false),
            ("*-dev/**", "web-dev/x", true),
            ("*-dev/**", "web-prod/x", false),
            ("a/*b*c", "a/xbyc", true),
            ("a/*b*c", "a/xcyb", false),
            ("**/base", "base", true),
            ("**/base", "x/y/base", true),
            ("**/base", "x/base/y", false),
        ];
        for (glob, name, want) in cases {
            let g: RepoGlob = glob.parse().unwrap();
            assert_eq!(g.matches(&name.parse().unwrap()), *want, "{glob} ~ {name}");
        }
    }

    #[test]
    fn tag_globs_match_the_whole_tag() {
        let cases: &[(&str, &str, bool)] = &[
            ("*", "anything", true),
            ("latest", "latest", true),
            ("latest", "latest-1", false),
            ("v*", "v1.2.3", true),
            ("v*", "dev", false),
            ("release-*-rc*", "release-2.1-rc3", true),
            ("release-*-rc*", "release-2.1", false),
            ("*.sig", "sha256-ab.sig", true),
            ("Main", "main", false),
        ];
        for (glob, tag, want) in cases {
            let g: TagGlob = glob.parse().unwrap();
            assert_eq!(g.matches(tag), *want, "{glob} ~ {tag}");
        }
        for bad in ["", "a/b", "v?", "a b", &"x".repeat(129)] {
            assert_eq!(bad.parse::<TagGlob>(), Err(GlobError::BadTagGlob(bad.to_string())));
        }
    }

    #[test]
    fn bad_globs_are_refused() {
        assert_eq!("".parse::<RepoGlob>(), Err(GlobError::Empty));
        assert!(matches!("a//b".parse::<RepoGlob>(), Err(GlobError::EmptySegment(_))));
        assert!(matches!("A/b".parse::<RepoGlob>(), Err(GlobError::BadCharacter(_))));
        assert!(matches!("a/b?".parse::<RepoGlob>(), Err(GlobError::BadCharacter(_))));
    }
}

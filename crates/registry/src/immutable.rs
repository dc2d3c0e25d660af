//! Immutable tags: once pushed, a tag a rule names keeps pointing at the manifest it was pushed
//! with, so `prod/app:v1.4.2` means the same bytes for every pull, today and next year.
//!
//! A push of another manifest under such a tag, a DELETE of the tag, and a DELETE of the manifest
//! that carries it are refused with DENIED. Pushing the same manifest again under the tag is
//! allowed (a retried CI job). Retention keeps these tags. The rules apply to what clients push
//! and delete: a mirror's cache follows its upstream, and its eviction is not held back.
//!
//! Tags in the referrers tag schema (`sha256-<hex>.sig`, `.att`, `.sbom`) are never immutable:
//! cosign adds a second signature by pushing a new manifest under the same tag.

use auth::{RepoGlob, TagGlob};
use oci::{RepoName, Tag};

use crate::retention::attachment_subject;

/// The rules; a tag is immutable when any rule names both its repository and it.
#[derive(Clone, Debug, Default)]
pub struct ImmutableTags {
    pub rules: Vec<ImmutableRule>,
}

#[derive(Clone, Debug)]
pub struct ImmutableRule {
    pub repositories: Vec<RepoGlob>,
    /// Tag globs; empty: every tag.
    pub tags: Vec<TagGlob>,
}

impl ImmutableTags {
    pub fn protects(&self, repo: &RepoName, tag: &Tag) -> bool {
        attachment_subject(tag).is_none()
            && self.rules.iter().any(|rule| {
                rule.repositories.iter().any(|g| g.matches(repo))
                    && (rule.tags.is_empty() || rule.tags.iter().any(|g| g.matches(tag.as_str())))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(repositories: &[&str], tags: &[&str]) -> ImmutableRule {
        ImmutableRule {
            repositories: repositories.iter().map(|g| g.parse().unwrap()).collect(),
            tags: tags.iter().map(|g| g.parse().unwrap()).collect(),
        }
    }

    #[test]
    fn a_tag_is_immutable_when_one_rule_names_its_repository_and_it() {
        let rules = ImmutableTags { rules: vec![rule(&["prod/**"], &["v*", "stable"]), rule(&["base/*"], &[])] };
        let protects = |repo: &str, tag: &str| rules.protects(&repo.parse().unwrap(), &tag.parse().unwrap());
        assert!(protects("prod/app", "v1.2.3"));
        assert!(protects("prod/team/app", "stable"));
        assert!(!protects("prod/app", "latest"), "not a tag the rule names");
        assert!(!protects("dev/app", "v1.2.3"), "not a repository the rule names");
        assert!(protects("base/debian", "latest"), "a rule without tags names every tag");
        assert!(!protects("base/debian/slim", "latest"), "`*` is one path component");
        // cosign moves these to add a signature; a tag that only looks like one is a tag.
        let sig = format!("sha256-{}.sig", "ab".repeat(32));
        assert!(!protects("base/debian", &sig));
        assert!(protects("base/debian", "sha256-release.sig"));
        assert!(!ImmutableTags::default().protects(&"prod/app".parse().unwrap(), &"v1".parse().unwrap()));
    }
}

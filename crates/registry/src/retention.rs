//! Retention: which tags and untagged manifests a repository keeps, so that images CI pushes
//! every hour do not pile up forever. Nothing is deleted unless a policy names the repository.
//!
//! The first policy whose glob matches a repository governs it. Its `keep_tags` rules each keep
//! some of the tags their patterns name (the N most recently pushed or pulled, those pushed or
//! pulled within a time, or all of them); when a policy has any, a tag that no rule keeps is
//! deleted: the tag only, its manifest is now untagged. With `delete_untagged_after`, a manifest
//! idle that long is deleted: no tag points at it, no index lists it, it is no referrer, and it
//! was stored, last untagged and last pulled before then. Counting from the pull and the
//! untagging spares an image that a Deployment pins by digest, and one whose tag just moved on.
//!
//! A tag in the referrers tag schema (`sha256-<hex>`, with any `.sig`-like suffix: cosign's
//! signatures and attestations) is kept while its subject is in the repository. Referrers
//! (SBOMs, signatures) go with their subject: garbage collection deletes them once it is gone,
//! and their bytes, and the layers of what was deleted, in the same pass.
//!
//! Immutable tags (`immutable.rs`) are kept whatever the policy says.
//!
//! Every deletion is written to the audit log as the actor `retention`.

use std::collections::HashSet;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use auth::{RepoGlob, TagGlob};
use meta::{Page, TagRecord};
use oci::{Digest, Reference, RepoName, Tag};

use crate::{Actor, Registry, Result, now_ms};

/// Manifests deleted per transaction.
const PAGE: usize = 500;

/// The policies, in order of precedence.
#[derive(Clone, Debug, Default)]
pub struct Retention {
    pub policies: Vec<RetentionPolicy>,
    /// Report what would be deleted, and delete nothing.
    pub dry_run: bool,
}

impl Retention {
    pub fn policy_for(&self, repo: &RepoName) -> Option<&RetentionPolicy> {
        self.policies.iter().find(|p| p.repositories.iter().any(|g| g.matches(repo)))
    }
}

/// What the repositories its globs name keep.
#[derive(Clone, Debug)]
pub struct RetentionPolicy {
    pub repositories: Vec<RepoGlob>,
    /// Rules that each keep some tags. None: every tag is kept; any: the tags none keeps go.
    pub keep_tags: Vec<KeepTags>,
    /// Untagged manifests idle longer than this are deleted. None: they are kept.
    pub delete_untagged_after: Option<Duration>,
}

/// Tags one rule keeps: of those its patterns name, the ones any of its criteria pick, or all
/// of them when it has no criteria.
#[derive(Clone, Debug, Default)]
pub struct KeepTags {
    /// The tags the rule looks at; empty: every tag.
    pub patterns: Vec<TagGlob>,
    pub most_recently_pushed: Option<usize>,
    pub most_recently_pulled: Option<usize>,
    pub pushed_within: Option<Duration>,
    pub pulled_within: Option<Duration>,
}

impl KeepTags {
    fn names(&self, tag: &Tag) -> bool {
        self.patterns.is_empty() || self.patterns.iter().any(|p| p.matches(tag.as_str()))
    }

    fn has_criteria(&self) -> bool {
        self.most_recently_pushed.is_some()
            || self.most_recently_pulled.is_some()
            || self.pushed_within.is_some()
            || self.pulled_within.is_some()
    }
}

/// What a pass deleted (or, dry, would delete).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expired {
    pub tags: Vec<(RepoName, Tag)>,
    pub manifests: Vec<(RepoName, Digest)>,
}

impl Registry {
    /// One pass of `retention` over every repository a policy names.
    pub async fn expire(&self, retention: &Retention) -> Result<Expired> {
        let mut expired = Expired::default();
        if retention.policies.is_empty() {
            return Ok(expired);
        }
        let now = now_ms();
        let mut page = Page { n: PAGE, last: None };
        loop {
            let listing = self.meta.repositories(&page).await?;
            for repo in &listing.entries {
                if let Some(policy) = retention.policy_for(repo) {
                    self.expire_in(repo, policy, retention.dry_run, now, &mut expired).await?;
                }
            }
            if !listing.more {
                break;
            }
            page.last = listing.entries.last().map(RepoName::to_string);
        }
        Ok(expired)
    }

    async fn expire_in(&self, repo: &RepoName, policy: &RetentionPolicy, dry: bool, now: i64, out: &mut Expired) -> Result<()> {
        let (tags_before, manifests_before) = (out.tags.len(), out.manifests.len());
        if !policy.keep_tags.is_empty() {
            let records = self.meta.tag_records(repo).await?;
            for record in tags_to_delete(&records, &policy.keep_tags, now) {
                if self.config.immutable_tags.protects(repo, &record.tag) {
                    continue;
                }
                if let Some(subject) = attachment_subject(&record.tag)
                    && self.meta.manifest(repo, &Reference::Digest(subject)).await?.is_some()
                {
                    continue;
                }
                if dry || self.meta.delete_tag_if_unchanged(repo, record).await? {
                    out.tags.push((repo.clone(), record.tag.clone()));
                }
            }
        }
        if let Some(after) = policy.delete_untagged_after {
            let before = now.saturating_sub(after.as_millis().min(i64::MAX as u128) as i64);
            if dry {
                let idle = self.meta.idle_untagged(repo, before, usize::MAX).await?;
                out.manifests.extend(idle.into_iter().map(|d| (repo.clone(), d)));
            } else {
                // An index's children are left with nothing to keep them: the next round has them.
                loop {
                    let deleted = self.meta.delete_idle_untagged(repo, before, PAGE).await?;
                    if deleted.is_empty() {
                        break;
                    }
                    out.manifests.extend(deleted.into_iter().map(|d| (repo.clone(), d)));
                }
            }
        }
        let tags = out.tags[tags_before..].iter().map(|(_, tag)| (format!("{repo}:{tag}"), "no keep_tags rule keeps it"));
        let manifests = out.manifests[manifests_before..]
            .iter()
            .map(|(_, digest)| (format!("{repo}@{digest}"), "untagged and idle past delete_untagged_after"));
        let deleted: Vec<(String, &str)> = tags.chain(manifests).collect();
        if dry {
            for (target, why) in &deleted {
                tracing::info!(worker = "retention", reference = %target, why, "would delete (dry run)");
            }
            return Ok(());
        }
        if !deleted.is_empty() {
            self.cache.invalidate(repo);
        }
        let stats = &self.gc_stats;
        stats.expired_tags.fetch_add((out.tags.len() - tags_before) as u64, Relaxed);
        stats.expired_manifests.fetch_add((out.manifests.len() - manifests_before) as u64, Relaxed);
        let actor = Actor { name: "retention", client: None };
        for (target, why) in &deleted {
            tracing::info!(worker = "retention", reference = %target, why, "deleted");
            self.audit(actor.clone(), "delete", target, Some(why)).await;
        }
        Ok(())
    }
}

/// The tags none of `rules` keeps.
fn tags_to_delete<'a>(tags: &'a [TagRecord], rules: &[KeepTags], now: i64) -> Vec<&'a TagRecord> {
    let mut kept: HashSet<&Tag> = HashSet::new();
    for rule in rules {
        let named: Vec<&TagRecord> = tags.iter().filter(|t| rule.names(&t.tag)).collect();
        if !rule.has_criteria() {
            kept.extend(named.iter().map(|t| &t.tag));
            continue;
        }
        let within = |at: Option<i64>, limit: Option<Duration>| match (at, limit) {
            (Some(at), Some(limit)) => now.saturating_sub(at) <= limit.as_millis().min(i64::MAX as u128) as i64,
            _ => false,
        };
        kept.extend(named.iter().filter(|t| within(Some(t.pushed_at_ms), rule.pushed_within)).map(|t| &t.tag));
        kept.extend(named.iter().filter(|t| within(t.pulled_at_ms, rule.pulled_within)).map(|t| &t.tag));
        if let Some(n) = rule.most_recently_pushed {
            // Newest first; a tie goes to the greater name, so the choice is the same every pass.
            let mut by_push = named.clone();
            by_push.sort_by(|a, b| (b.pushed_at_ms, &b.tag).cmp(&(a.pushed_at_ms, &a.tag)));
            kept.extend(by_push.iter().take(n).map(|t| &t.tag));
        }
        if let Some(n) = rule.most_recently_pulled {
            // Never pulled is never "recently pulled".
            let mut by_pull: Vec<&TagRecord> = named.iter().copied().filter(|t| t.pulled_at_ms.is_some()).collect();
            by_pull.sort_by(|a, b| (b.pulled_at_ms, &b.tag).cmp(&(a.pulled_at_ms, &a.tag)));
            kept.extend(by_pull.iter().take(n).map(|t| &t.tag));
        }
    }
    tags.iter().filter(|t| !kept.contains(&t.tag)).collect()
}

/// The subject a tag in the referrers tag schema (`<alg>-<hex>`, optionally `.<suffix>`) names.
pub(crate) fn attachment_subject(tag: &Tag) -> Option<Digest> {
    let (algorithm, rest) = tag.as_str().split_once('-')?;
    let hex = rest.split_once('.').map_or(rest, |(hex, _)| hex);
    format!("{algorithm}:{hex}").parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;
    const NOW: i64 = 1_000 * HOUR;

    fn record(tag: &str, pushed_hours_ago: i64, pulled_hours_ago: Option<i64>) -> TagRecord {
        TagRecord {
            tag: tag.parse().unwrap(),
            digest: Digest::sha256_of(tag.as_bytes()),
            pushed_at_ms: NOW - pushed_hours_ago * HOUR,
            pulled_at_ms: pulled_hours_ago.map(|h| NOW - h * HOUR),
        }
    }

    fn deleted(tags: &[TagRecord], rules: &[KeepTags]) -> Vec<String> {
        tags_to_delete(tags, rules, NOW).into_iter().map(|t| t.tag.to_string()).collect()
    }

    fn globs(patterns: &[&str]) -> Vec<TagGlob> {
        patterns.iter().map(|p| p.parse().unwrap()).collect()
    }

    #[test]
    fn each_rule_keeps_what_its_criteria_pick_of_what_its_patterns_name() {
        let tags = [
            record("latest", 200, Some(1)),
            record("main-1", 50, None),
            record("main-2", 40, Some(30)),
            record("main-3", 30, None),
            record("main-4", 2, None),
            record("v1.0", 900, None),
            record("v1.1", 800, Some(700)),
        ];
        let releases = KeepTags { patterns: globs(&["v*", "latest"]), ..KeepTags::default() };
        let recent = KeepTags { patterns: globs(&["main-*"]), most_recently_pushed: Some(2), ..KeepTags::default() };
        assert_eq!(deleted(&tags, &[releases.clone(), recent.clone()]), ["main-1", "main-2"]);

        // The criteria of one rule add up: the 2 newest, or pulled in the last 36 hours.
        let pulled = KeepTags { pulled_within: Some(Duration::from_secs(36 * 3600)), ..recent.clone() };
        assert_eq!(deleted(&tags, &[releases.clone(), pulled]), ["main-1"]);
        // Pushed within 45 hours, over every tag (no patterns).
        let young = KeepTags { pushed_within: Some(Duration::from_secs(45 * 3600)), ..KeepTags::default() };
        assert_eq!(deleted(&tags, &[young]), ["latest", "main-1", "v1.0", "v1.1"]);
        // The most recently pulled: never pulled does not count.
        let used = KeepTags { most_recently_pulled: Some(2), ..KeepTags::default() };
        assert_eq!(deleted(&tags, &[used]), ["main-1", "main-3", "main-4", "v1.0", "v1.1"]);
        // A rule that names nothing keeps nothing; without rules nothing is asked of tags at all
        // (the caller does not call this then).
        let nothing = KeepTags { patterns: globs(&["nightly-*"]), ..KeepTags::default() };
        assert_eq!(deleted(&tags, &[nothing]).len(), tags.len());
        // A tie in push time keeps the same tag every time.
        let tied = [record("a", 5, None), record("b", 5, None), record("c", 5, None)];
        let one = KeepTags { most_recently_pushed: Some(1), ..KeepTags::default() };
        assert_eq!(deleted(&tied, &[one]), ["a", "b"]);
    }

    #[test]
    fn attachment_tags_name_their_subject() {
        let hex = "a".repeat(64);
        let subject: Digest = format!("sha256:{hex}").parse().unwrap();
        for tag in [format!("sha256-{hex}"), format!("sha256-{hex}.sig"), format!("sha256-{hex}.att")] {
            assert_eq!(attachment_subject(&tag.parse().unwrap()), Some(subject.clone()), "{tag}");
        }
        for tag in ["latest", "sha256-abc", "sha256-", "main-1.2", &format!("sha256-{}", "g".repeat(64))] {
            assert_eq!(attachment_subject(&tag.parse().unwrap()), None, "{tag}");
        }
    }

    #[test]
    fn the_first_policy_that_names_a_repository_governs_it() {
        let policy = |glob: &str, after: u64| RetentionPolicy {
            repositories: vec![glob.parse().unwrap()],
            keep_tags: Vec::new(),
            delete_untagged_after: Some(Duration::from_secs(after)),
        };
        let retention = Retention { policies: vec![policy("ci/keep/**", 1), policy("ci/**", 2)], dry_run: false };
        let after = |repo: &str| retention.policy_for(&repo.parse().unwrap()).and_then(|p| p.delete_untagged_after);
        assert_eq!(after("ci/keep/app"), Some(Duration::from_secs(1)));
        assert_eq!(after("ci/app"), Some(Duration::from_secs(2)));
        assert_eq!(after("team/app"), None);
    }
}

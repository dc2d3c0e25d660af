//! The behaviour every [`MetaStore`](crate::MetaStore) adapter must show; each adapter's tests call [`run`].

use oci::{Digest, Reference, RepoName, Tag, UploadId};

use crate::{
    AuditEntry, AuditQuery, Error, GateState, GrantRecord, IdentityKind, InspectionState, ManifestRecord, MetaStore, NewManifest, NO_KEPT_TAGS,
    Held, Hold, Page, PrincipalRecord, StoredReport, TagRecord, UploadRecord, Component, ImageVulnerability, NewWaiver, PackageQuery, ReportIndex, Verdict, VerdictWrite, Matches, ReportFacts, ScrubProgress, VerdictBatch, WebhookCursor, WebhookFailure,
};

/// Runs every check against `meta`, panicking on the first failure.
pub async fn run(meta: &dyn MetaStore) {
    blob_links_are_per_repository(meta).await;
    manifests_check_their_references(meta).await;
    tags_and_catalog_page_in_order(meta).await;
    referrers_follow_subjects(meta).await;
    caches_know_their_least_recently_pulled(meta).await;
    orphan_links_are_the_unreferenced_old_ones(meta).await;
    dangling_referrers_go_unless_kept(meta).await;
    immutable_tags_stay_where_they_are(meta).await;
    tags_and_untagged_manifests_for_retention(meta).await;
    uploads_advance_only_from_where_they_are(meta).await;
    principals_grants_and_changes(meta).await;
    audit_is_ordered_and_filtered(meta).await;
    inspections_are_leased_retried_and_completed(meta).await;
    stale_verdicts_page_by_digest_then_repository(meta).await;
    webhook_cursors_and_failures(meta).await;
    damaged_blobs_read_as_absent_until_linked_again(meta).await;
    scrub_progress_is_kept(meta).await;
    quota_holds_count_until_a_later_count_includes_them(meta).await;
}

async fn quota_holds_count_until_a_later_count_includes_them(meta: &dyn MetaStore) {
    let hold = |namespace: &str, bytes: u64, stored: u64, mark: i64, max_bytes: Option<u64>| Hold {
        namespace: namespace.into(),
        bytes,
        stored,
        mark,
        max_bytes,
        expires_ms: 10_000,
        now_ms: 1_000,
    };
    let mark = meta.ledger_mark().await.unwrap();
    assert_eq!(meta.ledger_bytes("quota-a", mark).await.unwrap(), 0);
    // 60 stored of 100: 30 fits, then another 30 does not, whoever asks.
    let Held::Granted(first) = meta.hold(&hold("quota-a", 30, 60, mark, Some(100))).await.unwrap() else { panic!("30 of 40 left") };
    assert_eq!(meta.hold(&hold("quota-a", 30, 60, mark, Some(100))).await.unwrap(), Held::Refused { used: 90 });
    assert_eq!(meta.ledger_bytes("quota-a", mark).await.unwrap(), 30, "a write under way counts");
    assert_eq!(meta.ledger_bytes("quota-b", mark).await.unwrap(), 0, "only in its namespace");
    let Held::Granted(_) = meta.hold(&hold("quota-b", 500, 0, mark, None)).await.unwrap() else { panic!("no limit") };

    // Settled, it still counts for counts begun before; a count begun after the settle has it.
    meta.settle_hold(first, 20_000).await.unwrap();
    assert_eq!(meta.ledger_bytes("quota-a", mark).await.unwrap(), 30, "settled after the count's mark");
    let later = meta.ledger_mark().await.unwrap();
    assert!(later > mark);
    assert_eq!(meta.ledger_bytes("quota-a", later).await.unwrap(), 0, "in any count begun after it settled");

    // A released hold counts no more; neither does one past its expiry, nor a settled row.
    let Held::Granted(second) = meta.hold(&hold("quota-a", 40, 60, later, Some(100))).await.unwrap() else { panic!("40 of 40") };
    assert_eq!(meta.hold(&hold("quota-a", 1, 60, later, Some(100))).await.unwrap(), Held::Refused { used: 100 });
    meta.release_hold(second).await.unwrap();
    assert_eq!(meta.ledger_bytes("quota-a", later).await.unwrap(), 0);
    let expired = Hold { now_ms: 30_000, expires_ms: 40_000, ..hold("quota-c", 1, 0, later, Some(1)) };
    let Held::Granted(_) = meta.hold(&expired).await.unwrap() else { panic!("expired holds are gone") };
    assert_eq!(meta.ledger_bytes("quota-a", mark).await.unwrap(), 0, "the settled row expired at 20 000");
    assert_eq!(meta.ledger_bytes("quota-b", mark).await.unwrap(), 0, "the unsettled one at 10 000");
}

async fn damaged_blobs_read_as_absent_until_linked_again(meta: &dyn MetaStore) {
    let (a, b) = (&repo("damage/a"), &repo("damage/b"));
    let layer = d("damage-layer");
    meta.link_blob(a, &layer, 7).await.unwrap();
    meta.link_blob(b, &layer, 7).await.unwrap();
    assert!(meta.mark_damaged(&layer, "hashes to sha256:ff", 1_000).await.unwrap());
    assert!(!meta.mark_damaged(&layer, "missing", 2_000).await.unwrap(), "marked once; the first reason stays");
    assert_eq!(meta.linked_blob(a, &layer).await.unwrap(), None, "a damaged blob reads as absent");
    assert_eq!(meta.linked_blob(b, &layer).await.unwrap(), None, "in every repository");
    let image = |name: &str| manifest(name, &[("damage-layer", 7)]);
    let refused = meta.put_manifest(a, &image("damage-image")).await;
    assert!(matches!(refused, Err(Error::MissingReference(ref x)) if *x == layer), "{refused:?}");
    let listed = meta.damaged_blobs(10).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!((&listed[0].digest, listed[0].reason.as_str(), listed[0].found_at_ms, listed[0].in_use), (&layer, "hashes to sha256:ff", 1_000, true));
    assert_eq!(meta.forget_unused_damage().await.unwrap(), 0, "still linked: kept");

    // Good bytes linked again (a finished upload) repair it in every repository at once.
    meta.link_blob(b, &layer, 7).await.unwrap();
    assert_eq!(meta.linked_blob(a, &layer).await.unwrap(), Some(7));
    assert_eq!(meta.damaged_blobs(10).await.unwrap(), vec![]);
    meta.put_manifest(a, &image("damage-image")).await.unwrap();

    // A manifest stored again repairs its own digest.
    let manifest = d("damage-image");
    meta.mark_damaged(&manifest, "missing", 3_000).await.unwrap();
    assert_eq!(meta.damaged_blobs(10).await.unwrap()[0].digest, manifest);
    meta.put_manifest(a, &image("damage-image")).await.unwrap();
    assert_eq!(meta.damaged_blobs(10).await.unwrap(), vec![]);

    // A mark on a digest nothing needs any more is forgotten.
    let gone = d("damage-gone");
    meta.mark_damaged(&gone, "missing", 4_000).await.unwrap();
    assert!(!meta.damaged_blobs(10).await.unwrap()[0].in_use);
    assert_eq!(meta.forget_unused_damage().await.unwrap(), 1);
    assert_eq!(meta.damaged_blobs(10).await.unwrap(), vec![]);
}

async fn scrub_progress_is_kept(meta: &dyn MetaStore) {
    assert_eq!(meta.scrub_progress().await.unwrap(), None);
    let mid = ScrubProgress { after: Some(d("scrubbed")), pass_started_ms: 10, last_pass_ended_ms: None };
    meta.save_scrub_progress(&mid).await.unwrap();
    assert_eq!(meta.scrub_progress().await.unwrap(), Some(mid));
    let done = ScrubProgress { after: None, pass_started_ms: 10, last_pass_ended_ms: Some(20) };
    meta.save_scrub_progress(&done).await.unwrap();
    assert_eq!(meta.scrub_progress().await.unwrap(), Some(done));
}

async fn webhook_cursors_and_failures(meta: &dyn MetaStore) {
    assert_eq!(meta.webhook_cursor("ci").await.unwrap(), None);
    meta.append_audit(&audit("ann", "push", "conf/hooks:v1@sha256:00")).await.unwrap();
    let head = meta.audit_head().await.unwrap();
    assert!(head > 0);
    let log = meta.audit(&AuditQuery { after_id: head - 1, limit: 10, actor: None, action_prefix: None }).await.unwrap();
    assert_eq!(log.last().map(|r| r.id), Some(head), "the head is the newest entry");
    let waiting = WebhookCursor { after_id: head - 1, attempts: 2, next_at_ms: 5_000, last_error: Some("503 from the receiver".into()) };
    meta.save_webhook_cursor("ci", &waiting, None).await.unwrap();
    assert_eq!(meta.webhook_cursor("ci").await.unwrap(), Some(waiting));
    assert_eq!(meta.webhook_cursor("other").await.unwrap(), None, "per webhook");
    let failure = WebhookFailure { hook: "ci".into(), audit_id: head, error: "503 from the receiver".into(), at_ms: 6_000 };
    let past = WebhookCursor { after_id: head, ..WebhookCursor::default() };
    meta.save_webhook_cursor("ci", &past, Some(&failure)).await.unwrap();
    assert_eq!(meta.webhook_cursor("ci").await.unwrap(), Some(past));
    assert_eq!(meta.webhook_failures(10).await.unwrap(), vec![failure]);
}

fn repo(s: &str) -> RepoName {
    s.parse().unwrap()
}

fn tag(s: &str) -> Tag {
    s.parse().unwrap()
}

fn d(s: &str) -> Digest {
    Digest::sha256_of(s.as_bytes())
}

/// Manifest `name` of `blobs` (name and size), untagged, with nothing else asked of it.
fn manifest(name: &str, blobs: &[(&str, u64)]) -> NewManifest {
    NewManifest {
        record: record(name),
        blobs: blobs.iter().map(|(b, size)| (d(b), *size)).collect(),
        children: vec![],
        tag: None,
        inspect: false,
        pushed_by: None,
        children_optional: false,
        tag_immutable: false,
    }
}

/// Manifest `name` of the one-byte blob `layer`, with an optional subject, tag and children.
fn layered(name: &str, layer: &str, subject: Option<&str>, tag: Option<&str>, children: &[&str]) -> NewManifest {
    NewManifest {
        record: ManifestRecord { subject: subject.map(d), ..record(name) },
        children: children.iter().map(|c| d(c)).collect(),
        tag: tag.map(self::tag),
        ..manifest(name, &[(layer, 1)])
    }
}

fn record(name: &str) -> ManifestRecord {
    ManifestRecord {
        digest: d(name),
        media_type: oci::media_type::OCI_MANIFEST.into(),
        size: 100,
        artifact_type: None,
        subject: None,
        annotations: None,
    }
}

fn page(n: usize, last: Option<&str>) -> Page {
    Page { n, last: last.map(str::to_owned) }
}

async fn blob_links_are_per_repository(meta: &dyn MetaStore) {
    let (a, b) = (repo("conf/a"), repo("conf/b"));
    meta.link_blob(&a, &d("x"), 5).await.unwrap();
    meta.link_blob(&a, &d("x"), 5).await.unwrap();
    assert_eq!(meta.linked_blob(&a, &d("x")).await.unwrap(), Some(5));
    assert_eq!(meta.linked_blob(&b, &d("x")).await.unwrap(), None);
    assert!(meta.unlink_blob(&a, &d("x")).await.unwrap());
    assert!(!meta.unlink_blob(&a, &d("x")).await.unwrap());
    assert_eq!(meta.linked_blob(&a, &d("x")).await.unwrap(), None);
}

async fn manifests_check_their_references(meta: &dyn MetaStore) {
    let r = repo("conf/m");
    let image =
        NewManifest { tag: Some(tag("v1")), pushed_by: Some("ann".into()), ..manifest("image", &[("config", 2), ("layer", 10)]) };
    meta.link_blob(&r, &d("config"), 2).await.unwrap();
    let missing = meta.put_manifest(&r, &image).await.unwrap_err();
    assert!(matches!(missing, Error::MissingReference(x) if x == d("layer")));
    meta.link_blob(&r, &d("layer"), 11).await.unwrap();
    let wrong = meta.put_manifest(&r, &image).await.unwrap_err();
    assert!(matches!(wrong, Error::SizeMismatch { declared: 10, actual: 11, .. }));
    assert_eq!(meta.manifest(&r, &Reference::Tag(tag("v1"))).await.unwrap(), None, "nothing partial");
    meta.unlink_blob(&r, &d("layer")).await.unwrap();
    meta.link_blob(&r, &d("layer"), 10).await.unwrap();
    meta.put_manifest(&r, &image).await.unwrap();
    meta.put_manifest(&r, &NewManifest { pushed_by: Some("bob".into()), ..image.clone() }).await.unwrap();
    assert_eq!(meta.pushed_by(&r, &d("image")).await.unwrap().as_deref(), Some("ann"), "the first push is who pushed");
    assert_eq!(meta.pushed_by(&r, &d("nothing")).await.unwrap(), None);
    let by_tag = meta.manifest(&r, &Reference::Tag(tag("v1"))).await.unwrap().unwrap();
    assert_eq!(by_tag, record("image"));
    assert_eq!(meta.manifest(&r, &Reference::Digest(d("image"))).await.unwrap(), Some(record("image")));
    assert_eq!(meta.manifest(&repo("conf/other"), &Reference::Digest(d("image"))).await.unwrap(), None);

    let index = NewManifest { children: vec![d("image")], tag: Some(tag("multi")), ..manifest("index", &[]) };
    meta.put_manifest(&r, &index).await.unwrap();
    let orphan = NewManifest { children: vec![d("nope")], inspect: true, ..manifest("orphan", &[]) };
    assert!(matches!(meta.put_manifest(&r, &orphan).await, Err(Error::MissingReference(_))));
    // A mirror's index: its children arrive when they are pulled; until then it is judged by
    // the children present (none: unjudged).
    let mirrored = NewManifest { record: record("mirrored"), children: vec![d("absent")], inspect: false, children_optional: true, ..orphan.clone() };
    meta.put_manifest(&r, &mirrored).await.unwrap();
    assert!(meta.manifest(&r, &Reference::Digest(d("mirrored"))).await.unwrap().is_some());
    assert_eq!(meta.gate_state(&r, &d("mirrored")).await.unwrap(), crate::GateState::Unjudged);
    assert!(meta.delete_manifest(&r, &d("mirrored"), NO_KEPT_TAGS).await.unwrap());

    // Moving a tag, deleting a tag, deleting a manifest with its tags.
    meta.put_manifest(&r, &NewManifest { tag: Some(tag("v1")), ..index.clone() }).await.unwrap();
    assert_eq!(meta.manifest(&r, &Reference::Tag(tag("v1"))).await.unwrap().unwrap().digest, d("index"));
    assert!(meta.delete_tag(&r, &tag("v1")).await.unwrap());
    assert!(!meta.delete_tag(&r, &tag("v1")).await.unwrap());
    assert!(meta.manifest(&r, &Reference::Digest(d("index"))).await.unwrap().is_some(), "tag delete keeps the manifest");
    assert!(meta.delete_manifest(&r, &d("index"), NO_KEPT_TAGS).await.unwrap());
    assert!(!meta.delete_manifest(&r, &d("index"), NO_KEPT_TAGS).await.unwrap());
    assert_eq!(meta.manifest(&r, &Reference::Tag(tag("multi"))).await.unwrap(), None);
}

async fn tags_and_catalog_page_in_order(meta: &dyn MetaStore) {
    let r = repo("conf/tags");
    let names = ["b", "a", "C", "a1", "_z"];
    meta.link_blob(&r, &d("c"), 1).await.unwrap();
    for n in names {
        let m = NewManifest { tag: Some(tag(n)), ..manifest("t", &[("c", 1)]) };
        meta.put_manifest(&r, &m).await.unwrap();
    }
    let strings = |l: &crate::Listing<Tag>| l.entries.iter().map(|t| t.to_string()).collect::<Vec<_>>();
    let all = meta.tags(&r, &page(100, None)).await.unwrap().unwrap();
    assert_eq!(strings(&all), ["C", "_z", "a", "a1", "b"]);
    assert!(!all.more);
    let first = meta.tags(&r, &page(2, None)).await.unwrap().unwrap();
    assert_eq!((strings(&first), first.more), (vec!["C".to_owned(), "_z".to_owned()], true));
    let next = meta.tags(&r, &page(2, Some("_z"))).await.unwrap().unwrap();
    assert_eq!((strings(&next), next.more), (vec!["a".to_owned(), "a1".to_owned()], true));
    let last = meta.tags(&r, &page(2, Some("a1"))).await.unwrap().unwrap();
    assert_eq!((strings(&last), last.more), (vec!["b".to_owned()], false));
    assert!(meta.tags(&r, &page(0, None)).await.unwrap().unwrap().entries.is_empty());
    assert_eq!(meta.tags(&repo("conf/none"), &page(10, None)).await.unwrap(), None);

    let catalog = meta.repositories(&page(1000, Some("conf/"))).await.unwrap();
    let got: Vec<_> = catalog.entries.iter().map(|r| r.to_string()).filter(|r| r.starts_with("conf/")).collect();
    let mut sorted = got.clone();
    sorted.sort();
    assert_eq!(got, sorted);
    assert!(got.contains(&"conf/tags".to_owned()) && got.contains(&"conf/a".to_owned()));
    let one = meta.repositories(&page(1, Some("conf/a"))).await.unwrap();
    assert_eq!(one.entries[0].to_string(), "conf/m");
    assert!(one.more);
}

async fn tags_and_untagged_manifests_for_retention(meta: &dyn MetaStore) {
    let r = &repo("retention/app");
    meta.link_blob(r, &d("retention-layer"), 1).await.unwrap();
    let manifest = |name, subject, tag, children: &[&str]| layered(name, "retention-layer", subject, tag, children);
    let now = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let tick = || std::thread::sleep(std::time::Duration::from_millis(3));
    let started = now();
    meta.put_manifest(r, &manifest("ret-1", None, Some("v1"), &[])).await.unwrap();
    meta.put_manifest(r, &manifest("ret-2", None, Some("main"), &[])).await.unwrap();
    meta.put_manifest(r, &manifest("ret-sbom", Some("ret-1"), None, &[])).await.unwrap();
    meta.put_manifest(r, &manifest("ret-child", None, None, &[])).await.unwrap();
    meta.put_manifest(r, &manifest("ret-index", None, None, &["ret-child"])).await.unwrap();
    meta.put_manifest(r, &manifest("ret-pulled", None, None, &[])).await.unwrap();
    tick();
    let stored = now();
    tick();
    // `main` moves on: ret-2 has been untagged since now.
    meta.put_manifest(r, &manifest("ret-3", None, Some("main"), &[])).await.unwrap();
    let moved = now();
    tick();
    meta.record_pulls(&[(r.clone(), d("ret-pulled"), moved + 2), (r.clone(), d("ret-1"), moved + 1)]).await.unwrap();

    let records = meta.tag_records(r).await.unwrap();
    assert_eq!(records.iter().map(|t| (t.tag.as_str(), t.digest.clone())).collect::<Vec<_>>(), vec![("main", d("ret-3")), ("v1", d("ret-1"))]);
    assert!(records[0].pushed_at_ms > stored && records[0].pushed_at_ms <= moved && records[1].pushed_at_ms < stored, "when pushed");
    assert_eq!((records[0].pulled_at_ms, records[1].pulled_at_ms), (None, Some(moved + 1)), "pulls of the tag's manifest");
    assert!(meta.tag_records(&repo("retention/none")).await.unwrap().is_empty());

    // Idle and untagged: the index (its child is kept by it), not the SBOM (its subject keeps
    // it), not what is tagged; ret-2 only once its untagging is old, ret-pulled once its pull is.
    let idle = |before: i64| async move { meta.idle_untagged(r, before, 10).await.unwrap() };
    assert!(idle(started).await.is_empty(), "nothing is that old");
    assert_eq!(idle(stored + 1).await, vec![d("ret-index")]);
    let mut want = vec![d("ret-index"), d("ret-2")];
    want.sort();
    assert_eq!(idle(moved + 1).await, want);
    want.push(d("ret-pulled"));
    want.sort();
    assert_eq!(idle(now() + 60_000).await, want);
    assert_eq!(meta.idle_untagged(r, now() + 60_000, 1).await.unwrap().len(), 1, "the limit holds");

    // A tag is deleted only as it was read.
    let v1 = records[1].clone();
    let stale = TagRecord { pushed_at_ms: v1.pushed_at_ms - 1, ..v1.clone() };
    assert!(!meta.delete_tag_if_unchanged(r, &stale).await.unwrap(), "pushed again since");
    let moved_away = TagRecord { digest: d("ret-2"), ..v1.clone() };
    assert!(!meta.delete_tag_if_unchanged(r, &moved_away).await.unwrap(), "points elsewhere now");
    tick();
    let before_untag = now();
    assert!(meta.delete_tag_if_unchanged(r, &v1).await.unwrap());
    assert!(!meta.delete_tag_if_unchanged(r, &v1).await.unwrap(), "already gone");
    assert!(meta.manifest(r, &Reference::Digest(d("ret-1"))).await.unwrap().is_some(), "the tag only");
    assert!(!idle(before_untag).await.contains(&d("ret-1")), "untagged from when its tag went");
    assert!(idle(now() + 60_000).await.contains(&d("ret-1")));
    // So does a plain tag delete.
    assert!(meta.delete_tag(r, &tag("main")).await.unwrap());
    assert!(!idle(before_untag).await.contains(&d("ret-3")));

    // Deleting: the index first, its child on the next call; the SBOM stays with its subject.
    let far = now() + 60_000;
    let deleted = meta.delete_idle_untagged(r, far, 10).await.unwrap();
    assert!(deleted.contains(&d("ret-index")) && !deleted.contains(&d("ret-child")), "{deleted:?}");
    assert_eq!(deleted.len(), 5, "ret-1, ret-2, ret-3, ret-index, ret-pulled: {deleted:?}");
    assert_eq!(meta.delete_idle_untagged(r, far, 10).await.unwrap(), vec![d("ret-child")]);
    assert!(meta.delete_idle_untagged(r, far, 10).await.unwrap().is_empty());
    assert!(meta.manifest(r, &Reference::Digest(d("ret-sbom"))).await.unwrap().is_some(), "a referrer waits for collection");
    assert!(meta.tag_records(r).await.unwrap().is_empty());
}

async fn caches_know_their_least_recently_pulled(meta: &dyn MetaStore) {
    let (a, b, other) = (repo("cache/a"), repo("cache/b"), repo("cache_x/c"));
    for (r, blob, size) in [(&a, "x", 5), (&a, "y", 7), (&b, "x", 5), (&b, "z", 11), (&other, "w", 100)] {
        meta.link_blob(r, &d(blob), size).await.unwrap();
    }
    assert_eq!(meta.linked_bytes("cache", &[]).await.unwrap(), 23, "distinct blobs under cache/ only (not cache_x/)");
    assert_eq!(meta.linked_bytes("nothing", &[]).await.unwrap(), 0);
    assert!(meta.linked_under("cache", &[], &d("x")).await.unwrap() && meta.linked_under("cache", &[], &d("z")).await.unwrap());
    assert!(!meta.linked_under("cache", &[], &d("w")).await.unwrap(), "w is under cache_x/, not cache/");
    assert!(meta.linked_under("cache_x", &[], &d("w")).await.unwrap() && !meta.linked_under("cache/a", &[], &d("x")).await.unwrap());
    // Names under a nested prefix left out: the nested prefix's own repository stays in.
    for (r, blob, size) in [("nest/a", "x", 5), ("nest/a/b", "x", 5), ("nest/a/b", "z", 11), ("nest/c", "y", 7)] {
        meta.link_blob(&repo(r), &d(blob), size).await.unwrap();
    }
    assert_eq!(meta.linked_bytes("nest", &[]).await.unwrap(), 23);
    assert_eq!(meta.linked_bytes("nest", &["nest/a"]).await.unwrap(), 12, "x (still linked in nest/a) and y");
    assert_eq!(meta.linked_bytes("nest", &["nest/a", "nest/c"]).await.unwrap(), 12, "nothing is under nest/c/");
    assert_eq!(meta.linked_bytes("nest/a", &[]).await.unwrap(), 16);
    assert!(meta.linked_under("nest", &["nest/a"], &d("x")).await.unwrap());
    assert!(!meta.linked_under("nest", &["nest/a"], &d("z")).await.unwrap(), "z is only under the prefix left out");
    assert!(meta.linked_under("nest", &["nest/c"], &d("z")).await.unwrap());
    let image = |name: &str, blobs: &[(&str, u64)], subject: Option<&str>| NewManifest {
        record: ManifestRecord { subject: subject.map(d), ..record(name) },
        ..manifest(name, blobs)
    };
    meta.put_manifest(&a, &image("m1", &[("x", 5), ("y", 7)], None)).await.unwrap();
    meta.put_manifest(&b, &image("m2", &[("x", 5), ("z", 11)], None)).await.unwrap();
    meta.put_manifest(&a, &image("r1", &[("y", 7)], Some("m1"))).await.unwrap();
    assert_eq!(meta.linked_bytes("cache", &[]).await.unwrap(), 23 + 300, "the manifests m1, m2 and r1 (100 bytes each) count");
    assert_eq!(meta.linked_bytes("cache", &["cache/a"]).await.unwrap(), 23 + 300, "cache/a is not under cache/a/");
    assert!(meta.linked_under("cache", &[], &d("m2")).await.unwrap() && !meta.linked_under("cache_x", &[], &d("m2")).await.unwrap());
    let lru = |before: i64| async move {
        meta.least_recently_pulled("cache", before, 10).await.unwrap().into_iter().map(|c| (c.repo.to_string(), c.digest)).collect::<Vec<_>>()
    };
    assert_eq!(lru(i64::MAX).await, vec![("cache/a".into(), d("m1")), ("cache/b".into(), d("m2"))], "never pulled: by when stored; referrers left out");
    assert!(lru(0).await.is_empty());
    // Pulled later than it was stored: m1 is now the most recent.
    let later = 4_000_000_000_000;
    meta.record_pulls(&[(a.clone(), d("m1"), later + 100)]).await.unwrap();
    meta.record_pulls(&[(a.clone(), d("m1"), later)]).await.unwrap();
    assert_eq!(lru(i64::MAX).await, vec![("cache/b".into(), d("m2")), ("cache/a".into(), d("m1"))]);
    assert_eq!(lru(later + 100).await, vec![("cache/b".into(), d("m2"))], "an earlier pull does not replace a later one");
    let used = meta.least_recently_pulled("cache", i64::MAX, 10).await.unwrap();
    assert_eq!(used[1].last_used_ms, later + 100);

    // A blob stays linked while a manifest of the repository references it.
    assert!(!meta.unlink_unreferenced_blob(&a, &d("x"), i64::MAX).await.unwrap());
    assert!(meta.delete_manifest(&a, &d("m1"), NO_KEPT_TAGS).await.unwrap());
    assert!(meta.unlink_unreferenced_blob(&a, &d("x"), i64::MAX).await.unwrap());
    assert!(!meta.unlink_unreferenced_blob(&a, &d("y"), i64::MAX).await.unwrap(), "the referrer still references y");
    assert!(meta.digest_in_use(&d("x")).await.unwrap(), "still linked in cache/b");
    assert!(meta.digest_in_use(&d("m2")).await.unwrap(), "a manifest's bytes");
    assert!(!meta.digest_in_use(&d("m1")).await.unwrap());
    meta.put_manifest(&a, &image("m1", &[("y", 7)], None)).await.unwrap();
    assert!(
        meta.least_recently_pulled("cache", i64::MAX, 10).await.unwrap().iter().all(|c| c.last_used_ms < later),
        "a deleted manifest's pulls go with it"
    );
}

async fn orphan_links_are_the_unreferenced_old_ones(meta: &dyn MetaStore) {
    let (a, b) = (repo("orphans/a"), repo("orphans/b"));
    for (r, blob) in [(&a, "layer"), (&a, "left"), (&b, "layer")] {
        meta.link_blob(r, &d(blob), 3).await.unwrap();
    }
    let image = manifest("orphans-image", &[("layer", 3)]);
    meta.put_manifest(&a, &image).await.unwrap();
    let mine = |links: Vec<(RepoName, Digest)>| -> Vec<(String, Digest)> {
        links.into_iter().filter(|(r, _)| r.as_str().starts_with("orphans/")).map(|(r, d)| (r.to_string(), d)).collect()
    };
    let now = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let soon = now() + 60_000;
    // `layer` is referenced in a, not in b (a reference holds only in its own repository).
    let mut want = vec![("orphans/a".to_owned(), d("left")), ("orphans/b".to_owned(), d("layer"))];
    want.sort();
    assert_eq!(mine(meta.orphan_links(soon, usize::MAX).await.unwrap()), want);
    assert!(mine(meta.orphan_links(0, usize::MAX).await.unwrap()).is_empty(), "none linked before the epoch");
    assert_eq!(meta.orphan_links(soon, 1).await.unwrap().len(), 1, "the limit holds");
    // Linked again (pushed or mounted once more): it counts as new.
    std::thread::sleep(std::time::Duration::from_millis(5));
    let between = now();
    std::thread::sleep(std::time::Duration::from_millis(5));
    meta.link_blob(&a, &d("left"), 3).await.unwrap();
    assert_eq!(mine(meta.orphan_links(between, usize::MAX).await.unwrap()), vec![("orphans/b".to_owned(), d("layer"))]);
    // Found by a client (a HEAD): an old link is renewed, a recent one left as it is, an absent
    // one reported absent.
    std::thread::sleep(std::time::Duration::from_millis(5));
    let found_at = now();
    assert!(meta.renew_link(&b, &d("layer"), between, found_at).await.unwrap(), "linked before `between`: renewed");
    assert!(meta.renew_link(&a, &d("left"), 0, found_at).await.unwrap(), "linked, and recent enough: kept as it is");
    assert!(!meta.renew_link(&b, &d("left"), found_at, found_at).await.unwrap(), "not linked in b");
    assert!(mine(meta.orphan_links(between, usize::MAX).await.unwrap()).is_empty(), "the found link counts as new");
    assert!(!meta.unlink_unreferenced_blob(&b, &d("layer"), found_at).await.unwrap(), "renewed at found_at: not before it");
    assert!(!meta.unlink_unreferenced_blob(&a, &d("left"), between).await.unwrap(), "linked after between");
    // Once its manifest is gone, a layer is an orphan too.
    assert!(meta.delete_manifest(&a, &d("orphans-image"), NO_KEPT_TAGS).await.unwrap());
    assert_eq!(mine(meta.orphan_links(soon, usize::MAX).await.unwrap()).len(), 3);
    for (r, blob) in [(&a, "layer"), (&a, "left"), (&b, "layer")] {
        assert!(meta.unlink_unreferenced_blob(r, &d(blob), soon).await.unwrap());
    }
    assert!(!meta.renew_link(&b, &d("layer"), soon, soon).await.unwrap(), "unlinked: nothing to renew");
    assert!(mine(meta.orphan_links(soon, usize::MAX).await.unwrap()).is_empty());
}

async fn immutable_tags_stay_where_they_are(meta: &dyn MetaStore) {
    let r = repo("immutable/app");
    meta.link_blob(&r, &d("immutable-layer"), 1).await.unwrap();
    let image = |name, tag: &str, tag_immutable| NewManifest { tag_immutable, ..layered(name, "immutable-layer", None, Some(tag), &[]) };
    let tagged = async |t: &str| meta.manifest(&r, &Reference::Tag(tag(t))).await.unwrap().map(|m| m.digest);
    meta.put_manifest(&r, &image("one", "v1", true)).await.unwrap();
    meta.put_manifest(&r, &image("one", "v1", true)).await.expect("pushed again onto the manifest it points at");
    match meta.put_manifest(&r, &image("two", "v1", true)).await {
        Err(Error::TagImmutable { tag: t, digest }) => assert_eq!((t, digest), (tag("v1"), d("one"))),
        other => panic!("an immutable tag moved: {other:?}"),
    }
    assert_eq!(tagged("v1").await, Some(d("one")));
    assert_eq!(meta.manifest(&r, &Reference::Digest(d("two"))).await.unwrap(), None, "nothing of the refused push is recorded");
    meta.put_manifest(&r, &image("two", "latest", true)).await.expect("a new tag");
    meta.put_manifest(&r, &image("two", "v1", false)).await.expect("the caller decides what is immutable");
    assert_eq!(tagged("v1").await, Some(d("two")));

    // A manifest with a kept tag is not deleted, nor are its other tags.
    let v1: &(dyn Fn(&Tag) -> bool + Sync) = &|t| t.as_str() == "v1";
    match meta.delete_manifest(&r, &d("two"), v1).await {
        Err(Error::TagImmutable { tag: t, digest }) => assert_eq!((t, digest), (tag("v1"), d("two"))),
        other => panic!("a manifest with an immutable tag was deleted: {other:?}"),
    }
    assert_eq!((tagged("v1").await, tagged("latest").await), (Some(d("two")), Some(d("two"))));
    assert!(meta.delete_manifest(&r, &d("one"), v1).await.unwrap(), "no tag left on it");
    assert!(meta.delete_tag(&r, &tag("v1")).await.unwrap());
    assert!(meta.delete_manifest(&r, &d("two"), v1).await.unwrap(), "its tag v1 was deleted first");
    assert_eq!(tagged("latest").await, None);
}

async fn dangling_referrers_go_unless_kept(meta: &dyn MetaStore) {
    let r = repo("dangling/app");
    meta.link_blob(&r, &d("dangling-layer"), 1).await.unwrap();
    let manifest = |name, subject, tag, children: &[&str]| layered(name, "dangling-layer", subject, tag, children);
    meta.put_manifest(&r, &manifest("image", None, Some("v1"), &[])).await.unwrap();
    meta.put_manifest(&r, &manifest("sbom", Some("image"), None, &[])).await.unwrap();
    meta.put_manifest(&r, &manifest("sbom-sig", Some("sbom"), None, &[])).await.unwrap();
    meta.put_manifest(&r, &manifest("tagged-sig", Some("image"), Some("sig"), &[])).await.unwrap();
    meta.put_manifest(&r, &manifest("early", Some("not-yet-pushed"), None, &[])).await.unwrap();
    meta.put_manifest(&r, &manifest("child", Some("gone-too"), None, &[])).await.unwrap();
    meta.put_manifest(&r, &manifest("index", None, Some("multi"), &["child"])).await.unwrap();
    let soon = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64 + 60_000;
    let mine = |v: Vec<(RepoName, Digest)>| -> Vec<Digest> { v.into_iter().filter(|(x, _)| x == &r).map(|(_, d)| d).collect() };

    // While the image is there, only the referrer of what was never pushed dangles; not yet old.
    assert!(mine(meta.delete_dangling_referrers(0, usize::MAX).await.unwrap()).is_empty());
    assert_eq!(mine(meta.delete_dangling_referrers(soon, usize::MAX).await.unwrap()), vec![d("early")]);
    // The image goes: its SBOM dangles, then the SBOM's signature; the tagged signature and the
    // index's child are kept.
    assert!(meta.delete_manifest(&r, &d("image"), NO_KEPT_TAGS).await.unwrap());
    assert_eq!(mine(meta.delete_dangling_referrers(soon, usize::MAX).await.unwrap()), vec![d("sbom")]);
    assert_eq!(mine(meta.delete_dangling_referrers(soon, usize::MAX).await.unwrap()), vec![d("sbom-sig")]);
    assert!(mine(meta.delete_dangling_referrers(soon, usize::MAX).await.unwrap()).is_empty());
    for (kept, why) in [("tagged-sig", "tagged"), ("child", "in an index")] {
        assert!(meta.manifest(&r, &Reference::Digest(d(kept))).await.unwrap().is_some(), "{why}");
    }
    assert!(meta.referrers(&r, &d("sbom"), None).await.unwrap().is_empty(), "gone with its references");
}

async fn referrers_follow_subjects(meta: &dyn MetaStore) {
    let r = repo("conf/refs");
    meta.link_blob(&r, &d("c"), 1).await.unwrap();
    for (name, at) in [("sig", "application/sig"), ("sbom", "application/sbom"), ("sbom2", "application/sbom")] {
        let m = NewManifest {
            record: ManifestRecord {
                artifact_type: Some(at.into()),
                subject: Some(d("subject")),
                annotations: Some(r#"{"k":"v"}"#.into()),
                ..record(name)
            },
            ..manifest(name, &[("c", 1)])
        };
        meta.put_manifest(&r, &m).await.unwrap();
    }
    assert_eq!(meta.referrers(&r, &d("subject"), None).await.unwrap().len(), 3);
    let sboms = meta.referrers(&r, &d("subject"), Some("application/sbom")).await.unwrap();
    assert_eq!(sboms.len(), 2);
    assert!(sboms.iter().all(|m| m.annotations.as_deref() == Some(r#"{"k":"v"}"#)));
    assert!(meta.referrers(&r, &d("other"), None).await.unwrap().is_empty());
    assert!(meta.referrers(&repo("conf/elsewhere"), &d("subject"), None).await.unwrap().is_empty());
    meta.delete_manifest(&r, &d("sig"), NO_KEPT_TAGS).await.unwrap();
    assert_eq!(meta.referrers(&r, &d("subject"), None).await.unwrap().len(), 2);
}

async fn uploads_advance_only_from_where_they_are(meta: &dyn MetaStore) {
    let id = UploadId::new("conf-upload-1").unwrap();
    let r = repo("conf/up");
    let rec = UploadRecord {
        id: id.clone(),
        repo: r.clone(),
        received: 0,
        hash_state: vec![1, 2],
        started_at_ms: 1000,
        updated_at_ms: 1000,
    };
    let before = meta.count_uploads().await.unwrap();
    meta.create_upload(&rec).await.unwrap();
    assert!(matches!(meta.create_upload(&rec).await, Err(Error::UploadExists(_))));
    assert_eq!(meta.count_uploads().await.unwrap(), before + 1);
    assert!(meta.advance_upload(&id, 0, 10, &[3], 2000).await.unwrap());
    assert!(!meta.advance_upload(&id, 0, 20, &[4], 2000).await.unwrap(), "a stale writer loses");
    let got = meta.upload(&id).await.unwrap().unwrap();
    assert_eq!((got.received, got.hash_state, got.updated_at_ms), (10, vec![3], 2000));
    assert_eq!(meta.stale_uploads(2001, 10).await.unwrap().iter().filter(|u| u.id == id).count(), 1);
    assert!(meta.stale_uploads(2000, 10).await.unwrap().iter().all(|u| u.id != id));
    // A purge that read the session as idle does not end it once it has moved on.
    assert!(meta.advance_upload(&id, 10, 12, &[5], 2500).await.unwrap());
    assert!(!meta.delete_stale_upload(&id, 2001).await.unwrap(), "updated at 2500, after the purge's cut");
    assert_eq!(meta.upload(&id).await.unwrap().map(|u| u.received), Some(12));
    meta.finish_upload(&id, &r, &d("uploaded"), 12).await.unwrap();
    assert_eq!(meta.upload(&id).await.unwrap(), None);
    assert_eq!(meta.linked_blob(&r, &d("uploaded")).await.unwrap(), Some(12));
    let other = UploadRecord { id: UploadId::new("conf-upload-2").unwrap(), ..rec };
    meta.create_upload(&other).await.unwrap();
    assert!(meta.delete_upload(&other.id).await.unwrap());
    assert!(!meta.delete_upload(&other.id).await.unwrap());

    // Sessions are written without the write lock, each statement deciding by its own row: at
    // once, of sixteen writers from the same offset exactly one advances it, and of eight
    // creates of one id exactly one makes it (on PostgreSQL these run on as many sessions).
    let raced = UploadRecord { id: UploadId::new("conf-upload-3").unwrap(), ..other };
    let creates = futures::future::join_all((0..8).map(|_| meta.create_upload(&raced))).await;
    assert_eq!(creates.iter().filter(|c| c.is_ok()).count(), 1, "{creates:?}");
    assert!(creates.iter().all(|c| matches!(c, Ok(()) | Err(Error::UploadExists(_)))), "{creates:?}");
    let states: Vec<[u8; 1]> = (0..16u8).map(|i| [i]).collect();
    let advances = futures::future::join_all((0..16u8).map(|i| meta.advance_upload(&raced.id, 0, 100 + u64::from(i), &states[usize::from(i)], 3000))).await;
    let won: Vec<u8> = (0..16u8).filter(|&i| *advances[usize::from(i)].as_ref().unwrap()).collect();
    assert_eq!(won.len(), 1, "{advances:?}");
    let got = meta.upload(&raced.id).await.unwrap().unwrap();
    assert_eq!((got.received, got.hash_state), (100 + u64::from(won[0]), vec![won[0]]), "the winner's offset and hash, whole");
    assert!(meta.delete_stale_upload(&raced.id, 3001).await.unwrap(), "idle since 3000");
    assert!(!meta.delete_stale_upload(&raced.id, 3001).await.unwrap(), "gone");
    meta.create_upload(&raced).await.unwrap();
    let deletes = futures::future::join_all((0..4).map(|_| meta.delete_upload(&raced.id))).await;
    assert_eq!(deletes.iter().filter(|d| *d.as_ref().unwrap()).count(), 1, "{deletes:?}");
}

fn audit(actor: &str, action: &str, target: &str) -> AuditEntry {
    AuditEntry { actor: actor.into(), action: action.into(), target: target.into(), client: None, detail: None }
}

async fn principals_grants_and_changes(meta: &dyn MetaStore) {
    let before = meta.access_changes(0).await.unwrap();
    let ann = PrincipalRecord {
        name: "ann".into(),
        kind: IdentityKind::User,
        secret: "$argon2id$x".into(),
        expires_at_ms: None,
        description: "Ann".into(),
        created_at_ms: 1,
        created_by: "admin".into(),
    };
    let reader = GrantRecord { principal: "ann".into(), namespace: "team/**".into(), permission: "reader".into() };
    meta.create_principal(&ann, std::slice::from_ref(&reader), &audit("admin", "user.add", "ann")).await.unwrap();
    assert!(matches!(meta.create_principal(&ann, &[], &audit("admin", "user.add", "ann")).await, Err(Error::Exists(_))));
    assert_eq!(meta.principal("ann").await.unwrap(), Some(ann.clone()));
    assert_eq!(meta.principal("bob").await.unwrap(), None);
    assert_eq!(meta.grants(Some("ann")).await.unwrap(), vec![reader.clone()]);

    let after = meta.access_changes(0).await.unwrap();
    assert!(after.version > before.version, "a change moves the version");
    assert!(after.changed.iter().any(|(p, v)| p == "ann" && *v == after.version), "{after:?}");
    assert!(meta.access_changes(i64::MAX).await.unwrap().changed.is_empty());

    // A grant to the same namespace replaces the earlier one.
    let writer = GrantRecord { permission: "writer".into(), ..reader.clone() };
    meta.grant(&writer, &audit("admin", "role.grant", "ann")).await.unwrap();
    let other = GrantRecord { principal: "anonymous".into(), namespace: "public/**".into(), permission: "reader".into() };
    meta.grant(&other, &audit("admin", "role.grant", "anonymous")).await.unwrap();
    assert_eq!(meta.grants(Some("ann")).await.unwrap(), vec![writer.clone()]);
    assert_eq!(meta.grants(None).await.unwrap().len(), 2);
    assert!(meta.revoke("anonymous", "public/**", &audit("admin", "role.revoke", "anonymous")).await.unwrap());
    assert!(!meta.revoke("anonymous", "public/**", &audit("admin", "role.revoke", "anonymous")).await.unwrap());

    // A hash upgrade applies only over the hash it replaces and is not a change of access.
    let v = meta.access_changes(0).await.unwrap().version;
    assert!(!meta.upgrade_secret("ann", "stale", "$argon2id$y").await.unwrap());
    assert!(meta.upgrade_secret("ann", "$argon2id$x", "$argon2id$y").await.unwrap());
    assert_eq!(meta.access_changes(0).await.unwrap().version, v);
    assert!(meta.set_secret("ann", "$argon2id$z", &audit("ann", "user.passwd", "ann")).await.unwrap());
    assert!(!meta.set_secret("nobody", "x", &audit("ann", "user.passwd", "nobody")).await.unwrap());
    assert_eq!(meta.principal("ann").await.unwrap().unwrap().secret, "$argon2id$z");

    // Removing a principal takes its grants; a new one of the same name starts with none.
    assert!(meta.remove_principal("ann", &audit("admin", "user.rm", "ann")).await.unwrap());
    assert!(!meta.remove_principal("ann", &audit("admin", "user.rm", "ann")).await.unwrap());
    assert!(meta.grants(Some("ann")).await.unwrap().is_empty());
    let robot = PrincipalRecord { name: "robot$ci".into(), kind: IdentityKind::Robot, expires_at_ms: Some(99), ..ann };
    meta.create_principal(&robot, &[], &audit("admin", "robot.create", "robot$ci")).await.unwrap();
    assert_eq!(meta.principals().await.unwrap(), vec![robot]);
}

async fn audit_is_ordered_and_filtered(meta: &dyn MetaStore) {
    let all = |after_id| AuditQuery { after_id, limit: 1000, actor: None, action_prefix: None };
    let start = meta.audit(&all(0)).await.unwrap().last().map_or(0, |r| r.id);
    meta.append_audit(&audit("ci", "push", "team/app@sha256:1")).await.unwrap();
    meta.append_audit(&audit("eve", "login.failed", "eve")).await.unwrap();
    meta.append_audit(&audit("ci", "login", "ci")).await.unwrap();
    let new = meta.audit(&all(start)).await.unwrap();
    let actions: Vec<&str> = new.iter().map(|r| r.entry.action.as_str()).collect();
    assert_eq!(actions, ["push", "login.failed", "login"]);
    assert!(new.windows(2).all(|w| w[0].id < w[1].id && w[0].at_ms <= w[1].at_ms));
    let q = AuditQuery { actor: Some("ci".into()), ..all(start) };
    assert_eq!(meta.audit(&q).await.unwrap().len(), 2);
    let q = AuditQuery { action_prefix: Some("login".into()), ..all(start) };
    let logins: Vec<String> = meta.audit(&q).await.unwrap().into_iter().map(|r| r.entry.action).collect();
    assert_eq!(logins, ["login.failed", "login"]);
    let q = AuditQuery { limit: 1, ..all(start) };
    assert_eq!(meta.audit(&q).await.unwrap().len(), 1);
    // Earlier changes of access were audited in their own transactions.
    let q = AuditQuery { action_prefix: Some("user".into()), ..all(0) };
    assert!(meta.audit(&q).await.unwrap().iter().any(|r| r.entry.action == "user.add" && r.entry.target == "ann"));
}

/// Re-judging reads stale verdicts a page at a time while it writes the page before: each page
/// starts after the last verdict of the one before, whatever was written since.
async fn stale_verdicts_page_by_digest_then_repository(meta: &dyn MetaStore) {
    let verdict = |r: &str, digest: &str, basis: &str| Verdict {
        repo: repo(r),
        digest: d(digest),
        allowed: true,
        enforced: true,
        policy: "p".into(),
        reasons: vec![],
        warnings: vec![],
        basis: basis.into(),
        judged_at_ms: 1,
    };
    for (r, digest) in [("conf/page-b", "page-1"), ("conf/page-a", "page-2"), ("conf/page-a", "page-1"), ("conf/page-b", "page-3"), ("conf/page-c", "page-1")] {
        meta.record_verdict(None, &verdict(r, digest, "old")).await.unwrap();
    }
    meta.record_verdict(None, &verdict("conf/page-b", "page-2", "now")).await.unwrap();
    let all = meta.stale_verdicts("now", None, 10_000).await.unwrap();
    let mut keys: Vec<(String, String)> = all.iter().map(|v| (v.digest.to_string(), v.repo.to_string())).collect();
    let unsorted = keys.clone();
    keys.sort();
    assert_eq!(unsorted, keys, "by digest, then repository");
    let ours: Vec<(&str, &Digest)> = all.iter().filter(|v| v.repo.as_str().starts_with("conf/page-")).map(|v| (v.repo.as_str(), &v.digest)).collect();
    let mut want = [("conf/page-a", d("page-1")), ("conf/page-b", d("page-1")), ("conf/page-c", d("page-1")), ("conf/page-a", d("page-2")), ("conf/page-b", d("page-3"))];
    want.sort_by(|a, b| (&a.1.to_string(), a.0).cmp(&(&b.1.to_string(), b.0)));
    assert_eq!(ours, want.iter().map(|(r, d)| (*r, d)).collect::<Vec<_>>(), "the verdict on the current basis is not stale");
    // Two at a time, each page after the last: the same verdicts, each once, even when the page
    // read is judged again before the next is asked for.
    let mut paged: Vec<Verdict> = Vec::new();
    let mut judged = 0;
    loop {
        let after = paged.last().map(|v| (v.digest.clone(), v.repo.clone()));
        let page = meta.stale_verdicts("now", after.as_ref().map(|(d, r)| (d, r)), 2).await.unwrap();
        assert!(page.len() <= 2);
        let Some(first) = page.first() else { break };
        if first.repo.as_str().starts_with("conf/page-") {
            meta.record_verdict(None, &Verdict { basis: "now".into(), ..first.clone() }).await.unwrap();
            judged += 1;
        }
        paged.extend(page);
    }
    assert_eq!(paged, all);
    assert!(judged > 0);
    let left = meta.stale_verdicts("now", None, 10_000).await.unwrap();
    assert_eq!(left.iter().filter(|v| v.repo.as_str().starts_with("conf/page-")).count(), want.len() - judged);
}

async fn inspections_are_leased_retried_and_completed(meta: &dyn MetaStore) {
    let r = repo("conf/inspect");
    meta.link_blob(&r, &d("ic"), 1).await.unwrap();
    let image = |name: &str, inspect| NewManifest { inspect, ..manifest(name, &[("ic", 1)]) };
    // A refused manifest enqueues nothing; a stored one is queued in the same transaction.
    let orphan = NewManifest { children: vec![d("nope")], ..image("i-orphan", true) };
    assert!(meta.put_manifest(&r, &orphan).await.is_err());
    assert_eq!(meta.inspection_state(&r, &d("i-orphan")).await.unwrap(), None);
    meta.put_manifest(&r, &image("i-plain", false)).await.unwrap();
    assert_eq!(meta.inspection_state(&r, &d("i-plain")).await.unwrap(), None);
    meta.put_manifest(&r, &image("i-one", true)).await.unwrap();
    meta.put_manifest(&r, &image("i-one", true)).await.unwrap();
    assert_eq!(meta.inspection_state(&r, &d("i-one")).await.unwrap(), Some(InspectionState::Queued));

    let now = 4_000_000_000_000; // later than any job's run_after
    let job = meta.claim_inspection(now, 1000).await.unwrap().expect("a queued job");
    assert_eq!((job.repo.as_str(), &job.digest, job.attempts), ("conf/inspect", &d("i-one"), 1));
    assert_eq!(meta.inspection_state(&r, &d("i-one")).await.unwrap(), Some(InspectionState::Running));
    assert_eq!(meta.claim_inspection(now + 10, 1000).await.unwrap(), None, "leased");
    // The worker died: the lease runs out and the job is taken again.
    let again = meta.claim_inspection(now + 1001, 1000).await.unwrap().expect("lease expired");
    assert_eq!((again.id, again.attempts), (job.id, 2));
    // A failure with a retry time: not due before it.
    meta.fail_inspection(job.id, "layer unreadable", Some(now + 5000)).await.unwrap();
    assert_eq!(meta.inspection_state(&r, &d("i-one")).await.unwrap(), Some(InspectionState::Queued));
    assert_eq!(meta.claim_inspection(now + 4000, 1000).await.unwrap(), None);
    let third = meta.claim_inspection(now + 5000, 1000).await.unwrap().expect("due again");
    assert_eq!(third.attempts, 3);
    assert_eq!(meta.gate_state(&r, &d("i-one")).await.unwrap(), GateState::Pending);
    let mut users = meta.manifests_referencing(&r, &d("ic")).await.unwrap();
    users.sort();
    let mut want = vec![d("i-one"), d("i-plain")];
    want.sort();
    assert_eq!(users, want);
    assert!(meta.manifests_referencing(&repo("conf/elsewhere"), &d("ic")).await.unwrap().is_empty());
    assert_eq!(meta.gate_state(&r, &d("i-plain")).await.unwrap(), GateState::Unjudged);
    let full = serde_json::json!({ "schema": "customs.report/v1", "packages": [], "db": { "version": "sha256:x" }, "vulnerabilities": [{ "id": "CVE-2021-44228" }] });
    let report = StoredReport::from_report(&d("i-one"), &full, "sha256:x", now, 12);
    assert_eq!(report.to_json().unwrap(), full, "split and assembled again");
    let index = ReportIndex {
        components: Some(vec![Component {
            ecosystem: "maven".into(),
            name: "org.apache.logging.log4j:log4j-core".into(),
            version: "2.14.1".into(),
            purl: "pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1".into(),
            layer: Some(d("ic").to_string()),
        }]),
        vulnerabilities: ["CVE-2021-44228", "GHSA-jfh8-c2jp-5v3q"]
            .map(|id| ImageVulnerability {
                id: id.into(),
                canonical: "CVE-2021-44228".into(),
                package: "org.apache.logging.log4j:log4j-core".into(),
                version: "2.14.1".into(),
                severity: "CRITICAL".into(),
                fixed: Some("2.15.0".into()),
            })
            .to_vec(),
    };
    let blocked = Verdict {
        repo: r.clone(),
        digest: d("i-one"),
        allowed: false,
        enforced: true,
        policy: "paved-road".into(),
        reasons: vec!["malware: X in y (yara)".into()],
        warnings: vec!["misconfiguration: root".into()],
        basis: "b1".into(),
        judged_at_ms: now,
    };
    assert_eq!(meta.record_verdict(Some((&report, &index)), &blocked).await.unwrap(), None);
    assert_eq!(
        meta.gate_state(&r, &d("i-one")).await.unwrap(),
        GateState::Blocked { policy: "paved-road".into(), reasons: vec!["malware: X in y (yara)".into()] }
    );
    assert_eq!(meta.verdict(&r, &d("i-one")).await.unwrap().as_ref(), Some(&blocked));
    assert_eq!(meta.inspection_state(&r, &d("i-one")).await.unwrap(), Some(InspectionState::Done));
    // Verdicts are per repository: another repository holding the same bytes has its own.
    assert_eq!(meta.gate_state(&repo("conf/elsewhere"), &d("i-one")).await.unwrap(), GateState::Unjudged);
    // An index is judged through its children.
    meta.put_manifest(&r, &NewManifest { children: vec![d("i-one"), d("i-plain")], tag: Some(tag("multi")), ..manifest("i-index", &[]) })
        .await
        .unwrap();
    match meta.gate_state(&r, &d("i-index")).await.unwrap() {
        GateState::Blocked { reasons, .. } => assert_eq!(reasons, [format!("{}: malware: X in y (yara)", d("i-one"))]),
        other => panic!("an index with a blocked child: {other:?}"),
    }
    // Audit mode: recorded, served.
    let audited = Verdict { enforced: false, basis: "b2".into(), ..blocked.clone() };
    assert_eq!(meta.record_verdict(None, &audited).await.unwrap(), Some(blocked.clone()));
    assert_eq!(meta.gate_state(&r, &d("i-one")).await.unwrap(), GateState::Allowed);
    assert_eq!(meta.gate_state(&r, &d("i-index")).await.unwrap(), GateState::Allowed);
    assert_eq!(meta.inspection_report(&d("i-one")).await.unwrap(), Some(report.clone()), "no report given: the stored one stays");
    assert_eq!(meta.inspection_report(&d("i-plain")).await.unwrap(), None);
    // Judged on another basis: stale; asked to be judged again: stale whatever the basis.
    assert!(meta.stale_verdicts("b2", None, 10).await.unwrap().iter().all(|v| v.digest != d("i-one")));
    assert_eq!(meta.stale_verdicts("b3", None, 10).await.unwrap(), vec![audited.clone()]);
    meta.rejudge_verdict(&r, &d("i-one")).await.unwrap();
    assert_eq!(meta.stale_verdicts("b2", None, 10).await.unwrap(), vec![Verdict { basis: String::new(), ..audited.clone() }]);
    assert_eq!(meta.claim_inspection(now + 100_000, 1000).await.unwrap(), None, "nothing left");

    // Queries: by any id of a vulnerability, with the image's tags; by purl with or without a version.
    meta.put_manifest(&r, &NewManifest { tag: Some(tag("v1")), ..image("i-one", true) }).await.unwrap();
    let found = meta.images_with_vulnerability("GHSA-jfh8-c2jp-5v3q", 10).await.unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!((found[0].repo.as_str(), &found[0].digest, found[0].tags.as_slice()), ("conf/inspect", &d("i-one"), &["v1".to_owned()][..]));
    assert_eq!((found[0].found.canonical.as_str(), found[0].found.fixed.as_deref()), ("CVE-2021-44228", Some("2.15.0")));
    assert!(meta.images_with_vulnerability("CVE-2000-0001", 10).await.unwrap().is_empty());
    let by = |purl: &str| PackageQuery { purl: Some(purl.into()), ..PackageQuery::default() };
    for q in [
        by("pkg:maven/org.apache.logging.log4j/log4j-core"),
        by("pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1"),
        PackageQuery { ecosystem: Some("maven".into()), name: Some("org.apache.logging.log4j:log4j-core".into()), purl: None },
        PackageQuery { name: Some("log4j-core".into()), ..PackageQuery::default() },
    ] {
        let found = meta.images_with_package(&q, 10).await.unwrap();
        assert_eq!(found.len(), 1, "{q:?}: {found:?}");
        assert_eq!(Some(&found[0].found), index.components.as_ref().and_then(|c| c.first()));
    }
    for q in [
        by("pkg:maven/org.apache.logging.log4j/log4j-core@2.17.0"),
        by("pkg:maven/org.apache.logging.log4j/log4j-cor"),
        PackageQuery { name: Some("j-core".into()), ..PackageQuery::default() },
    ] {
        assert!(meta.images_with_package(&q, 10).await.unwrap().is_empty(), "{q:?}");
    }
    // What re-matching reads: the facts and which matches are stored, for many digests at once.
    let facts = meta.report_facts(&[d("i-one"), d("i-plain")]).await.unwrap();
    assert_eq!(facts, vec![ReportFacts { digest: d("i-one"), facts: report.facts.clone(), db_version: "sha256:x".into(), matches_digest: report.matches.digest.clone(), inspected_at_ms: now, millis: 12 }]);
    // Matched again with a changed fix for one id, one id gone and a new one (twice: one package
    // at two paths): the rows follow, whatever the store keeps and rewrites.
    let mut changed: Vec<ImageVulnerability> = index.vulnerabilities.iter().filter(|v| v.id == "CVE-2021-44228").map(|v| ImageVulnerability { fixed: Some("2.16.0".into()), ..v.clone() }).collect();
    let new = ImageVulnerability { id: "CVE-2099-0001".into(), canonical: "CVE-2099-0001".into(), fixed: None, ..changed[0].clone() };
    changed.extend([new.clone(), new.clone()]);
    let partly = StoredReport { matches: Matches::new("sha256:w", "null".into(), "[1]".into()), ..report.clone() };
    meta.record_verdict(Some((&partly, &ReportIndex { components: None, vulnerabilities: changed.clone() })), &audited).await.unwrap();
    let found = meta.images_with_vulnerability("CVE-2021-44228", 10).await.unwrap();
    assert_eq!(found.iter().map(|f| f.found.fixed.as_deref()).collect::<Vec<_>>(), [Some("2.16.0")]);
    assert!(meta.images_with_vulnerability("GHSA-jfh8-c2jp-5v3q", 10).await.unwrap().is_empty());
    assert_eq!(meta.images_with_vulnerability("CVE-2099-0001", 10).await.unwrap().len(), 1, "the same finding twice is one image found");
    let stored = meta.inspection_report(&d("i-one")).await.unwrap().unwrap();
    assert_eq!((&stored.facts, stored.matches.vulnerabilities.as_str()), (&report.facts, "[1]"));
    // Fields JSON escapes (a quote, a backslash, a newline, non-ASCII) come back as stored, the
    // rows already there are found again.
    let odd = ImageVulnerability { id: "CVE-2099-0002".into(), canonical: "CVE-2099-0002".into(), package: "we\"ird\\pkg\n\u{2713}".into(), ..new };
    let with_odd = ReportIndex { components: None, vulnerabilities: [&changed[..], std::slice::from_ref(&odd)].concat() };
    for _ in 0..2 {
        meta.record_verdict(Some((&partly, &with_odd)), &audited).await.unwrap();
        let found = meta.images_with_vulnerability("CVE-2099-0002", 10).await.unwrap();
        assert_eq!(found.iter().map(|f| &f.found).collect::<Vec<_>>(), [&odd]);
        assert_eq!(meta.images_with_vulnerability("CVE-2099-0001", 10).await.unwrap().len(), 1);
    }
    // A re-matched report replaces the rows.
    let rematched = StoredReport { matches: Matches::new("sha256:y", serde_json::json!({ "version": "sha256:y" }).to_string(), "[]".into()), ..report.clone() };
    meta.record_verdict(Some((&rematched, &ReportIndex { components: None, vulnerabilities: vec![] })), &audited).await.unwrap();
    assert!(meta.images_with_vulnerability("CVE-2021-44228", 10).await.unwrap().is_empty());
    assert_eq!(meta.images_with_package(&by("pkg:maven/org.apache.logging.log4j/log4j-core"), 10).await.unwrap().len(), 1);
    assert_eq!(meta.inspection_report(&d("i-one")).await.unwrap().unwrap().to_json().unwrap()["vulnerabilities"], serde_json::json!([]));

    // In bulk: verdicts and their audit entries in one transaction.
    let rejudged = Verdict { allowed: true, reasons: vec![], basis: "b4".into(), ..audited.clone() };
    let entry = audit("customs", "gate.allowed", "conf/inspect@i-one");
    let judged = [VerdictWrite { report: None, verdict: &rejudged }];
    let batch = VerdictBatch { judged: &judged, carried: &[], basis: "b4", restamped: &[], db_version: "", db: "", audit: std::slice::from_ref(&entry) };
    meta.record_verdicts(&batch).await.unwrap();
    assert_eq!(meta.verdict(&r, &d("i-one")).await.unwrap(), Some(rejudged.clone()));
    let q = AuditQuery { action_prefix: Some("gate".into()), ..AuditQuery { after_id: 0, limit: 100, actor: None, action_prefix: None } };
    assert!(meta.audit(&q).await.unwrap().iter().any(|a| a.entry == entry));
    // A verdict carried to a new basis, its report restamped with the new DB: nothing else changes.
    let z = serde_json::json!({ "version": "sha256:z" }).to_string();
    let one = d("i-one");
    let batch = VerdictBatch { judged: &[], carried: &[(&r, &one)], basis: "b5", restamped: &[&one], db_version: "sha256:z", db: &z, audit: &[] };
    meta.record_verdicts(&batch).await.unwrap();
    assert_eq!(meta.verdict(&r, &d("i-one")).await.unwrap(), Some(Verdict { basis: "b5".into(), ..rejudged }));
    let restamped = meta.inspection_report(&d("i-one")).await.unwrap().unwrap();
    assert_eq!((restamped.matches.db_version.as_str(), restamped.matches.db.as_str()), ("sha256:z", z.as_str()));
    assert_eq!((&restamped.facts, &restamped.matches.vulnerabilities, &restamped.matches.digest), (&rematched.facts, &rematched.matches.vulnerabilities, &rematched.matches.digest));

    // Waivers.
    let w = meta
        .add_waiver(&NewWaiver { finding: "CVE-2021-44228".into(), repositories: "conf/**".into(), reason: "not reachable".into(), expires_at_ms: now, created_by: "ann".into() })
        .await
        .unwrap();
    let second = meta
        .add_waiver(&NewWaiver { finding: "root-user".into(), repositories: "*".into(), reason: "legacy".into(), expires_at_ms: now + 1, created_by: "bob".into() })
        .await
        .unwrap();
    assert!(second.id > w.id);
    assert_eq!(meta.waivers().await.unwrap(), vec![w.clone(), second.clone()]);
    assert!(meta.remove_waiver(w.id).await.unwrap());
    assert!(!meta.remove_waiver(w.id).await.unwrap());
    assert_eq!(meta.waivers().await.unwrap(), vec![second]);
    // Deleting the manifest forgets its job and verdict.
    assert!(meta.delete_manifest(&r, &d("i-index"), NO_KEPT_TAGS).await.unwrap());
    assert!(meta.delete_manifest(&r, &d("i-one"), NO_KEPT_TAGS).await.unwrap());
    assert_eq!(meta.verdict(&r, &d("i-one")).await.unwrap(), None);
    assert_eq!(meta.inspection_state(&r, &d("i-one")).await.unwrap(), None);
    // Failed for good.
    meta.put_manifest(&r, &image("i-two", true)).await.unwrap();
    let job = meta.claim_inspection(now, 1000).await.unwrap().unwrap();
    meta.fail_inspection(job.id, "manifest gone", None).await.unwrap();
    assert_eq!(meta.inspection_state(&r, &d("i-two")).await.unwrap(), Some(InspectionState::Failed("manifest gone".into())));
    assert_eq!(meta.gate_state(&r, &d("i-two")).await.unwrap(), GateState::Failed("manifest gone".into()));
    assert_eq!(meta.claim_inspection(now + 100_000, 1000).await.unwrap(), None);

    // Layer records: found by layer and engines; the first record of a layer stays.
    let (l1, l2, l3) = (d("layer-1"), d("layer-2"), d("layer-3"));
    meta.save_layer_records("e1", &[(l1.clone(), b"one".to_vec()), (l2.clone(), vec![0, 159, 146, 150])]).await.unwrap();
    meta.save_layer_records("e1", &[(l1.clone(), b"again".to_vec())]).await.unwrap();
    meta.save_layer_records("e2", &[(l1.clone(), b"other engines".to_vec())]).await.unwrap();
    let mut found = meta.layer_records("e1", &[l1.clone(), l2.clone(), l3.clone()]).await.unwrap();
    found.sort();
    let mut want = vec![(l1.clone(), b"one".to_vec()), (l2, vec![0, 159, 146, 150])];
    want.sort();
    assert_eq!(found, want, "binary records, the first kept, none for a layer never seen");
    assert_eq!(meta.layer_records("e2", std::slice::from_ref(&l1)).await.unwrap(), vec![(l1.clone(), b"other engines".to_vec())]);
    assert_eq!(meta.layer_records("e3", &[l3]).await.unwrap(), vec![]);
    // Pruned: other keys' records from before the given time; the current key's stay.
    assert_eq!(meta.prune_layer_records("e1", 0).await.unwrap(), 0, "none that old");
    assert_eq!(meta.prune_layer_records("e1", i64::MAX).await.unwrap(), 1);
    assert_eq!(meta.layer_records("e2", std::slice::from_ref(&l1)).await.unwrap(), vec![]);
    assert_eq!(meta.layer_records("e1", std::slice::from_ref(&l1)).await.unwrap().len(), 1);
}

//! The behaviour every [`MetaStore`](crate::MetaStore) adapter must show; each adapter's tests call [`run`].

use oci::{Digest, Reference, RepoName, Tag, UploadId};

use crate::{Error, ManifestRecord, MetaStore, NewManifest, Page, UploadRecord};

/// Runs every check against `meta`, panicking on the first failure.
pub async fn run(meta: &dyn MetaStore) {
    blob_links_are_per_repository(meta).await;
    manifests_check_their_references(meta).await;
    tags_and_catalog_page_in_order(meta).await;
    referrers_follow_subjects(meta).await;
    uploads_advance_only_from_where_they_are(meta).await;
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
    let image = NewManifest {
        record: record("image"),
        blobs: vec![(d("config"), 2), (d("layer"), 10)],
        children: vec![],
        tag: Some(tag("v1")),
    };
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
    meta.put_manifest(&r, &image).await.unwrap();
    let by_tag = meta.manifest(&r, &Reference::Tag(tag("v1"))).await.unwrap().unwrap();
    assert_eq!(by_tag, record("image"));
    assert_eq!(meta.manifest(&r, &Reference::Digest(d("image"))).await.unwrap(), Some(record("image")));
    assert_eq!(meta.manifest(&repo("conf/other"), &Reference::Digest(d("image"))).await.unwrap(), None);

    let index = NewManifest { record: record("index"), blobs: vec![], children: vec![d("image")], tag: Some(tag("multi")) };
    meta.put_manifest(&r, &index).await.unwrap();
    let orphan = NewManifest { record: record("orphan"), blobs: vec![], children: vec![d("nope")], tag: None };
    assert!(matches!(meta.put_manifest(&r, &orphan).await, Err(Error::MissingReference(_))));

    // Moving a tag, deleting a tag, deleting a manifest with its tags.
    meta.put_manifest(&r, &NewManifest { tag: Some(tag("v1")), ..index.clone() }).await.unwrap();
    assert_eq!(meta.manifest(&r, &Reference::Tag(tag("v1"))).await.unwrap().unwrap().digest, d("index"));
    assert!(meta.delete_tag(&r, &tag("v1")).await.unwrap());
    assert!(!meta.delete_tag(&r, &tag("v1")).await.unwrap());
    assert!(meta.manifest(&r, &Reference::Digest(d("index"))).await.unwrap().is_some(), "tag delete keeps the manifest");
    assert!(meta.delete_manifest(&r, &d("index")).await.unwrap());
    assert!(!meta.delete_manifest(&r, &d("index")).await.unwrap());
    assert_eq!(meta.manifest(&r, &Reference::Tag(tag("multi"))).await.unwrap(), None);
}

async fn tags_and_catalog_page_in_order(meta: &dyn MetaStore) {
    let r = repo("conf/tags");
    let names = ["b", "a", "C", "a1", "_z"];
    meta.link_blob(&r, &d("c"), 1).await.unwrap();
    for n in names {
        let m = NewManifest { record: record("t"), blobs: vec![(d("c"), 1)], children: vec![], tag: Some(tag(n)) };
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
            blobs: vec![(d("c"), 1)],
            children: vec![],
            tag: None,
        };
        meta.put_manifest(&r, &m).await.unwrap();
    }
    assert_eq!(meta.referrers(&r, &d("subject"), None).await.unwrap().len(), 3);
    let sboms = meta.referrers(&r, &d("subject"), Some("application/sbom")).await.unwrap();
    assert_eq!(sboms.len(), 2);
    assert!(sboms.iter().all(|m| m.annotations.as_deref() == Some(r#"{"k":"v"}"#)));
    assert!(meta.referrers(&r, &d("other"), None).await.unwrap().is_empty());
    assert!(meta.referrers(&repo("conf/elsewhere"), &d("subject"), None).await.unwrap().is_empty());
    meta.delete_manifest(&r, &d("sig")).await.unwrap();
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
    meta.finish_upload(&id, &r, &d("uploaded"), 10).await.unwrap();
    assert_eq!(meta.upload(&id).await.unwrap(), None);
    assert_eq!(meta.linked_blob(&r, &d("uploaded")).await.unwrap(), Some(10));
    let other = UploadRecord { id: UploadId::new("conf-upload-2").unwrap(), ..rec };
    meta.create_upload(&other).await.unwrap();
    assert!(meta.delete_upload(&other.id).await.unwrap());
    assert!(!meta.delete_upload(&other.id).await.unwrap());
}

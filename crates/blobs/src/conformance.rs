//! The behaviour every [`BlobStore`] adapter must show; each adapter's tests call [`run`].

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt, stream};
use oci::{Algorithm, Digest};

use crate::{BlobBody, BlobStore, ByteRange, ByteStream, Error, UploadId};

/// Runs every check against `store`, panicking on the first failure.
pub async fn run(store: &dyn BlobStore) {
    whole_put_and_ranged_reads(store).await;
    parts_commit_atomically(store).await;
    failed_write_keeps_earlier_bytes(store).await;
    commit_of_an_existing_digest(store).await;
    listing_pages_through_every_blob(store).await;
    stored_reads_and_quarantine(store).await;
}

async fn stored_reads_and_quarantine(store: &dyn BlobStore) {
    // Two whole blocks of a stored read and an odd tail.
    let data: Vec<u8> = (0..2_100_001u32).map(|i| (i % 253) as u8).collect();
    let d = Digest::sha256_of(&data);
    assert!(matches!(store.read_stored(&d).await, Err(Error::NotFound(_))));
    store.put(&d, Bytes::from(data.clone())).await.unwrap();
    let stored: Vec<Bytes> = store.read_stored(&d).await.unwrap().try_collect().await.unwrap();
    assert_eq!(stored.concat(), data, "read as stored");
    let small = Digest::sha256_of(b"quarantined small");
    store.put(&small, Bytes::from_static(b"quarantined small")).await.unwrap();
    let stored: Vec<Bytes> = store.read_stored(&small).await.unwrap().try_collect().await.unwrap();
    assert_eq!(stored.concat(), b"quarantined small");

    let place = store.quarantine(&d).await.unwrap();
    assert!(place.is_some_and(|p| p.contains(d.hex())), "says where the bytes went");
    assert_eq!(store.stat(&d).await.unwrap(), None, "out of sight");
    assert!(matches!(store.open(&d, None).await, Err(Error::NotFound(_))));
    assert!(matches!(store.read_stored(&d).await, Err(Error::NotFound(_))));
    let listed = store.list(None, 1000).await.unwrap();
    assert!(listed.iter().all(|b| b.digest != d), "not listed");
    assert_eq!(store.quarantine(&d).await.unwrap(), None, "nothing left to move");

    // Its digest can be written again, and reads then find the new bytes.
    let id = UploadId::new("quarantine-heal").unwrap();
    store.write_part(&id, 0, body(&[&data])).await.unwrap();
    store.commit(&id, data.len() as u64, &d).await.unwrap();
    assert_eq!(read(store, &d, None).await, data);
    assert!(store.delete(&d).await.unwrap());
}

fn body(parts: &[&[u8]]) -> ByteStream {
    let owned: Vec<_> = parts.iter().map(|p| Ok(Bytes::copy_from_slice(p))).collect();
    stream::iter(owned).boxed()
}

async fn read(store: &dyn BlobStore, d: &Digest, range: Option<ByteRange>) -> Vec<u8> {
    match store.open(d, range).await.unwrap() {
        BlobBody::Stream { stream, len } => {
            let bytes: Vec<Bytes> = stream.try_collect().await.unwrap();
            let all = bytes.concat();
            assert_eq!(all.len() as u64, len, "declared length matches streamed bytes");
            all
        }
        BlobBody::Redirect(url) => panic!("conformance expects streams, got a redirect to {url}"),
    }
}

async fn whole_put_and_ranged_reads(store: &dyn BlobStore) {
    // Large enough to take the mapped path of the filesystem adapter, and not a multiple of a chunk.
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let d = Digest::sha256_of(&data);
    assert_eq!(store.stat(&d).await.unwrap(), None);
    assert!(matches!(store.open(&d, None).await, Err(Error::NotFound(_))));
    store.put(&d, Bytes::from(data.clone())).await.unwrap();
    store.put(&d, Bytes::from(data.clone())).await.unwrap();
    assert_eq!(store.stat(&d).await.unwrap(), Some(data.len() as u64));
    assert_eq!(read(store, &d, None).await, data);
    for (start, end) in [(0, 0), (1, 10), (1_048_570, 2_097_160), (2_999_999, 2_999_999)] {
        let got = read(store, &d, Some(ByteRange { start, end })).await;
        assert_eq!(got, &data[start as usize..=end as usize], "range {start}-{end}");
    }
    let small = Digest::sha256_of(b"small");
    store.put(&small, Bytes::from_static(b"small")).await.unwrap();
    assert_eq!(read(store, &small, Some(ByteRange { start: 1, end: 3 })).await, b"mal");
    let empty = Digest::sha256_of(b"");
    store.put(&empty, Bytes::new()).await.unwrap();
    assert_eq!(read(store, &empty, None).await, b"");
    assert!(store.delete(&d).await.unwrap());
    assert!(!store.delete(&d).await.unwrap());
    assert_eq!(store.stat(&d).await.unwrap(), None);
}

async fn parts_commit_atomically(store: &dyn BlobStore) {
    let id = UploadId::new("conformance-parts").unwrap();
    assert_eq!(store.write_part(&id, 0, body(&[b"hello ", b"wor"])).await.unwrap(), 9);
    assert_eq!(store.write_part(&id, 9, body(&[b"ld"])).await.unwrap(), 2);
    let d = Digest::sha256_of(b"hello world");
    assert_eq!(store.stat(&d).await.unwrap(), None, "nothing visible before commit");
    let again: Vec<Bytes> = store.read_part(&id, 0, 11).await.unwrap().try_collect().await.unwrap();
    assert_eq!(again.concat(), b"hello world");
    let middle: Vec<Bytes> = store.read_part(&id, 6, 3).await.unwrap().try_collect().await.unwrap();
    assert_eq!(middle.concat(), b"wor", "a part read from an offset");
    store.commit(&id, 11, &d).await.unwrap();
    assert_eq!(read(store, &d, None).await, b"hello world");
    assert!(matches!(store.commit(&id, 11, &d).await, Err(Error::UploadNotFound(_))));
    store.abort(&id).await.unwrap();

    let zero = UploadId::new("conformance-zero").unwrap();
    let empty = Digest::sha256_of(b"");
    store.commit(&zero, 0, &empty).await.unwrap();
    assert_eq!(store.stat(&empty).await.unwrap(), Some(0));
}

async fn failed_write_keeps_earlier_bytes(store: &dyn BlobStore) {
    let id = UploadId::new("conformance-failed").unwrap();
    store.write_part(&id, 0, body(&[b"abc"])).await.unwrap();
    let broken: ByteStream = stream::iter(vec![
        Ok(Bytes::from_static(b"XXXX")),
        Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "client went away")),
    ])
    .boxed();
    assert!(matches!(store.write_part(&id, 3, broken).await, Err(Error::Body(_))));
    // The caller still believes the offset is 3: the retry overwrites the junk.
    store.write_part(&id, 3, body(&[b"de"])).await.unwrap();
    let d = Digest::sha256_of(b"abcde");
    store.commit(&id, 5, &d).await.unwrap();
    assert_eq!(read(store, &d, None).await, b"abcde");
    store.abort(&UploadId::new("never-existed").unwrap()).await.unwrap();
}

async fn commit_of_an_existing_digest(store: &dyn BlobStore) {
    let d = Digest::sha256_of(b"twice");
    for n in 0..2 {
        let id = UploadId::new(&format!("conformance-twice-{n}")).unwrap();
        store.write_part(&id, 0, body(&[b"twice"])).await.unwrap();
        store.commit(&id, 5, &d).await.unwrap();
        assert!(matches!(store.read_part(&id, 0, 5).await, Err(Error::UploadNotFound(_))));
    }
    assert_eq!(read(store, &d, None).await, b"twice");
}

async fn listing_pages_through_every_blob(store: &dyn BlobStore) {
    // What the earlier checks left, then blobs of both algorithms; a page at a time.
    let before = store.list(None, usize::MAX).await.unwrap();
    let mut added = Vec::new();
    for i in 0..7u8 {
        let data = vec![i; 10 + i as usize];
        let d = Digest::of(if i % 3 == 0 { Algorithm::Sha512 } else { Algorithm::Sha256 }, &data);
        store.put(&d, Bytes::from(data)).await.unwrap();
        added.push((d, 10 + i as u64));
    }
    let mut all = Vec::new();
    let mut after: Option<Digest> = None;
    loop {
        let page = store.list(after.as_ref(), 3).await.unwrap();
        assert!(page.len() <= 3);
        let Some(last) = page.last() else { break };
        after = Some(last.digest.clone());
        all.extend(page);
    }
    let names: Vec<String> = all.iter().map(|b| b.digest.to_string()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(names, sorted, "pages come in digest order, none twice");
    assert_eq!(all.len(), before.len() + added.len());
    for (d, size) in &added {
        let b = all.iter().find(|b| &b.digest == d).unwrap_or_else(|| panic!("{d} listed"));
        assert_eq!(b.size, *size);
        let age = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64 - b.written_at_ms;
        assert!((-5_000..600_000).contains(&age), "written just now: {age} ms ago");
    }
    // Deleted blobs are no longer listed.
    for (d, _) in &added {
        assert!(store.delete(d).await.unwrap());
    }
    assert_eq!(store.list(None, usize::MAX).await.unwrap(), before);
}

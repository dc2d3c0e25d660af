//! Manifests: put (validated, references checked, bytes stored exactly as sent), get, delete,
//! and the referrers of a subject.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use meta::{ManifestRecord, NewManifest};
use oci::{Descriptor, Digest, Manifest, ManifestError, ManifestKind, Reference, RepoName, Tag, media_type};

use crate::{BlobBody, Error, Registry, Result};
use crate::quota::Writer;

/// The `pushed_by` of a manifest a mirror stored: this, then the upstream's name (user and
/// robot names hold no `:`).
pub(crate) const MIRRORED_BY: &str = "mirror:";

/// A stored manifest: its exact bytes and how to label them.
#[derive(Debug)]
pub struct ManifestContent {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Bytes,
}

/// The outcome of a manifest PUT.
#[derive(Debug)]
pub struct PutManifest {
    pub digest: Digest,
    /// The manifest's subject, for the `OCI-Subject` header.
    pub subject: Option<Digest>,
}

impl Registry {
    /// Validates and stores a manifest sent with `content_type`, under a tag or its digest. Its
    /// bytes count toward the namespace's quota: one that would pass it is refused.
    pub async fn put_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        content_type: Option<&str>,
        bytes: Bytes,
        pushed_by: Option<&str>,
    ) -> Result<PutManifest> {
        self.store_manifest(repo, reference, content_type, bytes, pushed_by, Writer::Client).await
    }

    /// Stores an OCI image manifest the registry makes itself (an inspection's SBOM and report
    /// artifacts) under its digest, as [`Registry::put_manifest`] does, except that no quota
    /// refuses it; it counts all the same.
    pub async fn put_own_manifest(&self, repo: &RepoName, bytes: Bytes, pushed_by: &str) -> Result<PutManifest> {
        let reference = Reference::Digest(Digest::sha256_of(&bytes));
        self.store_manifest(repo, &reference, Some(media_type::OCI_MANIFEST), bytes, Some(pushed_by), Writer::Registry).await
    }

    async fn store_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        content_type: Option<&str>,
        bytes: Bytes,
        pushed_by: Option<&str>,
        writer: Writer,
    ) -> Result<PutManifest> {
        let (manifest, mut new) = self.prepare(reference, content_type, &bytes, pushed_by)?;
        let digest = new.record.digest.clone();
        // Refuse early, before writing bytes, what the transaction below would refuse anyway, so
        // that bad pushes leave no garbage; the transaction stays the guard against races.
        if let Some(tag) = &new.tag
            && self.config.immutable_tags.protects(repo, tag)
        {
            new.tag_immutable = true;
            if let Some(current) = self.meta.manifest(repo, reference).await?
                && current.digest != digest
            {
                return Err(Error::immutable(tag, &current.digest));
            }
        }
        self.precheck_references(repo, &new.blobs, &new.children).await?;
        let quota = self.reserve_quota(repo, &digest, bytes.len() as u64, "manifest", writer).await?;
        // Bytes first, durable; then the records in one transaction.
        let held = self.hold_bytes(&[&digest]).await?;
        self.blobs.put(&digest, bytes).await?;
        let signed = signed_image(&manifest, new.tag.as_ref());
        if new.inspect && self.rejects_failing_pushes(repo) {
            // Reject mode: the tag moves only once the image passes.
            let existed = self.meta.manifest(repo, &Reference::Digest(digest.clone())).await?.is_some();
            let result = self.meta.put_manifest(repo, &NewManifest { tag: None, ..new.clone() }).await;
            self.cache.invalidate(repo);
            result?;
            self.settle(quota).await;
            self.release_bytes(held).await?;
            self.push_gate(repo, &digest, existed).await?;
            let result = self.meta.put_manifest(repo, &new).await;
            self.cache.invalidate(repo);
            result?;
        } else {
            let result = self.meta.put_manifest(repo, &new).await;
            self.cache.invalidate(repo);
            result?;
            self.settle(quota).await;
            self.release_bytes(held).await?;
        }
        if let Some(image) = signed {
            // A signature arrived: its image is judged again with it.
            self.meta.rejudge_verdict(repo, &image).await?;
        }
        Ok(PutManifest { digest, subject: manifest.subject.map(|s| s.digest) })
    }

    /// Stores a manifest a mirror fetched, byte for byte, under `digest` (verified here) and
    /// `tag`. Its blobs must be linked in `repo` already; an index's children may be absent
    /// (they are fetched when pulled). An image is inspected like a push; it is never held back
    /// at store time, since its pulls are gated.
    pub async fn put_mirrored_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
        tag: Option<&Tag>,
        media_type: &str,
        bytes: Bytes,
        upstream: &str,
    ) -> Result<()> {
        let reference = Reference::Digest(digest.clone());
        let content_type = (!media_type.is_empty()).then_some(media_type);
        let (_, mut new) = self.prepare(&reference, content_type, &bytes, Some(&format!("{MIRRORED_BY}{upstream}")))?;
        new.tag = tag.cloned();
        new.children_optional = true;
        self.precheck_references(repo, &new.blobs, &[]).await?;
        let held = self.hold_bytes(&[digest]).await?;
        self.blobs.put(digest, bytes).await?;
        let result = self.meta.put_manifest(repo, &new).await;
        self.cache.invalidate(repo);
        result?;
        self.release_bytes(held).await
    }

    /// Parses and checks a manifest, and the record that stores it.
    fn prepare(&self, reference: &Reference, content_type: Option<&str>, bytes: &Bytes, pushed_by: Option<&str>) -> Result<(Manifest, NewManifest)> {
        let limit = self.config.max_manifest_bytes;
        if bytes.len() > limit {
            return Err(Error::ManifestTooLarge { limit });
        }
        let manifest = Manifest::parse(content_type, bytes).map_err(|e| match e {
            ManifestError::Invalid(m) => Error::ManifestInvalid(m),
            ManifestError::Unsupported(m) => Error::Unsupported(m),
        })?;
        let (digest, tag) = match reference {
            Reference::Digest(expected) => {
                let actual = Digest::of(expected.algorithm(), bytes);
                if actual != *expected {
                    return Err(Error::DigestMismatch { expected: expected.clone(), actual });
                }
                (actual, None)
            }
            Reference::Tag(tag) => (Digest::sha256_of(bytes), Some(tag.clone())),
        };
        let blobs: Vec<_> = manifest
            .blobs()
            .filter(|d| !media_type::is_foreign_layer(&d.media_type) || d.urls.is_empty())
            .map(|d| (d.digest.clone(), d.size))
            .collect();
        let children: Vec<_> = manifest.manifests.iter().map(|d| d.digest.clone()).collect();
        let annotations = manifest.annotations.as_ref().map(|a| serde_json::to_string(a).unwrap_or_default());
        let record = ManifestRecord {
            digest,
            media_type: manifest.media_type.clone(),
            size: bytes.len() as u64,
            artifact_type: artifact_type(&manifest),
            subject: manifest.subject.as_ref().map(|s| s.digest.clone()),
            annotations,
        };
        let inspect = is_image(&manifest);
        let new = NewManifest { record, blobs, children, tag, inspect, pushed_by: pushed_by.map(str::to_owned), children_optional: false, tag_immutable: false };
        Ok((manifest, new))
    }

    /// The manifest `reference` names in `repo`, with its bytes.
    pub async fn get_manifest(&self, repo: &RepoName, reference: &Reference) -> Result<Arc<ManifestContent>> {
        if let Some(hit) = self.cache.get(repo, reference) {
            return Ok(hit);
        }
        let key = (repo.clone(), reference.clone());
        self.manifest_flight.run(key, || self.load_manifest(repo, reference)).await
    }

    /// The records and bytes behind a cache miss, cached on the way out.
    async fn load_manifest(&self, repo: &RepoName, reference: &Reference) -> Result<Arc<ManifestContent>> {
        let generation = self.cache.generation();
        let record = self
            .meta
            .manifest(repo, reference)
            .await?
            .ok_or_else(|| Error::ManifestUnknown(reference.clone()))?;
        let bytes = match self.read_small(&record).await {
            Ok(bytes) if Digest::of(record.digest.algorithm(), &bytes) == record.digest => bytes,
            // Never serve bytes that are not the manifest: a client would refuse them anyway.
            Ok(bytes) => {
                let actual = Digest::of(record.digest.algorithm(), &bytes);
                self.quarantine(&record.digest, &format!("its {} bytes hash to {actual}", bytes.len())).await?;
                return Err(Error::ManifestUnknown(reference.clone()));
            }
            Err(Error::BlobUnknown(d)) => {
                self.note_missing(&d).await;
                return Err(Error::ManifestUnknown(reference.clone()));
            }
            Err(e) => return Err(e),
        };
        let content = Arc::new(ManifestContent { digest: record.digest, media_type: record.media_type, bytes });
        self.cache.insert(generation, repo, reference, content.clone());
        Ok(content)
    }

    /// Deletes a manifest (by digest, with every tag on it) or only a tag; neither while an
    /// immutable tag would go with it.
    pub async fn delete_manifest(&self, repo: &RepoName, reference: &Reference) -> Result<()> {
        let immutable = &self.config.immutable_tags;
        let deleted = match reference {
            Reference::Digest(d) => self.meta.delete_manifest(repo, d, &|t| immutable.protects(repo, t)).await,
            Reference::Tag(t) if immutable.protects(repo, t) => {
                let current = self.meta.manifest(repo, reference).await?.ok_or_else(|| Error::ManifestUnknown(reference.clone()))?;
                return Err(Error::immutable(t, &current.digest));
            }
            Reference::Tag(t) => self.meta.delete_tag(repo, t).await,
        };
        self.cache.invalidate(repo);
        if deleted? { Ok(()) } else { Err(Error::ManifestUnknown(reference.clone())) }
    }

    /// Descriptors of the manifests in `repo` whose subject is `subject`.
    pub async fn referrers(&self, repo: &RepoName, subject: &Digest, artifact_type: Option<&str>) -> Result<Vec<Descriptor>> {
        let records = self.meta.referrers(repo, subject, artifact_type).await?;
        Ok(records
            .into_iter()
            .map(|r| Descriptor {
                media_type: r.media_type,
                digest: r.digest,
                size: r.size,
                artifact_type: r.artifact_type,
                annotations: r
                    .annotations
                    .and_then(|a| serde_json::from_str::<BTreeMap<String, String>>(&a).ok()),
                urls: Vec::new(),
            })
            .collect())
    }

    async fn precheck_references(&self, repo: &RepoName, blobs: &[(Digest, u64)], children: &[Digest]) -> Result<()> {
        for (digest, declared) in blobs {
            match self.meta.linked_blob(repo, digest).await? {
                None => return Err(Error::ManifestBlobUnknown(digest.clone())),
                Some(actual) if actual != *declared => {
                    let e = meta::Error::SizeMismatch { digest: digest.clone(), declared: *declared, actual };
                    return Err(e.into());
                }
                Some(_) => {}
            }
        }
        for child in children {
            if self.meta.manifest(repo, &Reference::Digest(child.clone())).await?.is_none() {
                return Err(Error::ManifestBlobUnknown(child.clone()));
            }
        }
        Ok(())
    }

    pub(crate) async fn read_small(&self, record: &ManifestRecord) -> Result<Bytes> {
        let BlobBody::Stream { mut stream, len } = self.blobs.open(&record.digest, None).await? else {
            return Err(Error::Unavailable("manifest bytes are behind a redirect".into()));
        };
        let mut buf = BytesMut::with_capacity(len as usize);
        while let Some(chunk) = stream.next().await {
            buf.extend_from_slice(&chunk.map_err(|e| Error::Unavailable(e.to_string()))?);
        }
        Ok(buf.freeze())
    }
}

/// What the referrers listing shows for a manifest: `artifactType`, else (for an image) the
/// config's media type.
fn artifact_type(m: &Manifest) -> Option<String> {
    match m.kind {
        ManifestKind::Image => m.effective_artifact_type().map(str::to_owned),
        ManifestKind::Index => m.artifact_type.clone(),
    }
}

/// An image to inspect: an image manifest whose config is an image config (not an artifact's).
pub(crate) fn is_image(m: &Manifest) -> bool {
    m.kind == oci::ManifestKind::Image
        && m.artifact_type.is_none()
        && m.config.as_ref().is_some_and(|c| {
            matches!(c.media_type.as_str(), "application/vnd.oci.image.config.v1+json" | "application/vnd.docker.container.image.v1+json")
        })
        // Filesystem layers: a cosign signature has an image config but a JSON payload as its layer.
        && m.layers.iter().all(|l| l.media_type.starts_with("application/vnd.oci.image.layer.") || l.media_type.starts_with("application/vnd.docker.image.rootfs."))
}

/// The image a cosign signature manifest signs: by its `sha256-<hex>.sig` tag, or its subject
/// when it is a signature referrer.
fn signed_image(manifest: &Manifest, tag: Option<&Tag>) -> Option<Digest> {
    if let Some(image) = tag.and_then(crate::signatures::signed_by_tag) {
        return Some(image);
    }
    let is_signature = manifest.artifact_type.as_deref() == Some(crate::signatures::SIGNATURE_ARTIFACT)
        || manifest.layers.iter().any(|l| l.media_type == crate::signatures::SIMPLE_SIGNING);
    manifest.subject.as_ref().filter(|_| is_signature).map(|s| s.digest.clone())
}

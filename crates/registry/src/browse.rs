//! What the web UI reads: a repository's tags with what each points at, and one manifest with
//! everything known about it (tags, pusher, referrers, the gate's state, the inspection report).
//! Each page is one call here, so `api` only renders.

use std::sync::Arc;

use meta::{GateState, Listing};
use oci::{Descriptor, Digest, Manifest, ManifestKind, Reference, RepoName, Tag};

use crate::{Error, ImageReport, ManifestContent, PageRequest, Registry, Result};

/// One tag of a repository and the manifest it points at.
#[derive(Clone, Debug)]
pub struct TagRow {
    pub tag: Tag,
    pub digest: Digest,
    pub media_type: String,
    pub kind: ManifestKind,
    /// The manifest's bytes and, for an image, its config and layers (compressed, as stored).
    pub size: u64,
    pub gate: GateState,
}

/// A manifest of a repository and what the registry knows about it.
#[derive(Clone, Debug)]
pub struct ManifestView {
    pub content: Arc<ManifestContent>,
    pub manifest: Manifest,
    /// The platform of each child of an index, in its order (`None` where it names none).
    pub platforms: Vec<Option<String>>,
    /// An image with filesystem layers, which is inspected (not an artifact, a signature, an index).
    pub is_image: bool,
    pub tags: Vec<String>,
    pub pushed_by: Option<String>,
    pub referrers: Vec<Descriptor>,
    pub gate: GateState,
    /// `None`: not inspected (yet, or never: an index or an artifact).
    pub report: Option<ImageReport>,
}

impl Registry {
    /// A page of `repo`'s tags, each with the manifest it points at.
    pub async fn tag_rows(&self, repo: &RepoName, page: &PageRequest) -> Result<Listing<TagRow>> {
        let tags = self.tags(repo, page).await?;
        let mut rows = Vec::with_capacity(tags.entries.len());
        for tag in tags.entries {
            // A tag deleted since the listing was read is left out, not an error.
            let content = match self.get_manifest(repo, &Reference::Tag(tag.clone())).await {
                Ok(content) => content,
                Err(Error::ManifestUnknown(_)) => continue,
                Err(e) => return Err(e),
            };
            let manifest = parsed(&content)?;
            let size = content.bytes.len() as u64 + manifest.blobs().map(|d| d.size).sum::<u64>();
            let gate = self.meta.gate_state(repo, &content.digest).await?;
            rows.push(TagRow { tag, digest: content.digest.clone(), media_type: content.media_type.clone(), kind: manifest.kind, size, gate });
        }
        Ok(Listing { entries: rows, more: tags.more })
    }

    /// Manifest `digest` of `repo` with its tags, pusher, referrers, gate state and report.
    pub async fn manifest_view(&self, repo: &RepoName, digest: &Digest) -> Result<ManifestView> {
        let content = self.get_manifest(repo, &Reference::Digest(digest.clone())).await?;
        let manifest = parsed(&content)?;
        let platforms = match manifest.kind {
            ManifestKind::Index => platforms(&content.bytes),
            ManifestKind::Image => Vec::new(),
        };
        let report = match self.image_report(repo, digest).await {
            Ok(report) => Some(report),
            Err(Error::NotFound(_)) => None,
            Err(e) => return Err(e),
        };
        Ok(ManifestView {
            tags: self.meta.tags_of(repo, digest).await?,
            pushed_by: self.meta.pushed_by(repo, digest).await?,
            referrers: self.referrers(repo, digest, None).await?,
            gate: self.meta.gate_state(repo, digest).await?,
            is_image: crate::manifests::is_image(&manifest),
            content,
            manifest,
            platforms,
            report,
        })
    }
}

/// A stored manifest read back; it was validated when it was pushed.
fn parsed(content: &ManifestContent) -> Result<Manifest> {
    Manifest::parse(Some(&content.media_type), &content.bytes)
        .map_err(|e| Error::Unavailable(format!("stored manifest {} no longer parses: {e}", content.digest)))
}

/// `os/architecture/variant` of each entry of an index's `manifests`.
fn platforms(bytes: &[u8]) -> Vec<Option<String>> {
    let Ok(index) = serde_json::from_slice::<serde_json::Value>(bytes) else { return Vec::new() };
    let entries = index["manifests"].as_array().map(Vec::as_slice).unwrap_or_default();
    entries
        .iter()
        .map(|entry| {
            let p = &entry["platform"];
            let os = p["os"].as_str()?;
            let arch = p["architecture"].as_str()?;
            Some(match p["variant"].as_str() {
                Some(variant) => format!("{os}/{arch}/{variant}"),
                None => format!("{os}/{arch}"),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_are_read_in_order_and_missing_ones_are_none() {
        let index = br#"{"manifests":[
            {"platform":{"os":"linux","architecture":"arm","variant":"v7"}},
            {"annotations":{}},
            {"platform":{"os":"linux","architecture":"amd64"}}]}"#;
        assert_eq!(platforms(index), vec![Some("linux/arm/v7".into()), None, Some("linux/amd64".into())]);
        assert_eq!(platforms(b"not json"), Vec::<Option<String>>::new());
    }
}

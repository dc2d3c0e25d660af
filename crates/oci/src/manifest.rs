//! Manifest and index validation: what a pushed manifest is and what it references.
//!
//! The caller keeps the bytes exactly as received (their digest is the manifest's identity); this
//! module only reads them, checks them against the image spec, and lists their references.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::{Digest, media_type as mt};

/// A descriptor: a typed, sized pointer to content by digest.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
}

/// Whether a manifest points at blobs (an image manifest) or at other manifests (an index).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ManifestKind {
    Image,
    Index,
}

/// A validated manifest: its media type and everything it references.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    pub media_type: String,
    pub kind: ManifestKind,
    pub config: Option<Descriptor>,
    pub layers: Vec<Descriptor>,
    pub manifests: Vec<Descriptor>,
    pub subject: Option<Descriptor>,
    pub artifact_type: Option<String>,
    pub annotations: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Unsupported(String),
}

impl Manifest {
    /// Validates `bytes` sent with `content_type` (the request's Content-Type, if any).
    pub fn parse(content_type: Option<&str>, bytes: &[u8]) -> Result<Manifest, ManifestError> {
        let raw: Raw = serde_json::from_slice(bytes)
            .map_err(|e| invalid(format!("manifest is not a valid JSON manifest: {e}")))?;
        let header = content_type.map(base_media_type).filter(|t| !t.is_empty());
        let header = header.filter(|t| *t != "application/json" && *t != "application/octet-stream");
        if let (Some(h), Some(f)) = (header, raw.media_type.as_deref())
            && h != f
        {
            return Err(invalid(format!("Content-Type {h:?} does not match the manifest's mediaType {f:?}")));
        }
        let media_type = match (header, raw.media_type.as_deref()) {
            (Some(t), _) | (None, Some(t)) => t.to_owned(),
            (None, None) if raw.manifests.is_some() => mt::OCI_INDEX.to_owned(),
            (None, None) => mt::OCI_MANIFEST.to_owned(),
        };
        let kind = match media_type.as_str() {
            mt::OCI_MANIFEST | mt::DOCKER_MANIFEST => ManifestKind::Image,
            mt::OCI_INDEX | mt::DOCKER_MANIFEST_LIST => ManifestKind::Index,
            mt::DOCKER_SCHEMA1 | mt::DOCKER_SCHEMA1_SIGNED => {
                return Err(ManifestError::Unsupported(
                    "Docker schema 1 manifests are deprecated and not accepted; push schema 2 or OCI".into(),
                ));
            }
            other => return Err(invalid(format!("unsupported manifest media type {other:?}"))),
        };
        if raw.schema_version != Some(2) {
            return Err(invalid("schemaVersion must be 2".into()));
        }
        let subject = raw.subject.map(|d| d.validate("subject")).transpose()?;
        let (config, layers, manifests) = match kind {
            ManifestKind::Image => {
                if raw.manifests.is_some() {
                    return Err(invalid("an image manifest has no \"manifests\"".into()));
                }
                let config = raw.config.ok_or_else(|| invalid("image manifest has no config".into()))?;
                let layers = raw.layers.ok_or_else(|| invalid("image manifest has no layers".into()))?;
                let layers = layers
                    .into_iter()
                    .enumerate()
                    .map(|(i, d)| d.validate(&format!("layers[{i}]")))
                    .collect::<Result<_, _>>()?;
                (Some(config.validate("config")?), layers, Vec::new())
            }
            ManifestKind::Index => {
                if raw.config.is_some() || raw.layers.is_some() {
                    return Err(invalid("an index has no config or layers".into()));
                }
                let manifests = raw.manifests.ok_or_else(|| invalid("index has no manifests".into()))?;
                let manifests = manifests
                    .into_iter()
                    .enumerate()
                    .map(|(i, d)| d.validate(&format!("manifests[{i}]")))
                    .collect::<Result<_, _>>()?;
                (None, Vec::new(), manifests)
            }
        };
        Ok(Manifest {
            media_type,
            kind,
            config,
            layers,
            manifests,
            subject,
            artifact_type: raw.artifact_type,
            annotations: raw.annotations,
        })
    }

    /// The blobs an image manifest references: its config, then its layers.
    pub fn blobs(&self) -> impl Iterator<Item = &Descriptor> {
        self.config.iter().chain(&self.layers)
    }

    /// The artifact type a referrers listing shows: `artifactType`, else the config's media type.
    pub fn effective_artifact_type(&self) -> Option<&str> {
        self.artifact_type
            .as_deref()
            .or_else(|| self.config.as_ref().map(|c| c.media_type.as_str()))
    }
}

/// `type/subtype` without parameters such as `; charset=utf-8`.
fn base_media_type(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or("").trim()
}

fn invalid(msg: String) -> ManifestError {
    ManifestError::Invalid(msg)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    schema_version: Option<i64>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<RawDescriptor>,
    layers: Option<Vec<RawDescriptor>>,
    manifests: Option<Vec<RawDescriptor>>,
    subject: Option<RawDescriptor>,
    annotations: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    media_type: Option<String>,
    digest: Option<String>,
    size: Option<i64>,
    artifact_type: Option<String>,
    annotations: Option<BTreeMap<String, String>>,
    urls: Option<Vec<String>>,
}

impl RawDescriptor {
    fn validate(self, at: &str) -> Result<Descriptor, ManifestError> {
        let media_type = self
            .media_type
            .filter(|m| !m.is_empty())
            .ok_or_else(|| invalid(format!("{at}: descriptor has no mediaType")))?;
        let digest = self.digest.ok_or_else(|| invalid(format!("{at}: descriptor has no digest")))?;
        let digest = digest.parse().map_err(|e| invalid(format!("{at}: {e}")))?;
        let size = self.size.ok_or_else(|| invalid(format!("{at}: descriptor has no size")))?;
        let size = u64::try_from(size).map_err(|_| invalid(format!("{at}: size is negative")))?;
        Ok(Descriptor {
            media_type,
            digest,
            size,
            artifact_type: self.artifact_type,
            annotations: self.annotations,
            urls: self.urls.unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> String {
        Digest::sha256_of(&[n]).to_string()
    }

    fn image(mt: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{mt}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":10,"x-unknown":1}}],"unknownField":true}}"#,
            d(1),
            d(2)
        )
    }

    #[test]
    fn accepts_the_four_manifest_types() {
        for t in [mt::OCI_MANIFEST, mt::DOCKER_MANIFEST] {
            let m = Manifest::parse(Some(t), image(t).as_bytes()).unwrap();
            assert_eq!(m.kind, ManifestKind::Image);
            assert_eq!(m.blobs().count(), 2);
            assert_eq!(m.effective_artifact_type(), Some("application/vnd.oci.image.config.v1+json"));
        }
        for t in [mt::OCI_INDEX, mt::DOCKER_MANIFEST_LIST] {
            let body = format!(
                r#"{{"schemaVersion":2,"mediaType":"{t}","manifests":[{{"mediaType":"{}","digest":"{}","size":5,"platform":{{"os":"linux","architecture":"arm64"}}}}]}}"#,
                mt::OCI_MANIFEST,
                d(3)
            );
            let m = Manifest::parse(Some(&format!("{t}; charset=utf-8")), body.as_bytes()).unwrap();
            assert_eq!(m.kind, ManifestKind::Index);
            assert_eq!(m.manifests[0].digest.to_string(), d(3));
        }
    }

    #[test]
    fn artifact_with_subject() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","artifactType":"application/vnd.example.sbom","config":{{"mediaType":"{}","digest":"{}","size":2}},"layers":[],"subject":{{"mediaType":"{}","digest":"{}","size":7}},"annotations":{{"a":"b"}}}}"#,
            mt::OCI_MANIFEST,
            mt::OCI_EMPTY,
            d(1),
            mt::OCI_MANIFEST,
            d(9)
        );
        let m = Manifest::parse(None, body.as_bytes()).unwrap();
        assert_eq!(m.subject.as_ref().unwrap().digest.to_string(), d(9));
        assert_eq!(m.effective_artifact_type(), Some("application/vnd.example.sbom"));
        assert_eq!(m.annotations.unwrap()["a"], "b");
    }

    #[test]
    fn refuses_invalid_manifests() {
        let good = image(mt::OCI_MANIFEST);
        let cases: Vec<(Option<&str>, String, &str)> = vec![
            (None, "not json".into(), "not a valid JSON"),
            (None, "[]".into(), "not a valid JSON"),
            (Some(mt::DOCKER_MANIFEST), good.clone(), "does not match"),
            (Some("text/plain"), good.replace(&format!(r#""mediaType":"{}","#, mt::OCI_MANIFEST), ""), "unsupported manifest media type"),
            (None, good.replace("\"schemaVersion\":2", "\"schemaVersion\":1"), "schemaVersion"),
            (None, good.replace("\"size\":10", "\"size\":-1"), "negative"),
            (None, good.replace(&d(2), "sha256:zz"), "layers[0]"),
            (None, good.replace(&d(1), "md5:aa"), "config"),
            (None, good.replace(r#""layers":[{"#, r#""layerz":[{"#), "no layers"),
            (None, r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json"}"#.into(), "no manifests"),
        ];
        for (ct, body, want) in cases {
            let err = Manifest::parse(ct, body.as_bytes()).unwrap_err();
            assert!(err.to_string().contains(want), "{body}: got {err}, want {want}");
        }
        let schema1 = r#"{"schemaVersion":1,"mediaType":"application/vnd.docker.distribution.manifest.v1+prettyjws"}"#;
        assert!(matches!(Manifest::parse(None, schema1.as_bytes()), Err(ManifestError::Unsupported(_))));
    }
}

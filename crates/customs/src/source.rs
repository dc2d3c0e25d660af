//! Where `customs scan` reads an image from: an OCI layout directory, a `docker save` archive, a
//! registry, or a plain directory (a root filesystem). Each gives manifests and blobs; the scan
//! itself is the same for all.

use anyhow::{Context, bail};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// A layer to read: its name in the report and its bytes.
pub struct LayerSource {
    pub digest: String,
    pub size: Option<u64>,
    pub reader: Box<dyn Read + Send>,
}

/// An image resolved to its layers.
pub struct Image {
    pub kind: &'static str,
    pub name: String,
    pub digest: Option<String>,
    pub layers: Vec<LayerSource>,
    /// The image config's JSON, when it could be read.
    pub config: Option<Vec<u8>>,
}

/// The platform a multi-arch index is resolved to.
#[derive(Clone, Debug)]
pub struct Platform {
    pub os: String,
    pub arch: String,
    pub variant: Option<String>,
}

impl std::str::FromStr for Platform {
    type Err = String;
    fn from_str(s: &str) -> Result<Platform, String> {
        let mut parts = s.split('/');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(os), Some(arch), variant, None) if !os.is_empty() && !arch.is_empty() => {
                Ok(Platform { os: os.into(), arch: arch.into(), variant: variant.map(str::to_owned) })
            }
            _ => Err(format!("{s:?}: a platform is os/arch[/variant], e.g. linux/amd64")),
        }
    }
}

/// Picks the child of an index for `platform`; errors name what the index offers.
fn pick(index: &[u8], platform: &Platform) -> anyhow::Result<(String, String)> {
    let v: serde_json::Value = serde_json::from_slice(index).context("index is not JSON")?;
    let manifests = v["manifests"].as_array().cloned().unwrap_or_default();
    let mut offered = Vec::new();
    for m in &manifests {
        let p = &m["platform"];
        let (os, arch, variant) = (p["os"].as_str().unwrap_or(""), p["architecture"].as_str().unwrap_or(""), p["variant"].as_str());
        offered.push(format!("{os}/{arch}{}", variant.map(|v| format!("/{v}")).unwrap_or_default()));
        if os == platform.os && arch == platform.arch && (platform.variant.is_none() || platform.variant.as_deref() == variant) {
            let digest = m["digest"].as_str().context("index entry without digest")?.to_owned();
            let media = m["mediaType"].as_str().unwrap_or("").to_owned();
            return Ok((digest, media));
        }
    }
    bail!("the index has no manifest for {}/{} (it has: {})", platform.os, platform.arch, offered.join(", "))
}

/// A manifest's layers as (digest, size), and its config's digest.
type Layers = (Vec<(String, u64)>, Option<String>);

fn layers_of(media_type: &str, bytes: &[u8]) -> anyhow::Result<Layers> {
    let m = oci::Manifest::parse(Some(media_type).filter(|m| !m.is_empty()), bytes).map_err(|e| anyhow::anyhow!("manifest: {e}"))?;
    Ok((m.layers.iter().map(|d| (d.digest.to_string(), d.size)).collect(), m.config.map(|c| c.digest.to_string())))
}

const MAX_CONFIG: u64 = 8 << 20;

fn is_index(media_type: &str, bytes: &[u8]) -> bool {
    matches!(media_type, "application/vnd.oci.image.index.v1+json" | "application/vnd.docker.distribution.manifest.list.v2+json")
        || (media_type.is_empty() && serde_json::from_slice::<serde_json::Value>(bytes).is_ok_and(|v| v.get("manifests").is_some() && v.get("layers").is_none()))
}

fn media_type_of(bytes: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(bytes).ok().and_then(|v| v["mediaType"].as_str().map(str::to_owned)).unwrap_or_default()
}

/// An OCI image layout: `oci-layout`, `index.json`, `blobs/<alg>/<hex>`. `DIR:REF` picks the
/// manifest annotated with that `org.opencontainers.image.ref.name`.
pub fn oci_layout(dir: &Path, reference: Option<&str>, platform: &Platform) -> anyhow::Result<Image> {
    let blob_path = |digest: &str| -> anyhow::Result<PathBuf> {
        let (alg, hex) = digest.split_once(':').context("bad digest")?;
        if !hex.bytes().all(|c| c.is_ascii_hexdigit()) || !alg.bytes().all(|c| c.is_ascii_alphanumeric()) {
            bail!("bad digest {digest:?}");
        }
        Ok(dir.join("blobs").join(alg).join(hex))
    };
    let index = std::fs::read(dir.join("index.json")).with_context(|| format!("{}: no index.json", dir.display()))?;
    let v: serde_json::Value = serde_json::from_slice(&index).context("index.json is not JSON")?;
    let entries = v["manifests"].as_array().cloned().unwrap_or_default();
    let entry = match reference {
        Some(r) => entries.iter().find(|m| m["annotations"]["org.opencontainers.image.ref.name"].as_str() == Some(r)).with_context(|| format!("no manifest named {r:?} in index.json"))?,
        None if entries.len() == 1 => &entries[0],
        None => {
            // Several images: resolve index.json itself as an index by platform.
            let (digest, _) = pick(&index, platform)?;
            entries.iter().find(|m| m["digest"].as_str() == Some(digest.as_str())).unwrap()
        }
    };
    let mut digest = entry["digest"].as_str().context("index.json entry without digest")?.to_owned();
    let mut bytes = std::fs::read(blob_path(&digest)?).with_context(|| format!("manifest {digest} missing from blobs/"))?;
    let mut media = entry["mediaType"].as_str().map(str::to_owned).unwrap_or_else(|| media_type_of(&bytes));
    for _ in 0..4 {
        if !is_index(&media, &bytes) {
            break;
        }
        let (d, m) = pick(&bytes, platform)?;
        bytes = std::fs::read(blob_path(&d)?).with_context(|| format!("manifest {d} missing from blobs/"))?;
        media = if m.is_empty() { media_type_of(&bytes) } else { m };
        digest = d;
    }
    let mut layers = Vec::new();
    let (descriptors, config_digest) = layers_of(&media, &bytes)?;
    for (d, size) in descriptors {
        let f = File::open(blob_path(&d)?).with_context(|| format!("layer {d} missing from blobs/"))?;
        layers.push(LayerSource { digest: d, size: Some(size), reader: Box::new(f) });
    }
    let config = match config_digest {
        Some(c) => {
            let mut buf = Vec::new();
            File::open(blob_path(&c)?).and_then(|f| f.take(MAX_CONFIG).read_to_end(&mut buf)).ok().map(|_| buf)
        }
        None => None,
    };
    Ok(Image { kind: "oci-layout", name: dir.display().to_string(), digest: Some(digest), layers, config })
}

/// A `docker save` archive: `manifest.json` names the config and the layer files inside the tar.
pub fn docker_archive(path: &Path) -> anyhow::Result<Image> {
    // One pass to find where each member's bytes are.
    let mut members = std::collections::HashMap::new();
    {
        let mut archive = tar::Archive::new(File::open(path)?);
        for entry in archive.entries().context("not a tar archive")? {
            let entry = entry.context("unreadable tar member")?;
            let name = entry.path()?.to_string_lossy().trim_start_matches("./").to_owned();
            members.insert(name, (entry.raw_file_position(), entry.size()));
        }
    }
    let read = |name: &str| -> anyhow::Result<Vec<u8>> {
        let (pos, size) = *members.get(name).with_context(|| format!("{name} is not in the archive"))?;
        if size > 64 << 20 {
            bail!("{name} is too large for a manifest or config");
        }
        let mut f = File::open(path)?;
        f.seek(SeekFrom::Start(pos))?;
        let mut buf = Vec::new();
        f.take(size).read_to_end(&mut buf)?;
        Ok(buf)
    };
    let manifest: serde_json::Value = serde_json::from_slice(&read("manifest.json")?).context("manifest.json is not JSON")?;
    let first = manifest.get(0).context("manifest.json lists no image")?;
    let config = first["Config"].as_str().and_then(|c| read(c).ok());
    let diff_ids: Vec<String> = config
        .as_ref()
        .and_then(|c| serde_json::from_slice::<serde_json::Value>(c).ok())
        .and_then(|c| c["rootfs"]["diff_ids"].as_array().map(|a| a.iter().filter_map(|d| d.as_str().map(str::to_owned)).collect()))
        .unwrap_or_default();
    let name = first["RepoTags"].get(0).and_then(|t| t.as_str()).map(str::to_owned).unwrap_or_else(|| path.display().to_string());
    let mut layers = Vec::new();
    for (i, l) in first["Layers"].as_array().context("manifest.json lists no layers")?.iter().enumerate() {
        let member = l.as_str().context("bad layer entry")?;
        let (pos, size) = *members.get(member).with_context(|| format!("layer {member} is not in the archive"))?;
        let mut f = File::open(path)?;
        f.seek(SeekFrom::Start(pos))?;
        // `blobs/sha256/<hex>` names the layer; older archives have `<id>/layer.tar`: use the config's diff_id.
        let digest = member.strip_prefix("blobs/").map(|d| d.replacen('/', ":", 1)).or_else(|| diff_ids.get(i).cloned()).unwrap_or_else(|| member.to_owned());
        layers.push(LayerSource { digest, size: Some(size), reader: Box::new(f.take(size)) });
    }
    Ok(Image { kind: "docker-archive", name, digest: None, layers, config })
}

/// A registry blob read from the scanner's blocking thread, requested on the first read.
struct BlobReader {
    client: std::sync::Arc<remote::Client>,
    image: remote::ImageRef,
    digest: String,
    rt: tokio::runtime::Handle,
    body: Option<remote::Body>,
    buf: bytes::Bytes,
}

impl Read for BlobReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        use http_body_util::BodyExt;
        if self.body.is_none() {
            let body = self.rt.block_on(self.client.blob(&self.image, &self.digest)).map_err(std::io::Error::other)?;
            self.body = Some(body);
        }
        let body = self.body.as_mut().unwrap();
        while self.buf.is_empty() {
            match self.rt.block_on(body.frame()) {
                None => return Ok(0),
                Some(Err(e)) => return Err(std::io::Error::other(e)),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf = data;
                    }
                }
            }
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf[..n]);
        bytes::Buf::advance(&mut self.buf, n);
        Ok(n)
    }
}

/// An image in a registry. Blocks on `rt`; call from a blocking thread.
pub fn registry(rt: &tokio::runtime::Handle, reference: &str, client: std::sync::Arc<remote::Client>, platform: &Platform) -> anyhow::Result<Image> {
    let r = remote::ImageRef::parse(reference)?;
    let (mut bytes, mut media, mut digest) = rt.block_on(client.manifest(&r, r.reference()))?;
    if media.is_empty() {
        media = media_type_of(&bytes);
    }
    for _ in 0..4 {
        if !is_index(&media, &bytes) {
            break;
        }
        let (d, _) = pick(&bytes, platform)?;
        let (b, m, _) = rt.block_on(client.manifest(&r, &d))?;
        bytes = b;
        media = if m.is_empty() { media_type_of(&bytes) } else { m };
        digest = Some(d);
    }
    let mut layers = Vec::new();
    let (descriptors, config_digest) = layers_of(&media, &bytes)?;
    let config = match config_digest {
        Some(c) => {
            let mut reader = BlobReader { client: client.clone(), image: r.clone(), digest: c, rt: rt.clone(), body: None, buf: bytes::Bytes::new() };
            let mut buf = Vec::new();
            (&mut reader).take(MAX_CONFIG).read_to_end(&mut buf).ok().map(|_| buf)
        }
        None => None,
    };
    for (d, size) in descriptors {
        let reader = BlobReader { client: client.clone(), image: r.clone(), digest: d.clone(), rt: rt.clone(), body: None, buf: bytes::Bytes::new() };
        layers.push(LayerSource { digest: d, size: Some(size), reader: Box::new(reader) });
    }
    Ok(Image { kind: "registry", name: reference.to_owned(), digest, layers, config })
}

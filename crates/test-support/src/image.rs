//! Deterministic test images: the same seed always gives the same bytes and digests.

use std::io::Write as _;
use std::path::Path;

use bytes::Bytes;
use oci::{Digest, media_type as mt};
use serde_json::json;

/// A blob with its media type and digest.
#[derive(Clone, Debug)]
pub struct Blob {
    pub media_type: String,
    pub digest: Digest,
    pub bytes: Bytes,
}

impl Blob {
    pub fn new(media_type: &str, bytes: impl Into<Bytes>) -> Blob {
        let bytes = bytes.into();
        Blob { media_type: media_type.to_owned(), digest: Digest::sha256_of(&bytes), bytes }
    }

    pub fn descriptor(&self) -> serde_json::Value {
        json!({ "mediaType": self.media_type, "digest": self.digest.to_string(), "size": self.bytes.len() })
    }
}

/// An image: config, layers, and the manifest bytes that reference them.
#[derive(Clone, Debug)]
pub struct Image {
    pub media_type: String,
    pub config: Blob,
    pub layers: Vec<Blob>,
    pub manifest: Bytes,
    pub digest: Digest,
    pub arch: String,
}

impl Image {
    pub fn blobs(&self) -> impl Iterator<Item = &Blob> {
        std::iter::once(&self.config).chain(&self.layers)
    }

    /// This image as an entry of an index.
    pub fn platform_descriptor(&self) -> serde_json::Value {
        json!({
            "mediaType": self.media_type,
            "digest": self.digest.to_string(),
            "size": self.manifest.len(),
            "platform": { "os": "linux", "architecture": self.arch },
        })
    }
}

/// A multi-platform index over images.
#[derive(Clone, Debug)]
pub struct Index {
    pub media_type: String,
    pub images: Vec<Image>,
    pub manifest: Bytes,
    pub digest: Digest,
}

impl Index {
    pub fn new(images: Vec<Image>) -> Index {
        let docker = images.iter().all(|i| i.media_type == mt::DOCKER_MANIFEST);
        let media_type = if docker { mt::DOCKER_MANIFEST_LIST } else { mt::OCI_INDEX };
        let manifests: Vec<_> = images.iter().map(Image::platform_descriptor).collect();
        let manifest = Bytes::from(serde_json::to_vec_pretty(&json!({
            "schemaVersion": 2, "mediaType": media_type, "manifests": manifests,
        })).expect("json"));
        Index { media_type: media_type.into(), digest: Digest::sha256_of(&manifest), images, manifest }
    }
}

/// Builds an [`Image`] from a seed.
pub struct ImageBuilder {
    seed: u64,
    layers: Vec<(usize, usize)>,
    docker: bool,
    arch: String,
}

impl ImageBuilder {
    pub fn new(seed: u64) -> ImageBuilder {
        ImageBuilder { seed, layers: Vec::new(), docker: false, arch: "amd64".into() }
    }

    /// Adds a tar.gz layer of `files` files of `file_size` pseudo-random bytes each.
    pub fn layer(mut self, files: usize, file_size: usize) -> ImageBuilder {
        self.layers.push((files, file_size));
        self
    }

    /// Docker schema 2 media types instead of OCI.
    pub fn docker(mut self) -> ImageBuilder {
        self.docker = true;
        self
    }

    pub fn arch(mut self, arch: &str) -> ImageBuilder {
        self.arch = arch.into();
        self
    }

    pub fn build(self) -> Image {
        let (manifest_type, config_type, layer_type) = if self.docker {
            (mt::DOCKER_MANIFEST, "application/vnd.docker.container.image.v1+json", "application/vnd.docker.image.rootfs.diff.tar.gzip")
        } else {
            (mt::OCI_MANIFEST, "application/vnd.oci.image.config.v1+json", "application/vnd.oci.image.layer.v1.tar+gzip")
        };
        let mut rng = Rng(self.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut layers = Vec::new();
        let mut diff_ids = Vec::new();
        for (n, (files, size)) in self.layers.iter().enumerate() {
            let tar = tar_of(&mut rng, n, *files, *size);
            diff_ids.push(Digest::sha256_of(&tar).to_string());
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(&tar).expect("gzip");
            layers.push(Blob::new(layer_type, gz.finish().expect("gzip")));
        }
        let config = json!({
            "architecture": self.arch, "os": "linux",
            "config": { "Env": ["PATH=/usr/bin:/bin"], "Cmd": ["/bin/true"], "Labels": { "seed": self.seed.to_string() } },
            "rootfs": { "type": "layers", "diff_ids": diff_ids },
            "history": self.layers.iter().map(|_| json!({ "created_by": "test-support ImageBuilder" })).collect::<Vec<_>>(),
        });
        let config = Blob::new(config_type, serde_json::to_vec(&config).expect("json"));
        let manifest = json!({
            "schemaVersion": 2, "mediaType": manifest_type,
            "config": config.descriptor(),
            "layers": layers.iter().map(Blob::descriptor).collect::<Vec<_>>(),
        });
        let manifest = Bytes::from(serde_json::to_vec_pretty(&manifest).expect("json"));
        Image { media_type: manifest_type.into(), digest: Digest::sha256_of(&manifest), config, layers, manifest, arch: self.arch }
    }
}

/// Writes `blobs` and a tagged manifest into an OCI image layout at `dir` (created or extended).
pub fn write_oci_layout<'a>(
    dir: &Path,
    tag: &str,
    manifest: (&str, &Bytes),
    blobs: impl Iterator<Item = &'a Blob>,
) -> anyhow::Result<()> {
    let blob_dir = dir.join("blobs").join("sha256");
    std::fs::create_dir_all(&blob_dir)?;
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    for b in blobs {
        std::fs::write(blob_dir.join(b.digest.hex()), &b.bytes)?;
    }
    let digest = Digest::sha256_of(manifest.1);
    std::fs::write(blob_dir.join(digest.hex()), manifest.1)?;
    let index_path = dir.join("index.json");
    let mut index: serde_json::Value = match std::fs::read(&index_path) {
        Ok(b) => serde_json::from_slice(&b)?,
        Err(_) => json!({ "schemaVersion": 2, "manifests": [] }),
    };
    index["manifests"].as_array_mut().expect("manifests array").push(json!({
        "mediaType": manifest.0, "digest": digest.to_string(), "size": manifest.1.len(),
        "annotations": { "org.opencontainers.image.ref.name": tag },
    }));
    std::fs::write(index_path, serde_json::to_vec_pretty(&index)?)?;
    Ok(())
}

impl Image {
    pub fn write_layout(&self, dir: &Path, tag: &str) -> anyhow::Result<()> {
        write_oci_layout(dir, tag, (&self.media_type, &self.manifest), self.blobs())
    }
}

impl Index {
    pub fn write_layout(&self, dir: &Path, tag: &str) -> anyhow::Result<()> {
        let children: Vec<Blob> = self.images.iter().map(|i| Blob::new(&i.media_type, i.manifest.clone())).collect();
        let blobs = self.images.iter().flat_map(Image::blobs).chain(&children);
        write_oci_layout(dir, tag, (&self.media_type, &self.manifest), blobs)
    }
}

fn tar_of(rng: &mut Rng, layer: usize, files: usize, size: usize) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for f in 0..files {
        let mut data = vec![0u8; size];
        rng.fill(&mut data);
        let mut header = tar::Header::new_gnu();
        header.set_size(size as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_cksum();
        tar.append_data(&mut header, format!("layer{layer}/file{f}.bin"), &data[..]).expect("tar");
    }
    tar.into_inner().expect("tar")
}

/// xorshift64*: fast, deterministic, incompressible enough for layers.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// `len` pseudo-random bytes.
    pub fn bytes(&mut self, len: usize) -> bytes::Bytes {
        let mut buf = vec![0u8; len];
        self.fill(&mut buf);
        buf.into()
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// A gzip'd tar layer of `(path, bytes, mode)` files, written as GNU tar writes them.
pub fn layer_tar_gz(files: &[(&str, &[u8], u32)]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for (path, data, mode) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(*mode);
        header.set_mtime(0);
        header.set_cksum();
        tar.append_data(&mut header, path, *data).expect("tar");
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar.into_inner().expect("tar")).expect("gzip");
    gz.finish().expect("gzip")
}

/// An OCI image of `layers` (gzip'd tars) and `config` (an image config's JSON), written into the
/// layout at `dir` under `tag`; its manifest digest.
pub fn write_image(dir: &Path, tag: &str, config: &serde_json::Value, layers: Vec<Vec<u8>>) -> anyhow::Result<Digest> {
    let layers: Vec<Blob> = layers.into_iter().map(|l| Blob::new("application/vnd.oci.image.layer.v1.tar+gzip", l)).collect();
    let config = Blob::new("application/vnd.oci.image.config.v1+json", serde_json::to_vec(config)?);
    let manifest = json!({
        "schemaVersion": 2, "mediaType": mt::OCI_MANIFEST,
        "config": config.descriptor(), "layers": layers.iter().map(Blob::descriptor).collect::<Vec<_>>(),
    });
    let manifest = Bytes::from(serde_json::to_vec(&manifest)?);
    write_oci_layout(dir, tag, (mt::OCI_MANIFEST, &manifest), std::iter::once(&config).chain(&layers))?;
    Ok(Digest::sha256_of(&manifest))
}

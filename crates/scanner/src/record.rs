//! A layer's part of an inspection, kept by the layer's digest so that an image sharing the layer
//! is not read again: what the layer changes in the files detectors read, in the layer's order,
//! and what was found in its files. It does not depend on the layers below it: which layer a
//! package has been listed since is worked out when the record is applied to an image.

use std::io::Read;

use serde::{Deserialize, Serialize};

use crate::malware::MalwareFinding;
use crate::misconfig::Misconfiguration;
use crate::secrets::SecretFinding;
use crate::{Package, Problem};

/// What a detector took from one file (or a symlink's target).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) enum Found {
    Packages(Vec<Package>),
    OsRelease(String),
    Symlink(String),
}

/// One change a layer makes to the files detectors read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) enum Op {
    /// `.wh.name`: the path and everything below it, from lower layers, are gone.
    Whiteout(String),
    /// `.wh..wh..opq`: everything below the directory, from lower layers, is gone.
    Opaque(String),
    /// A non-directory nothing detects: hides what stood at and below its path.
    Hide(String),
    /// A file a detector read, or a symlink: hides like `Hide`, then stands at its path.
    Put(String, Found),
}

/// A layer as the inspection saw it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerRecord {
    pub digest: String,
    pub(crate) ops: Vec<Op>,
    pub(crate) problems: Vec<Problem>,
    pub(crate) secrets: Vec<SecretFinding>,
    pub(crate) malware: Vec<MalwareFinding>,
    pub(crate) misconfigurations: Vec<Misconfiguration>,
    /// Uncompressed bytes and entries, counted against the image's limits when applied.
    pub(crate) bytes: u64,
    pub(crate) entries: u64,
}

impl LayerRecord {
    /// What made the record: bumped whenever a detector changes what it finds or the record
    /// changes form. Part of what a stored record is looked up by, so a scanner never applies a
    /// record an older one made.
    pub const VERSION: &'static str = "customs-scanner/1";
    /// Changes recorded per image (held until the scan ends): a layer that would pass it is read
    /// without a record, and so are the layers after it. Bounds what recording holds to tens of
    /// megabytes, however many files the image's layers hold.
    pub const MAX_OPS: usize = 500_000;
    /// The largest stored form read back, inflated.
    const MAX_INFLATED: u64 = 256 << 20;

    /// The stored form: gzip'd JSON.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        serde_json::to_writer(&mut gz, self).expect("a record serializes");
        gz.finish().expect("writing to memory")
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<LayerRecord, String> {
        let mut json = Vec::new();
        flate2::read::GzDecoder::new(bytes).take(Self::MAX_INFLATED + 1).read_to_end(&mut json).map_err(|e| format!("layer record: {e}"))?;
        if json.len() as u64 > Self::MAX_INFLATED {
            return Err("layer record: larger than 256 MiB".into());
        }
        serde_json::from_slice(&json).map_err(|e| format!("layer record: {e}"))
    }
}

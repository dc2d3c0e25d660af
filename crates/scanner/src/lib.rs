//! Pure inspection of container images: layers go in as tar streams (gzip, zstd or plain), in
//! order; out comes the final filesystem's inventory — OS and language packages, each with a purl
//! and the digest of the layer that added it — and a list of problems. Whiteouts and opaque
//! directories are applied, so a package removed in a later layer is not reported.
//!
//! Never fails wholesale: a hostile or damaged layer yields problems and whatever could be read.
//! Nothing is written anywhere, and memory is bounded by [`Limits`]: a layer is streamed, and only
//! the files detectors read (package databases, manifests, archives and binaries up to
//! `max_file`) are held, one at a time.

mod detect;
mod inspect;
pub mod malware;
pub mod misconfig;
pub mod secrets;
mod layer;
mod os;
mod overlay;
pub mod purl;
mod record;
mod tar;

pub use os::Os;
pub use overlay::{Inspection, Scanner};
pub use record::LayerRecord;

use serde::{Deserialize, Serialize};

/// Bounds on one scan.
#[derive(Debug, Clone)]
pub struct Limits {
    /// The largest file a detector will read (a jar, a binary, a package database).
    pub max_file: u64,
    /// Uncompressed bytes over all layers; past this the scan stops with a problem.
    pub max_image: u64,
    /// Entries over all layers.
    pub max_entries: u64,
    /// One tar extension header (long name, PAX record set).
    pub max_header: u64,
    /// Archives inside archives (a jar in a war in an ear).
    pub max_nesting: u32,
    /// The largest file searched for secrets and malware.
    pub max_inspect_file: u64,
    /// The largest binary (a file with NUL bytes) searched for secrets.
    pub max_binary_secrets: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_file: 256 << 20, max_image: 32 << 30, max_entries: 2_000_000, max_header: 1 << 20, max_nesting: 4, max_inspect_file: 32 << 20, max_binary_secrets: 8 << 20 }
    }
}

/// The package ecosystems the scanner detects, named as purl types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ecosystem {
    Deb,
    Apk,
    Rpm,
    Pypi,
    Npm,
    Golang,
    Cargo,
    Maven,
    Gem,
    Composer,
    Nuget,
}

impl Ecosystem {
    pub fn as_str(self) -> &'static str {
        match self {
            Ecosystem::Deb => "deb",
            Ecosystem::Apk => "apk",
            Ecosystem::Rpm => "rpm",
            Ecosystem::Pypi => "pypi",
            Ecosystem::Npm => "npm",
            Ecosystem::Golang => "golang",
            Ecosystem::Cargo => "cargo",
            Ecosystem::Maven => "maven",
            Ecosystem::Gem => "gem",
            Ecosystem::Composer => "composer",
            Ecosystem::Nuget => "nuget",
        }
    }

    /// Whether the distribution, not a language, packages it.
    pub fn is_os(self) -> bool {
        matches!(self, Ecosystem::Deb | Ecosystem::Apk | Ecosystem::Rpm)
    }
}

/// One installed package (read back from stored reports when advisories change).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub ecosystem: Ecosystem,
    pub purl: String,
    /// The digest of the layer that added this version of it (`None` for a directory scan).
    pub layer: Option<String>,
    /// The file it was found in; `a.jar!/BOOT-INF/lib/b.jar` inside archives.
    pub path: String,
    /// The source package (dpkg `Source:`, apk origin, rpm source rpm), when it differs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<SourcePackage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourcePackage {
    pub name: String,
    pub version: String,
}

impl Package {
    pub(crate) fn new(ecosystem: Ecosystem, name: impl Into<String>, version: impl Into<String>, path: &str) -> Package {
        Package {
            name: name.into(),
            version: version.into(),
            ecosystem,
            purl: String::new(),
            layer: None,
            path: path.to_owned(),
            source: None,
            arch: None,
            license: None,
        }
    }

    /// What to look up in the advisory DB for this package: (OSV ecosystem, name, version) —
    /// distribution packages by their source package where the distribution's advisories name it.
    pub fn advisory_queries(&self, os: Option<&Os>) -> Vec<(String, String, String)> {
        let lang = |eco: &str, name: &str| vec![(eco.to_owned(), name.to_owned(), self.version.clone())];
        match self.ecosystem {
            Ecosystem::Deb | Ecosystem::Apk => {
                let (name, version) = match &self.source {
                    Some(s) => (s.name.clone(), if s.version.is_empty() { self.version.clone() } else { s.version.clone() }),
                    None => (self.name.clone(), self.version.clone()),
                };
                let ecos = os.map(Os::osv_ecosystems).unwrap_or_default();
                ecos.into_iter().map(|e| (e, name.clone(), version.clone())).collect()
            }
            Ecosystem::Rpm => os.map(Os::osv_ecosystems).unwrap_or_default().into_iter().map(|e| (e, self.name.clone(), self.version.clone())).collect(),
            Ecosystem::Pypi => lang("PyPI", &self.name),
            Ecosystem::Npm => lang("npm", &self.name),
            Ecosystem::Golang => lang("Go", &self.name),
            Ecosystem::Cargo => lang("crates.io", &self.name),
            Ecosystem::Maven => lang("Maven", &self.name),
            Ecosystem::Gem => lang("RubyGems", &self.name),
            Ecosystem::Composer => lang("Packagist", &self.name),
            Ecosystem::Nuget => lang("NuGet", &self.name),
        }
    }
}

/// Something the scan could not read, or refused to: never fatal, always reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Problem {
    /// A stable code: `path-traversal`, `absolute-path`, `device-file`, `hardlink-missing`,
    /// `symlink-loop`, `file-too-large`, `image-too-large`, `too-many-entries`, `layer-unreadable`,
    /// `extension-header`, `sparse-file`, `unparsable`, `unsupported`.
    pub code: std::borrow::Cow<'static, str>,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// What a scan found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Inventory {
    pub os: Option<Os>,
    pub packages: Vec<Package>,
    pub problems: Vec<Problem>,
    /// The layers read, in order.
    pub layers: Vec<String>,
    /// Uncompressed bytes read over all layers.
    pub bytes: u64,
    pub entries: u64,
    pub secrets: Vec<secrets::SecretFinding>,
    pub malware: Vec<malware::MalwareFinding>,
    pub misconfigurations: Vec<misconfig::Misconfiguration>,
}

//! The local advisory DB: one file, gzip-compressed JSON of the DB's own records, written
//! atomically. Its `digest` (SHA-256 of the records) is the DB's version: when it changes, stored
//! inventories are matched again — layers are never read again for that.

use crate::ecosystem::normalize_name;
use crate::model::Advisory;
use crate::{debian, osv, secdb};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The file layout version; a reader refuses a file of another.
pub const FORMAT: u32 = 1;
const MAGIC: &[u8] = b"customs-advisories\n";
/// An OSV record larger than this is not read (the largest real records are a few hundred KiB).
const MAX_RECORD: u64 = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no advisory DB at {0} (run `customs db import PATH` or `customs db update`)")]
    Missing(PathBuf),
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_owned(), source }
}

/// Where the records came from, kept for `customs db status`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Source {
    pub path: String,
    /// Seconds since the epoch.
    pub imported_at: u64,
    pub records: usize,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct File {
    format: u32,
    digest: String,
    updated_at: u64,
    sources: Vec<Source>,
    advisories: Vec<Advisory>,
}

/// What one import did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ImportReport {
    pub files: usize,
    pub added: usize,
    pub replaced: usize,
    pub withdrawn: usize,
    /// Files or records that were skipped, and why. Never fatal.
    pub problems: Vec<String>,
}

/// Counts for `customs db status`.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub format: u32,
    pub digest: String,
    pub updated_at: u64,
    pub advisories: usize,
    /// Affected packages per ecosystem (`Debian:12`, `PyPI`, …).
    pub ecosystems: BTreeMap<String, usize>,
    pub sources: Vec<Source>,
}

/// What changed between two DBs, per package: see [`Db::changed_since`].
#[derive(Debug, Default, Clone)]
pub struct Changes {
    keys: std::collections::HashSet<(String, String)>,
}

impl Changes {
    /// Whether the records of `name` in `ecosystem` (OSV's ecosystem string) changed.
    pub fn touches(&self, ecosystem: &str, name: &str) -> bool {
        self.keys.contains(&(ecosystem.to_owned(), normalize_name(ecosystem, name)))
    }

    /// How many (ecosystem, package) pairs changed.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// The advisory DB, loaded and indexed by (ecosystem, package name).
#[derive(Debug, Default)]
pub struct Db {
    file: File,
    index: HashMap<(String, String), Vec<(u32, u32)>>,
}

impl Db {
    pub fn empty() -> Db {
        Db { file: File { format: FORMAT, ..File::default() }, index: HashMap::new() }
    }

    /// Reads a DB file written by [`Db::save`].
    pub fn load(path: &Path) -> Result<Db, Error> {
        let f = std::fs::File::open(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::Missing(path.to_owned()),
            _ => Error::Io { path: path.to_owned(), source: e },
        })?;
        let mut r = std::io::BufReader::new(f);
        let mut magic = vec![0; MAGIC.len()];
        let short = r.read_exact(&mut magic).is_err();
        if short || magic != MAGIC {
            return Err(Error::Invalid { path: path.to_owned(), reason: "not a customs advisory DB".into() });
        }
        let file: File = serde_json::from_reader(flate2::read::GzDecoder::new(r))
            .map_err(|e| Error::Invalid { path: path.to_owned(), reason: format!("unreadable: {e}") })?;
        if file.format != FORMAT {
            return Err(Error::Invalid {
                path: path.to_owned(),
                reason: format!("format {} (this customs reads {FORMAT}); import again", file.format),
            });
        }
        let mut db = Db { file, index: HashMap::new() };
        db.reindex();
        Ok(db)
    }

    /// Writes the DB to `path` atomically (temporary file, fsync, rename).
    pub fn save(&mut self, path: &Path) -> Result<(), Error> {
        self.file.advisories.sort_by(|a, b| a.id.cmp(&b.id));
        self.file.digest = self.digest();
        self.file.format = FORMAT;
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let tmp = path.with_extension("tmp");
        let write = || -> std::io::Result<()> {
            let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
            f.write_all(MAGIC)?;
            let mut gz = flate2::write::GzEncoder::new(f, flate2::Compression::default());
            serde_json::to_writer(&mut gz, &self.file)?;
            let f = gz.finish()?.into_inner().map_err(|e| e.into_error())?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)?;
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
            Ok(())
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Error::Io { path: path.to_owned(), source: e }
        })
    }

    fn digest(&self) -> String {
        let mut h = Sha256::new();
        for a in &self.file.advisories {
            h.update(serde_json::to_vec(a).unwrap_or_default());
            h.update(b"\n");
        }
        format!("sha256:{}", hex::encode(h.finalize()))
    }

    /// The DB's version: changes whenever any record does.
    pub fn version(&self) -> &str {
        &self.file.digest
    }

    /// When the newest advisory was modified (seconds since the epoch); cheap, unlike [`Db::status`].
    pub fn updated_at(&self) -> u64 {
        self.file.updated_at
    }

    pub fn advisories(&self) -> &[Advisory] {
        &self.file.advisories
    }

    pub fn status(&self) -> Status {
        let mut ecosystems = BTreeMap::new();
        for a in &self.file.advisories {
            for af in &a.affected {
                *ecosystems.entry(af.ecosystem.clone()).or_insert(0) += 1;
            }
        }
        Status {
            format: self.file.format,
            digest: self.file.digest.clone(),
            updated_at: self.file.updated_at,
            advisories: self.file.advisories.len(),
            ecosystems,
            sources: self.file.sources.clone(),
        }
    }

    fn reindex(&mut self) {
        self.index.clear();
        for (i, a) in self.file.advisories.iter().enumerate() {
            for (j, af) in a.affected.iter().enumerate() {
                let key = (af.ecosystem.clone(), normalize_name(&af.ecosystem, &af.name));
                self.index.entry(key).or_default().push((i as u32, j as u32));
            }
        }
    }

    /// The packages whose answers may differ from `older`'s: those whose records, or which
    /// `affected` entry of a record names them, are not the same. A package outside it matches
    /// exactly as it did against `older`, so an image holding none of them need not be matched again.
    pub fn changed_since(&self, older: &Db) -> Changes {
        let entries = |db: &Db, key: &(String, String)| -> Vec<(usize, usize)> {
            db.index.get(key).into_iter().flatten().map(|&(i, j)| (i as usize, j as usize)).collect()
        };
        let mut keys = std::collections::HashSet::new();
        for key in self.index.keys().chain(older.index.keys()) {
            if keys.contains(key) {
                continue;
            }
            let (new, old) = (entries(self, key), entries(older, key));
            let same = new.len() == old.len()
                && new.iter().zip(&old).all(|(&(i, j), &(oi, oj))| j == oj && self.file.advisories[i] == older.file.advisories[oi]);
            if !same {
                keys.insert(key.clone());
            }
        }
        Changes { keys }
    }

    pub(crate) fn candidates(&self, ecosystem: &str, name: &str) -> impl Iterator<Item = (&Advisory, usize)> {
        let key = (ecosystem.to_owned(), normalize_name(ecosystem, name));
        self.index
            .get(&key)
            .into_iter()
            .flatten()
            .map(|&(i, j)| (&self.file.advisories[i as usize], j as usize))
    }

    /// Imports a file or a directory tree: OSV JSON records, OSV's per-ecosystem zips, Alpine
    /// secdb YAML/JSON, the Debian tracker's DSA/DLA lists. Records replace earlier ones of the same
    /// id; a withdrawn record removes its id. Unreadable files and records are skipped and listed in
    /// the report; only an unreadable `path` itself is an error.
    pub fn import_path(&mut self, path: &Path, now: u64) -> Result<ImportReport, Error> {
        let meta = std::fs::metadata(path).map_err(io(path))?;
        let mut by_id: BTreeMap<String, Advisory> =
            std::mem::take(&mut self.file.advisories).into_iter().map(|a| (a.id.clone(), a)).collect();
        let mut report = ImportReport::default();
        let mut records = 0;
        let mut files = Vec::new();
        if meta.is_dir() {
            walk(path, &mut files).map_err(io(path))?;
            files.sort();
        } else {
            files.push(path.to_owned());
        }
        for f in &files {
            let name = f.to_string_lossy().into_owned();
            let result = if name.ends_with(".zip") {
                import_zip(f, &mut by_id, &mut report)
            } else {
                read_limited(f).map(|bytes| import_bytes(&name, &bytes, &mut by_id, &mut report))
            };
            match result {
                Ok(()) => report.files += 1,
                Err(e) => report.problems.push(format!("{name}: {e}")),
            }
        }
        records += report.added + report.replaced;
        self.file.advisories = by_id.into_values().collect();
        self.file.updated_at = now;
        let path_s = path.to_string_lossy().into_owned();
        self.file.sources.retain(|s| s.path != path_s);
        self.file.sources.push(Source { path: path_s, imported_at: now, records });
        self.reindex();
        self.file.digest = self.digest();
        Ok(report)
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let t = e.file_type()?;
        if t.is_dir() {
            walk(&e.path(), out)?;
        } else if t.is_file() {
            out.push(e.path());
        }
    }
    Ok(())
}

fn read_limited(path: &Path) -> std::io::Result<Vec<u8>> {
    let f = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    f.take(MAX_RECORD + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_RECORD {
        return Err(std::io::Error::other(format!("larger than {MAX_RECORD} bytes; skipped")));
    }
    Ok(bytes)
}

fn import_zip(path: &Path, by_id: &mut BTreeMap<String, Advisory>, report: &mut ImportReport) -> std::io::Result<()> {
    let f = std::fs::File::open(path)?;
    let mut zip = zip::ZipArchive::new(f).map_err(std::io::Error::other)?;
    for i in 0..zip.len() {
        let mut entry = match zip.by_index(i) {
            Ok(e) => e,
            Err(e) => {
                report.problems.push(format!("{}#{i}: {e}", path.display()));
                continue;
            }
        };
        if !entry.is_file() {
            continue;
        }
        let name = format!("{}#{}", path.display(), entry.name().unwrap_or_default());
        if entry.size() > MAX_RECORD {
            report.problems.push(format!("{name}: larger than {MAX_RECORD} bytes; skipped"));
            continue;
        }
        let mut bytes = Vec::new();
        if let Err(e) = (&mut entry).take(MAX_RECORD).read_to_end(&mut bytes) {
            report.problems.push(format!("{name}: {e}"));
            continue;
        }
        import_bytes(&name, &bytes, by_id, report);
    }
    Ok(())
}

/// Recognises one document by its content and imports it.
fn import_bytes(name: &str, bytes: &[u8], by_id: &mut BTreeMap<String, Advisory>, report: &mut ImportReport) {
    let trimmed = bytes.trim_ascii_start();
    let advisories = if debian::looks_like(trimmed) {
        let (advisories, problems) = debian::parse(trimmed);
        report.problems.extend(problems.into_iter().map(|p| format!("{name}: {p}")));
        advisories
    } else if secdb::looks_like(trimmed) {
        match secdb::parse(trimmed) {
            Ok(a) => a,
            Err(e) => return report.problems.push(format!("{name}: {e}")),
        }
    } else if trimmed.starts_with(b"{") {
        match osv::parse(trimmed) {
            Ok(osv::Parsed::Advisory(a)) => vec![*a],
            Ok(osv::Parsed::Withdrawn(id)) => {
                by_id.remove(&id);
                report.withdrawn += 1;
                return;
            }
            Err(e) => return report.problems.push(format!("{name}: {e}")),
        }
    } else {
        return report.problems.push(format!("{name}: not an OSV JSON record, an Alpine secdb or a DSA/DLA list"));
    };
    for a in advisories {
        match by_id.get_mut(&a.id) {
            // Alpine's files list one CVE once per release: gather them into one advisory.
            Some(old) if old.source == "alpine-secdb" && a.source == "alpine-secdb" => {
                for af in a.affected {
                    if !old.affected.contains(&af) {
                        old.affected.push(af);
                    }
                }
                report.replaced += 1;
            }
            Some(old) => {
                *old = a;
                report.replaced += 1;
            }
            None => {
                by_id.insert(a.id.clone(), a);
                report.added += 1;
            }
        }
    }
}

//! The union filesystem, as far as detectors need it: the files they read, by path, with the layer
//! each came from; whiteouts (`.wh.name`) and opaque directories (`.wh..wh..opq`) remove what lower
//! layers put there. A package is attributed to the first layer from which its file has listed it
//! without interruption.

use crate::detect::{self, Wanted};
use crate::inspect::Inspector;
use crate::layer::{decompress, is_budget, Budget};
use crate::tar::{Kind, TarReader};
use crate::malware::{FileCheck, MalwareFinding, MalwareScanner};
use crate::misconfig::{ImageConfig, Misconfiguration, check_config, check_mode};
use crate::record::{Found, LayerRecord, Op};
use crate::secrets::{SecretFinding, SecretScanner};
use crate::{Inventory, Limits, Os, Package, Problem};
use std::sync::Arc;
use std::collections::{BTreeMap, HashSet};
use std::io::{self, Read};
use std::path::Path;

enum Captured {
    /// A file a detector read, and what it listed: (package, index of the layer since which it is listed).
    Packages(Vec<(Package, usize)>),
    OsRelease(String),
    Symlink(String),
}

struct File {
    layer: usize,
    captured: Captured,
}

/// Scans one image, a layer at a time.
pub struct Scanner {
    limits: Limits,
    layers: Vec<String>,
    files: BTreeMap<String, File>,
    problems: Vec<Problem>,
    bytes: u64,
    entries: u64,
    stopped: bool,
    inspection: Inspection,
    /// The thread that scans file contents for secrets and malware, once there is work for it.
    inspector: Option<Inspector>,
    inspection_failed: bool,
    secrets: Vec<SecretFinding>,
    malware: Vec<MalwareFinding>,
    misconfigurations: Vec<Misconfiguration>,
    /// Whether to keep what each layer read shows, for [`Scanner::finish_recorded`].
    recording: bool,
    /// The changes of the layer being read, while it can still be recorded.
    ops: Option<Vec<Op>>,
    /// Changes recorded over the image so far.
    ops_recorded: usize,
    /// Per layer, in order: its record (secrets and malware filled in at the end), when it can
    /// stand for the layer.
    records: Vec<Option<LayerRecord>>,
}

/// What else to look for besides packages. All off by default.
#[derive(Clone, Default)]
pub struct Inspection {
    pub secrets: Option<Arc<SecretScanner>>,
    pub malware: Option<Arc<MalwareScanner>>,
    /// External engines (ClamAV) that see every file `malware` sees.
    pub external: Vec<Arc<dyn FileCheck>>,
    pub misconfig: bool,
}

impl Inspection {
    fn reads_contents(&self) -> bool {
        self.secrets.is_some() || self.malware.is_some() || !self.external.is_empty()
    }
}

/// Problems kept per image.
const MAX_PROBLEMS: usize = 1000;

/// A cleaned, root-relative path, or why the entry is refused.
fn clean(raw: &str) -> Result<(String, bool), &'static str> {
    let absolute = raw.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for seg in raw.split('/') {
        match seg {
            "" | "." => {}
            ".." => return Err("path-traversal"),
            s => parts.push(s),
        }
    }
    Ok((parts.join("/"), absolute))
}

impl Scanner {
    pub fn new(limits: Limits) -> Scanner {
        Scanner {
            limits,
            layers: Vec::new(),
            files: BTreeMap::new(),
            problems: Vec::new(),
            bytes: 0,
            entries: 0,
            stopped: false,
            inspection: Inspection::default(),
            inspector: None,
            inspection_failed: false,
            secrets: Vec::new(),
            malware: Vec::new(),
            misconfigurations: Vec::new(),
            recording: false,
            ops: None,
            ops_recorded: 0,
            records: Vec::new(),
        }
    }

    /// Keeps a record of each layer read, so that later scans of images that share it need not
    /// read it ([`Scanner::add_recorded_layer`]).
    pub fn recording(mut self) -> Scanner {
        self.recording = true;
        self
    }

    /// Also look for secrets, malware and misconfiguration.
    pub fn with_inspection(mut self, inspection: Inspection) -> Scanner {
        self.inspection = inspection;
        self
    }

    /// The image config (OCI or Docker JSON): misconfiguration checks, and secrets in its
    /// environment, command, labels and history.
    pub fn add_config(&mut self, bytes: &[u8]) {
        let config: ImageConfig = match serde_json::from_slice(bytes) {
            Ok(c) => c,
            Err(e) => return self.problem("unparsable", format!("image config: {e}"), None),
        };
        if self.inspection.misconfig {
            check_config(&config, &mut self.misconfigurations);
        }
        if let Some(secrets) = self.inspection.secrets.clone() {
            let c = &config.config;
            let mut parts: Vec<(String, String)> = vec![
                ("config:Env".into(), c.env.clone().unwrap_or_default().join("\n")),
                ("config:Cmd".into(), c.cmd.clone().unwrap_or_default().join(" ")),
                ("config:Entrypoint".into(), c.entrypoint.clone().unwrap_or_default().join(" ")),
                ("config:Labels".into(), c.labels.iter().flatten().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("\n")),
            ];
            for (i, h) in config.history.iter().enumerate() {
                if let Some(by) = &h.created_by {
                    parts.push((format!("history:{i}"), by.clone()));
                }
            }
            for (path, text) in parts {
                secrets.scan(&path, text.as_bytes(), None, &mut self.secrets);
            }
        }
    }

    /// Hands a file's bytes to the inspection thread (started on first use).
    fn inspect(&mut self, path: &str, bytes: Vec<u8>, layer: usize) {
        let layer = self.layers.get(layer).filter(|l| !l.is_empty()).cloned();
        let inspector = self.inspector.get_or_insert_with(|| {
            Inspector::start(self.inspection.clone(), self.limits.max_binary_secrets, self.limits.max_inspect_file.max(32 << 20))
        });
        if !inspector.submit(path, bytes, layer) && !self.inspection_failed {
            self.inspection_failed = true;
            self.problem("unsupported", "secret and malware inspection stopped; the rest of the image is not searched", Some(path));
        }
    }

    fn take_buffer(&mut self) -> Vec<u8> {
        self.inspector.as_ref().map(Inspector::buffer).unwrap_or_default()
    }

    fn problem(&mut self, code: &'static str, message: impl Into<String>, path: Option<&str>) {
        if self.problems.len() >= MAX_PROBLEMS {
            return;
        }
        let layer = self.layers.last().cloned().filter(|l| !l.is_empty());
        self.problems.push(Problem { code: code.into(), message: message.into(), layer, path: path.map(str::to_owned) });
    }

    /// Reads one layer (compressed or not) to its end. Problems are recorded; nothing is fatal.
    /// `digest` names the layer in the report.
    pub fn add_layer(&mut self, digest: &str, reader: impl Read) {
        self.layers.push(digest.to_owned());
        if self.stopped {
            self.records.push(None);
            self.problem("image-too-large", "not read: an earlier layer reached a limit", None);
            return;
        }
        let (problems, misconfigurations, bytes, entries) = (self.problems.len(), self.misconfigurations.len(), self.bytes, self.entries);
        self.ops = (self.recording && self.ops_recorded < LayerRecord::MAX_OPS).then(Vec::new);
        let budget = self.limits.max_image.saturating_sub(self.bytes);
        let result = decompress(reader).and_then(|r| {
            let mut counted = Budget { inner: r, used: 0, budget };
            let out = self.read_tar(&mut counted);
            self.bytes += counted.used;
            out
        });
        let ops = self.ops.take();
        if let Err(e) = result {
            self.records.push(None);
            if is_budget(&e) {
                self.stopped = true;
                self.problem("image-too-large", format!("uncompressed size passed the {}-byte limit; the rest of the image is not inspected", self.limits.max_image), None);
            } else if e.kind() != io::ErrorKind::Interrupted {
                self.problem("layer-unreadable", format!("layer unreadable past this point: {e}"), None);
            }
            return;
        }
        // A layer read whole stands for itself wherever it appears; one cut short (by an error
        // that may not recur, or by this image's limits), or past the problem cap, does not.
        let record = ops.filter(|_| self.problems.len() < MAX_PROBLEMS).map(|ops| LayerRecord {
            digest: digest.to_owned(),
            ops,
            problems: self.problems[problems..].to_vec(),
            secrets: Vec::new(),
            malware: Vec::new(),
            misconfigurations: self.misconfigurations[misconfigurations..].to_vec(),
            bytes: self.bytes - bytes,
            entries: self.entries - entries,
        });
        self.records.push(record);
    }

    /// A layer inspected before (by this scanner version, with the same engines and limits):
    /// applied from its record instead of being read.
    pub fn add_recorded_layer(&mut self, record: LayerRecord) {
        self.layers.push(record.digest.clone());
        self.records.push(None);
        if self.stopped {
            self.problem("image-too-large", "not read: an earlier layer reached a limit", None);
            return;
        }
        let layer = self.layers.len() - 1;
        self.bytes += record.bytes;
        self.entries += record.entries;
        for op in record.ops {
            self.apply(op, layer);
        }
        for p in record.problems {
            if self.problems.len() < MAX_PROBLEMS {
                self.problems.push(p);
            }
        }
        self.misconfigurations.extend(record.misconfigurations);
        self.secrets.extend(record.secrets);
        self.malware.extend(record.malware);
        if self.bytes > self.limits.max_image || self.entries > self.limits.max_entries {
            self.stopped = true;
            self.problem("image-too-large", "the image's layers passed its size or entry limit; the rest of the image is not inspected", None);
        }
    }

    /// Records (when recording) and applies one change of the layer being read.
    fn step(&mut self, op: Op, layer: usize) {
        if let Some(ops) = &mut self.ops {
            if self.ops_recorded < LayerRecord::MAX_OPS {
                ops.push(op.clone());
                self.ops_recorded += 1;
            } else {
                self.ops = None;
            }
        }
        self.apply(op, layer);
    }

    /// One change of layer `layer` to the files detectors read.
    fn apply(&mut self, op: Op, layer: usize) {
        match op {
            Op::Whiteout(path) => self.remove_below(&path, layer, true),
            Op::Opaque(dir) => self.remove_below(&dir, layer, false),
            Op::Hide(path) => {
                self.files.remove(&path);
                self.remove_below(&path, layer, false);
            }
            Op::Put(path, found) => {
                let old = self.files.remove(&path);
                self.remove_below(&path, layer, false);
                let captured = match found {
                    Found::OsRelease(text) => Captured::OsRelease(text),
                    Found::Symlink(target) => Captured::Symlink(target),
                    Found::Packages(packages) => {
                        let old: Vec<(Package, usize)> = match old {
                            Some(File { captured: Captured::Packages(p), .. }) => p,
                            _ => Vec::new(),
                        };
                        let listed: Vec<(Package, usize)> = packages
                            .into_iter()
                            .map(|p| {
                                let since = old
                                    .iter()
                                    .find(|(o, _)| o.ecosystem == p.ecosystem && o.name == p.name && o.version == p.version && o.path == p.path)
                                    .map(|(_, s)| *s)
                                    .unwrap_or(layer);
                                (p, since)
                            })
                            .collect();
                        if listed.is_empty() {
                            return;
                        }
                        Captured::Packages(listed)
                    }
                };
                self.files.insert(path, File { layer, captured });
            }
        }
    }

    fn read_tar(&mut self, r: &mut dyn Read) -> io::Result<()> {
        let layer = self.layers.len() - 1;
        let mut tar = TarReader::new(r, self.limits.max_header);
        // Paths of this layer, for hard links (whose target must come earlier in the same layer).
        let mut seen: HashSet<String> = HashSet::new();
        loop {
            let header = tar.next_header();
            for note in std::mem::take(&mut tar.notes) {
                self.problem("extension-header", note, None);
            }
            let Some(h) = header? else { return Ok(()) };
            self.entries += 1;
            if self.entries > self.limits.max_entries {
                self.stopped = true;
                self.problem("too-many-entries", format!("more than {} entries; the rest is not inspected", self.limits.max_entries), None);
                return Err(io::Error::new(io::ErrorKind::Interrupted, "entry limit"));
            }
            let (path, absolute) = match clean(&h.path) {
                Ok(p) => p,
                Err(code) => {
                    self.problem(code, format!("entry {:?} escapes the root; ignored", h.path), Some(&h.path));
                    continue;
                }
            };
            if absolute {
                self.problem("absolute-path", format!("entry {:?} has an absolute path; read as {path:?}", h.path), Some(&h.path));
            }
            if path.is_empty() {
                continue;
            }
            if seen.len() < 1_000_000 {
                seen.insert(path.clone());
            }
            let (dir, base) = path.rsplit_once('/').unwrap_or(("", &path));
            if let Some(hidden) = base.strip_prefix(".wh.") {
                if hidden == ".wh..opq" {
                    self.step(Op::Opaque(dir.to_owned()), layer);
                } else {
                    let target = if dir.is_empty() { hidden.to_owned() } else { format!("{dir}/{hidden}") };
                    self.step(Op::Whiteout(target), layer);
                }
                continue;
            }
            // A non-directory hides whatever lower layers had at and below this path; what a
            // detector found in it then stands there.
            let found = match h.kind {
                Kind::Dir => {
                    if self.inspection.misconfig {
                        let digest = self.layers[layer].clone();
                        check_mode(&path, h.mode, true, Some(&digest), &mut self.misconfigurations);
                    }
                    continue;
                }
                Kind::Fifo => None,
                Kind::Device => {
                    self.problem("device-file", "a device node in a layer", Some(&path));
                    None
                }
                Kind::Sparse => {
                    self.problem("sparse-file", "a GNU sparse file; not inspected", Some(&path));
                    None
                }
                Kind::Other(t) => {
                    if !t.is_ascii_alphanumeric() {
                        self.problem("unsupported", format!("unknown entry type {t:#x}; skipped"), Some(&path));
                    }
                    None
                }
                // Every symlink is kept (path and target only), so resolving one can tell a
                // loop from a link to nowhere.
                Kind::Symlink => Some(Found::Symlink(h.link)),
                Kind::Hardlink => self.hardlink(&path, &h.link, &seen),
                Kind::File => self.regular_file(&path, h.mode, h.size, layer, || Ok(&mut tar))?.1,
            };
            let op = match found {
                Some(found) => Op::Put(path, found),
                None => Op::Hide(path),
            };
            self.step(op, layer);
        }
    }

    /// What a hard link to `link` (earlier in the same layer) finds at `path`.
    fn hardlink(&mut self, path: &str, link: &str, seen: &HashSet<String>) -> Option<Found> {
        let target = match clean(link) {
            Ok((t, _)) => t,
            Err(code) => {
                self.problem(code, format!("hard link to {link:?} escapes the root"), Some(path));
                return None;
            }
        };
        if !seen.contains(&target) {
            self.problem("hardlink-missing", format!("hard link to {target:?}, which this layer does not hold"), Some(path));
            return None;
        }
        // What this layer put at the target: it hid whatever lower layers had there.
        Some(match &self.files.get(&target)?.captured {
            Captured::Packages(p) => Found::Packages(p.iter().map(|(pkg, _)| Package { path: path.to_owned(), ..pkg.clone() }).collect()),
            Captured::OsRelease(t) => Found::OsRelease(t.clone()),
            Captured::Symlink(t) => Found::Symlink(t.clone()),
        })
    }

    /// A regular file, from a layer or a directory: its mode, the detectors that want it and the
    /// inspection engines. `open` is called only when the contents are needed; whether they
    /// were read, and what a detector found.
    fn regular_file<R: Read>(&mut self, path: &str, mode: u32, size: u64, layer: usize, open: impl FnOnce() -> io::Result<R>) -> io::Result<(bool, Option<Found>)> {
        if self.inspection.misconfig {
            let digest = self.layers[layer].clone();
            check_mode(path, mode, false, Some(digest.as_str()).filter(|d| !d.is_empty()), &mut self.misconfigurations);
        }
        let reads = self.inspection.reads_contents();
        let inspect = reads && size > 0 && size <= self.limits.max_inspect_file;
        if reads && size > self.limits.max_inspect_file {
            self.problem("file-too-large", format!("{size} bytes, over the {}-byte limit; not searched for secrets or malware", self.limits.max_inspect_file), Some(path));
        }
        let mut wanted = detect::wanted(path, mode, size);
        if wanted.is_some() && size > self.limits.max_file {
            self.problem("file-too-large", format!("{size} bytes, over the {}-byte limit; not inspected", self.limits.max_file), Some(path));
            wanted = None;
        }
        if inspect {
            let mut r = open()?;
            let mut bytes = self.take_buffer();
            bytes.reserve_exact(size as usize);
            (&mut r).take(size).read_to_end(&mut bytes)?;
            let found = wanted.filter(|w| *w != Wanted::Binary || bytes.starts_with(b"\x7fELF")).and_then(|w| self.found(path, w, &bytes));
            self.inspect(path, bytes, layer);
            Ok((true, found))
        } else if let Some(w) = wanted {
            let mut r = open()?;
            Ok((true, self.capture(path, w, size, &mut r)?))
        } else {
            Ok((false, None))
        }
    }

    /// Reads a wanted file and records what its detector found.
    fn capture(&mut self, path: &str, wanted: Wanted, size: u64, r: &mut dyn Read) -> io::Result<Option<Found>> {
        if let Wanted::Binary = wanted {
            // Only ELF files are read whole.
            let mut magic = [0u8; 4];
            let n = read_up_to(r, &mut magic)?;
            if n < 4 || magic != *b"\x7fELF" {
                return Ok(None);
            }
            let mut bytes = Vec::with_capacity(size.min(self.limits.max_file) as usize);
            bytes.extend_from_slice(&magic);
            r.take(size - 4).read_to_end(&mut bytes)?;
            return Ok(self.found(path, wanted, &bytes));
        }
        let mut bytes = Vec::with_capacity(size.min(1 << 20) as usize);
        r.take(size).read_to_end(&mut bytes)?;
        Ok(self.found(path, wanted, &bytes))
    }

    /// What the detector that wanted the file finds in it.
    fn found(&mut self, path: &str, wanted: Wanted, bytes: &[u8]) -> Option<Found> {
        if let Wanted::OsRelease = wanted {
            return Some(Found::OsRelease(String::from_utf8_lossy(bytes).into_owned()));
        }
        let mut packages = Vec::new();
        let mut problems = Vec::new();
        detect::parse(wanted, path, bytes, &self.limits, &mut packages, &mut problems);
        for (code, msg) in problems {
            self.problem(code, msg, Some(path));
        }
        Some(Found::Packages(packages))
    }

    /// Removes what lower layers put at `path` (when `itself`) and below it.
    fn remove_below(&mut self, path: &str, layer: usize, itself: bool) {
        if itself
            && self.files.get(path).is_some_and(|f| f.layer < layer) {
                self.files.remove(path);
            }
        let prefix = if path.is_empty() { String::new() } else { format!("{path}/") };
        let doomed: Vec<String> = self
            .files
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter(|(_, f)| f.layer < layer)
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            self.files.remove(&k);
        }
    }

    /// Scans a directory as a root filesystem (like `trivy rootfs`), without following symlinks.
    pub fn add_dir(&mut self, root: &Path) {
        self.layers.push(String::new());
        self.records.push(None);
        let layer = self.layers.len() - 1;
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) => {
                    self.problem("unreadable", format!("{}: {e}", dir.display()), None);
                    continue;
                }
            };
            for e in entries.flatten() {
                let p = e.path();
                let Ok(rel) = p.strip_prefix(root) else { continue };
                let rel = rel.to_string_lossy().into_owned();
                let Ok(meta) = std::fs::symlink_metadata(&p) else { continue };
                self.entries += 1;
                let ft = meta.file_type();
                if ft.is_dir() {
                    stack.push(p);
                } else if ft.is_symlink() {
                    let target = std::fs::read_link(&p).map(|t| t.to_string_lossy().into_owned()).unwrap_or_default();
                    self.apply(Op::Put(rel, Found::Symlink(target)), layer);
                } else if ft.is_file() {
                    use std::os::unix::fs::PermissionsExt;
                    match self.regular_file(&rel, meta.permissions().mode(), meta.len(), layer, || std::fs::File::open(&p)) {
                        Ok((read, found)) => {
                            if read {
                                self.bytes += meta.len();
                            }
                            if let Some(found) = found {
                                self.apply(Op::Put(rel, found), layer);
                            }
                        }
                        Err(e) => {
                            self.problem("unreadable", format!("{e}"), Some(&rel));
                            self.bytes += meta.len();
                        }
                    }
                }
            }
        }
    }

    /// Resolves a symlink among the captured files, relative to its directory; `None` on a loop.
    fn resolve(&self, path: &str) -> Result<Option<&str>, ()> {
        let mut current = path.to_owned();
        for _ in 0..40 {
            match self.files.get_key_value(&current) {
                Some((k, File { captured: Captured::OsRelease(_), .. })) => return Ok(Some(k.as_str())),
                Some((_, File { captured: Captured::Symlink(target), .. })) => {
                    let dir = current.rsplit_once('/').map_or("", |(d, _)| d);
                    let joined = if target.starts_with('/') { target.clone() } else { format!("{dir}/{target}") };
                    // Resolve `..` lexically; staying inside the root.
                    let mut parts: Vec<&str> = Vec::new();
                    for seg in joined.split('/') {
                        match seg {
                            "" | "." => {}
                            ".." => {
                                parts.pop();
                            }
                            s => parts.push(s),
                        }
                    }
                    current = parts.join("/");
                }
                _ => return Ok(None),
            }
        }
        Err(())
    }

    /// The inventory of the final filesystem.
    pub fn finish(self) -> Inventory {
        self.finish_recorded().0
    }

    /// The inventory, and (when [`Scanner::recording`]) the record of each layer read whole, to
    /// be applied in place of reading it again.
    pub fn finish_recorded(mut self) -> (Inventory, Vec<LayerRecord>) {
        let mut records = std::mem::take(&mut self.records);
        if let Some(inspector) = self.inspector.take() {
            match inspector.finish() {
                Ok(found) => {
                    // Each layer read keeps what was found in its files.
                    for f in &found.secrets {
                        if let Some(r) = records.iter_mut().flatten().find(|r| Some(&r.digest) == f.layer.as_ref()) {
                            r.secrets.push(f.clone());
                        }
                    }
                    for f in &found.malware {
                        if let Some(r) = records.iter_mut().flatten().find(|r| Some(&r.digest) == f.layer.as_ref()) {
                            r.malware.push(f.clone());
                        }
                    }
                    // A file an engine could not check leaves its layer unsettled; which one is
                    // not known, so no layer is recorded.
                    if !found.problems.is_empty() {
                        records.clear();
                    }
                    self.secrets.extend(found.secrets);
                    self.malware.extend(found.malware);
                    for (path, message) in found.problems {
                        self.problem("unreadable", message, Some(&path));
                    }
                }
                Err(e) => {
                    records.clear();
                    self.problem("unsupported", e, None);
                }
            }
        }
        if self.inspection_failed {
            records.clear();
        }
        // A layer twice in one image: its findings cannot be told apart.
        let records: Vec<LayerRecord> = records.into_iter().flatten().collect();
        let once = |d: &str| self.layers.iter().filter(|l| l.as_str() == d).count() == 1;
        let records = records.into_iter().filter(|r| once(&r.digest)).collect();
        let mut os = None;
        for candidate in ["etc/os-release", "usr/lib/os-release"] {
            match self.resolve(candidate) {
                Ok(Some(k)) => {
                    if let Some(File { captured: Captured::OsRelease(text), .. }) = self.files.get(k) {
                        os = Os::parse(text);
                    }
                    if os.is_some() {
                        break;
                    }
                }
                Ok(None) => {}
                Err(()) => self.problem("symlink-loop", "os-release is a symlink loop", Some(candidate)),
            }
        }
        let mut packages = Vec::new();
        for (_, f) in std::mem::take(&mut self.files) {
            if let Captured::Packages(list) = f.captured {
                for (mut p, since) in list {
                    p.layer = self.layers.get(since).filter(|l| !l.is_empty()).cloned();
                    p.purl = detect::purl_of(&p, os.as_ref());
                    packages.push(p);
                }
            }
        }
        packages.sort_by(|a, b| (a.ecosystem, &a.name, &a.version, &a.path).cmp(&(b.ecosystem, &b.name, &b.version, &b.path)));
        packages.dedup_by(|a, b| a.ecosystem == b.ecosystem && a.name == b.name && a.version == b.version && a.path == b.path);
        // In layer order (the image config's first), however each layer was seen.
        let position = |layer: &Option<String>| layer.as_ref().map_or(0, |d| 1 + self.layers.iter().position(|l| l == d).unwrap_or(0));
        self.secrets.sort_by_key(|f| position(&f.layer));
        self.malware.sort_by_key(|f| position(&f.layer));
        let inventory = Inventory {
            os,
            packages,
            problems: self.problems,
            layers: self.layers.into_iter().filter(|l| !l.is_empty()).collect(),
            bytes: self.bytes,
            entries: self.entries,
            secrets: self.secrets,
            malware: self.malware,
            misconfigurations: self.misconfigurations,
        };
        (inventory, records)
    }
}

fn read_up_to(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        let k = r.read(&mut buf[n..])?;
        if k == 0 {
            break;
        }
        n += k;
    }
    Ok(n)
}

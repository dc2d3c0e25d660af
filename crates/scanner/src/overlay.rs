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
        }
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
        if self.problems.len() >= 1000 {
            return;
        }
        let layer = self.layers.last().cloned().filter(|l| !l.is_empty());
        self.problems.push(Problem { code, message: message.into(), layer, path: path.map(str::to_owned) });
    }

    /// Reads one layer (compressed or not) to its end. Problems are recorded; nothing is fatal.
    /// `digest` names the layer in the report.
    pub fn add_layer(&mut self, digest: &str, reader: impl Read) {
        self.layers.push(digest.to_owned());
        if self.stopped {
            self.problem("image-too-large", "not read: an earlier layer reached a limit", None);
            return;
        }
        let budget = self.limits.max_image.saturating_sub(self.bytes);
        let result = decompress(reader).and_then(|r| {
            let mut counted = Budget { inner: r, used: 0, budget };
            let out = self.read_tar(&mut counted);
            self.bytes += counted.used;
            out
        });
        if let Err(e) = result {
            if is_budget(&e) {
                self.stopped = true;
                self.problem("image-too-large", format!("uncompressed size passed the {}-byte limit; the rest of the image is not inspected", self.limits.max_image), None);
            } else if e.kind() != io::ErrorKind::Interrupted {
                self.problem("layer-unreadable", format!("layer unreadable past this point: {e}"), None);
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
                    self.remove_below(dir, layer, false);
                } else {
                    let target = if dir.is_empty() { hidden.to_owned() } else { format!("{dir}/{hidden}") };
                    self.remove_below(&target, layer, true);
                }
                continue;
            }
            let old = match h.kind {
                Kind::Dir => None,
                _ => {
                    // A non-directory hides whatever lower layers had at and below this path.
                    let old = self.files.remove(&path);
                    self.remove_below(&path, layer, false);
                    old
                }
            };
            match h.kind {
                Kind::Dir => {
                    if self.inspection.misconfig {
                        let digest = self.layers[layer].clone();
                        check_mode(&path, h.mode, true, Some(&digest), &mut self.misconfigurations);
                    }
                }
                Kind::Fifo => {}
                Kind::Device => self.problem("device-file", "a device node in a layer", Some(&path)),
                Kind::Sparse => self.problem("sparse-file", "a GNU sparse file; not inspected", Some(&path)),
                Kind::Other(t) => {
                    if !t.is_ascii_alphanumeric() {
                        self.problem("unsupported", format!("unknown entry type {t:#x}; skipped"), Some(&path));
                    }
                }
                // Every symlink is kept (path and target only), so resolving one can tell a
                // loop from a link to nowhere.
                Kind::Symlink => {
                    self.files.insert(path, File { layer, captured: Captured::Symlink(h.link) });
                }
                Kind::Hardlink => {
                    let target = match clean(&h.link) {
                        Ok((t, _)) => t,
                        Err(code) => {
                            self.problem(code, format!("hard link to {:?} escapes the root", h.link), Some(&path));
                            continue;
                        }
                    };
                    if !seen.contains(&target) {
                        self.problem("hardlink-missing", format!("hard link to {target:?}, which this layer does not hold"), Some(&path));
                        continue;
                    }
                    if let Some(f) = self.files.get(&target) {
                        let captured = match &f.captured {
                            Captured::Packages(p) => Captured::Packages(
                                p.iter().map(|(pkg, _)| (Package { path: path.clone(), ..pkg.clone() }, layer)).collect(),
                            ),
                            Captured::OsRelease(t) => Captured::OsRelease(t.clone()),
                            Captured::Symlink(t) => Captured::Symlink(t.clone()),
                        };
                        self.files.insert(path, File { layer, captured });
                    }
                }
                Kind::File => {
                    self.regular_file(&path, h.mode, h.size, layer, old, || Ok(&mut tar))?;
                }
            }
        }
    }

    /// A regular file, from a layer or a directory: its mode, the detectors that want it and the
    /// inspection engines. `open` is called only when the contents are needed; `Ok(true)` when
    /// they were read.
    fn regular_file<R: Read>(
        &mut self,
        path: &str,
        mode: u32,
        size: u64,
        layer: usize,
        old: Option<File>,
        open: impl FnOnce() -> io::Result<R>,
    ) -> io::Result<bool> {
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
            if let Some(w) = wanted
                && (w != Wanted::Binary || bytes.starts_with(b"\x7fELF"))
            {
                self.found(path, w, &bytes, layer, old)?;
            }
            self.inspect(path, bytes, layer);
            Ok(true)
        } else if let Some(w) = wanted {
            let mut r = open()?;
            self.capture(path, w, size, &mut r, layer, old)?;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    /// Reads a wanted file and records what its detector found.
    fn capture(&mut self, path: &str, wanted: Wanted, size: u64, r: &mut dyn Read, layer: usize, old: Option<File>) -> io::Result<()> {
        if let Wanted::Binary = wanted {
            // Only ELF files are read whole.
            let mut magic = [0u8; 4];
            let n = read_up_to(r, &mut magic)?;
            if n < 4 || magic != *b"\x7fELF" {
                return Ok(());
            }
            let mut bytes = Vec::with_capacity(size.min(self.limits.max_file) as usize);
            bytes.extend_from_slice(&magic);
            r.take(size - 4).read_to_end(&mut bytes)?;
            return self.found(path, wanted, &bytes, layer, old);
        }
        let mut bytes = Vec::with_capacity(size.min(1 << 20) as usize);
        r.take(size).read_to_end(&mut bytes)?;
        self.found(path, wanted, &bytes, layer, old)
    }

    fn found(&mut self, path: &str, wanted: Wanted, bytes: &[u8], layer: usize, old: Option<File>) -> io::Result<()> {
        if let Wanted::OsRelease = wanted {
            let text = String::from_utf8_lossy(bytes).into_owned();
            self.files.insert(path.to_owned(), File { layer, captured: Captured::OsRelease(text) });
            return Ok(());
        }
        let mut packages = Vec::new();
        let mut problems = Vec::new();
        detect::parse(wanted, path, bytes, &self.limits, &mut packages, &mut problems);
        for (code, msg) in problems {
            self.problem(code, msg, Some(path));
        }
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
        if !listed.is_empty() {
            self.files.insert(path.to_owned(), File { layer, captured: Captured::Packages(listed) });
        }
        Ok(())
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
                    self.files.insert(rel, File { layer, captured: Captured::Symlink(target) });
                } else if ft.is_file() {
                    use std::os::unix::fs::PermissionsExt;
                    match self.regular_file(&rel, meta.permissions().mode(), meta.len(), layer, None, || std::fs::File::open(&p)) {
                        Ok(true) => self.bytes += meta.len(),
                        Ok(false) => {}
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
    pub fn finish(mut self) -> Inventory {
        if let Some(inspector) = self.inspector.take() {
            match inspector.finish() {
                Ok(found) => {
                    self.secrets.extend(found.secrets);
                    self.malware.extend(found.malware);
                    for (path, message) in found.problems {
                        self.problem("unreadable", message, Some(&path));
                    }
                }
                Err(e) => self.problem("unsupported", e, None),
            }
        }
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
        Inventory {
            os,
            packages,
            problems: self.problems,
            layers: self.layers.into_iter().filter(|l| !l.is_empty()).collect(),
            bytes: self.bytes,
            entries: self.entries,
            secrets: self.secrets,
            malware: self.malware,
            misconfigurations: self.misconfigurations,
        }
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

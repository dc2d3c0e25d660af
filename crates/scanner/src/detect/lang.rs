//! Language package metadata: Python, Node, Cargo.lock, RubyGems, Composer, .NET.

use super::Problems;
use crate::{Ecosystem, Package};
use serde::Deserialize;

/// `*.dist-info/METADATA` and `*.egg-info/PKG-INFO`: RFC 822 headers up to the first blank line.
pub(super) fn python(path: &str, bytes: &[u8], out: &mut Vec<Package>) {
    let text = String::from_utf8_lossy(bytes);
    let (mut name, mut version, mut license) = (None, None, None);
    for line in text.lines() {
        if line.is_empty() {
            break;
        }
        match line.split_once(':') {
            Some(("Name", v)) => name = Some(v.trim()),
            Some(("Version", v)) => version = Some(v.trim()),
            Some(("License", v)) if !v.trim().is_empty() && v.trim() != "UNKNOWN" => license = Some(v.trim()),
            Some(("License-Expression", v)) => license = Some(v.trim()),
            _ => {}
        }
    }
    if let (Some(n), Some(v)) = (name, version) {
        let mut p = Package::new(Ecosystem::Pypi, n, v, path);
        p.license = license.map(|l| l.lines().next().unwrap_or(l).to_owned());
        out.push(p);
    }
}

#[derive(Deserialize)]
struct NodePackage {
    name: Option<String>,
    version: Option<String>,
    #[serde(default)]
    license: Option<serde_json::Value>,
}

pub(super) fn node(path: &str, bytes: &[u8], out: &mut Vec<Package>) {
    let Ok(p) = serde_json::from_slice::<NodePackage>(bytes) else { return };
    let (Some(name), Some(version)) = (p.name, p.version) else { return };
    if name.is_empty() || version.is_empty() {
        return;
    }
    let mut pkg = Package::new(Ecosystem::Npm, name, version, path);
    pkg.license = p.license.and_then(|l| l.as_str().map(str::to_owned));
    out.push(pkg);
}

#[derive(Deserialize)]
struct CargoLock {
    #[serde(default)]
    package: Vec<CargoPackage>,
}

#[derive(Deserialize)]
struct CargoPackage {
    name: String,
    version: String,
    #[serde(default)]
    source: Option<String>,
}

pub(super) fn cargo_lock(path: &str, bytes: &[u8], out: &mut Vec<Package>, problems: &mut Problems) {
    let text = String::from_utf8_lossy(bytes);
    match toml::from_str::<CargoLock>(&text) {
        // Path and workspace members have no source: they are the project itself.
        Ok(lock) => out.extend(lock.package.into_iter().filter(|p| p.source.is_some()).map(|p| Package::new(Ecosystem::Cargo, p.name, p.version, path))),
        Err(e) => problems.push(("unparsable", format!("Cargo.lock: {}", e.message()))),
    }
}

/// `specifications/<name>-<version>.gemspec`, as RubyGems writes it (`s.name = "rake".freeze`).
pub(super) fn gemspec(path: &str, bytes: &[u8], out: &mut Vec<Package>) {
    let text = String::from_utf8_lossy(bytes);
    let value = |key: &str| {
        text.lines().find_map(|l| {
            let l = l.trim();
            let rest = l.strip_prefix("s.")?.strip_prefix(key)?.trim_start().strip_prefix('=')?;
            let v = rest.trim().trim_end_matches(".freeze");
            let v = v.strip_prefix("Gem::Version.new(").map_or(v, |v| v.trim_end_matches(')'));
            Some(v.trim_matches(|c| c == '"' || c == '\'').to_owned())
        })
    };
    let (Some(name), Some(version)) = (value("name"), value("version")) else { return };
    let mut p = Package::new(Ecosystem::Gem, name, version, path);
    p.license = value("licenses").map(|l| l.trim_matches(|c| c == '[' || c == ']' || c == '"').to_owned());
    out.push(p);
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Installed {
    V2 { packages: Vec<ComposerPackage> },
    V1(Vec<ComposerPackage>),
}

#[derive(Deserialize)]
struct ComposerPackage {
    name: String,
    version: String,
}

pub(super) fn composer(path: &str, bytes: &[u8], out: &mut Vec<Package>, problems: &mut Problems) {
    match serde_json::from_slice::<Installed>(bytes) {
        Ok(Installed::V2 { packages } | Installed::V1(packages)) => {
            out.extend(packages.into_iter().map(|p| Package::new(Ecosystem::Composer, p.name, p.version.trim_start_matches('v'), path)))
        }
        Err(e) => problems.push(("unparsable", format!("composer installed.json: {e}"))),
    }
}

#[derive(Deserialize)]
struct DepsJson {
    #[serde(default)]
    libraries: std::collections::BTreeMap<String, Library>,
}

#[derive(Deserialize)]
struct Library {
    #[serde(rename = "type")]
    kind: String,
}

pub(super) fn dotnet(path: &str, bytes: &[u8], out: &mut Vec<Package>, problems: &mut Problems) {
    match serde_json::from_slice::<DepsJson>(bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes)) {
        Ok(deps) => {
            for (key, lib) in deps.libraries {
                if lib.kind != "package" {
                    continue;
                }
                if let Some((name, version)) = key.split_once('/') {
                    out.push(Package::new(Ecosystem::Nuget, name, version, path));
                }
            }
        }
        Err(e) => problems.push(("unparsable", format!(".deps.json: {e}"))),
    }
}

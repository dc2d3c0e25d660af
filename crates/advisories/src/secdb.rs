//! Alpine's secdb (`secfixes`: fixed version → CVE ids, per package and release), in the YAML the
//! `alpine-secdb` repository holds and the JSON secdb.alpinelinux.org serves. One advisory per CVE
//! per release file, id `ALPINE-<CVE>`, affecting each package up to the version that fixed it.
//! A fixed version of `0` means "never affected" and is skipped.

use crate::model::{Advisory, Affected, Event, Range};
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Deserialize)]
struct Doc {
    distroversion: String,
    #[serde(default)]
    packages: Vec<PkgWrap>,
}

#[derive(Deserialize)]
struct PkgWrap {
    pkg: Pkg,
}

#[derive(Deserialize)]
struct Pkg {
    name: String,
    #[serde(default)]
    secfixes: BTreeMap<String, Option<Vec<String>>>,
}

/// (release, package, fixed version, ids)
type Fix = (String, String, String, Vec<String>);

/// True when the bytes look like a secdb document in either form.
pub fn looks_like(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(512)];
    head.windows(b"distroversion".len()).any(|w| w == b"distroversion")
}

pub fn parse(bytes: &[u8]) -> Result<Vec<Advisory>, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "secdb: not UTF-8".to_owned())?;
    let fixes = if text.trim_start().starts_with('{') { parse_json(bytes)? } else { parse_yaml(text)? };
    let mut by_id: BTreeMap<String, Advisory> = BTreeMap::new();
    for (release, package, fixed, ids) in fixes {
        if fixed == "0" {
            continue;
        }
        let release = release.trim_start_matches('v');
        let ecosystem = format!("Alpine:v{release}");
        for id in ids {
            let adv = by_id.entry(format!("ALPINE-{id}")).or_insert_with(|| Advisory {
                id: format!("ALPINE-{id}"),
                aliases: vec![id.clone()],
                related: Vec::new(),
                summary: String::new(),
                modified: String::new(),
                severity: None,
                affected: Vec::new(),
                source: "alpine-secdb".into(),
            });
            adv.affected.push(Affected {
                ecosystem: ecosystem.clone(),
                name: package.clone(),
                ranges: vec![Range { semver: false, events: vec![Event::Introduced("0".into()), Event::Fixed(fixed.clone())] }],
                versions: Vec::new(),
            });
        }
    }
    Ok(by_id.into_values().collect())
}

fn parse_json(bytes: &[u8]) -> Result<Vec<Fix>, String> {
    let doc: Doc = serde_json::from_slice(bytes).map_err(|e| format!("secdb JSON: {e}"))?;
    let mut out = Vec::new();
    for p in doc.packages {
        for (fixed, ids) in p.pkg.secfixes {
            out.push((doc.distroversion.clone(), p.pkg.name.clone(), fixed, ids.unwrap_or_default().iter().flat_map(|s| ids_in(s)).collect()));
        }
    }
    Ok(out)
}

/// The ids on a secfix line: `CVE-2019-1234`, `XSA-123`, several per line, comments dropped.
fn ids_in(line: &str) -> Vec<String> {
    let line = line.split('#').next().unwrap_or("");
    line.split_whitespace()
        .map(|w| w.trim_matches(|c: char| !c.is_ascii_alphanumeric()))
        .filter(|w| w.contains('-') && w.bytes().any(|c| c.is_ascii_digit()) && w.bytes().next().is_some_and(|c| c.is_ascii_uppercase()))
        .map(str::to_owned)
        .collect()
}

/// The secdb YAML is a fixed shape; this reads exactly that shape by indentation and says where
/// it found something else.
fn parse_yaml(text: &str) -> Result<Vec<Fix>, String> {
    let mut release = None;
    let mut out = Vec::new();
    let mut package: Option<String> = None;
    let mut in_secfixes = false;
    let mut fixed: Option<String> = None;
    let unquote = |s: &str| s.trim().trim_matches(|c| c == '"' || c == '\'').to_owned();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.split(" #").next().unwrap_or(raw).trim_end();
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed == "---" {
            continue;
        }
        let indent = line.len() - trimmed.len();
        if indent == 0 {
            if let Some(v) = trimmed.strip_prefix("distroversion:") {
                release = Some(unquote(v));
            }
            package = None;
            in_secfixes = false;
            continue;
        }
        if let Some(v) = trimmed.strip_prefix("name:") {
            package = Some(unquote(v));
            in_secfixes = false;
        } else if trimmed.starts_with("- pkg:") {
            package = None;
            in_secfixes = false;
        } else if trimmed.starts_with("secfixes:") {
            in_secfixes = true;
            fixed = None;
        } else if in_secfixes {
            if let Some(item) = trimmed.strip_prefix("- ") {
                let (Some(p), Some(f)) = (&package, &fixed) else {
                    return Err(format!("secdb YAML line {}: a fix with no package or version", n + 1));
                };
                let rel = release.clone().ok_or_else(|| format!("secdb YAML line {}: no distroversion", n + 1))?;
                out.push((rel, p.clone(), f.clone(), ids_in(item)));
            } else if let Some(v) = trimmed.strip_suffix(':') {
                fixed = Some(unquote(v));
            } else {
                return Err(format!("secdb YAML line {}: unexpected {trimmed:?}", n + 1));
            }
        }
    }
    if release.is_none() {
        return Err("secdb YAML: no distroversion".into());
    }
    Ok(out)
}

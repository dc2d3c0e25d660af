//! Java archives (jar, war, ear, and Jenkins' hpi/jpi): `META-INF/maven/<group>/<artifact>/pom.properties`
//! for each bundled artifact, `MANIFEST.MF` when there is none, the file name as the last resort;
//! archives nested inside (Spring Boot's `BOOT-INF/lib`, `WEB-INF/lib`) are read too, to a depth.

use super::Problems;
use crate::{Ecosystem, Limits, Package};
use std::io::{Cursor, Read};

pub(super) fn is_archive(base: &str) -> bool {
    let lower = base.to_ascii_lowercase();
    [".jar", ".war", ".ear", ".hpi", ".jpi"].iter().any(|e| lower.ends_with(e))
}

fn properties(text: &str) -> impl Iterator<Item = (&str, &str)> {
    text.lines().filter(|l| !l.trim_start().starts_with('#')).filter_map(|l| l.split_once('=')).map(|(k, v)| (k.trim(), v.trim()))
}

/// MANIFEST.MF main attributes (72-byte lines with continuations).
fn manifest(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.is_empty() {
            break;
        }
        if let Some(cont) = line.strip_prefix(' ') {
            if let Some(last) = out.last_mut() {
                last.1.push_str(cont);
            }
        } else if let Some((k, v)) = line.split_once(':') {
            out.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    out
}

/// `log4j-core-2.14.1.jar` → (`log4j-core`, `2.14.1`).
fn from_file_name(base: &str) -> Option<(String, String)> {
    let stem = &base[..base.rfind('.')?];
    let cut = stem.match_indices('-').find(|(i, _)| stem[i + 1..].starts_with(|c: char| c.is_ascii_digit()))?.0;
    Some((stem[..cut].to_owned(), stem[cut + 1..].to_owned()))
}

pub(super) fn archive(path: &str, bytes: &[u8], limits: &Limits, depth: u32, out: &mut Vec<Package>, problems: &mut Problems) {
    let mut zip = match zip::ZipArchive::new(Cursor::new(bytes)) {
        Ok(z) => z,
        Err(e) => return problems.push(("unparsable", format!("{path}: not a readable zip archive: {e}"))),
    };
    let before = out.len();
    let mut manifest_attrs = Vec::new();
    for i in 0..zip.len() {
        let mut entry = match zip.by_index(i) {
            Ok(e) => e,
            Err(e) => {
                problems.push(("unparsable", format!("{path}: entry {i}: {e}")));
                continue;
            }
        };
        let name = entry.name().map(|n| n.into_owned()).unwrap_or_default();
        let inner_path = format!("{path}!/{name}");
        let is_pom = name.starts_with("META-INF/maven/") && name.ends_with("/pom.properties");
        let is_manifest = name.eq_ignore_ascii_case("META-INF/MANIFEST.MF");
        let nested = is_archive(&name);
        if !(is_pom || is_manifest || nested) {
            continue;
        }
        if entry.size() > limits.max_file {
            problems.push(("file-too-large", format!("{inner_path}: {} bytes uncompressed, over the limit; not inspected", entry.size())));
            continue;
        }
        let mut data = Vec::with_capacity(entry.size().min(1 << 20) as usize);
        if let Err(e) = (&mut entry).take(limits.max_file).read_to_end(&mut data) {
            problems.push(("unparsable", format!("{inner_path}: {e}")));
            continue;
        }
        if is_pom {
            let text = String::from_utf8_lossy(&data);
            let get = |k: &str| properties(&text).find(|(key, _)| *key == k).map(|(_, v)| v.to_owned());
            if let (Some(g), Some(a), Some(v)) = (get("groupId"), get("artifactId"), get("version")) {
                out.push(Package::new(Ecosystem::Maven, format!("{g}:{a}"), v, path));
            }
        } else if is_manifest {
            manifest_attrs = manifest(&String::from_utf8_lossy(&data));
        } else if depth + 1 >= limits.max_nesting {
            problems.push(("unsupported", format!("{inner_path}: archives nested deeper than {}; not inspected", limits.max_nesting)));
        } else {
            archive(&inner_path, &data, limits, depth + 1, out, problems);
        }
    }
    let own = out[before..].iter().any(|p| p.path == path);
    if own {
        return;
    }
    // No pom.properties for the archive itself: its manifest, or its file name.
    let get = |k: &str| manifest_attrs.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    let base = path.rsplit(['/', '!']).next().unwrap_or(path);
    let from_name = from_file_name(base);
    let artifact = get("Implementation-Title").filter(|t| !t.contains(' ')).or_else(|| from_name.as_ref().map(|(a, _)| a.clone()));
    let version = get("Implementation-Version").or_else(|| get("Bundle-Version")).or_else(|| from_name.as_ref().map(|(_, v)| v.clone()));
    let group = get("Implementation-Vendor-Id").or_else(|| {
        // OSGi bundles: `Bundle-SymbolicName: org.example.thing` names group and artifact.
        let sym = get("Bundle-SymbolicName")?;
        let sym = sym.split(';').next()?.trim().to_owned();
        let (g, _) = sym.rsplit_once('.')?;
        Some(g.to_owned())
    });
    if let (Some(a), Some(v)) = (artifact, version) {
        let name = match group {
            Some(g) => format!("{g}:{a}"),
            None => a,
        };
        out.push(Package::new(Ecosystem::Maven, name, v, path));
    }
}

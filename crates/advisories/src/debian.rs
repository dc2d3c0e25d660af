//! The Debian security tracker's DSA and DLA lists (`data/DSA/list`, `data/DLA/list`), read
//! natively. An entry:
//!
//! ```text
//! [29 Mar 2023] DSA-5380-1 xorg-server - security update
//!     {CVE-2023-1393}
//!     [bullseye] - xorg-server 2:1.20.11-1+deb11u6
//! ```
//!
//! (continuation lines start with a tab) becomes an advisory affecting the *source* package in `Debian:<release>` from the first version
//! up to the fixed one. `<not-affected>`, `<unfixed>`, `<end-of-life>` and `<removed>` lines state
//! no fixed version and are left out, as osv.dev's converter does.

use crate::ecosystem::debian_release;
use crate::model::{Advisory, Affected, Event, Range};

/// True when the text starts like a DSA/DLA list.
pub fn looks_like(bytes: &[u8]) -> bool {
    let head = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
    head.starts_with('[') && (head.contains("] DSA-") || head.contains("] DLA-") || head.contains("] DTSA-"))
}

/// Parses a list; malformed entries are returned as problems, never fatal.
pub fn parse(bytes: &[u8]) -> (Vec<Advisory>, Vec<String>) {
    let text = String::from_utf8_lossy(bytes);
    let mut out: Vec<Advisory> = Vec::new();
    let mut problems = Vec::new();
    let mut current: Option<Advisory> = None;
    for (n, line) in text.lines().enumerate() {
        if line.starts_with('[') {
            if let Some(a) = current.take() {
                out.push(a);
            }
            // [dd Mon yyyy] ID package - summary
            let Some((_, rest)) = line.split_once("] ") else {
                problems.push(format!("line {}: no date", n + 1));
                continue;
            };
            let mut words = rest.splitn(2, ' ');
            let id = words.next().unwrap_or("").to_owned();
            if !(id.starts_with("DSA-") || id.starts_with("DLA-") || id.starts_with("DTSA-")) {
                problems.push(format!("line {}: {id:?} is not a DSA/DLA id", n + 1));
                continue;
            }
            current = Some(Advisory {
                id,
                aliases: Vec::new(),
                related: Vec::new(),
                summary: words.next().unwrap_or("").trim().to_owned(),
                modified: String::new(),
                severity: None,
                affected: Vec::new(),
                source: "debian-tracker".into(),
            });
            continue;
        }
        let Some(adv) = current.as_mut() else { continue };
        let t = line.trim();
        if let Some(ids) = t.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
            adv.aliases.extend(ids.split_whitespace().map(str::to_owned));
        } else if let Some(rest) = t.strip_prefix('[') {
            // [bullseye] - pkg version [(comment)]
            let Some((codename, rest)) = rest.split_once(']') else {
                problems.push(format!("line {}: {} has an unreadable release line", n + 1, adv.id));
                continue;
            };
            let Some(release) = debian_release(codename) else { continue };
            let mut words = rest.trim().trim_start_matches('-').split_whitespace();
            let (Some(package), Some(version)) = (words.next(), words.next()) else {
                problems.push(format!("line {}: {} names no package and version", n + 1, adv.id));
                continue;
            };
            if version.starts_with('<') {
                continue;
            }
            adv.affected.push(Affected {
                ecosystem: format!("Debian:{release}"),
                name: package.to_owned(),
                ranges: vec![Range { semver: false, events: vec![Event::Introduced("0".into()), Event::Fixed(version.to_owned())] }],
                versions: Vec::new(),
            });
        }
    }
    if let Some(a) = current.take() {
        out.push(a);
    }
    out.retain(|a| !a.affected.is_empty());
    (out, problems)
}

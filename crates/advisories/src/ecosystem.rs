//! OSV ecosystem strings: which version scheme orders them and how package names compare.

use crate::Scheme;

/// The scheme an OSV ecosystem orders its versions by (`Debian:12` → dpkg), if we know it.
pub fn scheme(ecosystem: &str) -> Option<Scheme> {
    let base = ecosystem.split(':').next().unwrap_or(ecosystem);
    Some(match base {
        "Debian" | "Ubuntu" => Scheme::Dpkg,
        "Alpine" | "Wolfi" | "Chainguard" => Scheme::Apk,
        "AlmaLinux" | "Rocky Linux" | "Red Hat" | "openSUSE" | "SUSE" | "Mageia" | "Photon OS" | "openEuler" => {
            Scheme::Rpm
        }
        "PyPI" => Scheme::Pep440,
        "npm" | "crates.io" | "Packagist" | "Hex" | "Pub" => Scheme::Semver,
        "Go" => Scheme::Go,
        "Maven" => Scheme::Maven,
        "RubyGems" => Scheme::RubyGems,
        "NuGet" => Scheme::NuGet,
        _ => return None,
    })
}

/// A package name as the ecosystem compares it: PEP 503 for PyPI (`Jinja2` = `jinja2`,
/// `zope.interface` = `zope-interface`), case-insensitive for NuGet and Packagist.
pub fn normalize_name(ecosystem: &str, name: &str) -> String {
    match ecosystem {
        "PyPI" => {
            let mut out = String::with_capacity(name.len());
            let mut sep = false;
            for c in name.trim().chars() {
                if matches!(c, '-' | '_' | '.') {
                    sep = true;
                } else {
                    if sep && !out.is_empty() {
                        out.push('-');
                    }
                    sep = false;
                    out.push(c.to_ascii_lowercase());
                }
            }
            out
        }
        "NuGet" | "Packagist" => name.trim().to_ascii_lowercase(),
        _ => name.trim().to_owned(),
    }
}

/// The Debian release number of a codename, as the security tracker names releases.
pub fn debian_release(codename: &str) -> Option<&'static str> {
    Some(match codename {
        "squeeze" => "6",
        "wheezy" => "7",
        "jessie" => "8",
        "stretch" => "9",
        "buster" => "10",
        "bullseye" => "11",
        "bookworm" => "12",
        "trixie" => "13",
        "forky" => "14",
        _ => return None,
    })
}

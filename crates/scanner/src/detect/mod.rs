//! Which files say what is installed, and the parsers that read them.

mod binary;
mod java;
mod lang;
mod system;

use crate::purl::purl;
use crate::{Ecosystem, Limits, Os, Package};

/// Problems a parser reports: (code, message).
pub(crate) type Problems = Vec<(&'static str, String)>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wanted {
    OsRelease,
    DpkgStatus,
    DpkgStatusD,
    Apk,
    RpmSqlite,
    RpmBerkeley,
    Python,
    Node,
    CargoLock,
    Gemspec,
    Composer,
    DotnetDeps,
    Archive,
    /// An executable: read whole if it is ELF (Go build info, cargo-auditable).
    Binary,
}

/// Whether a detector wants this file.
pub(crate) fn wanted(path: &str, mode: u32, size: u64) -> Option<Wanted> {
    let base = path.rsplit('/').next().unwrap_or(path);
    let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
    Some(match path {
        "etc/os-release" | "usr/lib/os-release" => Wanted::OsRelease,
        "var/lib/dpkg/status" => Wanted::DpkgStatus,
        "lib/apk/db/installed" => Wanted::Apk,
        "var/lib/rpm/rpmdb.sqlite" | "usr/lib/sysimage/rpm/rpmdb.sqlite" => Wanted::RpmSqlite,
        "var/lib/rpm/Packages" | "usr/lib/sysimage/rpm/Packages" => Wanted::RpmBerkeley,
        _ if dir == "var/lib/dpkg/status.d" && !base.ends_with(".md5sums") => Wanted::DpkgStatusD,
        _ if base == "METADATA" && dir.ends_with(".dist-info") => Wanted::Python,
        _ if (base == "PKG-INFO" && dir.ends_with(".egg-info")) || base.ends_with(".egg-info") => Wanted::Python,
        _ if base == "package.json" && is_node_package_dir(dir) => Wanted::Node,
        _ if base == "Cargo.lock" => Wanted::CargoLock,
        _ if base.ends_with(".gemspec") && dir.ends_with("specifications") => Wanted::Gemspec,
        _ if path.ends_with("vendor/composer/installed.json") => Wanted::Composer,
        _ if base.ends_with(".deps.json") => Wanted::DotnetDeps,
        _ if java::is_archive(base) => Wanted::Archive,
        _ if mode & 0o111 != 0 && size >= 64 => Wanted::Binary,
        _ => return None,
    })
}

/// `…/node_modules/<name>` or `…/node_modules/@scope/<name>`.
fn is_node_package_dir(dir: &str) -> bool {
    let mut segs = dir.rsplit('/');
    match (segs.next(), segs.next(), segs.next()) {
        (Some(_), Some("node_modules"), _) => true,
        (Some(_), Some(scope), Some("node_modules")) => scope.starts_with('@'),
        _ => false,
    }
}

pub(crate) fn parse(wanted: Wanted, path: &str, bytes: &[u8], limits: &Limits, out: &mut Vec<Package>, problems: &mut Problems) {
    match wanted {
        Wanted::OsRelease => {}
        Wanted::DpkgStatus | Wanted::DpkgStatusD => system::dpkg(path, bytes, wanted == Wanted::DpkgStatusD, out),
        Wanted::Apk => system::apk(path, bytes, out),
        Wanted::RpmSqlite => system::rpm_sqlite(path, bytes, out, problems),
        Wanted::RpmBerkeley => system::rpm_berkeley(path, bytes, out, problems),
        Wanted::Python => lang::python(path, bytes, out),
        Wanted::Node => lang::node(path, bytes, out),
        Wanted::CargoLock => lang::cargo_lock(path, bytes, out, problems),
        Wanted::Gemspec => lang::gemspec(path, bytes, out),
        Wanted::Composer => lang::composer(path, bytes, out, problems),
        Wanted::DotnetDeps => lang::dotnet(path, bytes, out, problems),
        Wanted::Archive => java::archive(path, bytes, limits, 0, out, problems),
        Wanted::Binary => binary::elf(path, bytes, out, problems),
    }
}

/// The purl of a found package; distribution packages carry the distro qualifier.
pub(crate) fn purl_of(p: &Package, os: Option<&Os>) -> String {
    let distro = os.map(Os::purl_distro).unwrap_or_default();
    let os_ns = os.map(|o| o.id.as_str()).unwrap_or("");
    let arch = p.arch.as_deref().unwrap_or("");
    let split = |name: &str, sep: char| match name.rsplit_once(sep) {
        Some((ns, n)) => (Some(ns.to_owned()), n.to_owned()),
        None => (None, name.to_owned()),
    };
    match p.ecosystem {
        Ecosystem::Deb | Ecosystem::Apk | Ecosystem::Rpm => {
            let ns = if os_ns.is_empty() { p.ecosystem.as_str().replace("deb", "debian").replace("apk", "alpine") } else { os_ns.to_owned() };
            let upstream = p.source.as_ref().filter(|s| s.name != p.name).map(|s| s.name.clone()).unwrap_or_default();
            // rpm's purls carry the epoch as a qualifier, not in the version.
            let (epoch, version) = match p.version.split_once(':') {
                Some((e, v)) if p.ecosystem == Ecosystem::Rpm => (e, v),
                _ => ("", p.version.as_str()),
            };
            purl(p.ecosystem.as_str(), Some(&ns), &p.name, version, &[("arch", arch), ("distro", &distro), ("epoch", epoch), ("upstream", &upstream)])
        }
        Ecosystem::Pypi => purl("pypi", None, &p.name.to_ascii_lowercase().replace('_', "-"), &p.version, &[]),
        Ecosystem::Npm | Ecosystem::Golang | Ecosystem::Composer => {
            let (ns, n) = split(&p.name, '/');
            purl(p.ecosystem.as_str(), ns.as_deref(), &n, &p.version, &[])
        }
        Ecosystem::Maven => {
            let (ns, n) = split(&p.name, ':');
            purl("maven", ns.as_deref(), &n, &p.version, &[])
        }
        Ecosystem::Cargo | Ecosystem::Gem | Ecosystem::Nuget => purl(p.ecosystem.as_str(), None, &p.name, &p.version, &[]),
    }
}

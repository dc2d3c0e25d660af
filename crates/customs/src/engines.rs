//! The secret, malware and ClamAV engines as the settings (and `customs scan`'s flags) ask: built
//! once and shared by the scan command and the inspection workers.

use crate::config::Config;
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub struct Wanted {
    pub secrets: bool,
    pub malware: bool,
    pub misconfig: bool,
}

/// The engines, and what identifies them: which ran, with which rules (by content). An external
/// engine's signatures are not part of it; they are asked for at each inspection.
pub struct Engines {
    pub inspection: scanner::Inspection,
    pub fingerprint: String,
}

/// Engines from `config.scan` plus extra rule files and an overriding clamd socket.
pub fn build(config: &Config, wanted: &Wanted, extra_secret_rules: &[PathBuf], extra_malware_rules: &[PathBuf], clamd: Option<&Path>) -> anyhow::Result<Engines> {
    let mut insp = scanner::Inspection { misconfig: wanted.misconfig, ..Default::default() };
    // Everything that decides what the engines find, each part length-prefixed.
    let mut identity = Vec::new();
    let mut part = |kind: &str, text: &str| {
        for piece in [kind, text] {
            identity.extend_from_slice(&(piece.len() as u64).to_be_bytes());
            identity.extend_from_slice(piece.as_bytes());
        }
    };
    part("wanted", &format!("secrets={} malware={} misconfig={}", wanted.secrets, wanted.malware, wanted.misconfig));
    if wanted.secrets {
        let mut files = Vec::new();
        for p in config.scan.secret_rules.iter().chain(extra_secret_rules) {
            let text = std::fs::read_to_string(p).with_context(|| format!("cannot read secret rules {}", p.display()))?;
            part("secret-rules", &text);
            files.push(scanner::secrets::RuleFile::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?);
        }
        insp.secrets = Some(Arc::new(scanner::secrets::SecretScanner::new(&files).map_err(anyhow::Error::msg)?));
    }
    if wanted.malware {
        let mut rules = Vec::new();
        for p in config.scan.malware_rules.iter().chain(extra_malware_rules) {
            let mut paths = Vec::new();
            if p.is_dir() {
                for e in std::fs::read_dir(p).with_context(|| format!("cannot read {}", p.display()))? {
                    let path = e?.path();
                    if path.extension().is_some_and(|x| x == "yar" || x == "yara") {
                        paths.push(path);
                    }
                }
                paths.sort();
            } else {
                paths.push(p.clone());
            }
            for path in paths {
                let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read YARA rules {}", path.display()))?;
                part("yara", &text);
                rules.push((path.display().to_string(), text));
            }
        }
        let mut hashes = Vec::new();
        for p in &config.scan.malware_hashes {
            let text = std::fs::read_to_string(p).with_context(|| format!("cannot read blocklist {}", p.display()))?;
            part("blocklist", &text);
            hashes.push((p.display().to_string(), text));
        }
        insp.malware = Some(Arc::new(scanner::malware::MalwareScanner::new(&rules, &hashes).map_err(anyhow::Error::msg)?));
        let socket = clamd.map(Path::to_path_buf).unwrap_or_else(|| config.scan.clamd_socket.clone());
        if !socket.as_os_str().is_empty() {
            let clamd = crate::clamd::Clamd { socket };
            clamd.ping().map_err(anyhow::Error::msg)?;
            part("external", "clamav");
            insp.external.push(Arc::new(clamd));
        }
    }
    Ok(Engines { inspection: insp, fingerprint: oci::Digest::sha256_of(&identity).hex().to_owned() })
}

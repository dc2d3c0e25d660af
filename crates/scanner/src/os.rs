//! `/etc/os-release` (or `/usr/lib/os-release`): which distribution, and so which advisories apply
//! to its packages.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Os {
    /// `ID`: debian, ubuntu, alpine, almalinux, rocky, rhel, …
    pub id: String,
    /// `VERSION_ID`: 12, 22.04, 3.19.1, 9.3, …
    pub version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub codename: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pretty_name: String,
}

impl Os {
    pub fn parse(text: &str) -> Option<Os> {
        let mut os = Os { id: String::new(), version: String::new(), codename: String::new(), pretty_name: String::new() };
        for line in text.lines() {
            let Some((k, v)) = line.trim().split_once('=') else { continue };
            let v = v.trim().trim_matches(|c| c == '"' || c == '\'').to_owned();
            match k.trim() {
                "ID" => os.id = v.to_ascii_lowercase(),
                "VERSION_ID" => os.version = v,
                "VERSION_CODENAME" => os.codename = v,
                "PRETTY_NAME" => os.pretty_name = v,
                _ => {}
            }
        }
        (!os.id.is_empty()).then_some(os)
    }

    /// The OSV ecosystems this distribution's packages are published under, best first.
    pub fn osv_ecosystems(&self) -> Vec<String> {
        let major = self.version.split('.').next().unwrap_or("");
        match self.id.as_str() {
            "debian" if !major.is_empty() => vec![format!("Debian:{major}")],
            "ubuntu" => vec![format!("Ubuntu:{}", self.version), format!("Ubuntu:{}:LTS", self.version)],
            "alpine" => {
                let mm: Vec<&str> = self.version.split('.').take(2).collect();
                vec![format!("Alpine:v{}", mm.join("."))]
            }
            "almalinux" => vec![format!("AlmaLinux:{major}")],
            "rocky" => vec![format!("Rocky Linux:{major}")],
            "wolfi" => vec!["Wolfi".into()],
            "chainguard" => vec!["Chainguard".into()],
            _ => Vec::new(),
        }
    }

    /// The purl `distro` qualifier: `debian-12`, `alpine-3.19.1`.
    pub fn purl_distro(&self) -> String {
        format!("{}-{}", self.id, self.version)
    }
}

#[cfg(test)]
mod tests {
    use super::Os;

    #[test]
    fn an_os_without_codename_or_pretty_name_reads_back_as_it_was_written() {
        // A stored report is read back to be matched again: fields skipped when empty must read
        // back as empty.
        let os = Os { id: "alpine".into(), version: "3.19.1".into(), codename: String::new(), pretty_name: String::new() };
        let json = serde_json::to_string(&os).unwrap();
        assert_eq!(json, r#"{"id":"alpine","version":"3.19.1"}"#);
        assert_eq!(serde_json::from_str::<Os>(&json).unwrap(), os);
    }
}

//! Misconfiguration, from the image config (user, environment, ports, healthcheck, history) and
//! from file modes (setuid/setgid files beyond a distribution's usual ones, world-writable files in
//! system paths). Each finding has an id, a severity and one line of advice.

use crate::secrets::Severity;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Misconfiguration {
    pub id: Cow<'static, str>,
    pub title: Cow<'static, str>,
    pub severity: Severity,
    pub detail: String,
    pub fix: Cow<'static, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer: Option<String>,
}

/// The parts of an image config (OCI or Docker) that the checks read.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ImageConfig {
    #[serde(default)]
    pub config: ContainerConfig,
    #[serde(default)]
    pub history: Vec<History>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub env: Option<Vec<String>>,
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub exposed_ports: Option<std::collections::BTreeMap<String, serde_json::Value>>,
    #[serde(default)]
    pub labels: Option<std::collections::BTreeMap<String, String>>,
    #[serde(default)]
    pub healthcheck: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct History {
    #[serde(default)]
    pub created_by: Option<String>,
    #[serde(default)]
    pub empty_layer: bool,
}

fn finding(id: &'static str, title: &'static str, severity: Severity, detail: String, fix: &'static str) -> Misconfiguration {
    Misconfiguration { id: id.into(), title: title.into(), severity, detail, fix: fix.into(), path: None, layer: None }
}

const SECRET_NAMES: &[&str] = &["PASSWORD", "PASSWD", "SECRET", "TOKEN", "API_KEY", "APIKEY", "ACCESS_KEY", "PRIVATE_KEY", "CREDENTIAL"];

pub fn check_config(c: &ImageConfig, out: &mut Vec<Misconfiguration>) {
    let user = c.config.user.as_deref().unwrap_or("").trim();
    let name = user.split(':').next().unwrap_or("");
    if name.is_empty() || name == "root" || name == "0" {
        out.push(finding(
            "root-user",
            "Runs as root",
            Severity::High,
            if user.is_empty() { "the image sets no USER".into() } else { format!("USER {user}") },
            "Add a non-root user and `USER` it in the Dockerfile.",
        ));
    }
    for kv in c.config.env.iter().flatten() {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        let upper = k.to_ascii_uppercase();
        if !v.is_empty() && SECRET_NAMES.iter().any(|s| upper.contains(s)) && !upper.ends_with("_FILE") && !upper.ends_with("_PATH") {
            out.push(finding(
                "secret-env",
                "Secret-looking environment variable with a value",
                Severity::High,
                format!("ENV {k} is set in the image"),
                "Pass secrets at run time (a mounted secret or the orchestrator's secret store), not in ENV.",
            ));
        }
    }
    if c.config.exposed_ports.as_ref().is_some_and(|p| p.contains_key("22/tcp") || p.contains_key("22")) {
        out.push(finding("ssh-exposed", "SSH port exposed", Severity::Medium, "EXPOSE 22/tcp".into(), "Do not run sshd in a container; use `kubectl exec` or a debug container."));
    }
    for (i, h) in c.history.iter().enumerate() {
        let Some(by) = h.created_by.as_deref() else { continue };
        let cmd = by.trim_start_matches("/bin/sh -c #(nop) ").trim();
        let mut words = cmd.split_whitespace();
        if words.next().is_some_and(|w| w.eq_ignore_ascii_case("ADD")) && words.any(|w| w.starts_with("http://") || w.starts_with("https://")) {
            out.push(finding(
                "add-remote-url",
                "ADD of a remote URL",
                Severity::Medium,
                format!("history entry {i}: {}", cmd.chars().take(120).collect::<String>()),
                "Fetch with a pinned checksum (curl + sha256sum, or ADD --checksum), or COPY a vetted file.",
            ));
        }
    }
    if c.config.healthcheck.as_ref().is_none_or(|h| h.get("Test").and_then(|t| t.as_array()).is_some_and(|t| t.first().and_then(|v| v.as_str()) == Some("NONE"))) {
        out.push(finding("no-healthcheck", "No HEALTHCHECK", Severity::Info, "the image declares no HEALTHCHECK".into(), "Declare a HEALTHCHECK, or rely on the orchestrator's probes."));
    }
}

/// setuid/setgid programs a distribution's base ships; others were added by the image.
const USUAL_SETID: &[&str] = &[
    "bin/su", "bin/mount", "bin/umount", "bin/ping", "bin/fusermount", "bin/fusermount3",
    "usr/bin/su", "usr/bin/mount", "usr/bin/umount", "usr/bin/passwd", "usr/bin/chsh", "usr/bin/chfn",
    "usr/bin/gpasswd", "usr/bin/newgrp", "usr/bin/sudo", "usr/bin/pkexec", "usr/bin/chage", "usr/bin/expiry",
    "usr/bin/wall", "usr/bin/write", "usr/bin/write.ul", "usr/bin/ssh-agent", "usr/bin/crontab", "usr/bin/at",
    "usr/bin/ping", "usr/bin/fusermount", "usr/bin/fusermount3", "usr/bin/newuidmap", "usr/bin/newgidmap",
    "usr/bin/bsd-write", "usr/bin/dotlockfile", "usr/bin/mlocate", "usr/bin/plocate", "usr/bin/staprun",
    "usr/sbin/unix_chkpwd", "sbin/unix_chkpwd", "usr/sbin/pam_extrausers_chkpwd", "usr/sbin/postdrop",
    "usr/sbin/postqueue", "usr/lib/openssh/ssh-keysign", "usr/libexec/openssh/ssh-keysign",
    "usr/lib/dbus-1.0/dbus-daemon-launch-helper", "usr/libexec/dbus-daemon-launch-helper",
    "usr/lib/policykit-1/polkit-agent-helper-1", "usr/lib/polkit-1/polkit-agent-helper-1",
    "usr/libexec/polkit-agent-helper-1", "usr/bin/sg", "usr/sbin/userhelper", "usr/bin/bbsuid", "bin/bbsuid",
];

const SYSTEM_DIRS: &[&str] = &["bin/", "sbin/", "lib/", "lib64/", "usr/", "etc/", "boot/"];

/// A file's mode, as the layer (or the directory scan) states it.
pub fn check_mode(path: &str, mode: u32, is_dir: bool, layer: Option<&str>, out: &mut Vec<Misconfiguration>) {
    if !is_dir && mode & 0o6000 != 0 && !USUAL_SETID.contains(&path) {
        let (id, title) = if mode & 0o4000 != 0 { ("setuid-file", "setuid file added by the image") } else { ("setgid-file", "setgid file added by the image") };
        out.push(Misconfiguration {
            id: id.into(),
            title: title.into(),
            severity: Severity::Medium,
            detail: format!("{path} has mode {:o}", mode & 0o7777),
            fix: "Remove the set-id bit (chmod u-s,g-s) unless the program needs it and is meant to be in the image.".into(),
            path: Some(path.to_owned()),
            layer: layer.map(str::to_owned),
        });
    }
    let sticky_dir = is_dir && mode & 0o1000 != 0;
    if mode & 0o002 != 0 && !sticky_dir && SYSTEM_DIRS.iter().any(|d| path.starts_with(d)) && !path.starts_with("usr/local/") {
        out.push(Misconfiguration {
            id: "world-writable".into(),
            title: "World-writable file in a system path".into(),
            severity: Severity::Medium,
            detail: format!("{path} has mode {:o}", mode & 0o7777),
            fix: "chmod o-w it; nothing outside /tmp-like sticky directories should be writable by everyone.".into(),
            path: Some(path.to_owned()),
            layer: layer.map(str::to_owned),
        });
    }
}

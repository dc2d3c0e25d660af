//! The report as a table for people.

use super::Report;
use advisories::Rating;
use std::fmt::Write;

pub(super) fn render(r: &Report) -> String {
    let mut out = String::new();
    let os = r.os.as_ref().map(|o| if o.pretty_name.is_empty() { format!("{} {}", o.id, o.version) } else { o.pretty_name.clone() });
    let counts: Vec<String> = r.counts().iter().map(|(s, n)| format!("{} {n}", s.as_str())).collect();
    let _ = writeln!(
        out,
        "{} ({}){}\n{} packages, {} vulnerabilities{}; {} secrets, {} malware, {} misconfigurations",
        r.target.name,
        r.target.kind,
        os.map(|o| format!(" · {o}")).unwrap_or_default(),
        r.packages.len(),
        r.vulnerabilities.len(),
        if counts.is_empty() { String::new() } else { format!(" ({})", counts.join(", ")) },
        r.secrets.len(),
        r.malware.len(),
        r.misconfigurations.len(),
    );
    if r.db.is_none() {
        let _ = writeln!(out, "(no advisory DB: packages only)");
    }
    for sev in [Rating::Critical, Rating::High, Rating::Medium, Rating::Low, Rating::Unknown] {
        let rows: Vec<_> = r.vulnerabilities.iter().filter(|v| v.severity == sev).collect();
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n{}", sev.as_str());
        let w_id = rows.iter().map(|v| v.id.len()).max().unwrap_or(0);
        let w_pkg = rows.iter().map(|v| v.package.len() + 1 + v.installed_version.len()).max().unwrap_or(0);
        let w_fix = rows.iter().map(|v| v.fixed_version.as_deref().unwrap_or("no fix yet").len()).max().unwrap_or(0);
        for v in rows {
            let pkg = format!("{} {}", v.package, v.installed_version);
            let fix = v.fixed_version.as_deref().unwrap_or("no fix yet");
            let score = v.cvss_score.map(|s| format!("{s:>4.1}")).unwrap_or_else(|| "   -".into());
            let title: String = v.title.chars().take(60).collect();
            let _ = writeln!(out, "  {:w_id$}  {score}  {pkg:w_pkg$}  → {fix:w_fix$}  {}  {title}", v.id, v.path);
        }
    }
    if !r.secrets.is_empty() {
        let _ = writeln!(out, "\nsecrets ({})", r.secrets.len());
        for f in &r.secrets {
            let line = f.line.map(|l| format!(":{l}")).unwrap_or_default();
            let _ = writeln!(out, "  {:<8}  {}  {}{line}  {}  {}", f.severity.as_str(), f.rule, f.path, f.redacted, f.title);
        }
    }
    if !r.malware.is_empty() {
        let _ = writeln!(out, "\nmalware ({})", r.malware.len());
        for f in &r.malware {
            let _ = writeln!(out, "  {:<8}  {}  {}  [{}]  {}", f.severity.as_str(), f.rule, f.path, f.engine, f.description);
        }
    }
    if !r.misconfigurations.is_empty() {
        let _ = writeln!(out, "\nmisconfigurations ({})", r.misconfigurations.len());
        for f in &r.misconfigurations {
            let _ = writeln!(out, "  {:<8}  {}  {}: {}  (fix: {})", f.severity.as_str(), f.id, f.title, f.detail, f.fix);
        }
    }
    if !r.problems.is_empty() {
        let _ = writeln!(out, "\nproblems ({})", r.problems.len());
        for p in &r.problems {
            let at = p.path.as_deref().map(|p| format!(" {p}:")).unwrap_or_default();
            let _ = writeln!(out, "  {}{at} {}", p.code, p.message);
        }
    }
    out
}

//! SARIF 2.1.0, for code-scanning dashboards: one rule per vulnerability id, one result per
//! affected package, located at the file the package was found in.

use super::{Report, TOOL, TOOL_VERSION};
use advisories::Rating;
use serde_json::{Value, json};

pub(super) fn log(r: &Report) -> Value {
    let mut rules: Vec<Value> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for v in &r.vulnerabilities {
        if seen.insert(v.id.clone()) {
            let score = v.cvss_score.map(|s| format!("{s:.1}")).unwrap_or_else(|| match v.severity {
                Rating::Critical => "9.5".into(),
                Rating::High => "8.0".into(),
                Rating::Medium => "5.5".into(),
                Rating::Low => "2.0".into(),
                Rating::Unknown => "0.0".into(),
            });
            rules.push(json!({
                "id": v.id,
                "shortDescription": { "text": if v.title.is_empty() { v.id.clone() } else { v.title.clone() } },
                "helpUri": format!("https://osv.dev/vulnerability/{}", v.id),
                "properties": { "security-severity": score, "tags": ["vulnerability", "security", v.severity.as_str()] },
            }));
        }
    }
    let level_of = |s: scanner::secrets::Severity| match s {
        scanner::secrets::Severity::Critical | scanner::secrets::Severity::High => "error",
        scanner::secrets::Severity::Medium => "warning",
        _ => "note",
    };
    let mut extra: Vec<Value> = Vec::new();
    let mut rule = |id: String, text: String, tag: &str, rules: &mut Vec<Value>| {
        if seen.insert(id.clone()) {
            rules.push(json!({ "id": id, "shortDescription": { "text": text }, "properties": { "tags": [tag, "security"] } }));
        }
    };
    for f in &r.secrets {
        let id = format!("secret/{}", f.rule);
        rule(id.clone(), f.title.clone(), "secret", &mut rules);
        let mut loc = json!({ "physicalLocation": { "artifactLocation": { "uri": f.path } } });
        if let Some(l) = f.line {
            loc["physicalLocation"]["region"] = json!({ "startLine": l });
        }
        extra.push(json!({ "ruleId": id, "level": level_of(f.severity), "message": { "text": format!("{} ({}), fingerprint {}", f.title, f.redacted, f.fingerprint) }, "locations": [loc] }));
    }
    for f in &r.malware {
        let id = format!("malware/{}", f.rule);
        rule(id.clone(), f.description.clone(), "malware", &mut rules);
        extra.push(json!({ "ruleId": id, "level": level_of(f.severity), "message": { "text": format!("{} ({})", f.description, f.engine) }, "locations": [{ "physicalLocation": { "artifactLocation": { "uri": f.path } } }] }));
    }
    for f in &r.misconfigurations {
        let id = format!("config/{}", f.id);
        rule(id.clone(), f.title.to_string(), "misconfiguration", &mut rules);
        let uri = f.path.clone().unwrap_or_else(|| "image-config".into());
        extra.push(json!({ "ruleId": id, "level": level_of(f.severity), "message": { "text": format!("{}: {}. {}", f.title, f.detail, f.fix) }, "locations": [{ "physicalLocation": { "artifactLocation": { "uri": uri } } }] }));
    }
    let mut results: Vec<Value> = r
        .vulnerabilities
        .iter()
        .map(|v| {
            let level = match v.severity {
                Rating::Critical | Rating::High => "error",
                Rating::Medium => "warning",
                _ => "note",
            };
            let fix = v.fixed_version.as_deref().map_or("no fix yet".to_owned(), |f| format!("fixed in {f}"));
            json!({
                "ruleId": v.id,
                "level": level,
                "message": { "text": format!("{} {} is affected by {} ({}); {fix}", v.package, v.installed_version, v.id, v.severity.as_str()) },
                "locations": [{ "physicalLocation": { "artifactLocation": { "uri": v.path } } }],
            })
        })
        .collect();
    results.extend(extra);
    json!({
        "version": "2.1.0",
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "runs": [{
            "tool": { "driver": { "name": TOOL, "version": TOOL_VERSION, "rules": rules } },
            "results": results,
        }],
    })
}

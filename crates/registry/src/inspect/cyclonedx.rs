//! CycloneDX 1.5 JSON: the image as the metadata component, every package as a component (its
//! purl, layer and path as properties), every finding as a vulnerability that affects it.

use super::{Report, TOOL, TOOL_VERSION, finding_lines};
use advisories::Rating;
use serde_json::{Value, json};
use std::collections::HashMap;

fn severity(r: Rating) -> &'static str {
    match r {
        Rating::Critical => "critical",
        Rating::High => "high",
        Rating::Medium => "medium",
        Rating::Low => "low",
        Rating::Unknown => "unknown",
    }
}

fn method(vector: &str) -> &'static str {
    if vector.starts_with("CVSS:4.0") {
        "CVSSv4"
    } else if vector.starts_with("CVSS:3.1") {
        "CVSSv31"
    } else if vector.starts_with("CVSS:3") {
        "CVSSv3"
    } else {
        "CVSSv2"
    }
}

fn source(id: &str) -> Value {
    let (name, url) = match id.split('-').next().unwrap_or("") {
        "CVE" => ("NVD", format!("https://nvd.nist.gov/vuln/detail/{id}")),
        "GHSA" => ("GitHub", format!("https://github.com/advisories/{id}")),
        _ => ("OSV", format!("https://osv.dev/vulnerability/{id}")),
    };
    json!({ "name": name, "url": url })
}

pub(super) fn bom(r: &Report, serial: &str) -> Value {
    let mut refs: HashMap<(String, String), String> = HashMap::new();
    let mut used: HashMap<String, usize> = HashMap::new();
    let mut components = Vec::new();
    if let Some(os) = &r.os {
        components.push(json!({ "type": "operating-system", "bom-ref": "os", "name": os.id, "version": os.version }));
    }
    for p in &r.packages {
        let n = used.entry(p.purl.clone()).or_insert(0);
        *n += 1;
        let bom_ref = if *n == 1 { p.purl.clone() } else { format!("{}#{}", p.purl, n) };
        refs.entry((p.purl.clone(), p.path.clone())).or_insert_with(|| bom_ref.clone());
        let mut c = json!({
            "type": "library",
            "bom-ref": bom_ref,
            "name": p.name,
            "version": p.version,
            "purl": p.purl,
            "properties": [{ "name": "customs:path", "value": p.path }],
        });
        if let Some(l) = &p.layer {
            c["properties"].as_array_mut().unwrap().push(json!({ "name": "customs:layer", "value": l }));
        }
        if let Some(l) = &p.license {
            c["licenses"] = json!([{ "license": { "name": l } }]);
        }
        components.push(c);
    }
    let vulnerabilities: Vec<Value> = r
        .vulnerabilities
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let mut rating = json!({ "severity": severity(v.severity) });
            if let Some(s) = v.cvss_score {
                rating["score"] = json!(s);
            }
            if let Some(vec) = &v.cvss_vector {
                rating["method"] = json!(method(vec));
                rating["vector"] = json!(vec);
            }
            let affected = refs.get(&(v.purl.clone(), v.path.clone())).cloned().unwrap_or_else(|| v.purl.clone());
            let mut out = json!({
                "bom-ref": format!("vuln-{i}"),
                "id": v.id,
                "source": source(&v.id),
                "ratings": [rating],
                "affects": [{ "ref": affected, "versions": [{ "version": v.installed_version, "status": "affected" }] }],
                "references": v.aliases.iter().map(|a| json!({ "id": a, "source": source(a) })).collect::<Vec<_>>(),
            });
            if !v.title.is_empty() {
                out["description"] = json!(v.title);
            }
            out["recommendation"] = json!(match &v.fixed_version {
                Some(f) => format!("Upgrade {} to {f}", v.package),
                None => "No fix yet".to_owned(),
            });
            out
        })
        .collect();
    let annotations: Vec<Value> = finding_lines(r)
        .into_iter()
        .map(|text| {
            json!({
                "subjects": ["target"],
                "annotator": { "component": { "type": "application", "name": TOOL, "version": TOOL_VERSION } },
                "timestamp": r.scanned_at,
                "text": text,
            })
        })
        .collect();
    json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": format!("urn:uuid:{serial}"),
        "version": 1,
        "metadata": {
            "timestamp": r.scanned_at,
            "tools": { "components": [{ "type": "application", "name": TOOL, "version": TOOL_VERSION }] },
            "component": {
                "type": "container",
                "bom-ref": "target",
                "name": r.target.name,
                "version": r.target.digest.clone().unwrap_or_default(),
            },
        },
        "components": components,
        "vulnerabilities": vulnerabilities,
        "annotations": annotations,
    })
}

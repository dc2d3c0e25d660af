//! SPDX 2.3 JSON: the image as the described package, which CONTAINS every found package; purls
//! as package-manager external references. Licence texts as found are not SPDX expressions, so
//! they go to `licenseComments` and the declared licence is NOASSERTION.

use super::{Report, TOOL, TOOL_VERSION, finding_lines};
use serde_json::{Value, json};

fn spdx_id(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '-' }).collect()
}

pub(super) fn document(r: &Report, namespace_id: &str) -> Value {
    let mut packages = vec![json!({
        "name": r.target.name,
        "SPDXID": "SPDXRef-Target",
        "versionInfo": r.target.digest.clone().unwrap_or_default(),
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "primaryPackagePurpose": if r.target.kind == "rootfs" { "FILE" } else { "CONTAINER" },
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
    })];
    let notes: Vec<Value> = finding_lines(r)
        .into_iter()
        .map(|comment| json!({ "annotationType": "REVIEW", "annotator": format!("Tool: {TOOL}-{TOOL_VERSION}"), "annotationDate": r.scanned_at, "comment": comment }))
        .collect();
    if !notes.is_empty() {
        packages[0]["annotations"] = json!(notes);
    }
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES", "relatedSpdxElement": "SPDXRef-Target",
    })];
    for (i, p) in r.packages.iter().enumerate() {
        let id = format!("SPDXRef-Package-{}-{i}", spdx_id(p.ecosystem.as_str()));
        let mut comment = format!("found at {}", p.path);
        if let Some(l) = &p.layer {
            comment.push_str(&format!(" in layer {l}"));
        }
        let mut pkg = json!({
            "name": p.name,
            "SPDXID": id,
            "versionInfo": p.version,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": "NOASSERTION",
            "copyrightText": "NOASSERTION",
            "sourceInfo": comment,
            "externalRefs": [{ "referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl", "referenceLocator": p.purl }],
        });
        if let Some(l) = &p.license {
            pkg["licenseComments"] = json!(format!("declared by the package: {l}"));
        }
        packages.push(pkg);
        relationships.push(json!({ "spdxElementId": "SPDXRef-Target", "relationshipType": "CONTAINS", "relatedSpdxElement": id }));
    }
    let name = if r.target.name.is_empty() { "scan".to_owned() } else { r.target.name.clone() };
    json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": name,
        "documentNamespace": format!("https://customs.invalid/spdx/{}-{namespace_id}", spdx_id(&name)),
        "creationInfo": { "created": r.scanned_at, "creators": [format!("Tool: {TOOL}-{TOOL_VERSION}")] },
        "packages": packages,
        "relationships": relationships,
    })
}

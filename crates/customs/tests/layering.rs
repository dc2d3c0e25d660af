//! The crate layering of DESIGN.md, enforced: a crate may depend only on crates in lower layers
//! (dev-dependencies: also on `test-support`). A new crate must be added to the table here.

use std::collections::BTreeMap;
use std::process::Command;

/// DESIGN.md's table: crate → layer. `test-support` sits above everything; only tests use it.
const LAYERS: &[(&str, u8)] = &[
    ("oci", 0),
    ("blobs", 1),
    ("meta", 1),
    ("scanner", 1),
    ("advisories", 1),
    ("policy", 1),
    ("auth", 1),
    ("remote", 1),
    ("registry", 2),
    ("mirror", 3),
    ("workers", 3),
    ("api", 4),
    ("customs", 5),
    ("test-support", 6),
];

fn layer(name: &str) -> Option<u8> {
    LAYERS.iter().find(|(n, _)| *n == name).map(|(_, l)| *l)
}

/// (from, to, kind) for every dependency between workspace crates.
fn workspace_edges() -> Vec<(String, String, String)> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let packages = meta["packages"].as_array().unwrap();
    let members: Vec<&str> = packages.iter().map(|p| p["name"].as_str().unwrap()).collect();
    let mut edges = Vec::new();
    for p in packages {
        for d in p["dependencies"].as_array().unwrap() {
            let to = d["name"].as_str().unwrap();
            if members.contains(&to) {
                let kind = d["kind"].as_str().unwrap_or("normal").to_owned();
                edges.push((p["name"].as_str().unwrap().to_owned(), to.to_owned(), kind));
            }
        }
    }
    assert!(edges.len() >= 10, "found the workspace's crates: {members:?}");
    edges
}

fn violations(edges: &[(String, String, String)]) -> Vec<String> {
    let mut bad = Vec::new();
    for (from, to, kind) in edges {
        let (Some(lf), Some(lt)) = (layer(from), layer(to)) else {
            bad.push(format!("{from} -> {to}: a crate missing from DESIGN.md's table"));
            continue;
        };
        let allowed = lt < lf || (kind == "dev" && to == "test-support" && from != "test-support");
        if !allowed {
            bad.push(format!("{from} (L{lf}) -> {to} (L{lt}) [{kind}]"));
        }
    }
    bad
}

#[test]
fn crate_dependencies_only_go_down() {
    let edges = workspace_edges();
    let bad = violations(&edges);
    assert!(bad.is_empty(), "dependency edges DESIGN.md does not allow:\n{}", bad.join("\n"));
}

#[test]
fn the_rule_catches_upward_sideways_and_unknown_edges() {
    let e = |f: &str, t: &str, k: &str| (f.to_owned(), t.to_owned(), k.to_owned());
    let cases = BTreeMap::from([
        ("registry -> api", (e("registry", "api", "normal"), false)),
        ("blobs -> meta", (e("blobs", "meta", "normal"), false)),
        ("oci -> oci-helpers", (e("oci", "oci-helpers", "normal"), false)),
        ("api -> registry", (e("api", "registry", "normal"), true)),
        ("meta dev -> test-support", (e("meta", "test-support", "dev"), true)),
        ("meta -> test-support", (e("meta", "test-support", "normal"), false)),
    ]);
    for (name, (edge, ok)) in cases {
        assert_eq!(violations(&[edge]).is_empty(), ok, "{name}");
    }
}

//! The shipped policy on its test cases (tests/cases/*.json, the same files `customs policy test`
//! runs), and policies that are wrong in the ways users get them wrong.

use policy::{Case, Policy};
use std::path::Path;

#[test]
fn the_paved_road_passes_its_cases() {
    let policy = Policy::paved_road();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases");
    let mut n = 0;
    let mut failures = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let path = e.unwrap().path();
        let case: Case = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if let Err(e) = case.check(&policy) {
            failures.push(format!("{}: {e}", path.display()));
        }
        n += 1;
    }
    assert!(n >= 6, "{n} cases");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_case_that_expects_the_wrong_thing_fails() {
    let case: Case = serde_json::from_str(r#"{"input": {"malware": [{"rule": "X", "path": "p", "engine": "yara"}]}, "expect": {"allow": true}}"#).unwrap();
    let err = case.check(&Policy::paved_road()).unwrap_err();
    assert!(err.contains("allow is false"), "{err}");
}

#[test]
fn custom_policies_and_their_mistakes() {
    let strict = Policy::new(
        "strict.rego",
        r#"package customs
import rego.v1
default allow := false
allow if input.repository == "team/app"
deny contains "no tag" if count(input.tags) == 0
"#,
    )
    .unwrap();
    let d = strict.evaluate(&serde_json::json!({"repository": "team/app", "tags": ["1"]})).unwrap();
    assert!(d.allow && d.deny.is_empty());
    let d = strict.evaluate(&serde_json::json!({"repository": "other/app", "tags": ["1"]})).unwrap();
    assert!(!d.allow, "allow := false blocks without a reason");
    let d = strict.evaluate(&serde_json::json!({"repository": "team/app", "tags": []})).unwrap();
    assert_eq!((d.allow, d.deny), (false, vec!["no tag".to_owned()]));
    assert!(Policy::new("bad.rego", "package customs\ndeny contains x if {").unwrap_err().contains("bad.rego"));
    assert!(Policy::new("other.rego", "package other\nimport rego.v1\ndeny contains 1 if true").unwrap_err().contains("package customs"));
    let numbers = Policy::new("numbers.rego", "package customs\nimport rego.v1\ndeny contains 1 if true").unwrap();
    assert!(numbers.evaluate(&serde_json::json!({})).unwrap_err().contains("not a string"));
}

//! Rego policies over an image's evidence, evaluated in-process by regorus (OPA-compatible).
//!
//! A policy is a Rego module in `package customs` that defines `deny` (a set of reasons that block
//! the image) and optionally `warn` (reasons shown, not blocking) and `allow` (a boolean; default
//! true). The decision: allowed when `allow` holds and `deny` is empty. Pure: no IO.

use serde::{Deserialize, Serialize};

/// The policy customs ships: deny malware, private keys and cloud/VCS credentials, and critical
/// vulnerabilities that have a fix; warn on the rest.
pub const PAVED_ROAD: &str = include_str!("../policies/paved-road.rego");

/// What a policy decided about one image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub allow: bool,
    pub deny: Vec<String>,
    pub warn: Vec<String>,
}

/// A parsed policy, ready to evaluate (cheap to clone).
#[derive(Clone)]
pub struct Policy {
    name: String,
    source: String,
    engine: regorus::Engine,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy").field("name", &self.name).finish()
    }
}

fn strings(v: &regorus::Value, what: &str) -> Result<Vec<String>, String> {
    match v {
        regorus::Value::Undefined => Ok(Vec::new()),
        regorus::Value::Set(s) => s.iter().map(|x| string_of(x, what)).collect(),
        regorus::Value::Array(a) => a.iter().map(|x| string_of(x, what)).collect(),
        other => Err(format!("`{what}` must be a set of strings, not {other}")),
    }
}

fn string_of(v: &regorus::Value, what: &str) -> Result<String, String> {
    match v {
        regorus::Value::String(s) => Ok(s.to_string()),
        other => Err(format!("`{what}` holds {other}, not a string")),
    }
}

impl Policy {
    /// Parses `rego`; `name` names it in errors and decisions.
    pub fn new(name: &str, rego: &str) -> Result<Policy, String> {
        let mut engine = regorus::Engine::new();
        engine.set_rego_v0(false);
        let package = engine.add_policy(name.to_owned(), rego.to_owned()).map_err(|e| format!("{name}: {e}"))?;
        if package != "data.customs" {
            return Err(format!("{name}: the policy must be `package customs`, not {package}"));
        }
        // Analysed and scheduled once here, not in every clone that evaluates.
        engine.eval_query("data.customs".to_owned(), false).map_err(|e| format!("{name}: {e}"))?;
        Ok(Policy { name: name.to_owned(), source: rego.to_owned(), engine })
    }

    pub fn paved_road() -> Policy {
        Policy::new("paved-road.rego", PAVED_ROAD).expect("the shipped policy parses (tested)")
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The Rego text: what a change of policy is detected by.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates the policy on `input` (an image's evidence).
    pub fn evaluate(&self, input: &serde_json::Value) -> Result<Decision, String> {
        let mut engine = self.engine.clone();
        let input = <regorus::Value as Deserialize>::deserialize(input).map_err(|e| format!("input: {e}"))?;
        engine.set_input(input);
        let mut query = |path: &str| -> Result<regorus::Value, String> {
            let results = engine.eval_query(path.to_owned(), false).map_err(|e| format!("{}: {e}", self.name))?;
            Ok(results.result.first().and_then(|r| r.expressions.first()).map(|e| e.value.clone()).unwrap_or(regorus::Value::Undefined))
        };
        let deny = strings(&query("data.customs.deny")?, "deny")?;
        let warn = strings(&query("data.customs.warn")?, "warn")?;
        let allow = match query("data.customs.allow")? {
            regorus::Value::Undefined => true,
            regorus::Value::Bool(b) => b,
            other => return Err(format!("{}: `allow` must be a boolean, not {other}", self.name)),
        };
        let mut deny = deny;
        deny.sort();
        let mut warn = warn;
        warn.sort();
        Ok(Decision { allow: allow && deny.is_empty(), deny, warn })
    }
}

/// A policy test case: an input and what the policy must decide (`*.json` files; see
/// `customs policy test`). Expected reasons are substrings; an empty list means "none".
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    #[serde(default)]
    pub description: String,
    pub input: serde_json::Value,
    pub expect: Expect,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    pub allow: bool,
    #[serde(default)]
    pub deny: Option<Vec<String>>,
    #[serde(default)]
    pub warn: Option<Vec<String>>,
}

impl Case {
    /// Runs the case; `Err` says how the decision differs.
    pub fn check(&self, policy: &Policy) -> Result<Decision, String> {
        let d = policy.evaluate(&self.input)?;
        let mut wrong = Vec::new();
        if d.allow != self.expect.allow {
            wrong.push(format!("allow is {}, expected {}", d.allow, self.expect.allow));
        }
        for (what, got, want) in [("deny", &d.deny, &self.expect.deny), ("warn", &d.warn, &self.expect.warn)] {
            let Some(want) = want else { continue };
            if want.is_empty() && !got.is_empty() {
                wrong.push(format!("{what} should be empty: {got:?}"));
            }
            for w in want {
                if !got.iter().any(|g| g.contains(w.as_str())) {
                    wrong.push(format!("{what} lacks {w:?}: {got:?}"));
                }
            }
            if !want.is_empty() && got.len() != want.len() {
                wrong.push(format!("{what} has {} reasons, expected {}: {got:?}", got.len(), want.len()));
            }
        }
        if wrong.is_empty() { Ok(d) } else { Err(wrong.join("; ")) }
    }
}

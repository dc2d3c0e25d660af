//! The Docker token spec's `scope` grammar and the `WWW-Authenticate` challenge that asks for one.

use std::fmt;

/// `repository:team/app:pull,push`, or `registry:catalog:*`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope {
    /// `repository` or `registry` (a `(class)` suffix is dropped).
    pub resource_type: String,
    pub name: String,
    pub actions: Vec<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("scope {0:?} is not type:name:actions")]
pub struct ScopeError(pub String);

impl Scope {
    /// Parses one scope; the name may itself hold `:` (a host and port), so the type ends at the
    /// first `:` and the actions start after the last.
    pub fn parse(s: &str) -> Result<Scope, ScopeError> {
        let bad = || ScopeError(s.into());
        let (resource_type, rest) = s.split_once(':').ok_or_else(bad)?;
        let (name, actions) = rest.rsplit_once(':').ok_or_else(bad)?;
        let resource_type = resource_type.split('(').next().unwrap_or_default();
        if resource_type.is_empty() || name.is_empty() {
            return Err(bad());
        }
        let actions = actions.split(',').map(str::trim).filter(|a| !a.is_empty()).map(str::to_owned).collect();
        Ok(Scope { resource_type: resource_type.into(), name: name.into(), actions })
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.resource_type, self.name, self.actions.join(","))
    }
}

/// `Bearer realm="…",service="…"[,scope="…"][,error="…"]`.
pub fn challenge(realm: &str, service: &str, scope: Option<&str>, error: Option<&str>) -> String {
    let mut c = format!("Bearer realm=\"{}\",service=\"{}\"", quoted(realm), quoted(service));
    if let Some(scope) = scope {
        c.push_str(&format!(",scope=\"{}\"", quoted(scope)));
    }
    if let Some(error) = error {
        c.push_str(&format!(",error=\"{}\"", quoted(error)));
    }
    c
}

fn quoted(s: &str) -> String {
    s.replace(['"', '\\'], "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse() {
        let s = Scope::parse("repository:team/app:pull,push").unwrap();
        assert_eq!((s.resource_type.as_str(), s.name.as_str()), ("repository", "team/app"));
        assert_eq!(s.actions, ["pull", "push"]);
        assert_eq!(s.to_string(), "repository:team/app:pull,push");
        let s = Scope::parse("repository(plugin):localhost:5000/x:pull").unwrap();
        assert_eq!((s.resource_type.as_str(), s.name.as_str()), ("repository", "localhost:5000/x"));
        assert_eq!(Scope::parse("registry:catalog:*").unwrap().actions, ["*"]);
        assert_eq!(Scope::parse("repository:x:").unwrap().actions, Vec::<String>::new());
        for bad in ["", "repository", "repository:x", ":x:pull", "repository::pull"] {
            assert!(Scope::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn challenges_are_well_formed() {
        assert_eq!(
            challenge("https://r/token", "r", Some("repository:a:pull"), Some("insufficient_scope")),
            r#"Bearer realm="https://r/token",service="r",scope="repository:a:pull",error="insufficient_scope""#
        );
        assert_eq!(challenge("h\"x", "s", None, None), r#"Bearer realm="hx",service="s""#);
    }
}

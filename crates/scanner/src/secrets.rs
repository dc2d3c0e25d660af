//! Leaked secrets: a rule set (`rules/secrets.toml`, extendable by user rule files) run over file
//! contents and the image config. Each file is first searched once for every rule's keywords
//! (Aho-Corasick, case-insensitive); only rules whose keywords occur run their regex. Findings
//! never carry the secret: a redacted prefix and a fingerprint (SHA-256 of rule and secret) to
//! allowlist it by.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex::bytes::Regex;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// The built-in rules.
pub const BUILTIN: &str = include_str!("../rules/secrets.toml");

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "INFO",
            Severity::Low => "LOW",
            Severity::Medium => "MEDIUM",
            Severity::High => "HIGH",
            Severity::Critical => "CRITICAL",
        }
    }
}

/// One rule as a rule file states it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub id: String,
    pub title: String,
    pub severity: Severity,
    #[serde(default)]
    pub keywords: Vec<String>,
    pub regex: String,
    #[serde(default)]
    pub entropy: Option<f64>,
    #[serde(default)]
    pub paths: Option<String>,
    /// A template of a matching value, for the tests (`{class:n}` runs of random characters).
    #[serde(default)]
    pub example: Option<String>,
    /// A template the rule must not match (default: the example with each random run halved).
    #[serde(default)]
    pub negative: Option<String>,
    /// Where the example goes, for rules limited to some paths.
    #[serde(default)]
    pub example_path: Option<String>,
    /// The secret must contain a digit (generic rules: identifiers and prose have none).
    #[serde(default)]
    pub require_digit: bool,
    /// Not run on binaries (files with NUL bytes), where loose patterns meet noise.
    #[serde(default)]
    pub text_only: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AllowSpec {
    #[serde(default)]
    paths: Vec<String>,
    #[serde(default)]
    values: Vec<String>,
    #[serde(default)]
    fingerprints: Vec<String>,
    /// Per rule: `[[allow.rule]] id = "jwt", paths = ["..."]`.
    #[serde(default)]
    rule: Vec<RuleAllowSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleAllowSpec {
    id: String,
    #[serde(default)]
    paths: Vec<String>,
}

/// A rule file: the built-in one, or a user's.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    #[serde(default)]
    pub rule: Vec<RuleSpec>,
    #[serde(default)]
    disable: Vec<String>,
    #[serde(default)]
    allow: AllowSpec,
}

impl RuleFile {
    pub fn parse(text: &str) -> Result<RuleFile, String> {
        toml::from_str(text).map_err(|e| e.message().to_owned())
    }
}

struct Rule {
    spec: RuleSpec,
    regex: Regex,
    paths: Option<Regex>,
    allow_paths: Vec<Regex>,
}

/// A secret found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SecretFinding {
    pub rule: String,
    pub title: String,
    pub severity: Severity,
    /// A file path, or `config:Env`, `config:Cmd`, `history:3`, … for the image config.
    pub path: String,
    /// 1-based; absent for binaries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    pub layer: Option<String>,
    /// The first 4 characters, then asterisks.
    pub redacted: String,
    /// `sha256:` of rule id and secret: stable across images, to allowlist by.
    pub fingerprint: String,
}

/// The compiled rule set.
pub struct SecretScanner {
    rules: Vec<Rule>,
    /// Keyword automaton; pattern i belongs to `keyword_rules[i]`.
    keywords: AhoCorasick,
    keyword_rules: Vec<Vec<usize>>,
    /// Rules with no keywords, run on every file their `paths` admit.
    always: Vec<usize>,
    allow_paths: Vec<Regex>,
    allow_values: Vec<Regex>,
    allow_fingerprints: Vec<String>,
}

fn compile(re: &str, what: &str) -> Result<Regex, String> {
    regex::bytes::RegexBuilder::new(re).size_limit(8 << 20).build().map_err(|e| format!("{what}: {e}"))
}

impl SecretScanner {
    /// The built-in rules, then each user file in order (replacing, disabling, allowing).
    pub fn new(user_files: &[RuleFile]) -> Result<SecretScanner, String> {
        let mut specs: Vec<RuleSpec> = Vec::new();
        let mut allow = AllowSpec::default();
        let builtin = RuleFile::parse(BUILTIN).map_err(|e| format!("built-in rules: {e}"))?;
        for file in std::iter::once(&builtin).chain(user_files) {
            for r in &file.rule {
                match specs.iter_mut().find(|s| s.id == r.id) {
                    Some(s) => *s = r.clone(),
                    None => specs.push(r.clone()),
                }
            }
            specs.retain(|s| !file.disable.contains(&s.id));
            allow.paths.extend(file.allow.paths.iter().cloned());
            allow.values.extend(file.allow.values.iter().cloned());
            allow.fingerprints.extend(file.allow.fingerprints.iter().cloned());
            allow.rule.extend(file.allow.rule.iter().cloned());
        }
        // Rules limited to some paths are the most specific: they go first, so that their finding,
        // not a general rule's, names a secret both match.
        specs.sort_by_key(|s| s.paths.is_none());
        let mut rules = Vec::new();
        for s in specs {
            let regex = compile(&s.regex, &format!("rule {}", s.id))?;
            let paths = s.paths.as_deref().map(|p| compile(p, &format!("rule {} paths", s.id))).transpose()?;
            let allow_paths = allow
                .rule
                .iter()
                .filter(|a| a.id == s.id)
                .flat_map(|a| a.paths.iter())
                .map(|p| compile(p, &format!("allow for {}", s.id)))
                .collect::<Result<_, _>>()?;
            rules.push(Rule { spec: s, regex, paths, allow_paths });
        }
        let mut patterns: Vec<String> = Vec::new();
        let mut keyword_rules: Vec<Vec<usize>> = Vec::new();
        let mut always = Vec::new();
        for (i, r) in rules.iter().enumerate() {
            if r.spec.keywords.is_empty() {
                always.push(i);
            }
            for k in &r.spec.keywords {
                let k = k.to_ascii_lowercase();
                match patterns.iter().position(|p| *p == k) {
                    Some(j) => keyword_rules[j].push(i),
                    None => {
                        patterns.push(k);
                        keyword_rules.push(vec![i]);
                    }
                }
            }
        }
        let keywords = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .build(&patterns)
            .map_err(|e| format!("keywords: {e}"))?;
        let compile_all = |v: &[String], what: &str| v.iter().map(|p| compile(p, what)).collect::<Result<Vec<_>, _>>();
        Ok(SecretScanner {
            keywords,
            keyword_rules,
            always,
            allow_paths: compile_all(&allow.paths, "allow paths")?,
            allow_values: compile_all(&allow.values, "allow values")?,
            allow_fingerprints: allow.fingerprints,
            rules,
        })
    }

    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// Whether a path is allowlisted for every rule.
    pub fn path_allowed(&self, path: &str) -> bool {
        self.allow_paths.iter().any(|r| r.is_match(path.as_bytes()))
    }

    /// Every secret in `bytes` (a file's contents, or a config value) at `path`.
    pub fn scan(&self, path: &str, bytes: &[u8], layer: Option<&str>, out: &mut Vec<SecretFinding>) {
        if self.path_allowed(path) {
            return;
        }
        let mut wanted = vec![false; self.rules.len()];
        for &i in &self.always {
            wanted[i] = true;
        }
        let mut any = !self.always.is_empty();
        for m in self.keywords.find_overlapping_iter(bytes) {
            for &r in &self.keyword_rules[m.pattern().as_usize()] {
                wanted[r] = true;
                any = true;
            }
        }
        if !any {
            return;
        }
        let binary = bytes[..bytes.len().min(8192)].contains(&0);
        // One secret is reported once per file, by the first (most specific) rule that finds it.
        let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
        for (i, rule) in self.rules.iter().enumerate() {
            if !wanted[i] {
                continue;
            }
            if rule.paths.as_ref().is_some_and(|p| !p.is_match(path.as_bytes())) || (binary && rule.spec.text_only) {
                continue;
            }
            if rule.allow_paths.iter().any(|p| p.is_match(path.as_bytes())) {
                continue;
            }
            for caps in rule.regex.captures_iter(bytes) {
                let Some(m) = caps.get(1).or_else(|| caps.get(0)) else { continue };
                let secret = String::from_utf8_lossy(m.as_bytes()).trim().to_owned();
                if secret.is_empty() || seen.contains(&secret) {
                    continue;
                }
                if rule.spec.entropy.is_some_and(|min| entropy(&secret) < min) || (rule.spec.require_digit && !secret.bytes().any(|b| b.is_ascii_digit())) {
                    continue;
                }
                // `xxxxxxxx`, `00000000`, `abababab`: filler, not a secret.
                let mut distinct: Vec<char> = secret.chars().take(64).collect();
                distinct.sort_unstable();
                distinct.dedup();
                if distinct.len() <= 3 || self.allow_values.iter().any(|r| r.is_match(secret.as_bytes())) {
                    continue;
                }
                let fingerprint = fingerprint(&rule.spec.id, &secret);
                if self.allow_fingerprints.contains(&fingerprint) {
                    continue;
                }
                out.push(SecretFinding {
                    rule: rule.spec.id.clone(),
                    title: rule.spec.title.clone(),
                    severity: rule.spec.severity,
                    path: path.to_owned(),
                    line: line_of(bytes, m.start(), binary),
                    layer: layer.map(str::to_owned),
                    redacted: redact(&secret),
                    fingerprint,
                });
                seen.insert(secret);
            }
        }
    }

    /// The rules' specs (for the tests, and `customs` listing them).
    pub fn specs(&self) -> impl Iterator<Item = &RuleSpec> {
        self.rules.iter().map(|r| &r.spec)
    }
}

fn line_of(bytes: &[u8], at: usize, binary: bool) -> Option<usize> {
    (!binary).then(|| bytes[..at].iter().filter(|&&b| b == b'\n').count() + 1)
}

/// The first 4 characters and a fixed mask, so the length is not told either.
pub fn redact(secret: &str) -> String {
    let head: String = secret.chars().take(4).collect();
    format!("{head}********")
}

pub fn fingerprint(rule: &str, secret: &str) -> String {
    let mut h = Sha256::new();
    h.update(rule.as_bytes());
    h.update(b"\0");
    h.update(secret.as_bytes());
    format!("sha256:{}", hex::encode(h.finalize()))
}

/// Shannon entropy in bits per character.
pub fn entropy(s: &str) -> f64 {
    let mut counts = [0usize; 256];
    let n = s.len();
    if n == 0 {
        return 0.0;
    }
    for b in s.bytes() {
        counts[b as usize] += 1;
    }
    counts.iter().filter(|&&c| c > 0).map(|&c| {
        let p = c as f64 / n as f64;
        -p * p.log2()
    }).sum()
}

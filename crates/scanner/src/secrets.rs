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
    /// Compiled the first time a file holds one of the rule's keywords: most rules never meet
    /// their keyword in a given image, and compiling all of them up front costs more than a scan.
    regex: std::sync::OnceLock<Regex>,
    paths: Option<Regex>,
    allow_paths: Vec<Regex>,
}

/// A secret found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// Every allowed path pattern in one automaton (checked for every file).
    allow_paths: Option<Regex>,
    allow_values: Vec<Regex>,
    allow_fingerprints: Vec<String>,
}

/// Rules match bytes with ASCII classes (`\w`, `\d`, `\b` without Unicode tables): secrets are
/// ASCII, and Unicode classes make every automaton many times larger.
fn compile(re: &str, what: &str) -> Result<Regex, String> {
    regex::bytes::RegexBuilder::new(re)
        .unicode(false)
        .size_limit(8 << 20)
        .dfa_size_limit(256 << 10)
        .build()
        .map_err(|e| format!("{what}: {e}"))
}

/// Checks a pattern's syntax without building it (the build happens on first use).
fn check(re: &str, what: &str) -> Result<(), String> {
    regex_syntax::ParserBuilder::new().unicode(false).utf8(false).build().parse(re).map(|_| ()).map_err(|e| format!("{what}: {e}"))
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
        let user_ids: std::collections::HashSet<&str> = user_files.iter().flat_map(|f| f.rule.iter().map(|r| r.id.as_str())).collect();
        let mut rules = Vec::new();
        for s in specs {
            check(&s.regex, &format!("rule {}", s.id))?;
            let regex = std::sync::OnceLock::new();
            // A user's rule is built now, so that a pattern too large to build is refused at
            // load time; the built-in ones are all built by the tests.
            if user_ids.contains(s.id.as_str()) {
                let _ = regex.set(compile(&s.regex, &format!("rule {}", s.id))?);
            }
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
            .kind(Some(aho_corasick::AhoCorasickKind::DFA))
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .build(&patterns)
            .map_err(|e| format!("keywords: {e}"))?;
        let compile_all = |v: &[String], what: &str| v.iter().map(|p| compile(p, what)).collect::<Result<Vec<_>, _>>();
        Ok(SecretScanner {
            keywords,
            keyword_rules,
            always,
            allow_paths: {
                compile_all(&allow.paths, "allow paths")?;
                let joined = allow.paths.iter().map(|p| format!("(?:{p})")).collect::<Vec<_>>().join("|");
                (!joined.is_empty()).then(|| compile(&joined, "allow paths")).transpose()?
            },
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
        self.allow_paths.as_ref().is_some_and(|r| r.is_match(path.as_bytes()))
    }

    /// Every secret in `bytes` (a file's contents, or a config value) at `path`. A binary (a file
    /// with NUL bytes) is searched in its printable strings only, as `strings(1)` would show them.
    pub fn scan(&self, path: &str, bytes: &[u8], layer: Option<&str>, out: &mut Vec<SecretFinding>) {
        if self.path_allowed(path) {
            return;
        }
        if bytes[..bytes.len().min(8192)].contains(&0) {
            let strings = printable_strings(bytes);
            return self.scan_text(path, &strings, true, layer, out);
        }
        self.scan_text(path, bytes, false, layer, out)
    }

    fn scan_text(&self, path: &str, bytes: &[u8], binary: bool, layer: Option<&str>, out: &mut Vec<SecretFinding>) {
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
            let regex = rule.regex.get_or_init(|| compile(&rule.spec.regex, &rule.spec.id).expect("checked when the rules were loaded"));
            for caps in regex.captures_iter(bytes) {
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

const fn printable_table() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut b = 0x20;
    while b < 0x7f {
        t[b] = 1;
        b += 1;
    }
    t[b'\t' as usize] = 1;
    t
}

static PRINTABLE: [u8; 256] = printable_table();

/// One bit per byte of a 64-byte block: printable or not (built without branches).
fn block_mask(bytes: &[u8], block: usize) -> u64 {
    let start = block * 64;
    let end = (start + 64).min(bytes.len());
    let mut m = 0u64;
    for (j, &b) in bytes[start.min(end)..end].iter().enumerate() {
        m |= (PRINTABLE[b as usize] as u64) << j;
    }
    m
}

/// Runs of at least 8 printable ASCII characters, one per line, as `strings(1)` shows them.
/// Bit masks per 64-byte block find where a run of 8 begins, so the (mostly non-printable) bulk
/// of a binary costs a table lookup per byte and no unpredictable branch.
pub(crate) fn printable_strings(bytes: &[u8]) -> Vec<u8> {
    let n = bytes.len();
    let blocks = n.div_ceil(64);
    let mut out = Vec::with_capacity(n / 8);
    let mut done = 0; // bytes before this are emitted or known not to start a run
    let mut cur = block_mask(bytes, 0);
    for k in 0..blocks {
        let next = if k + 1 < blocks { block_mask(bytes, k + 1) } else { 0 };
        // Bit j: bytes j..j+8 (into the next block) are all printable.
        let mut r = cur;
        for s in 1..8 {
            r &= (cur >> s) | (next << (64 - s));
        }
        let base = k * 64;
        while r != 0 {
            if done > base {
                let skip = done - base;
                r = if skip >= 64 { 0 } else { r & (!0u64 << skip) };
                if r == 0 {
                    break;
                }
            }
            let start = base + r.trailing_zeros() as usize;
            let mut s = start;
            while s > done && PRINTABLE[bytes[s - 1] as usize] == 1 {
                s -= 1;
            }
            let mut e = start;
            while e < n && PRINTABLE[bytes[e] as usize] == 1 {
                e += 1;
            }
            out.extend_from_slice(&bytes[s..e]);
            out.push(b'\n');
            done = e;
        }
        cur = next;
    }
    out
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

#[cfg(test)]
mod tests {
    /// The obvious byte-by-byte version, to check the fast one against.
    fn naive(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut run = Vec::new();
        for &b in bytes.iter().chain(std::iter::once(&0u8)) {
            if (0x20..0x7f).contains(&b) || b == b'\t' {
                run.push(b);
            } else {
                if run.len() >= 8 {
                    out.extend_from_slice(&run);
                    out.push(b'\n');
                }
                run.clear();
            }
        }
        out
    }

    #[test]
    fn printable_strings_match_the_obvious_version() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for len in [0, 1, 7, 8, 9, 63, 64, 65, 127, 128, 129, 200, 1000, 4096, 65_537] {
            for density in [0u64, 30, 60, 90, 97, 100] {
                let bytes: Vec<u8> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        if x % 100 < density { b'a' + (x >> 8) as u8 % 26 } else { (x >> 16) as u8 & 0x1f }
                    })
                    .collect();
                assert_eq!(super::printable_strings(&bytes), naive(&bytes), "len {len} density {density}");
            }
        }
        let edge = [b"\0\0abcdefgh\0".as_slice(), b"abcdefg\0abcdefgh", &[b'x'; 64], &[b'x'; 70]].concat();
        assert_eq!(super::printable_strings(&edge), naive(&edge));
    }
}

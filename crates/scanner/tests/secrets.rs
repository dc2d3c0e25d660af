//! Every built-in secret rule on a value generated here in its provider's format (nothing
//! secret-looking is committed: rules carry templates), with a negative case each; real private
//! keys from openssl; allowlists, user rule files, redaction and fingerprints.

mod common;
use common::Rng;
use scanner::secrets::{RuleFile, SecretFinding, SecretScanner, fingerprint};
use std::process::Command;

fn alphabet(class: &str) -> &'static str {
    match class {
        "alnum" => "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
        "ALNUM" => "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
        "lalnum" => "abcdefghijklmnopqrstuvwxyz0123456789",
        "alpha" => "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
        "hex" | "hexl" => "0123456789abcdef",
        "digit" => "0123456789",
        "B32" => "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567",
        "b32l" => "abcdefghijklmnopqrstuvwxyz234567",
        "b64" => "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
        "b64url" => "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
        "b64s" | "bcrypt" => "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
        "bech32" => "QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L",
        "mixed" => "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#%+-.@^_",
        other => panic!("unknown class {other}"),
    }
}

/// Fills `{class:n}` runs with random characters; `{{`/`}}` are braces. `scale` shortens runs.
fn expand(template: &str, rng: &mut Rng, scale: f64) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i].replace("}}", "}"));
        rest = &rest[i..];
        if let Some(r) = rest.strip_prefix("{{") {
            out.push('{');
            rest = r;
            continue;
        }
        let end = rest.find('}').expect("closed run");
        let (class, n) = rest[1..end].split_once(':').expect("class:n");
        let n = ((n.parse::<usize>().unwrap() as f64) * scale).round() as usize;
        let chars: Vec<char> = alphabet(class).chars().collect();
        let mut run: String = (0..n).map(|_| chars[(rng.next() % chars.len() as u64) as usize]).collect();
        // Keep generated values from looking like placeholders by chance.
        if class == "mixed" && n > 2 {
            run.replace_range(0..3, "q7!");
        }
        out.push_str(&run);
        rest = &rest[end + 1..];
    }
    out.push_str(&rest.replace("}}", "}"));
    out
}

fn scanner() -> SecretScanner {
    SecretScanner::new(&[]).expect("built-in rules compile")
}

fn scan(s: &SecretScanner, path: &str, text: &str) -> Vec<SecretFinding> {
    let mut out = Vec::new();
    s.scan(path, text.as_bytes(), Some("sha256:l"), &mut out);
    out
}

#[test]
fn there_are_at_least_150_rules_and_every_one_finds_its_example_and_not_its_negative() {
    let s = scanner();
    assert!(s.rule_count() >= 150, "{} rules", s.rule_count());
    let mut failures = Vec::new();
    let specs: Vec<_> = s.specs().cloned().collect();
    for (i, spec) in specs.iter().enumerate() {
        let example = spec.example.as_deref().unwrap_or_else(|| panic!("{} has no example", spec.id));
        let path = spec.example_path.as_deref().unwrap_or("srv/app/config.env");
        let mut rng = Rng(0x2545_F491_4F6C_DD1D ^ (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let positive = expand(example, &mut rng, 1.0);
        let found = scan(&s, path, &positive);
        if !found.iter().any(|f| f.rule == spec.id) {
            failures.push(format!("{}: example not found (found {:?})", spec.id, found.iter().map(|f| &f.rule).collect::<Vec<_>>()));
        }
        let negative = match &spec.negative {
            Some(t) => expand(t, &mut rng, 1.0),
            None => expand(example, &mut rng, 0.5),
        };
        if scan(&s, path, &negative).iter().any(|f| f.rule == spec.id) {
            failures.push(format!("{}: negative matched", spec.id));
        }
        // Outside the rule's paths, a path-limited rule stays quiet.
        if spec.paths.is_some() && scan(&s, "srv/app/other.conf", &positive).iter().any(|f| f.rule == spec.id) {
            failures.push(format!("{}: matched outside its paths", spec.id));
        }
    }
    assert!(failures.is_empty(), "{} of {} rules:\n{}", failures.len(), specs.len(), failures.join("\n"));
}

#[test]
fn findings_are_redacted_fingerprinted_and_located() {
    let s = scanner();
    let mut rng = Rng(42);
    let token = expand("ghp_{alnum:36}", &mut rng, 1.0);
    let text = format!("# deploy settings\nuser=ci\nGITHUB_TOKEN={token}\n");
    let found = scan(&s, "srv/app/.env", &text);
    assert_eq!(found.len(), 1, "{found:#?}");
    let f = &found[0];
    assert_eq!((f.rule.as_str(), f.line, f.layer.as_deref()), ("github-pat", Some(3), Some("sha256:l")));
    assert_eq!(f.redacted, "ghp_********");
    assert_eq!(f.fingerprint, fingerprint("github-pat", &token));
    let json = serde_json::to_string(&found).unwrap();
    assert!(!json.contains(&token[4..]), "the report never holds the secret");
    // A secret inside a binary: found, without a line.
    let mut bin = vec![0u8; 100];
    bin.extend_from_slice(format!("\x01{token}\x02").as_bytes());
    let mut out = Vec::new();
    s.scan("usr/bin/tool", &bin, None, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].line, None);
}

#[test]
fn placeholders_docs_and_tests_are_allowed() {
    let s = scanner();
    // AWS's documented example key, and template placeholders.
    for text in ["aws_access_key_id = AKIAIOSFODNN7EXAMPLE", "password = \"${DB_PASSWORD}\"", "api_key: \"<your-api-key-here>\"", "secret = \"xxxxxxxxxxxxxxxx\""] {
        assert!(scan(&s, "srv/app/config", text).is_empty(), "{text}");
    }
    let mut rng = Rng(7);
    let token = expand("ghp_{alnum:36}", &mut rng, 1.0);
    for path in ["usr/share/doc/git/README", "srv/app/tests/fixtures.py", "src/module_test.go", "docs/setup.md"] {
        assert!(scan(&s, path, &format!("token={token}")).is_empty(), "{path}");
    }
    // The generic rule wants entropy: a dictionary word is not a secret.
    assert!(scan(&s, "srv/app/settings.py", "password = \"correcthorsebatterystaple\"").is_empty());
    let strong = expand("{mixed:24}", &mut rng, 1.0);
    assert_eq!(scan(&s, "srv/app/settings.py", &format!("password = \"{strong}\""))[0].rule, "generic-secret");
}

#[test]
fn user_rule_files_add_override_disable_and_allow() {
    let mut rng = Rng(9);
    let gh = expand("ghp_{alnum:36}", &mut rng, 1.0);
    let custom = expand("acme_{alnum:30}", &mut rng, 1.0);
    let stripe = expand("sk_live_{alnum:24}", &mut rng, 1.0);
    let text = format!("A={gh}\nB={custom}\nC={stripe}\n");
    let user = RuleFile::parse(&format!(
        r#"
disable = ["stripe-secret-key"]
[[rule]]
id = "acme-token"
title = "ACME internal token"
severity = "HIGH"
keywords = ["acme_"]
regex = '''\b(acme_[A-Za-z0-9]{{30}})\b'''
[[rule]]
id = "github-pat"
title = "GitHub token (ours: low)"
severity = "LOW"
keywords = ["ghp_"]
regex = '''\b(ghp_[A-Za-z0-9]{{36}})\b'''
[allow]
fingerprints = ["{}"]
paths = ['''^srv/vendor/''']
"#,
        fingerprint("acme-token", "acme_never_seen")
    ))
    .unwrap();
    let s = SecretScanner::new(&[user]).unwrap();
    let found = scan(&s, "srv/app/env", &text);
    let rules: Vec<(&str, &str)> = found.iter().map(|f| (f.rule.as_str(), f.severity.as_str())).collect();
    assert_eq!(rules, vec![("github-pat", "LOW"), ("acme-token", "HIGH")]);
    assert!(scan(&s, "srv/vendor/env", &text).is_empty());
    // Allowlisting one finding by its fingerprint.
    let fp = found[1].fingerprint.clone();
    let allow = RuleFile::parse(&format!("[allow]\nfingerprints = [\"{fp}\"]\n")).unwrap();
    let user = RuleFile::parse("[[rule]]\nid = \"acme-token\"\ntitle = \"t\"\nseverity = \"HIGH\"\nkeywords = [\"acme_\"]\nregex = '''\\b(acme_[A-Za-z0-9]{30})\\b'''\n").unwrap();
    let s = SecretScanner::new(&[user, allow]).unwrap();
    assert!(!scan(&s, "srv/app/env", &text).iter().any(|f| f.rule == "acme-token"));
    // A broken user file is refused with the reason.
    assert!(RuleFile::parse("[[rule]]\nid = 1").is_err());
    let bad = RuleFile::parse("[[rule]]\nid = \"x\"\ntitle = \"t\"\nseverity = \"HIGH\"\nregex = '''(unclosed'''\n").unwrap();
    assert!(SecretScanner::new(&[bad]).err().unwrap().contains("rule x"));
}

#[test]
fn real_private_keys_from_openssl() {
    let s = scanner();
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &[&str])] = &[
        ("private-key-rsa", &["genrsa", "-traditional", "2048"]),
        ("private-key-ec", &["ecparam", "-genkey", "-name", "prime256v1", "-noout"]),
        ("private-key-pkcs8", &["genpkey", "-algorithm", "ed25519"]),
        ("private-key-encrypted", &["genpkey", "-algorithm", "ed25519", "-aes256", "-pass", "pass:correct-horse"]),
    ];
    for (rule, args) in cases {
        let out = Command::new("openssl").args(*args).current_dir(dir.path()).output().expect("openssl runs (scripts/test.sh installs it)");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        let pem = String::from_utf8(out.stdout).unwrap();
        let found = scan(&s, "root/.ssh/key.pem", &pem);
        assert_eq!(found.iter().map(|f| f.rule.as_str()).collect::<Vec<_>>(), vec![*rule], "{pem}");
        // The public half is not a secret.
        let public = Command::new("openssl").args(["pkey", "-pubout", "-passin", "pass:correct-horse"]).current_dir(dir.path()).stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).spawn().unwrap();
        use std::io::Write;
        public.stdin.as_ref().unwrap().write_all(pem.as_bytes()).unwrap();
        let public = public.wait_with_output().unwrap();
        assert!(scan(&s, "root/key.pub", &String::from_utf8_lossy(&public.stdout)).is_empty());
    }
}

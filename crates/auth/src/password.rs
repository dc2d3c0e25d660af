//! Credentials at rest: argon2id for passwords people choose, bcrypt accepted from htpasswd
//! imports (and replaced by argon2id at the next successful login), and SHA-256 for robot secrets,
//! which are 256 random bits and so need no slow hash.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use base64::Engine;
use ring::rand::SecureRandom;

/// What checking a password against a stored hash found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verified {
    Yes,
    /// Right, but stored with an older scheme: store [`hash`] of it instead.
    YesRehash,
    No,
}

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("a password must be 8 to 1024 bytes long")]
    Length,
    #[error("hashing failed: {0}")]
    Hash(String),
    #[error("htpasswd line {line}: {why}")]
    Htpasswd { line: usize, why: String },
}

/// An argon2id PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`) with a random salt.
pub fn hash(password: &str) -> Result<String, PasswordError> {
    if !(8..=1024).contains(&password.len()) {
        return Err(PasswordError::Length);
    }
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// Checks `password` against a stored argon2 or bcrypt hash. Costs as much as hashing: call it
/// off the async threads.
pub fn verify(password: &str, stored: &str) -> Verified {
    if stored.starts_with("$argon2") {
        let Ok(parsed) = PasswordHash::new(stored) else { return Verified::No };
        return match Argon2::default().verify_password(password.as_bytes(), &parsed) {
            Ok(()) => Verified::Yes,
            Err(_) => Verified::No,
        };
    }
    if stored.starts_with("$2") {
        return match bcrypt::verify(password, stored) {
            Ok(true) => Verified::YesRehash,
            _ => Verified::No,
        };
    }
    Verified::No
}

/// Spends what a real check would, for names that do not exist, so that timing does not tell
/// which names do.
pub fn verify_nobody(password: &str) {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let dummy = DUMMY.get_or_init(|| hash("not-a-real-password-at-all").unwrap_or_default());
    let _ = verify(password, dummy);
}

/// A new robot secret: 32 random bytes, URL-safe base64, behind a recognisable prefix (so that
/// secret scanners, ours included, can find a leaked one).
pub fn new_robot_secret() -> String {
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new().fill(&mut bytes).expect("the system random source works");
    format!("cst_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// How a robot secret is stored: `sha256:<hex>`.
pub fn robot_secret_digest(secret: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, secret.as_bytes());
    format!("sha256:{}", hex(d.as_ref()))
}

/// Compares a robot secret's digest with the stored one without stopping at the first difference.
pub fn verify_robot_secret(secret: &str, stored: &str) -> bool {
    let d = robot_secret_digest(secret);
    d.len() == stored.len() && d.bytes().zip(stored.bytes()).fold(0u8, |diff, (a, b)| diff | (a ^ b)) == 0
}

/// `name:hash` lines of an htpasswd file (bcrypt only, as Distribution requires); blank lines and
/// `#` comments skipped.
pub fn parse_htpasswd(text: &str) -> Result<Vec<(String, String)>, PasswordError> {
    let mut users = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |why: &str| PasswordError::Htpasswd { line: i + 1, why: why.into() };
        let (name, hash) = line.split_once(':').ok_or_else(|| bad("expected name:hash"))?;
        if !hash.starts_with("$2") {
            return Err(bad("only bcrypt hashes ($2y$, $2b$, $2a$) can be imported"));
        }
        if name.is_empty() {
            return Err(bad("empty user name"));
        }
        users.push((name.to_owned(), hash.to_owned()));
    }
    Ok(users)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2id_round_trip_and_refusals() {
        let h = hash("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert_eq!(verify("correct horse", &h), Verified::Yes);
        assert_eq!(verify("correct hors", &h), Verified::No);
        assert_eq!(verify("correct horse", "garbage"), Verified::No);
        assert!(matches!(hash("short"), Err(PasswordError::Length)));
        assert_ne!(hash("correct horse").unwrap(), h, "salted");
    }

    #[test]
    fn bcrypt_from_htpasswd_verifies_and_asks_for_rehash() {
        // Generated here (cost 4 keeps the test fast), as `htpasswd -B` would write it.
        let stored = bcrypt::hash("from distribution", 4).unwrap().replacen("$2b$", "$2y$", 1);
        let users = parse_htpasswd(&format!("# comment\n\nold-ci:{stored}\n")).unwrap();
        assert_eq!(users, vec![("old-ci".to_owned(), stored.clone())]);
        assert_eq!(verify("from distribution", &stored), Verified::YesRehash);
        assert_eq!(verify("wrong", &stored), Verified::No);
        assert!(parse_htpasswd("md5user:$apr1$abc$def").is_err(), "only bcrypt");
        assert!(parse_htpasswd("nocolon").is_err());
    }

    #[test]
    fn robot_secrets_are_random_and_checked_by_digest() {
        let a = new_robot_secret();
        let b = new_robot_secret();
        assert_ne!(a, b);
        assert!(a.starts_with("cst_") && a.len() == 4 + 43, "{a}");
        let stored = robot_secret_digest(&a);
        assert!(verify_robot_secret(&a, &stored));
        assert!(!verify_robot_secret(&b, &stored));
    }
}

//! Bearer tokens of the Docker token spec: JWTs signed with ES256 (ECDSA P-256, SHA-256), checked
//! with the public key alone, so no request waits for a database to learn who is asking.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, UnparsedPublicKey};
use serde::{Deserialize, Serialize};

/// Clocks of replicas differ a little; `nbf` and `exp` allow this much.
const LEEWAY_SECS: u64 = 30;

/// What a token says: who (`sub`), for which service (`aud`), until when, and the
/// `access` it grants, as the spec names them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: u64,
    pub nbf: u64,
    pub iat: u64,
    pub jti: String,
    pub access: Vec<ResourceAccess>,
    /// `user`, `robot` or `anonymous` (not in the spec; clients ignore it).
    #[serde(default)]
    pub kind: String,
    /// The issuer's access version when it issued the token: a later change of the subject's
    /// access makes the token void (not in the spec).
    #[serde(default)]
    pub ver: i64,
}

/// `{"type": "repository", "name": "team/app", "actions": ["pull"]}`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceAccess {
    #[serde(rename = "type")]
    pub resource_type: String,
    pub name: String,
    pub actions: Vec<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the token is not a JWT")]
    Malformed,
    #[error("the token is not signed with ES256")]
    Algorithm,
    #[error("the token's signature does not verify")]
    Signature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token was issued for another service or by another issuer")]
    WrongAudience,
    #[error("the signing key is not a P-256 PKCS#8 key: {0}")]
    Key(String),
}

/// The signing key and its public half.
pub struct TokenKeys {
    pair: EcdsaKeyPair,
    kid: String,
    rng: SystemRandom,
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    kid: Option<String>,
}

impl TokenKeys {
    /// A new P-256 key as a PKCS#8 PEM document.
    pub fn generate_pem() -> String {
        let rng = SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("P-256 key generation works");
        let b64 = STANDARD.encode(doc.as_ref());
        let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).unwrap_or_default());
            pem.push('\n');
        }
        pem.push_str("-----END PRIVATE KEY-----\n");
        pem
    }

    /// Reads a PKCS#8 PEM P-256 key.
    pub fn from_pem(pem: &str) -> Result<TokenKeys, TokenError> {
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).map(str::trim).collect();
        let der = STANDARD.decode(body).map_err(|e| TokenError::Key(e.to_string()))?;
        let rng = SystemRandom::new();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der, &rng)
            .map_err(|e| TokenError::Key(e.to_string()))?;
        let fingerprint = ring::digest::digest(&ring::digest::SHA256, pair.public_key().as_ref());
        let kid = crate::password::hex(&fingerprint.as_ref()[..12]);
        Ok(TokenKeys { pair, kid, rng })
    }

    /// The key id tokens carry in their header.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn sign(&self, claims: &Claims) -> String {
        let header = Header { alg: "ES256".into(), typ: Some("JWT".into()), kid: Some(self.kid.clone()) };
        let header = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).expect("a header serializes"));
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("claims serialize"));
        let signed = format!("{header}.{payload}");
        let signature = self.pair.sign(&self.rng, signed.as_bytes()).expect("signing with a valid key works");
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
    }

    /// Checks the signature, the issuer and audience, and the validity window at `now` (seconds
    /// since the Unix epoch).
    pub fn verify(&self, token: &str, issuer: &str, audience: &str, now: u64) -> Result<Claims, TokenError> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(TokenError::Malformed);
        };
        let decode = |part: &str| URL_SAFE_NO_PAD.decode(part).map_err(|_| TokenError::Malformed);
        let header: Header = serde_json::from_slice(&decode(h)?).map_err(|_| TokenError::Malformed)?;
        if header.alg != "ES256" {
            return Err(TokenError::Algorithm);
        }
        let signature = decode(s)?;
        let signed_len = h.len() + 1 + p.len();
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, self.pair.public_key().as_ref())
            .verify(&token.as_bytes()[..signed_len], &signature)
            .map_err(|_| TokenError::Signature)?;
        let claims: Claims = serde_json::from_slice(&decode(p)?).map_err(|_| TokenError::Malformed)?;
        if claims.iss != issuer || claims.aud != audience {
            return Err(TokenError::WrongAudience);
        }
        if now >= claims.exp + LEEWAY_SECS {
            return Err(TokenError::Expired);
        }
        if claims.nbf > now + LEEWAY_SECS {
            return Err(TokenError::NotYetValid);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(now: u64) -> Claims {
        Claims {
            iss: "customs".into(),
            sub: "ann".into(),
            aud: "registry".into(),
            exp: now + 300,
            nbf: now,
            iat: now,
            jti: "1".into(),
            access: vec![ResourceAccess { resource_type: "repository".into(), name: "a/b".into(), actions: vec!["pull".into()] }],
            kind: "user".into(),
            ver: 7,
        }
    }

    #[test]
    fn tokens_verify_with_the_key_that_signed_them_only() {
        let keys = TokenKeys::from_pem(&TokenKeys::generate_pem()).unwrap();
        let other = TokenKeys::from_pem(&TokenKeys::generate_pem()).unwrap();
        let now = 1_800_000_000;
        let token = keys.sign(&claims(now));
        assert_eq!(keys.verify(&token, "customs", "registry", now + 10).unwrap(), claims(now));
        assert_eq!(other.verify(&token, "customs", "registry", now), Err(TokenError::Signature));
        assert_eq!(keys.verify(&token, "customs", "elsewhere", now), Err(TokenError::WrongAudience));
        assert_eq!(keys.verify(&token, "customs", "registry", now + 400), Err(TokenError::Expired));
        assert_eq!(keys.verify(&token, "customs", "registry", now - 100), Err(TokenError::NotYetValid));
        assert_eq!(keys.verify("a.b", "customs", "registry", now), Err(TokenError::Malformed));
    }

    #[test]
    fn altered_claims_and_other_algorithms_are_refused() {
        let keys = TokenKeys::from_pem(&TokenKeys::generate_pem()).unwrap();
        let now = 1_800_000_000;
        let token = keys.sign(&claims(now));
        let parts: Vec<&str> = token.split('.').collect();
        let mut wider = claims(now);
        wider.access[0].actions.push("push".into());
        let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&wider).unwrap());
        let forged = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
        assert_eq!(keys.verify(&forged, "customs", "registry", now), Err(TokenError::Signature));
        let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#);
        let unsigned = format!("{none_header}.{}.", parts[1]);
        assert_eq!(keys.verify(&unsigned, "customs", "registry", now), Err(TokenError::Algorithm));
        assert!(matches!(TokenKeys::from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"), Err(TokenError::Key(_))));
    }
}

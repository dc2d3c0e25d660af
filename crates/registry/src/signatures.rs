//! Cosign signatures (key-based): found by the `sha256-<hex>.sig` tag cosign writes and through the
//! referrers API (cosign's OCI 1.1 mode), each layer a simple-signing payload with its signature
//! in an annotation. A signature counts only when a configured key verifies it over the payload
//! *and* the payload names this image's digest: presence alone never counts.

use base64::Engine as _;
use oci::{Digest, Reference, RepoName, Tag};

use crate::{Registry, Result};

/// The layer media type of a cosign signature, and its annotation.
pub const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// cosign's artifact type for signatures stored as referrers.
pub const SIGNATURE_ARTIFACT: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";

const MAX_PAYLOAD: u64 = 64 << 10;
const MAX_SIGNATURES: usize = 32;

/// A public key signatures are verified with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustedKey {
    /// How verdicts name it (the key file's name).
    pub name: String,
    kind: KeyKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum KeyKind {
    /// An uncompressed SEC1 point.
    P256(Vec<u8>),
    Ed25519(Vec<u8>),
}

// The fixed DER of SubjectPublicKeyInfo up to the key bytes, for the two algorithms cosign
// generates (id-ecPublicKey with prime256v1; id-Ed25519).
const P256_SPKI_PREFIX: [u8; 26] =
    [0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00];
const ED25519_SPKI_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];

impl TrustedKey {
    /// A PEM `PUBLIC KEY` (as `cosign generate-key-pair` and `openssl pkey -pubout` write) of an
    /// ECDSA P-256 or Ed25519 key.
    pub fn from_pem(name: &str, pem: &str) -> Result<TrustedKey, String> {
        let body: String = pem
            .lines()
            .skip_while(|l| !l.starts_with("-----BEGIN PUBLIC KEY-----"))
            .skip(1)
            .take_while(|l| !l.starts_with("-----END"))
            .collect();
        if body.is_empty() {
            return Err(format!("{name}: no PEM PUBLIC KEY block"));
        }
        let der = base64::engine::general_purpose::STANDARD.decode(body.trim()).map_err(|e| format!("{name}: {e}"))?;
        let kind = if der.len() == P256_SPKI_PREFIX.len() + 65 && der.starts_with(&P256_SPKI_PREFIX) {
            KeyKind::P256(der[P256_SPKI_PREFIX.len()..].to_vec())
        } else if der.len() == ED25519_SPKI_PREFIX.len() + 32 && der.starts_with(&ED25519_SPKI_PREFIX) {
            KeyKind::Ed25519(der[ED25519_SPKI_PREFIX.len()..].to_vec())
        } else {
            return Err(format!("{name}: only ECDSA P-256 and Ed25519 public keys are supported"));
        };
        Ok(TrustedKey { name: name.to_owned(), kind })
    }

    /// Whether `signature` is this key's over `payload`.
    pub fn verifies(&self, payload: &[u8], signature: &[u8]) -> bool {
        use ring::signature::{ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_FIXED, ED25519, UnparsedPublicKey};
        match &self.kind {
            KeyKind::P256(point) => {
                UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, point).verify(payload, signature).is_ok()
                    || UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point).verify(payload, signature).is_ok()
            }
            KeyKind::Ed25519(key) => UnparsedPublicKey::new(&ED25519, key).verify(payload, signature).is_ok(),
        }
    }

    pub fn fingerprint(&self) -> String {
        let bytes = match &self.kind {
            KeyKind::P256(k) | KeyKind::Ed25519(k) => k,
        };
        format!("{}:{}", self.name, Digest::sha256_of(bytes))
    }
}

/// One signature found for an image.
#[derive(Clone, Debug, PartialEq)]
pub struct Checked {
    /// The key that verified it; `None`: no configured key did.
    pub key: Option<String>,
    /// Where it was found: the signature manifest's digest.
    pub source: String,
    /// Why it does not count, when it does not.
    pub error: Option<String>,
}

/// The tag cosign stores an image's signatures under.
pub fn signature_tag(image: &Digest) -> Option<Tag> {
    format!("{}.sig", image.to_string().replacen(':', "-", 1)).parse().ok()
}

/// The image a `sha256-<hex>.sig` tag is for.
pub fn signed_by_tag(tag: &Tag) -> Option<Digest> {
    let (algorithm, hex) = tag.as_str().strip_suffix(".sig")?.split_once('-')?;
    format!("{algorithm}:{hex}").parse().ok()
}

/// Every cosign signature of `digest` in `repo`, each checked against `keys`.
pub(crate) async fn find(registry: &Registry, repo: &RepoName, digest: &Digest, keys: &[TrustedKey]) -> Result<Vec<Checked>> {
    let mut manifests = Vec::new();
    if let Some(tag) = signature_tag(digest) {
        match registry.get_manifest(repo, &Reference::Tag(tag)).await {
            Ok(m) => manifests.push(m),
            Err(crate::Error::ManifestUnknown(_)) => {}
            Err(e) => return Err(e),
        }
    }
    for r in registry.meta.referrers(repo, digest, Some(SIGNATURE_ARTIFACT)).await? {
        manifests.push(registry.get_manifest(repo, &Reference::Digest(r.digest)).await?);
    }
    let mut out = Vec::new();
    for content in manifests {
        let source = Digest::sha256_of(&content.bytes).to_string();
        let Ok(manifest) = oci::Manifest::parse(Some(&content.media_type), &content.bytes) else { continue };
        for layer in manifest.layers.iter().filter(|l| l.media_type == SIMPLE_SIGNING).take(MAX_SIGNATURES) {
            let annotation = layer.annotations.as_ref().and_then(|a| a.get(SIGNATURE_ANNOTATION)).cloned();
            let checked = match annotation {
                None => Err("no signature annotation".to_owned()),
                Some(sig) => match registry.read_small_blob(repo, &layer.digest, MAX_PAYLOAD).await {
                    Ok(payload) => check(&payload, &sig, digest, keys),
                    Err(e) => Err(format!("payload unreadable: {e}")),
                },
            };
            out.push(match checked {
                Ok(key) => Checked { key: Some(key), source: source.clone(), error: None },
                Err(e) => Checked { key: None, source: source.clone(), error: Some(e) },
            });
        }
    }
    Ok(out)
}

/// The name of the key that verifies `signature` (base64) over `payload`, provided the payload
/// names `image`.
fn check(payload: &[u8], signature: &str, image: &Digest, keys: &[TrustedKey]) -> Result<String, String> {
    let sig = base64::engine::general_purpose::STANDARD.decode(signature.trim()).map_err(|_| "the signature is not base64".to_owned())?;
    let key = keys.iter().find(|k| k.verifies(payload, &sig)).ok_or_else(|| "no configured key verifies it".to_owned())?;
    let doc: serde_json::Value = serde_json::from_slice(payload).map_err(|_| "the payload is not JSON".to_owned())?;
    let named = doc["critical"]["image"]["docker-manifest-digest"].as_str().unwrap_or_default();
    if named != image.to_string() {
        return Err(format!("the signed payload names {named:?}, not this image"));
    }
    Ok(key.name.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair};

    fn pem(spki: &[u8]) -> String {
        format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", base64::engine::general_purpose::STANDARD.encode(spki))
    }

    fn payload(image: &Digest) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "critical": {"identity": {"docker-reference": "r/x"}, "image": {"docker-manifest-digest": image.to_string()}, "type": "cosign container image signature"},
            "optional": null
        }))
        .unwrap()
    }

    #[test]
    fn keys_verify_their_own_signatures_over_payloads_naming_the_image() {
        let rng = SystemRandom::new();
        let image = Digest::sha256_of(b"image");
        let b64 = |s: &[u8]| base64::engine::general_purpose::STANDARD.encode(s);

        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let ec = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng).unwrap();
        let ec_key = TrustedKey::from_pem("ec.pub", &pem(&[&P256_SPKI_PREFIX[..], ec.public_key().as_ref()].concat())).unwrap();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let ed = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let ed_key = TrustedKey::from_pem("ed.pub", &pem(&[&ED25519_SPKI_PREFIX[..], ed.public_key().as_ref()].concat())).unwrap();

        let p = payload(&image);
        let ec_sig = b64(ec.sign(&rng, &p).unwrap().as_ref());
        let ed_sig = b64(ed.sign(&p).as_ref());
        let both = [ec_key.clone(), ed_key.clone()];
        assert_eq!(check(&p, &ec_sig, &image, &both), Ok("ec.pub".into()));
        assert_eq!(check(&p, &ed_sig, &image, &both), Ok("ed.pub".into()));
        assert!(check(&p, &ec_sig, &image, std::slice::from_ref(&ed_key)).is_err(), "another key");
        assert!(check(&p, &ed_sig, &image, &[]).is_err(), "no key configured");
        // A valid signature over a payload for another image does not count for this one.
        let other = Digest::sha256_of(b"other");
        assert!(check(&payload(&other), &b64(ed.sign(&payload(&other)).as_ref()), &image, &both).unwrap_err().contains("names"));
        // A tampered payload.
        let mut tampered = p.clone();
        tampered[5] ^= 1;
        assert!(check(&tampered, &ed_sig, &image, &both).is_err());
        assert!(check(&p, "%%%", &image, &both).is_err());
    }

    #[test]
    fn only_p256_and_ed25519_public_keys_load() {
        assert!(TrustedKey::from_pem("x", "not a pem").is_err());
        assert!(TrustedKey::from_pem("x", &pem(&[0x30, 0x03, 0x02, 0x01, 0x00])).is_err());
    }

    #[test]
    fn the_signature_tag_round_trips() {
        let d = Digest::sha256_of(b"i");
        let tag = signature_tag(&d).unwrap();
        assert_eq!(tag.as_str(), format!("sha256-{}.sig", d.hex()));
        assert_eq!(signed_by_tag(&tag), Some(d));
        assert_eq!(signed_by_tag(&"latest".parse().unwrap()), None);
    }
}

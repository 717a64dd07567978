//! Names of an Ed25519 public key, in the reference's forms: base64url without padding (the
//! card's `public_key`), `did:acp:<base64url>` (the node's primary did), `did:key:z6Mk…` (W3C
//! did:key, base58btc of the multicodec `0xed01` and the key), and a JWK (RFC 8037 `OKP`).
//! Every parser here reads outside input (cards, links, request bodies), so each one refuses
//! with a message instead of panicking.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::VerifyingKey;
use serde_json::{Value, json};

/// The multicodec prefix of an Ed25519 public key in did:key.
const ED25519_MULTICODEC: [u8; 2] = [0xed, 0x01];
/// Longest did or key text accepted; anything longer is not a key.
const MAX_DID_LEN: usize = 512;

/// base64url without padding, as the reference writes keys and signatures.
pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url with or without `=` padding (the reference appends `==` and decodes,
/// so both forms occur). The standard alphabet's `+` and `/` are read as `-` and `_`.
pub fn b64url_decode(text: &str) -> Result<Vec<u8>, String> {
    if text.len() > 4 * MAX_DID_LEN {
        return Err("base64url text too long".into());
    }
    let trimmed = text.trim_end_matches('=');
    if text.len() - trimmed.len() > 2 {
        return Err("base64url text with too much padding".into());
    }
    let normalized: String = trimmed
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect();
    URL_SAFE_NO_PAD
        .decode(normalized.as_bytes())
        .map_err(|e| format!("not base64url: {e}"))
}

/// A public key from its base64url text (32 bytes, a point on the curve).
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, String> {
    let bytes = b64url_decode(text).map_err(|e| format!("public key {e}"))?;
    key_from_bytes(&bytes)
}

fn key_from_bytes(bytes: &[u8]) -> Result<VerifyingKey, String> {
    let arr: [u8; 32] = bytes
        .try_into()
        .map_err(|_| format!("an Ed25519 public key is 32 bytes, not {}", bytes.len()))?;
    VerifyingKey::from_bytes(&arr).map_err(|_| "not a valid Ed25519 public key".to_owned())
}

/// The key's base64url text.
pub fn public_key_text(key: &VerifyingKey) -> String {
    b64url(key.as_bytes())
}

/// `did:acp:<base64url(key)>`.
pub fn did_acp(key: &VerifyingKey) -> String {
    format!("did:acp:{}", public_key_text(key))
}

/// `did:key:z<base58btc(0xed01 ‖ key)>`.
pub fn did_key(key: &VerifyingKey) -> String {
    format!("did:key:z{}", multibase_body(key))
}

/// The base58btc text after the `z` of `publicKeyMultibase` / did:key.
pub fn multibase_body(key: &VerifyingKey) -> String {
    let mut bytes = ED25519_MULTICODEC.to_vec();
    bytes.extend_from_slice(key.as_bytes());
    bs58::encode(bytes).into_string()
}

/// The key a `did:acp:` or `did:key:` did names.
pub fn parse_did(did: &str) -> Result<VerifyingKey, String> {
    if did.len() > MAX_DID_LEN {
        return Err("did too long".into());
    }
    if let Some(b64) = did.strip_prefix("did:acp:") {
        if b64.contains('=') || b64.contains('+') || b64.contains('/') {
            return Err(format!(
                "did:acp takes base64url without padding: {}",
                short(did)
            ));
        }
        return parse_public_key(b64).map_err(|e| format!("bad did:acp {}: {e}", short(did)));
    }
    if let Some(rest) = did.strip_prefix("did:key:") {
        let body = rest
            .strip_prefix('z')
            .ok_or_else(|| format!("did:key must be base58btc (start with z): {}", short(did)))?;
        let bytes = bs58::decode(body)
            .into_vec()
            .map_err(|e| format!("bad did:key {}: not base58btc: {e}", short(did)))?;
        let key = bytes
            .strip_prefix(&ED25519_MULTICODEC)
            .ok_or_else(|| format!("did:key {} is not an Ed25519 key", short(did)))?;
        return key_from_bytes(key).map_err(|e| format!("bad did:key {}: {e}", short(did)));
    }
    Err(format!(
        "expected a did:acp:… or did:key:z… identifier, got {}",
        short(did)
    ))
}

/// Whether `did` has the W3C DID syntax (`did:<method>:<method-specific-id>`), for dids of
/// other methods that are named but never resolved here (a delegator).
pub fn is_did_syntax(did: &str) -> bool {
    let Some(rest) = did.strip_prefix("did:") else {
        return false;
    };
    let Some((method, id)) = rest.split_once(':') else {
        return false;
    };
    did.len() <= MAX_DID_LEN
        && !method.is_empty()
        && method
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && !id.is_empty()
        && !id.ends_with(':')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'%'))
}

/// A did cut short for messages (dids are long; an attacker's may be longer).
pub fn short(did: &str) -> String {
    if did.chars().count() > 60 {
        let head: String = did.chars().take(56).collect();
        format!("{head:?}…")
    } else {
        format!("{did:?}")
    }
}

/// The key as a JWK (RFC 8037), with the reference's `use`, `alg` and `kid`.
pub fn jwk(key: &VerifyingKey, kid: &str) -> Value {
    json!({
        "kty": "OKP",
        "crv": "Ed25519",
        "x": public_key_text(key),
        "use": "sig",
        "alg": "EdDSA",
        "kid": kid,
    })
}

/// The Ed25519 public key a JWK holds. Refuses private keys (`d`): a JWK handed to this
/// node names a key to trust, and a private one should not be travelling.
pub fn parse_jwk(jwk: &Value) -> Result<VerifyingKey, String> {
    let Some(obj) = jwk.as_object() else {
        return Err("a JWK must be a JSON object".into());
    };
    let field = |k: &str| obj.get(k).and_then(Value::as_str);
    if field("kty") != Some("OKP") {
        return Err("JWK kty must be \"OKP\" (an Ed25519 key)".into());
    }
    if field("crv") != Some("Ed25519") {
        return Err("JWK crv must be \"Ed25519\"".into());
    }
    if obj.contains_key("d") {
        return Err("that JWK holds a private key (d); give the public key only".into());
    }
    if let Some(alg) = obj.get("alg")
        && alg.as_str() != Some("EdDSA")
    {
        return Err("JWK alg must be \"EdDSA\" when present".into());
    }
    let x = field("x").ok_or("JWK has no x (the public key)")?;
    if x.contains('=') {
        return Err("JWK x is base64url without padding".into());
    }
    parse_public_key(x).map_err(|e| format!("JWK x: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{arb_json, config};
    use proptest::prelude::*;

    /// A fixed key and its forms, as the reference derives them:
    /// `Ed25519PrivateKey.from_private_bytes(bytes(range(32)))`, then `_pubkey_to_did_acp`,
    /// `_pubkey_to_did_key`.
    const PUB: &str = "A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg";
    const DID_KEY: &str = "did:key:z6MkehRgf7yJbgaGfYsdoAsKdBPE3dj2CYhowQdcjqSJgvVd";

    fn key() -> VerifyingKey {
        ed25519_dalek::SigningKey::from_bytes(&std::array::from_fn(|i| i as u8)).verifying_key()
    }

    #[test]
    fn forms_match_the_reference() {
        let k = key();
        assert_eq!(public_key_text(&k), PUB);
        assert_eq!(did_acp(&k), format!("did:acp:{PUB}"));
        assert_eq!(did_key(&k), DID_KEY);
        assert_eq!(parse_did(DID_KEY).unwrap(), k);
        assert_eq!(parse_did(&did_acp(&k)).unwrap(), k);
        assert_eq!(parse_public_key(&format!("{PUB}=")).unwrap(), k);
        assert_eq!(parse_jwk(&jwk(&k, "a:b")).unwrap(), k);
    }

    #[test]
    fn refuses_bad_forms() {
        for bad in [
            "",
            "did:acp:",
            "did:acp:AAAA",
            &format!("did:acp:{PUB}="),
            "did:key:6MkehRgf7yJbgaGfYsdoAsKdBPE3dj2CYhowQdcjqSJgvVd",
            "did:key:z0OIl",
            "did:web:example.org",
            "did:key:z2J9gaYxrKVpdoG9A4gRnmpnRCcxU6agDtFVVBVdn1JedouoZN7SzcyREXXzWgt3gGiwpoHq7K68X4m32D8HgzG8wv3sY5j7",
        ] {
            assert!(parse_did(bad).is_err(), "{bad:?}");
        }
        for bad in [
            json!("x"),
            json!({"kty": "EC", "crv": "Ed25519", "x": PUB}),
            json!({"kty": "OKP", "crv": "X25519", "x": PUB}),
            json!({"kty": "OKP", "crv": "Ed25519"}),
            json!({"kty": "OKP", "crv": "Ed25519", "x": 7}),
            json!({"kty": "OKP", "crv": "Ed25519", "x": PUB, "d": PUB}),
            json!({"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}),
        ] {
            assert!(parse_jwk(&bad).is_err(), "{bad}");
        }
        assert!(is_did_syntax("did:web:example.org:user%20x"));
        assert!(is_did_syntax(DID_KEY));
        for bad in [
            "did:",
            "did:web",
            "did:Web:x",
            "did:web:",
            "did:web:a b",
            "xdid:a:b",
        ] {
            assert!(!is_did_syntax(bad), "{bad:?}");
        }
    }

    /// Text shaped like a did, or anything.
    fn arb_did_text() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "did:(acp|key|web|ACP):[A-Za-z0-9_=+/:.%-]{0,60}",
            "did:key:z[1-9A-HJ-NP-Za-km-z]{0,60}",
            "did:acp:[A-Za-z0-9_-]{41,45}",
        ]
    }

    proptest! {
        #![proptest_config(config(256))]

        /// Arbitrary did text never panics; what parses prints back to a did of the same key.
        #[test]
        fn prop_did_arbitrary_text(text in arb_did_text()) {
            if let Ok(k) = parse_did(&text) {
                prop_assert_eq!(parse_did(&did_acp(&k)).unwrap(), k);
                prop_assert_eq!(parse_did(&did_key(&k)).unwrap(), k);
                prop_assert!(is_did_syntax(&did_acp(&k)) && is_did_syntax(&did_key(&k)));
            }
            let _ = is_did_syntax(&text);
            let _ = parse_public_key(&text);
        }

        /// Any key's forms parse back to it.
        #[test]
        fn prop_did_forms_round_trip(seed in any::<[u8; 32]>()) {
            let k = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key();
            prop_assert_eq!(parse_did(&did_acp(&k)).unwrap(), k);
            prop_assert_eq!(parse_did(&did_key(&k)).unwrap(), k);
            prop_assert!(did_key(&k).starts_with("did:key:z6Mk"));
            prop_assert_eq!(parse_jwk(&jwk(&k, "kid")).unwrap(), k);
            prop_assert_eq!(parse_public_key(&public_key_text(&k)).unwrap(), k);
        }

        /// Arbitrary JSON never panics the JWK parser, also with a JWK's fields in place.
        #[test]
        fn prop_jwk_garbage_never_panics(v in arb_json(), x in any::<String>(), seed in any::<[u8; 32]>()) {
            let _ = parse_jwk(&v);
            let _ = parse_jwk(&json!({"kty": "OKP", "crv": "Ed25519", "x": x}));
            let k = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key();
            let mut good = jwk(&k, "kid");
            if let (Some(obj), Value::Object(extra)) = (good.as_object_mut(), v) {
                for (key, val) in extra {
                    obj.insert(key, val);
                }
                // Whatever was mixed in: success means the key it names is well-formed.
                if let Ok(parsed) = parse_jwk(&good) {
                    let x = public_key_text(&parsed);
                    prop_assert_eq!(good["x"].as_str(), Some(x.as_str()));
                }
            }
        }
    }
}

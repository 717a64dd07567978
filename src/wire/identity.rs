//! The node's Ed25519 identity and every signature made with it, in the reference's formats
//! (`relay/acp_relay.py`): the keypair file, the card's `identity` block and `card_sig`, the
//! `identity` block with `sig` on outbound frames, delegation entries; plus the challenge a
//! dialler holding a link with `?did=` sends, so that the host proves it holds the key now
//! (a card can be replayed by anyone who saw it; a signature over a fresh nonce cannot).
//!
//! What is signed is always the [`canonical`] text of a JSON object: the card without
//! `identity.card_sig`, the frame without `identity`, the delegation payload. The private
//! key never leaves this module: it is not logged, not served, and `Debug` does not show it.

use std::path::Path;

use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::canonical::{self, Ascii, Doc};
use super::did;

/// The domain of challenge signatures: nothing else this key signs starts with these bytes
/// (cards, frames and delegation payloads are JSON objects, starting with `{`).
const CHALLENGE_DOMAIN: &[u8] = b"acp-relay identity challenge v1\n";
/// A challenge nonce is base64url, this long at least (16 bytes of randomness) and at most.
const NONCE_LEN: std::ops::RangeInclusive<usize> = 22..=128;

/// This node's keypair and the names of its public key.
pub struct Identity {
    signing: SigningKey,
    verifying: VerifyingKey,
    public_key: String,
    did_acp: String,
    did_key: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the private key.
        f.debug_struct("Identity")
            .field("did", &self.did_acp)
            .finish_non_exhaustive()
    }
}

/// The keypair file, field for field the reference's (`_ed25519_load_or_create`).
#[derive(Serialize)]
struct KeyFile<'a> {
    scheme: &'a str,
    public_key: &'a str,
    did: &'a str,
    did_acp: &'a str,
    private_key: &'a str,
    created_at: &'a str,
}

impl Identity {
    /// A new random keypair.
    pub fn generate() -> Identity {
        Identity::from_secret(rand::random::<[u8; 32]>())
    }

    /// The keypair of a 32-byte Ed25519 secret.
    pub fn from_secret(secret: [u8; 32]) -> Identity {
        let signing = SigningKey::from_bytes(&secret);
        let verifying = signing.verifying_key();
        Identity {
            public_key: did::public_key_text(&verifying),
            did_acp: did::did_acp(&verifying),
            did_key: did::did_key(&verifying),
            signing,
            verifying,
        }
    }

    /// Loads the keypair file at `path`, or creates it (mode 0600) when it does not exist.
    /// Returns the identity and whether it was created. A file that exists but cannot be
    /// read as a keypair is an error: replacing it would silently change who this node is.
    pub fn load_or_create(path: &Path) -> Result<(Identity, bool), String> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                warn_if_readable_by_others(path);
                Identity::from_file_text(&text)
                    .map(|id| (id, false))
                    .map_err(|e| format!("identity file {}: {e}", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let id = Identity::generate();
                id.save(path)?;
                Ok((id, true))
            }
            Err(e) => Err(format!("cannot read identity file {}: {e}", path.display())),
        }
    }

    /// Reads the reference's keypair JSON (only `private_key` is needed; a `public_key` that
    /// does not belong to it means the file is damaged).
    pub fn from_file_text(text: &str) -> Result<Identity, String> {
        let v: Value =
            serde_json::from_str(text).map_err(|e| format!("not a JSON keypair file: {e}"))?;
        let secret = v
            .get("private_key")
            .and_then(Value::as_str)
            .ok_or("no private_key field")?;
        let bytes = did::b64url_decode(secret).map_err(|e| format!("private_key {e}"))?;
        let secret: [u8; 32] = match bytes.len() {
            // The seed alone (the reference), or seed ‖ public key (some other tools).
            32 | 64 => bytes[..32].try_into().unwrap_or([0; 32]),
            n => return Err(format!("private_key is {n} bytes, expected 32")),
        };
        let id = Identity::from_secret(secret);
        if bytes.len() == 64 && bytes[32..] != id.verifying.as_bytes()[..] {
            return Err("private_key's second half is not its public key".into());
        }
        if let Some(public) = v.get("public_key").and_then(Value::as_str)
            && did::parse_public_key(public).ok() != Some(id.verifying)
        {
            return Err("public_key does not belong to private_key (damaged file?)".into());
        }
        Ok(id)
    }

    /// Writes the keypair file: to a temporary file of mode 0600 first, then renamed into
    /// place, so a crash never leaves half a key behind.
    fn save(&self, path: &Path) -> Result<(), String> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::node::store::create_private_dir(dir).map_err(|e| e.message)?;
        }
        let secret = did::b64url(self.signing.as_bytes());
        let now = crate::node::ids::now_iso();
        let body = serde_json::to_string_pretty(&KeyFile {
            scheme: "ed25519",
            public_key: &self.public_key,
            did: &self.did_key,
            did_acp: &self.did_acp,
            private_key: &secret,
            created_at: &now,
        })
        .map_err(|e| e.to_string())?;
        crate::private_file::write_atomically(path, body.as_bytes())
            .map_err(|e| format!("cannot write identity file {}: {e}", path.display()))
    }

    /// The secret key's bytes: the same key is the node's iroh (QUIC) identity, so a peer
    /// dialled by its key over iroh is the node whose did that key is.
    pub fn secret_bytes(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    /// The public key, base64url.
    pub fn public_key(&self) -> &str {
        &self.public_key
    }

    /// The public key.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.verifying
    }

    /// `did:acp:…`, the node's primary did.
    pub fn did_acp(&self) -> &str {
        &self.did_acp
    }

    /// `did:key:z6Mk…`.
    pub fn did_key(&self) -> &str {
        &self.did_key
    }

    fn sign_text(&self, text: &[u8]) -> String {
        did::b64url(&self.signing.sign(text).to_bytes())
    }

    /// The card's `identity` block without its signature (the reference's fields).
    pub fn card_block(&self, delegation: &[Value]) -> Value {
        let mut block = json!({
            "scheme": "ed25519",
            "public_key": self.public_key,
            "pubkey_b64": self.public_key,
            "did": self.did_acp,
            "did_key": self.did_key,
            "did_acp": self.did_acp,
        });
        if !delegation.is_empty() {
            block["delegation"] = Value::Array(delegation.to_vec());
        }
        block
    }

    /// Signs a card in place: `identity.card_sig` over the card without it.
    pub fn sign_card(&self, card: &mut Value) {
        if let Some(id) = card.get_mut("identity").and_then(Value::as_object_mut) {
            id.remove("card_sig");
        }
        let sig = self.sign_text(canonical::from_value(card, Ascii::Keep).as_bytes());
        if let Some(obj) = card.as_object_mut() {
            let id = obj
                .entry("identity")
                .or_insert_with(|| Value::Object(Map::new()));
            if !id.is_object() {
                *id = Value::Object(Map::new());
            }
            id["card_sig"] = Value::String(sig);
        }
    }

    /// Signs an outbound frame in place: the reference's `identity` block (`did` is the
    /// did:key, as the reference puts on frames) with `sig` over the frame without it.
    pub fn sign_frame(&self, frame: &mut Map<String, Value>) {
        let text = canonical::object_without(frame, &["identity"], Ascii::Keep);
        let sig = self.sign_text(text.as_bytes());
        frame.insert(
            "identity".into(),
            json!({
                "scheme": "ed25519",
                "public_key": self.public_key,
                "pubkey_b64": self.public_key,
                "did": self.did_key,
                "sig": sig,
            }),
        );
    }

    /// The answer to a dialler's challenge: the nonce signed under the challenge domain.
    pub fn answer_challenge(&self, nonce: &str) -> Value {
        let mut msg = CHALLENGE_DOMAIN.to_vec();
        msg.extend_from_slice(nonce.as_bytes());
        json!({
            "type": "acp.challenge_response",
            "nonce": nonce,
            "public_key": self.public_key,
            "did": self.did_acp,
            "sig": did::b64url(&self.signing.sign(&msg).to_bytes()),
        })
    }

    /// A signed delegation entry, as the reference builds it (`_build_delegation_entry`):
    /// this node (the delegatee) states that `delegator` gave it `scope` until `expires_at`.
    /// The payload is ASCII-escaped canonical JSON (the reference omits `ensure_ascii=False`
    /// there), and `expires_at` is a float as the reference's `float(...)` makes it.
    pub fn delegation_entry(&self, delegator: &str, scope: &[String], expires_at: f64) -> Value {
        let mut scope = scope.to_vec();
        scope.sort();
        let payload = json!({
            "delegatee_did": self.did_acp,
            "delegator_did": delegator,
            "expires_at": expires_at,
            "scope": scope,
        });
        let sig = self.sign_text(canonical::from_value(&payload, Ascii::Escape).as_bytes());
        json!({
            "delegator_did": delegator,
            "delegatee_did": self.did_acp,
            "scope": scope,
            "expires_at": expires_at,
            "sig": sig,
            "scheme": "ed25519",
        })
    }
}

fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    if let Ok(meta) = std::fs::metadata(path)
        && std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o077 != 0
    {
        tracing::warn!(
            file = %path.display(),
            "identity file is readable by other users of this machine (it holds the private key): chmod 600 it"
        );
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// A fresh challenge nonce (32 random bytes, base64url).
pub fn new_nonce() -> String {
    did::b64url(&rand::random::<[u8; 32]>())
}

/// Whether `nonce` is one a host answers (base64url, of a sane length).
pub fn is_valid_nonce(nonce: &str) -> bool {
    NONCE_LEN.contains(&nonce.len())
        && nonce
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Checks a host's `acp.challenge_response` to our `nonce` against the key it must hold.
pub fn check_challenge(response: &Value, nonce: &str, key: &VerifyingKey) -> Result<(), String> {
    if response.get("type").and_then(Value::as_str) != Some("acp.challenge_response") {
        return Err("no answer to the identity challenge".into());
    }
    if response.get("nonce").and_then(Value::as_str) != Some(nonce) {
        return Err("the challenge answer is for another nonce (a replay?)".into());
    }
    let sig = response
        .get("sig")
        .and_then(Value::as_str)
        .ok_or("the challenge answer has no sig")?;
    let sig = parse_signature(sig)?;
    let mut msg = CHALLENGE_DOMAIN.to_vec();
    msg.extend_from_slice(nonce.as_bytes());
    key.verify(&msg, &sig)
        .map_err(|_| "the challenge answer is not signed by the expected key".to_owned())
}

/// A signature from its base64url text.
pub fn parse_signature(text: &str) -> Result<Signature, String> {
    let bytes = did::b64url_decode(text).map_err(|e| format!("signature {e}"))?;
    Signature::from_slice(&bytes)
        .map_err(|_| format!("an Ed25519 signature is 64 bytes, not {}", bytes.len()))
}

/// What checking a card's self-signature found: the reference's `_verify_agent_card` result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CardCheck {
    /// The signature checks out under the card's own key.
    pub valid: bool,
    /// The card's claimed did (`identity.did`).
    pub did: Option<String>,
    /// Whether that did names the card's key (none when the card names no did:acp/did:key).
    pub did_consistent: Option<bool>,
    /// The card's key, base64url.
    pub public_key: Option<String>,
    /// `identity.scheme` (`none` without one).
    pub scheme: String,
    /// Why the card is not valid.
    pub error: Option<String>,
    /// No `identity.card_sig` (or no identity at all): an unsigned card, which is not a
    /// forgery but proves nothing (the reference's cards without `--identity`).
    #[serde(skip)]
    pub unsigned: bool,
    /// The key, when valid.
    #[serde(skip)]
    pub key: Option<VerifyingKey>,
}

impl CardCheck {
    /// Valid, and the did (if any) is the key's own: a card to trust as this key's.
    pub fn trusted(&self) -> bool {
        self.valid && self.did_consistent != Some(false)
    }
}

/// Checks the self-signature of a card given as received text (exact numbers). `Err` means
/// the card is malformed (not an object, `identity` of the wrong type, a key or signature
/// that is not base64url of the right length): a bad request rather than a bad signature.
pub fn check_card(card: &Doc) -> Result<CardCheck, String> {
    let Doc::Obj(_) = card else {
        return Err("an AgentCard must be a JSON object".into());
    };
    let identity = match card.get("identity") {
        None | Some(Doc::Null) => None,
        Some(id @ Doc::Obj(_)) => Some(id),
        Some(_) => return Err("card identity must be an object or null".into()),
    };
    let text_field = |k: &str| -> Result<Option<String>, String> {
        match identity.and_then(|id| id.get(k)) {
            None | Some(Doc::Null) => Ok(None),
            Some(Doc::Str(s)) if s.is_empty() => Ok(None),
            Some(Doc::Str(s)) => Ok(Some(s.clone())),
            Some(_) => Err(format!("card identity.{k} must be a string")),
        }
    };
    let did = text_field("did")?;
    let scheme = text_field("scheme")?.unwrap_or_else(|| "none".into());
    let public_key = text_field("public_key")?;
    let sig = text_field("card_sig")?;
    let mut out = CardCheck {
        valid: false,
        did: did.clone(),
        did_consistent: None,
        public_key: public_key.clone(),
        scheme,
        error: None,
        unsigned: false,
        key: None,
    };
    let Some(public_key) = public_key else {
        out.error = Some("identity.public_key missing".into());
        out.unsigned = true;
        return Ok(out);
    };
    let Some(sig) = sig else {
        out.error = Some("identity.card_sig missing (unsigned card)".into());
        out.unsigned = true;
        return Ok(out);
    };
    let key = did::parse_public_key(&public_key).map_err(|e| format!("card identity.{e}"))?;
    let sig = parse_signature(&sig).map_err(|e| format!("card identity.card_sig: {e}"))?;
    let mut signable = card.clone();
    if let Some(id) = signable.get_mut("identity") {
        id.remove("card_sig");
    }
    let text = signable.canonical(Ascii::Keep);
    if key.verify(text.as_bytes(), &sig).is_err() {
        out.error = Some("signature verification failed".into());
        return Ok(out);
    }
    out.did_consistent = did.as_deref().and_then(|d| {
        if d.starts_with("did:key:") {
            Some(d == did::did_key(&key))
        } else if d.starts_with("did:acp:") {
            Some(d == did::did_acp(&key))
        } else {
            None
        }
    });
    out.valid = true;
    out.key = Some(key);
    Ok(out)
}

/// What the `identity` block of an inbound frame says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameSig {
    /// No Ed25519 identity block.
    Unsigned,
    /// A valid signature by this key.
    Valid(VerifyingKey),
    /// A signature that does not verify (or cannot be read), with the reason.
    Invalid(String),
}

/// Checks the Ed25519 `identity` block of a received frame, `text` being the frame as it
/// arrived and `frame` its parsed form. The signature covers the frame without `identity`
/// (the reference's `_ed25519_verify_msg`).
pub fn check_frame(text: &str, frame: &Map<String, Value>) -> FrameSig {
    let Some(id) = frame.get("identity").and_then(Value::as_object) else {
        return FrameSig::Unsigned;
    };
    if id.get("scheme").and_then(Value::as_str) != Some("ed25519") {
        return FrameSig::Unsigned;
    }
    let (Some(key), Some(sig)) = (
        id.get("public_key").and_then(Value::as_str),
        id.get("sig").and_then(Value::as_str),
    ) else {
        // The reference skips a block without both, and so do we.
        return FrameSig::Unsigned;
    };
    let key = match did::parse_public_key(key) {
        Ok(k) => k,
        Err(e) => return FrameSig::Invalid(format!("identity.public_key: {e}")),
    };
    let sig = match parse_signature(sig) {
        Ok(s) => s,
        Err(e) => return FrameSig::Invalid(format!("identity.sig: {e}")),
    };
    let mut doc = match Doc::parse(text) {
        Ok(d) => d,
        Err(e) => return FrameSig::Invalid(format!("frame text: {e}")),
    };
    doc.remove("identity");
    let signed = doc.canonical(Ascii::Keep);
    match key.verify(signed.as_bytes(), &sig) {
        Ok(()) => FrameSig::Valid(key),
        Err(_) => FrameSig::Invalid("Ed25519 signature does not match the frame".into()),
    }
}

/// Verifies a delegation entry (the reference's `_verify_delegation_entry`): the delegatee,
/// named by its did:acp, signed the payload. `Err` means the entry is malformed (missing
/// fields or wrong types), `Ok(false)` a well-formed entry whose signature fails.
pub fn check_delegation(entry: &Doc) -> Result<bool, String> {
    let Doc::Obj(_) = entry else {
        return Err("entry must be a JSON object".into());
    };
    let field = |k: &str| entry.get(k).ok_or_else(|| format!("entry.{k} is missing"));
    let text = |k: &str| -> Result<String, String> {
        field(k)?
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("entry.{k} must be a string"))
    };
    let delegatee = text("delegatee_did")?;
    let delegator = text("delegator_did")?;
    let sig = text("sig")?;
    let expires_at = field("expires_at")?;
    if !matches!(expires_at, Doc::Int(_) | Doc::Float(_)) {
        return Err("entry.expires_at must be a number (Unix seconds)".into());
    }
    let Doc::Arr(scope) = field("scope")? else {
        return Err("entry.scope must be a list of strings".into());
    };
    let mut scope: Vec<String> = scope
        .iter()
        .map(|s| s.as_str().map(str::to_owned))
        .collect::<Option<_>>()
        .ok_or("entry.scope must be a list of strings")?;
    scope.sort();
    let Some(b64) = delegatee.strip_prefix("did:acp:") else {
        // The reference verifies did:acp delegatees only.
        return Ok(false);
    };
    let key = did::parse_public_key(b64).map_err(|e| format!("entry.delegatee_did: {e}"))?;
    let sig = parse_signature(&sig).map_err(|e| format!("entry.sig: {e}"))?;
    let payload = Doc::Obj(vec![
        ("delegatee_did".into(), Doc::Str(delegatee)),
        ("delegator_did".into(), Doc::Str(delegator)),
        ("expires_at".into(), expires_at.clone()),
        (
            "scope".into(),
            Doc::Arr(scope.into_iter().map(Doc::Str).collect()),
        ),
    ]);
    Ok(key
        .verify(payload.canonical(Ascii::Escape).as_bytes(), &sig)
        .is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed() -> Identity {
        Identity::from_secret(std::array::from_fn(|i| i as u8))
    }

    #[test]
    fn card_sign_and_check() {
        let id = fixed();
        let mut card = json!({"name": "café", "n": 1.5, "identity": id.card_block(&[])});
        id.sign_card(&mut card);
        let doc = Doc::parse(&card.to_string()).unwrap();
        let check = check_card(&doc).unwrap();
        assert!(check.trusted(), "{check:?}");
        assert_eq!(check.did_consistent, Some(true));
        // Tampered: any change breaks it.
        card["name"] = json!("cafe");
        let check = check_card(&Doc::parse(&card.to_string()).unwrap()).unwrap();
        assert!(!check.valid);
        // Unsigned and malformed.
        let unsigned = check_card(&Doc::parse(r#"{"name":"x","identity":null}"#).unwrap()).unwrap();
        assert!(unsigned.unsigned && !unsigned.valid);
        assert!(
            check_card(
                &Doc::parse(r#"{"identity":{"public_key":"AAAA","card_sig":"AAAA"}}"#).unwrap()
            )
            .is_err()
        );
        assert!(check_card(&Doc::parse(r#"{"identity":7}"#).unwrap()).is_err());
        assert!(check_card(&Doc::parse("[]").unwrap()).is_err());
    }

    #[test]
    fn frame_sign_and_check() {
        let id = fixed();
        let mut frame = json!({"type": "acp.message", "message_id": "m1", "server_seq": 3,
                               "parts": [{"type": "text", "content": "héllo"}]});
        let map = frame.as_object_mut().unwrap();
        id.sign_frame(map);
        let text = frame.to_string();
        let parsed: Map<String, Value> = serde_json::from_str(&text).unwrap();
        assert_eq!(
            check_frame(&text, &parsed),
            FrameSig::Valid(*id.verifying_key())
        );
        let tampered = text.replace("héllo", "hello");
        let parsed: Map<String, Value> = serde_json::from_str(&tampered).unwrap();
        assert!(matches!(
            check_frame(&tampered, &parsed),
            FrameSig::Invalid(_)
        ));
        let plain = json!({"type": "acp.message"});
        assert_eq!(
            check_frame(&plain.to_string(), plain.as_object().unwrap()),
            FrameSig::Unsigned
        );
    }

    #[test]
    fn challenge_and_delegation() {
        let id = fixed();
        let nonce = new_nonce();
        assert!(is_valid_nonce(&nonce));
        let answer = id.answer_challenge(&nonce);
        assert!(check_challenge(&answer, &nonce, id.verifying_key()).is_ok());
        assert!(check_challenge(&answer, &new_nonce(), id.verifying_key()).is_err());
        let other = Identity::generate();
        assert!(check_challenge(&answer, &nonce, other.verifying_key()).is_err());

        let entry =
            id.delegation_entry("did:web:ex.org", &["send".into(), "am\u{e9}".into()], 1.8e9);
        assert_eq!(entry["expires_at"].to_string(), "1800000000.0");
        let doc = Doc::parse(&entry.to_string()).unwrap();
        assert_eq!(check_delegation(&doc), Ok(true));
        let mut bad = entry.clone();
        bad["scope"] = json!(["all"]);
        assert_eq!(
            check_delegation(&Doc::parse(&bad.to_string()).unwrap()),
            Ok(false)
        );
        bad["scope"] = json!([1]);
        assert!(check_delegation(&Doc::parse(&bad.to_string()).unwrap()).is_err());
    }

    #[test]
    fn key_file_round_trips_with_mode_0600_and_debug_hides_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("identity.json");
        let (a, created) = Identity::load_or_create(&path).unwrap();
        assert!(created);
        let (b, created) = Identity::load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(a.did_acp(), b.did_acp());
        #[cfg(unix)]
        assert_eq!(crate::private_file::mode_of(&path), 0o600);
        let file: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(file["did"], a.did_key());
        assert_eq!(file["did_acp"], a.did_acp());
        let secret = file["private_key"].as_str().unwrap();
        assert!(!format!("{a:?}").contains(secret));
        std::fs::write(&path, "{\"private_key\": 5}").unwrap();
        assert!(
            Identity::load_or_create(&path).is_err(),
            "a damaged file is not replaced"
        );
    }
}

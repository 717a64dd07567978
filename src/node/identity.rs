//! Who is who: this node's key and dids as the API shows them (did.json, jwks.json, the
//! self-check of its card), the verification of each peer's card at connect with its key
//! pinned on first verified contact (like SSH's known_hosts), the refusal of a later key
//! change until the user accepts it, the marks on inbound frames (`_ed25519_verified` /
//! `_ed25519_invalid`, as the reference sets them), and delegation entries.
//!
//! The cryptography and the wire formats are in [`crate::wire::identity`]; this file holds
//! the rules.

use serde_json::{Map, Value, json};

use super::Node;
use super::error::{ErrorCode, NodeError, NodeResult};
use super::ids::{now_iso, now_unix};
use super::peers::{KeyChange, LiveIdentity};
use super::store::WriteOp;
use crate::wire::canonical::Doc;
use crate::wire::did;
use crate::wire::identity::{self, CardCheck, FrameSig, Identity};

/// Most delegation entries a node holds.
const MAX_DELEGATIONS: usize = 256;
/// Most scope entries in one delegation, and the longest one.
const MAX_SCOPE: usize = 64;
const MAX_SCOPE_LEN: usize = 128;

/// What a peer's first frame said about its identity, checked against its pin.
#[derive(Debug, Clone)]
pub struct HandshakeIdentity {
    /// The check of its card (an unsigned card when the first frame was not a card).
    pub check: CardCheck,
    /// Whether the dialler must get proof of possession (the link names the key, or the
    /// host's card says it answers challenges, so a replayed card would not do).
    pub wants_proof: bool,
    /// The nonce a dialling peer asked us to sign (`challenge` in its card frame).
    pub challenge: Option<String>,
}

/// A key change refused for safety and waiting for the user's decision: what a consent
/// question shows ("accept the new key of X? was …, now …").
#[derive(Debug, Clone, PartialEq)]
pub struct PendingKeyChange {
    /// The peer's local id.
    pub peer_id: String,
    /// Its display name.
    pub name: String,
    /// The did pinned for it (the key it had).
    pub pinned_did: Option<String>,
    /// The did it presented instead (`None`: it presented no key).
    pub presented_did: Option<String>,
}

/// The mark a received frame gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameMark {
    /// Unsigned, or signed by a peer whose identity is unknown: no mark.
    None,
    /// Signed by the peer's verified, pinned key: `_ed25519_verified: true`.
    Verified,
    /// A wrong signature kept in `--ed25519-lenient` mode: `_ed25519_invalid: true`.
    Invalid,
}

impl FrameMark {
    /// The field the mark sets.
    pub fn field(self) -> Option<&'static str> {
        match self {
            FrameMark::None => None,
            FrameMark::Verified => Some("_ed25519_verified"),
            FrameMark::Invalid => Some("_ed25519_invalid"),
        }
    }
}

/// The card inside an `acp.agent_card` frame's text, exactly as sent, and the frame's
/// `challenge`, if any.
fn card_of_frame(text: &str) -> Result<(Doc, Option<String>), String> {
    let mut doc = Doc::parse(text).map_err(|e| format!("card frame: {e}"))?;
    let challenge = doc
        .get("challenge")
        .and_then(Doc::as_str)
        .map(str::to_owned);
    let card = doc.remove("card").unwrap_or(Doc::Null);
    Ok((card, challenge))
}

/// An unsigned card's check (a first frame that was not a card).
fn no_card() -> CardCheck {
    CardCheck {
        valid: false,
        did: None,
        did_consistent: None,
        public_key: None,
        scheme: "none".into(),
        error: Some("the peer sent no card".into()),
        unsigned: true,
        key: None,
    }
}

impl Node {
    /// This node's keypair.
    pub fn identity(&self) -> &Identity {
        &self.inner.identity
    }

    /// The identity part of `/status`.
    pub(crate) fn identity_status(&self) -> Value {
        let id = &self.inner.identity;
        json!({
            "did": id.did_acp(),
            "did_key": id.did_key(),
            "public_key": id.public_key(),
            "scheme": "ed25519",
            "sign_frames": self.inner.config.sign_frames,
            "delegations": self.lock_delegation().len(),
        })
    }

    /// Each known peer's did and whether it is verified (for the card document and MCP).
    pub(crate) fn peer_identity_summary(&self) -> Value {
        let peers = self.lock_peers();
        Value::Array(
            peers
                .active()
                .map(|p| {
                    json!({
                        "peer_id": p.record.id,
                        "name": p.record.name,
                        "connected": p.connected,
                        "did": p.did(),
                        "verified": p.verified(),
                        "proven": p.connected && p.identity.proven,
                        "key_change": p.record.key_change.is_some(),
                    })
                })
                .collect(),
        )
    }

    fn lock_delegation(&self) -> std::sync::MutexGuard<'_, Vec<Value>> {
        self.inner
            .delegation
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// `/.well-known/did.json`: the W3C DID document of this node, the reference's shape
    /// (did:key primary, did:acp as `alsoKnownAs`, the ACPRelay service at our link).
    pub fn did_document(&self) -> Value {
        let id = &self.inner.identity;
        let primary = id.did_key();
        json!({
            "@context": [
                "https://www.w3.org/ns/did/v1",
                "https://w3id.org/security/suites/ed25519-2020/v1",
            ],
            "id": primary,
            "alsoKnownAs": [id.did_acp()],
            "verificationMethod": [{
                "id": format!("{primary}#key-1"),
                "type": "Ed25519VerificationKey2020",
                "controller": primary,
                "publicKeyMultibase": format!("z{}", did::multibase_body(id.verifying_key())),
            }],
            "authentication": [format!("{primary}#key-1")],
            "assertionMethod": [format!("{primary}#key-1")],
            "service": [{
                "id": format!("{primary}#acp"),
                "type": "ACPRelay",
                "serviceEndpoint": self.link(),
            }],
        })
    }

    /// `/.well-known/jwks.json`: the public key as a JWK Set (the reference's `kid`).
    pub fn jwks(&self) -> Value {
        let id = &self.inner.identity;
        let prefix: String = id.public_key().chars().take(8).collect();
        json!({"keys": [did::jwk(id.verifying_key(), &format!("{}:{prefix}", self.name()))]})
    }

    /// `GET /verify/card`: this node's own card, signed and checked.
    pub fn self_verification(&self) -> Value {
        let text = self.card().to_string();
        let check = Doc::parse(&text)
            .map_err(|e| e.to_string())
            .and_then(|d| identity::check_card(&d));
        json!({"self_verification": check.ok(), "card_signed": true})
    }

    /// `POST /verify/card`: checks any card (or `{"self": card}`) given as text. A malformed
    /// card is a 400; a well-formed one answers `valid: true/false` as the reference does.
    pub fn verify_card_text(&self, body: &str) -> NodeResult<Value> {
        let doc = Doc::parse(body)
            .map_err(|e| NodeError::invalid(format!("Invalid JSON in request body: {e}")))?;
        let card = match doc.get("self") {
            Some(card @ Doc::Obj(_)) => card,
            _ if doc.get("name").is_some() || doc.get("identity").is_some() => &doc,
            _ => {
                return Err(NodeError::invalid(
                    "expected AgentCard JSON or {\"self\": card}",
                ));
            }
        };
        let check = identity::check_card(card).map_err(NodeError::invalid)?;
        Ok(serde_json::to_value(&check).unwrap_or_default())
    }

    /// `GET /peer/verify`: the check of a peer's card made at connect (the first connected
    /// peer, or the one named), with its pin.
    pub fn peer_verification(&self, key: Option<&str>) -> NodeResult<Value> {
        let peers = self.lock_peers();
        let peer = match key {
            Some(k) => peers
                .resolve(k)
                .filter(|p| !p.record.removed)
                .ok_or_else(|| NodeError::not_found(format!("peer '{k}' not found")))?,
            None => peers
                .active()
                .find(|p| p.connected && p.identity.card.is_some())
                .ok_or_else(|| NodeError::not_found("no peer connected"))?,
        };
        let check = peer.identity.card.clone().unwrap_or_else(no_card);
        Ok(json!({
            "peer_name": peer.record.agent_name,
            "peer_did": check.did,
            "verified": check.valid,
            "valid": if check.unsigned { Value::Null } else { json!(check.valid) },
            "did_consistent": check.did_consistent,
            "public_key": check.public_key,
            "scheme": check.scheme,
            "error": check.error,
            "peer_id": peer.record.id,
            "connected": peer.connected,
            "identity": peer.identity_json(),
        }))
    }

    /// `POST /identity/delegate`: a signed entry stating that `delegator_did` delegated
    /// `scope` to this node until `expires_at` (replacing an earlier entry of the same
    /// delegator), kept across restarts and shown in the card.
    pub fn delegate(&self, body: &Value) -> NodeResult<Value> {
        let obj = body
            .as_object()
            .ok_or_else(|| NodeError::invalid("request body must be a JSON object"))?;
        let delegator = match obj.get("delegator_did") {
            Some(Value::String(s)) if did::is_did_syntax(s) => s.clone(),
            Some(Value::String(s)) => {
                return Err(NodeError::invalid(format!(
                    "delegator_did must be a valid DID (did:<method>:<id>), got {}",
                    did::short(s)
                )));
            }
            None | Some(Value::Null) => {
                return Err(NodeError::invalid("missing required field: delegator_did"));
            }
            Some(_) => return Err(NodeError::invalid("delegator_did must be a string")),
        };
        let scope: Vec<String> = match obj.get("scope") {
            None | Some(Value::Null) => vec!["send".into(), "receive".into()],
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .filter(|s| s.len() <= MAX_SCOPE && s.iter().all(|x| x.len() <= MAX_SCOPE_LEN))
                .ok_or_else(|| {
                    NodeError::invalid(format!(
                        "scope must be a list of at most {MAX_SCOPE} strings of at most {MAX_SCOPE_LEN} characters"
                    ))
                })?,
            Some(_) => return Err(NodeError::invalid("scope must be a list of strings")),
        };
        let expires_at = match obj.get("expires_at") {
            None | Some(Value::Null) => now_unix() + 86_400.0,
            Some(v) => v
                .as_f64()
                .filter(|x| x.is_finite())
                .ok_or_else(|| NodeError::invalid("expires_at must be a number (Unix seconds)"))?,
        };
        let entry = self
            .inner
            .identity
            .delegation_entry(&delegator, &scope, expires_at);
        let (chain, size) = {
            let mut chain = self.lock_delegation();
            chain.retain(|e| e.get("delegator_did").and_then(Value::as_str) != Some(&delegator));
            if chain.len() >= MAX_DELEGATIONS {
                return Err(NodeError::new(
                    ErrorCode::QueueFull,
                    format!("this node already holds {MAX_DELEGATIONS} delegations"),
                ));
            }
            chain.push(entry.clone());
            (chain.clone(), chain.len())
        };
        self.inner.store.write(WriteOp::SetMeta {
            key: "delegation_chain".into(),
            value: serde_json::to_string(&chain).unwrap_or_default(),
        });
        if let Ok(mut card) = self.inner.card.write() {
            card.identity = self.inner.identity.card_block(&chain);
        }
        tracing::info!(delegator = %delegator, ?scope, "delegation added");
        Ok(json!({"ok": true, "entry": entry, "delegation_chain_size": size}))
    }

    /// `GET /identity/delegation`: the entries, each marked `expired`.
    pub fn delegation_status(&self) -> Value {
        let now = now_unix();
        let entries: Vec<Value> = self
            .lock_delegation()
            .iter()
            .map(|e| {
                let mut e = e.clone();
                let expired = e["expires_at"].as_f64().unwrap_or(0.0) < now;
                e["expired"] = json!(expired);
                e
            })
            .collect();
        let has_valid = entries.iter().any(|e| e["expired"] == false);
        json!({
            "ok": true,
            "did": self.inner.identity.did_acp(),
            "chain": {"count": entries.len(), "entries": entries, "has_valid": has_valid},
        })
    }

    /// `POST /identity/delegation/verify` `{"entry": …}` given as text (exact numbers).
    pub fn verify_delegation_text(&self, body: &str) -> NodeResult<Value> {
        let doc = Doc::parse(body)
            .map_err(|e| NodeError::invalid(format!("Invalid JSON in request body: {e}")))?;
        let entry = match doc.get("entry") {
            Some(e @ Doc::Obj(fields)) if !fields.is_empty() => e,
            _ => {
                return Err(NodeError::invalid(
                    "entry required (a delegation entry object)",
                ));
            }
        };
        let valid = identity::check_delegation(entry).map_err(NodeError::invalid)?;
        let value: Value = serde_json::from_str(body).unwrap_or_default();
        let entry = value.get("entry").cloned().unwrap_or(Value::Null);
        let expired = entry
            .get("expires_at")
            .and_then(Value::as_f64)
            .is_some_and(|t| t < now_unix());
        Ok(json!({"ok": true, "valid": valid, "expired": expired, "entry": entry}))
    }

    /// Accepts the key a peer presented in place of its pinned one (`POST
    /// /peers/{id}/accept-key`, MCP `acp_connect` with `accept_new_key`). `expected` names
    /// the key the user checked (a did, a base64url key or a JWK): when given, it must be
    /// the one presented, so a third key cannot slip in between showing and accepting.
    pub fn accept_peer_key(&self, key: &str, expected: Option<&Value>) -> NodeResult<Value> {
        let expected = match expected {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.starts_with("did:") => {
                Some(did::parse_did(s).map_err(NodeError::invalid)?)
            }
            Some(Value::String(s)) => Some(did::parse_public_key(s).map_err(NodeError::invalid)?),
            Some(v @ Value::Object(_)) => Some(did::parse_jwk(v).map_err(NodeError::invalid)?),
            Some(_) => {
                return Err(NodeError::invalid(
                    "the expected key must be a did, a base64url public key or a JWK",
                ));
            }
        };
        let expected_text = expected.as_ref().map(did::public_key_text);
        let (id, dialed, pinned) = {
            let mut peers = self.lock_peers();
            let peer = peers
                .resolve_mut(key)
                .filter(|p| !p.record.removed)
                .ok_or_else(|| NodeError::not_found(format!("peer '{key}' not found")))?;
            let Some(change) = peer.record.key_change.clone() else {
                if expected_text.is_some() && expected_text == peer.record.pinned_key {
                    return Ok(
                        json!({"ok": true, "peer_id": peer.record.id, "changed": false,
                                     "pinned_did": peer.did()}),
                    );
                }
                return Err(NodeError::invalid(format!(
                    "peer '{key}' has no refused key waiting to be accepted"
                )));
            };
            if let Some(want) = &expected_text
                && change.presented_key.as_ref() != Some(want)
            {
                return Err(NodeError::new(
                    ErrorCode::KeyMismatch,
                    format!(
                        "the key peer '{key}' presented is {}, not the one given",
                        change
                            .presented_key
                            .as_deref()
                            .map_or_else(|| "none".to_owned(), |k| format!("did:acp:{k}"))
                    ),
                ));
            }
            peer.record.pinned_key = change.presented_key.clone();
            peer.record.pinned_at = Some(now_iso());
            peer.record.key_change = None;
            peer.last_error = None;
            peer.attempts = 0;
            (
                peer.record.id.clone(),
                peer.record.dialed,
                peer.record.pinned_key.clone(),
            )
        };
        self.persist_peer(&id);
        let pinned_did = pinned.as_deref().map(|k| format!("did:acp:{k}"));
        tracing::warn!(peer = %id, did = pinned_did.as_deref().unwrap_or("none"), "new peer key accepted by the user");
        let mut ev = Map::new();
        ev.insert("event".into(), json!("key_accepted"));
        ev.insert("peer_id".into(), json!(id));
        ev.insert("did".into(), json!(pinned_did));
        self.inner.events.emit("peer", ev);
        if dialed {
            self.start_dialing(&id);
        }
        Ok(json!({"ok": true, "peer_id": id, "changed": true, "pinned_did": pinned_did}))
    }

    /// The refused key change waiting on the peer at this link (or with this id or name),
    /// if there is one.
    pub fn pending_key_change(&self, link_or_peer: &str) -> Option<PendingKeyChange> {
        let peers = self.lock_peers();
        let peer = match crate::wire::link::Link::parse(link_or_peer) {
            Ok(link) => {
                let canonical = link.to_string();
                peers
                    .active()
                    .find(|p| p.record.link.as_deref() == Some(canonical.as_str()))
            }
            Err(_) => peers.resolve(link_or_peer).filter(|p| !p.record.removed),
        }?;
        let change = peer.record.key_change.as_ref()?;
        let as_did = |k: &String| format!("did:acp:{k}");
        Some(PendingKeyChange {
            peer_id: peer.record.id.clone(),
            name: peer.record.name.clone(),
            pinned_did: peer.record.pinned_key.as_ref().map(as_did),
            presented_did: change.presented_key.as_ref().map(as_did),
        })
    }

    /// For `connect` with `accept_new_key`: accepts the refused key of the peer at this
    /// link, if one is waiting (nothing to do otherwise).
    /// A host that did not prove the key its link names is dialled without it from now on
    /// ([`super::link_key`]).
    pub fn accept_key_of_link(&self, link_text: &str) -> NodeResult<()> {
        let link = crate::wire::link::Link::parse(link_text).map_err(NodeError::invalid)?;
        if let Some(pending) = self.pending_link_key(link_text) {
            return self.waive_link_key(&pending.peer_id);
        }
        let canonical = link.to_string();
        let waiting = self
            .lock_peers()
            .active()
            .find(|p| p.record.link.as_deref() == Some(canonical.as_str()))
            .filter(|p| p.record.key_change.is_some())
            .map(|p| p.record.id.clone());
        if let Some(id) = waiting {
            self.accept_peer_key(&id, None)?;
        }
        Ok(())
    }

    /// Checks the identity a dialling peer's first frame presents, before it is admitted.
    /// Its entry (if it has one) is found by agent name, as [`Node::register_inbound`]
    /// binds it. Refused: a card with a bad signature, or a key other than the pinned one.
    pub fn inbound_identity(
        &self,
        agent_name: Option<&str>,
        first: &str,
        is_card: bool,
    ) -> NodeResult<HandshakeIdentity> {
        let (check, challenge) = if is_card {
            let (card, challenge) = card_of_frame(first).map_err(NodeError::invalid)?;
            (self.check_presented(&card)?, challenge)
        } else {
            (no_card(), None)
        };
        let entry = agent_name.and_then(|name| {
            self.lock_peers()
                .active()
                .find(|p| !p.record.dialed && p.record.agent_name.as_deref() == Some(name))
                .map(|p| p.record.id.clone())
        });
        if let Some(id) = &entry {
            self.gate_key(id, &check)?;
        }
        Ok(HandshakeIdentity {
            check,
            wants_proof: false,
            challenge: challenge.filter(|n| identity::is_valid_nonce(n)),
        })
    }

    /// Checks the identity the host we dialled presents in its first frame: its card's
    /// signature, the key the link names (if any), the pinned key.
    pub fn dialled_identity(
        &self,
        peer_id: &str,
        link_did: Option<&str>,
        first: &str,
        is_card: bool,
    ) -> NodeResult<HandshakeIdentity> {
        let (check, wants_proof) = if is_card {
            let (card, _) = card_of_frame(first).map_err(NodeError::invalid)?;
            let answers = matches!(
                card.get("capabilities")
                    .and_then(|c| c.get("identity_challenge")),
                Some(Doc::Bool(true))
            );
            (self.check_presented(&card)?, answers)
        } else {
            (no_card(), false)
        };
        let link_did = self.link_key_in_force(peer_id, link_did);
        if let Some(want) = link_did {
            let named = check.key.as_ref().map(did::did_acp);
            if named.as_deref() != Some(want) {
                let msg = format!(
                    "the host's key is not the one its link names: the link says {want}, the host presented {}; {}",
                    named.as_deref().unwrap_or("no signed card"),
                    super::link_key::WAIVE_HINT
                );
                let refusal = super::link_key::LinkKeyRefusal {
                    named_did: want.to_owned(),
                    presented_did: named,
                    unproven: false,
                };
                self.note_link_key_refusal(peer_id, refusal, &msg);
                return Err(NodeError::new(ErrorCode::KeyMismatch, msg));
            }
        }
        self.gate_key(peer_id, &check)?;
        Ok(HandshakeIdentity {
            check,
            wants_proof: wants_proof || link_did.is_some(),
            challenge: None,
        })
    }

    /// A card's check, refused when it is signed but the signature or its did is wrong.
    fn check_presented(&self, card: &Doc) -> NodeResult<CardCheck> {
        if matches!(card, Doc::Null) {
            return Ok(no_card());
        }
        let check = identity::check_card(card)
            .map_err(|e| NodeError::new(ErrorCode::InvalidSignature, e))?;
        if !check.unsigned && !check.trusted() {
            let why = if check.valid {
                "its did does not name its key".to_owned()
            } else {
                check.error.clone().unwrap_or_default()
            };
            return Err(NodeError::new(
                ErrorCode::InvalidSignature,
                format!("the peer's card signature is invalid: {why}"),
            ));
        }
        Ok(check)
    }

    fn note_identity_refusal(&self, peer_id: &str, msg: &str) {
        if let Some(p) = self.lock_peers().peers.get_mut(peer_id) {
            p.last_error = Some(msg.to_owned());
        }
    }

    /// Compares a presented key with the peer's pin. A difference (another key, or none
    /// where one is pinned) is recorded for the user, logged and announced, and refused.
    fn gate_key(&self, peer_id: &str, check: &CardCheck) -> NodeResult<()> {
        let presented = check.key.as_ref().map(did::public_key_text);
        let (pinned, name, fresh) = {
            let mut peers = self.lock_peers();
            let Some(peer) = peers.peers.get_mut(peer_id) else {
                return Ok(());
            };
            let Some(pinned) = peer.record.pinned_key.clone() else {
                return Ok(());
            };
            if presented.as_ref() == Some(&pinned) {
                return Ok(());
            }
            let fresh = peer
                .record
                .key_change
                .as_ref()
                .is_none_or(|c| c.presented_key != presented);
            peer.record.key_change = Some(KeyChange {
                presented_key: presented.clone(),
                seen_at: now_iso(),
            });
            (pinned, peer.record.name.clone(), fresh)
        };
        let presented_did = presented
            .as_deref()
            .map_or_else(|| "no key".to_owned(), |k| format!("did:acp:{k}"));
        let msg = format!(
            "peer '{name}' presented another key ({presented_did}) than the one pinned for it \
             (did:acp:{pinned}): refused. If the peer really changed its key, accept it: \
             POST /peers/{peer_id}/accept-key (MCP: acp_connect with accept_new_key)"
        );
        self.note_identity_refusal(peer_id, &msg);
        self.persist_peer(peer_id);
        if fresh {
            tracing::warn!(peer = %peer_id, pinned = %format!("did:acp:{pinned}"), presented = %presented_did, "{msg}");
            let mut ev = Map::new();
            ev.insert("event".into(), json!("key_mismatch"));
            ev.insert("peer_id".into(), json!(peer_id));
            ev.insert("pinned_did".into(), json!(format!("did:acp:{pinned}")));
            ev.insert(
                "presented_did".into(),
                json!(presented.map(|k| format!("did:acp:{k}"))),
            );
            self.inner.events.emit("peer", ev);
        } else {
            tracing::debug!(peer = %peer_id, "{msg}");
        }
        Err(NodeError::new(ErrorCode::KeyMismatch, msg))
    }

    /// Records who a connected peer proved to be, and pins its key on the first verified
    /// contact.
    pub fn bind_identity(&self, peer_id: &str, hs: &HandshakeIdentity, proven: bool) {
        let pinned_now = {
            let mut peers = self.lock_peers();
            let Some(peer) = peers.peers.get_mut(peer_id) else {
                return;
            };
            peer.identity = LiveIdentity {
                key: hs.check.key,
                proven: proven && hs.check.key.is_some(),
                card: Some(hs.check.clone()),
            };
            match (&hs.check.key, &peer.record.pinned_key) {
                (Some(k), None) => {
                    peer.record.pinned_key = Some(did::public_key_text(k));
                    peer.record.pinned_at = Some(now_iso());
                    Some(did::did_acp(k))
                }
                _ => None,
            }
        };
        if let Some(d) = pinned_now {
            tracing::info!(peer = %peer_id, did = %d, proven, "peer key pinned on first verified contact");
            self.persist_peer(peer_id);
            let mut ev = Map::new();
            ev.insert("event".into(), json!("key_pinned"));
            ev.insert("peer_id".into(), json!(peer_id));
            ev.insert("did".into(), json!(d));
            self.inner.events.emit("peer", ev);
        }
    }

    /// A card frame during a session (a peer's card update): verified like at connect; a
    /// bad signature or another key closes the connection.
    pub(crate) fn recheck_card(&self, peer_id: &str, text: &str) -> bool {
        let result = card_of_frame(text)
            .map_err(NodeError::invalid)
            .and_then(|(card, _)| self.check_presented(&card))
            .and_then(|check| self.gate_key(peer_id, &check).map(|()| check));
        match result {
            Ok(check) => {
                let mut peers = self.lock_peers();
                if let Some(p) = peers.peers.get_mut(peer_id) {
                    if p.identity.key.is_some() && check.key != p.identity.key {
                        // Signed card → unsigned card on the same connection: not a
                        // change of key the pin would catch (none was pinned yet).
                        p.identity.proven = false;
                    }
                    p.identity.key = check.key;
                    p.identity.card = Some(check);
                }
                true
            }
            Err(e) => {
                tracing::warn!(peer = %peer_id, "closing the connection: {}", e.message);
                let mut peers = self.lock_peers();
                if let Some(p) = peers.peers.get_mut(peer_id) {
                    p.last_error = Some(e.message.clone());
                    p.outbox = None;
                }
                false
            }
        }
    }

    /// The Ed25519 mark a received frame gets, or why it is refused: a wrong signature
    /// (kept, marked, with `--ed25519-lenient`), or a valid one by a key other than the
    /// peer's verified key (someone else's frame).
    pub(crate) fn ed25519_mark(
        &self,
        peer_id: &str,
        text: &str,
        frame: &Map<String, Value>,
    ) -> Result<FrameMark, String> {
        match identity::check_frame(text, frame) {
            FrameSig::Unsigned => Ok(FrameMark::None),
            FrameSig::Valid(key) => {
                let peers = self.lock_peers();
                let peer = peers.peers.get(peer_id);
                match peer.and_then(|p| p.identity.key) {
                    Some(k) if k == key && peer.is_some_and(|p| p.verified()) => {
                        Ok(FrameMark::Verified)
                    }
                    Some(k) if k != key => Err(format!(
                        "frame signed by {}, which is not the peer's key ({})",
                        did::did_acp(&key),
                        did::did_acp(&k)
                    )),
                    // The peer proved no key: the signature attributes the frame to nobody.
                    _ => Ok(FrameMark::None),
                }
            }
            FrameSig::Invalid(why) if self.inner.config.ed25519_lenient => {
                tracing::warn!(
                    peer = peer_id,
                    "Ed25519 signature invalid, kept (lenient): {why}"
                );
                Ok(FrameMark::Invalid)
            }
            FrameSig::Invalid(why) => Err(format!("Ed25519 signature invalid: {why}")),
        }
    }
}

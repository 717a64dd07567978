//! The AgentCard: what this node tells peers and clients about itself. The JSON shape is the
//! reference's (`_make_agent_card`), so reference peers and SDKs read it unchanged; the
//! capability flags are honest about what this node does.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::error::{NodeError, NodeResult};
use super::ids::now_iso;

/// Protocol version we are wire-compatible with (the reference relay's release).
pub const ACP_VERSION: &str = "2.19.0";

/// Modes the reference accepts for `availability.mode`.
const AVAILABILITY_MODES: [&str; 4] = ["persistent", "heartbeat", "cron", "manual"];
/// Fields the reference accepts inside `availability`.
const AVAILABILITY_FIELDS: [&str; 7] = [
    "mode",
    "interval_seconds",
    "next_active_at",
    "last_active_at",
    "task_latency_max_seconds",
    "schedule",
    "timezone",
];

/// The parts of the card a user can change at run time; persisted in the store.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CardEdits {
    /// Free-text description (default: the reference's "ACP P2P Agent: <name>").
    #[serde(default)]
    pub description: Option<String>,
    /// Structured skills (`{id, name, description, tags, examples, input_modes, output_modes}`).
    #[serde(default)]
    pub skills: Option<Vec<Value>>,
    /// What this agent cannot do.
    #[serde(default)]
    pub limitations: Option<Vec<String>>,
    /// Availability block (empty = always available).
    #[serde(default)]
    pub availability: Map<String, Value>,
    /// Extensions registered at run time (`POST /extensions/register`): `{uri, required,
    /// params?}` in registration order.
    #[serde(default)]
    pub extensions: Vec<Value>,
}

/// Everything the card is built from.
#[derive(Debug, Clone)]
pub struct Card {
    /// Agent name.
    pub name: String,
    /// HTTP port the node serves on (reference field).
    pub http_port: u16,
    /// Largest message in bytes.
    pub max_msg_bytes: usize,
    /// Whether HMAC signing is on.
    pub hmac: bool,
    /// Whether the HTTP API needs a bearer token (`--api-token`), so that a client reading
    /// the card knows to send one.
    pub bearer_auth: bool,
    /// Skills from `--skills`.
    pub base_skills: Vec<String>,
    /// Run-time edits.
    pub edits: CardEdits,
    /// The card's `identity` block (key, dids, delegation entries), without `card_sig`: the
    /// node signs the whole card each time it is built.
    pub identity: Value,
    /// Whether outbound frames are Ed25519-signed.
    pub sign_frames: bool,
    /// HMAC replay window, seconds (a trust signal).
    pub hmac_window: u64,
    /// When the node started (`2026-12-07T17:00:00Z`): the availability block's
    /// `last_active_at` until a heartbeat stamps one, as in the reference.
    pub started_at: String,
}

/// Normalizes one skill (a string or an object) to the reference's structured form.
pub fn normalize_skill(s: &Value) -> Value {
    match s {
        Value::Object(o) => {
            let id = o
                .get("id")
                .or_else(|| o.get("name"))
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                .unwrap_or_else(|| "unknown".into());
            let list = |k: &str| {
                o.get(k)
                    .filter(|v| v.is_array())
                    .cloned()
                    .unwrap_or(json!([]))
            };
            json!({
                "id": id.trim(),
                "name": o.get("name").and_then(Value::as_str).unwrap_or(&id),
                "description": o.get("description").cloned().unwrap_or(json!("")),
                "tags": list("tags"),
                "examples": list("examples"),
                "input_modes": list("input_modes"),
                "output_modes": list("output_modes"),
            })
        }
        other => {
            let id = other
                .as_str()
                .map_or_else(|| other.to_string(), str::to_owned);
            let id = id.trim();
            json!({"id": id, "name": id, "description": "", "tags": [], "examples": [],
                   "input_modes": [], "output_modes": []})
        }
    }
}

impl Card {
    /// The structured skills currently advertised.
    pub fn skills(&self) -> Vec<Value> {
        match &self.edits.skills {
            Some(list) => list.iter().map(normalize_skill).collect(),
            None => self
                .base_skills
                .iter()
                .map(|s| normalize_skill(&json!(s)))
                .collect(),
        }
    }

    /// The availability block as peers see it, or `None` when the agent is always
    /// available: the stored block, with `last_active_at` (the node's start until a
    /// heartbeat) and, for a `schedule`, the `next_active_at` it gives when none is set or
    /// the one set has passed.
    pub fn availability(&self) -> Option<Value> {
        if self.edits.availability.is_empty() {
            return None;
        }
        let mut block = self.edits.availability.clone();
        if !block.contains_key("last_active_at") {
            block.insert("last_active_at".into(), json!(self.started_at));
        }
        // A time already past says nothing about the next wake: a schedule gives a fresh one
        // (the reference only fills in a missing one).
        let now = chrono::Utc::now();
        let stale = block.get("next_active_at").is_none_or(|v| {
            v.as_str()
                .and_then(super::ids::parse_iso)
                .is_none_or(|t| t < now.timestamp() as f64)
        });
        if stale && let Some(next) = next_from_schedule(&block, now) {
            block.insert("next_active_at".into(), json!(next));
        }
        Some(Value::Object(block))
    }

    /// Whether the availability block has a (non-empty) cron `schedule`.
    fn has_schedule(&self) -> bool {
        self.edits
            .availability
            .get("schedule")
            .is_some_and(|s| s.as_str().is_some_and(|s| !s.trim().is_empty()))
    }

    /// The `extensions` block: the built-in ones this node's set-up implies (as the
    /// reference: `acp:ext:hmac-v1` with `--secret`), then the registered ones; one entry
    /// per URI, the first wins.
    pub fn extensions(&self) -> Vec<Value> {
        let mut builtin = Vec::new();
        if self.hmac {
            builtin.push(json!({
                "uri": "acp:ext:hmac-v1",
                "required": false,
                "params": {"scheme": "hmac-sha256"},
            }));
        }
        let mut seen = std::collections::HashSet::new();
        builtin
            .into_iter()
            .chain(self.edits.extensions.iter().cloned())
            .filter(|e| {
                e.get("uri")
                    .and_then(Value::as_str)
                    .is_some_and(|u| seen.insert(u.to_owned()))
            })
            .collect()
    }

    /// `POST /availability/heartbeat`: stamps `last_active_at` now, merges the fields the
    /// body gives (the reference's list; checked like a PATCH), and for a `schedule`
    /// computes `next_active_at` afresh (a heartbeat starts a new cycle).
    pub fn heartbeat(&mut self, body: &Value) -> NodeResult<()> {
        let Some(patch) = body.as_object() else {
            return Err(NodeError::invalid("request body must be a JSON object"));
        };
        if patch.contains_key("last_active_at") {
            return Err(NodeError::invalid(
                "'last_active_at' is stamped by the heartbeat itself; leave it out",
            ));
        }
        let mut block = self.edits.availability.clone();
        merge_availability(&mut block, patch)?;
        let now = chrono::Utc::now();
        block.insert("last_active_at".into(), json!(now_iso()));
        if let Some(next) = next_from_schedule(&block, now) {
            block.insert("next_active_at".into(), json!(next));
        }
        self.edits.availability = block;
        Ok(())
    }

    /// The full card JSON.
    pub fn to_json(&self) -> Value {
        let mut card = json!({
            "name": self.name,
            "version": crate::VERSION,
            "acp_version": ACP_VERSION,
            "implementation": "acp-relay (Rust)",
            "description": self.edits.description.clone()
                .unwrap_or_else(|| format!("ACP P2P Agent: {}", self.name)),
            "http_port": self.http_port,
            "timestamp": now_iso(),
            "transport_modes": ["p2p"],
            "supported_interfaces": ["core", "identity", "p2p", "stream", "task"],
            "limitations": self.edits.limitations.clone().unwrap_or_default(),
            "skills": self.skills(),
            "capabilities": {
                "streaming": true,
                "push_notifications": true,
                "input_required": true,
                "part_types": ["text", "file", "data"],
                "max_msg_bytes": self.max_msg_bytes,
                "query_skill": true,
                "server_seq": true,
                "multi_session": true,
                "hmac_signing": self.hmac,
                "lan_discovery": false,
                "context_id": true,
                "error_codes": true,
                "identity": "ed25519",
                "did_identity": true,
                "availability": self.availability().is_some(),
                "extensions": !self.edits.extensions.is_empty(),
                "http2": false,
                "card_sig": true,
                "auto_card_verify": true,
                "offline_queue": true,
                "lan_port_scan": false,
                "supported_transports": ["http", "ws"],
                "sse_seq": true,
                "task_cancelling": true,
                "ws_stream": true,
                "event_replay": true,
                "trust_signals": true,
                "context_query": true,
                "delegation_chain": self.delegation_count() > 0,
                "availability_schedule": self.has_schedule(),
                "trust_jwks": true,
                "durable_store": true,
                "delivery_ack": true,
                // acp-relay's own: a dialler may challenge this node to prove its key, and
                // its frames carry Ed25519 signatures unless turned off.
                "identity_challenge": true,
                "frame_signatures": self.sign_frames,
                "key_pinning": true,
            },
            "identity": self.identity,
            "trust": {
                "scheme": if self.hmac { "hmac-sha256" } else { "none" },
                "enabled": self.hmac,
                "signals": self.trust_signals(),
            },
            "auth": {"schemes": [if self.bearer_auth { "bearer" } else { "none" }]},
            "endpoints": {
                "send": "/message:send",
                "stream": "/stream",
                "ws_stream": "/ws/stream",
                "messages_stream": "/messages:stream",
                "tasks": "/tasks",
                "agent_card": "/.well-known/acp.json",
                "did_document": "/.well-known/did.json",
                "skills_query": "/skills/query",
                "skills": "/skills",
                "peers": "/peers",
                "peer_send": "/peer/{id}/send",
                "peers_connect": "/peers/connect",
                "offline_queue": "/offline-queue",
                "verify_card": "/verify/card",
                "peer_verify": "/peer/verify",
                "delegate": "/identity/delegate",
                "delegation": "/identity/delegation",
                "delegation_verify": "/identity/delegation/verify",
                "availability": "/availability",
                "heartbeat": "/availability/heartbeat",
                "extensions": "/extensions",
                "webhooks": "/webhooks",
                "jwks": "/.well-known/jwks.json",
            },
            "extensions": self.extensions(),
        });
        if let (Some(avail), Some(obj)) = (self.availability(), card.as_object_mut()) {
            obj.insert("availability".into(), avail);
        }
        card
    }

    fn delegation_count(&self) -> usize {
        self.identity
            .get("delegation")
            .and_then(Value::as_array)
            .map_or(0, Vec::len)
    }

    /// `trust.signals`: the reference's list of trust evidence (A2A #1628), each honest
    /// about this node.
    fn trust_signals(&self) -> Value {
        let did_acp = self.identity.get("did_acp").cloned().unwrap_or(Value::Null);
        let did_key = self.identity.get("did_key").cloned().unwrap_or(Value::Null);
        json!([
            {
                "type": "hmac_message_signing",
                "enabled": self.hmac,
                "description": "HMAC-SHA256 message signing with a shared secret (--secret): each frame carries `sig`.",
                "details": if self.hmac { json!({"algorithm": "hmac-sha256"}) } else { json!({}) },
            },
            {
                "type": "ed25519_identity",
                "enabled": true,
                "description": "Ed25519 keypair with a self-sovereign DID, generated locally and kept in the node's data dir.",
                "details": {"scheme": "ed25519", "did_acp": did_acp, "did": did_key},
            },
            {
                "type": "agent_card_signature",
                "enabled": true,
                "description": "The AgentCard is self-signed with the node's Ed25519 key; anyone can verify it without a CA.",
                "details": {"algorithm": "ed25519", "field": "identity.card_sig"},
            },
            {
                "type": "peer_card_verification",
                "enabled": true,
                "description": "Peers' AgentCards are verified on connection and their keys pinned; result at GET /peer/verify.",
                "details": {"endpoint": "/peer/verify"},
            },
            {
                "type": "replay_window",
                "enabled": self.hmac,
                "description": "HMAC-signed frames outside the replay window are refused.",
                "details": if self.hmac { json!({"window_seconds": self.hmac_window}) } else { json!({}) },
            },
            {
                "type": "did_document",
                "enabled": true,
                "description": "W3C DID Document at /.well-known/did.json (Ed25519VerificationKey2020 and the ACPRelay service).",
                "details": {"endpoint": "/.well-known/did.json", "did": did_acp},
            },
            {
                "type": "jwks",
                "enabled": true,
                "description": "The Ed25519 public key as a JWK Set at /.well-known/jwks.json (RFC 7517).",
                "jwks_uri": "/.well-known/jwks.json",
                "alg": "EdDSA",
                "details": {"endpoint": "/.well-known/jwks.json", "alg": "EdDSA", "kty": "OKP", "crv": "Ed25519"},
            },
        ])
    }

    /// Applies a PATCH body. Accepts the reference's `availability` block (same whitelist and
    /// mode check) plus `description`, `skills` and `limitations`.
    pub fn apply_patch(&mut self, body: &Value) -> NodeResult<()> {
        let Some(obj) = body.as_object() else {
            return Err(NodeError::invalid("request body must be a JSON object"));
        };
        const KNOWN: [&str; 4] = ["availability", "description", "skills", "limitations"];
        if let Some(bad) = obj.keys().find(|k| !KNOWN.contains(&k.as_str())) {
            return Err(NodeError::invalid(format!(
                "field '{bad}' cannot be changed; patchable fields: {}",
                KNOWN.join(", ")
            )));
        }
        if obj.is_empty() {
            return Err(NodeError::invalid(
                "request body must contain 'availability' (or description, skills, limitations)",
            ));
        }
        let mut edits = self.edits.clone();
        if let Some(patch) = obj.get("availability") {
            let Some(patch) = patch.as_object() else {
                return Err(NodeError::invalid("'availability' must be a JSON object"));
            };
            merge_availability(&mut edits.availability, patch)?;
        }
        if let Some(d) = obj.get("description") {
            let Some(d) = d.as_str() else {
                return Err(NodeError::invalid("'description' must be a string"));
            };
            if d.len() > 4096 {
                return Err(NodeError::invalid(
                    "'description' is longer than 4096 characters",
                ));
            }
            edits.description = Some(d.to_owned());
        }
        if let Some(s) = obj.get("skills") {
            let Some(list) = s.as_array() else {
                return Err(NodeError::invalid(
                    "'skills' must be a list of strings or skill objects",
                ));
            };
            if list.len() > 256 || !list.iter().all(|v| v.is_string() || v.is_object()) {
                return Err(NodeError::invalid(
                    "'skills' must be a list (at most 256) of strings or skill objects",
                ));
            }
            edits.skills = Some(list.clone());
        }
        if let Some(l) = obj.get("limitations") {
            let list: Option<Vec<String>> = l
                .as_array()
                .and_then(|a| a.iter().map(|v| v.as_str().map(str::to_owned)).collect());
            let Some(list) = list else {
                return Err(NodeError::invalid(
                    "'limitations' must be a list of strings",
                ));
            };
            edits.limitations = Some(list);
        }
        self.edits = edits;
        Ok(())
    }
}

/// Checks availability fields (the reference's whitelist, its modes, a `schedule` that is a
/// cron expression) and merges them into `block`. Nothing is merged when any is wrong.
fn merge_availability(
    block: &mut Map<String, Value>,
    patch: &Map<String, Value>,
) -> NodeResult<()> {
    let mut unknown: Vec<&str> = patch
        .keys()
        .map(String::as_str)
        .filter(|k| !AVAILABILITY_FIELDS.contains(k))
        .collect();
    if !unknown.is_empty() {
        unknown.sort_unstable();
        return Err(NodeError::invalid(format!(
            "unknown availability fields: {unknown:?}"
        )));
    }
    if let Some(mode) = patch.get("mode")
        && !mode
            .as_str()
            .is_some_and(|m| AVAILABILITY_MODES.contains(&m))
    {
        return Err(NodeError::invalid(format!("mode must be one of {:?}", {
            let mut m = AVAILABILITY_MODES;
            m.sort_unstable();
            m
        })));
    }
    match patch.get("schedule") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if s.trim().is_empty() => {}
        Some(Value::String(s)) => {
            super::cron::Schedule::parse(s).map_err(|e| {
                NodeError::invalid(format!("'schedule' is not a cron expression: {e}"))
            })?;
        }
        Some(_) => {
            return Err(NodeError::invalid(
                "'schedule' must be a cron expression such as \"0 */4 * * *\"",
            ));
        }
    }
    for (k, v) in patch {
        block.insert(k.clone(), v.clone());
    }
    Ok(())
}

/// The next wake time a block's `schedule` gives after `now` (reference form), if it has a
/// valid one that matches within four years.
fn next_from_schedule(
    block: &Map<String, Value>,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<String> {
    let expr = block.get("schedule")?.as_str()?;
    let schedule = super::cron::Schedule::parse(expr).ok()?;
    schedule.next_after(now).map(super::cron::format_utc)
}

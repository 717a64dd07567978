//! The peer table: every node we are or were connected to, with its connection state,
//! counters, card, offline queue, and the handle used to write frames to it.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::queue::OfflineQueue;
use super::store::QueuedRow;

/// What the connection task of a peer is asked to write.
#[derive(Debug)]
pub enum Outbound {
    /// A live frame (already stored as sent).
    Frame { message_id: String, json: Arc<str> },
    /// A frame from the offline queue; removed from the store once written.
    Queued(QueuedRow),
}

/// How a connection reaches the peer: the reference's `connection_type` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConnectionType {
    /// A direct TCP connection (level 1): one node could open a socket to the other.
    #[default]
    P2pDirect,
    /// A direct UDP path found by hole punching through NATs (level 2, over iroh).
    DcutrDirect,
    /// Through a relay server, end-to-end encrypted (level 3, over iroh).
    Relay,
    /// Not a peer connection at all: the A2A bridge (`src/a2a/`) carries the frames over
    /// A2A's HTTP bindings.
    A2a,
}

impl ConnectionType {
    /// The wire name (`p2p_direct`, `dcutr_direct`, `relay`).
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionType::P2pDirect => "p2p_direct",
            ConnectionType::DcutrDirect => "dcutr_direct",
            ConnectionType::Relay => "relay",
            ConnectionType::A2a => "a2a",
        }
    }
}

/// What protocol the peer speaks. The node treats every kind alike (inbox, tasks, outbox,
/// delivery states); only the thing attached as the peer's connection differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerKind {
    /// Another ACP node over the peer WebSocket (or iroh): every peer before the A2A bridge.
    #[default]
    Acp,
    /// An A2A agent: this node is its A2A client, or it is an A2A client of this node's A2A
    /// server (`src/a2a/`).
    A2a,
}

impl PeerKind {
    /// The wire name in `/peers` (`acp`, `a2a`).
    pub fn as_str(self) -> &'static str {
        match self {
            PeerKind::Acp => "acp",
            PeerKind::A2a => "a2a",
        }
    }
}

/// The durable part of a peer entry. `Default` is a blank record, for building new entries
/// with struct update syntax (`..Default::default()`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PeerRecord {
    /// Local id: `peer_001`, `peer_002`, … in registration order.
    pub id: String,
    /// Display name: the name given at connect time, else the agent name, else the id.
    pub name: String,
    /// The agent name from the peer's card.
    #[serde(default)]
    pub agent_name: Option<String>,
    /// The link we dialled (none for peers that dialled us).
    #[serde(default)]
    pub link: Option<String>,
    /// Whether this node dials the peer (and redials after drops and restarts).
    #[serde(default)]
    pub dialed: bool,
    /// Last connection time.
    #[serde(default)]
    pub connected_at: Option<String>,
    /// Last disconnection time.
    #[serde(default)]
    pub disconnected_at: Option<String>,
    /// Messages sent to this peer.
    #[serde(default)]
    pub messages_sent: u64,
    /// Messages received from this peer.
    #[serde(default)]
    pub messages_received: u64,
    /// The peer's AgentCard.
    #[serde(default)]
    pub agent_card: Option<Value>,
    /// Remote socket address of the current or last connection.
    #[serde(default)]
    pub remote_address: Option<String>,
    /// Set when the user removed the peer: it is no longer dialled.
    #[serde(default)]
    pub removed: bool,
    /// Every message to this peer numbered at or below this `server_seq` was confirmed by it
    /// (`acp.ack`); see [`super::unconfirmed`].
    #[serde(default)]
    pub acked_seq: i64,
    /// `server_seq` of the first message sent to this peer under delivery acknowledgement:
    /// older messages were never confirmable, so they are not shown as delivered.
    #[serde(default)]
    pub ack_since: i64,
    /// The peer's Ed25519 public key (base64url), pinned on the first verified contact: a
    /// later connection presenting another key is refused until the user accepts it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned_key: Option<String>,
    /// When the key was pinned (or last accepted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned_at: Option<String>,
    /// A refused key change, waiting for the user's decision (kept across restarts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_change: Option<KeyChange>,
    /// The protocol the peer speaks (records written before the A2A bridge are ACP).
    #[serde(default)]
    pub kind: PeerKind,
    /// The user chose to dial this link's host without the key the link names (its host
    /// could not prove it; see [`super::link_key`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub link_key_waived: bool,
}

/// A connection that presented another key than the pinned one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyChange {
    /// The key presented (base64url); none when the peer presented no signed card at all.
    pub presented_key: Option<String>,
    /// When it was seen (the latest attempt).
    pub seen_at: String,
}

/// Who the peer on the current (or last) connection proved to be.
#[derive(Debug, Clone, Default)]
pub struct LiveIdentity {
    /// The key its card was verified with; none for an unsigned card.
    pub key: Option<ed25519_dalek::VerifyingKey>,
    /// Whether it also answered a fresh challenge with that key (a card can be replayed).
    pub proven: bool,
    /// The last check of its card: what `/peer/verify` reports.
    pub card: Option<crate::wire::identity::CardCheck>,
}

/// A peer entry: the record plus live state.
#[derive(Debug)]
pub struct Peer {
    /// Durable fields.
    pub record: PeerRecord,
    /// Whether a connection is up and the handshake done.
    pub connected: bool,
    /// Writer of the live connection.
    pub outbox: Option<mpsc::Sender<Outbound>>,
    /// Bumped on every connection, so a stale connection's teardown cannot detach a new one.
    pub generation: u64,
    /// Frames waiting for the peer.
    pub queue: OfflineQueue,
    /// Connection attempts since the last success (dialled peers).
    pub attempts: u32,
    /// Last dial error, shown in `/peers`.
    pub last_error: Option<String>,
    /// Messages handed (or queued) to the peer that it has not confirmed yet.
    pub unconfirmed: super::unconfirmed::Unconfirmed,
    /// Identity verified at the handshake of the current or last connection.
    pub identity: LiveIdentity,
    /// How the current (or last) connection reaches the peer.
    pub connection_type: ConnectionType,
    /// Messages the peer could not store yet and asked to get again later.
    pub held: super::held::Held,
    /// Messages a bridged peer refused for good, with its reason (`/messages` shows them
    /// `failed`); see [`super::bridged`].
    pub refused: std::collections::BTreeMap<String, String>,
    /// Why the last dial's host was refused for the key its link names (see
    /// [`super::link_key`]).
    pub link_key_refusal: Option<super::link_key::LinkKeyRefusal>,
}

impl Peer {
    /// A new, not yet connected entry.
    pub fn new(record: PeerRecord) -> Peer {
        Peer {
            record,
            connected: false,
            outbox: None,
            generation: 0,
            queue: OfflineQueue::default(),
            attempts: 0,
            last_error: None,
            unconfirmed: Default::default(),
            identity: LiveIdentity::default(),
            connection_type: ConnectionType::default(),
            held: Default::default(),
            refused: Default::default(),
            link_key_refusal: None,
        }
    }

    /// The peer's did: the one it proved on this connection, else the pinned one.
    pub fn did(&self) -> Option<String> {
        self.identity
            .key
            .as_ref()
            .map(crate::wire::did::did_acp)
            .or_else(|| {
                self.record
                    .pinned_key
                    .as_deref()
                    .map(|k| format!("did:acp:{k}"))
            })
    }

    /// Whether frames on the live connection can be attributed: its card was verified with
    /// the pinned key.
    pub fn verified(&self) -> bool {
        self.connected
            && self.identity.key.as_ref().is_some_and(|k| {
                self.record.pinned_key.as_deref() == Some(&crate::wire::did::public_key_text(k))
            })
    }

    /// The identity part of the `/peers` entry.
    pub fn identity_json(&self) -> Value {
        let change = self.record.key_change.as_ref().map(|c| {
            json!({
                "presented_did": c.presented_key.as_deref().map(|k| format!("did:acp:{k}")),
                "seen_at": c.seen_at,
                "accept": format!("POST /peers/{}/accept-key", self.record.id),
            })
        });
        json!({
            "did": self.did(),
            "verified": self.verified(),
            "proven": self.connected && self.identity.proven,
            "pinned_did": self.record.pinned_key.as_deref().map(|k| format!("did:acp:{k}")),
            "pinned_at": self.record.pinned_at,
            "card_valid": self.identity.card.as_ref().map(|c| c.valid),
            "key_change": change,
            "link_key_waived": self.record.link_key_waived,
        })
    }

    /// Whether the peer confirms what it stored (`capabilities.delivery_ack` in its card):
    /// acp-relay nodes do, the Python reference does not.
    /// An A2A agent this node dialled (the A2A client's bridge) confirms each message once
    /// the agent accepted it.
    pub fn confirms_delivery(&self) -> bool {
        (self.record.kind == PeerKind::A2a && self.record.dialed)
            || self
                .record
                .agent_card
                .as_ref()
                .and_then(|c| c.get("capabilities"))
                .and_then(|c| c.get("delivery_ack"))
                .and_then(Value::as_bool)
                .unwrap_or(false)
    }

    /// Whether the message numbered `server_seq` to this peer is known to be in its store.
    pub fn confirmed(&self, server_seq: i64) -> bool {
        self.record.ack_since > 0
            && server_seq >= self.record.ack_since
            && server_seq <= self.record.acked_seq
    }

    /// Whether `key` names this peer (id, display name or agent name).
    pub fn answers_to(&self, key: &str) -> bool {
        self.record.id == key
            || self.record.name == key
            || self.record.agent_name.as_deref() == Some(key)
    }

    /// The `/peers` entry (the reference's fields plus queue depth and dial state).
    pub fn to_json(&self) -> Value {
        let r = &self.record;
        json!({
            "id": r.id,
            "kind": r.kind.as_str(),
            "name": r.name,
            "agent_name": r.agent_name,
            "link": r.link,
            "connected": self.connected,
            "ws_ready": self.connected,
            "connected_at": r.connected_at,
            "disconnected_at": r.disconnected_at,
            "messages_sent": r.messages_sent,
            "messages_received": r.messages_received,
            "agent_card": r.agent_card,
            "remote_address": r.remote_address,
            "connection_type": self.connected.then(|| self.connection_type.as_str()),
            "dialed": r.dialed,
            "offline_queue_depth": self.queue.len(),
            "delivery_ack": self.confirms_delivery(),
            "unconfirmed": self.unconfirmed.len(),
            "held_by_peer": self.held.len(),
            "reconnect_attempts": self.attempts,
            "last_error": self.last_error,
            "did": self.did(),
            "verified": self.verified(),
            "identity": self.identity_json(),
        })
    }
}

/// All peers, by id, in registration order.
#[derive(Debug, Default)]
pub struct PeerTable {
    /// Entries by id (ids sort in registration order).
    pub peers: BTreeMap<String, Peer>,
    /// Last number used for a `peer_NNN` id.
    pub counter: u64,
    /// Connections admitted under `--max-peers` that are not attached yet: counted with the
    /// connected peers so two connections admitted at once cannot both take the last place.
    pub reserved: usize,
}

impl PeerTable {
    /// The next free `peer_NNN` id.
    pub fn next_id(&mut self) -> String {
        self.counter += 1;
        format!("peer_{:03}", self.counter)
    }

    /// Finds a peer by id, display name or agent name (id wins).
    pub fn resolve(&self, key: &str) -> Option<&Peer> {
        self.peers.get(key).or_else(|| {
            self.peers
                .values()
                .find(|p| !p.record.removed && p.answers_to(key))
        })
    }

    /// Mutable [`PeerTable::resolve`].
    pub fn resolve_mut(&mut self, key: &str) -> Option<&mut Peer> {
        let id = self.resolve(key)?.record.id.clone();
        self.peers.get_mut(&id)
    }

    /// Ids of connected peers.
    pub fn connected_ids(&self) -> Vec<String> {
        self.peers
            .values()
            .filter(|p| p.connected)
            .map(|p| p.record.id.clone())
            .collect()
    }

    /// How many peers have a live connection.
    pub fn connected_count(&self) -> usize {
        self.peers.values().filter(|p| p.connected).count()
    }

    /// Places taken under `--max-peers`: live connections plus admitted, unattached ones.
    pub fn held(&self) -> usize {
        self.connected_count() + self.reserved
    }

    /// The connected peer that dialled us under this agent name, if any: the entry a new
    /// connection with that name replaces when the node is at `--max-peers`.
    pub fn connected_inbound(&self, agent_name: &str) -> Option<&Peer> {
        self.peers.values().find(|p| {
            p.connected
                && !p.record.dialed
                && !p.record.removed
                && p.record.agent_name.as_deref() == Some(agent_name)
        })
    }

    /// Entries that are not removed.
    pub fn active(&self) -> impl Iterator<Item = &Peer> {
        self.peers.values().filter(|p| !p.record.removed)
    }
}

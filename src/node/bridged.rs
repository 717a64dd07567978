//! Peers whose connection is a bridge rather than a socket. The A2A server's callers: found
//! or registered by name and kind, so each caller keeps one peer entry (its inbox history,
//! tasks and counters) across requests and restarts. And the A2A agents this node is the
//! client of (`src/a2a/client/`): registered by the URL the user connected them by, dialled
//! (their bridge starts through the dialler hook and again after a restart); the bridge
//! attaches an outbox like a wire session does, feeds the agent's answers in as frames, and
//! confirms or fails each message.

use serde_json::{Map, Value, json};

use super::Node;
use super::error::{NodeError, NodeResult};
use super::inbound::FrameOutcome;
use super::peers::{Peer, PeerKind, PeerRecord};

/// Most refused messages remembered per bridged peer (the oldest ids are forgotten first;
/// message ids rise, so that is the oldest messages).
const MAX_REFUSED: usize = 10_000;

fn refused_key(peer_id: &str) -> String {
    format!("bridged_refused:{peer_id}")
}

/// A bridged peer as the bridge needs it back after a restart.
#[derive(Debug, Clone)]
pub struct BridgedPeer {
    /// Its id in the peer table.
    pub id: String,
    /// The URL the user connected it by.
    pub url: String,
    /// The card it was registered with (the bridge fetches a fresh one when it attaches).
    pub card: Option<Value>,
}

impl Node {
    /// Registers (or revives) the peer of `kind` reached at `url`, with the card read from
    /// it. Idempotent for a URL already known: the entry is reused (renamed when `name` is
    /// given). Returns `(peer_id, fresh)`, `fresh` when no bridge runs for it yet: the caller
    /// then starts one with [`Node::start_bridged`] (after storing what it needs).
    pub fn register_bridged_peer(
        &self,
        kind: PeerKind,
        url: &str,
        name: Option<&str>,
        card: Value,
    ) -> NodeResult<(String, bool)> {
        super::ensure_writable(self)?;
        let agent_name = card.get("name").and_then(Value::as_str).map(str::to_owned);
        let (peer_id, fresh) = {
            let mut peers = self.lock_peers();
            let already = peers
                .peers
                .values()
                .any(|p| p.connected && p.record.link.as_deref() == Some(url));
            let held = peers.held();
            if !already && held >= self.inner.config.max_peers {
                return Err(self.peer_cap_error(held));
            }
            if let Some(existing) = peers
                .peers
                .values_mut()
                .find(|p| p.record.kind == kind && p.record.link.as_deref() == Some(url))
            {
                let revived = existing.record.removed || !existing.record.dialed;
                existing.record.removed = false;
                existing.record.dialed = true;
                existing.record.agent_card = Some(card);
                existing.record.agent_name = agent_name;
                if let Some(n) = name {
                    existing.record.name = n.to_owned();
                }
                (existing.record.id.clone(), revived && !existing.connected)
            } else {
                let id = peers.next_id();
                let record = PeerRecord {
                    id: id.clone(),
                    name: name
                        .map(str::to_owned)
                        .or_else(|| agent_name.clone())
                        .unwrap_or_else(|| id.clone()),
                    agent_name,
                    link: Some(url.to_owned()),
                    dialed: true,
                    agent_card: Some(card),
                    kind,
                    ..Default::default()
                };
                peers.peers.insert(id.clone(), Peer::new(record));
                (id, true)
            }
        };
        self.persist_peer(&peer_id);
        Ok((peer_id, fresh))
    }

    /// Starts the bridge of a registered bridged peer (through the dialler hook, which
    /// starts a peer's connection by its kind).
    pub fn start_bridged(&self, peer_id: &str) {
        self.start_dialing(peer_id);
    }

    /// The id of the bridged peer of `kind` connected by `url`, if there is one.
    pub fn bridged_peer_by_url(&self, kind: PeerKind, url: &str) -> Option<String> {
        self.lock_peers()
            .peers
            .values()
            .find(|p| p.record.kind == kind && p.record.link.as_deref() == Some(url))
            .map(|p| p.record.id.clone())
    }

    /// The dialled bridged peer `peer_id` of `kind` (an A2A agent this node is the client
    /// of), if it is one and is not removed.
    pub fn bridge_target(&self, peer_id: &str, kind: PeerKind) -> Option<BridgedPeer> {
        let peers = self.lock_peers();
        let p = peers.peers.get(peer_id)?;
        if p.record.kind != kind || p.record.removed || !p.record.dialed {
            return None;
        }
        Some(BridgedPeer {
            id: p.record.id.clone(),
            url: p.record.link.clone()?,
            card: p.record.agent_card.clone(),
        })
    }

    /// The kind of a known peer.
    pub fn peer_kind(&self, peer_id: &str) -> Option<PeerKind> {
        self.lock_peers().peers.get(peer_id).map(|p| p.record.kind)
    }

    /// Records the latest card of a bridged peer (shown in `/peers`).
    pub fn set_bridged_card(&self, peer_id: &str, card: Value) {
        let name = card.get("name").and_then(Value::as_str).map(str::to_owned);
        if let Some(p) = self.lock_peers().peers.get_mut(peer_id) {
            p.record.agent_card = Some(card);
            if name.is_some() {
                p.record.agent_name = name;
            }
        } else {
            return;
        }
        self.persist_peer(peer_id);
    }

    /// Records why the bridge cannot reach its peer now (shown as `last_error` in `/peers`)
    /// and counts the attempt.
    pub fn bridged_unreachable(&self, peer_id: &str, why: &str) {
        if let Some(p) = self.lock_peers().peers.get_mut(peer_id) {
            p.attempts = p.attempts.saturating_add(1);
            p.last_error = Some(why.to_owned());
        }
    }

    /// A frame the bridge built from what the agent sent, processed like a frame read from a
    /// peer's socket (dedup, storage, tasks, events, inbox). With `--secret` the frame is
    /// stamped with this node's HMAC first: the bridge is part of this node, and the agent's
    /// authenticity is the HTTPS connection's, not the frame's.
    pub fn on_bridged_frame(&self, peer_id: &str, mut frame: Map<String, Value>) -> FrameOutcome {
        self.stamp_hmac(&mut frame);
        self.on_frame(peer_id, &Value::Object(frame).to_string())
    }

    /// The bridge handed these messages to the agent, which accepted them: they show as
    /// `delivered` (the same `delivered` event and watermark an `acp.ack` gives).
    pub fn bridged_delivered(&self, peer_id: &str, message_ids: &[String]) {
        self.on_ack(peer_id, message_ids);
    }

    /// Reads back which messages a bridged peer refused (kept in `meta`), after a restart.
    pub async fn restore_refused(&self, peer_id: &str) {
        let key = refused_key(peer_id);
        let stored: Option<std::collections::BTreeMap<String, String>> = self
            .inner
            .store
            .read(move |conn| super::store::get_meta(conn, &key))
            .await
            .ok()
            .flatten()
            .and_then(|s| serde_json::from_str(&s).ok());
        if let (Some(stored), Some(p)) = (stored, self.lock_peers().peers.get_mut(peer_id)) {
            p.refused = stored;
        }
    }

    /// The agent refused a message for good (its answer says why): it is not sent again,
    /// `/messages` shows it `failed` with the reason, a task it started fails with the
    /// reason, and watchers get a `delivery_failed` event.
    pub fn bridged_failed(
        &self,
        peer_id: &str,
        message_id: &str,
        task_id: Option<&str>,
        reason: &str,
    ) -> NodeResult<()> {
        tracing::warn!(
            peer = peer_id,
            message_id,
            reason,
            "message refused by the agent"
        );
        // Out of the unconfirmed set (no re-send after a restart); the watermark may move.
        self.on_ack(peer_id, &[message_id.to_owned()]);
        let refused = {
            let mut peers = self.lock_peers();
            let Some(p) = peers.peers.get_mut(peer_id) else {
                return Ok(());
            };
            p.last_error = Some(format!("message {message_id} refused: {reason}"));
            p.refused.insert(message_id.to_owned(), reason.to_owned());
            while p.refused.len() > MAX_REFUSED {
                p.refused.pop_first();
            }
            serde_json::to_string(&p.refused).unwrap_or_default()
        };
        self.inner.store.write(super::store::WriteOp::SetMeta {
            key: refused_key(peer_id),
            value: refused,
        });
        if let Some(task_id) = task_id
            && self
                .lock_tasks()
                .get(task_id)
                .is_some_and(|t| !t.status.is_terminal())
        {
            self.apply_task_change(
                task_id,
                super::task::TaskState::Failed,
                None,
                Some(json!(reason)),
                None,
                false,
            )
            .map_err(|e| NodeError::internal(e.message))?;
        }
        let mut ev = Map::new();
        ev.insert("peer_id".into(), json!(peer_id));
        ev.insert("message_id".into(), json!(message_id));
        ev.insert("reason".into(), json!(reason));
        self.inner.events.emit("delivery_failed", ev);
        Ok(())
    }
}

impl Node {
    /// The id of the bridged peer `name` of `kind`: the existing entry (not removed, not
    /// dialled) with that agent name and kind, else a new one. `card` replaces the entry's
    /// card (it says what the bridge confirms, e.g. `capabilities.delivery_ack`).
    pub fn bridged_peer(&self, name: &str, kind: PeerKind, card: Value) -> String {
        let id = {
            let mut peers = self.lock_peers();
            let existing = peers
                .peers
                .values()
                .find(|p| {
                    p.record.kind == kind
                        && !p.record.dialed
                        && !p.record.removed
                        && p.record.agent_name.as_deref() == Some(name)
                })
                .map(|p| p.record.id.clone());
            match existing {
                Some(id) => {
                    if let Some(p) = peers.peers.get_mut(&id) {
                        p.record.agent_card = Some(card);
                    }
                    id
                }
                None => {
                    let id = peers.next_id();
                    let record = PeerRecord {
                        id: id.clone(),
                        name: name.to_owned(),
                        agent_name: Some(name.to_owned()),
                        agent_card: Some(card),
                        kind,
                        ..Default::default()
                    };
                    peers.peers.insert(id.clone(), Peer::new(record));
                    id
                }
            }
        };
        self.persist_peer(&id);
        id
    }

    /// Whether `peer_id` is a live entry (not removed): a bridge re-registers its caller
    /// when the user removed the entry.
    pub fn peer_is_active(&self, peer_id: &str) -> bool {
        self.lock_peers()
            .peers
            .get(peer_id)
            .is_some_and(|p| !p.record.removed)
    }
}

//! Peers that a bridge carries instead of a peer connection (the A2A server's callers): found
//! or registered by name and kind, so each caller keeps one peer entry (its inbox history,
//! tasks and counters) across requests and restarts.

use serde_json::Value;

use super::Node;
use super::peers::{Peer, PeerKind, PeerRecord};

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
                        link: None,
                        dialed: false,
                        connected_at: None,
                        disconnected_at: None,
                        messages_sent: 0,
                        messages_received: 0,
                        agent_card: Some(card),
                        remote_address: None,
                        removed: false,
                        acked_seq: 0,
                        ack_since: 0,
                        pinned_key: None,
                        pinned_at: None,
                        key_change: None,
                        kind,
                        link_key_waived: false,
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

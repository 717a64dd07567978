//! A link that names its host's key (`?did=`) when the host does not prove it holds that
//! key: it presented another key, no signed card, or a card it could not answer the
//! challenge for. The dial is refused and keeps being retried (the real host may come back);
//! the refusal is kept on the peer for the user to decide. Waiving the link's key (MCP: the
//! consent form of `acp_connect`, or `accept_new_key`; REST: `POST /peers/connect` with
//! `accept_new_key`) dials that host as if the link named no key: the key it presents is
//! pinned on first contact as for any link without `?did=`, and its frames show as verified
//! only if it proves it. The waiver is durable (on the peer record).

use serde_json::{Map, json};

use super::Node;
use super::error::{NodeError, NodeResult};

/// Why the host at a link was refused, for the consent question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkKeyRefusal {
    /// The key the link names (did:acp form).
    pub named_did: String,
    /// The key the host presented (did:acp form); `None`: no signed card.
    pub presented_did: Option<String>,
    /// The host presented the named key but did not answer the challenge for it (a
    /// replayed card, or a node that cannot answer challenges).
    pub unproven: bool,
}

/// A refusal waiting on a peer, with the peer it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingLinkKey {
    /// The peer's local id.
    pub peer_id: String,
    /// Its display name.
    pub name: String,
    /// What the host did.
    pub refusal: LinkKeyRefusal,
}

impl PendingLinkKey {
    /// What the user is shown as the host's key: a consent answer counts only for this.
    pub fn shown(&self) -> String {
        let presented = self.refusal.presented_did.as_deref().unwrap_or("none");
        if self.refusal.unproven {
            format!("unproven {presented}")
        } else {
            presented.to_owned()
        }
    }
}

/// The hint a refusal's error text ends with: how to connect anyway.
pub const WAIVE_HINT: &str = "to connect anyway without trusting the key the link names, \
    only if its owner confirms: POST /peers/connect with \"accept_new_key\": true \
    (MCP: acp_connect with accept_new_key)";

impl Node {
    /// Records why the host at `peer_id`'s link was refused (shown in `/peers` as the last
    /// error, and asked about by `acp_connect`).
    pub(crate) fn note_link_key_refusal(&self, peer_id: &str, refusal: LinkKeyRefusal, msg: &str) {
        if let Some(p) = self.lock_peers().peers.get_mut(peer_id) {
            p.last_error = Some(msg.to_owned());
            p.link_key_refusal = Some(refusal);
        }
    }

    /// The key the link of `peer_id` names, unless the user waived it.
    pub(crate) fn link_key_in_force<'a>(
        &self,
        peer_id: &str,
        named: Option<&'a str>,
    ) -> Option<&'a str> {
        let peers = self.lock_peers();
        let waived = peers
            .peers
            .get(peer_id)
            .is_some_and(|p| p.record.link_key_waived);
        named.filter(|_| !waived)
    }

    /// Forgets a refusal once a dial got past the identity check.
    pub(crate) fn clear_link_key_refusal(&self, peer_id: &str) {
        if let Some(p) = self.lock_peers().peers.get_mut(peer_id) {
            p.link_key_refusal = None;
        }
    }

    /// The refusal waiting on the peer at this link, if any.
    pub fn pending_link_key(&self, link_text: &str) -> Option<PendingLinkKey> {
        let canonical = crate::wire::link::Link::parse(link_text).ok()?.to_string();
        let peers = self.lock_peers();
        let peer = peers
            .active()
            .find(|p| p.record.link.as_deref() == Some(canonical.as_str()))?;
        Some(PendingLinkKey {
            peer_id: peer.record.id.clone(),
            name: peer.record.name.clone(),
            refusal: peer.link_key_refusal.clone()?,
        })
    }

    /// The user's decision to dial the host at `peer_id`'s link without the key the link
    /// names: durable, logged, announced (`peer` event `link_key_waived`), and the dial
    /// starts again at once.
    pub fn waive_link_key(&self, peer_id: &str) -> NodeResult<()> {
        let (named, dialed) = {
            let mut peers = self.lock_peers();
            let peer = peers
                .peers
                .get_mut(peer_id)
                .ok_or_else(|| NodeError::invalid(format!("no peer '{peer_id}'")))?;
            let refusal = peer.link_key_refusal.take();
            peer.record.link_key_waived = true;
            peer.last_error = None;
            peer.attempts = 0;
            (
                refusal.map(|r| r.named_did),
                peer.record.dialed && !peer.connected,
            )
        };
        self.persist_peer(peer_id);
        tracing::warn!(peer = %peer_id, link_did = named.as_deref().unwrap_or("?"), "the user waived the key its link names");
        let mut ev = Map::new();
        ev.insert("event".into(), json!("link_key_waived"));
        ev.insert("peer_id".into(), json!(peer_id));
        ev.insert("link_did".into(), json!(named));
        self.inner.events.emit("peer", ev);
        if dialed {
            self.start_dialing(peer_id);
        }
        Ok(())
    }
}

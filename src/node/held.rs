//! Messages a peer could not store yet. A peer whose store is full, or that limits what one
//! peer may send (see `quota`), answers message frames it did not keep with an `error` frame
//! naming them (`storage_full`, `rate_limited`, `quota_exceeded`; `retry_after_ms`) instead
//! of an `acp.ack`. They stay unconfirmed
//! here, so nothing is lost if either side restarts; this module sends them again on the same
//! connection after the wait the peer asked for, until the peer confirms them. One resend is
//! scheduled per peer at a time however many hold frames arrive, and each resend reads the
//! frames from the store, so holding costs no memory beyond the ids.

use std::collections::BTreeSet;
use std::time::Duration;

use super::Node;
use super::peers::Outbound;

/// Wait before writing the rest of a resend that did not fit into the peer's outbox.
const OUTBOX_RETRY: Duration = Duration::from_millis(500);

/// The ids a peer asked to get again later, and whether a resend is scheduled.
#[derive(Debug, Default)]
pub struct Held {
    ids: BTreeSet<String>,
    scheduled: bool,
}

impl Held {
    /// How many messages wait for a resend.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

impl Node {
    /// A peer did not store these messages (`code` says why) and asks to get them again after
    /// `wait`. Only messages it still has to confirm are held; the resend is scheduled once.
    pub(crate) fn hold_for_resend(
        &self,
        peer_id: &str,
        code: &str,
        ids: Vec<String>,
        wait: Duration,
    ) {
        let generation = {
            let mut peers = self.lock_peers();
            let Some(p) = peers.peers.get_mut(peer_id) else {
                return;
            };
            let was_empty = p.held.ids.is_empty();
            for id in ids {
                if p.unconfirmed.contains(&id) {
                    p.held.ids.insert(id);
                }
            }
            if p.held.ids.is_empty() || p.held.scheduled {
                return;
            }
            if was_empty {
                tracing::info!(
                    peer = peer_id,
                    code,
                    held = p.held.ids.len(),
                    "peer cannot store messages now; keeping them and sending again in {wait:?}"
                );
            }
            p.held.scheduled = true;
            p.generation
        };
        let node = self.clone();
        let peer = peer_id.to_owned();
        let stop = self.shutdown_token();
        self.background().spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = tokio::time::sleep(wait) => node.resend_held(&peer, generation).await,
            }
        });
    }

    /// Writes the held messages to the peer's connection again, if it is still the one that
    /// asked (after a reconnect every unconfirmed message is re-sent anyway).
    async fn resend_held(&self, peer_id: &str, generation: u64) {
        let (wanted, tx) = {
            let mut peers = self.lock_peers();
            let Some(p) = peers.peers.get_mut(peer_id) else {
                return;
            };
            p.held.scheduled = false;
            let ids = std::mem::take(&mut p.held.ids);
            if !p.connected || p.generation != generation {
                return;
            }
            let Some(tx) = p.outbox.clone() else {
                return;
            };
            let mut wanted: Vec<(i64, String)> = p
                .unconfirmed
                .ids()
                .filter(|(_, id)| ids.contains(*id) && !p.queue.contains(id))
                .map(|(seq, id)| (*seq, id.clone()))
                .collect();
            wanted.sort_unstable();
            (wanted, tx)
        };
        let frames = match self.outbound_frames(peer_id, wanted).await {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(peer = peer_id, "cannot read held messages: {e}");
                return;
            }
        };
        let mut frames = frames.into_iter();
        while let Some(out) = frames.next() {
            if let Err(e) = tx.try_send(out) {
                if tx.is_closed() {
                    // The connection ended: the reconnect re-sends everything unconfirmed.
                    return;
                }
                // The outbox is full: the rest goes out a little later.
                let rest = std::iter::once(e.into_inner())
                    .chain(frames)
                    .map(|out| match out {
                        Outbound::Frame { message_id, .. } => message_id,
                        Outbound::Queued(row) => row.message_id,
                    })
                    .collect();
                self.hold_for_resend(peer_id, "outbox_full", rest, OUTBOX_RETRY);
                return;
            }
        }
    }
}

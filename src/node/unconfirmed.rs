//! The messages a peer has not yet confirmed. A peer that advertises `delivery_ack` in its
//! card answers each batch of message frames, once it has committed them to its store, with
//! an `acp.ack` frame naming their ids. Until then a message is only "sent": handed to a
//! socket that may belong to a process about to die. This set is what the node re-sends after
//! a reconnect or a restart of either side (the receiver drops repeats by `message_id`).
//!
//! Only the ids live here; the frames stay in the store's `messages` table. What is durable is
//! one number per peer, the *watermark*: every message to the peer numbered (`server_seq`) at
//! or below it is confirmed. It is the number just below the oldest unconfirmed message, so
//! the set can be rebuilt after a restart from the messages above it (some of which may have
//! been confirmed out of order: they are re-sent and dropped as repeats).

use std::collections::{BTreeMap, HashMap};

/// Most unconfirmed messages per peer. A peer that stops confirming (or a link to a node that
/// keeps dying) cannot make the sender hold more: sends to it are refused with
/// `ERR_QUEUE_FULL` until it confirms. A live acp-relay peer confirms each batch within a
/// commit, so this is far above what a healthy connection ever holds. The bound is checked
/// when a send picks its peer, so sends in flight at that moment may pass it together.
pub const MAX_UNCONFIRMED: usize = 10_000;

/// Unconfirmed messages of one peer, by `server_seq`.
#[derive(Debug, Default)]
pub struct Unconfirmed {
    by_seq: BTreeMap<i64, String>,
    by_id: HashMap<String, i64>,
    /// Highest `server_seq` ever added: the watermark once everything is confirmed.
    highest: i64,
    /// The watermark last written to the store, and when.
    persisted: Option<(i64, std::time::Instant)>,
}

/// The stored watermark may lag the live one by this many messages, or by 250 ms:
/// writing the peer's record at every `acp.ack` (one per message at one connection) doubled
/// the sender's writes. A lagging watermark costs only repeats after a crash, which the
/// receiver drops; the record is also written whenever the connection ends.
pub const PERSIST_LAG: i64 = 1024;
/// See [`PERSIST_LAG`].
const PERSIST_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

impl Unconfirmed {
    /// Number of messages awaiting confirmation.
    pub fn len(&self) -> usize {
        self.by_seq.len()
    }

    /// Whether every message was confirmed.
    pub fn is_empty(&self) -> bool {
        self.by_seq.is_empty()
    }

    /// Adds a message that was stored and is about to be handed to the peer.
    pub fn add(&mut self, server_seq: i64, message_id: &str) {
        self.by_seq.insert(server_seq, message_id.to_owned());
        self.by_id.insert(message_id.to_owned(), server_seq);
        self.highest = self.highest.max(server_seq);
    }

    /// Removes the confirmed ids; returns those that were awaited (unknown ids, from a
    /// repeat or a peer's mistake, are ignored).
    pub fn confirm<'a>(&mut self, ids: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        let mut confirmed = Vec::new();
        for id in ids {
            if let Some(seq) = self.by_id.remove(id) {
                self.by_seq.remove(&seq);
                confirmed.push(id.to_owned());
            }
        }
        confirmed
    }

    /// Every message numbered at or below this is confirmed (given `floor`, the watermark
    /// already stored, for when nothing was ever added).
    pub fn watermark(&self, floor: i64) -> i64 {
        match self.by_seq.keys().next() {
            Some(oldest) => (oldest - 1).max(floor),
            None => self.highest.max(floor),
        }
    }

    /// Whether the watermark should be written now (it moved far or long enough since the
    /// last write); if so, notes it as written.
    pub fn should_persist(&mut self, watermark: i64) -> bool {
        let now = std::time::Instant::now();
        let due = match self.persisted {
            None => true,
            Some((seq, at)) => {
                watermark > seq
                    && (watermark - seq >= PERSIST_LAG || now.duration_since(at) >= PERSIST_EVERY)
            }
        };
        if due {
            self.persisted = Some((watermark, now));
        }
        due
    }

    /// Whether `message_id` awaits confirmation.
    pub fn contains(&self, message_id: &str) -> bool {
        self.by_id.contains_key(message_id)
    }

    /// The awaited ids in send order.
    pub fn ids(&self) -> impl Iterator<Item = (&i64, &String)> {
        self.by_seq.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watermark_stays_below_the_oldest_unconfirmed() {
        let mut u = Unconfirmed::default();
        assert_eq!(u.watermark(7), 7);
        for (seq, id) in [(10, "a"), (11, "b"), (12, "c")] {
            u.add(seq, id);
        }
        assert_eq!(u.watermark(7), 9);
        // Confirmed out of order: the watermark waits for the oldest.
        assert_eq!(u.confirm(["b", "zzz"]), ["b"]);
        assert_eq!(u.watermark(7), 9);
        assert_eq!(u.confirm(["a"]), ["a"]);
        assert_eq!(u.watermark(7), 11);
        assert!(u.contains("c") && !u.contains("a"));
        u.confirm(["c"]);
        assert!(u.is_empty());
        assert_eq!(u.watermark(7), 12);
    }

    #[test]
    fn the_stored_watermark_lags_by_a_bounded_count() {
        let mut u = Unconfirmed::default();
        assert!(u.should_persist(1), "the first one is written");
        assert!(!u.should_persist(1), "unchanged");
        assert!(!u.should_persist(2), "moved a little, just now");
        assert!(u.should_persist(1 + PERSIST_LAG), "moved far");
        assert!(!u.should_persist(2 + PERSIST_LAG));
    }
}

//! The offline queue of one peer: frames accepted for a peer while it was away, persisted,
//! bounded, and handed to the connection in order when the peer is back. A frame leaves the
//! store only once it was written to the peer's socket, so a crash re-sends rather than loses
//! (the receiver drops the repeat by `message_id`).

use std::collections::VecDeque;

use serde_json::{Value, json};

use super::store::QueuedRow;

/// The queued frames of one peer, oldest first.
#[derive(Debug, Default)]
pub struct OfflineQueue {
    items: VecDeque<QueuedRow>,
}

impl OfflineQueue {
    /// Number of frames waiting.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Whether the frame of `message_id` waits here.
    pub fn contains(&self, message_id: &str) -> bool {
        self.items.iter().any(|r| r.message_id == message_id)
    }

    /// Adds a frame at the back.
    pub fn push(&mut self, row: QueuedRow) {
        self.items.push_back(row);
    }

    /// Takes every frame, oldest first.
    pub fn take_all(&mut self) -> Vec<QueuedRow> {
        self.items.drain(..).collect()
    }

    /// Puts frames that could not be delivered back, keeping store order (by id).
    pub fn restore(&mut self, rows: Vec<QueuedRow>) {
        self.items.extend(rows);
        self.items.make_contiguous().sort_by_key(|r| r.id);
    }

    /// The `/offline-queue` view of this peer's queue (the reference's shape).
    pub fn snapshot(&self) -> Value {
        json!({
            "depth": self.items.len(),
            "messages": self.items.iter().map(|m| json!({
                "id": m.message_id,
                "type": m.frame.get("type").cloned().unwrap_or(Value::Null),
                "queued_at": m.queued_at,
            })).collect::<Vec<_>>(),
        })
    }
}

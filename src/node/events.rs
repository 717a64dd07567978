//! The event log: every observable change (message, task status, artifact, peer) gets a
//! node-wide increasing `seq`, is appended to the store for replay, and is broadcast live.
//! Sequence assignment, the store append and the broadcast happen under one short lock, so
//! live subscribers see events in `seq` order and replay-then-live never has a gap.

use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};
use tokio::sync::broadcast;

use super::ids::now_iso;
use super::store::{Store, WriteOp};

/// One event as clients see it: `{"type", "ts", "seq", …payload}`.
#[derive(Debug, Clone)]
pub struct Event {
    /// Node-wide sequence number (the SSE `id`).
    pub seq: u64,
    /// `message`, `status`, `artifact` or `peer`.
    pub kind: String,
    /// The full JSON object, `type`/`ts`/`seq` included.
    pub body: Value,
    /// The body serialized once, shared by every subscriber.
    pub json: Arc<str>,
}

impl Event {
    /// The SSE `event:` name the reference uses for this type, if any.
    pub fn sse_name(&self) -> Option<&'static str> {
        sse_name_for(&self.kind)
    }

    /// Rebuilds an event from its stored JSON.
    pub fn from_json(seq: u64, json: String) -> Event {
        let body: Value = serde_json::from_str(&json).unwrap_or(Value::Null);
        let kind = body
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        Event {
            seq,
            kind,
            body,
            json: json.into(),
        }
    }
}

/// The reference's named SSE events (`status` → `acp.task.status`, …).
pub fn sse_name_for(kind: &str) -> Option<&'static str> {
    match kind {
        "status" => Some("acp.task.status"),
        "artifact" => Some("acp.task.artifact"),
        _ => None,
    }
}

/// Emits, stores and broadcasts events.
pub struct EventLog {
    last_seq: Mutex<u64>,
    live: broadcast::Sender<Arc<Event>>,
    store: Store,
}

/// Capacity of the live channel; a subscriber further behind than this catches up from the
/// store instead of stalling the node.
pub const LIVE_CAPACITY: usize = 4096;

impl EventLog {
    /// Starts the log after `last_seq` (the highest seq already stored).
    pub fn new(store: Store, last_seq: u64) -> EventLog {
        let (live, _) = broadcast::channel(LIVE_CAPACITY);
        EventLog {
            last_seq: Mutex::new(last_seq),
            live,
            store,
        }
    }

    /// Records an event of `kind` with `payload` fields; returns it.
    pub fn emit(&self, kind: &str, payload: Map<String, Value>) -> Arc<Event> {
        let mut last = self.last_seq.lock().unwrap_or_else(|p| p.into_inner());
        *last += 1;
        let seq = *last;
        let mut body = Map::with_capacity(payload.len() + 3);
        body.insert("type".into(), Value::from(kind));
        body.insert("ts".into(), Value::from(now_iso()));
        body.insert("seq".into(), Value::from(seq));
        body.extend(payload);
        let body = Value::Object(body);
        let json: Arc<str> = body.to_string().into();
        let event = Arc::new(Event {
            seq,
            kind: kind.to_owned(),
            body,
            json: json.clone(),
        });
        self.store.write(WriteOp::AppendEvent {
            seq,
            body: json.to_string(),
        });
        let _ = self.live.send(event.clone());
        event
    }

    /// Highest seq emitted so far.
    pub fn last_seq(&self) -> u64 {
        *self.last_seq.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A live receiver. Subscribe before replaying so nothing falls between the two.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.live.subscribe()
    }

    /// Stored events with `seq > since`, oldest first, at most `limit`.
    pub async fn replay(&self, since: u64, limit: usize) -> Vec<Arc<Event>> {
        let result = self
            .store
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT seq, body FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                )?;
                let rows = stmt.query_map(rusqlite::params![since as i64, limit as i64], |r| {
                    Ok((r.get::<_, i64>(0)? as u64, r.get::<_, String>(1)?))
                })?;
                rows.collect::<rusqlite::Result<Vec<_>>>()
            })
            .await;
        match result {
            Ok(rows) => rows
                .into_iter()
                .map(|(seq, json)| Arc::new(Event::from_json(seq, json)))
                .collect(),
            Err(e) => {
                tracing::error!("event replay failed: {e}");
                Vec::new()
            }
        }
    }
}

//! Frames from peers: signature checks (HMAC, and Ed25519 against the peer's verified key),
//! dedup, storage, task bookkeeping, replies, cards.
//! A bad frame is counted and logged, never fatal: the connection and the node carry on.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde_json::{Map, Value, json};

use super::Node;
use super::ids::{make_message_id, now_iso, now_unix};
use super::message::{MAX_ID_LEN, validate_parts};
use super::quota::Refusal;
use super::store::{MessageRow, WriteOp};
use super::task::TaskState;
use crate::wire::frame::{self, Inbound};
use crate::wire::sign::Verdict;

/// What the connection should do after a frame.
#[derive(Debug, PartialEq, Eq)]
pub enum FrameOutcome {
    /// Carry on.
    Continue,
    /// A message frame, stored now or before (a repeat): once the store has committed it,
    /// the peer may be told so (`acp.ack`).
    Message(String),
    /// The frame was refused (counted); carry on.
    Rejected,
    /// A new message frame this node cannot store now (its store is full): not kept, not
    /// confirmed. The peer is told to hold it (`storage_full` error frame naming it) and send
    /// it again later.
    Held(String),
    /// A new message frame over the peer's limits (rate or stored bytes, see
    /// [`super::quota`]): not kept, not confirmed; the peer is told to send it again later,
    /// the same way as for [`FrameOutcome::Held`].
    Limited {
        /// The message's id.
        id: String,
        /// Which limit.
        refusal: Refusal,
        /// The frame's size.
        size: u64,
    },
}

impl Node {
    fn reject(&self, peer_id: &str, why: &str) -> FrameOutcome {
        self.inner
            .counters
            .frames_rejected
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(peer = peer_id, "frame rejected: {why}");
        FrameOutcome::Rejected
    }

    /// Handles one text frame from `peer_id`.
    pub fn on_frame(&self, peer_id: &str, text: &str) -> FrameOutcome {
        // What the per-peer byte rate charges a message frame: its size as received.
        let size = text.len() as u64;
        let parsed = match frame::parse(text, self.inner.config.max_msg_size) {
            Ok(f) => f,
            Err(e) => return self.reject(peer_id, &e.to_string()),
        };
        // The Ed25519 identity block, on any frame that carries one: a frame signed by the
        // peer's verified key is marked so; a wrong signature (or another key) is refused.
        let mut parsed = parsed;
        let mut spliced = None;
        let mut rewritten = false;
        if let Inbound::Message(map)
        | Inbound::Reply(map)
        | Inbound::TaskUpdated(map)
        | Inbound::TaskDelegate(map)
        | Inbound::Other(map) = &mut parsed
        {
            let mark = self.ed25519_mark(peer_id, text, map);
            // Marks are ours to set: a peer's own claim of one is dropped.
            let forged = map.remove("_ed25519_verified").is_some()
                | map.remove("_ed25519_invalid").is_some();
            rewritten = forged;
            match mark {
                Err(why) => return self.reject(peer_id, &why),
                Ok(mark) => {
                    if let Some(field) = mark.field() {
                        map.insert(field.into(), Value::Bool(true));
                        // A message is stored as received plus the mark, spliced into the
                        // text rather than serialized again.
                        spliced = Some(splice_mark(text, field));
                    }
                }
            }
        }
        let raw = match &spliced {
            _ if rewritten => None,
            None => Some(text),
            Some(s) => s.as_deref(),
        };
        match parsed {
            Inbound::AgentCard(card) if card.is_object() => {
                if self.recheck_card(peer_id, text) {
                    self.record_card(peer_id, card);
                }
                FrameOutcome::Continue
            }
            Inbound::AgentCard(_) => {
                self.reject(peer_id, "acp.agent_card whose card is not an object")
            }
            // Answers to a challenge are read during the handshake; a late one means nothing.
            Inbound::ChallengeResponse(_) => FrameOutcome::Continue,
            Inbound::Message(map) => self.on_message(peer_id, map, raw, size),
            Inbound::Ack(ids) => {
                self.on_ack(peer_id, &ids);
                FrameOutcome::Continue
            }
            Inbound::Reply(mut map) => {
                if let Some(why) = self.check_signature(&mut map) {
                    return self.reject(peer_id, &why);
                }
                let corr = map
                    .get("correlation_id")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                let waiter = corr.as_ref().and_then(|c| {
                    self.inner
                        .sync_pending
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(c)
                });
                match waiter {
                    Some(tx) => {
                        let _ = tx.send(Value::Object(map));
                        FrameOutcome::Continue
                    }
                    // A reply nobody waits for is kept as a message so it is not lost.
                    None if map.get("parts").is_some_and(Value::is_array) => {
                        self.on_message(peer_id, map, None, size)
                    }
                    None => FrameOutcome::Continue,
                }
            }
            Inbound::TaskUpdated(mut map) => {
                if let Some(why) = self.check_signature(&mut map) {
                    return self.reject(peer_id, &why);
                }
                let Some(task_id) = map.get("task_id").and_then(Value::as_str) else {
                    return self.reject(peer_id, "task.updated without task_id");
                };
                let status = map
                    .get("status")
                    .and_then(Value::as_str)
                    .unwrap_or("working");
                let Some(state) = TaskState::parse(status) else {
                    return self.reject(
                        peer_id,
                        &format!("task.updated with unknown status {status:?}"),
                    );
                };
                let artifact = map.get("artifact").filter(|a| a.is_object()).cloned();
                let error = map.get("error").filter(|e| !e.is_null()).cloned();
                if self.lock_tasks().contains_key(task_id) {
                    let _ = self.apply_task_change(task_id, state, artifact, error, None, false);
                }
                FrameOutcome::Continue
            }
            Inbound::TaskDelegate(mut map) => {
                if let Some(why) = self.check_signature(&mut map) {
                    return self.reject(peer_id, &why);
                }
                let Some(task_id) = map.get("task_id").and_then(Value::as_str) else {
                    return self.reject(peer_id, "task.delegate without task_id");
                };
                let payload = map.get("payload").cloned().unwrap_or(Value::Null);
                let context = map
                    .get("context_id")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                let origin = map
                    .get("message_id")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                self.adopt_peer_task(
                    task_id,
                    TaskState::Submitted,
                    payload,
                    origin,
                    context,
                    peer_id,
                );
                FrameOutcome::Continue
            }
            Inbound::Error(map) => {
                let code = map.get("code").and_then(Value::as_str).unwrap_or("unknown");
                if let Some(held) = frame::held_ids(&map) {
                    self.hold_for_resend(peer_id, code, held, frame::retry_after(&map));
                    return FrameOutcome::Continue;
                }
                tracing::warn!(peer = peer_id, code, "peer reported an error");
                if let Some(p) = self.lock_peers().peers.get_mut(peer_id) {
                    p.last_error = Some(format!("peer error: {code}"));
                }
                FrameOutcome::Continue
            }
            // The reference keeps any other frame as a "legacy" inbox entry; so do we, with
            // the whole frame as a data part (instead of the reference's Python repr).
            Inbound::Other(map) => self.on_legacy(peer_id, map, size),
        }
    }

    /// Verifies HMAC when a secret is set; returns the reason to refuse, if any. A mismatch
    /// accepted in lenient mode marks the frame `_sig_invalid: true`, as the reference does.
    fn check_signature(&self, map: &mut Map<String, Value>) -> Option<String> {
        let signer = self.signer()?;
        let id = map
            .get("message_id")
            .or_else(|| map.get("id"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let ts = map.get("ts").and_then(Value::as_str);
        let sig = map.get("sig").and_then(Value::as_str);
        match signer.verify(id, ts, sig) {
            Verdict::Rejected(why) => Some(why),
            Verdict::Flagged => {
                map.insert("_sig_invalid".into(), Value::Bool(true));
                None
            }
            Verdict::Valid | Verdict::Unchecked => None,
        }
    }

    fn record_card(&self, peer_id: &str, card: Value) {
        let name = card.get("name").and_then(Value::as_str).map(str::to_owned);
        {
            let mut peers = self.lock_peers();
            let Some(peer) = peers.peers.get_mut(peer_id) else {
                return;
            };
            if let Some(n) = &name {
                if peer.record.name == peer.record.id {
                    peer.record.name = n.clone();
                }
                peer.record.agent_name = Some(n.clone());
            }
            peer.record.agent_card = Some(card);
        }
        self.persist_peer(peer_id);
    }

    fn on_legacy(&self, peer_id: &str, mut map: Map<String, Value>, size: u64) -> FrameOutcome {
        if let Some(why) = self.check_signature(&mut map) {
            return self.reject(peer_id, &why);
        }
        let whole = Value::Object(map.clone());
        let mut entry = Map::new();
        let id = map.get("message_id").or_else(|| map.get("id")).cloned();
        entry.insert("type".into(), json!("acp.message"));
        entry.insert(
            "message_id".into(),
            id.unwrap_or_else(|| json!(make_message_id())),
        );
        for key in [
            "ts",
            "from",
            "context_id",
            "task_id",
            "server_seq",
            "_sig_invalid",
            "_ed25519_verified",
            "_ed25519_invalid",
        ] {
            if let Some(v) = map.get(key) {
                entry.insert(key.into(), v.clone());
            }
        }
        entry.insert("role".into(), json!("agent"));
        entry.insert("parts".into(), json!([{"type": "data", "content": whole}]));
        entry.insert("legacy".into(), Value::Bool(true));
        self.on_message_checked(peer_id, entry, None, size)
    }

    /// `raw` is the frame's text as received: stored as is while the map is unchanged, which
    /// spares the writer serializing every inbound frame again.
    fn on_message(
        &self,
        peer_id: &str,
        mut map: Map<String, Value>,
        raw: Option<&str>,
        size: u64,
    ) -> FrameOutcome {
        let fields = map.len();
        if let Some(why) = self.check_signature(&mut map) {
            return self.reject(peer_id, &why);
        }
        let raw = raw.filter(|_| map.len() == fields);
        self.on_message_checked(peer_id, map, raw, size)
    }

    fn on_message_checked(
        &self,
        peer_id: &str,
        mut map: Map<String, Value>,
        mut raw: Option<&str>,
        size: u64,
    ) -> FrameOutcome {
        for key in ["message_id", "id", "task_id", "context_id"] {
            if map
                .get(key)
                .and_then(Value::as_str)
                .is_some_and(|v| v.len() > MAX_ID_LEN)
            {
                return self.reject(
                    peer_id,
                    &format!("'{key}' longer than {MAX_ID_LEN} characters"),
                );
            }
        }
        let message_id = map
            .get("message_id")
            .or_else(|| map.get("id"))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(make_message_id);
        // Peers are not held to our input rules (the reference does not validate parts it
        // sends from /peer/{id}/send): any non-empty list of objects is kept as sent, and a
        // part we do not understand is logged, not dropped.
        let parts = match map.get("parts").and_then(Value::as_array) {
            Some(list) if !list.is_empty() && list.iter().all(Value::is_object) => {
                if let Err(e) = validate_parts(&Value::Array(list.clone())) {
                    tracing::debug!(
                        peer = peer_id,
                        message_id,
                        "message kept with unusual parts: {e}"
                    );
                }
                list.clone()
            }
            _ => return self.on_legacy(peer_id, map, size),
        };
        let fresh = {
            let mut seen = self
                .inner
                .seen_inbound
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            // A full store takes no new messages: the peer keeps them unconfirmed. A repeat
            // of one already taken is confirmed as usual (once its commit is done).
            if seen.get(&message_id).is_none() {
                if self.inner.store.capacity().is_full() {
                    return FrameOutcome::Held(message_id);
                }
                // Per-peer limits: a new message only (a repeat costs no room and is
                // confirmed as usual).
                let quotas = &self.inner.quotas;
                let stored = match quotas.limits().max_store_bytes {
                    0 => 0,
                    _ => self.inner.store.stored_bytes().get(peer_id),
                };
                if let Err(refusal) = quotas.admit(peer_id, size, stored, std::time::Instant::now())
                {
                    return FrameOutcome::Limited {
                        id: message_id,
                        refusal,
                        size,
                    };
                }
            }
            seen.insert(&message_id, 0)
        };
        if !fresh {
            self.inner
                .counters
                .messages_deduped
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!(peer = peer_id, message_id, "duplicate message dropped");
            return FrameOutcome::Message(message_id);
        }
        let role = match map.get("role").and_then(Value::as_str) {
            Some(r @ ("user" | "agent")) => r.to_owned(),
            _ => "agent".to_owned(),
        };
        let task_id = map
            .get("task_id")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let context_id = map
            .get("context_id")
            .and_then(Value::as_str)
            .map(str::to_owned);
        if !map.contains_key("message_id") {
            map.insert("message_id".into(), json!(message_id));
            raw = None;
        }
        if let Some(t) = &task_id
            && !self.lock_tasks().contains_key(t)
        {
            self.adopt_peer_task(
                t,
                TaskState::Working,
                json!({"parts": parts}),
                Some(message_id.clone()),
                context_id.clone(),
                peer_id,
            );
        }
        let sender = map.get("from").and_then(Value::as_str).map(str::to_owned);
        let row = MessageRow {
            message_id: message_id.clone(),
            direction: "inbound",
            peer_id: Some(peer_id.to_owned()),
            sender: sender.clone(),
            role: role.clone(),
            task_id: task_id.clone(),
            context_id: context_id.clone(),
            server_seq: map.get("server_seq").and_then(Value::as_i64),
            ts: map
                .get("ts")
                .and_then(Value::as_str)
                .map_or_else(now_iso, str::to_owned),
            received_at: now_unix(),
            consumed: false,
            frame: Value::Object(map),
            local_seq: 0,
        };
        self.inner
            .store
            .write(WriteOp::InsertMessage(Box::new(row), raw.map(Arc::from)));
        self.inner.unread.fetch_add(1, Ordering::Relaxed);
        self.inner
            .counters
            .messages_received
            .fetch_add(1, Ordering::Relaxed);
        if let Some(p) = self.lock_peers().peers.get_mut(peer_id) {
            p.record.messages_received += 1;
        }
        let mut ev = Map::new();
        ev.insert("message_id".into(), json!(message_id));
        ev.insert("role".into(), json!(role));
        ev.insert("parts".into(), Value::Array(parts));
        ev.insert("task_id".into(), json!(task_id));
        ev.insert("context_id".into(), json!(context_id));
        ev.insert("direction".into(), json!("inbound"));
        ev.insert("peer_id".into(), json!(peer_id));
        ev.insert("from".into(), json!(sender));
        self.inner.events.emit("message", ev);
        self.inner.inbox_notify.notify_waiters();
        FrameOutcome::Message(message_id)
    }
}

/// The frame text with `"<field>":true` added as its last member (the frame is a non-empty
/// object: it has an identity block), or none if the text does not end like an object.
fn splice_mark(text: &str, field: &str) -> Option<String> {
    let end = text.trim_end();
    let body = end.strip_suffix('}')?;
    Some(format!("{body},\"{field}\":true}}"))
}

#[cfg(test)]
mod tests {
    use super::splice_mark;

    #[test]
    fn a_mark_is_spliced_into_the_text() {
        let text = r#"{"a":1,"identity":{"sig":"x"}} "#;
        let out = splice_mark(text, "_ed25519_verified").unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["_ed25519_verified"], true);
        assert_eq!(v["a"], 1);
        assert!(splice_mark("[1]", "x").is_none());
    }
}

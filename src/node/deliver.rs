//! Sending: peer selection, the outbound frame, idempotency by `message_id`, durable storage
//! before the answer, hand-off to the live connection or the offline queue, synchronous
//! replies, and the hooks the wire layer calls when a peer connects or drops.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::sync::{mpsc, oneshot};

use super::error::{ErrorCode, NodeError, NodeResult};
use super::ids::{make_message_id, now_iso, now_unix};
use super::message::SendRequest;
use super::peers::{ConnectionType, Outbound};
use super::store::{MessageRow, QueuedRow, WriteOp};
use super::task::{Task, TaskState};
use super::unconfirmed::MAX_UNCONFIRMED;
use super::{Node, ensure_writable};

/// Where an accepted message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Handed to the live connection of the peer.
    Sent,
    /// The peer is away: stored in its offline queue, sent when it is back.
    Queued,
    /// The same `message_id` was accepted before; nothing was sent again.
    Duplicate,
}

impl Delivery {
    /// Wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::Sent => "sent",
            Delivery::Queued => "queued",
            Delivery::Duplicate => "duplicate",
        }
    }
}

/// The result of an accepted send.
#[derive(Debug, Clone)]
pub struct SendOutcome {
    /// Id of the message.
    pub message_id: String,
    /// Node-wide sequence number given to it.
    pub server_seq: i64,
    /// Peer it went (or will go) to.
    pub peer_id: String,
    /// What happened to it.
    pub delivery: Delivery,
    /// Task created with `create_task`.
    pub task: Option<Task>,
    /// The peer's `acp.reply` for a `sync` send.
    pub reply: Option<Value>,
    /// Depth of the peer's offline queue after a queued send.
    pub queue_depth: usize,
}

/// Length of a value's JSON text, measured without building it.
fn json_len(v: &impl serde::Serialize) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    let _ = serde_json::to_writer(&mut count, v);
    count.0
}

/// A send past [`Node::submit_send`]: numbered, written (not yet committed) and handed over.
pub(super) struct Submitted {
    /// The answer so far (`reply` comes in [`Node::finish_send`]).
    pub(super) outcome: SendOutcome,
    /// For a `sync` send, where the peer's reply arrives.
    waiter: Option<oneshot::Receiver<Value>>,
    /// Seconds a `sync` send waits for its reply.
    timeout: f64,
    /// Whether the send wrote anything that must be committed before it is answered (a
    /// duplicate wrote nothing).
    pub(super) needs_commit: bool,
}

/// How long a send waits for room in a busy peer's outbox before queueing offline instead.
const OUTBOX_WAIT: Duration = Duration::from_secs(5);

enum Target {
    Live(String, mpsc::Sender<Outbound>),
    Away(String),
}

impl Node {
    /// Picks the peer a send goes to: the one named, else the only connected one, else the
    /// only known one. Several candidates and no name is an error listing them.
    fn pick_target(&self, wanted: Option<&str>, message_id: Option<&str>) -> NodeResult<Target> {
        let peers = self.lock_peers();
        let peer = match wanted {
            Some(key) => peers
                .resolve(key)
                .filter(|p| !p.record.removed)
                .ok_or_else(|| {
                    NodeError::not_found(format!(
                        "peer '{key}' not found; GET /peers lists known peers"
                    ))
                    .with_message_id(message_id)
                })?,
            None => {
                let connected: Vec<_> = peers.active().filter(|p| p.connected).collect();
                match connected.len() {
                    1 => connected[0],
                    0 => {
                        let known: Vec<_> = peers.active().collect();
                        match known.len() {
                            1 => known[0],
                            0 => {
                                return Err(NodeError::new(
                                    ErrorCode::NotConnected,
                                    "no peer connected: connect first with POST /peers/connect {\"link\": \"acp://…\"} \
                                     or share this node's link (GET /link)",
                                )
                                .with_message_id(message_id));
                            }
                            n => {
                                return Err(NodeError::new(
                                    ErrorCode::AmbiguousPeer,
                                    format!("no peer connected and {n} known; specify 'peer_id'"),
                                )
                                .with_message_id(message_id)
                                .with_field(
                                    "known_peers",
                                    json!(known.iter().map(|p| &p.record.id).collect::<Vec<_>>()),
                                ));
                            }
                        }
                    }
                    n => {
                        return Err(NodeError::new(
                            ErrorCode::AmbiguousPeer,
                            format!(
                                "multiple peers connected ({n}); specify 'peer_id' in the request body \
                                 or use POST /peer/{{id}}/send for directed delivery"
                            ),
                        )
                        .with_message_id(message_id)
                        .with_field("connected_peers", json!(peers.connected_ids())));
                    }
                }
            }
        };
        let target = match (&peer.outbox, peer.connected) {
            (Some(tx), true) => Target::Live(peer.record.id.clone(), tx.clone()),
            _ => {
                if peer.queue.len() >= self.inner.config.offline_queue_limit {
                    return Err(NodeError::new(
                        ErrorCode::QueueFull,
                        format!(
                            "offline queue for peer '{}' is full ({} messages); wait for the peer to reconnect",
                            peer.record.id,
                            peer.queue.len()
                        ),
                    )
                    .with_message_id(message_id));
                }
                Target::Away(peer.record.id.clone())
            }
        };
        if peer.confirms_delivery() && peer.unconfirmed.len() >= MAX_UNCONFIRMED {
            return Err(NodeError::new(
                ErrorCode::QueueFull,
                format!(
                    "peer '{}' has not confirmed {} messages yet; wait for it to catch up",
                    peer.record.id,
                    peer.unconfirmed.len()
                ),
            )
            .with_message_id(message_id));
        }
        Ok(target)
    }

    /// The error for a message over `--max-msg-size` (the reference's text).
    fn too_large(&self, message_id: &str) -> NodeError {
        NodeError::new(
            ErrorCode::MsgTooLarge,
            format!(
                "message too large (max {} bytes)",
                self.inner.config.max_msg_size
            ),
        )
        .with_message_id(Some(message_id))
    }

    /// The peer a send would go to (named, the only connected one, or the only known one),
    /// with the same errors a send gives.
    pub fn target_peer(&self, wanted: Option<&str>) -> NodeResult<String> {
        Ok(match self.pick_target(wanted, None)? {
            Target::Live(id, _) | Target::Away(id) => id,
        })
    }

    /// Puts this node's HMAC (`sig`, over `message_id` and `ts`) on a frame when a secret is
    /// configured: what peers sharing the secret check.
    pub(crate) fn stamp_hmac(&self, frame: &mut Map<String, Value>) {
        if let Some(signer) = self.signer() {
            let text = |k: &str| {
                frame
                    .get(k)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned()
            };
            let (id, ts) = (text("message_id"), text("ts"));
            frame.insert("sig".into(), Value::from(signer.sign(&id, &ts)));
        }
    }

    /// Signs a frame in place: HMAC (`sig`) when a secret is configured, then the Ed25519
    /// `identity` block over the frame including `sig` (the reference's order), unless
    /// `--no-sign-frames`.
    pub(crate) fn sign_frame(&self, frame: &mut Map<String, Value>) {
        self.stamp_hmac(frame);
        if self.inner.config.sign_frames {
            self.inner.identity.sign_frame(frame);
        }
    }

    /// Sends a message: validates the target, stores the message durably, hands it to the
    /// peer or its offline queue, and for `sync` waits for the reply.
    pub async fn send(&self, req: SendRequest) -> NodeResult<SendOutcome> {
        let submitted = self.submit_send(req).await?;
        if submitted.needs_commit {
            self.inner.store.flush().await?;
        }
        self.finish_send(submitted).await
    }

    /// The part of a send that decides its order: checks, numbering, the store write (queued,
    /// not yet committed), the hand-over to the peer's outbox or offline queue and the event.
    /// Sends submitted one after another reach the peer in that order. The caller awaits the
    /// commit (`Store::flush`, once for any number of submitted sends) before
    /// [`Node::finish_send`]: nothing is answered as accepted before it is durable.
    pub(super) async fn submit_send(&self, req: SendRequest) -> NodeResult<Submitted> {
        ensure_writable(self).map_err(|e| e.with_message_id(req.message_id.as_deref()))?;
        let target = self.pick_target(req.peer_id.as_deref(), req.message_id.as_deref())?;
        let message_id = req.message_id.clone().unwrap_or_else(make_message_id);
        let ts = now_iso();
        let mut frame = Map::new();
        frame.insert("type".into(), json!("acp.message"));
        frame.insert("message_id".into(), json!(message_id));
        frame.insert("ts".into(), json!(ts));
        frame.insert("from".into(), json!(self.name()));
        frame.insert("role".into(), json!(req.role));
        frame.insert("parts".into(), Value::Array(req.parts.clone()));
        if let Some(t) = &req.task_id {
            frame.insert("task_id".into(), json!(t));
        }
        if let Some(c) = &req.context_id {
            frame.insert("context_id".into(), json!(c));
        }
        if req.sync {
            frame.insert("correlation_id".into(), json!(message_id));
        }
        // Size check before anything is stored or numbered: the parts are measured without
        // building a string; the frame is serialized once, further down.
        let estimate = json_len(&req.parts)
            + message_id.len()
            + self.name().len()
            + 400
            + req.task_id.as_ref().map_or(0, String::len)
            + req.context_id.as_ref().map_or(0, String::len);
        if estimate > self.inner.config.max_msg_size {
            return Err(self.too_large(&message_id));
        }
        let peer_id = match &target {
            Target::Live(id, _) | Target::Away(id) => id.clone(),
        };
        // Reserve the id and number it atomically: a second send with the same id (even a
        // concurrent one) gets the first one's server_seq and sends nothing.
        let server_seq = {
            let mut sent = self
                .inner
                .sent_ids
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if let Some(seq) = sent.get(&message_id) {
                return Ok(Submitted {
                    outcome: SendOutcome {
                        message_id,
                        server_seq: seq,
                        peer_id: String::new(),
                        delivery: Delivery::Duplicate,
                        task: None,
                        reply: None,
                        queue_depth: 0,
                    },
                    waiter: None,
                    timeout: 0.0,
                    needs_commit: false,
                });
            }
            let seq = self.inner.server_seq.fetch_add(1, Ordering::Relaxed) as i64 + 1;
            sent.insert(&message_id, seq);
            seq
        };
        let mut task = None;
        if req.create_task {
            let created = self.create_task_internal(
                json!({"role": req.role, "parts": req.parts}),
                None,
                Some(message_id.clone()),
                req.context_id.clone(),
                Some(peer_id.clone()),
            )?;
            let working =
                self.apply_task_change(&created.id, TaskState::Working, None, None, None, false)?;
            frame.insert("task_id".into(), json!(working.id));
            task = Some(working);
        }
        frame.insert("server_seq".into(), json!(server_seq));
        self.sign_frame(&mut frame);
        let frame = Value::Object(frame);
        let json: Arc<str> = frame.to_string().into();
        if json.len() > self.inner.config.max_msg_size {
            self.inner
                .sent_ids
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .forget(&message_id);
            return Err(self.too_large(&message_id));
        }

        let task_id = frame
            .get("task_id")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let row = MessageRow {
            message_id: message_id.clone(),
            direction: "outbound",
            peer_id: Some(peer_id.clone()),
            sender: Some(self.name().to_owned()),
            role: req.role.clone(),
            task_id: task_id.clone(),
            context_id: req.context_id.clone(),
            server_seq: Some(server_seq),
            ts,
            received_at: now_unix(),
            consumed: true,
            frame,
            local_seq: 0,
        };
        self.inner
            .store
            .write(WriteOp::InsertMessage(Box::new(row), Some(json.clone())));
        self.await_confirmation(&peer_id, server_seq, &message_id);
        let waiter = req.sync.then(|| self.await_reply_to(&message_id));

        // Handed to the live connection, or (peer away, or its outbox closed or full for
        // OUTBOX_WAIT) put into the offline queue.
        let handed_over = match target {
            Target::Live(_, tx) => {
                let out = Outbound::Frame {
                    message_id: message_id.clone(),
                    json: json.clone(),
                };
                tx.send_timeout(out, OUTBOX_WAIT).await.is_ok()
            }
            Target::Away(_) => false,
        };
        let (delivery, queue_depth) = if handed_over {
            (Delivery::Sent, 0)
        } else {
            let frame = serde_json::from_str(&json).unwrap_or(Value::Null);
            let depth = self.enqueue_offline(&peer_id, &message_id, frame);
            (Delivery::Queued, depth)
        };
        if delivery == Delivery::Sent {
            self.count_sent(&peer_id);
        }
        let mut event = Map::new();
        event.insert("message_id".into(), json!(message_id));
        event.insert("role".into(), json!(req.role));
        event.insert("parts".into(), Value::Array(req.parts));
        event.insert("task_id".into(), json!(task_id));
        event.insert("context_id".into(), json!(req.context_id));
        event.insert("direction".into(), json!("outbound"));
        event.insert("peer_id".into(), json!(peer_id));
        event.insert("server_seq".into(), json!(server_seq));
        self.inner.events.emit("message", event);
        Ok(Submitted {
            outcome: SendOutcome {
                message_id,
                server_seq,
                peer_id,
                delivery,
                task,
                reply: None,
                queue_depth,
            },
            waiter,
            timeout: req.timeout,
            needs_commit: true,
        })
    }

    /// The rest of a submitted send once its writes are committed: for `sync`, the wait for
    /// the peer's reply (and the task it completes or fails).
    pub(super) async fn finish_send(&self, submitted: Submitted) -> NodeResult<SendOutcome> {
        let Submitted {
            outcome,
            waiter,
            timeout,
            ..
        } = submitted;
        let SendOutcome {
            message_id,
            server_seq,
            peer_id,
            delivery,
            mut task,
            queue_depth,
            ..
        } = outcome;
        let reply = match waiter {
            None => None,
            Some(rx) => {
                let timeout = Duration::from_secs_f64(timeout);
                let result = tokio::time::timeout(timeout, rx).await;
                self.inner
                    .sync_pending
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&message_id);
                match result {
                    Ok(Ok(reply)) => {
                        if let Some(t) = &task {
                            let artifact =
                                json!({"parts": reply.get("parts").cloned().unwrap_or(json!([]))});
                            task = Some(self.apply_task_change(
                                &t.id,
                                TaskState::Completed,
                                Some(artifact),
                                None,
                                None,
                                true,
                            )?);
                        }
                        Some(reply)
                    }
                    _ => {
                        if let Some(t) = &task {
                            let _ = self.apply_task_change(
                                &t.id,
                                TaskState::Failed,
                                None,
                                Some(json!("reply timeout")),
                                None,
                                true,
                            );
                        }
                        return Err(NodeError::new(ErrorCode::Timeout, "reply timeout")
                            .with_message_id(Some(&message_id)));
                    }
                }
            }
        };
        Ok(SendOutcome {
            message_id,
            server_seq,
            peer_id,
            delivery,
            task,
            reply,
            queue_depth,
        })
    }

    /// Notes a stored message to a peer that confirms delivery: it is re-sent after a
    /// reconnect or restart until the peer says it has committed it.
    fn await_confirmation(&self, peer_id: &str, server_seq: i64, message_id: &str) {
        let first = {
            let mut peers = self.lock_peers();
            let Some(p) = peers.peers.get_mut(peer_id) else {
                return;
            };
            if !p.confirms_delivery() {
                return;
            }
            p.unconfirmed.add(server_seq, message_id);
            let first = p.record.ack_since == 0;
            if first {
                p.record.ack_since = server_seq;
                p.record.acked_seq = p.record.acked_seq.max(server_seq - 1);
            }
            first
        };
        if first {
            self.persist_peer(peer_id);
        }
    }

    /// An `acp.ack` from a peer: these messages are in its store. Moves the peer's watermark
    /// (persisted) and tells SSE/MCP clients with a `delivered` event.
    pub(crate) fn on_ack(&self, peer_id: &str, ids: &[String]) {
        let (confirmed, acked_seq, moved) = {
            let mut peers = self.lock_peers();
            let Some(p) = peers.peers.get_mut(peer_id) else {
                return;
            };
            let confirmed = p.unconfirmed.confirm(ids.iter().map(String::as_str));
            if confirmed.is_empty() {
                return;
            }
            let watermark = p.unconfirmed.watermark(p.record.acked_seq);
            p.record.acked_seq = watermark;
            (
                confirmed,
                watermark,
                p.unconfirmed.should_persist(watermark),
            )
        };
        if moved {
            self.persist_peer(peer_id);
        }
        let mut ev = Map::new();
        ev.insert("peer_id".into(), json!(peer_id));
        ev.insert("message_ids".into(), json!(confirmed));
        ev.insert("acked_seq".into(), json!(acked_seq));
        self.inner.events.emit("delivered", ev);
    }

    /// The frames a peer that confirms delivery has not confirmed, oldest first, to be
    /// written before anything else when it connects again. Frames that wait in its offline
    /// queue are left out (the queue sends them); signed frames get a fresh signature.
    pub async fn unconfirmed_frames(&self, peer_id: &str) -> NodeResult<Vec<Outbound>> {
        let wanted: Vec<(i64, String)> = {
            let peers = self.lock_peers();
            let Some(p) = peers.peers.get(peer_id) else {
                return Ok(Vec::new());
            };
            if !p.confirms_delivery() {
                return Ok(Vec::new());
            }
            p.unconfirmed
                .ids()
                .filter(|(_, id)| !p.queue.contains(id))
                .map(|(seq, id)| (*seq, id.clone()))
                .collect()
        };
        self.outbound_frames(peer_id, wanted).await
    }

    /// The stored frames of these outbound messages to `peer_id` (`(server_seq, id)`, in
    /// send order), ready to be written again; signed frames get a fresh signature.
    pub(crate) async fn outbound_frames(
        &self,
        peer_id: &str,
        wanted: Vec<(i64, String)>,
    ) -> NodeResult<Vec<Outbound>> {
        let (Some(first), Some(last)) = (wanted.first(), wanted.last()) else {
            return Ok(Vec::new());
        };
        let (lo, hi, peer) = (first.0, last.0, peer_id.to_owned());
        let mut frames: HashMap<String, String> = self
            .inner
            .store
            .read(move |conn| {
                let mut stmt = conn.prepare(
                    "SELECT message_id, frame FROM messages INDEXED BY messages_outbound_seq
                     WHERE direction = 'outbound' AND server_seq BETWEEN ?1 AND ?2 AND peer_id = ?3",
                )?;
                stmt.query_map(rusqlite::params![lo, hi, peer], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?
                .collect()
            })
            .await?;
        let mut out = Vec::with_capacity(wanted.len());
        for (_, id) in wanted {
            let Some(text) = frames.remove(&id) else {
                continue;
            };
            let json: Arc<str> = match self.signer() {
                None => text.into(),
                Some(_) => match serde_json::from_str::<Value>(&text) {
                    Ok(Value::Object(mut frame)) => {
                        self.sign_again(&mut frame);
                        Value::Object(frame).to_string().into()
                    }
                    _ => text.into(),
                },
            };
            out.push(Outbound::Frame {
                message_id: id,
                json,
            });
        }
        Ok(out)
    }

    /// Adds `delivery` to outbound `/messages` entries: `delivered` once the peer confirmed
    /// the message, `sent` before (and for peers that do not confirm), `failed` (with
    /// `delivery_error`) when a bridged peer refused it.
    pub(crate) fn mark_delivery(&self, rows: &[MessageRow], entries: &mut [Value]) {
        let peers = self.lock_peers();
        for (row, entry) in rows.iter().zip(entries.iter_mut()) {
            if row.direction != "outbound" {
                continue;
            }
            let confirmed = match (&row.peer_id, row.server_seq) {
                (Some(p), Some(seq)) => peers.peers.get(p).is_some_and(|p| p.confirmed(seq)),
                _ => false,
            };
            let refused = row
                .peer_id
                .as_ref()
                .and_then(|p| peers.peers.get(p))
                .and_then(|p| p.refused.get(&row.message_id));
            if let (Some(reason), Some(obj)) = (refused, entry.as_object_mut()) {
                obj.insert("delivery".into(), json!("failed"));
                obj.insert("delivery_error".into(), json!(reason));
                continue;
            }
            if let Some(obj) = entry.as_object_mut() {
                obj.insert(
                    "delivery".into(),
                    json!(if confirmed { "delivered" } else { "sent" }),
                );
            }
        }
    }

    fn count_sent(&self, peer_id: &str) {
        self.inner
            .counters
            .messages_sent
            .fetch_add(1, Ordering::Relaxed);
        if let Some(p) = self.lock_peers().peers.get_mut(peer_id) {
            p.record.messages_sent += 1;
        }
    }

    /// Puts a frame into a peer's offline queue (memory and store); returns the new depth.
    pub(crate) fn enqueue_offline(&self, peer_id: &str, message_id: &str, frame: Value) -> usize {
        let row = QueuedRow {
            id: self.next_queue_id(),
            peer_id: peer_id.to_owned(),
            message_id: message_id.to_owned(),
            frame,
            queued_at: now_iso(),
        };
        let mut peers = self.lock_peers();
        let Some(peer) = peers.peers.get_mut(peer_id) else {
            return 0;
        };
        self.inner
            .store
            .write(WriteOp::Enqueue(Box::new(row.clone())));
        // If the peer came back between the target check and now, hand the frame to it so it
        // is not stranded until the next reconnect.
        if peer.connected
            && let Some(tx) = &peer.outbox
        {
            match tx.try_send(Outbound::Queued(row)) {
                Ok(()) => return peer.queue.len(),
                Err(mpsc::error::TrySendError::Full(Outbound::Queued(r)))
                | Err(mpsc::error::TrySendError::Closed(Outbound::Queued(r))) => {
                    peer.queue.push(r);
                    return peer.queue.len();
                }
                Err(_) => return peer.queue.len(),
            }
        }
        peer.queue.push(row);
        peer.queue.len()
    }

    /// Sends a frame that is not a message (task updates, delegation, replies) to a peer, or
    /// queues it when the peer is away. Returns the delivery state.
    pub(crate) async fn send_control(
        &self,
        peer_id: &str,
        mut frame: Map<String, Value>,
    ) -> Delivery {
        self.sign_frame(&mut frame);
        let message_id = frame
            .get("message_id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let frame = Value::Object(frame);
        let tx = {
            let peers = self.lock_peers();
            peers
                .peers
                .get(peer_id)
                .and_then(|p| p.outbox.clone().filter(|_| p.connected))
        };
        if let Some(tx) = tx {
            let out = Outbound::Frame {
                message_id: message_id.clone(),
                json: frame.to_string().into(),
            };
            if tx.send_timeout(out, OUTBOX_WAIT).await.is_ok() {
                return Delivery::Sent;
            }
        }
        if self.lock_peers().peers.contains_key(peer_id) {
            self.enqueue_offline(peer_id, &message_id, frame);
        }
        Delivery::Queued
    }

    /// `/reply`: answers a synchronous send of a peer (`acp.reply` with `correlation_id`).
    pub async fn reply(&self, body: &Value) -> NodeResult<Value> {
        ensure_writable(self)?;
        let Some(obj) = body.as_object() else {
            return Err(NodeError::invalid("request body must be a JSON object"));
        };
        let corr = super::message::opt_str(obj, "correlation_id")?
            .ok_or_else(|| NodeError::invalid("missing required field: correlation_id"))?;
        let parts = match obj.get("parts") {
            Some(p) if !p.is_null() => Some(Value::Array(
                super::message::validate_parts(p).map_err(NodeError::invalid)?,
            )),
            _ => match obj.get("text").or_else(|| obj.get("content")) {
                Some(Value::String(s)) => Some(json!([super::message::text_part(s)])),
                None | Some(Value::Null) => None,
                Some(_) => return Err(NodeError::invalid("'text' must be a string")),
            },
        };
        if parts.is_none() && obj.get("content").is_none() {
            return Err(NodeError::invalid(
                "provide 'parts' (list) or 'text' (string) for the reply",
            ));
        }
        let peer_id = match super::message::opt_str(obj, "peer_id")? {
            Some(key) => self
                .lock_peers()
                .resolve(&key)
                .map(|p| p.record.id.clone())
                .ok_or_else(|| NodeError::not_found(format!("peer '{key}' not found")))?,
            None => self.peer_of_inbound(&corr).await?.ok_or_else(|| {
                NodeError::not_found(format!(
                    "no received message with id '{corr}' to reply to; pass 'peer_id' to reply anyway"
                ))
            })?,
        };
        let frame =
            crate::wire::frame::reply(self.name(), &corr, obj.get("content"), parts.as_ref());
        let Value::Object(frame) = frame else {
            unreachable!("reply frame is an object")
        };
        let message_id = frame.get("message_id").cloned().unwrap_or(Value::Null);
        let delivery = self.send_control(&peer_id, frame).await;
        self.inner.store.flush().await?;
        Ok(
            json!({"ok": true, "message_id": message_id, "correlation_id": corr, "peer_id": peer_id, "delivery": delivery.as_str()}),
        )
    }

    async fn peer_of_inbound(&self, message_id: &str) -> NodeResult<Option<String>> {
        let id = message_id.to_owned();
        let found: Option<Option<String>> = self
            .inner
            .store
            .read(move |conn| {
                use rusqlite::OptionalExtension;
                conn.query_row(
                    "SELECT peer_id FROM messages WHERE direction = 'inbound' AND message_id = ?1",
                    [id],
                    |r| r.get(0),
                )
                .optional()
            })
            .await?;
        Ok(found.flatten())
    }

    /// Registers a waiter for the `acp.reply` whose `correlation_id` is `corr`.
    fn await_reply_to(&self, corr: &str) -> oneshot::Receiver<Value> {
        let (tx, rx) = oneshot::channel();
        self.inner
            .sync_pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(corr.to_owned(), tx);
        rx
    }

    /// `/wait/{correlation_id}`: waits for the `acp.reply` to a synchronous send.
    pub async fn wait_reply(&self, corr: &str, timeout: Duration) -> NodeResult<Value> {
        let rx = self.await_reply_to(corr);
        let result = tokio::time::timeout(timeout, rx).await;
        self.inner
            .sync_pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(corr);
        match result {
            Ok(Ok(reply)) => Ok(json!({"ok": true, "reply": reply})),
            _ => Err(NodeError::new(ErrorCode::Timeout, "timeout")),
        }
    }

    /// Called by the wire layer once a peer's handshake is done. Attaches the outbox and
    /// moves the offline queue into it, in order, before any new frame can get in.
    pub fn attach_connection(
        &self,
        peer_id: &str,
        outbox: mpsc::Sender<Outbound>,
        remote: Option<String>,
        kind: ConnectionType,
    ) -> u64 {
        let (generation, flushed) = {
            let mut peers = self.lock_peers();
            let Some(peer) = peers.peers.get_mut(peer_id) else {
                return 0;
            };
            peer.generation += 1;
            peer.connected = true;
            if peer.attempts > 0 || peer.record.connected_at.is_some() {
                self.inner
                    .counters
                    .reconnect_count
                    .fetch_add(1, Ordering::Relaxed);
            }
            peer.attempts = 0;
            peer.last_error = None;
            peer.record.connected_at = Some(now_iso());
            peer.record.remote_address = remote;
            peer.connection_type = kind;
            let queued = peer.queue.take_all();
            let n = queued.len();
            let mut left = Vec::new();
            for row in queued {
                if let Err(e) = outbox.try_send(Outbound::Queued(row))
                    && let Outbound::Queued(r) = e.into_inner()
                {
                    left.push(r);
                }
            }
            peer.queue.restore(left);
            peer.outbox = Some(outbox);
            (peer.generation, n)
        };
        if flushed > 0 {
            tracing::info!(peer = peer_id, flushed, "flushing offline queue");
        }
        self.persist_peer(peer_id);
        let mut ev = Map::new();
        ev.insert("event".into(), json!("connected"));
        ev.insert("peer_id".into(), json!(peer_id));
        ev.insert("connection_type".into(), json!(kind.as_str()));
        ev.insert("session_id".into(), json!(self.inner.session_id));
        self.inner.events.emit("peer", ev);
        generation
    }

    /// Called by the session when its connection's path changes (iroh moved a relayed
    /// connection to a hole-punched path, or back): `/peers` shows it, and SSE watchers get
    /// a `peer` event `path_changed`.
    pub fn set_connection_type(&self, peer_id: &str, generation: u64, kind: ConnectionType) {
        {
            let mut peers = self.lock_peers();
            let Some(peer) = peers.peers.get_mut(peer_id) else {
                return;
            };
            if peer.generation != generation || peer.connection_type == kind {
                return;
            }
            peer.connection_type = kind;
        }
        tracing::info!(
            peer = peer_id,
            connection_type = kind.as_str(),
            "peer path changed"
        );
        let mut ev = Map::new();
        ev.insert("event".into(), json!("path_changed"));
        ev.insert("peer_id".into(), json!(peer_id));
        ev.insert("connection_type".into(), json!(kind.as_str()));
        self.inner.events.emit("peer", ev);
    }

    /// Called by the wire layer when a connection ends. Frames that were not written go back
    /// into the offline queue (in their original order) so nothing accepted is lost.
    pub fn detach_connection(&self, peer_id: &str, generation: u64, leftovers: Vec<Outbound>) {
        let mut requeue = Vec::new();
        {
            let mut peers = self.lock_peers();
            let Some(peer) = peers.peers.get_mut(peer_id) else {
                return;
            };
            for out in leftovers {
                match out {
                    Outbound::Queued(row) => requeue.push(row),
                    // Card pushes carry no id and are not worth re-sending later.
                    Outbound::Frame { message_id, .. } if message_id.is_empty() => {}
                    Outbound::Frame { message_id, json } => {
                        let frame: Value = serde_json::from_str(&json).unwrap_or(Value::Null);
                        let row = QueuedRow {
                            id: self.next_queue_id(),
                            peer_id: peer_id.to_owned(),
                            message_id,
                            frame,
                            queued_at: now_iso(),
                        };
                        self.inner
                            .store
                            .write(WriteOp::Enqueue(Box::new(row.clone())));
                        requeue.push(row);
                    }
                }
            }
            peer.queue.restore(requeue);
            if peer.generation != generation {
                // A newer connection is live: hand it what the old one did not write.
                drop(peers);
                self.pump_queue(peer_id);
                return;
            }
            peer.connected = false;
            peer.outbox = None;
            peer.record.disconnected_at = Some(now_iso());
        }
        self.persist_peer(peer_id);
        let mut ev = Map::new();
        ev.insert("event".into(), json!("disconnected"));
        ev.insert("peer_id".into(), json!(peer_id));
        self.inner.events.emit("peer", ev);
    }

    /// The text of a queued frame as it goes out: marked `_was_queued` (as the reference
    /// does) and, with a secret, stamped and signed now — a frame that waited longer than the
    /// replay window would otherwise be refused by the receiver after leaving our queue.
    pub fn queued_frame_text(&self, row: &QueuedRow) -> String {
        let mut frame = match &row.frame {
            Value::Object(m) => m.clone(),
            other => return other.to_string(),
        };
        if frame.get("type").and_then(Value::as_str) == Some("acp.message") {
            frame.insert("_was_queued".into(), Value::Bool(true));
        }
        self.sign_again(&mut frame);
        Value::Object(frame).to_string()
    }

    /// With a secret, stamps a frame that is sent again (from the offline queue, or as an
    /// unconfirmed re-send) with the time now and signs it again: its first `ts` may be
    /// older than the receiver's replay window by now. Signs it again with Ed25519 too.
    fn sign_again(&self, frame: &mut Map<String, Value>) {
        if self.signer().is_some() {
            frame.insert("ts".into(), json!(now_iso()));
        }
        // A changed frame (`_was_queued`, a new `ts`) needs a new Ed25519 signature too.
        if self.signer().is_some() || self.inner.config.sign_frames {
            self.sign_frame(frame);
        }
    }

    /// Moves frames waiting in a connected peer's offline queue into its outbox (frames that
    /// were queued while the outbox was full, or left over from an older connection).
    pub fn pump_queue(&self, peer_id: &str) {
        let mut peers = self.lock_peers();
        let Some(peer) = peers.peers.get_mut(peer_id) else {
            return;
        };
        let Some(tx) = peer.outbox.clone().filter(|_| peer.connected) else {
            return;
        };
        if peer.queue.is_empty() {
            return;
        }
        let mut left = Vec::new();
        for row in peer.queue.take_all() {
            if !left.is_empty() {
                left.push(row);
                continue;
            }
            if let Err(e) = tx.try_send(Outbound::Queued(row))
                && let Outbound::Queued(r) = e.into_inner()
            {
                left.push(r);
            }
        }
        peer.queue.restore(left);
    }

    /// Called by the wire layer after a queued frame was written to the socket.
    pub fn queued_frame_sent(&self, peer_id: &str, row_id: i64) {
        self.inner.store.write(WriteOp::Dequeue(vec![row_id]));
        self.inner
            .counters
            .messages_sent
            .fetch_add(1, Ordering::Relaxed);
        if let Some(p) = self.lock_peers().peers.get_mut(peer_id) {
            p.record.messages_sent += 1;
        }
    }

    /// `/offline-queue` (the reference's shape).
    pub fn offline_queue(&self) -> Value {
        let peers = self.lock_peers();
        let mut queue = Map::new();
        let mut total = 0;
        for p in peers.peers.values().filter(|p| !p.queue.is_empty()) {
            total += p.queue.len();
            queue.insert(p.record.id.clone(), p.queue.snapshot());
        }
        json!({"total_queued": total, "max_per_peer": self.inner.config.offline_queue_limit, "queue": queue})
    }

    /// Records a dial failure for `/peers` and returns the attempt number.
    pub fn note_dial_failure(&self, peer_id: &str, error: &str) -> u32 {
        let mut peers = self.lock_peers();
        match peers.peers.get_mut(peer_id) {
            Some(p) => {
                p.attempts += 1;
                p.last_error = Some(error.to_owned());
                p.attempts
            }
            None => 0,
        }
    }

    /// Whether a dialled peer should still be dialled (not removed, node running).
    pub fn should_dial(&self, peer_id: &str) -> Option<String> {
        if self.is_shutting_down() {
            return None;
        }
        let peers = self.lock_peers();
        peers
            .peers
            .get(peer_id)
            // A refused key change stops the dialling until the user accepts the new key.
            .filter(|p| p.record.dialed && !p.record.removed && p.record.key_change.is_none())
            .and_then(|p| p.record.link.clone())
    }

    /// Registers a peer that dialled us, binding it to an earlier entry of the same agent
    /// name (so its offline queue and counters carry over) or creating a new one.
    pub fn register_inbound(&self, agent_name: Option<&str>, card: Option<Value>) -> String {
        let id = {
            let mut peers = self.lock_peers();
            let existing = agent_name.and_then(|name| {
                peers
                    .peers
                    .values()
                    .find(|p| {
                        !p.connected
                            && !p.record.dialed
                            && !p.record.removed
                            && p.record.agent_name.as_deref() == Some(name)
                    })
                    .map(|p| p.record.id.clone())
            });
            match existing {
                Some(id) => {
                    if let Some(p) = peers.peers.get_mut(&id)
                        && card.is_some()
                    {
                        p.record.agent_card = card;
                    }
                    id
                }
                None => {
                    let id = peers.next_id();
                    let record = super::peers::PeerRecord {
                        id: id.clone(),
                        name: agent_name.map_or_else(|| id.clone(), str::to_owned),
                        agent_name: agent_name.map(str::to_owned),
                        agent_card: card,
                        ..Default::default()
                    };
                    peers
                        .peers
                        .insert(id.clone(), super::peers::Peer::new(record));
                    id
                }
            }
        };
        self.persist_peer(&id);
        id
    }
}

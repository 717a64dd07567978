//! `GET /ws/stream`: the node's event stream over a WebSocket, for clients that prefer one to
//! SSE. Same events, same `?since=` replay from the store and the same catching up of a slow
//! client as `/stream` (the [`Cursor`] is shared); one JSON text frame per event in the
//! reference's shape, `{"event":"acp.message","data":{…}}`.
//!
//! The node sends a ping every 15 s and closes a connection that has sent nothing (no pong)
//! for 60 s, or that has not taken one frame within 60 s: a client that stops reading holds
//! one frame and one replay page, never a growing queue, and not for ever.

use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::time::{Instant, MissedTickBehavior, timeout};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Bytes, Message};

use super::ApiResult;
use super::cursor::{Cursor, Filter, resume_point};
use super::extract::Params;
use super::ws_upgrade::{ApiSocket, WsUpgrade, close_politely};
use crate::node::Node;
use crate::node::events::Event;

/// How often the node pings a subscriber.
const PING_EVERY: Duration = Duration::from_secs(15);
/// A subscriber silent for longer (no pong, no frame) is gone.
const SILENT_LIMIT: Duration = Duration::from_secs(60);
/// Longest wait for the client to take one frame.
const WRITE_WAIT: Duration = Duration::from_secs(60);
/// Largest frame a subscriber may send (they are ignored, as the reference does).
const CLIENT_FRAME_MAX: usize = 64 * 1024;

/// `GET /ws/stream?since=N`: upgrades, then streams events until the client or the node
/// goes away.
pub async fn ws_stream(
    State(node): State<Node>,
    headers: HeaderMap,
    params: Params,
    upgrade: WsUpgrade,
) -> ApiResult<Response> {
    let since = resume_point(&params, &headers)?;
    // Subscribed before the 101 goes out: whatever happens once the client sees it, it gets.
    let cursor = Cursor::new(node.clone(), since, Filter::All);
    let config = WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(64 * 1024)
        .max_message_size(Some(CLIENT_FRAME_MAX))
        .max_frame_size(Some(CLIENT_FRAME_MAX));
    Ok(upgrade.serve(&node, config, move |socket| run(socket, cursor)))
}

/// What ended a subscription, for the close frame.
enum End {
    /// The node shuts down: 1001.
    NodeStopping,
    /// No pong for [`SILENT_LIMIT`]: 1008.
    Silent,
    /// The client closed, vanished or stopped reading: no close frame is worth waiting for.
    ClientGone,
}

async fn run(socket: ApiSocket, mut cursor: Cursor) {
    let (mut sink, mut incoming) = socket.split();
    let mut ping = tokio::time::interval_at(Instant::now() + PING_EVERY, PING_EVERY);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut heard = Instant::now();
    let end = loop {
        tokio::select! {
            ev = cursor.next() => {
                let Some(ev) = ev else { break End::NodeStopping };
                let frame = Message::text(ws_frame(&ev));
                if !matches!(timeout(WRITE_WAIT, sink.feed(frame)).await, Ok(Ok(()))) {
                    break End::ClientGone;
                }
                // Frames that are already at hand go out together, in one write.
                if !cursor.has_ready()
                    && !matches!(timeout(WRITE_WAIT, sink.flush()).await, Ok(Ok(())))
                {
                    break End::ClientGone;
                }
            }
            msg = incoming.next() => match msg {
                // Pings are answered by tungstenite; text and binary frames are ignored.
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break End::ClientGone,
                Some(Ok(_)) => heard = Instant::now(),
            },
            _ = ping.tick() => {
                if heard.elapsed() > SILENT_LIMIT {
                    break End::Silent;
                }
                if !matches!(timeout(WRITE_WAIT, sink.send(Message::Ping(Bytes::new()))).await, Ok(Ok(()))) {
                    break End::ClientGone;
                }
            }
        }
    };
    let close = match end {
        End::ClientGone => return,
        End::NodeStopping => CloseFrame {
            code: CloseCode::Away,
            reason: "node shutting down".into(),
        },
        End::Silent => CloseFrame {
            code: CloseCode::Policy,
            reason: "no pong for 60 s".into(),
        },
    };
    if let Ok(socket) = incoming.reunite(sink) {
        close_politely(socket, close, CLIENT_FRAME_MAX * 4).await;
    }
}

/// The reference's event name for an event type.
fn event_name(kind: &str) -> String {
    match kind {
        "message" => "acp.message".into(),
        "peer" => "acp.peer".into(),
        "status" => "acp.task.status".into(),
        "artifact" => "acp.task.artifact".into(),
        other => format!("acp.{other}"),
    }
}

/// One event as the reference frames it: `{"event": name, "data": event}`. `data` is the
/// event exactly as `/stream` sends it; a message event also gets the reference's
/// `timestamp` (its `ts`) and, when it has no `server_seq` of its own (inbound messages), the
/// event's `seq` as `server_seq`, which is what the reference puts there.
fn ws_frame(ev: &Event) -> String {
    let name = event_name(&ev.kind);
    if ev.kind != "message" {
        return format!(r#"{{"event":{},"data":{}}}"#, json!(name), ev.json);
    }
    let mut data = ev.body.clone();
    if let Value::Object(map) = &mut data {
        if let Some(ts) = map.get("ts").cloned() {
            map.entry("timestamp").or_insert(ts);
        }
        map.entry("server_seq").or_insert(json!(ev.seq));
    }
    json!({"event": name, "data": data}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(json: Value) -> Event {
        Event::from_json(json["seq"].as_u64().unwrap_or(0), json.to_string())
    }

    #[test]
    fn frames_have_the_reference_shape() {
        let status = event(
            json!({"type": "status", "ts": "t", "seq": 4, "task_id": "x", "state": "working"}),
        );
        let v: Value = serde_json::from_str(&ws_frame(&status)).unwrap();
        assert_eq!(v["event"], "acp.task.status");
        assert_eq!(v["data"]["seq"], 4);
        assert_eq!(v["data"]["state"], "working");

        let inbound = event(
            json!({"type": "message", "ts": "t1", "seq": 9, "message_id": "m", "parts": [], "direction": "inbound"}),
        );
        let v: Value = serde_json::from_str(&ws_frame(&inbound)).unwrap();
        assert_eq!(v["event"], "acp.message");
        assert_eq!(v["data"]["server_seq"], 9);
        assert_eq!(v["data"]["timestamp"], "t1");
        assert_eq!(v["data"]["message_id"], "m");

        let outbound = event(
            json!({"type": "message", "ts": "t", "seq": 10, "server_seq": 3, "direction": "outbound"}),
        );
        let v: Value = serde_json::from_str(&ws_frame(&outbound)).unwrap();
        assert_eq!(v["data"]["server_seq"], 3, "a message's own number is kept");

        let peer = event(json!({"type": "peer", "ts": "t", "seq": 11, "event": "connected"}));
        let v: Value = serde_json::from_str(&ws_frame(&peer)).unwrap();
        assert_eq!(v["event"], "acp.peer");
        let card = event(json!({"type": "card", "ts": "t", "seq": 12, "event": "updated"}));
        let v: Value = serde_json::from_str(&ws_frame(&card)).unwrap();
        assert_eq!(v["event"], "acp.card");
    }
}

//! Peer WebSocket frames. Inbound frames are classified by `type` while the original JSON is
//! kept (it is stored verbatim and fields we do not know survive); outbound frames are built
//! here so their shape matches the reference's field for field.

use serde_json::{Map, Value, json};

use crate::node::ids::{make_id, make_message_id, now_iso};

/// A classified inbound frame.
#[derive(Debug)]
pub enum Inbound {
    /// `acp.agent_card`: the peer's card.
    AgentCard(Value),
    /// `acp.message` (or any frame with `parts`): a business message.
    Message(Map<String, Value>),
    /// `acp.reply`: the answer to a synchronous send.
    Reply(Map<String, Value>),
    /// `task.updated`: the peer changed a task we share.
    TaskUpdated(Map<String, Value>),
    /// `task.delegate`: the peer hands us a task.
    TaskDelegate(Map<String, Value>),
    /// `error`: the peer refused something (e.g. `invalid_token`).
    Error(Map<String, Value>),
    /// `acp.ack`: the peer has committed these messages to its store (acp-relay peers only,
    /// negotiated by `capabilities.delivery_ack` in the card).
    Ack(Vec<String>),
    /// `acp.challenge_response`: a host's proof that it holds its key (read during the
    /// dialler's handshake; one arriving later is ignored).
    ChallengeResponse(Map<String, Value>),
    /// Any other object (a "legacy" frame of the reference).
    Other(Map<String, Value>),
}

/// Why a frame was refused before it reached the node.
#[derive(Debug, PartialEq, Eq)]
pub enum FrameError {
    /// Larger than `--max-msg-size`.
    TooLarge(usize),
    /// Not valid JSON, or not a JSON object.
    NotJson(String),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::TooLarge(n) => write!(f, "frame of {n} bytes over the size limit"),
            FrameError::NotJson(e) => write!(f, "frame is not a JSON object: {e}"),
        }
    }
}

/// Parses and classifies one text frame.
pub fn parse(text: &str, max_size: usize) -> Result<Inbound, FrameError> {
    if text.len() > max_size {
        return Err(FrameError::TooLarge(text.len()));
    }
    let value: Value =
        serde_json::from_str(text).map_err(|e| FrameError::NotJson(e.to_string()))?;
    let Value::Object(map) = value else {
        return Err(FrameError::NotJson("top level is not an object".into()));
    };
    let kind = map
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    Ok(match kind.as_str() {
        "acp.agent_card" => Inbound::AgentCard(map.get("card").cloned().unwrap_or(Value::Null)),
        "acp.reply" => Inbound::Reply(map),
        "task.updated" => Inbound::TaskUpdated(map),
        "task.delegate" => Inbound::TaskDelegate(map),
        "error" => Inbound::Error(map),
        "acp.ack" => Inbound::Ack(
            map.get("message_ids")
                .and_then(Value::as_array)
                .map(|ids| {
                    ids.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
        ),
        "acp.message" => Inbound::Message(map),
        "acp.challenge_response" => Inbound::ChallengeResponse(map),
        _ if map.get("parts").is_some_and(Value::is_array) => Inbound::Message(map),
        _ => Inbound::Other(map),
    })
}

/// The card frame both sides send right after the connection opens.
pub fn agent_card(card: &Value) -> Value {
    json!({"type": "acp.agent_card", "message_id": make_id("card"), "ts": now_iso(), "card": card})
}

/// The card frame a dialler sends, asking the host to sign `nonce` with its key (the
/// `challenge` field is acp-relay's; the reference ignores it).
pub fn agent_card_with_challenge(card: &Value, nonce: &str) -> Value {
    let mut frame = agent_card(card);
    frame["challenge"] = Value::from(nonce);
    frame
}

/// The `task.updated` frame sent when a shared task changes here.
pub fn task_updated(from: &str, task_id: &str, status: &str, artifact: Option<&Value>) -> Value {
    json!({
        "type": "task.updated",
        "message_id": make_message_id(),
        "ts": now_iso(),
        "from": from,
        "task_id": task_id,
        "status": status,
        "artifact": artifact.cloned().unwrap_or(Value::Null),
    })
}

/// The `task.delegate` frame sent for `POST /tasks` with `delegate: true`.
pub fn task_delegate(from: &str, task_id: &str, payload: &Value) -> Value {
    json!({
        "type": "task.delegate",
        "message_id": make_message_id(),
        "ts": now_iso(),
        "from": from,
        "task_id": task_id,
        "payload": payload,
    })
}

/// The `acp.reply` frame answering a synchronous send.
pub fn reply(
    from: &str,
    correlation_id: &str,
    content: Option<&Value>,
    parts: Option<&Value>,
) -> Value {
    json!({
        "type": "acp.reply",
        "message_id": make_message_id(),
        "ts": now_iso(),
        "from": from,
        "correlation_id": correlation_id,
        "content": content.cloned().unwrap_or(Value::Null),
        "parts": parts.cloned().unwrap_or(Value::Null),
    })
}

/// The confirmation of a batch of message frames, sent once they are committed to the store.
pub fn ack(message_ids: &[String]) -> Value {
    json!({"type": "acp.ack", "message_ids": message_ids})
}

/// Tells a peer that these message frames were not stored (this node's store is full, code
/// `storage_full`; or the peer is over its limits here, `rate_limited` / `quota_exceeded`):
/// the peer keeps them unconfirmed and sends them again after `retry_after_ms`. An `error` frame, so a peer that does not know the code (the Python
/// reference) logs it as it logs any peer error.
pub fn hold(code: &str, message_ids: &[String], retry_after_ms: u64, message: &str) -> Value {
    json!({
        "type": "error",
        "code": code,
        "message": message,
        "message_ids": message_ids,
        "retry_after_ms": retry_after_ms,
    })
}

/// The ids of a [`hold`] frame: an `error` frame with a `message_ids` list of strings (at
/// most [`MAX_HELD_IDS`]; other entries are ignored).
pub fn held_ids(map: &Map<String, Value>) -> Option<Vec<String>> {
    let ids = map.get("message_ids")?.as_array()?;
    Some(
        ids.iter()
            .filter_map(Value::as_str)
            .take(MAX_HELD_IDS)
            .map(str::to_owned)
            .collect(),
    )
}

/// Most ids one hold frame is read for (a sender has at most 10,000 unconfirmed per peer).
pub const MAX_HELD_IDS: usize = 10_000;

/// The wait a [`hold`] frame asks for, bounded to 250 ms – 60 s (2 s when absent or bad).
pub fn retry_after(map: &Map<String, Value>) -> std::time::Duration {
    let ms = map
        .get("retry_after_ms")
        .and_then(Value::as_u64)
        .unwrap_or(2_000)
        .clamp(250, 60_000);
    std::time::Duration::from_millis(ms)
}

/// The error frame a host sends before closing a connection with a bad token.
pub fn invalid_token() -> Value {
    json!({"type": "error", "code": "invalid_token"})
}

/// The error frame a host sends before closing a connection it cannot take because it
/// already holds `--max-peers` peers (the protocol's `error` frame with a code of our own; the
/// close that follows has code 1013, "try again later").
pub fn too_many_peers() -> Value {
    json!({"type": "error", "code": "too_many_peers"})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{arb_json, arb_object, arb_string, config};
    use proptest::prelude::*;

    #[test]
    fn classifies_frames() {
        assert!(matches!(
            parse(r#"{"type":"acp.message","parts":[]}"#, 1024),
            Ok(Inbound::Message(_))
        ));
        assert!(matches!(
            parse(r#"{"type":"acp.agent_card","card":{"name":"x"}}"#, 1024),
            Ok(Inbound::AgentCard(_))
        ));
        assert!(
            matches!(parse(r#"{"type":"weird"}"#, 1024), Ok(Inbound::Other(m)) if m.get("type").and_then(|t| t.as_str()) == Some("weird"))
        );
        assert!(matches!(
            parse("not json", 1024),
            Err(FrameError::NotJson(_))
        ));
        assert!(matches!(parse("[1,2]", 1024), Err(FrameError::NotJson(_))));
        assert_eq!(
            parse(&"x".repeat(2000), 1024).unwrap_err(),
            FrameError::TooLarge(2000)
        );
    }

    /// The variant a frame must get, written from the protocol's rules rather than the code's.
    fn kind_of(map: &Map<String, Value>) -> &'static str {
        match map.get("type").and_then(Value::as_str) {
            Some("acp.agent_card") => "agent_card",
            Some("acp.reply") => "reply",
            Some("task.updated") => "task_updated",
            Some("task.delegate") => "task_delegate",
            Some("error") => "error",
            Some("acp.ack") => "ack",
            Some("acp.message") => "message",
            Some("acp.challenge_response") => "challenge_response",
            _ if map.get("parts").is_some_and(Value::is_array) => "message",
            _ => "other",
        }
    }

    /// The variant's name and the object it kept (for a card frame, the card itself).
    fn split(frame: Inbound) -> (&'static str, Value) {
        match frame {
            Inbound::AgentCard(card) => ("agent_card", card),
            Inbound::Message(m) => ("message", Value::Object(m)),
            Inbound::Reply(m) => ("reply", Value::Object(m)),
            Inbound::TaskUpdated(m) => ("task_updated", Value::Object(m)),
            Inbound::TaskDelegate(m) => ("task_delegate", Value::Object(m)),
            Inbound::Error(m) => ("error", Value::Object(m)),
            Inbound::Other(m) => ("other", Value::Object(m)),
            Inbound::ChallengeResponse(m) => ("challenge_response", Value::Object(m)),
            Inbound::Ack(ids) => ("ack", json!(ids)),
        }
    }

    /// Parses what a builder made, as a peer would receive it.
    fn reparse(built: &Value) -> (&'static str, Value) {
        split(parse(&built.to_string(), usize::MAX).expect("a built frame parses"))
    }

    proptest! {
        #![proptest_config(config(256))]

        /// Arbitrary text never panics; over the limit it is refused by size, before parsing.
        #[test]
        fn prop_frame_arbitrary_text_never_panics(text in any::<String>(), max in 0usize..64) {
            match parse(&text, max) {
                Err(FrameError::TooLarge(n)) => prop_assert!(n == text.len() && n > max),
                _ => prop_assert!(text.len() <= max),
            }
        }

        /// Any JSON value: objects are classified by their `type` and kept whole (unknown
        /// fields survive); anything else is `NotJson`.
        #[test]
        fn prop_frame_arbitrary_json_is_classified_and_kept(value in arb_json()) {
            let text = value.to_string();
            match (&value, parse(&text, text.len())) {
                (Value::Object(map), Ok(frame)) => {
                    let (kind, kept) = split(frame);
                    prop_assert_eq!(kind, kind_of(map));
                    if kind == "agent_card" {
                        prop_assert_eq!(kept, map.get("card").cloned().unwrap_or(Value::Null));
                    } else if kind == "ack" {
                        // Only the string ids of `message_ids` are kept; the rest is noise.
                        let ids: Vec<&str> = map
                            .get("message_ids")
                            .and_then(Value::as_array)
                            .map(|a| a.iter().filter_map(Value::as_str).collect())
                            .unwrap_or_default();
                        prop_assert_eq!(kept, json!(ids));
                    } else {
                        prop_assert_eq!(kept, value.clone());
                    }
                }
                (Value::Object(_), Err(e)) => prop_assert!(false, "object refused: {e}"),
                (_, res) => prop_assert!(matches!(res, Err(FrameError::NotJson(_)))),
            }
        }

        /// An object with typical frame fields; one byte over the limit is refused by size.
        #[test]
        fn prop_frame_objects_and_size_limit(map in arb_object()) {
            let value = Value::Object(map.clone());
            let text = value.to_string();
            let (kind, _) = split(parse(&text, text.len()).expect("an object parses"));
            prop_assert_eq!(kind, kind_of(&map));
            prop_assert_eq!(
                parse(&text, text.len() - 1).unwrap_err(),
                FrameError::TooLarge(text.len())
            );
        }

        /// Every frame this module builds parses back to its own variant, field for field.
        #[test]
        fn prop_frame_built_frames_round_trip(
            from in arb_string(),
            id in arb_string(),
            status in arb_string(),
            card in arb_json(),
            payload in arb_json(),
            artifact in proptest::option::of(arb_json()),
            content in proptest::option::of(arb_json()),
            parts in proptest::option::of(arb_json()),
        ) {
            let built = agent_card(&card);
            prop_assert_eq!(reparse(&built), ("agent_card", card));

            let built = task_updated(&from, &id, &status, artifact.as_ref());
            prop_assert_eq!(reparse(&built), ("task_updated", built.clone()));
            prop_assert_eq!(&built["artifact"], artifact.as_ref().unwrap_or(&Value::Null));

            let built = task_delegate(&from, &id, &payload);
            prop_assert_eq!(reparse(&built), ("task_delegate", built.clone()));
            prop_assert_eq!(&built["payload"], &payload);

            let built = reply(&from, &id, content.as_ref(), parts.as_ref());
            prop_assert_eq!(reparse(&built), ("reply", built.clone()));
            prop_assert_eq!(&built["correlation_id"], &Value::from(id.as_str()));

            let built = invalid_token();
            prop_assert_eq!(reparse(&built), ("error", built.clone()));

            let ids = vec![id.clone(), from.clone()];
            prop_assert_eq!(reparse(&ack(&ids)), ("ack", json!(ids)));
        }
    }
}

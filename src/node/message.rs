//! Messages and their parts: validation of what clients send (with the reference's error
//! texts, which name the offending part), and the JSON shapes `/recv`, `/messages` and
//! `/context/{id}/messages` return.

use serde_json::{Map, Value, json};

use super::error::{NodeError, NodeResult};

/// Most parts one message may carry.
pub const MAX_PARTS: usize = 256;
/// Longest id (message, task, context, peer) a client may choose.
pub const MAX_ID_LEN: usize = 128;

/// Checks one part; the error text is the reference's.
fn validate_part(part: &Value) -> Result<(), String> {
    let Some(obj) = part.as_object() else {
        return Err("part must be an object".into());
    };
    match obj.get("type").and_then(Value::as_str) {
        Some("text") => {
            if !obj.get("content").is_some_and(Value::is_string) {
                return Err("text part requires string 'content'".into());
            }
        }
        Some("file") => {
            let url_ok = obj
                .get("url")
                .and_then(Value::as_str)
                .is_some_and(|u| !u.is_empty());
            if !url_ok {
                return Err("file part requires 'url'".into());
            }
        }
        Some("data") => {
            if !obj.contains_key("content") {
                return Err("data part requires 'content'".into());
            }
        }
        other => {
            let shown = match other {
                Some(t) => t.to_owned(),
                None => obj.get("type").map_or("None".into(), Value::to_string),
            };
            return Err(format!(
                "unknown part type '{shown}'; expected text|file|data"
            ));
        }
    }
    Ok(())
}

/// Validates a `parts` value: a non-empty list of valid parts.
pub fn validate_parts(parts: &Value) -> Result<Vec<Value>, String> {
    let Some(list) = parts.as_array() else {
        return Err("parts must be a non-empty list".into());
    };
    if list.is_empty() {
        return Err("parts must be a non-empty list".into());
    }
    if list.len() > MAX_PARTS {
        return Err(format!("too many parts ({} > {MAX_PARTS})", list.len()));
    }
    for (i, p) in list.iter().enumerate() {
        validate_part(p).map_err(|e| format!("parts[{i}]: {e}"))?;
    }
    Ok(list.clone())
}

/// A text part.
pub fn text_part(text: &str) -> Value {
    json!({"type": "text", "content": text})
}

/// Reads an optional string field, refusing other types and over-long values.
pub fn opt_str(body: &Map<String, Value>, key: &str) -> NodeResult<Option<String>> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) if s.len() > MAX_ID_LEN && key.ends_with("id") => Err(
            NodeError::invalid(format!("'{key}' is longer than {MAX_ID_LEN} characters")),
        ),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(NodeError::invalid(format!(
            "'{key}' must be a string, got {}",
            type_name(other)
        ))),
    }
}

/// Reads an optional boolean field.
pub fn opt_bool(body: &Map<String, Value>, key: &str) -> NodeResult<bool> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(NodeError::invalid(format!(
            "'{key}' must be a boolean, got {}",
            type_name(other)
        ))),
    }
}

/// JSON type name for error messages.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A validated send request (`/message:send`, `/send`, `/peer/{id}/send`, MCP `acp_send`).
#[derive(Debug, Clone)]
pub struct SendRequest {
    /// Client-chosen id (idempotency key) or none.
    pub message_id: Option<String>,
    /// `user` or `agent`.
    pub role: String,
    /// Validated parts.
    pub parts: Vec<Value>,
    /// Task the message belongs to.
    pub task_id: Option<String>,
    /// Conversation id.
    pub context_id: Option<String>,
    /// Target peer (id or name); none = the only peer.
    pub peer_id: Option<String>,
    /// Wait for an `acp.reply`.
    pub sync: bool,
    /// Seconds to wait when `sync`.
    pub timeout: f64,
    /// Create a local task for this message (reference `create_task`).
    pub create_task: bool,
}

impl SendRequest {
    /// Parses and validates a request body. `default_role` applies to the legacy `/send`.
    pub fn from_json(body: &Value, default_role: Option<&str>) -> NodeResult<SendRequest> {
        let Some(obj) = body.as_object() else {
            return Err(NodeError::invalid(format!(
                "request body must be a JSON object, got {}",
                type_name(body)
            )));
        };
        let message_id = obj
            .get("message_id")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let fail = |e: NodeError| e.with_message_id(message_id.as_deref());
        let client_id = opt_str(obj, "message_id").map_err(fail)?;
        let role = match obj.get("role") {
            None | Some(Value::Null) => match default_role {
                Some(r) => r.to_owned(),
                None => {
                    return Err(fail(NodeError::invalid(
                        "missing required field: role (must be 'user' or 'agent')",
                    )));
                }
            },
            Some(Value::String(r)) if r == "user" || r == "agent" => r.clone(),
            Some(other) => {
                let shown = other
                    .as_str()
                    .map_or_else(|| other.to_string(), str::to_owned);
                return Err(fail(NodeError::invalid(format!(
                    "invalid role '{shown}': must be 'user' or 'agent'"
                ))));
            }
        };
        let parts = match obj.get("parts") {
            Some(p) if !p.is_null() && !(p.as_array().is_some_and(Vec::is_empty)) => {
                validate_parts(p).map_err(|e| fail(NodeError::invalid(e)))?
            }
            _ => {
                let text = obj.get("text").or_else(|| obj.get("content"));
                match text {
                    Some(Value::String(s)) if !s.is_empty() => vec![text_part(s)],
                    Some(Value::Null) | None => {
                        return Err(fail(NodeError::invalid(
                            "missing required field: provide 'parts' (list) or 'text' (string)",
                        )));
                    }
                    Some(Value::String(_)) => {
                        return Err(fail(NodeError::invalid(
                            "missing required field: provide 'parts' (list) or 'text' (string)",
                        )));
                    }
                    Some(other) => {
                        return Err(fail(NodeError::invalid(format!(
                            "'text' must be a string, got {}",
                            type_name(other)
                        ))));
                    }
                }
            }
        };
        let timeout = match obj.get("timeout") {
            None | Some(Value::Null) => 30.0,
            Some(Value::Number(n)) => n.as_f64().unwrap_or(30.0),
            Some(other) => {
                return Err(fail(NodeError::invalid(format!(
                    "'timeout' must be a number of seconds, got {}",
                    type_name(other)
                ))));
            }
        };
        if !(0.0..=3600.0).contains(&timeout) {
            return Err(fail(NodeError::invalid(
                "'timeout' must be between 0 and 3600 seconds",
            )));
        }
        Ok(SendRequest {
            message_id: client_id,
            role,
            parts,
            task_id: opt_str(obj, "task_id").map_err(fail)?,
            context_id: opt_str(obj, "context_id").map_err(fail)?,
            peer_id: opt_str(obj, "peer_id").map_err(fail)?,
            sync: opt_bool(obj, "sync").map_err(fail)?,
            timeout,
            create_task: opt_bool(obj, "create_task").map_err(fail)?,
        })
    }
}

/// A message row as stored: the frame exactly as it crossed the wire plus indexed columns.
#[derive(Debug, Clone)]
pub struct MessageRow {
    /// The message's id (client-chosen or generated).
    pub message_id: String,
    /// `inbound` (from a peer) or `outbound` (sent by this node).
    pub direction: &'static str,
    /// Local peer id the message came from or went to.
    pub peer_id: Option<String>,
    /// The sender's agent name (`from` on the wire).
    pub sender: Option<String>,
    /// `user` or `agent`.
    pub role: String,
    /// Task the message belongs to.
    pub task_id: Option<String>,
    /// Conversation the message belongs to.
    pub context_id: Option<String>,
    /// The sender's `server_seq`.
    pub server_seq: Option<i64>,
    /// Wire timestamp (ISO-8601).
    pub ts: String,
    /// Local receive (or send) time, Unix seconds.
    pub received_at: f64,
    /// Whether `/recv` already handed the message out.
    pub consumed: bool,
    /// The whole frame as JSON.
    pub frame: Value,
    /// Local insertion order (0 before the row is stored); the cursor of `acp_receive`.
    pub local_seq: i64,
}

impl MessageRow {
    /// The message's text: its text parts (their `content`, or `text` as some SDKs write
    /// it) joined by newlines, as the search index sees it.
    pub fn text(&self) -> String {
        self.frame
            .get("parts")
            .and_then(Value::as_array)
            .map(|parts| {
                parts
                    .iter()
                    .filter(|p| p["type"] == "text")
                    .filter_map(|p| p["content"].as_str().or_else(|| p["text"].as_str()))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default()
    }

    /// The `/recv` entry shape of the reference.
    pub fn recv_entry(&self) -> Value {
        json!({
            "id": self.message_id,
            "message_id": self.message_id,
            "received_at": self.received_at,
            "role": self.role,
            "parts": self.frame.get("parts").cloned().unwrap_or(Value::Array(vec![])),
            "task_id": self.task_id,
            "context_id": self.context_id,
            "raw": self.frame,
        })
    }

    /// The `/messages` entry: the `/recv` shape plus direction, peer and sequence.
    pub fn history_entry(&self) -> Value {
        let mut entry = self.recv_entry();
        if let Some(obj) = entry.as_object_mut() {
            obj.insert("direction".into(), Value::from(self.direction));
            obj.insert("peer_id".into(), json!(self.peer_id));
            obj.insert("from".into(), json!(self.sender));
            obj.insert("server_seq".into(), json!(self.server_seq));
            obj.insert("ts".into(), Value::from(self.ts.clone()));
        }
        entry
    }

    /// The `/context/{id}/messages` entry shape of the reference.
    pub fn context_entry(&self) -> Value {
        json!({
            "message_id": self.message_id,
            "server_seq": self.server_seq.unwrap_or(0),
            "ts": self.ts,
            "from": self.sender,
            "role": self.role,
            "parts": self.frame.get("parts").cloned().unwrap_or(Value::Array(vec![])),
            "task_id": self.task_id,
            "context_id": self.context_id,
            "direction": self.direction,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{arb_json, arb_object, config, valid_part};
    use proptest::prelude::*;

    #[test]
    fn part_errors_name_the_index() {
        let err =
            validate_parts(&json!([{"type":"text","content":"ok"},{"type":"text"}])).unwrap_err();
        assert_eq!(err, "parts[1]: text part requires string 'content'");
        let err = validate_parts(&json!([{"type":"video"}])).unwrap_err();
        assert_eq!(
            err,
            "parts[0]: unknown part type 'video'; expected text|file|data"
        );
        assert!(validate_parts(&json!([])).is_err());
        assert!(validate_parts(&json!("x")).is_err());
        assert!(
            validate_parts(
                &json!([{"type":"file","url":"https://x/y"},{"type":"data","content":{"a":1}}])
            )
            .is_ok()
        );
    }

    #[test]
    fn send_request_shorthand_and_errors() {
        let r = SendRequest::from_json(&json!({"role":"user","text":"hi"}), None).unwrap();
        assert_eq!(r.parts, vec![text_part("hi")]);
        let e = SendRequest::from_json(&json!({"text":"hi"}), None).unwrap_err();
        assert!(e.message.contains("role"));
        let e = SendRequest::from_json(&json!({"role":"boss","text":"hi","message_id":"m1"}), None)
            .unwrap_err();
        assert_eq!(e.failed_message_id.as_deref(), Some("m1"));
        assert!(SendRequest::from_json(&json!({"role":"user","text":5}), None).is_err());
        assert!(
            SendRequest::from_json(&json!({"role":"user","text":"x","task_id":7}), None).is_err()
        );
        assert!(SendRequest::from_json(&json!([1]), None).is_err());
    }

    /// An id a client may choose: non-empty, at most `MAX_ID_LEN` bytes.
    fn arb_id() -> impl Strategy<Value = Option<String>> {
        proptest::option::of("[A-Za-z0-9_.:-]{1,128}")
    }

    /// The body's content: `parts`, or the `text` / `content` shorthand with non-empty text.
    fn arb_content() -> impl Strategy<Value = (&'static str, Value)> {
        prop_oneof![
            proptest::collection::vec(valid_part(), 1..6).prop_map(|p| ("parts", Value::Array(p))),
            ".{1,24}".prop_map(|t| ("text", Value::String(t))),
            ".{1,24}".prop_map(|t| ("content", Value::String(t))),
        ]
    }

    /// Checks one parse of an arbitrary body: any failure is a 4xx.
    fn check_send(body: &Value, default_role: Option<&str>) -> Result<(), TestCaseError> {
        if let Err(e) = SendRequest::from_json(body, default_role) {
            prop_assert!(e.code.http_status() < 500, "{e}");
            prop_assert_eq!(e.code, super::super::error::ErrorCode::InvalidRequest);
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(config(256))]

        /// Any JSON value as a send body never panics and is refused with a 400.
        #[test]
        fn prop_send_arbitrary_json_never_panics(
            value in arb_json(),
            default_role in proptest::option::of(proptest::sample::select(&["agent", "user"][..])),
        ) {
            check_send(&value, default_role)?;
        }

        /// Objects with send-request fields holding arbitrary values: same guarantee, and a
        /// request that is accepted has only valid parts and a valid role.
        #[test]
        fn prop_send_arbitrary_objects_never_panic(map in arb_object()) {
            let body = Value::Object(map);
            check_send(&body, None)?;
            if let Ok(req) = SendRequest::from_json(&body, None) {
                prop_assert!(req.role == "user" || req.role == "agent");
                prop_assert!(validate_parts(&Value::Array(req.parts)).is_ok());
                prop_assert!((0.0..=3600.0).contains(&req.timeout));
            }
        }

        /// A valid request parses to exactly what it says.
        #[test]
        fn prop_send_valid_requests_round_trip(
            role in proptest::sample::select(&["user", "agent"][..]),
            (key, content) in arb_content(),
            message_id in arb_id(),
            task_id in arb_id(),
            context_id in arb_id(),
            peer_id in arb_id(),
            sync in proptest::option::of(any::<bool>()),
            timeout in proptest::option::of(0.0f64..=3600.0),
            create_task in proptest::option::of(any::<bool>()),
        ) {
            let mut body = json!({"role": role, key: content.clone()});
            for (k, v) in [("message_id", &message_id), ("task_id", &task_id),
                           ("context_id", &context_id), ("peer_id", &peer_id)] {
                if let Some(v) = v {
                    body[k] = json!(v);
                }
            }
            for (k, v) in [("sync", sync), ("create_task", create_task)] {
                if let Some(v) = v {
                    body[k] = json!(v);
                }
            }
            if let Some(t) = timeout {
                body["timeout"] = json!(t);
            }
            let req = SendRequest::from_json(&body, None).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let want_parts = match content {
                Value::Array(p) => p,
                Value::String(t) => vec![text_part(&t)],
                _ => unreachable!("arb_content makes arrays and strings"),
            };
            prop_assert_eq!(req.role, role);
            prop_assert_eq!(req.parts, want_parts);
            prop_assert_eq!(req.message_id, message_id);
            prop_assert_eq!(req.task_id, task_id);
            prop_assert_eq!(req.context_id, context_id);
            prop_assert_eq!(req.peer_id, peer_id);
            prop_assert_eq!(req.sync, sync.unwrap_or(false));
            prop_assert_eq!(req.create_task, create_task.unwrap_or(false));
            prop_assert_eq!(req.timeout, timeout.unwrap_or(30.0));
        }

        /// `validate_parts` never panics; what it accepts is the list it was given.
        #[test]
        fn prop_parts_arbitrary_json_never_panics(value in arb_json()) {
            if let Ok(list) = validate_parts(&value) {
                prop_assert!(!list.is_empty() && list.len() <= MAX_PARTS);
                prop_assert_eq!(Value::Array(list), value);
            }
        }

        /// Lists of valid parts are accepted unchanged; one bad part anywhere is refused and
        /// named by its index.
        #[test]
        fn prop_parts_valid_lists_accepted(
            parts in proptest::collection::vec(valid_part(), 1..8),
            bad in arb_json(),
            at in any::<proptest::sample::Index>(),
        ) {
            prop_assert_eq!(validate_parts(&Value::Array(parts.clone())), Ok(parts.clone()));
            if validate_part(&bad).is_err() {
                let mut with_bad = parts;
                let i = at.index(with_bad.len() + 1);
                with_bad.insert(i, bad);
                let err = validate_parts(&Value::Array(with_bad)).unwrap_err();
                prop_assert!(err.starts_with(&format!("parts[{i}]: ")), "{err}");
            }
        }
    }
}

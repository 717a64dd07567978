//! Tool arguments and results. The field docs become the JSON Schema descriptions an LLM
//! reads, so they say what to pass and when, in plain words.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Arguments of `acp_connect`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ConnectArgs {
    /// The other agent's link, exactly as they shared it: `acp://host:port/tok_…` (it may
    /// end in `?did=…`, the agent's key). Or the `http(s)://` URL of an A2A agent (its base
    /// URL or its agent card's URL): the node reads its card and talks A2A to it. With
    /// accept_new_key it may instead be the id or name of a known peer (from acp_peers), e.g.
    /// one that connected to you.
    pub link: String,
    /// Optional short name to remember this peer by (defaults to the agent's own name).
    #[serde(default)]
    pub name: Option<String>,
    /// Accept the new key this peer presented in place of the one pinned for it (acp_peers
    /// shows it under identity.key_change). Only after the user confirmed, out of band, that
    /// the other agent really changed its key: otherwise it may be an impostor. For a link
    /// whose host did not prove the key the link names, connect without that key instead.
    #[serde(default)]
    pub accept_new_key: Option<bool>,
    /// A2A agents only: the bearer token the agent's card asks for (sent as
    /// `Authorization: Bearer …`). Stored in the node's data dir, never shown back.
    #[serde(default)]
    pub bearer_token: Option<String>,
    /// A2A agents only: the API key the agent's card asks for (sent in the header its card
    /// names). Stored in the node's data dir, never shown back.
    #[serde(default)]
    pub api_key: Option<String>,
}

/// A file attached to a message by URL (ACP never inlines file bytes).
#[derive(Debug, Deserialize, JsonSchema)]
pub struct FileArg {
    /// Where the file can be fetched (https://…, file://…, s3://…).
    pub url: String,
    /// MIME type, e.g. `application/pdf`. Defaults to `application/octet-stream`.
    #[serde(default)]
    pub media_type: Option<String>,
    /// File name to show the receiver.
    #[serde(default)]
    pub name: Option<String>,
}

/// Arguments of `acp_send`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct SendArgs {
    /// The message text. Give `text`, `data`, `files`, or any combination.
    #[serde(default)]
    pub text: Option<String>,
    /// Structured JSON to send alongside (or instead of) the text, e.g. `{"rows": 3}`.
    #[serde(default)]
    pub data: Option<Value>,
    /// Files to reference by URL.
    #[serde(default)]
    pub files: Option<Vec<FileArg>>,
    /// Who to send to: a peer id (`peer_001`) or name from `acp_peers`. Leave empty when only
    /// one peer is connected.
    #[serde(default)]
    pub peer: Option<String>,
    /// Conversation id to group related messages; reuse the one from a message you answer.
    #[serde(default)]
    pub context_id: Option<String>,
    /// Task this message belongs to (from `acp_task_create` or a received message).
    #[serde(default)]
    pub task_id: Option<String>,
    /// message_id of a received message you are answering: the reply goes to its sender and
    /// keeps its context_id and task_id unless you set them.
    #[serde(default)]
    pub reply_to: Option<String>,
    /// `user` (default: you speak for your user) or `agent` (you speak as an agent).
    #[serde(default)]
    pub role: Option<String>,
    /// Your own id for this message; sending the same id twice delivers it only once.
    #[serde(default)]
    pub message_id: Option<String>,
    /// Wait for the peer's reply in this conversation: you get a task to follow (MCP tasks)
    /// that completes with the reply. Without context_id a new conversation is started.
    #[serde(default)]
    pub wait_for_reply: Option<bool>,
}

/// Arguments of `acp_receive`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct ReceiveArgs {
    /// The `cursor` returned by your previous `acp_receive`; omit it the first time. Passing
    /// it back guarantees no message is skipped or shown twice.
    #[serde(default)]
    pub cursor: Option<CursorArg>,
    /// Seconds to wait for a message when none is waiting (0–60, default 0). Use this to wait
    /// for a reply instead of calling repeatedly.
    #[serde(default)]
    pub wait_seconds: Option<f64>,
    /// Most messages to return (1–100, default 20).
    #[serde(default)]
    pub limit: Option<u32>,
    /// Only messages from this peer (id or name).
    #[serde(default)]
    pub peer: Option<String>,
    /// Only messages of this conversation.
    #[serde(default)]
    pub context_id: Option<String>,
    /// Only messages about this task.
    #[serde(default)]
    pub task_id: Option<String>,
}

/// Arguments of `acp_search`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct SearchArgs {
    /// What to look for in message text: words (all must appear, any order, case and accents
    /// ignored), "an exact phrase" in double quotes, prefix* for word beginnings, `OR`
    /// between two terms for either, -word to exclude. Example: `deploy* "staging server" -test`.
    pub query: String,
    /// Only messages with this peer (id or name), sent or received.
    #[serde(default)]
    pub peer: Option<String>,
    /// Only messages of this conversation.
    #[serde(default)]
    pub context_id: Option<String>,
    /// Only messages about this task.
    #[serde(default)]
    pub task_id: Option<String>,
    /// Only `inbound` (sent to you) or `outbound` (sent by you); default both.
    #[serde(default)]
    pub direction: Option<String>,
    /// `newest` (default), `oldest`, or `rank` (best match first).
    #[serde(default)]
    pub order: Option<String>,
    /// Most messages to return (1–50, default 10).
    #[serde(default)]
    pub limit: Option<u32>,
    /// Matches to skip: pass the previous result's `next_offset` for the next page.
    #[serde(default)]
    pub offset: Option<u32>,
}

/// A cursor as returned (a string), also accepted as a bare number.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum CursorArg {
    /// As returned by `acp_receive`.
    Text(String),
    /// The same value as a number.
    Number(i64),
}

/// Arguments of `acp_task_get`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct TaskGetArgs {
    /// The task id (`task_…`).
    pub task_id: String,
    /// Seconds to wait (0–120, default 0) for the task to finish (completed, failed or
    /// canceled) before answering; use it to wait for a delegated task's result.
    #[serde(default)]
    pub wait_seconds: Option<f64>,
}

/// Arguments of `acp_task_create`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct TaskCreateArgs {
    /// What you ask the other agent to do.
    pub text: String,
    /// Structured input for the task.
    #[serde(default)]
    pub data: Option<Value>,
    /// Peer to hand the task to (id or name); empty = the only connected peer.
    #[serde(default)]
    pub peer: Option<String>,
    /// Conversation id to group the task with messages.
    #[serde(default)]
    pub context_id: Option<String>,
    /// Your own task id (creating the same id twice returns the existing task).
    #[serde(default)]
    pub task_id: Option<String>,
    /// Send the task to the peer (default true): it arrives there as a message carrying the
    /// task_id (seen by the peer's acp_receive) and is registered as its task. false = a local
    /// task only you track.
    #[serde(default)]
    pub delegate: Option<bool>,
}

/// Arguments of `acp_task_update`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct TaskUpdateArgs {
    /// The task to update.
    pub task_id: String,
    /// New state: `working`, `input_required`, `completed`, `failed` (or `canceled`).
    /// Finished tasks (completed, failed, canceled) cannot change any more.
    pub status: String,
    /// Result text to attach (an artifact), typically with `completed`.
    #[serde(default)]
    pub result_text: Option<String>,
    /// Structured result to attach (an artifact).
    #[serde(default)]
    pub result_data: Option<Value>,
    /// Why the task failed (with `failed`) or what input you need (with `input_required`).
    #[serde(default)]
    pub error: Option<String>,
}

/// Arguments naming one task.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct TaskIdArgs {
    /// The task id (`task_…`).
    pub task_id: String,
}

/// Arguments of `acp_task_list`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct TaskListArgs {
    /// Only tasks in this state (submitted, working, input_required, cancelling, completed,
    /// failed, canceled).
    #[serde(default)]
    pub status: Option<String>,
    /// Only tasks shared with this peer (id or name).
    #[serde(default)]
    pub peer: Option<String>,
    /// Only tasks of this conversation.
    #[serde(default)]
    pub context_id: Option<String>,
    /// Most tasks to return (1–200, default 50), newest first.
    #[serde(default)]
    pub limit: Option<u32>,
    /// `next_cursor` from the previous page.
    #[serde(default)]
    pub cursor: Option<String>,
}

/// Arguments of `acp_card_update`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct CardUpdateArgs {
    /// New description of what this agent does, shown to peers.
    #[serde(default)]
    pub description: Option<String>,
    /// Skills to advertise (replaces the list), e.g. `["summarize", "translate"]`.
    #[serde(default)]
    pub skills: Option<Vec<String>>,
    /// Things this agent cannot do (replaces the list), e.g. `["no_internet"]`.
    #[serde(default)]
    pub limitations: Option<Vec<String>>,
    /// Availability fields to merge: mode (persistent|heartbeat|cron|manual),
    /// interval_seconds, next_active_at, last_active_at, task_latency_max_seconds,
    /// schedule, timezone.
    #[serde(default)]
    pub availability: Option<serde_json::Map<String, Value>>,
}

/// One received message as tools return it.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ReceivedMessage {
    /// The message's id; pass it as `reply_to` to answer.
    pub message_id: String,
    /// Sender's agent name.
    pub from: Option<String>,
    /// Local id of the peer it came from.
    pub peer_id: Option<String>,
    /// `user` or `agent`.
    pub role: String,
    /// All text parts joined.
    pub text: String,
    /// Every part as sent (text, data, file).
    pub parts: Vec<Value>,
    /// Conversation id.
    pub context_id: Option<String>,
    /// Task id.
    pub task_id: Option<String>,
    /// Sender's timestamp (ISO-8601).
    pub ts: String,
    /// Whether the message carries a valid Ed25519 signature by the key this peer proved
    /// (and that is pinned for it): true means it really comes from `sender_did`.
    pub verified: bool,
    /// The sender's did (did:acp) when the message is verified.
    pub sender_did: Option<String>,
}

/// Result of `acp_receive`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ReceiveResult {
    /// Messages, oldest first.
    pub messages: Vec<ReceivedMessage>,
    /// Pass this as `cursor` next time.
    pub cursor: String,
    /// More messages are waiting right now: call again with the cursor.
    pub has_more: bool,
}

/// One message found by `acp_search`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct FoundMessage {
    /// `inbound` (another agent sent it to you) or `outbound` (you sent it).
    pub direction: String,
    /// The message.
    #[serde(flatten)]
    pub message: ReceivedMessage,
}

/// Result of `acp_search`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct SearchResult {
    /// Matching messages in the requested order.
    pub messages: Vec<FoundMessage>,
    /// Matches counted past the offset (at most 1,000 are counted; see `total_exact`).
    pub total: usize,
    /// Whether `total` is the whole count.
    pub total_exact: bool,
    /// Pass as `offset` for the next page, when `has_more`.
    pub next_offset: usize,
    /// More matches follow.
    pub has_more: bool,
}

/// Result of `acp_send`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct SendResult {
    /// Id of the message.
    pub message_id: String,
    /// The node-wide sequence number it got.
    pub server_seq: i64,
    /// Peer it went to (null for a duplicate).
    pub peer_id: Option<String>,
    /// `delivered` (handed to the connected peer), `queued_offline` (the peer is away; it is
    /// delivered when the peer is back) or `duplicate` (this message_id was sent before).
    pub delivery: String,
    /// Conversation id used.
    pub context_id: Option<String>,
}

/// Result of `acp_get_link`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct LinkResult {
    /// This agent's link: give it to the other agent so it can `acp_connect`.
    pub link: String,
    /// This agent's name.
    pub agent_name: String,
    /// Local REST API base URL (for curl users).
    pub http_url: String,
}

/// Result of `acp_connect`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ConnectResult {
    /// Local id of the peer; use it (or its name) as `peer` in other tools.
    pub peer_id: String,
    /// Name of the peer.
    pub name: String,
    /// Whether the connection is up now.
    pub connected: bool,
    /// The link being dialled.
    pub link: String,
    /// Last connection error while not connected (the node keeps retrying).
    pub last_error: Option<String>,
    /// The peer's did (did:acp), once it presented a verified key.
    pub did: Option<String>,
    /// Whether the live connection's peer proved the key pinned for it.
    pub verified: bool,
    /// How the connection reaches the peer: `p2p_direct` (a direct connection),
    /// `dcutr_direct` (a hole punched through both NATs) or `relay` (through the relay,
    /// end-to-end encrypted); none while not connected.
    pub connection_type: Option<String>,
}

/// A JSON object result (peers, status, card, tasks): kept as JSON.
#[derive(Debug, Serialize, JsonSchema)]
pub struct JsonResult {
    /// The result.
    #[serde(flatten)]
    pub value: serde_json::Map<String, Value>,
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::test_support::{arb_json, arb_object, config};

    /// Deserializes `value` into every tool argument type, as the tools do with a call's
    /// arguments; only the outcome's absence of a panic matters.
    fn parse_all(value: &Value) {
        fn one<T: serde::de::DeserializeOwned>(value: &Value) {
            let _ = serde_json::from_value::<T>(value.clone());
        }
        one::<ConnectArgs>(value);
        one::<FileArg>(value);
        one::<SendArgs>(value);
        one::<ReceiveArgs>(value);
        one::<CursorArg>(value);
        one::<TaskGetArgs>(value);
        one::<TaskCreateArgs>(value);
        one::<TaskUpdateArgs>(value);
        one::<TaskIdArgs>(value);
        one::<TaskListArgs>(value);
        one::<CardUpdateArgs>(value);
    }

    proptest! {
        #![proptest_config(config(256))]

        /// Any JSON value, and any object with the tools' field names, never panics any
        /// argument type.
        #[test]
        fn prop_mcp_args_arbitrary_json_never_panics(value in arb_json(), map in arb_object()) {
            parse_all(&value);
            parse_all(&Value::Object(map));
        }

        /// Well-typed arguments come through field for field; a wrongly typed field is an
        /// error, not a default.
        #[test]
        fn prop_mcp_args_valid_values_round_trip(
            text in proptest::option::of(any::<String>()),
            data in proptest::option::of(arb_json().prop_filter("null reads as absent", |v| !v.is_null())),
            peer in proptest::option::of(any::<String>()),
            status in any::<String>(),
            wait in proptest::option::of(any::<f64>().prop_filter("finite", |f| f.is_finite())),
            cursor in prop_oneof![any::<i64>().prop_map(Value::from), any::<String>().prop_map(Value::from)],
            wrong in prop_oneof![any::<bool>().prop_map(Value::from), arb_json().prop_filter("not a string", |v| v.is_array() || v.is_object())],
        ) {
            let mut body = json!({"text": text, "peer": peer});
            if let Some(d) = &data {
                body["data"] = d.clone();
            }
            let args: SendArgs = serde_json::from_value(body).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(args.text, text);
            prop_assert_eq!(args.data, data);
            prop_assert_eq!(args.peer, peer);

            let args: TaskUpdateArgs = serde_json::from_value(json!({"task_id": "t", "status": status}))
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(args.status, status);

            let args: ReceiveArgs = serde_json::from_value(json!({"wait_seconds": wait, "cursor": cursor}))
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(args.wait_seconds, wait);
            match (args.cursor, &cursor) {
                (Some(CursorArg::Number(n)), Value::Number(want)) => prop_assert_eq!(Some(n), want.as_i64()),
                (Some(CursorArg::Text(s)), Value::String(want)) => prop_assert_eq!(&s, want),
                (got, want) => prop_assert!(false, "cursor {want} read as {got:?}"),
            }

            let bad_id = serde_json::from_value::<TaskIdArgs>(json!({"task_id": wrong.clone()}));
            let bad_link = serde_json::from_value::<ConnectArgs>(json!({"link": wrong.clone()}));
            let bad_text = serde_json::from_value::<SendArgs>(json!({"text": wrong}));
            prop_assert!(bad_id.is_err() && bad_link.is_err() && bad_text.is_err());
        }
    }
}

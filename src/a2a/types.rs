//! A2A wire types, written from the specification (`specification/a2a.proto`, tag v1.0.1,
//! in its ProtoJSON form: camelCase members, enums by name) and the 0.3 JSON schema, checked
//! against what the official Python SDK (a2a-sdk 1.3) puts on the wire.
//!
//! One set of types serves both versions. Reading is lenient: every type takes its 1.0 form
//! and its 0.3 form (`kind`-tagged parts, lowercase task states and roles, `kind`-tagged
//! results and stream events, the 0.3 card fields), so the server and the client parse
//! whatever a peer sends through the same code. Writing is 1.0 by `serde`; the [`v03`]
//! functions give the 0.3 form of the few things a 0.3 peer reads (messages, tasks, events).
//! The card carries both versions' fields at once (`supportedInterfaces` beside `url`,
//! `preferredTransport`, `additionalInterfaces`, `protocolVersion`), as the SDKs expect.
//!
//! Any JSON either parses into these types or gives a serde error; nothing here panics on
//! input (property tests below).

use std::collections::BTreeMap;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value, json};

/// The header naming the protocol version of a request; a request without it is 0.3.
pub const VERSION_HEADER: &str = "A2A-Version";
/// The protocol version this module speaks natively.
pub const PROTOCOL_VERSION_1_0: &str = "1.0";
/// The older version still served by LangGraph and others.
pub const PROTOCOL_VERSION_0_3: &str = "0.3";
/// Where an agent publishes its card, relative to its base URL.
pub const AGENT_CARD_PATH: &str = "/.well-known/agent-card.json";
/// The card's name of the JSON-RPC binding.
pub const BINDING_JSONRPC: &str = "JSONRPC";
/// The card's name of the HTTP+JSON (REST) binding.
pub const BINDING_HTTP_JSON: &str = "HTTP+JSON";
/// The card's name of the gRPC binding (never spoken here; recognized to skip it).
pub const BINDING_GRPC: &str = "GRPC";

/// Which protocol version a request or a peer speaks: decides the method names, the result
/// shapes and the enum spellings written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProtocolVersion {
    /// A2A 1.0: `SendMessage`, `TASK_STATE_WORKING`, `{"task": …}` results.
    V1_0,
    /// A2A 0.3: `message/send`, `working`, `kind`-tagged results.
    V0_3,
}

impl ProtocolVersion {
    /// The version an `A2A-Version` header value names: absent or empty is 0.3 (as the SDKs
    /// read it), any `1.x` is 1.0, any `0.x` is 0.3; anything else is `None` (not served).
    pub fn from_header(value: Option<&str>) -> Option<ProtocolVersion> {
        let v = value.map(str::trim).unwrap_or("");
        if v.is_empty() {
            return Some(ProtocolVersion::V0_3);
        }
        let major = v.split('.').next().unwrap_or("");
        match major {
            "1" => Some(ProtocolVersion::V1_0),
            "0" => Some(ProtocolVersion::V0_3),
            _ => None,
        }
    }

    /// The header value (`1.0`, `0.3`).
    pub fn as_str(self) -> &'static str {
        match self {
            ProtocolVersion::V1_0 => PROTOCOL_VERSION_1_0,
            ProtocolVersion::V0_3 => PROTOCOL_VERSION_0_3,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Enums
// ---------------------------------------------------------------------------------------

/// The life cycle of an A2A task. Read from the 1.0 names (`TASK_STATE_WORKING`) and the
/// 0.3 names (`working`, `input-required`, `unknown`); written by serde in the 1.0 form,
/// [`TaskState::as_v03`] gives the 0.3 one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskState {
    /// `TASK_STATE_UNSPECIFIED` / 0.3 `unknown`.
    Unspecified,
    /// Accepted, not started.
    Submitted,
    /// Being worked on.
    Working,
    /// Done (terminal).
    Completed,
    /// Failed (terminal).
    Failed,
    /// Canceled (terminal).
    Canceled,
    /// The agent waits for the client's answer (interrupted, not terminal).
    InputRequired,
    /// The agent refused the task (terminal).
    Rejected,
    /// The agent needs credentials (interrupted, not terminal).
    AuthRequired,
}

impl TaskState {
    const ALL: [TaskState; 9] = [
        TaskState::Unspecified,
        TaskState::Submitted,
        TaskState::Working,
        TaskState::Completed,
        TaskState::Failed,
        TaskState::Canceled,
        TaskState::InputRequired,
        TaskState::Rejected,
        TaskState::AuthRequired,
    ];

    /// The 1.0 name (`TASK_STATE_WORKING`).
    pub fn as_v1(self) -> &'static str {
        match self {
            TaskState::Unspecified => "TASK_STATE_UNSPECIFIED",
            TaskState::Submitted => "TASK_STATE_SUBMITTED",
            TaskState::Working => "TASK_STATE_WORKING",
            TaskState::Completed => "TASK_STATE_COMPLETED",
            TaskState::Failed => "TASK_STATE_FAILED",
            TaskState::Canceled => "TASK_STATE_CANCELED",
            TaskState::InputRequired => "TASK_STATE_INPUT_REQUIRED",
            TaskState::Rejected => "TASK_STATE_REJECTED",
            TaskState::AuthRequired => "TASK_STATE_AUTH_REQUIRED",
        }
    }

    /// The 0.3 name (`working`, `input-required`).
    pub fn as_v03(self) -> &'static str {
        match self {
            TaskState::Unspecified => "unknown",
            TaskState::Submitted => "submitted",
            TaskState::Working => "working",
            TaskState::Completed => "completed",
            TaskState::Failed => "failed",
            TaskState::Canceled => "canceled",
            TaskState::InputRequired => "input-required",
            TaskState::Rejected => "rejected",
            TaskState::AuthRequired => "auth-required",
        }
    }

    /// The name in `version`'s spelling.
    pub fn as_str(self, version: ProtocolVersion) -> &'static str {
        match version {
            ProtocolVersion::V1_0 => self.as_v1(),
            ProtocolVersion::V0_3 => self.as_v03(),
        }
    }

    /// Reads either spelling (and `cancelled`, and the proto enum's numbers).
    pub fn parse(raw: &str) -> Option<TaskState> {
        if let Some(s) = TaskState::ALL
            .iter()
            .find(|s| s.as_v1() == raw || s.as_v03() == raw)
        {
            return Some(*s);
        }
        match raw {
            "cancelled" => Some(TaskState::Canceled),
            _ => None,
        }
    }

    /// A state the task never leaves.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::Completed | TaskState::Failed | TaskState::Canceled | TaskState::Rejected
        )
    }

    /// A state in which the task waits for the client (a stream ends there too).
    pub fn is_interrupted(self) -> bool {
        matches!(self, TaskState::InputRequired | TaskState::AuthRequired)
    }
}

impl Serialize for TaskState {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_v1())
    }
}

impl<'de> Deserialize<'de> for TaskState {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) => TaskState::parse(&s)
                .ok_or_else(|| D::Error::custom(format!("unknown task state {s:?}"))),
            Value::Number(n) => n
                .as_u64()
                .and_then(|i| TaskState::ALL.get(usize::try_from(i).ok()?).copied())
                .ok_or_else(|| D::Error::custom(format!("unknown task state {n}"))),
            other => Err(D::Error::custom(format!(
                "task state must be a string, got {other}"
            ))),
        }
    }
}

/// Who wrote a message. Read from `ROLE_USER` / `user` (and `ROLE_AGENT` / `agent`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// `ROLE_UNSPECIFIED`.
    Unspecified,
    /// The client side.
    User,
    /// The agent side.
    Agent,
}

impl Role {
    /// The 1.0 name.
    pub fn as_v1(self) -> &'static str {
        match self {
            Role::Unspecified => "ROLE_UNSPECIFIED",
            Role::User => "ROLE_USER",
            Role::Agent => "ROLE_AGENT",
        }
    }

    /// The 0.3 name (0.3 has no unspecified role; it is written as `user`).
    pub fn as_v03(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::User | Role::Unspecified => "user",
        }
    }
}

impl Serialize for Role {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_v1())
    }
}

impl<'de> Deserialize<'de> for Role {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) => match s.as_str() {
                "ROLE_USER" | "user" => Ok(Role::User),
                "ROLE_AGENT" | "agent" => Ok(Role::Agent),
                "ROLE_UNSPECIFIED" => Ok(Role::Unspecified),
                _ => Err(D::Error::custom(format!("unknown role {s:?}"))),
            },
            Value::Number(n) => match n.as_u64() {
                Some(0) => Ok(Role::Unspecified),
                Some(1) => Ok(Role::User),
                Some(2) => Ok(Role::Agent),
                _ => Err(D::Error::custom(format!("unknown role {n}"))),
            },
            other => Err(D::Error::custom(format!(
                "role must be a string, got {other}"
            ))),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Parts, messages, artifacts, tasks
// ---------------------------------------------------------------------------------------

/// What a part holds (the proto's `oneof content`).
#[derive(Debug, Clone, PartialEq)]
pub enum PartContent {
    /// Text.
    Text(String),
    /// Inline bytes, base64 as on the wire (1.0 `raw`, 0.3 `file.bytes`).
    Raw(String),
    /// A file by reference (1.0 `url`, 0.3 `file.uri`).
    Url(String),
    /// Any JSON value (0.3 requires an object here; 1.0 takes any value).
    Data(Value),
}

/// One piece of a message or artifact. Read from the 1.0 member style (`{"text": …}`,
/// `{"raw": …}`, `{"url": …}`, `{"data": …}` with `mediaType`, `filename`, `metadata`) and
/// the 0.3 `kind` style (`{"kind":"text","text":…}`, `{"kind":"file","file":{"bytes"|"uri",
/// "mimeType","name"}}`, `{"kind":"data","data":{…}}`); written in the 1.0 style.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    /// The content.
    pub content: PartContent,
    /// Free-form metadata.
    pub metadata: Option<Map<String, Value>>,
    /// A file name, for file content.
    pub filename: Option<String>,
    /// The media type (`text/plain`, `application/json`, …).
    pub media_type: Option<String>,
}

impl Part {
    /// A text part.
    pub fn text(text: impl Into<String>) -> Part {
        Part {
            content: PartContent::Text(text.into()),
            metadata: None,
            filename: None,
            media_type: None,
        }
    }

    /// A data part.
    pub fn data(data: Value) -> Part {
        Part {
            content: PartContent::Data(data),
            metadata: None,
            filename: None,
            media_type: None,
        }
    }

    /// The 1.0 JSON form.
    pub fn to_v1(&self) -> Value {
        let mut m = Map::new();
        match &self.content {
            PartContent::Text(t) => m.insert("text".into(), json!(t)),
            PartContent::Raw(b) => m.insert("raw".into(), json!(b)),
            PartContent::Url(u) => m.insert("url".into(), json!(u)),
            PartContent::Data(d) => m.insert("data".into(), d.clone()),
        };
        if let Some(md) = &self.metadata {
            m.insert("metadata".into(), Value::Object(md.clone()));
        }
        if let Some(f) = &self.filename {
            m.insert("filename".into(), json!(f));
        }
        if let Some(t) = &self.media_type {
            m.insert("mediaType".into(), json!(t));
        }
        Value::Object(m)
    }

    /// The 0.3 JSON form. A 1.0 data part that is not an object is wrapped as
    /// `{"value": …}` (0.3 data parts are objects).
    pub fn to_v03(&self) -> Value {
        let mut m = Map::new();
        match &self.content {
            PartContent::Text(t) => {
                m.insert("kind".into(), json!("text"));
                m.insert("text".into(), json!(t));
            }
            PartContent::Raw(_) | PartContent::Url(_) => {
                let mut file = Map::new();
                match &self.content {
                    PartContent::Raw(b) => file.insert("bytes".into(), json!(b)),
                    PartContent::Url(u) => file.insert("uri".into(), json!(u)),
                    _ => None,
                };
                if let Some(t) = &self.media_type {
                    file.insert("mimeType".into(), json!(t));
                }
                if let Some(f) = &self.filename {
                    file.insert("name".into(), json!(f));
                }
                m.insert("kind".into(), json!("file"));
                m.insert("file".into(), Value::Object(file));
            }
            PartContent::Data(d) => {
                m.insert("kind".into(), json!("data"));
                let data = if d.is_object() {
                    d.clone()
                } else {
                    json!({"value": d})
                };
                m.insert("data".into(), data);
            }
        }
        if let Some(md) = &self.metadata {
            m.insert("metadata".into(), Value::Object(md.clone()));
        }
        Value::Object(m)
    }

    /// Reads either form from a JSON value.
    pub fn from_value(v: Value) -> Result<Part, String> {
        let Value::Object(mut m) = v else {
            return Err("a part must be a JSON object".into());
        };
        let metadata = match m.remove("metadata") {
            None | Some(Value::Null) => None,
            Some(Value::Object(md)) => Some(md),
            Some(_) => return Err("part metadata must be an object".into()),
        };
        let opt_str = |m: &mut Map<String, Value>, k: &str| -> Result<Option<String>, String> {
            match m.remove(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s)),
                Some(_) => Err(format!("part {k} must be a string")),
            }
        };
        if let Some(kind) = m.remove("kind") {
            let kind = kind
                .as_str()
                .ok_or("part kind must be a string")?
                .to_owned();
            return match kind.as_str() {
                "text" => {
                    let text = opt_str(&mut m, "text")?.ok_or("a text part needs text")?;
                    Ok(Part {
                        content: PartContent::Text(text),
                        metadata,
                        filename: None,
                        media_type: None,
                    })
                }
                "data" => {
                    let data = m.remove("data").ok_or("a data part needs data")?;
                    Ok(Part {
                        content: PartContent::Data(data),
                        metadata,
                        filename: None,
                        media_type: None,
                    })
                }
                "file" => {
                    let Some(Value::Object(mut file)) = m.remove("file") else {
                        return Err("a file part needs a file object".into());
                    };
                    let media_type = opt_str(&mut file, "mimeType")?;
                    let filename = opt_str(&mut file, "name")?;
                    let content = match (opt_str(&mut file, "bytes")?, opt_str(&mut file, "uri")?) {
                        (Some(b), None) => PartContent::Raw(b),
                        (None, Some(u)) => PartContent::Url(u),
                        _ => return Err("a file needs exactly one of bytes and uri".into()),
                    };
                    Ok(Part {
                        content,
                        metadata,
                        filename,
                        media_type,
                    })
                }
                other => Err(format!("unknown part kind {other:?}")),
            };
        }
        let filename = opt_str(&mut m, "filename")?;
        let media_type = opt_str(&mut m, "mediaType")?;
        let mut contents = Vec::new();
        if let Some(t) = opt_str(&mut m, "text")? {
            contents.push(PartContent::Text(t));
        }
        if let Some(r) = opt_str(&mut m, "raw")? {
            contents.push(PartContent::Raw(r));
        }
        if let Some(u) = opt_str(&mut m, "url")? {
            contents.push(PartContent::Url(u));
        }
        if let Some(d) = m.remove("data") {
            contents.push(PartContent::Data(d));
        }
        if contents.len() != 1 {
            return Err("a part needs exactly one of text, raw, url and data".into());
        }
        Ok(Part {
            content: contents.remove(0),
            metadata,
            filename,
            media_type,
        })
    }
}

impl Serialize for Part {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_v1().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Part {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Part::from_value(Value::deserialize(d)?).map_err(D::Error::custom)
    }
}

/// One message of a conversation (proto `Message`; 0.3 adds `"kind":"message"`, ignored
/// when read).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    /// The sender's id for the message (required).
    pub message_id: String,
    /// The conversation it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_id: Option<String>,
    /// The task it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    /// Who wrote it.
    pub role: Role,
    /// The content (at least one part).
    pub parts: Vec<Part>,
    /// Free-form metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    /// Extension URIs the message uses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extensions: Vec<String>,
    /// Other tasks it refers to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reference_task_ids: Vec<String>,
}

/// A task's current state (proto `TaskStatus`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskStatus {
    /// The state.
    pub state: TaskState,
    /// The agent's message that goes with it (its question when input is required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<Message>,
    /// When the state was entered (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
}

/// An output of a task (proto `Artifact`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Artifact {
    /// Unique within the task (required).
    pub artifact_id: String,
    /// A name for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A description for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The content.
    pub parts: Vec<Part>,
    /// Free-form metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    /// Extension URIs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extensions: Vec<String>,
}

/// A unit of work (proto `Task`; 0.3 adds `"kind":"task"`, ignored when read).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    /// The agent's id for it (required).
    pub id: String,
    /// The conversation it belongs to.
    #[serde(default)]
    pub context_id: String,
    /// Its state (required).
    pub status: TaskStatus,
    /// Its outputs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<Artifact>,
    /// The messages exchanged in it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<Message>,
    /// Free-form metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
}

/// A change of a task's state, streamed (proto `TaskStatusUpdateEvent`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskStatusUpdateEvent {
    /// The task.
    pub task_id: String,
    /// Its conversation.
    #[serde(default)]
    pub context_id: String,
    /// The new status.
    pub status: TaskStatus,
    /// Free-form metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    /// 0.3 only: the last event of the stream. Not written in 1.0 (the stream ends after a
    /// terminal or interrupted state there).
    #[serde(default, rename = "final", skip_serializing_if = "Option::is_none")]
    pub final_: Option<bool>,
}

/// A new or extended artifact, streamed (proto `TaskArtifactUpdateEvent`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskArtifactUpdateEvent {
    /// The task.
    pub task_id: String,
    /// Its conversation.
    #[serde(default)]
    pub context_id: String,
    /// The artifact (or the chunk of it).
    pub artifact: Artifact,
    /// This chunk extends an artifact of the same id sent before.
    #[serde(default, skip_serializing_if = "is_false")]
    pub append: bool,
    /// The last chunk of this artifact.
    #[serde(default, skip_serializing_if = "is_false")]
    pub last_chunk: bool,
    /// Free-form metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// One item of a stream (proto `StreamResponse`): 1.0 writes it as `{"task": …}`,
/// `{"message": …}`, `{"statusUpdate": …}` or `{"artifactUpdate": …}`; 0.3 writes the item
/// itself with a `kind` (`task`, `message`, `status-update`, `artifact-update`). Both are read.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamResponse {
    /// The task as it is.
    Task(Task),
    /// A message (an answer without a task).
    Message(Message),
    /// A status change.
    StatusUpdate(TaskStatusUpdateEvent),
    /// An artifact (chunk).
    ArtifactUpdate(TaskArtifactUpdateEvent),
}

impl StreamResponse {
    /// The 1.0 JSON form.
    pub fn to_v1(&self) -> Value {
        let (k, v) = match self {
            StreamResponse::Task(t) => ("task", to_value(t)),
            StreamResponse::Message(m) => ("message", to_value(m)),
            StreamResponse::StatusUpdate(e) => ("statusUpdate", to_value(e)),
            StreamResponse::ArtifactUpdate(e) => ("artifactUpdate", to_value(e)),
        };
        json!({ k: v })
    }

    /// The JSON form in `version`.
    pub fn to_version(&self, version: ProtocolVersion) -> Value {
        match version {
            ProtocolVersion::V1_0 => self.to_v1(),
            ProtocolVersion::V0_3 => v03::stream_response(self),
        }
    }

    /// Reads either form.
    pub fn from_value(v: Value) -> Result<StreamResponse, String> {
        let Value::Object(m) = v else {
            return Err("a stream item must be a JSON object".into());
        };
        let err = |e: serde_json::Error| e.to_string();
        if let Some(kind) = m.get("kind").and_then(Value::as_str) {
            let kind = kind.to_owned();
            let v = Value::Object(m);
            return match kind.as_str() {
                "task" => serde_json::from_value(v)
                    .map(StreamResponse::Task)
                    .map_err(err),
                "message" => serde_json::from_value(v)
                    .map(StreamResponse::Message)
                    .map_err(err),
                "status-update" => serde_json::from_value(v)
                    .map(StreamResponse::StatusUpdate)
                    .map_err(err),
                "artifact-update" => serde_json::from_value(v)
                    .map(StreamResponse::ArtifactUpdate)
                    .map_err(err),
                other => Err(format!("unknown result kind {other:?}")),
            };
        }
        if m.len() != 1 {
            return Err(
                "a stream item needs exactly one of task, message, statusUpdate, artifactUpdate"
                    .into(),
            );
        }
        let Some((k, v)) = m.into_iter().next() else {
            return Err("empty stream item".into());
        };
        match k.as_str() {
            "task" => serde_json::from_value(v)
                .map(StreamResponse::Task)
                .map_err(err),
            "message" => serde_json::from_value(v)
                .map(StreamResponse::Message)
                .map_err(err),
            "statusUpdate" => serde_json::from_value(v)
                .map(StreamResponse::StatusUpdate)
                .map_err(err),
            "artifactUpdate" => serde_json::from_value(v)
                .map(StreamResponse::ArtifactUpdate)
                .map_err(err),
            other => Err(format!("unknown stream item {other:?}")),
        }
    }
}

impl Serialize for StreamResponse {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_v1().serialize(s)
    }
}

impl<'de> Deserialize<'de> for StreamResponse {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        StreamResponse::from_value(Value::deserialize(d)?).map_err(D::Error::custom)
    }
}

/// The answer to `SendMessage` (proto `SendMessageResponse`): a task or a message. Same
/// forms as [`StreamResponse`] (whose first two variants it is).
#[derive(Debug, Clone, PartialEq)]
pub enum SendMessageResponse {
    /// The task the message started or continued.
    Task(Task),
    /// A direct answer, without a task.
    Message(Message),
}

impl SendMessageResponse {
    /// The JSON form in `version`.
    pub fn to_version(&self, version: ProtocolVersion) -> Value {
        let item = match self {
            SendMessageResponse::Task(t) => StreamResponse::Task(t.clone()),
            SendMessageResponse::Message(m) => StreamResponse::Message(m.clone()),
        };
        item.to_version(version)
    }
}

impl Serialize for SendMessageResponse {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_version(ProtocolVersion::V1_0).serialize(s)
    }
}

impl<'de> Deserialize<'de> for SendMessageResponse {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match StreamResponse::from_value(Value::deserialize(d)?).map_err(D::Error::custom)? {
            StreamResponse::Task(t) => Ok(SendMessageResponse::Task(t)),
            StreamResponse::Message(m) => Ok(SendMessageResponse::Message(m)),
            _ => Err(D::Error::custom(
                "a SendMessage result is a task or a message",
            )),
        }
    }
}

fn to_value<T: Serialize>(t: &T) -> Value {
    serde_json::to_value(t).unwrap_or(Value::Null)
}

// ---------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------

/// How a `SendMessage` should be handled (proto `SendMessageConfiguration`; 0.3
/// `MessageSendConfiguration` with `blocking` and `pushNotificationConfig`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendMessageConfiguration {
    /// Media types the client accepts in answers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accepted_output_modes: Vec<String>,
    /// A push-notification target for the task (a `TaskPushNotificationConfig`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_push_notification_config: Option<Value>,
    /// How many history messages to include in the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_length: Option<i32>,
    /// 1.0: answer at once with the task instead of waiting for it to finish.
    #[serde(default, skip_serializing_if = "is_false")]
    pub return_immediately: bool,
    /// 0.3: wait for the task to finish (`false` is 1.0's `returnImmediately`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocking: Option<bool>,
    /// 0.3: the push-notification target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push_notification_config: Option<Value>,
}

impl SendMessageConfiguration {
    /// Whether the caller wants the answer at once (1.0 `returnImmediately`, or 0.3
    /// `blocking: false`).
    pub fn returns_immediately(&self) -> bool {
        self.return_immediately || self.blocking == Some(false)
    }

    /// Whether the caller asked for push notifications.
    pub fn wants_push(&self) -> bool {
        self.task_push_notification_config.is_some() || self.push_notification_config.is_some()
    }
}

/// `SendMessage` / `SendStreamingMessage` params (proto `SendMessageRequest`; the 0.3
/// `MessageSendParams` has the same members).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendMessageRequest {
    /// The tenant (multi-tenant agents only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The message.
    pub message: Message,
    /// How to handle it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configuration: Option<SendMessageConfiguration>,
    /// Free-form metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
}

/// `GetTask` params (0.3 `TaskQueryParams`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetTaskRequest {
    /// The tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The task id.
    pub id: String,
    /// How many history messages to include.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_length: Option<i32>,
}

/// `CancelTask`, `SubscribeToTask` params (0.3 `TaskIdParams`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskIdRequest {
    /// The tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The task id.
    pub id: String,
    /// Free-form metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
}

/// How a push-notification receiver wants the node to authenticate (proto
/// `AuthenticationInfo`): sent as `Authorization: {scheme} {credentials}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthenticationInfo {
    /// The HTTP authentication scheme (`Bearer`, `Basic`, …).
    #[serde(default)]
    pub scheme: String,
    /// The credentials of that scheme.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub credentials: String,
}

/// A push-notification config of a task (proto `TaskPushNotificationConfig`): where the
/// agent POSTs the task's updates. Also the params of `CreateTaskPushNotificationConfig`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskPushNotificationConfig {
    /// The tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The config's id (the task id when the client gives none).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// The task.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub task_id: String,
    /// The receiver's URL.
    #[serde(default)]
    pub url: String,
    /// Sent back as `X-A2A-Notification-Token`, so the receiver knows the notification
    /// is for it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub token: String,
    /// How to authenticate to the receiver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<AuthenticationInfo>,
}

/// `GetTaskPushNotificationConfig` / `DeleteTaskPushNotificationConfig` params.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskPushNotificationConfigRequest {
    /// The tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The task.
    pub task_id: String,
    /// The config.
    pub id: String,
}

/// `ListTaskPushNotificationConfigs` params.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListTaskPushNotificationConfigsRequest {
    /// The tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The task.
    pub task_id: String,
    /// Most configs per page (all of a task's configs fit in one page here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_size: Option<i32>,
    /// The page to read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_token: Option<String>,
}

/// `ListTaskPushNotificationConfigs` answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListTaskPushNotificationConfigsResponse {
    /// The task's configs.
    #[serde(default)]
    pub configs: Vec<TaskPushNotificationConfig>,
    /// Empty: there is no next page.
    #[serde(default)]
    pub next_page_token: String,
}

/// `ListTasks` params (proto `ListTasksRequest`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListTasksRequest {
    /// The tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Only tasks of this conversation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_id: Option<String>,
    /// Only tasks in this state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<TaskState>,
    /// Most tasks per page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_size: Option<i32>,
    /// Where the page starts (from a previous `nextPageToken`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_token: Option<String>,
    /// How many history messages per task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_length: Option<i32>,
    /// Whether to include artifacts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_artifacts: Option<bool>,
}

/// `ListTasks` result (proto `ListTasksResponse`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListTasksResponse {
    /// The page.
    pub tasks: Vec<Task>,
    /// The next page's token, empty at the end.
    #[serde(default)]
    pub next_page_token: String,
    /// The page size used.
    #[serde(default)]
    pub page_size: i32,
    /// Tasks matching in all.
    #[serde(default)]
    pub total_size: i32,
}

// ---------------------------------------------------------------------------------------
// Agent card
// ---------------------------------------------------------------------------------------

/// One way to reach the agent (proto `AgentInterface`; 0.3 `AgentInterface` has `url` and
/// `transport` only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentInterface {
    /// The endpoint.
    pub url: String,
    /// `JSONRPC`, `HTTP+JSON` or `GRPC` (0.3: `transport`).
    #[serde(alias = "transport")]
    pub protocol_binding: String,
    /// The tenant to put in requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The protocol version spoken there (0.3 interfaces have none: 0.3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol_version: Option<String>,
}

/// A 0.3 `additionalInterfaces` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LegacyInterface {
    /// The endpoint.
    pub url: String,
    /// `JSONRPC`, `HTTP+JSON`, `GRPC`.
    pub transport: String,
}

/// Who runs the agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentProvider {
    /// Their site.
    #[serde(default)]
    pub url: String,
    /// Their name.
    #[serde(default)]
    pub organization: String,
}

/// What the agent can do beyond the basics.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentCapabilities {
    /// Serves `SendStreamingMessage` / `SubscribeToTask`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub streaming: Option<bool>,
    /// Sends push notifications.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push_notifications: Option<bool>,
    /// Protocol extensions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extensions: Vec<Value>,
    /// Serves an extended card to authenticated clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extended_agent_card: Option<bool>,
    /// 0.3: keeps the state transition history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_transition_history: Option<bool>,
}

/// One thing the agent does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentSkill {
    /// Unique id.
    pub id: String,
    /// Name.
    #[serde(default)]
    pub name: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Keywords.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Example prompts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub examples: Vec<String>,
    /// Media types it takes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub input_modes: Vec<String>,
    /// Media types it gives.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub output_modes: Vec<String>,
}

/// An agent's self-description at `/.well-known/agent-card.json` (proto `AgentCard`, plus
/// the 0.3 fields the 0.3 SDKs need: `url`, `preferredTransport`, `additionalInterfaces`,
/// `protocolVersion`, `security`). Security schemes and requirements stay JSON: read them
/// with [`SecurityScheme::from_value`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentCard {
    /// The agent's name.
    pub name: String,
    /// What it does.
    #[serde(default)]
    pub description: String,
    /// 1.0: where and how to reach it, preferred first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub supported_interfaces: Vec<AgentInterface>,
    /// Who runs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<AgentProvider>,
    /// The agent's version (not the protocol's).
    #[serde(default)]
    pub version: String,
    /// Documentation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub documentation_url: Option<String>,
    /// Capabilities.
    #[serde(default)]
    pub capabilities: AgentCapabilities,
    /// Named security schemes (either version's form).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub security_schemes: BTreeMap<String, Value>,
    /// 1.0 requirements (`[{"schemes": {"name": {"list": [scopes]}}}]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_requirements: Vec<Value>,
    /// 0.3 requirements (`[{"name": [scopes]}]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security: Vec<Value>,
    /// Media types it takes by default.
    #[serde(default)]
    pub default_input_modes: Vec<String>,
    /// Media types it gives by default.
    #[serde(default)]
    pub default_output_modes: Vec<String>,
    /// What it does, item by item.
    #[serde(default)]
    pub skills: Vec<AgentSkill>,
    /// JWS signatures of the card.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signatures: Vec<Value>,
    /// An icon.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon_url: Option<String>,
    /// 0.3: the preferred endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// 0.3: the binding at `url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_transport: Option<String>,
    /// 0.3: other endpoints.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub additional_interfaces: Vec<LegacyInterface>,
    /// 0.3: the protocol version of `url` and `additionalInterfaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol_version: Option<String>,
}

impl AgentCard {
    /// Every interface the card offers, 1.0 entries first, then the 0.3 `url` and
    /// `additionalInterfaces` (as the Python SDK's card resolver reads a 0.3 card), with the
    /// protocol version each speaks filled in (0.3 when the card does not say).
    pub fn interfaces(&self) -> Vec<AgentInterface> {
        let mut out: Vec<AgentInterface> = self.supported_interfaces.clone();
        for i in &mut out {
            if i.protocol_version.as_deref().unwrap_or("").is_empty() {
                i.protocol_version = Some(PROTOCOL_VERSION_0_3.to_owned());
            }
        }
        let legacy_version = self
            .protocol_version
            .clone()
            .unwrap_or_else(|| "0.3.0".to_owned());
        let mut legacy = Vec::new();
        if let Some(url) = &self.url {
            legacy.push(AgentInterface {
                url: url.clone(),
                protocol_binding: self
                    .preferred_transport
                    .clone()
                    .unwrap_or_else(|| BINDING_JSONRPC.to_owned()),
                tenant: None,
                protocol_version: Some(legacy_version.clone()),
            });
        }
        for i in &self.additional_interfaces {
            legacy.push(AgentInterface {
                url: i.url.clone(),
                protocol_binding: i.transport.clone(),
                tenant: None,
                protocol_version: Some(legacy_version.clone()),
            });
        }
        for l in legacy {
            if !out
                .iter()
                .any(|i| i.url == l.url && i.protocol_binding == l.protocol_binding)
            {
                out.push(l);
            }
        }
        out
    }
}

/// How an agent wants its clients to authenticate: the schemes the bridge can use, read
/// from either version's form (1.0 `{"httpAuthSecurityScheme": {"scheme": "bearer"}}`, 0.3
/// `{"type": "http", "scheme": "bearer"}`; API keys likewise).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecurityScheme {
    /// HTTP authentication (`Bearer`, `Basic`).
    Http {
        /// The scheme, as written (compare case-insensitively).
        scheme: String,
    },
    /// An API key in a header, query parameter or cookie.
    ApiKey {
        /// `header`, `query` or `cookie`.
        location: String,
        /// The header, parameter or cookie name.
        name: String,
    },
    /// OAuth 2, OpenID Connect, mutual TLS: not something a stored credential answers.
    Other(String),
}

impl SecurityScheme {
    /// Reads one scheme; `None` for a value that is neither form.
    pub fn from_value(v: &Value) -> Option<SecurityScheme> {
        let m = v.as_object()?;
        let s =
            |o: &Map<String, Value>, k: &str| o.get(k).and_then(Value::as_str).map(str::to_owned);
        if let Some(h) = m.get("httpAuthSecurityScheme").and_then(Value::as_object) {
            return Some(SecurityScheme::Http {
                scheme: s(h, "scheme")?,
            });
        }
        if let Some(k) = m.get("apiKeySecurityScheme").and_then(Value::as_object) {
            return Some(SecurityScheme::ApiKey {
                location: s(k, "location")?,
                name: s(k, "name")?,
            });
        }
        for other in [
            "oauth2SecurityScheme",
            "openIdConnectSecurityScheme",
            "mtlsSecurityScheme",
        ] {
            if m.contains_key(other) {
                return Some(SecurityScheme::Other(other.to_owned()));
            }
        }
        match m.get("type").and_then(Value::as_str)? {
            "http" => Some(SecurityScheme::Http {
                scheme: s(m, "scheme")?,
            }),
            "apiKey" => Some(SecurityScheme::ApiKey {
                location: s(m, "in").or_else(|| s(m, "location"))?,
                name: s(m, "name")?,
            }),
            other => Some(SecurityScheme::Other(other.to_owned())),
        }
    }
}

// ---------------------------------------------------------------------------------------
// JSON-RPC and errors
// ---------------------------------------------------------------------------------------

/// A JSON-RPC 2.0 request. `params` stays JSON until the method is known.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonRpcRequest {
    /// Always `"2.0"`.
    pub jsonrpc: String,
    /// String, number or null; absent for a notification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Value>,
    /// The method (`SendMessage`, `message/send`, …).
    pub method: String,
    /// The method's params.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<Value>,
}

/// A JSON-RPC 2.0 error object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonRpcError {
    /// The code (see [`A2aErrorCode`]).
    pub code: i64,
    /// For people.
    pub message: String,
    /// Details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

/// A JSON-RPC 2.0 response: `result` or `error`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonRpcResponse {
    /// Always `"2.0"`.
    pub jsonrpc: String,
    /// The request's id (null when it could not be read).
    #[serde(default)]
    pub id: Value,
    /// The result, on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// The error, on failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<JsonRpcError>,
}

impl JsonRpcResponse {
    /// A success.
    pub fn result(id: Value, result: Value) -> JsonRpcResponse {
        JsonRpcResponse {
            jsonrpc: "2.0".into(),
            id,
            result: Some(result),
            error: None,
        }
    }

    /// A failure.
    pub fn error(id: Value, code: A2aErrorCode, message: impl Into<String>) -> JsonRpcResponse {
        JsonRpcResponse {
            jsonrpc: "2.0".into(),
            id,
            result: None,
            error: Some(JsonRpcError {
                code: code.code(),
                message: message.into(),
                data: None,
            }),
        }
    }
}

/// The errors of A2A: the JSON-RPC codes, and for the HTTP+JSON binding the HTTP status,
/// the gRPC status name and the `ErrorInfo` reason (as the Python SDK maps them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum A2aErrorCode {
    /// -32700: the body is not JSON.
    JsonParse,
    /// -32600: not a valid JSON-RPC request.
    InvalidRequest,
    /// -32601: no such method.
    MethodNotFound,
    /// -32602: the params are wrong.
    InvalidParams,
    /// -32603: the server failed.
    Internal,
    /// -32001: no such task.
    TaskNotFound,
    /// -32002: the task cannot be canceled (it is finished).
    TaskNotCancelable,
    /// -32003: push notifications are not supported.
    PushNotificationNotSupported,
    /// -32004: the operation is not supported.
    UnsupportedOperation,
    /// -32005: a part's content type is not accepted.
    ContentTypeNotSupported,
    /// -32006: the agent answered something invalid.
    InvalidAgentResponse,
    /// -32007: no extended card.
    ExtendedAgentCardNotConfigured,
    /// -32008: an extension the agent requires was not declared.
    ExtensionSupportRequired,
    /// -32009: the `A2A-Version` is not served.
    VersionNotSupported,
}

impl A2aErrorCode {
    /// Every error; `InvalidRequest` before `JsonParse`, which shares its reason.
    const ALL: [A2aErrorCode; 14] = [
        A2aErrorCode::InvalidRequest,
        A2aErrorCode::JsonParse,
        A2aErrorCode::MethodNotFound,
        A2aErrorCode::InvalidParams,
        A2aErrorCode::Internal,
        A2aErrorCode::TaskNotFound,
        A2aErrorCode::TaskNotCancelable,
        A2aErrorCode::PushNotificationNotSupported,
        A2aErrorCode::UnsupportedOperation,
        A2aErrorCode::ContentTypeNotSupported,
        A2aErrorCode::InvalidAgentResponse,
        A2aErrorCode::ExtendedAgentCardNotConfigured,
        A2aErrorCode::ExtensionSupportRequired,
        A2aErrorCode::VersionNotSupported,
    ];

    /// The JSON-RPC error code.
    pub fn code(self) -> i64 {
        match self {
            A2aErrorCode::JsonParse => -32700,
            A2aErrorCode::InvalidRequest => -32600,
            A2aErrorCode::MethodNotFound => -32601,
            A2aErrorCode::InvalidParams => -32602,
            A2aErrorCode::Internal => -32603,
            A2aErrorCode::TaskNotFound => -32001,
            A2aErrorCode::TaskNotCancelable => -32002,
            A2aErrorCode::PushNotificationNotSupported => -32003,
            A2aErrorCode::UnsupportedOperation => -32004,
            A2aErrorCode::ContentTypeNotSupported => -32005,
            A2aErrorCode::InvalidAgentResponse => -32006,
            A2aErrorCode::ExtendedAgentCardNotConfigured => -32007,
            A2aErrorCode::ExtensionSupportRequired => -32008,
            A2aErrorCode::VersionNotSupported => -32009,
        }
    }

    /// The error a JSON-RPC code names.
    pub fn from_code(code: i64) -> Option<A2aErrorCode> {
        A2aErrorCode::ALL.iter().copied().find(|c| c.code() == code)
    }

    /// The HTTP status of the HTTP+JSON binding.
    pub fn http_status(self) -> u16 {
        match self {
            A2aErrorCode::TaskNotFound | A2aErrorCode::MethodNotFound => 404,
            A2aErrorCode::Internal | A2aErrorCode::InvalidAgentResponse => 500,
            _ => 400,
        }
    }

    /// The gRPC status name of the HTTP+JSON error body.
    pub fn grpc_status(self) -> &'static str {
        match self {
            A2aErrorCode::TaskNotFound | A2aErrorCode::MethodNotFound => "NOT_FOUND",
            A2aErrorCode::Internal | A2aErrorCode::InvalidAgentResponse => "INTERNAL",
            A2aErrorCode::JsonParse
            | A2aErrorCode::InvalidRequest
            | A2aErrorCode::InvalidParams
            | A2aErrorCode::ContentTypeNotSupported => "INVALID_ARGUMENT",
            _ => "FAILED_PRECONDITION",
        }
    }

    /// The `google.rpc.ErrorInfo` reason of the HTTP+JSON error body.
    pub fn reason(self) -> &'static str {
        match self {
            A2aErrorCode::JsonParse => "INVALID_REQUEST",
            A2aErrorCode::InvalidRequest => "INVALID_REQUEST",
            A2aErrorCode::MethodNotFound => "METHOD_NOT_FOUND",
            A2aErrorCode::InvalidParams => "INVALID_PARAMS",
            A2aErrorCode::Internal => "INTERNAL_ERROR",
            A2aErrorCode::TaskNotFound => "TASK_NOT_FOUND",
            A2aErrorCode::TaskNotCancelable => "TASK_NOT_CANCELABLE",
            A2aErrorCode::PushNotificationNotSupported => "PUSH_NOTIFICATION_NOT_SUPPORTED",
            A2aErrorCode::UnsupportedOperation => "UNSUPPORTED_OPERATION",
            A2aErrorCode::ContentTypeNotSupported => "CONTENT_TYPE_NOT_SUPPORTED",
            A2aErrorCode::InvalidAgentResponse => "INVALID_AGENT_RESPONSE",
            A2aErrorCode::ExtendedAgentCardNotConfigured => "EXTENDED_AGENT_CARD_NOT_CONFIGURED",
            A2aErrorCode::ExtensionSupportRequired => "EXTENSION_SUPPORT_REQUIRED",
            A2aErrorCode::VersionNotSupported => "VERSION_NOT_SUPPORTED",
        }
    }

    /// The error an `ErrorInfo` reason names.
    pub fn from_reason(reason: &str) -> Option<A2aErrorCode> {
        A2aErrorCode::ALL
            .iter()
            .copied()
            .find(|c| c.reason() == reason)
    }

    /// The HTTP+JSON binding's error body (`google.rpc.Status` with an `ErrorInfo`).
    pub fn rest_body(self, message: &str) -> Value {
        json!({"error": {
            "code": self.http_status(),
            "status": self.grpc_status(),
            "message": message,
            "details": [{
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": self.reason(),
                "domain": "a2a-protocol.org",
                "metadata": {},
            }],
        }})
    }

    /// Reads the error of an HTTP+JSON error body: its `ErrorInfo` reason, else `None`.
    pub fn from_rest_body(body: &Value) -> Option<(A2aErrorCode, String)> {
        let e = body.get("error")?;
        let message = e
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let code = e
            .get("details")?
            .as_array()?
            .iter()
            .filter_map(|d| d.get("reason").and_then(Value::as_str))
            .find_map(A2aErrorCode::from_reason)?;
        Some((code, message))
    }
}

// ---------------------------------------------------------------------------------------
// 0.3 forms
// ---------------------------------------------------------------------------------------

/// The 0.3 JSON forms of what a 0.3 peer reads: `kind`-tagged, lowercase states and roles,
/// `kind`-tagged parts.
pub mod v03 {
    use super::*;

    /// A message.
    pub fn message(m: &Message) -> Value {
        let mut v = to_value(m);
        if let Value::Object(o) = &mut v {
            o.insert("kind".into(), json!("message"));
            o.insert("role".into(), json!(m.role.as_v03()));
            o.insert(
                "parts".into(),
                Value::Array(m.parts.iter().map(Part::to_v03).collect()),
            );
        }
        v
    }

    /// A status.
    pub fn status(s: &TaskStatus) -> Value {
        let mut o = Map::new();
        o.insert("state".into(), json!(s.state.as_v03()));
        if let Some(m) = &s.message {
            o.insert("message".into(), message(m));
        }
        if let Some(t) = &s.timestamp {
            o.insert("timestamp".into(), json!(t));
        }
        Value::Object(o)
    }

    /// An artifact.
    pub fn artifact(a: &Artifact) -> Value {
        let mut v = to_value(a);
        if let Value::Object(o) = &mut v {
            o.insert(
                "parts".into(),
                Value::Array(a.parts.iter().map(Part::to_v03).collect()),
            );
        }
        v
    }

    /// A task.
    pub fn task(t: &Task) -> Value {
        let mut o = Map::new();
        o.insert("kind".into(), json!("task"));
        o.insert("id".into(), json!(t.id));
        o.insert("contextId".into(), json!(t.context_id));
        o.insert("status".into(), status(&t.status));
        if !t.artifacts.is_empty() {
            o.insert(
                "artifacts".into(),
                Value::Array(t.artifacts.iter().map(artifact).collect()),
            );
        }
        if !t.history.is_empty() {
            o.insert(
                "history".into(),
                Value::Array(t.history.iter().map(message).collect()),
            );
        }
        if let Some(md) = &t.metadata {
            o.insert("metadata".into(), Value::Object(md.clone()));
        }
        Value::Object(o)
    }

    /// A stream item (a status update's `final` is true when its state ends the stream).
    pub fn stream_response(r: &StreamResponse) -> Value {
        match r {
            StreamResponse::Task(t) => task(t),
            StreamResponse::Message(m) => message(m),
            StreamResponse::StatusUpdate(e) => {
                let mut o = Map::new();
                o.insert("kind".into(), json!("status-update"));
                o.insert("taskId".into(), json!(e.task_id));
                o.insert("contextId".into(), json!(e.context_id));
                o.insert("status".into(), status(&e.status));
                let fin = e.final_.unwrap_or_else(|| {
                    e.status.state.is_terminal() || e.status.state.is_interrupted()
                });
                o.insert("final".into(), json!(fin));
                if let Some(md) = &e.metadata {
                    o.insert("metadata".into(), Value::Object(md.clone()));
                }
                Value::Object(o)
            }
            StreamResponse::ArtifactUpdate(e) => {
                let mut o = Map::new();
                o.insert("kind".into(), json!("artifact-update"));
                o.insert("taskId".into(), json!(e.task_id));
                o.insert("contextId".into(), json!(e.context_id));
                o.insert("artifact".into(), artifact(&e.artifact));
                o.insert("append".into(), json!(e.append));
                o.insert("lastChunk".into(), json!(e.last_chunk));
                if let Some(md) = &e.metadata {
                    o.insert("metadata".into(), Value::Object(md.clone()));
                }
                Value::Object(o)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample_task() -> Task {
        Task {
            id: "t1".into(),
            context_id: "c1".into(),
            status: TaskStatus {
                state: TaskState::InputRequired,
                message: Some(Message {
                    message_id: "m2".into(),
                    context_id: Some("c1".into()),
                    task_id: Some("t1".into()),
                    role: Role::Agent,
                    parts: vec![Part::text("which one?")],
                    metadata: None,
                    extensions: vec![],
                    reference_task_ids: vec![],
                }),
                timestamp: Some("2026-01-01T00:00:00Z".into()),
            },
            artifacts: vec![Artifact {
                artifact_id: "a1".into(),
                name: Some("out".into()),
                description: None,
                parts: vec![
                    Part::data(json!({"k": 1})),
                    Part {
                        content: PartContent::Url("https://example.com/f".into()),
                        metadata: None,
                        filename: Some("f.txt".into()),
                        media_type: Some("text/plain".into()),
                    },
                ],
                metadata: None,
                extensions: vec![],
            }],
            history: vec![],
            metadata: None,
        }
    }

    #[test]
    fn sdk_1_0_message_parses() {
        let m: Message = serde_json::from_value(json!({
            "messageId": "m1", "role": "ROLE_USER",
            "parts": [{"text": "hi", "mediaType": "text/plain"}, {"raw": "aGk=", "filename": "a.bin"}],
            "contextId": "c"
        }))
        .unwrap();
        assert_eq!(m.role, Role::User);
        assert_eq!(m.parts[0].content, PartContent::Text("hi".into()));
        assert_eq!(m.parts[1].content, PartContent::Raw("aGk=".into()));
    }

    #[test]
    fn sdk_0_3_message_parses() {
        let m: Message = serde_json::from_value(json!({
            "kind": "message", "messageId": "m1", "role": "user",
            "parts": [{"kind": "text", "text": "hi"},
                      {"kind": "file", "file": {"uri": "https://x/y", "mimeType": "image/png", "name": "y.png"}},
                      {"kind": "data", "data": {"a": 1}}]
        }))
        .unwrap();
        assert_eq!(m.parts[1].content, PartContent::Url("https://x/y".into()));
        assert_eq!(m.parts[1].media_type.as_deref(), Some("image/png"));
        assert_eq!(m.parts[2].content, PartContent::Data(json!({"a": 1})));
    }

    #[test]
    fn parts_with_two_contents_are_refused() {
        assert!(Part::from_value(json!({"text": "a", "url": "b"})).is_err());
        assert!(Part::from_value(json!({})).is_err());
        assert!(Part::from_value(json!({"kind": "file", "file": {}})).is_err());
    }

    #[test]
    fn states_read_both_spellings() {
        for s in TaskState::ALL {
            assert_eq!(TaskState::parse(s.as_v1()), Some(s));
            assert_eq!(TaskState::parse(s.as_v03()), Some(s));
        }
        let s: TaskState = serde_json::from_value(json!("input-required")).unwrap();
        assert_eq!(s, TaskState::InputRequired);
        assert_eq!(
            serde_json::to_value(TaskState::AuthRequired).unwrap(),
            json!("TASK_STATE_AUTH_REQUIRED")
        );
    }

    #[test]
    fn stream_items_round_trip_in_both_versions() {
        let items = vec![
            StreamResponse::Task(sample_task()),
            StreamResponse::StatusUpdate(TaskStatusUpdateEvent {
                task_id: "t1".into(),
                context_id: "c1".into(),
                status: TaskStatus {
                    state: TaskState::Working,
                    message: None,
                    timestamp: None,
                },
                metadata: None,
                final_: None,
            }),
            StreamResponse::ArtifactUpdate(TaskArtifactUpdateEvent {
                task_id: "t1".into(),
                context_id: "c1".into(),
                artifact: sample_task().artifacts[0].clone(),
                append: true,
                last_chunk: true,
                metadata: None,
            }),
        ];
        for item in items {
            let back = StreamResponse::from_value(item.to_v1()).unwrap();
            assert_eq!(back, item);
            let old = item.to_version(ProtocolVersion::V0_3);
            let back = StreamResponse::from_value(old).unwrap();
            match (&back, &item) {
                (StreamResponse::StatusUpdate(a), StreamResponse::StatusUpdate(b)) => {
                    assert_eq!(a.status, b.status)
                }
                _ => assert_eq!(back, item),
            }
        }
        assert_eq!(
            StreamResponse::Task(sample_task()).to_v1()["task"]["status"]["state"],
            "TASK_STATE_INPUT_REQUIRED"
        );
        assert_eq!(
            v03::task(&sample_task())["status"]["state"],
            "input-required"
        );
    }

    #[test]
    fn legacy_card_gives_its_interfaces() {
        let card: AgentCard = serde_json::from_value(json!({
            "name": "lg", "description": "d", "version": "1",
            "url": "http://h/a2a", "preferredTransport": "JSONRPC", "protocolVersion": "0.3.0",
            "additionalInterfaces": [{"url": "http://h/rest", "transport": "HTTP+JSON"}],
            "capabilities": {"streaming": true}, "skills": [],
            "defaultInputModes": ["text"], "defaultOutputModes": ["text"],
            "securitySchemes": {"b": {"type": "http", "scheme": "bearer"},
                                "k": {"apiKeySecurityScheme": {"location": "header", "name": "X-Key"}}}
        }))
        .unwrap();
        let i = card.interfaces();
        assert_eq!(i.len(), 2);
        assert_eq!(i[1].protocol_binding, BINDING_HTTP_JSON);
        assert_eq!(i[0].protocol_version.as_deref(), Some("0.3.0"));
        assert_eq!(
            SecurityScheme::from_value(&card.security_schemes["b"]),
            Some(SecurityScheme::Http {
                scheme: "bearer".into()
            })
        );
        assert_eq!(
            SecurityScheme::from_value(&card.security_schemes["k"]),
            Some(SecurityScheme::ApiKey {
                location: "header".into(),
                name: "X-Key".into()
            })
        );
    }

    #[test]
    fn error_codes_map_both_ways() {
        for c in A2aErrorCode::ALL {
            assert_eq!(A2aErrorCode::from_code(c.code()), Some(c));
            let body = c.rest_body("m");
            let (back, msg) = A2aErrorCode::from_rest_body(&body).unwrap();
            assert_eq!(msg, "m");
            if c != A2aErrorCode::JsonParse {
                assert_eq!(back, c);
            }
        }
        assert_eq!(
            ProtocolVersion::from_header(None),
            Some(ProtocolVersion::V0_3)
        );
        assert_eq!(
            ProtocolVersion::from_header(Some("1.0")),
            Some(ProtocolVersion::V1_0)
        );
        assert_eq!(ProtocolVersion::from_header(Some("2.0")), None);
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|i| json!(i)),
            prop_oneof![
                Just("text".to_owned()),
                Just("kind".to_owned()),
                Just("file".to_owned()),
                Just("data".to_owned()),
                Just("TASK_STATE_WORKING".to_owned()),
                Just("ROLE_USER".to_owned()),
                ".{0,8}"
            ]
            .prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            let key = prop_oneof![
                Just("text".to_owned()),
                Just("kind".to_owned()),
                Just("file".to_owned()),
                Just("data".to_owned()),
                Just("raw".to_owned()),
                Just("url".to_owned()),
                Just("bytes".to_owned()),
                Just("uri".to_owned()),
                Just("messageId".to_owned()),
                Just("role".to_owned()),
                Just("parts".to_owned()),
                Just("id".to_owned()),
                Just("status".to_owned()),
                Just("state".to_owned()),
                Just("task".to_owned()),
                Just("message".to_owned()),
                Just("statusUpdate".to_owned()),
                Just("metadata".to_owned()),
                "[a-z]{1,6}",
            ];
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map(key, inner, 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn arb_part() -> impl Strategy<Value = Part> {
        (
            prop_oneof![
                ".{0,20}".prop_map(PartContent::Text),
                "[A-Za-z0-9+/]{0,12}".prop_map(PartContent::Raw),
                "https://[a-z]{1,8}/[a-z]{0,8}".prop_map(PartContent::Url),
                proptest::collection::btree_map("[a-z]{1,4}", any::<i32>(), 0..3)
                    .prop_map(|m| PartContent::Data(json!(m))),
            ],
            proptest::option::of("[a-z]{1,6}\\.txt"),
            proptest::option::of(Just("text/plain".to_owned())),
        )
            .prop_map(|(content, filename, media_type)| {
                // 0.3 text and data parts carry no file name or media type.
                let file = matches!(content, PartContent::Raw(_) | PartContent::Url(_));
                Part {
                    content,
                    metadata: None,
                    filename: filename.filter(|_| file),
                    media_type: media_type.filter(|_| file),
                }
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn any_json_parses_or_errors(v in arb_json()) {
            let _ = serde_json::from_value::<Part>(v.clone());
            let _ = serde_json::from_value::<Message>(v.clone());
            let _ = serde_json::from_value::<Task>(v.clone());
            let _ = serde_json::from_value::<SendMessageRequest>(v.clone());
            let _ = serde_json::from_value::<StreamResponse>(v.clone());
            let _ = serde_json::from_value::<SendMessageResponse>(v.clone());
            let _ = serde_json::from_value::<AgentCard>(v.clone());
            let _ = serde_json::from_value::<JsonRpcRequest>(v.clone());
            let _ = serde_json::from_value::<ListTasksRequest>(v.clone());
            let _ = A2aErrorCode::from_rest_body(&v);
            let _ = SecurityScheme::from_value(&v);
        }

        #[test]
        fn any_text_parses_or_errors(s in ".{0,64}") {
            let _ = serde_json::from_str::<Message>(&s);
            let _ = serde_json::from_str::<StreamResponse>(&s);
            let _ = serde_json::from_str::<JsonRpcRequest>(&s);
        }

        #[test]
        fn messages_round_trip_in_both_versions(
            parts in proptest::collection::vec(arb_part(), 1..4),
            id in "[a-z0-9-]{1,12}",
            agent in any::<bool>(),
            ctx in proptest::option::of("[a-z0-9]{1,8}"),
        ) {
            let m = Message {
                message_id: id,
                context_id: ctx,
                task_id: None,
                role: if agent { Role::Agent } else { Role::User },
                parts,
                metadata: None,
                extensions: vec![],
                reference_task_ids: vec![],
            };
            let v1 = serde_json::to_value(&m).unwrap();
            prop_assert_eq!(&serde_json::from_value::<Message>(v1).unwrap(), &m);
            let old = v03::message(&m);
            prop_assert_eq!(&serde_json::from_value::<Message>(old).unwrap(), &m);
        }
    }
}

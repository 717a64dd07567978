//! The mapping between ACP and A2A that the server applies: parts, task states, tasks (an
//! A2A task is a view of the ACP task of the same id), node errors. docs/a2a.md lists every
//! rule; keep the two in step.

use base64::Engine;
use serde_json::{Map, Value, json};

use crate::a2a::types::{
    A2aErrorCode, Artifact, Message, Part, PartContent, Role, Task, TaskState, TaskStatus,
};
use crate::node::error::{ErrorCode, NodeError};
use crate::node::task::{Task as AcpTask, TaskState as AcpState};

/// An A2A error with its message, as both bindings report it.
#[derive(Debug, Clone)]
pub struct A2aError {
    /// The A2A error.
    pub code: A2aErrorCode,
    /// For people.
    pub message: String,
    /// The HTTP status of the HTTP+JSON binding when it is not the code's (a full store is
    /// 503, a peer over its rate 429: the client should retry, not give up).
    pub http_status: Option<u16>,
}

impl A2aError {
    /// An error with the code's usual HTTP status.
    pub fn new(code: A2aErrorCode, message: impl Into<String>) -> A2aError {
        A2aError {
            code,
            message: message.into(),
            http_status: None,
        }
    }

    /// Bad params.
    pub fn params(message: impl Into<String>) -> A2aError {
        A2aError::new(A2aErrorCode::InvalidParams, message)
    }

    /// No such task (or not this caller's).
    pub fn task_not_found(id: &str) -> A2aError {
        A2aError::new(A2aErrorCode::TaskNotFound, format!("task {id:?} not found"))
    }

    /// The HTTP status of the HTTP+JSON binding.
    pub fn status(&self) -> u16 {
        self.http_status.unwrap_or_else(|| self.code.http_status())
    }
}

impl From<NodeError> for A2aError {
    fn from(e: NodeError) -> A2aError {
        let (code, status) = match e.code {
            ErrorCode::NotFound => (A2aErrorCode::TaskNotFound, None),
            ErrorCode::InvalidTransition => (A2aErrorCode::UnsupportedOperation, None),
            ErrorCode::StorageFull => (A2aErrorCode::Internal, Some(503)),
            c if c.http_status() < 500 => (A2aErrorCode::InvalidParams, None),
            _ => (A2aErrorCode::Internal, None),
        };
        A2aError {
            code,
            message: e.message,
            http_status: status,
        }
    }
}

/// The A2A state of an ACP state. ACP `cancelling` (a cancel asked for, not yet confirmed)
/// has no A2A state: it shows as `WORKING` until `canceled`.
pub fn state_to_a2a(s: AcpState) -> TaskState {
    match s {
        AcpState::Submitted => TaskState::Submitted,
        AcpState::Working | AcpState::Cancelling => TaskState::Working,
        AcpState::InputRequired => TaskState::InputRequired,
        AcpState::Completed => TaskState::Completed,
        AcpState::Failed => TaskState::Failed,
        AcpState::Canceled => TaskState::Canceled,
    }
}

/// The ACP state of an A2A state (a `ListTasks` filter): `REJECTED` is `failed`,
/// `AUTH_REQUIRED` is `input_required`, `UNSPECIFIED` is no filter.
pub fn state_from_a2a(s: TaskState) -> Option<AcpState> {
    Some(match s {
        TaskState::Unspecified => return None,
        TaskState::Submitted => AcpState::Submitted,
        TaskState::Working => AcpState::Working,
        TaskState::InputRequired | TaskState::AuthRequired => AcpState::InputRequired,
        TaskState::Completed => AcpState::Completed,
        TaskState::Failed | TaskState::Rejected => AcpState::Failed,
        TaskState::Canceled => AcpState::Canceled,
    })
}

/// An A2A part as an ACP part. Inline bytes become a `file` part whose URL is a `data:` URL
/// (the bytes stay in the message; `--max-msg-size` bounds them); a URL a `file` part; data
/// a `data` part; text a `text` part. Bytes that are not base64 are refused.
pub fn part_to_acp(p: &Part) -> Result<Value, A2aError> {
    let mut out = Map::new();
    match &p.content {
        PartContent::Text(t) => {
            out.insert("type".into(), json!("text"));
            out.insert("content".into(), json!(t));
        }
        PartContent::Data(d) => {
            out.insert("type".into(), json!("data"));
            out.insert("content".into(), d.clone());
        }
        PartContent::Url(u) => {
            if u.is_empty() {
                return Err(A2aError::params("a part's url is empty"));
            }
            out.insert("type".into(), json!("file"));
            out.insert("url".into(), json!(u));
        }
        PartContent::Raw(b) => {
            let engine = base64::engine::general_purpose::STANDARD;
            let url_safe = base64::engine::general_purpose::URL_SAFE;
            if engine.decode(b).is_err() && url_safe.decode(b).is_err() {
                return Err(A2aError::params("a part's raw bytes are not base64"));
            }
            let media = p
                .media_type
                .as_deref()
                .filter(|m| !m.is_empty() && !m.contains([',', ';']))
                .unwrap_or("application/octet-stream");
            out.insert("type".into(), json!("file"));
            out.insert("url".into(), json!(format!("data:{media};base64,{b}")));
        }
    }
    if !matches!(p.content, PartContent::Text(_) | PartContent::Data(_)) {
        if let Some(f) = &p.filename {
            out.insert("name".into(), json!(f));
        }
        if let Some(m) = &p.media_type {
            out.insert("mime_type".into(), json!(m));
        }
    }
    Ok(Value::Object(out))
}

/// An ACP part as an A2A part: the reverse of [`part_to_acp`] (a `data:` URL with base64
/// becomes inline bytes again); a part of an unknown type becomes a data part holding it.
pub fn part_from_acp(p: &Value) -> Part {
    let s = |k: &str| p.get(k).and_then(Value::as_str).map(str::to_owned);
    match p.get("type").and_then(Value::as_str) {
        Some("text") => Part::text(
            p.get("content")
                .map(|c| c.as_str().map_or_else(|| c.to_string(), str::to_owned))
                .unwrap_or_default(),
        ),
        Some("data") => Part::data(p.get("content").cloned().unwrap_or(Value::Null)),
        Some("file") => {
            let url = s("url").unwrap_or_default();
            let mut media_type = s("mime_type").or_else(|| s("media_type"));
            let content = match url
                .strip_prefix("data:")
                .and_then(|rest| rest.split_once(";base64,"))
            {
                Some((media, b64)) => {
                    if media_type.is_none() && !media.is_empty() {
                        media_type = Some(media.to_owned());
                    }
                    PartContent::Raw(b64.to_owned())
                }
                None => PartContent::Url(url),
            };
            Part {
                content,
                metadata: None,
                filename: s("name").or_else(|| s("filename")),
                media_type,
            }
        }
        _ => Part::data(p.clone()),
    }
}

fn parts_from_acp(parts: Option<&Value>) -> Vec<Part> {
    parts
        .and_then(Value::as_array)
        .map(|l| l.iter().map(part_from_acp).collect())
        .unwrap_or_default()
}

/// An ACP artifact (whatever `acp_task_update` was given: usually `{name?, parts}`) as an
/// A2A artifact; its id is its `artifact_id` or `id`, else its position.
pub fn artifact_from_acp(a: &Value, index: usize) -> Artifact {
    let s = |k: &str| a.get(k).and_then(Value::as_str).map(str::to_owned);
    let mut parts = parts_from_acp(a.get("parts"));
    if parts.is_empty() {
        // An artifact without parts is shown whole.
        parts.push(Part::data(a.clone()));
    }
    Artifact {
        artifact_id: s("artifact_id")
            .or_else(|| s("id"))
            .unwrap_or_else(|| format!("artifact-{}", index + 1)),
        name: s("name"),
        description: s("description"),
        parts,
        metadata: None,
        extensions: Vec::new(),
    }
}

/// The text of an ACP task's `error` (a string, or an object's `message`), for the status
/// message of a failed or input-required task.
fn error_text(e: &Value) -> String {
    match e {
        Value::String(s) => s.clone(),
        Value::Object(o) => o
            .get("message")
            .and_then(Value::as_str)
            .map_or_else(|| e.to_string(), str::to_owned),
        other => other.to_string(),
    }
}

/// The agent message a status carries: the question of an input-required task and the
/// reason of a failed one (the ACP task's `error`), the last artifact of a completed one.
fn status_message(t: &AcpTask, context: &str) -> Option<Message> {
    let parts = match t.status {
        AcpState::InputRequired | AcpState::Failed => {
            vec![Part::text(error_text(t.error.as_ref()?))]
        }
        AcpState::Completed => {
            let last = t.artifacts.last()?;
            artifact_from_acp(last, t.artifacts.len() - 1).parts
        }
        _ => return None,
    };
    Some(Message {
        message_id: format!("{}-status-{}", t.id, t.updated_at),
        context_id: Some(context.to_owned()),
        task_id: Some(t.id.clone()),
        role: Role::Agent,
        parts,
        metadata: None,
        extensions: Vec::new(),
        reference_task_ids: Vec::new(),
    })
}

/// The A2A view of an ACP task: same id and context, mapped state, the status message
/// above, the artifacts, and the history (the message that started it, then the messages
/// added since), the last `history_length` of it when given.
pub fn task_from_acp(t: &AcpTask, history_length: Option<i32>) -> Task {
    let context = t.context_id.clone().unwrap_or_default();
    let mut history = Vec::new();
    let first = parts_from_acp(t.payload.get("parts"));
    if !first.is_empty() {
        history.push(Message {
            message_id: t
                .origin_message_id
                .clone()
                .unwrap_or_else(|| format!("{}-0", t.id)),
            context_id: Some(context.clone()),
            task_id: Some(t.id.clone()),
            role: Role::User,
            parts: first,
            metadata: None,
            extensions: Vec::new(),
            reference_task_ids: Vec::new(),
        });
    }
    for (i, h) in t.history.iter().enumerate() {
        let parts = parts_from_acp(h.get("parts"));
        if parts.is_empty() {
            continue;
        }
        history.push(Message {
            message_id: h
                .get("message_id")
                .and_then(Value::as_str)
                .map_or_else(|| format!("{}-{}", t.id, i + 1), str::to_owned),
            context_id: Some(context.clone()),
            task_id: Some(t.id.clone()),
            role: if h.get("role").and_then(Value::as_str) == Some("agent") {
                Role::Agent
            } else {
                Role::User
            },
            parts,
            metadata: None,
            extensions: Vec::new(),
            reference_task_ids: Vec::new(),
        });
    }
    if let Some(n) = history_length {
        let keep = usize::try_from(n.max(0)).unwrap_or(0);
        let drop = history.len().saturating_sub(keep);
        history.drain(..drop);
    }
    Task {
        id: t.id.clone(),
        context_id: context.clone(),
        status: TaskStatus {
            state: state_to_a2a(t.status),
            message: status_message(t, &context),
            timestamp: Some(t.updated_at.clone()),
        },
        artifacts: t
            .artifacts
            .iter()
            .enumerate()
            .map(|(i, a)| artifact_from_acp(a, i))
            .collect(),
        history,
        metadata: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn states_map_both_ways() {
        for s in AcpState::ALL {
            let back = state_from_a2a(state_to_a2a(s)).unwrap();
            let expect = if s == AcpState::Cancelling {
                AcpState::Working
            } else {
                s
            };
            assert_eq!(back, expect);
        }
        assert_eq!(state_from_a2a(TaskState::Rejected), Some(AcpState::Failed));
        assert_eq!(state_from_a2a(TaskState::Unspecified), None);
    }

    #[test]
    fn raw_bytes_become_a_data_url_and_back() {
        let p = Part {
            content: PartContent::Raw("aGVsbG8=".into()),
            metadata: None,
            filename: Some("h.txt".into()),
            media_type: Some("text/plain".into()),
        };
        let acp = part_to_acp(&p).unwrap();
        assert_eq!(acp["url"], "data:text/plain;base64,aGVsbG8=");
        assert_eq!(part_from_acp(&acp), p);
        let bad = Part {
            content: PartContent::Raw("not base64!".into()),
            ..p
        };
        assert_eq!(
            part_to_acp(&bad).unwrap_err().code,
            A2aErrorCode::InvalidParams
        );
    }

    proptest! {
        #[test]
        fn any_acp_part_or_artifact_maps_without_panic(v in proptest::arbitrary::any::<(String, u8)>()) {
            let (s, n) = v;
            for p in [
                json!({"type": "text", "content": s}),
                json!({"type": "file", "url": format!("data:{s};base64,{s}")}),
                json!({"type": "file", "url": s, "name": n}),
                json!({"type": "data", "content": {"k": s}}),
                json!({"type": s}),
                json!(n),
            ] {
                let part = part_from_acp(&p);
                let _ = part_to_acp(&part);
                let _ = artifact_from_acp(&json!({"parts": [p.clone()]}), usize::from(n));
                let _ = artifact_from_acp(&p, 0);
            }
        }
    }
}

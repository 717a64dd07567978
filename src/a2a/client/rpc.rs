//! The A2A calls the bridge makes (`SendMessage`, `SendStreamingMessage`, `GetTask`,
//! `CancelTask`) on the interface it chose: JSON-RPC or HTTP+JSON, A2A 1.0 or 0.3
//! (JSON-RPC). Every call carries `A2A-Version` and the agent's credential, and has a time
//! limit.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hyper::Method;
use hyper::body::Bytes;
use serde_json::{Value, json};

use super::card::{Binding, Interface};
use super::convert;
use super::credentials::Credential;
use super::http::{self, Failure};
use crate::a2a::types::{
    self, Message, ProtocolVersion, Role, SendMessageResponse, StreamResponse, Task,
};
use crate::node::webhooks::post::Connector;

/// How long `SendMessage` may take. The bridge asks for an immediate answer
/// (`returnImmediately`, 0.3 `blocking: false`), so this bounds an agent that ignores it.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `GetTask` and `CancelTask` may take.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(15);

/// Why a call did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// No answer (down, refused connection, time limit, 502/503/504): try again later.
    Unreachable(String),
    /// The agent answered with an error: its reason.
    Refused(String),
}

/// A request ready to go: headers, method, URL, body.
type Prepared = (Vec<(String, String)>, Method, url::Url, Option<Bytes>);

/// One agent as the bridge talks to it.
pub struct Agent {
    /// Opens the connections.
    pub connector: Arc<Connector>,
    /// The chosen interface.
    pub interface: Interface,
    /// The header the card asks for, if the user gave one.
    pub credential: Option<Credential>,
    /// JSON-RPC request ids.
    next_id: AtomicU64,
}

/// A task id as one path segment (percent-encoded beyond the unreserved characters).
fn segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The reason in an error body: JSON-RPC `error.message`, REST `error.message` or
/// `message`, else the start of the text.
fn reason(status: u16, body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let msg = v["error"]["message"]
        .as_str()
        .or_else(|| v["message"].as_str())
        .or_else(|| v["detail"].as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned());
    format!("HTTP {status}: {msg}")
}

impl Agent {
    /// An agent reached through `interface`.
    pub fn new(
        connector: Arc<Connector>,
        interface: Interface,
        credential: Option<Credential>,
    ) -> Agent {
        Agent {
            connector,
            interface,
            credential,
            next_id: AtomicU64::new(1),
        }
    }

    fn version(&self) -> ProtocolVersion {
        self.interface.version
    }

    /// The request of a call.
    fn request(
        &self,
        rpc_method: (&str, &str),
        rest: (Method, String),
        params: Value,
    ) -> Result<Prepared, CallError> {
        let mut headers = vec![(
            types::VERSION_HEADER.to_owned(),
            self.version().as_str().to_owned(),
        )];
        if let Some(c) = &self.credential {
            headers.push((c.header.clone(), c.value.clone()));
        }
        let base = self.interface.url.as_str().trim_end_matches('/').to_owned();
        let (method, url, body) = match self.interface.binding {
            Binding::JsonRpc => {
                let mut params = params;
                if let (Some(t), Some(obj)) = (&self.interface.tenant, params.as_object_mut()) {
                    obj.insert("tenant".into(), json!(t));
                }
                let name = match self.version() {
                    ProtocolVersion::V1_0 => rpc_method.0,
                    ProtocolVersion::V0_3 => rpc_method.1,
                };
                let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                let body = json!({"jsonrpc": "2.0", "id": id, "method": name, "params": params});
                (Method::POST, self.interface.url.clone(), Some(body))
            }
            Binding::HttpJson => {
                let tenant = self
                    .interface
                    .tenant
                    .as_deref()
                    .map(|t| format!("/{}", segment(t)))
                    .unwrap_or_default();
                let url = url::Url::parse(&format!("{base}{tenant}{}", rest.1))
                    .map_err(|e| CallError::Refused(format!("bad interface URL: {e}")))?;
                let body = (rest.0 == Method::POST).then_some(params);
                (rest.0, url, body)
            }
        };
        Ok((
            headers,
            method,
            url,
            body.map(|b| Bytes::from(b.to_string())),
        ))
    }

    /// POSTs (or GETs) to the interface: JSON-RPC `method` with `params`, or the REST
    /// `path` with `params` as the body.
    async fn call(
        &self,
        rpc_method: (&str, &str),
        rest: (Method, String),
        params: Value,
        limit: Duration,
    ) -> Result<Value, CallError> {
        let (headers, method, url, body) = self.request(rpc_method, rest, params)?;
        let answer = http::request(&self.connector, method, &url, &headers, body, limit)
            .await
            .map_err(|e| match e {
                Failure::Unreachable(why) => CallError::Unreachable(why),
                Failure::BadUrl(why) => CallError::Refused(why),
            })?;
        if matches!(answer.status, 502..=504) {
            return Err(CallError::Unreachable(reason(answer.status, &answer.body)));
        }
        if !(200..300).contains(&answer.status) {
            return Err(CallError::Refused(reason(answer.status, &answer.body)));
        }
        let v: Value = serde_json::from_slice(&answer.body)
            .map_err(|e| CallError::Refused(format!("the agent's answer is not JSON: {e}")))?;
        match self.interface.binding {
            Binding::HttpJson => Ok(v),
            Binding::JsonRpc => {
                if let Some(err) = v.get("error").filter(|e| !e.is_null()) {
                    return Err(CallError::Refused(format!(
                        "{} (A2A error {})",
                        err["message"].as_str().unwrap_or("error"),
                        err["code"]
                    )));
                }
                v.get("result").cloned().ok_or_else(|| {
                    CallError::Refused("the agent's JSON-RPC answer has no result".into())
                })
            }
        }
    }

    /// `SendMessage` / `message/send`, asking for an immediate answer (the agent's task is
    /// then followed with `GetTask`).
    pub async fn send_message(&self, message: &Message) -> Result<SendMessageResponse, CallError> {
        let configuration = match self.version() {
            ProtocolVersion::V1_0 => json!({"returnImmediately": true}),
            ProtocolVersion::V0_3 => json!({"blocking": false}),
        };
        let params = json!({
            "message": convert::outgoing(message, self.version()),
            "configuration": configuration,
        });
        let v = self
            .call(
                ("SendMessage", "message/send"),
                (Method::POST, "/message:send".into()),
                params,
                SEND_TIMEOUT,
            )
            .await?;
        serde_json::from_value(v).map_err(|e| {
            CallError::Refused(format!(
                "the agent answered neither a message nor a task: {e}"
            ))
        })
    }

    /// `SendStreamingMessage` / `message/stream`: the open event stream (its head within
    /// [`SEND_TIMEOUT`]); read its items with [`Agent::stream_item`].
    pub async fn send_streaming(&self, message: &Message) -> Result<http::Stream, CallError> {
        let params = json!({"message": convert::outgoing(message, self.version())});
        let (headers, method, url, body) = self.request(
            ("SendStreamingMessage", "message/stream"),
            (Method::POST, "/message:stream".into()),
            params,
        )?;
        let stream = http::open(&self.connector, method, &url, &headers, body, SEND_TIMEOUT)
            .await
            .map_err(|e| match e {
                Failure::Unreachable(why) => CallError::Unreachable(why),
                Failure::BadUrl(why) => CallError::Refused(why),
            })?;
        if stream.content_type == "text/event-stream" && (200..300).contains(&stream.status) {
            return Ok(stream);
        }
        let status = stream.status;
        let body = stream.rest(QUERY_TIMEOUT).await;
        if matches!(status, 502..=504) {
            return Err(CallError::Unreachable(reason(status, &body)));
        }
        if !(200..300).contains(&status) {
            return Err(CallError::Refused(reason(status, &body)));
        }
        // A JSON answer in place of a stream: a JSON-RPC error, or a single result.
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if let Some(err) = v.get("error").filter(|e| !e.is_null()) {
            return Err(CallError::Refused(format!(
                "{} (A2A error {})",
                err["message"].as_str().unwrap_or("error"),
                err["code"]
            )));
        }
        Err(CallError::Refused(
            "the agent answered SendStreamingMessage without an event stream".into(),
        ))
    }

    /// One item of the event stream: JSON-RPC `{result}` (or `{error}`), or the bare item
    /// (HTTP+JSON).
    pub fn stream_item(&self, data: &str) -> Result<StreamResponse, CallError> {
        let v: Value = serde_json::from_str(data)
            .map_err(|e| CallError::Refused(format!("a stream event is not JSON: {e}")))?;
        let item = match self.interface.binding {
            Binding::HttpJson => v,
            Binding::JsonRpc => {
                if let Some(err) = v.get("error").filter(|e| !e.is_null()) {
                    return Err(CallError::Refused(format!(
                        "{} (A2A error {})",
                        err["message"].as_str().unwrap_or("error"),
                        err["code"]
                    )));
                }
                v.get("result").cloned().unwrap_or(Value::Null)
            }
        };
        StreamResponse::from_value(item).map_err(CallError::Refused)
    }

    /// `GetTask` / `tasks/get`.
    pub async fn get_task(&self, id: &str) -> Result<Task, CallError> {
        let rest = (Method::GET, format!("/tasks/{}", segment(id)));
        self.task_call(("GetTask", "tasks/get"), rest, id).await
    }

    /// `CancelTask` / `tasks/cancel`.
    pub async fn cancel_task(&self, id: &str) -> Result<Task, CallError> {
        let rest = (Method::POST, format!("/tasks/{}:cancel", segment(id)));
        self.task_call(("CancelTask", "tasks/cancel"), rest, id)
            .await
    }

    /// A call about one task (by its id) whose answer is that task.
    async fn task_call(
        &self,
        rpc_method: (&str, &str),
        rest: (Method, String),
        id: &str,
    ) -> Result<Task, CallError> {
        let v = self
            .call(rpc_method, rest, json!({"id": id}), QUERY_TIMEOUT)
            .await?;
        serde_json::from_value(v)
            .map_err(|e| CallError::Refused(format!("the agent answered no task: {e}")))
    }
}

/// A user message to an agent, from ACP parts.
pub fn user_message(
    message_id: &str,
    parts: &[Value],
    context_id: Option<&str>,
    task_id: Option<&str>,
) -> Message {
    Message {
        message_id: message_id.to_owned(),
        context_id: context_id.map(str::to_owned),
        task_id: task_id.map(str::to_owned),
        role: Role::User,
        parts: convert::parts_to_a2a(parts),
        metadata: None,
        extensions: Vec::new(),
        reference_task_ids: Vec::new(),
    }
}

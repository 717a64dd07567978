//! MCP tasks (the `io.modelcontextprotocol/tasks` extension) over the node's task handles.
//!
//! A client that lists the extension in its capabilities gets a task handle instead of a
//! final result from `acp_task_create` and from `acp_send` with `wait_for_reply`. The handle
//! is committed to the store before it is answered ([`Node::create_handle`]), and every
//! `tasks/get` reads the handle and the ACP task afresh, so a handle survives a restart of the
//! process. The ACP task's state maps to the MCP status:
//!
//! | ACP                              | MCP              | with                                  |
//! |----------------------------------|------------------|---------------------------------------|
//! | submitted, working, cancelling   | `working`        | the remote agent's latest text        |
//! | input_required                   | `input_required` | the remote agent's question as a form |
//! | completed                        | `completed`      | the artifacts as the tool result      |
//! | failed                           | `failed`         | the remote agent's reason             |
//! | canceled                         | `cancelled`      |                                       |
//!
//! A reply handle is `working` until the peer's first message in the conversation after the
//! send, then `completed` with that message.

use rmcp::ErrorData as McpError;
use rmcp::RoleServer;
use rmcp::model::{
    CallToolResult, ContentBlock, CreateTaskResult, DetailedTask, ElicitResult, GetTaskResult,
    JsonObject, MetaObject, ProtocolVersion, Task as McpTask, TaskPayload, TaskStatus,
    UpdateTaskParams,
};
use rmcp::service::RequestContext;
use serde_json::{Value, json};

use super::forms::{self, Question};
use crate::node::error::{ErrorCode, NodeError, NodeResult};
use crate::node::handles::{HandleKind, NewHandle, TaskHandle};
use crate::node::message::MessageRow;
use crate::node::task::{Task, TaskState};
use crate::node::{MessageQuery, Node};

/// How long a handle for an ACP task lasts: remote agents may work for days, and the task
/// itself stays in the store after the handle is gone.
pub const TASK_TTL_MS: u64 = 7 * 24 * 3600 * 1000;

/// How long a handle waiting for a peer's reply lasts.
pub const REPLY_TTL_MS: u64 = 24 * 3600 * 1000;

/// The longest text of the remote agent shown as a status message.
const STATUS_TEXT_MAX: usize = 500;

/// Whether this request's client listed the tasks extension (per request on 2026-07-28, at
/// `initialize` for older sessions): only such a client may be answered with a task.
pub fn client_wants_tasks(context: &RequestContext<RoleServer>) -> bool {
    context
        .client_capabilities()
        .is_some_and(|caps| caps.supports_tasks())
}

/// Whether this request's client takes input requests (MRTR): protocol 2026-07-28 or newer
/// and form elicitation among its capabilities.
pub fn client_takes_input_requests(context: &RequestContext<RoleServer>) -> bool {
    let recent = context
        .protocol_version()
        .is_some_and(|v| v.as_str() >= ProtocolVersion::V_2026_07_28.as_str());
    recent
        && context
            .client_capabilities()
            .and_then(|caps| caps.elicitation)
            .is_some_and(|e| e.form.is_some() || e.url.is_none())
}

/// A node error in a `tasks/*` request: a protocol error (these requests have no tool result
/// to carry it).
fn protocol_error(e: NodeError) -> McpError {
    let text = format!("{}: {}", e.code, e.message);
    match e.code {
        ErrorCode::NotFound | ErrorCode::InvalidRequest | ErrorCode::InvalidTransition => {
            McpError::invalid_params(text, None)
        }
        _ => McpError::internal_error(text, None),
    }
}

/// How often the client should poll: often while the peer is connected and always on, less
/// often for an agent that wakes up on a schedule (its card's `interval_seconds`), rarely
/// while it is away.
fn poll_interval_ms(node: &Node, peer_id: Option<&str>) -> u64 {
    let Some(peer) = peer_id.and_then(|p| node.peer(p).ok()) else {
        return 5_000;
    };
    if peer["connected"] != true {
        return 30_000;
    }
    match peer["agent_card"]["availability"]["interval_seconds"].as_f64() {
        Some(secs) if secs > 0.0 => ((secs * 500.0) as u64).clamp(2_000, 300_000),
        _ => 2_000,
    }
}

/// Where a listening client hears about the ACP task behind a handle.
fn handle_meta(acp_task_id: Option<&str>) -> Option<MetaObject> {
    let id = acp_task_id?;
    let mut meta = MetaObject::new();
    meta.insert("acp-relay/taskId".into(), json!(id));
    meta.insert(
        "acp-relay/resource".into(),
        json!(format!("{}{id}", super::resources::TASK_PREFIX)),
    );
    Some(meta)
}

fn base_task(node: &Node, h: &TaskHandle, status: TaskStatus, updated_at: &str) -> McpTask {
    McpTask::new(h.id.clone(), status, h.created_at.clone(), updated_at)
        .with_ttl_ms(h.ttl_ms)
        .with_poll_interval_ms(poll_interval_ms(node, h.peer_id.as_deref()))
}

/// The handle answered for an ACP task, created (and committed) first, with the handle.
pub async fn for_acp_task(node: &Node, task: &Task) -> NodeResult<(CreateTaskResult, TaskHandle)> {
    let h = node
        .create_handle(NewHandle {
            kind: HandleKind::Task,
            task_id: Some(task.id.clone()),
            context_id: task.context_id.clone(),
            peer_id: task.peer_id.clone(),
            message_id: None,
            ttl_ms: TASK_TTL_MS,
            since: None,
        })
        .await?;
    let status = match task.status {
        TaskState::InputRequired => TaskStatus::InputRequired,
        TaskState::Completed => TaskStatus::Completed,
        TaskState::Failed => TaskStatus::Failed,
        TaskState::Canceled => TaskStatus::Cancelled,
        _ => TaskStatus::Working,
    };
    let mut seed = base_task(node, &h, status, &task.updated_at);
    if status == TaskStatus::Working {
        seed = seed.with_status_message(format!(
            "Task {} handed to {}.",
            task.id,
            peer_name(node, task.peer_id.as_deref())
        ));
    }
    let mut result = CreateTaskResult::new(seed);
    result.meta = handle_meta(Some(&task.id));
    Ok((result, h))
}

/// What a reply handle waits for.
pub struct ReplyWait {
    /// The peer expected to answer.
    pub peer_id: String,
    /// The conversation the answer comes in.
    pub context_id: String,
    /// The message sent.
    pub message_id: String,
    /// Unix time just before the message was sent.
    pub since: f64,
}

/// The handle answered for a message whose reply the client waits for, with the handle.
pub async fn for_reply(node: &Node, wait: ReplyWait) -> NodeResult<(CreateTaskResult, TaskHandle)> {
    let h = node
        .create_handle(NewHandle {
            kind: HandleKind::Reply,
            task_id: None,
            context_id: Some(wait.context_id.clone()),
            peer_id: Some(wait.peer_id.clone()),
            message_id: Some(wait.message_id),
            ttl_ms: REPLY_TTL_MS,
            since: Some(wait.since),
        })
        .await?;
    let seed =
        base_task(node, &h, TaskStatus::Working, &h.created_at).with_status_message(format!(
            "Waiting for {}'s reply in conversation {}.",
            peer_name(node, Some(&wait.peer_id)),
            wait.context_id
        ));
    Ok((CreateTaskResult::new(seed), h))
}

/// What changed, as a node event tells it: an ACP task, or a conversation a peer wrote in.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// The ACP task's state, artifacts or messages.
    Task(String),
    /// A message from this peer in this conversation.
    Conversation {
        /// The peer.
        peer_id: String,
        /// The conversation.
        context_id: String,
    },
}

fn concerns(h: &TaskHandle, change: &Change) -> bool {
    match (h.kind, change) {
        (HandleKind::Task, Change::Task(id)) => h.task_id.as_ref() == Some(id),
        (
            HandleKind::Reply,
            Change::Conversation {
                peer_id,
                context_id,
            },
        ) => h.peer_id.as_ref() == Some(peer_id) && h.context_id.as_ref() == Some(context_id),
        _ => false,
    }
}

/// The current state of each of `handles` that `change` concerns, for `notifications/tasks`;
/// a handle that is finished (or gone) is removed from `handles`, so it is pushed once more
/// at most.
pub async fn changed(
    node: &Node,
    handles: &std::sync::Mutex<Vec<TaskHandle>>,
    change: &Change,
) -> Vec<DetailedTask> {
    let concerned: Vec<TaskHandle> = handles
        .lock()
        .map(|l| l.iter().filter(|h| concerns(h, change)).cloned().collect())
        .unwrap_or_default();
    let mut out = Vec::new();
    for h in concerned {
        let detail = match node.handle(&h.id).await {
            Ok(fresh) => detail(node, &fresh).await.ok(),
            Err(_) => None,
        };
        let finished = detail.as_ref().is_none_or(|d| d.status().is_terminal());
        if finished && let Ok(mut l) = handles.lock() {
            l.retain(|x| x.id != h.id);
        }
        out.extend(detail);
    }
    out
}

fn peer_name(node: &Node, peer_id: Option<&str>) -> String {
    peer_id
        .and_then(|p| node.peer(p).ok())
        .and_then(|p| p["name"].as_str().map(str::to_owned))
        .or_else(|| peer_id.map(str::to_owned))
        .unwrap_or_else(|| "the agent".to_owned())
}

/// The newest message the peer sent about this ACP task.
async fn newest_from_worker(node: &Node, task_id: &str) -> Result<Option<MessageRow>, McpError> {
    let page = node
        .message_page(MessageQuery {
            limit: 1,
            direction: Some("inbound".into()),
            task_id: Some(task_id.to_owned()),
            ..Default::default()
        })
        .await
        .map_err(protocol_error)?;
    Ok(page.rows.into_iter().next())
}

fn clip(text: &str) -> String {
    match text.char_indices().nth(STATUS_TEXT_MAX) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// The question of a task in `input_required`: the reason the worker gave with the state
/// (`error`) unless that is the question already answered through this handle, else the
/// text of the worker's newest message about the task if it came after the last answer,
/// else the old reason (asked again), else a default. The form schema comes from a data
/// part of that fresh message, else (before any answer) of the newest artifact.
fn question(task: &Task, newest: Option<&MessageRow>, h: &TaskHandle) -> Question {
    let reason = match &task.error {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
        Some(v) if !v.is_null() && !v.is_string() => Some(v.to_string()),
        _ => None,
    };
    let fresh = newest.filter(|m| h.answered_at.is_none_or(|t| m.received_at > t));
    let new_reason = reason.clone().filter(|r| h.answered.as_ref() != Some(r));
    let text = new_reason
        .or_else(|| fresh.map(MessageRow::text).filter(|t| !t.trim().is_empty()))
        .or(reason)
        .unwrap_or_else(|| "The agent needs more input to go on with the task.".to_owned());
    let parts_of = |v: &Value| v["parts"].as_array().cloned().unwrap_or_default();
    let schema = fresh
        .and_then(|m| forms::schema_in_parts(&parts_of(&m.frame)))
        .or_else(|| {
            task.artifacts
                .last()
                .filter(|_| h.answered_at.is_none())
                .and_then(|a| forms::schema_in_parts(&parts_of(a)))
        });
    Question { text, schema }
}

/// The key of the question a handle waits on: a new one for each question asked.
fn question_key(h: &TaskHandle) -> String {
    format!("question-{}", h.answers + 1)
}

/// The tool result of a completed ACP task: its artifacts as content (text parts as text,
/// data parts as JSON text, files as their URL) and the task, artifacts included, as
/// structured content.
fn completed_result(task: &Task, worker: &str) -> JsonObject {
    let mut content = vec![ContentBlock::text(format!(
        "Task {} completed by {worker}.",
        task.id
    ))];
    for part in task.artifacts.iter().flat_map(|a| {
        a["parts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
    }) {
        let text = match part["type"].as_str() {
            Some("text") => part["content"]
                .as_str()
                .or_else(|| part["text"].as_str())
                .map(str::to_owned),
            Some("data") => Some(part["content"].to_string()),
            Some("file") => Some(format!(
                "file {}: {}",
                part["name"].as_str().unwrap_or("(unnamed)"),
                part["url"].as_str().unwrap_or("?")
            )),
            _ => None,
        };
        if let Some(t) = text {
            content.push(ContentBlock::text(t));
        }
    }
    let mut result = CallToolResult::structured(serde_json::to_value(task).unwrap_or_default());
    result.content = content;
    match serde_json::to_value(result) {
        Ok(Value::Object(obj)) => obj,
        _ => JsonObject::new(),
    }
}

fn failed_error(reason: &str, task_id: &str) -> JsonObject {
    match json!({
        "code": -32603,
        "message": reason,
        "data": {"acpTaskId": task_id}
    }) {
        Value::Object(obj) => obj,
        _ => JsonObject::new(),
    }
}

/// The MCP view of a handle now.
async fn detail(node: &Node, h: &TaskHandle) -> Result<DetailedTask, McpError> {
    match h.kind {
        HandleKind::Task => task_detail(node, h).await,
        HandleKind::Reply => reply_detail(node, h).await,
    }
}

async fn task_detail(node: &Node, h: &TaskHandle) -> Result<DetailedTask, McpError> {
    let task_id = h.task_id.as_deref().unwrap_or_default();
    let Ok(task) = node.task(task_id) else {
        let base = base_task(node, h, TaskStatus::Failed, &h.created_at);
        let error = failed_error(
            &format!("the ACP task {task_id} is no longer known"),
            task_id,
        );
        return Ok(DetailedTask::new(base, TaskPayload::Failed { error }));
    };
    let worker = peer_name(node, task.peer_id.as_deref());
    let base = |status| base_task(node, h, status, &task.updated_at);
    Ok(match task.status {
        TaskState::Submitted | TaskState::Working | TaskState::Cancelling => {
            let newest = newest_from_worker(node, &task.id).await?;
            let message = match (task.status, newest) {
                (TaskState::Cancelling, _) => "Cancelling.".to_owned(),
                (_, Some(m)) if !m.text().trim().is_empty() => clip(&m.text()),
                (TaskState::Submitted, _) => format!("Handed to {worker}, not started yet."),
                _ => format!("{worker} is working on it."),
            };
            DetailedTask::new(
                base(TaskStatus::Working).with_status_message(message),
                TaskPayload::Working,
            )
        }
        TaskState::InputRequired => {
            let newest = newest_from_worker(node, &task.id).await?;
            let q = question(&task, newest.as_ref(), h);
            let input_requests = forms::question_requests(&question_key(h), &worker, &q);
            DetailedTask::new(
                base(TaskStatus::InputRequired).with_status_message(clip(&q.text)),
                TaskPayload::InputRequired { input_requests },
            )
        }
        TaskState::Completed => DetailedTask::new(
            base(TaskStatus::Completed),
            TaskPayload::Completed {
                result: completed_result(&task, &worker),
            },
        ),
        TaskState::Failed => {
            let reason = match &task.error {
                Some(Value::String(s)) => s.clone(),
                Some(v) if !v.is_null() => v.to_string(),
                _ => format!("{worker} reported the task failed without a reason."),
            };
            DetailedTask::new(
                base(TaskStatus::Failed).with_status_message(clip(&reason)),
                TaskPayload::Failed {
                    error: failed_error(&reason, &task.id),
                },
            )
        }
        TaskState::Canceled => {
            DetailedTask::new(base(TaskStatus::Cancelled), TaskPayload::Cancelled)
        }
    })
}

/// The peer's first message in the conversation since the send.
async fn reply_of(node: &Node, h: &TaskHandle) -> Result<Option<MessageRow>, McpError> {
    let page = node
        .message_page(MessageQuery {
            limit: 1,
            ascending: true,
            received_after: Some(h.since),
            direction: Some("inbound".into()),
            context_id: h.context_id.clone(),
            peer_id: h.peer_id.clone(),
            ..Default::default()
        })
        .await
        .map_err(protocol_error)?;
    Ok(page.rows.into_iter().next())
}

async fn reply_detail(node: &Node, h: &TaskHandle) -> Result<DetailedTask, McpError> {
    let reply = reply_of(node, h).await?;
    let peer = peer_name(node, h.peer_id.as_deref());
    Ok(match reply {
        Some(m) => {
            let view = super::tools::message_view(&m);
            let mut result =
                CallToolResult::structured(serde_json::to_value(&view).unwrap_or_default());
            result.content = vec![ContentBlock::text(format!(
                "[{}] {} replied: {}",
                view.message_id, peer, view.text
            ))];
            let result = match serde_json::to_value(result) {
                Ok(Value::Object(obj)) => obj,
                _ => JsonObject::new(),
            };
            DetailedTask::new(
                base_task(node, h, TaskStatus::Completed, &m.ts),
                TaskPayload::Completed { result },
            )
        }
        None if h.cancelled => DetailedTask::new(
            base_task(node, h, TaskStatus::Cancelled, &h.created_at),
            TaskPayload::Cancelled,
        ),
        None => DetailedTask::new(
            base_task(node, h, TaskStatus::Working, &h.created_at).with_status_message(format!(
                "Waiting for {peer}'s reply in conversation {}.",
                h.context_id.as_deref().unwrap_or("?")
            )),
            TaskPayload::Working,
        ),
    })
}

async fn live_handle(node: &Node, id: &str) -> Result<TaskHandle, McpError> {
    node.handle(id).await.map_err(protocol_error)
}

/// `tasks/get`.
pub async fn get(node: &Node, task_id: &str) -> Result<GetTaskResult, McpError> {
    let h = live_handle(node, task_id).await?;
    let mut result = GetTaskResult::new(detail(node, &h).await?);
    result.meta = handle_meta(h.task_id.as_deref());
    Ok(result)
}

/// `tasks/update`: the answer to the outstanding question goes to the remote agent as a
/// message in the task, which returns to `working`.
pub async fn update(node: &Node, params: UpdateTaskParams) -> Result<(), McpError> {
    let mut h = live_handle(node, &params.task_id).await?;
    let Some(task_id) = h.task_id.clone().filter(|_| h.kind == HandleKind::Task) else {
        return Err(McpError::invalid_params(
            "this task waits for a reply and asks no questions",
            None,
        ));
    };
    let task = node.task(&task_id).map_err(protocol_error)?;
    if task.status != TaskState::InputRequired {
        return Err(McpError::invalid_params(
            format!(
                "task {} is {}, not waiting for input",
                params.task_id, task.status
            ),
            None,
        ));
    }
    let key = question_key(&h);
    if let Some(other) = params.input_responses.keys().find(|k| **k != key) {
        return Err(McpError::invalid_params(
            format!("'{other}' is not the outstanding input request (that is '{key}')"),
            None,
        ));
    }
    let answer = params.input_responses.get(&key).ok_or_else(|| {
        McpError::invalid_params(format!("no response to the input request '{key}'"), None)
    })?;
    let answer: ElicitResult = serde_json::from_value(answer.clone()).map_err(|e| {
        McpError::invalid_params(format!("'{key}' is not an elicitation result: {e}"), None)
    })?;
    let asked = question(
        &task,
        newest_from_worker(node, &task_id).await?.as_ref(),
        &h,
    );
    let parts = forms::answer_parts(&answer);
    // Taken before the answer goes out: whatever the worker says after it is new.
    let answered_at = crate::node::ids::now_unix();
    node.continue_task(&task_id, &json!({ "parts": parts }))
        .await
        .map_err(protocol_error)?;
    h.answers += 1;
    h.answered = Some(asked.text);
    h.answered_at = Some(answered_at);
    node.save_handle(&h).await.map_err(protocol_error)
}

/// `tasks/cancel`: the ACP task's two-phase cancel (the peer is told), or the end of a wait
/// for a reply. A finished task cannot be cancelled.
pub async fn cancel(node: &Node, task_id: &str) -> Result<(), McpError> {
    let mut h = live_handle(node, task_id).await?;
    let finished = || {
        McpError::invalid_params(
            format!("task {task_id} is already finished and cannot be cancelled"),
            None,
        )
    };
    match h.kind {
        HandleKind::Task => {
            let acp_id = h.task_id.clone().unwrap_or_default();
            let task = node.task(&acp_id).map_err(protocol_error)?;
            if task.status.is_terminal() {
                return Err(finished());
            }
            node.cancel_task(&acp_id).await.map_err(protocol_error)?;
        }
        HandleKind::Reply => {
            if h.cancelled || reply_of(node, &h).await?.is_some() {
                return Err(finished());
            }
            h.cancelled = true;
            node.save_handle(&h).await.map_err(protocol_error)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(status: TaskState, error: Option<Value>) -> Task {
        Task {
            id: "task_q".into(),
            status,
            created_at: "2026-12-07T10:00:00Z".into(),
            updated_at: "2026-12-07T10:01:00Z".into(),
            payload: json!({}),
            artifacts: vec![],
            history: vec![],
            origin_message_id: None,
            context_id: None,
            error,
            from_peer: false,
            peer_id: None,
        }
    }

    fn handle(answered: Option<(&str, f64)>) -> TaskHandle {
        TaskHandle {
            id: "mcptask_1".into(),
            kind: HandleKind::Task,
            task_id: Some("task_q".into()),
            context_id: None,
            peer_id: None,
            message_id: None,
            created_at: "2026-12-07T10:00:00Z".into(),
            created_unix: 100.0,
            since: 100.0,
            ttl_ms: TASK_TTL_MS,
            answers: answered.map_or(0, |_| 1),
            cancelled: false,
            answered: answered.map(|(q, _)| q.to_owned()),
            answered_at: answered.map(|(_, t)| t),
        }
    }

    fn message(text: &str, received_at: f64, data: Option<Value>) -> MessageRow {
        let mut parts = vec![json!({"type": "text", "content": text})];
        if let Some(d) = data {
            parts.push(json!({"type": "data", "content": d}));
        }
        MessageRow {
            message_id: "msg_1".into(),
            direction: "inbound",
            peer_id: Some("peer_001".into()),
            sender: Some("beta".into()),
            role: "agent".into(),
            task_id: Some("task_q".into()),
            context_id: None,
            server_seq: None,
            ts: "2026-12-07T10:02:00Z".into(),
            received_at,
            consumed: false,
            frame: json!({"parts": parts}),
            local_seq: 0,
        }
    }

    #[test]
    fn the_question_is_the_reason_given_else_a_default() {
        let asked = task(TaskState::InputRequired, Some(json!("Which harbour?")));
        let q = question(&asked, None, &handle(None));
        assert_eq!(q.text, "Which harbour?");
        assert!(q.schema.is_none());
        let q = question(&task(TaskState::InputRequired, None), None, &handle(None));
        assert!(q.text.contains("needs more input"), "{}", q.text);
    }

    #[test]
    fn an_answered_reason_gives_way_to_the_workers_newer_words_and_schema() {
        let schema = json!({"type": "object", "properties": {"date": {"type": "string"}}});
        let asked_again = task(TaskState::InputRequired, Some(json!("Which harbour?")));
        let answered = handle(Some(("Which harbour?", 200.0)));
        // A newer message: its words and its schema.
        let newer = message("And the date?", 300.0, Some(schema.clone()));
        let q = question(&asked_again, Some(&newer), &answered);
        assert_eq!(q.text, "And the date?");
        assert!(q.schema.is_some());
        // Only the message from before the answer: the old reason, asked again, no schema.
        let older = message("Which harbour? Here is a form.", 150.0, Some(schema));
        let q = question(&asked_again, Some(&older), &answered);
        assert_eq!(q.text, "Which harbour?");
        assert!(q.schema.is_none());
        // A new reason wins over any message.
        let new_reason = task(
            TaskState::InputRequired,
            Some(json!("Kiel is full: Lübeck?")),
        );
        let q = question(&new_reason, Some(&newer), &answered);
        assert_eq!(q.text, "Kiel is full: Lübeck?");
    }

    #[test]
    fn completed_results_carry_the_artifacts_both_ways() {
        let mut t = task(TaskState::Completed, None);
        t.artifacts.push(json!({"parts": [
            {"type": "text", "content": "the summary"},
            {"type": "data", "content": {"rows": 3}}
        ]}));
        let r = completed_result(&t, "beta");
        let text = serde_json::to_string(&r["content"]).unwrap();
        assert!(
            text.contains("the summary") && text.contains("rows"),
            "{text}"
        );
        assert_eq!(
            r["structuredContent"]["artifacts"][0]["parts"][1]["content"]["rows"],
            3
        );
    }

    #[test]
    fn long_status_texts_are_clipped() {
        let long = "é".repeat(STATUS_TEXT_MAX + 10);
        assert_eq!(clip(&long).chars().count(), STATUS_TEXT_MAX + 1);
        assert_eq!(clip("short"), "short");
    }
}

//! The A2A operations, shared by the JSON-RPC and HTTP+JSON bindings: each parses nothing
//! (the binding did) and answers A2A types or an [`A2aError`]. A task is only ever shown to
//! the caller whose message started it.

use std::time::Duration;

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::{broadcast, mpsc};

use super::convert::{A2aError, artifact_from_acp, part_to_acp, state_from_a2a, task_from_acp};
use super::{A2aCaller, A2aServer};
use crate::a2a::types::{
    A2aErrorCode, GetTaskRequest, ListTasksRequest, ListTasksResponse, ProtocolVersion,
    SendMessageRequest, StreamResponse, Task, TaskArtifactUpdateEvent, TaskIdRequest,
    TaskPushNotificationConfig, TaskStatusUpdateEvent,
};
use crate::node::events::Event;
use crate::node::ids::{make_id, now_iso};
use crate::node::message::MAX_ID_LEN;
use crate::node::task::{Task as AcpTask, TaskState as AcpState};
use crate::node::{FrameOutcome, TaskQuery};

/// How long `CancelTask` waits for the cancel to complete (ACP cancels in two steps).
const CANCEL_WAIT: Duration = Duration::from_secs(5);
/// Stream items buffered for a slow client before the stream waits for it.
const STREAM_BUFFER: usize = 64;
/// Default and largest `ListTasks` page.
const DEFAULT_PAGE: i32 = 50;
const MAX_PAGE: i32 = 100;

type Live = broadcast::Receiver<std::sync::Arc<Event>>;

/// Whether a task waits no more: finished, or waiting for the client.
fn settled(t: &AcpTask) -> bool {
    t.status.is_terminal() || t.status == AcpState::InputRequired
}

impl A2aServer {
    /// The caller's task `id`, or `TaskNotFound` (also for another caller's task).
    pub(super) fn own_task(&self, peer: &str, id: &str) -> Result<AcpTask, A2aError> {
        match self.node().task(id) {
            Ok(t) if t.from_peer && t.peer_id.as_deref() == Some(peer) => Ok(t),
            _ => Err(A2aError::task_not_found(id)),
        }
    }

    /// Takes a `SendMessage`: the message goes into the inbox as the caller's, in a new task
    /// (or the one it continues). Returns the caller's peer, the task id and a live event
    /// receiver subscribed before the message went in.
    async fn accept(
        &self,
        caller: &A2aCaller,
        req: &SendMessageRequest,
    ) -> Result<(String, String, Live), A2aError> {
        let node = self.node();
        let msg = &req.message;
        if msg.message_id.is_empty() {
            return Err(A2aError::params("message.messageId is required"));
        }
        if msg.parts.is_empty() {
            return Err(A2aError::params("message.parts must not be empty"));
        }
        let parts = msg
            .parts
            .iter()
            .map(part_to_acp)
            .collect::<Result<Vec<_>, _>>()?;
        let peer = self.peer_for(caller);
        let message_id = acp_message_id(&peer, &msg.message_id);
        let continued = match msg.task_id.as_deref().filter(|t| !t.is_empty()) {
            Some(id) => {
                let t = self.own_task(&peer, id)?;
                if t.status.is_terminal() {
                    return Err(A2aError::new(
                        A2aErrorCode::UnsupportedOperation,
                        format!(
                            "task {id:?} is {}: a finished task takes no more messages; send without taskId to start a new one",
                            t.status
                        ),
                    ));
                }
                Some(t)
            }
            None => None,
        };
        let (task_id, context_id) = match &continued {
            Some(t) => (
                t.id.clone(),
                t.context_id
                    .clone()
                    .or_else(|| msg.context_id.clone())
                    .unwrap_or_else(|| make_id("ctx")),
            ),
            // The same message sent again (a retry) names the same task.
            None => (
                format!(
                    "task_a2a_{}",
                    &hex::encode(Sha256::digest(&message_id))[..24]
                ),
                msg.context_id
                    .clone()
                    .filter(|c| !c.is_empty())
                    .unwrap_or_else(|| make_id("ctx")),
            ),
        };
        if context_id.len() > MAX_ID_LEN {
            return Err(A2aError::params(format!(
                "message.contextId is longer than {MAX_ID_LEN} characters"
            )));
        }
        let ts = now_iso();
        let mut frame = Map::new();
        frame.insert("type".into(), json!("acp.message"));
        frame.insert("message_id".into(), json!(message_id));
        frame.insert("from".into(), json!(caller.name));
        frame.insert("role".into(), json!("user"));
        frame.insert("parts".into(), Value::Array(parts));
        frame.insert("task_id".into(), json!(task_id));
        frame.insert("context_id".into(), json!(context_id));
        frame.insert("ts".into(), json!(ts));
        if let Some(signer) = node.signer() {
            frame.insert("sig".into(), json!(signer.sign(&message_id, &ts)));
        }
        let live = node.events().subscribe();
        match node.on_frame(&peer, &Value::Object(frame).to_string()) {
            FrameOutcome::Message(_) | FrameOutcome::Continue => {}
            FrameOutcome::Held(_) => {
                return Err(A2aError {
                    code: A2aErrorCode::Internal,
                    message: "the node's store is full; send again later".into(),
                    http_status: Some(503),
                });
            }
            FrameOutcome::Limited { refusal, .. } => {
                return Err(A2aError {
                    code: A2aErrorCode::Internal,
                    message: format!("over this caller's limits ({refusal:?}); send again later"),
                    http_status: Some(429),
                });
            }
            FrameOutcome::Rejected => {
                return Err(A2aError::params(
                    "message refused: larger than the node's --max-msg-size, or malformed",
                ));
            }
        }
        node.store().flush().await?;
        let task = node.task(&task_id).map_err(|_| {
            A2aError::params(format!(
                "messageId {:?} was already used for another message",
                msg.message_id
            ))
        })?;
        if continued.is_some() && task.status == AcpState::InputRequired {
            // The answer the agent asked for: the task goes on.
            node.update_task(&task_id, &json!({"status": "working"}))
                .await?;
        }
        Ok((peer, task_id, live))
    }

    /// `SendMessage`: the task, once it is finished or waits for input, or after the
    /// blocking bound (`--a2a-wait-secs`) still working; at once with `returnImmediately`
    /// (0.3: `blocking: false`).
    pub async fn send(
        &self,
        caller: &A2aCaller,
        req: SendMessageRequest,
        version: ProtocolVersion,
    ) -> Result<Task, A2aError> {
        let push = push_config_of(&req)?;
        if let Some(cfg) = &push {
            self.check_push_config(caller, cfg)?;
            self.push_room(caller)?;
        }
        let (_, task_id, live) = self.accept(caller, &req).await?;
        if let Some(mut cfg) = push {
            cfg.task_id = task_id.clone();
            self.create_push_config(caller, cfg, version, true)?;
        }
        let config = req.configuration.unwrap_or_default();
        let task = if config.returns_immediately() {
            self.node().task(&task_id)?
        } else {
            self.settle(&task_id, live, self.inner.wait, settled)
                .await?
        };
        Ok(task_from_acp(&task, config.history_length))
    }

    /// `SendStreamingMessage`: the task, then its artifacts and state changes as they happen,
    /// until it is finished or waits for input.
    pub async fn send_streaming(
        &self,
        caller: &A2aCaller,
        req: SendMessageRequest,
        version: ProtocolVersion,
    ) -> Result<mpsc::Receiver<StreamResponse>, A2aError> {
        let push = push_config_of(&req)?;
        if let Some(cfg) = &push {
            self.check_push_config(caller, cfg)?;
            self.push_room(caller)?;
        }
        let (_, task_id, live) = self.accept(caller, &req).await?;
        if let Some(mut cfg) = push {
            cfg.task_id = task_id.clone();
            self.create_push_config(caller, cfg, version, true)?;
        }
        Ok(self.stream_task(task_id, live))
    }

    /// `GetTask`.
    pub fn get_task(&self, caller: &A2aCaller, req: &GetTaskRequest) -> Result<Task, A2aError> {
        let peer = self.peer_for(caller);
        let t = self.own_task(&peer, &req.id)?;
        Ok(task_from_acp(&t, req.history_length))
    }

    /// `ListTasks`: the caller's tasks, newest first, paged by task id.
    pub fn list_tasks(
        &self,
        caller: &A2aCaller,
        req: &ListTasksRequest,
    ) -> Result<ListTasksResponse, A2aError> {
        let peer = self.peer_for(caller);
        let page = req.page_size.unwrap_or(DEFAULT_PAGE);
        if !(1..=MAX_PAGE).contains(&page) {
            return Err(A2aError::params(format!(
                "pageSize must be 1 to {MAX_PAGE}"
            )));
        }
        let cursor = req.page_token.clone().filter(|t| !t.is_empty());
        if let Some(c) = &cursor {
            self.own_task(&peer, c)
                .map_err(|_| A2aError::params("unknown pageToken"))?;
        }
        let q = TaskQuery {
            status: req.status.and_then(state_from_a2a),
            peer_id: Some(peer),
            context_id: req.context_id.clone().filter(|c| !c.is_empty()),
            cursor,
            limit: usize::try_from(page).ok(),
            ..TaskQuery::default()
        };
        let out = self.node().list_tasks(&q)?;
        let with_artifacts = req.include_artifacts.unwrap_or(false);
        let tasks: Vec<Task> = out
            .get("tasks")
            .and_then(Value::as_array)
            .map(|l| {
                l.iter()
                    .filter_map(|t| serde_json::from_value::<AcpTask>(t.clone()).ok())
                    .filter(|t| t.from_peer)
                    .map(|t| {
                        let mut a = task_from_acp(&t, req.history_length);
                        if !with_artifacts {
                            a.artifacts.clear();
                        }
                        a
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(ListTasksResponse {
            page_size: page,
            total_size: out
                .get("total")
                .and_then(Value::as_i64)
                .and_then(|n| i32::try_from(n).ok())
                .unwrap_or(0),
            next_page_token: out
                .get("next_cursor")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            tasks,
        })
    }

    /// `CancelTask`: cancels (the agent sees the ACP task canceled) and answers the task
    /// once canceled; a finished task is `TaskNotCancelable`.
    pub async fn cancel_task(
        &self,
        caller: &A2aCaller,
        req: &TaskIdRequest,
    ) -> Result<Task, A2aError> {
        let peer = self.peer_for(caller);
        let t = self.own_task(&peer, &req.id)?;
        if t.status.is_terminal() {
            return Err(A2aError::new(
                A2aErrorCode::TaskNotCancelable,
                format!("task {:?} is {} and cannot be canceled", t.id, t.status),
            ));
        }
        let live = self.node().events().subscribe();
        self.node().cancel_task(&t.id).await?;
        let t = self
            .settle(&t.id, live, CANCEL_WAIT, |t| t.status.is_terminal())
            .await?;
        Ok(task_from_acp(&t, None))
    }

    /// `SubscribeToTask`: the task, then its changes; a finished task cannot be subscribed
    /// to (`UnsupportedOperation`, as the specification says).
    pub fn subscribe(
        &self,
        caller: &A2aCaller,
        id: &str,
    ) -> Result<mpsc::Receiver<StreamResponse>, A2aError> {
        let peer = self.peer_for(caller);
        let live = self.node().events().subscribe();
        let t = self.own_task(&peer, id)?;
        if t.status.is_terminal() {
            return Err(A2aError::new(
                A2aErrorCode::UnsupportedOperation,
                format!("task {id:?} is {}: nothing more will happen", t.status),
            ));
        }
        Ok(self.stream_task(t.id, live))
    }

    /// Waits (event-driven) until `done` holds for the task or `bound` passes; the task.
    async fn settle(
        &self,
        task_id: &str,
        mut live: Live,
        bound: Duration,
        done: fn(&AcpTask) -> bool,
    ) -> Result<AcpTask, A2aError> {
        let deadline = tokio::time::Instant::now() + bound;
        let shutdown = self.node().shutdown_token();
        loop {
            let t = self.node().task(task_id)?;
            if done(&t) {
                return Ok(t);
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(t),
                r = tokio::time::timeout_at(deadline, live.recv()) => match r {
                    Err(_) | Ok(Err(broadcast::error::RecvError::Closed)) => {
                        return Ok(self.node().task(task_id)?);
                    }
                    Ok(_) => {}
                },
            }
        }
    }

    /// The stream of a task: the task as it is, then an artifact update per new artifact
    /// and a status update per state change, until it is finished or waits for input, the
    /// client goes away or the node stops.
    fn stream_task(&self, task_id: String, mut live: Live) -> mpsc::Receiver<StreamResponse> {
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let node = self.node().clone();
        self.node().background().spawn(async move {
            let shutdown = node.shutdown_token();
            let Ok(first) = node.task(&task_id) else {
                return;
            };
            let mut artifacts = first.artifacts.len();
            let mut state = first.status;
            let done = settled(&first);
            if tx
                .send(StreamResponse::Task(task_from_acp(&first, None)))
                .await
                .is_err()
                || done
            {
                return;
            }
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tx.closed() => return,
                    r = live.recv() => match r {
                        Ok(ev) if ev.body.get("task_id").and_then(Value::as_str) != Some(task_id.as_str()) => continue,
                        Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                }
                let Ok(t) = node.task(&task_id) else { return };
                let context = t.context_id.clone().unwrap_or_default();
                while artifacts < t.artifacts.len() {
                    let ev = TaskArtifactUpdateEvent {
                        task_id: t.id.clone(),
                        context_id: context.clone(),
                        artifact: artifact_from_acp(&t.artifacts[artifacts], artifacts),
                        append: false,
                        last_chunk: true,
                        metadata: None,
                    };
                    artifacts += 1;
                    if tx.send(StreamResponse::ArtifactUpdate(ev)).await.is_err() {
                        return;
                    }
                }
                if t.status != state {
                    state = t.status;
                    let ev = TaskStatusUpdateEvent {
                        task_id: t.id.clone(),
                        context_id: context,
                        status: task_from_acp(&t, Some(0)).status,
                        metadata: None,
                        final_: None,
                    };
                    if tx.send(StreamResponse::StatusUpdate(ev)).await.is_err() {
                        return;
                    }
                }
                if settled(&t) {
                    return;
                }
            }
        });
        rx
    }
}

/// The push-notification config of a `SendMessage` (1.0 `taskPushNotificationConfig`,
/// 0.3 `pushNotificationConfig`), parsed before the message goes in so that a malformed one
/// refuses the message. Its task is the message's, set once known.
fn push_config_of(
    req: &SendMessageRequest,
) -> Result<Option<TaskPushNotificationConfig>, A2aError> {
    let Some(c) = &req.configuration else {
        return Ok(None);
    };
    match (
        &c.task_push_notification_config,
        &c.push_notification_config,
    ) {
        (Some(v), _) if !v.is_null() => {
            serde_json::from_value::<TaskPushNotificationConfig>(v.clone())
                .map(Some)
                .map_err(|e| A2aError::params(format!("invalid taskPushNotificationConfig: {e}")))
        }
        (_, Some(v)) if !v.is_null() => super::push::v03::config_from("", v).map(Some),
        _ => Ok(None),
    }
}

/// The ACP message id of an A2A message: the caller's peer and its `messageId`, so two
/// callers' ids never collide in the node's dedup and a retry of one message is one
/// message. Long ids are hashed to stay within the node's id length.
fn acp_message_id(peer: &str, message_id: &str) -> String {
    let id = format!("a2a_{peer}_{message_id}");
    if id.len() <= MAX_ID_LEN && !id.chars().any(char::is_control) {
        id
    } else {
        format!(
            "a2a_{peer}_{}",
            &hex::encode(Sha256::digest(message_id.as_bytes()))[..40]
        )
    }
}

#[cfg(test)]
mod tests {
    use super::acp_message_id;
    use crate::node::message::MAX_ID_LEN;

    #[test]
    fn message_ids_fit_and_differ_per_caller() {
        assert_eq!(acp_message_id("peer_001", "m1"), "a2a_peer_001_m1");
        assert_ne!(
            acp_message_id("peer_001", "m1"),
            acp_message_id("peer_002", "m1")
        );
        let long = "x".repeat(500);
        assert!(acp_message_id("peer_001", &long).len() <= MAX_ID_LEN);
    }
}

//! Task operations: create, update (with the state machine), cancel (two-phase), continue,
//! list, get and wait. Every change is persisted, emitted as an event, and — for tasks shared
//! with a peer — sent to that peer as `task.updated`.

use std::time::Duration;

use serde_json::{Map, Value, json};

use super::error::{ErrorCode, NodeError, NodeResult};
use super::ids::{make_id, now_iso};
use super::message::{opt_bool, opt_str, text_part, type_name, validate_parts};
use super::store::WriteOp;
use super::task::{Task, TaskState};
use super::{Node, ensure_writable};
use crate::wire::frame;

/// Filters and paging of `GET /tasks`.
#[derive(Debug, Clone, Default)]
pub struct TaskQuery {
    /// Only tasks in this state.
    pub status: Option<TaskState>,
    /// Only tasks shared with this peer (id or name).
    pub peer_id: Option<String>,
    /// Only tasks of this conversation.
    pub context_id: Option<String>,
    /// Only tasks created after this ISO time.
    pub created_after: Option<String>,
    /// Only tasks changed after this ISO time.
    pub updated_after: Option<String>,
    /// Oldest first (default newest first).
    pub ascending: bool,
    /// Start after this task id (cursor paging).
    pub cursor: Option<String>,
    /// Start at this index (offset paging; selects the offset response shape).
    pub offset: Option<usize>,
    /// Page size.
    pub limit: Option<usize>,
}

impl Node {
    /// Creates a local task (no event is sent to a peer). Returns the existing task when a
    /// client-chosen id is already known (idempotent, as in the reference).
    pub(crate) fn create_task_internal(
        &self,
        payload: Value,
        task_id: Option<String>,
        message_id: Option<String>,
        context_id: Option<String>,
        peer_id: Option<String>,
    ) -> NodeResult<Task> {
        let id = task_id.unwrap_or_else(|| make_id("task"));
        Ok(self.register_task(
            id,
            TaskState::Submitted,
            payload,
            message_id,
            context_id,
            peer_id,
            false,
        ))
    }

    /// Registers a task a peer created (by message `task_id` or `task.delegate`).
    pub(crate) fn adopt_peer_task(
        &self,
        task_id: &str,
        state: TaskState,
        payload: Value,
        origin: Option<String>,
        context_id: Option<String>,
        peer_id: &str,
    ) {
        self.register_task(
            task_id.to_owned(),
            state,
            payload,
            origin,
            context_id,
            Some(peer_id.to_owned()),
            true,
        );
    }

    /// Inserts a new task (or returns the one that already has this id, unchanged), then
    /// persists it, counts it and emits its first `status` event.
    #[allow(clippy::too_many_arguments)]
    fn register_task(
        &self,
        id: String,
        state: TaskState,
        payload: Value,
        origin: Option<String>,
        context_id: Option<String>,
        peer_id: Option<String>,
        from_peer: bool,
    ) -> Task {
        let task = {
            let mut tasks = self.lock_tasks();
            if let Some(existing) = tasks.get(&id) {
                return existing.clone();
            }
            let now = now_iso();
            let task = Task {
                id,
                status: state,
                created_at: now.clone(),
                updated_at: now,
                payload,
                artifacts: Vec::new(),
                history: Vec::new(),
                origin_message_id: origin,
                context_id,
                error: None,
                from_peer,
                peer_id,
            };
            tasks.insert(task.id.clone(), task.clone());
            task
        };
        self.persist_task(&task);
        self.inner
            .counters
            .tasks_created
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut ev = Map::new();
        ev.insert("task_id".into(), json!(task.id));
        ev.insert("state".into(), json!(task.status));
        if from_peer {
            ev.insert("peer_id".into(), json!(task.peer_id));
        }
        if let Some(c) = &task.context_id {
            ev.insert("context_id".into(), json!(c));
        }
        self.inner.events.emit("status", ev);
        task
    }

    fn persist_task(&self, task: &Task) {
        if let Ok(body) = serde_json::to_string(task) {
            self.inner.store.write(WriteOp::UpsertTask {
                id: task.id.clone(),
                body,
            });
        }
    }

    /// Applies one change under the state machine; persists and emits events. `strict`
    /// refuses illegal transitions with an error; otherwise (peer updates) they are ignored.
    pub(crate) fn apply_task_change(
        &self,
        task_id: &str,
        state: TaskState,
        artifact: Option<Value>,
        error: Option<Value>,
        history: Option<Value>,
        strict: bool,
    ) -> NodeResult<Task> {
        let (task, changed) = {
            let mut tasks = self.lock_tasks();
            let task = tasks
                .get_mut(task_id)
                .ok_or_else(|| NodeError::not_found(format!("task '{task_id}' not found")))?;
            if !task.status.can_move_to(state) {
                if strict {
                    return Err(NodeError::new(
                        ErrorCode::InvalidTransition,
                        format!(
                            "illegal task transition {} -> {state}: {}",
                            task.status,
                            if task.status.is_terminal() {
                                "the task is finished and cannot change"
                            } else {
                                "see docs/http-api.md for the allowed transitions"
                            }
                        ),
                    )
                    .with_field("current_status", json!(task.status))
                    .with_field("reason", json!("invalid_transition")));
                }
                tracing::info!(task = task_id, from = %task.status, to = %state, "ignored illegal task update from peer");
                return Ok(task.clone());
            }
            let old = task.status;
            if old.is_terminal() {
                // A finished task never changes: repeating its state is a no-op, and adding
                // an artifact or an error to it is refused (strict) or ignored (peers).
                if strict && (artifact.is_some() || error.is_some()) {
                    return Err(NodeError::new(
                        ErrorCode::InvalidTransition,
                        format!("task is already {old} and cannot change"),
                    )
                    .with_field("current_status", json!(old))
                    .with_field("reason", json!("invalid_transition")));
                }
                return Ok(task.clone());
            }
            task.status = state;
            task.updated_at = now_iso();
            if let Some(a) = &artifact {
                task.artifacts.push(a.clone());
            }
            if let Some(e) = &error {
                task.error = Some(e.clone());
            }
            if let Some(h) = history {
                task.history.push(h);
            }
            (task.clone(), old != state)
        };
        self.persist_task(&task);
        // The artifact goes out before the status that may end a task, so a subscriber that
        // stops at the terminal status has already seen the result.
        if let Some(a) = artifact {
            let mut ev = Map::new();
            ev.insert("task_id".into(), json!(task.id));
            ev.insert("artifact".into(), a);
            if let Some(c) = &task.context_id {
                ev.insert("context_id".into(), json!(c));
            }
            self.inner.events.emit("artifact", ev);
        }
        if changed {
            let mut ev = Map::new();
            ev.insert("task_id".into(), json!(task.id));
            ev.insert("state".into(), json!(task.status));
            ev.insert("error".into(), error.clone().unwrap_or(Value::Null));
            if let Some(c) = &task.context_id {
                ev.insert("context_id".into(), json!(c));
            }
            self.inner.events.emit("status", ev);
        }
        Ok(task)
    }

    /// The peer a task's updates go to: its own peer, else the only connected peer.
    fn task_peer(&self, task: &Task) -> Option<String> {
        if let Some(p) = &task.peer_id {
            return Some(p.clone());
        }
        let connected = self.lock_peers().connected_ids();
        (connected.len() == 1).then(|| connected[0].clone())
    }

    async fn notify_task_peer(&self, task: &Task, artifact: Option<&Value>) {
        if let Some(peer) = self.task_peer(task) {
            let frame = frame::task_updated(self.name(), &task.id, task.status.as_str(), artifact);
            if let Value::Object(mut map) = frame {
                // The reference ignores it; acp-relay peers record why a task failed or what
                // input it needs.
                if let Some(e) = &task.error {
                    map.insert("error".into(), e.clone());
                }
                self.send_control(&peer, map).await;
            }
        }
    }

    /// `POST /tasks`: creates a task; with `delegate: true` also sends `task.delegate` to the
    /// peer (by `peer_id`, or the only peer). Returns the task and whether it is new.
    pub async fn create_task(&self, body: &Value) -> NodeResult<(Task, bool)> {
        ensure_writable(self)?;
        let Some(obj) = body.as_object() else {
            return Err(NodeError::invalid(format!(
                "request body must be a JSON object, got {}",
                type_name(body)
            )));
        };
        let payload = match obj.get("payload") {
            Some(Value::Object(p)) => Value::Object(p.clone()),
            Some(Value::Null) | None => body.clone(),
            Some(other) => {
                return Err(NodeError::invalid(format!(
                    "'payload' must be an object, got {}",
                    type_name(other)
                )));
            }
        };
        if let Some(role) = payload.get("role")
            && !role
                .as_str()
                .is_some_and(|r| matches!(r, "user" | "agent" | "system"))
        {
            return Err(NodeError::invalid(
                "invalid role: must be 'user', 'agent' or 'system'",
            ));
        }
        if let Some(parts) = payload.get("parts").filter(|p| !p.is_null()) {
            validate_parts(parts).map_err(NodeError::invalid)?;
        }
        let task_id = opt_str(obj, "task_id")?;
        let message_id = opt_str(obj, "message_id")?;
        let context_id = opt_str(obj, "context_id")?;
        let wanted_peer = opt_str(obj, "peer_id")?;
        let delegate = opt_bool(obj, "delegate")?;
        let known = task_id
            .as_ref()
            .is_some_and(|id| self.lock_tasks().contains_key(id));
        let peer_id = match (&wanted_peer, delegate) {
            (Some(key), _) => Some(
                self.lock_peers()
                    .resolve(key)
                    .map(|p| p.record.id.clone())
                    .ok_or_else(|| NodeError::not_found(format!("peer '{key}' not found")))?,
            ),
            (None, true) => Some(self.delegate_target()?),
            (None, false) => None,
        };
        let task =
            self.create_task_internal(payload, task_id, message_id, context_id, peer_id.clone())?;
        if delegate
            && !known
            && let Some(peer) = &peer_id
        {
            let frame = frame::task_delegate(self.name(), &task.id, &task.payload);
            if let Value::Object(mut map) = frame {
                if let Some(c) = &task.context_id {
                    map.insert("context_id".into(), json!(c));
                }
                self.send_control(peer, map).await;
            }
        }
        self.inner.store.flush().await?;
        Ok((task, !known))
    }

    fn delegate_target(&self) -> NodeResult<String> {
        let peers = self.lock_peers();
        let connected = peers.connected_ids();
        match connected.len() {
            1 => Ok(connected[0].clone()),
            0 => {
                let known: Vec<String> = peers.active().map(|p| p.record.id.clone()).collect();
                match known.len() {
                    1 => Ok(known[0].clone()),
                    0 => Err(NodeError::new(
                        ErrorCode::NotConnected,
                        "no peer to delegate to: connect first with POST /peers/connect",
                    )),
                    _ => Err(NodeError::new(
                        ErrorCode::AmbiguousPeer,
                        "several peers known; specify 'peer_id'",
                    )
                    .with_field("known_peers", json!(known))),
                }
            }
            _ => Err(NodeError::new(
                ErrorCode::AmbiguousPeer,
                "multiple peers connected; specify 'peer_id'",
            )
            .with_field("connected_peers", json!(connected))),
        }
    }

    /// `GET /tasks/{id}`.
    pub fn task(&self, task_id: &str) -> NodeResult<Task> {
        self.lock_tasks()
            .get(task_id)
            .cloned()
            .ok_or_else(|| NodeError::not_found(format!("task '{task_id}' not found")))
    }

    /// `POST /tasks/{id}:update`: `{status?, artifact?, error?, message?}`.
    pub async fn update_task(&self, task_id: &str, body: &Value) -> NodeResult<Task> {
        ensure_writable(self)?;
        let Some(obj) = body.as_object() else {
            return Err(NodeError::invalid("request body must be a JSON object"));
        };
        let current = self.task(task_id)?;
        let state = match obj.get("status").or_else(|| obj.get("state")) {
            None | Some(Value::Null) => {
                if obj.get("artifact").is_some_and(|a| !a.is_null()) {
                    current.status
                } else {
                    TaskState::Working
                }
            }
            Some(Value::String(s)) => TaskState::parse(s).ok_or_else(|| {
                NodeError::invalid(format!(
                    "invalid status '{s}'; valid values: {}",
                    TaskState::ALL.map(TaskState::as_str).join(", ")
                ))
            })?,
            Some(other) => {
                return Err(NodeError::invalid(format!(
                    "'status' must be a string, got {}",
                    type_name(other)
                )));
            }
        };
        let artifact = match obj.get("artifact") {
            None | Some(Value::Null) => None,
            Some(a @ Value::Object(_)) => {
                if let Some(parts) = a.get("parts") {
                    validate_parts(parts)
                        .map_err(|e| NodeError::invalid(format!("artifact.{e}")))?;
                }
                Some(a.clone())
            }
            Some(other) => {
                return Err(NodeError::invalid(format!(
                    "'artifact' must be an object, got {}",
                    type_name(other)
                )));
            }
        };
        let error = obj.get("error").filter(|e| !e.is_null()).cloned();
        let history = obj.get("message").filter(|m| !m.is_null()).cloned();
        let task =
            self.apply_task_change(task_id, state, artifact.clone(), error, history, true)?;
        self.notify_task_peer(&task, artifact.as_ref()).await;
        self.inner.store.flush().await?;
        Ok(task)
    }

    /// `POST /tasks/{id}:cancel`: `cancelling` now, `canceled` right after; idempotent.
    pub async fn cancel_task(&self, task_id: &str) -> NodeResult<Value> {
        ensure_writable(self)?;
        let task = self.task(task_id)?;
        if task.status.is_terminal() {
            return Ok(
                json!({"ok": true, "task_id": task_id, "status": task.status, "note": "task already in terminal state", "task": task}),
            );
        }
        if task.status == TaskState::Cancelling {
            return Ok(
                json!({"ok": true, "task_id": task_id, "status": "cancelling", "note": "cancel already in progress", "task": task}),
            );
        }
        let task =
            self.apply_task_change(task_id, TaskState::Cancelling, None, None, None, true)?;
        let node = self.clone();
        let id = task_id.to_owned();
        self.inner.background.spawn(async move {
            // A short pause lets observers see `cancelling` before `canceled`, as in the reference.
            tokio::time::sleep(Duration::from_millis(50)).await;
            if let Ok(done) =
                node.apply_task_change(&id, TaskState::Canceled, None, None, None, false)
            {
                node.notify_task_peer(&done, None).await;
            }
        });
        self.inner.store.flush().await?;
        Ok(json!({"ok": true, "task_id": task_id, "status": "cancelling", "task": task}))
    }

    /// `POST /tasks/{id}:continue`: resumes an `input_required` task with a message to its peer.
    pub async fn continue_task(&self, task_id: &str, body: &Value) -> NodeResult<Task> {
        ensure_writable(self)?;
        let Some(obj) = body.as_object() else {
            return Err(NodeError::invalid("request body must be a JSON object"));
        };
        let task = self.task(task_id)?;
        if task.status != TaskState::InputRequired {
            return Err(NodeError::new(
                ErrorCode::InvalidTransition,
                format!("task is not in interrupted state (is: {})", task.status),
            )
            .with_field("current_status", json!(task.status))
            .with_field("reason", json!("invalid_transition")));
        }
        let parts = match obj.get("parts").filter(|p| !p.is_null()) {
            Some(p) => validate_parts(p).map_err(NodeError::invalid)?,
            None => match obj.get("text") {
                Some(Value::String(s)) => vec![text_part(s)],
                None | Some(Value::Null) => {
                    return Err(NodeError::invalid(
                        "provide 'parts' (list) or 'text' (string)",
                    ));
                }
                Some(other) => {
                    return Err(NodeError::invalid(format!(
                        "'text' must be a string, got {}",
                        type_name(other)
                    )));
                }
            },
        };
        let message = json!({"role": "user", "parts": parts, "ts": now_iso()});
        let task =
            self.apply_task_change(task_id, TaskState::Working, None, None, Some(message), true)?;
        if let Some(peer) = self.task_peer(&task) {
            let req = super::message::SendRequest {
                message_id: None,
                role: "user".into(),
                parts,
                task_id: Some(task.id.clone()),
                context_id: task.context_id.clone(),
                peer_id: Some(peer),
                sync: false,
                timeout: 30.0,
                create_task: false,
            };
            if let Err(e) = self.send(req).await {
                tracing::warn!(task = task_id, "continuation not delivered: {e}");
            }
        }
        self.inner.store.flush().await?;
        Ok(task)
    }

    /// `GET /tasks` with filters and cursor or offset paging (the reference's two shapes).
    pub fn list_tasks(&self, q: &TaskQuery) -> NodeResult<Value> {
        let peer_id = q.peer_id.as_ref().map(|key| {
            self.lock_peers()
                .resolve(key)
                .map_or_else(|| key.clone(), |p| p.record.id.clone())
        });
        let mut list: Vec<Task> = self
            .lock_tasks()
            .values()
            .filter(|t| q.status.is_none_or(|s| t.status == s))
            .filter(|t| {
                peer_id
                    .as_ref()
                    .is_none_or(|p| t.peer_id.as_ref() == Some(p))
            })
            .filter(|t| {
                q.context_id
                    .as_ref()
                    .is_none_or(|c| t.context_id.as_ref() == Some(c))
            })
            .filter(|t| {
                q.created_after
                    .as_ref()
                    .is_none_or(|a| t.created_at.as_str() > a.as_str())
            })
            .filter(|t| {
                q.updated_after
                    .as_ref()
                    .is_none_or(|a| t.updated_at.as_str() > a.as_str())
            })
            .cloned()
            .collect();
        list.sort_by(|a, b| {
            a.created_at
                .cmp(&b.created_at)
                .then_with(|| a.id.cmp(&b.id))
        });
        if !q.ascending {
            list.reverse();
        }
        let total = list.len();
        if let Some(offset) = q.offset {
            let limit = q.limit.unwrap_or(20).clamp(1, 100);
            let page: Vec<&Task> = list.iter().skip(offset).take(limit).collect();
            let has_more = offset + page.len() < total;
            let mut out =
                json!({"tasks": page, "total": total, "has_more": has_more, "count": page.len()});
            if has_more {
                out["next_offset"] = json!(offset + limit);
            }
            return Ok(out);
        }
        let limit = q.limit.unwrap_or(50).clamp(1, 200);
        let start = match &q.cursor {
            Some(c) => match list.iter().position(|t| &t.id == c) {
                Some(i) => i + 1,
                None => 0,
            },
            None => 0,
        };
        let page: Vec<&Task> = list.iter().skip(start).take(limit).collect();
        let has_more = start + page.len() < total;
        let next_cursor = if has_more {
            page.last().map(|t| t.id.clone())
        } else {
            None
        };
        Ok(
            json!({"tasks": page, "count": page.len(), "total": total, "has_more": has_more, "next_cursor": next_cursor}),
        )
    }

    /// `GET /tasks/{id}:wait`: waits (event-driven) until the task is terminal or `timeout`.
    /// Returns the task and whether the wait timed out.
    pub async fn wait_task(
        &self,
        task_id: &str,
        timeout: Duration,
    ) -> NodeResult<(Task, bool, bool)> {
        let mut live = self.inner.events.subscribe();
        let task = self.task(task_id)?;
        if task.status.is_terminal() {
            return Ok((task, false, false));
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, live.recv()).await {
                Err(_) => return Ok((self.task(task_id)?, true, true)),
                Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => {
                    return Ok((self.task(task_id)?, true, true));
                }
                Ok(_) => {
                    let task = self.task(task_id)?;
                    if task.status.is_terminal() {
                        return Ok((task, true, false));
                    }
                }
            }
        }
    }
}

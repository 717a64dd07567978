//! The bridge of one A2A agent: the peer's "connection". While the agent's card can be
//! read it is attached to the node like a wire session (`attach_connection`, connection
//! type `a2a`) and turns each `Outbound` frame into an A2A call: a message into
//! `SendMessage`, a delegated task into `SendMessage` starting an A2A task, a cancel into
//! `CancelTask`. What the agent answers (messages, task states, artifacts) goes back in as
//! ACP frames through `Node::on_bridged_frame`, the path of every peer's frames.
//!
//! Delivery: a message the agent accepted is confirmed (`delivered`); one it refused ends
//! `failed` with its reason; one that found it unreachable goes back to the offline queue
//! (`detach_connection`) and the bridge tries again with backoff (1 s doubling to 30 s).
//! A send to an agent whose card says it streams reads the `SendStreamingMessage` events
//! (each within 60 s, at most 5 minutes); tasks the agent keeps working on after that, or
//! on an agent that does not stream, are followed with `GetTask` (200 ms doubling to 5 s,
//! at most an hour). No request is held open without bound.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value, json};
use sha2::Digest;
use tokio::sync::mpsc;

use super::card::{self, Interface};
use super::convert;
use super::credentials;
use super::links::{Links, Remote};
use super::rpc::{self, Agent, CallError};
use crate::a2a::types::{self, SendMessageResponse};
use crate::node::Node;
use crate::node::ids::now_iso;
use crate::node::message::MAX_ID_LEN;
use crate::node::peers::{ConnectionType, Outbound, PeerKind};
use crate::node::task::TaskState;
use crate::node::webhooks::post::Connector;

/// First wait before trying an unreachable agent again.
const MIN_BACKOFF: Duration = Duration::from_secs(1);
/// Longest wait between tries.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How often the attached bridge moves stranded queue frames into its outbox.
const PUMP_EVERY: Duration = Duration::from_secs(10);
/// First and longest pause between two `GetTask` of a task the agent works on.
const FOLLOW_FIRST: Duration = Duration::from_millis(200);
const FOLLOW_MAX: Duration = Duration::from_secs(5);
/// How long a `SendStreamingMessage` stream is read, and how long it may be silent, before
/// the bridge follows the task with `GetTask` instead.
const STREAM_LIMIT: Duration = Duration::from_secs(300);
const STREAM_IDLE: Duration = Duration::from_secs(60);
/// How long a task is followed before the bridge stops asking.
const FOLLOW_LIMIT: Duration = Duration::from_secs(3600);

/// What the bridge remembers of the agent's tasks across its attachments.
#[derive(Default)]
struct Shared {
    /// Remote task links (persisted).
    links: Links,
    /// Per remote task: artifacts and status messages already passed on, and its last state.
    seen: HashMap<String, Seen>,
    /// Remote tasks a follower polls now.
    following: HashSet<String>,
}

#[derive(Default)]
struct Seen {
    artifacts: HashSet<String>,
    messages: HashSet<String>,
    state: Option<types::TaskState>,
}

/// One attachment: the agent as its card describes it now.
struct Bridge {
    node: Node,
    peer_id: String,
    agent_name: String,
    agent: Agent,
    /// The card says the agent streams: sends use `SendStreamingMessage`.
    streaming: bool,
    shared: Arc<Mutex<Shared>>,
}

/// The bridges running in this process, by data dir and peer id.
static RUNNING: Mutex<Option<HashSet<(std::path::PathBuf, String)>>> = Mutex::new(None);

/// A bridge's claim on its peer: held while it runs, released when dropped.
pub struct Running((std::path::PathBuf, String));

impl Running {
    /// Claims `peer_id` of `node`; `None` when its bridge already runs.
    pub fn claim(node: &Node, peer_id: &str) -> Option<Running> {
        let key = (node.config().data_dir.clone(), peer_id.to_owned());
        let mut set = RUNNING.lock().unwrap_or_else(|p| p.into_inner());
        set.get_or_insert_with(HashSet::new)
            .insert(key.clone())
            .then_some(Running(key))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(set) = RUNNING.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            set.remove(&self.0);
        }
    }
}

/// Runs the bridge of `peer_id` until the peer is removed (its stored credential is then
/// deleted) or the node stops.
pub async fn run(node: Node, peer_id: String) {
    let connector = Arc::new(Connector::default());
    let shared = Arc::new(Mutex::new(Shared {
        links: Links::load(&node, &peer_id).await,
        ..Default::default()
    }));
    node.restore_refused(&peer_id).await;
    let shutdown = node.shutdown_token();
    let mut backoff = MIN_BACKOFF;
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        let Some(peer) = node.bridge_target(&peer_id, PeerKind::A2a) else {
            if let Err(e) = credentials::store(&node.config().data_dir, &peer_id, None) {
                tracing::warn!(peer = %peer_id, "cannot delete the removed agent's credential: {e}");
            }
            return;
        };
        let url = match url::Url::parse(&peer.url) {
            Ok(u) => u,
            Err(e) => {
                node.bridged_unreachable(&peer_id, &format!("bad agent URL: {e}"));
                return;
            }
        };
        let credential = credentials::load(&node.config().data_dir, &peer_id);
        match card::fetch(&connector, &url, credential.as_ref()).await {
            Err(e) => node.bridged_unreachable(&peer_id, e.message()),
            Ok((raw, parsed, interface)) => {
                node.set_bridged_card(&peer_id, raw);
                let bridge = Arc::new(Bridge {
                    node: node.clone(),
                    peer_id: peer_id.clone(),
                    agent_name: parsed.name.clone(),
                    agent: Agent::new(connector.clone(), interface.clone(), credential),
                    streaming: parsed.capabilities.streaming == Some(true),
                    shared: shared.clone(),
                });
                bridge.resume_followers();
                if bridge.attached(&interface).await {
                    backoff = MIN_BACKOFF;
                }
            }
        }
        if !continue_after(&shutdown, backoff).await {
            return;
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Sleeps `pause` unless the node stops first; false when it stopped.
async fn continue_after(shutdown: &tokio_util::sync::CancellationToken, pause: Duration) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = tokio::time::sleep(pause) => true,
    }
}

/// An id the node takes for an inbound message (at most [`MAX_ID_LEN`], not empty): the
/// agent's own when it fits, else a digest of it.
fn inbound_id(raw: &str) -> String {
    if !raw.is_empty() && raw.len() <= MAX_ID_LEN && !raw.chars().any(char::is_control) {
        return raw.to_owned();
    }
    let digest = sha2::Sha256::digest(raw.as_bytes());
    format!("a2a-{}", hex::encode(&digest[..16]))
}

impl Bridge {
    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Attached to the node until the agent is found unreachable, the peer is removed or
    /// the node stops. True when at least one frame went through.
    async fn attached(self: &Arc<Self>, interface: &Interface) -> bool {
        let node = &self.node;
        let resend = node
            .unconfirmed_frames(&self.peer_id)
            .await
            .unwrap_or_default();
        let capacity = node.config().offline_queue_limit + 1024 + resend.len();
        let (tx, mut rx) = mpsc::channel::<Outbound>(capacity);
        for out in resend {
            let _ = tx.try_send(out);
        }
        let remote = Some(super::http::origin(&interface.url));
        let generation = node.attach_connection(&self.peer_id, tx, remote, ConnectionType::A2a);
        tracing::info!(
            peer = %self.peer_id,
            binding = interface.binding.as_str(),
            version = interface.version.as_str(),
            streaming = self.streaming,
            "A2A agent attached"
        );
        let shutdown = node.shutdown_token();
        let mut pump = tokio::time::interval(PUMP_EVERY);
        pump.tick().await;
        let mut leftovers = Vec::new();
        let mut progressed = false;
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                out = rx.recv() => {
                    let Some(out) = out else { break };
                    match self.deliver(&out).await {
                        Ok(()) => {
                            progressed = true;
                            if let Outbound::Queued(row) = &out {
                                node.queued_frame_sent(&self.peer_id, row.id);
                            }
                        }
                        Err(why) => {
                            tracing::info!(peer = %self.peer_id, "A2A agent unreachable: {why}");
                            node.bridged_unreachable(&self.peer_id, &why);
                            leftovers.push(out);
                            break;
                        }
                    }
                }
                _ = pump.tick() => {
                    if node.bridge_target(&self.peer_id, PeerKind::A2a).is_none() {
                        break;
                    }
                    node.pump_queue(&self.peer_id);
                }
            }
        }
        rx.close();
        while let Ok(out) = rx.try_recv() {
            leftovers.push(out);
        }
        let _ = node.store().flush().await;
        node.detach_connection(&self.peer_id, generation, leftovers);
        progressed
    }

    /// One frame for the agent. `Err` (with why) when the agent could not be reached: the
    /// frame is kept for later.
    async fn deliver(self: &Arc<Self>, out: &Outbound) -> Result<(), String> {
        let frame: Value = match out {
            Outbound::Frame { json, .. } => serde_json::from_str(json).unwrap_or(Value::Null),
            Outbound::Queued(row) => row.frame.clone(),
        };
        let str_of = |k: &str| frame.get(k).and_then(Value::as_str).map(str::to_owned);
        match str_of("type").as_deref() {
            Some(kind @ ("acp.message" | "acp.reply" | "task.delegate")) => {
                let parts = if kind == "task.delegate" {
                    frame["payload"].get("parts")
                } else {
                    frame.get("parts")
                };
                let parts = parts.and_then(Value::as_array).cloned().unwrap_or_default();
                self.send(
                    &str_of("message_id").unwrap_or_default(),
                    &parts,
                    str_of("task_id"),
                    str_of("context_id"),
                )
                .await
            }
            Some("task.updated")
                if matches!(
                    str_of("status").as_deref(),
                    Some("canceled" | "cancelled" | "cancelling")
                ) =>
            {
                self.cancel(str_of("task_id").as_deref()).await
            }
            // Card pushes, acks and other updates mean nothing to an A2A agent.
            _ => Ok(()),
        }
    }

    /// A message to the agent: continues the A2A task behind its ACP task (or the one
    /// waiting for input in its context), else starts a new exchange.
    async fn send(
        self: &Arc<Self>,
        message_id: &str,
        parts: &[Value],
        task_id: Option<String>,
        context_id: Option<String>,
    ) -> Result<(), String> {
        let node = &self.node;
        if message_id.is_empty() {
            return Ok(());
        }
        // Only an ACP task of this node shared with this agent has an A2A side.
        let local = task_id.filter(|t| {
            node.task(t)
                .is_ok_and(|t| t.peer_id.as_deref() == Some(self.peer_id.as_str()))
        });
        let (remote_task, context) = {
            let s = self.lock();
            match local.as_ref().and_then(|l| s.links.by_local.get(l)) {
                Some(r) => (Some(r.task_id.clone()), r.context_id.clone().or(context_id)),
                None => (
                    context_id
                        .as_ref()
                        .and_then(|c| s.links.open_in_context.get(c).cloned()),
                    context_id,
                ),
            }
        };
        let message = rpc::user_message(
            message_id,
            parts,
            context.as_deref(),
            remote_task.as_deref(),
        );
        if self.streaming {
            return self
                .send_streamed(message_id, &message, local, context)
                .await;
        }
        match self.agent.send_message(&message).await {
            Err(CallError::Unreachable(why)) => Err(why),
            Err(CallError::Refused(why)) => {
                if let Err(e) =
                    node.bridged_failed(&self.peer_id, message_id, local.as_deref(), &why)
                {
                    tracing::warn!(peer = %self.peer_id, "cannot record a refused message: {e}");
                }
                Ok(())
            }
            Ok(reply) => {
                node.bridged_delivered(&self.peer_id, &[message_id.to_owned()]);
                match reply {
                    SendMessageResponse::Message(m) => {
                        let parts = convert::parts_to_acp(&m.parts);
                        self.inbound(
                            &m.message_id,
                            &parts,
                            m.context_id.as_deref().or(context.as_deref()),
                            local.as_deref(),
                        );
                        // A message answer ends the exchange: the task it was for is done.
                        if let Some(l) = &local {
                            self.task_frame(l, TaskState::Completed, Some(&parts), None, None);
                        }
                    }
                    SendMessageResponse::Task(t) => {
                        if let Some(l) = &local {
                            let mut s = self.lock();
                            s.links.link(
                                l,
                                Remote {
                                    task_id: t.id.clone(),
                                    context_id: Some(t.context_id.clone())
                                        .filter(|c| !c.is_empty()),
                                },
                            );
                            s.links.save(node, &self.peer_id);
                        }
                        self.absorb(&t, local.as_deref());
                        if !convert::settled(&t) {
                            self.follow(t.id.clone(), local.clone());
                        }
                    }
                }
                Ok(())
            }
        }
    }

    /// Links the ACP task `local` (if any) to the agent's task.
    fn link(&self, local: Option<&str>, task_id: &str, context_id: &str) {
        let Some(l) = local else { return };
        let mut s = self.lock();
        if s.links
            .by_local
            .get(l)
            .is_some_and(|r| r.task_id == task_id)
        {
            return;
        }
        s.links.link(
            l,
            Remote {
                task_id: task_id.to_owned(),
                context_id: Some(context_id.to_owned()).filter(|c| !c.is_empty()),
            },
        );
        s.links.save(&self.node, &self.peer_id);
    }

    /// A message sent with `SendStreamingMessage`: the first event means the agent took it;
    /// each event is passed on as it comes. The stream is read for at most
    /// [`STREAM_LIMIT`], each event within [`STREAM_IDLE`]; a task still open after that
    /// (or after a cut stream) is followed with `GetTask`.
    async fn send_streamed(
        self: &Arc<Self>,
        message_id: &str,
        message: &types::Message,
        local: Option<String>,
        context: Option<String>,
    ) -> Result<(), String> {
        let node = &self.node;
        let mut stream = match self.agent.send_streaming(message).await {
            Err(CallError::Unreachable(why)) => return Err(why),
            Err(CallError::Refused(why)) => {
                if let Err(e) =
                    node.bridged_failed(&self.peer_id, message_id, local.as_deref(), &why)
                {
                    tracing::warn!(peer = %self.peer_id, "cannot record a refused message: {e}");
                }
                return Ok(());
            }
            Ok(s) => s,
        };
        let deadline = tokio::time::Instant::now() + STREAM_LIMIT;
        let mut accepted = false;
        let mut done = false;
        // The task as the stream showed it so far, and artifact chunks not yet complete.
        let mut task: Option<types::Task> = None;
        let mut pending: Vec<types::Artifact> = Vec::new();
        while !done {
            let next = tokio::time::timeout_at(deadline, stream.next_event(STREAM_IDLE)).await;
            let data = match next {
                Ok(Ok(Some(d))) => d,
                _ => break,
            };
            let item = match self.agent.stream_item(&data) {
                Ok(i) => i,
                Err(CallError::Refused(why)) if !accepted => {
                    if let Err(e) =
                        node.bridged_failed(&self.peer_id, message_id, local.as_deref(), &why)
                    {
                        tracing::warn!(peer = %self.peer_id, "cannot record a refused message: {e}");
                    }
                    return Ok(());
                }
                Err(e) => {
                    tracing::info!(peer = %self.peer_id, "stream ended: {e:?}");
                    break;
                }
            };
            if !accepted {
                accepted = true;
                node.bridged_delivered(&self.peer_id, &[message_id.to_owned()]);
            }
            match item {
                types::StreamResponse::Message(m) => {
                    let parts = convert::parts_to_acp(&m.parts);
                    self.inbound(
                        &m.message_id,
                        &parts,
                        m.context_id.as_deref().or(context.as_deref()),
                        local.as_deref(),
                    );
                    if task.is_none() {
                        if let Some(l) = &local {
                            self.task_frame(l, TaskState::Completed, Some(&parts), None, None);
                        }
                        done = true;
                    }
                }
                types::StreamResponse::Task(t) => {
                    self.link(local.as_deref(), &t.id, &t.context_id);
                    self.absorb(&t, local.as_deref());
                    done = convert::settled(&t);
                    task = Some(t);
                }
                types::StreamResponse::StatusUpdate(e) => {
                    self.link(local.as_deref(), &e.task_id, &e.context_id);
                    let mut t = task.clone().unwrap_or_else(|| types::Task {
                        id: e.task_id.clone(),
                        context_id: e.context_id.clone(),
                        status: e.status.clone(),
                        artifacts: Vec::new(),
                        history: Vec::new(),
                        metadata: None,
                    });
                    t.status = e.status;
                    done = convert::settled(&t) || e.final_ == Some(true);
                    if done {
                        // Chunks still open are complete once the task settles.
                        t.artifacts.append(&mut pending);
                    }
                    self.absorb(&t, local.as_deref());
                    task = Some(t);
                }
                types::StreamResponse::ArtifactUpdate(e) => {
                    self.link(local.as_deref(), &e.task_id, &e.context_id);
                    let a = e.artifact;
                    let artifact_id = a.artifact_id.clone();
                    match pending.iter_mut().find(|p| p.artifact_id == a.artifact_id) {
                        Some(p) if e.append => p.parts.extend(a.parts),
                        Some(p) => *p = a,
                        None => pending.push(a),
                    }
                    let t = task.get_or_insert_with(|| types::Task {
                        id: e.task_id.clone(),
                        context_id: e.context_id.clone(),
                        status: types::TaskStatus {
                            state: types::TaskState::Working,
                            message: None,
                            timestamp: None,
                        },
                        artifacts: Vec::new(),
                        history: Vec::new(),
                        metadata: None,
                    });
                    if e.last_chunk
                        && let Some(i) = pending.iter().position(|p| p.artifact_id == artifact_id)
                    {
                        let complete = pending.remove(i);
                        t.artifacts.push(complete);
                        let snapshot = t.clone();
                        self.absorb(&snapshot, local.as_deref());
                    }
                }
            }
        }
        if !accepted {
            return Err("the agent's event stream ended before it answered".into());
        }
        if let Some(mut t) = task {
            if !pending.is_empty() {
                t.artifacts.append(&mut pending);
                self.absorb(&t, local.as_deref());
            }
            if !done && !convert::settled(&t) {
                self.follow(t.id.clone(), local);
            }
        }
        Ok(())
    }

    /// `CancelTask` for the A2A task behind the ACP task `local`.
    async fn cancel(self: &Arc<Self>, local: Option<&str>) -> Result<(), String> {
        let Some(local) = local else { return Ok(()) };
        let remote = self.lock().links.by_local.get(local).cloned();
        let Some(remote) = remote else { return Ok(()) };
        match self.agent.cancel_task(&remote.task_id).await {
            Ok(t) => {
                self.absorb(&t, Some(local));
                Ok(())
            }
            Err(CallError::Unreachable(why)) => Err(why),
            Err(CallError::Refused(why)) => {
                tracing::warn!(peer = %self.peer_id, task = local, "the agent refused to cancel: {why}");
                Ok(())
            }
        }
    }

    /// Passes on what is new in a snapshot of the agent's task: artifacts (to the ACP task,
    /// or as messages when there is none), its status message, its state.
    fn absorb(&self, task: &types::Task, local: Option<&str>) {
        let context = Some(task.context_id.as_str()).filter(|c| !c.is_empty());
        let acp_state = convert::state(task.status.state);
        let (new_artifacts, new_message, state_changed) = {
            let mut s = self.lock();
            let seen = s.seen.entry(task.id.clone()).or_default();
            let artifacts: Vec<&types::Artifact> = task
                .artifacts
                .iter()
                .filter(|a| seen.artifacts.insert(a.artifact_id.clone()))
                .collect();
            let message = task
                .status
                .message
                .as_ref()
                .filter(|m| seen.messages.insert(m.message_id.clone()));
            let changed = seen.state != Some(task.status.state);
            seen.state = Some(task.status.state);
            if local.is_none()
                && let Some(c) = context
            {
                s.links
                    .set_open(c, &task.id, task.status.state.is_interrupted());
                s.links.save(&self.node, &self.peer_id);
            }
            if task.status.state.is_terminal() {
                s.seen.remove(&task.id);
            }
            (artifacts, message, changed)
        };
        let interim = acp_state
            .filter(|s| !s.is_terminal())
            .unwrap_or(TaskState::Working);
        for a in new_artifacts {
            let parts = convert::parts_to_acp(&a.parts);
            match local {
                Some(l) => self.task_frame(l, interim, Some(&parts), a.name.as_deref(), None),
                None => self.inbound(
                    &format!("{}-{}", task.id, a.artifact_id),
                    &parts,
                    context,
                    None,
                ),
            }
        }
        if let Some(m) = new_message {
            self.inbound(
                &m.message_id,
                &convert::parts_to_acp(&m.parts),
                context,
                local,
            );
        }
        if state_changed && let (Some(l), Some(state)) = (local, acp_state) {
            let error = (state == TaskState::Failed).then(|| {
                let text: String = task
                    .status
                    .message
                    .as_ref()
                    .map(|m| {
                        m.parts
                            .iter()
                            .filter_map(|p| match &p.content {
                                types::PartContent::Text(t) => Some(t.as_str()),
                                _ => None,
                            })
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .unwrap_or_default();
                if text.is_empty() {
                    format!("the agent's task ended {}", task.status.state.as_v03())
                } else {
                    text
                }
            });
            self.task_frame(l, state, None, None, error.as_deref());
        }
    }

    /// Polls the agent's task `remote` until it settles (or the limit), passing on what
    /// changes. One follower per task.
    fn follow(self: &Arc<Self>, remote: String, local: Option<String>) {
        if !self.lock().following.insert(remote.clone()) {
            return;
        }
        let me = self.clone();
        self.node.background().spawn(async move {
            let shutdown = me.node.shutdown_token();
            let deadline = tokio::time::Instant::now() + FOLLOW_LIMIT;
            let mut pause = FOLLOW_FIRST;
            loop {
                if !continue_after(&shutdown, pause).await {
                    break;
                }
                if tokio::time::Instant::now() > deadline {
                    tracing::warn!(peer = %me.peer_id, task = %remote, "stopped following an A2A task after an hour");
                    break;
                }
                match me.agent.get_task(&remote).await {
                    Ok(t) => {
                        me.absorb(&t, local.as_deref());
                        if convert::settled(&t) {
                            break;
                        }
                        pause = (pause * 2).min(FOLLOW_MAX);
                    }
                    Err(CallError::Unreachable(_)) => pause = (pause * 2).min(MAX_BACKOFF),
                    Err(CallError::Refused(why)) => {
                        if let Some(l) = &local {
                            me.task_frame(l, TaskState::Failed, None, None, Some(&why));
                        }
                        break;
                    }
                }
            }
            me.lock().following.remove(&remote);
        });
    }

    /// Follows again, after a restart or a reconnection, the linked tasks the agent was
    /// still working on.
    fn resume_followers(self: &Arc<Self>) {
        let linked: Vec<(String, String)> = self
            .lock()
            .links
            .by_local
            .iter()
            .map(|(l, r)| (l.clone(), r.task_id.clone()))
            .collect();
        for (local, remote) in linked {
            let working = self
                .node
                .task(&local)
                .is_ok_and(|t| !t.status.is_terminal() && t.status != TaskState::InputRequired);
            if working {
                self.follow(remote, Some(local));
            }
        }
    }

    /// An inbound ACP message from the agent.
    fn inbound(&self, id: &str, parts: &[Value], context: Option<&str>, task: Option<&str>) {
        if parts.is_empty() {
            return;
        }
        let mut f = Map::new();
        f.insert("type".into(), json!("acp.message"));
        f.insert("message_id".into(), json!(inbound_id(id)));
        f.insert("ts".into(), json!(now_iso()));
        f.insert("from".into(), json!(self.agent_name));
        f.insert("role".into(), json!("agent"));
        f.insert("parts".into(), json!(parts));
        if let Some(c) = context {
            f.insert("context_id".into(), json!(c));
        }
        if let Some(t) = task {
            f.insert("task_id".into(), json!(t));
        }
        self.node.on_bridged_frame(&self.peer_id, f);
    }

    /// A `task.updated` frame for the ACP task `local`.
    fn task_frame(
        &self,
        local: &str,
        state: TaskState,
        parts: Option<&[Value]>,
        name: Option<&str>,
        error: Option<&str>,
    ) {
        let mut f = Map::new();
        f.insert("type".into(), json!("task.updated"));
        f.insert(
            "message_id".into(),
            json!(crate::node::ids::make_message_id()),
        );
        f.insert("ts".into(), json!(now_iso()));
        f.insert("from".into(), json!(self.agent_name));
        f.insert("task_id".into(), json!(local));
        f.insert("status".into(), json!(state.as_str()));
        if let Some(parts) = parts {
            let mut artifact = json!({"parts": parts});
            if let Some(n) = name {
                artifact["name"] = json!(n);
            }
            f.insert("artifact".into(), artifact);
        }
        if let Some(e) = error {
            f.insert("error".into(), json!(e));
        }
        self.node.on_bridged_frame(&self.peer_id, f);
    }
}

//! Node events → MCP notifications: `resources/updated` for subscribed resources (inbox on a
//! new message, a task on its changes, peers and status on connects, the card on edits),
//! `resources/list_changed` when peers or tasks come and go, and logging notifications for
//! connection events once the client has set a log level.
//!
//! One mapping ([`notes_for`]) feeds both ways clients subscribe: the `resources/subscribe`
//! of today's hosts (a forwarder per session) and the `subscriptions/listen` stream of the
//! 2026-07-28 protocol (one loop per listen request). A session also gets
//! `notifications/tasks` for the task handles it was given (the tasks extension); a listen
//! stream cannot carry them (rmcp 3.11's subscription filter has no tasks), so there the
//! task's resource (`acp://tasks/{id}`) stands in.

#![allow(deprecated)]

use std::sync::atomic::Ordering;

use rmcp::RoleServer;
use rmcp::model::{
    LoggingLevel, LoggingMessageNotificationParam, ResourceUpdatedNotificationParam,
    ServerNotification, TaskStatusNotification, TaskStatusNotificationParams,
};
use rmcp::service::{Peer, SubscriptionContext};
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use super::resources::{CARD, INBOX, PEERS, STATUS, TASK_PREFIX};
use super::tasks::Change;
use super::{AcpMcp, LEVELS};
use crate::node::Node;
use crate::node::events::Event;

/// One notification a node event calls for.
enum Note {
    /// `notifications/resources/updated` for this URI (to its subscribers).
    Updated(String),
    /// `notifications/resources/list_changed`.
    ListChanged,
    /// A logging notification (only once the client set a level at or below it).
    Log(LoggingLevel, Value),
    /// `notifications/tasks` for the session's task handles this change concerns.
    Task(Change),
}

/// What an event means for MCP clients.
fn notes_for(ev: &Event) -> Vec<Note> {
    match ev.kind.as_str() {
        "message" if ev.body["direction"] == "inbound" => {
            let mut notes = vec![
                Note::Updated(INBOX.into()),
                Note::Log(
                    LoggingLevel::Debug,
                    json!({"event": "message", "from": ev.body["from"], "message_id": ev.body["message_id"]}),
                ),
            ];
            if let Some(id) = ev.body["task_id"].as_str() {
                notes.push(Note::Task(Change::Task(id.to_owned())));
            }
            if let (Some(peer), Some(ctx)) =
                (ev.body["peer_id"].as_str(), ev.body["context_id"].as_str())
            {
                notes.push(Note::Task(Change::Conversation {
                    peer_id: peer.to_owned(),
                    context_id: ctx.to_owned(),
                }));
            }
            notes
        }
        "status" | "artifact" => {
            let Some(id) = ev.body["task_id"].as_str() else {
                return Vec::new();
            };
            let mut notes = vec![
                Note::Updated(format!("{TASK_PREFIX}{id}")),
                Note::Task(Change::Task(id.to_owned())),
            ];
            let new_task = ev.body["state"] == "submitted"
                || (ev.kind == "status" && ev.body.get("peer_id").is_some());
            if new_task {
                notes.push(Note::ListChanged);
            }
            notes
        }
        "peer" => vec![
            Note::ListChanged,
            Note::Updated(PEERS.into()),
            Note::Updated(STATUS.into()),
            Note::Log(
                LoggingLevel::Info,
                json!({"event": format!("peer {}", ev.body["event"].as_str().unwrap_or("changed")), "peer_id": ev.body["peer_id"]}),
            ),
        ],
        "card" => vec![Note::Updated(CARD.into())],
        _ => Vec::new(),
    }
}

/// Notes sent when a listener fell too far behind to know precisely what changed.
fn catch_up_notes() -> Vec<Note> {
    vec![
        Note::ListChanged,
        Note::Updated(INBOX.into()),
        Note::Updated(PEERS.into()),
        Note::Updated(STATUS.into()),
    ]
}

/// Runs `deliver` for the notes of every node event until shutdown, the event channel
/// closing, or `deliver` failing (the client went away).
async fn pump<F, Fut>(node: &Node, mut deliver: F) -> Result<(), String>
where
    F: FnMut(Vec<Note>) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let mut events = node.events().subscribe();
    let shutdown = node.shutdown_token();
    loop {
        let notes = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            r = events.recv() => match r {
                Ok(ev) => notes_for(&ev),
                Err(RecvError::Lagged(_)) => catch_up_notes(),
                Err(RecvError::Closed) => return Ok(()),
            },
        };
        if !notes.is_empty() {
            deliver(notes).await?;
        }
    }
}

/// Starts the `resources/subscribe` forwarder of a session (once per session).
pub fn start_forwarding(handler: AcpMcp, peer: Peer<RoleServer>) {
    if handler.forwarding.swap(true, Ordering::SeqCst) {
        return;
    }
    let node = handler.node.clone();
    node.background().spawn(async move {
        let node = handler.node.clone();
        let result = pump(&node, |notes| {
            let (handler, peer) = (handler.clone(), peer.clone());
            async move {
                if peer.is_transport_closed() {
                    return Err("session closed".into());
                }
                for note in notes {
                    send_to_session(&handler, &peer, note).await?;
                }
                Ok(())
            }
        })
        .await;
        if let Err(e) = result {
            tracing::debug!("MCP notification forwarding ended: {e}");
        }
    });
}

async fn send_to_session(
    handler: &AcpMcp,
    peer: &Peer<RoleServer>,
    note: Note,
) -> Result<(), String> {
    match note {
        Note::Updated(uri) if handler.subscribed(&uri) => peer
            .notify_resource_updated(ResourceUpdatedNotificationParam::new(uri))
            .await
            .map_err(|e| e.to_string()),
        Note::Updated(_) => Ok(()),
        Note::Task(change) => {
            for task in super::tasks::changed(&handler.node, &handler.task_handles, &change).await {
                let note = TaskStatusNotification::new(TaskStatusNotificationParams::new(task));
                peer.send_notification(ServerNotification::TaskStatusNotification(note))
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Ok(())
        }
        Note::ListChanged => peer
            .notify_resource_list_changed()
            .await
            .map_err(|e| e.to_string()),
        Note::Log(level, data) => {
            let threshold = handler.log_level.lock().ok().and_then(|l| *l);
            let name = serde_json::to_value(level)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let rank = LEVELS.iter().position(|l| *l == name).unwrap_or(0);
            match threshold {
                Some(min) if rank >= min => {
                    let mut param = LoggingMessageNotificationParam::new(level, data);
                    param.logger = Some("acp-relay".into());
                    peer.notify_logging_message(param)
                        .await
                        .map_err(|e| e.to_string())
                }
                _ => Ok(()),
            }
        }
    }
}

/// Serves one `subscriptions/listen` request until the client cancels it.
pub async fn listen(node: &Node, context: SubscriptionContext) {
    let accepted = context.accepted().clone();
    let wants = |uri: &str| {
        accepted
            .resource_subscriptions
            .as_ref()
            .is_some_and(|list| list.iter().any(|u| u == uri))
    };
    let list_changed = accepted.resources_list_changed == Some(true);
    let sink = context.sink().clone();
    tokio::select! {
        _ = context.cancelled() => {}
        result = pump(node, |notes| {
            let sink = sink.clone();
            let sends: Vec<Note> = notes
                .into_iter()
                .filter(|n| match n {
                    Note::Updated(uri) => wants(uri),
                    Note::ListChanged => list_changed,
                    Note::Log(..) | Note::Task(_) => false,
                })
                .collect();
            async move {
                for note in sends {
                    match note {
                        Note::Updated(uri) => sink.notify_resource_updated(uri).await.map_err(|e| e.to_string())?,
                        Note::ListChanged => sink.notify_resource_list_changed().await.map_err(|e| e.to_string())?,
                        Note::Log(..) | Note::Task(_) => {}
                    }
                }
                Ok(())
            }
        }) => {
            if let Err(e) = result {
                tracing::debug!("MCP listen stream ended: {e}");
            }
        }
    }
}

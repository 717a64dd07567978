//! Node events → MCP notifications for one session: `resources/updated` for subscribed
//! resources (inbox on a new message, a task on its changes, peers on connects),
//! `resources/list_changed` when peers or tasks come and go, and logging notifications for
//! connection events once the client has set a log level.

#![allow(deprecated)]

use std::sync::atomic::Ordering;

use rmcp::RoleServer;
use rmcp::model::{
    LoggingLevel, LoggingMessageNotificationParam, ResourceUpdatedNotificationParam,
};
use rmcp::service::Peer;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use super::resources::{CARD, INBOX, PEERS, STATUS, TASK_PREFIX};
use super::{AcpMcp, LEVELS};

/// Starts the forwarder of a session (once per session).
pub fn start_forwarding(handler: AcpMcp, peer: Peer<RoleServer>) {
    if handler.forwarding.swap(true, Ordering::SeqCst) {
        return;
    }
    let node = handler.node.clone();
    node.background().spawn(async move {
        if let Err(e) = forward(handler, peer).await {
            tracing::debug!("MCP notification forwarding ended: {e}");
        }
    });
}

async fn forward(handler: AcpMcp, peer: Peer<RoleServer>) -> Result<(), String> {
    let node = handler.node.clone();
    let mut events = node.events().subscribe();
    let shutdown = node.shutdown_token();
    loop {
        let ev = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            r = events.recv() => match r {
                Ok(ev) => ev,
                Err(RecvError::Lagged(_)) => {
                    // Too far behind to say precisely what changed: mark everything updated.
                    for uri in [INBOX, PEERS, STATUS] {
                        updated(&handler, &peer, uri).await?;
                    }
                    continue;
                }
                Err(RecvError::Closed) => return Ok(()),
            },
        };
        if peer.is_transport_closed() {
            return Ok(());
        }
        match ev.kind.as_str() {
            "message" if ev.body["direction"] == "inbound" => {
                updated(&handler, &peer, INBOX).await?;
                let from = ev.body["from"].as_str().unwrap_or("a peer");
                log(
                    &handler,
                    &peer,
                    LoggingLevel::Debug,
                    json!({"event": "message", "from": from, "message_id": ev.body["message_id"]}),
                )
                .await?;
            }
            "status" | "artifact" => {
                if let Some(id) = ev.body["task_id"].as_str() {
                    updated(&handler, &peer, &format!("{TASK_PREFIX}{id}")).await?;
                    if ev.body["state"] == "submitted"
                        || (ev.kind == "status" && ev.body.get("peer_id").is_some())
                    {
                        peer.notify_resource_list_changed()
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                }
            }
            "peer" => {
                peer.notify_resource_list_changed()
                    .await
                    .map_err(|e| e.to_string())?;
                updated(&handler, &peer, PEERS).await?;
                updated(&handler, &peer, STATUS).await?;
                let what = ev.body["event"].as_str().unwrap_or("changed");
                log(
                    &handler,
                    &peer,
                    LoggingLevel::Info,
                    json!({"event": format!("peer {what}"), "peer_id": ev.body["peer_id"]}),
                )
                .await?;
            }
            "card" => updated(&handler, &peer, CARD).await?,
            _ => {}
        }
    }
}

async fn updated(handler: &AcpMcp, peer: &Peer<RoleServer>, uri: &str) -> Result<(), String> {
    if handler.subscribed(uri) {
        peer.notify_resource_updated(ResourceUpdatedNotificationParam::new(uri))
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

async fn log(
    handler: &AcpMcp,
    peer: &Peer<RoleServer>,
    level: LoggingLevel,
    data: serde_json::Value,
) -> Result<(), String> {
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

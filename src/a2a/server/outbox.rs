//! The bridge's side of an A2A caller's peer connection: reads what the agent sends that
//! peer and turns it into A2A results. An ACP message (`acp_send`) answers the caller's
//! task: its parts become an artifact and the task completes; the message is then confirmed
//! (`acp.ack`, so it shows as delivered). `task.updated` frames need nothing: the A2A task
//! is a view of the ACP task, already changed. Everything else (card pushes) is dropped.

use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::node::Node;
use crate::node::TaskQuery;
use crate::node::peers::Outbound;
use crate::node::task::Task as AcpTask;

/// Runs until the node stops or the peer is removed; then detaches, handing back what was
/// not read (it goes to the offline queue, for the next attach).
pub(super) async fn run(
    node: Node,
    peer_id: String,
    generation: u64,
    mut rx: mpsc::Receiver<Outbound>,
) {
    let shutdown = node.shutdown_token();
    loop {
        let out = tokio::select! {
            _ = shutdown.cancelled() => break,
            out = rx.recv() => out,
        };
        let Some(out) = out else { break };
        match out {
            Outbound::Frame { json, .. } => {
                if let Ok(frame) = serde_json::from_str::<Value>(&json) {
                    deliver(&node, &peer_id, &frame).await;
                }
            }
            Outbound::Queued(row) => {
                deliver(&node, &peer_id, &row.frame).await;
                node.queued_frame_sent(&peer_id, row.id);
            }
        }
    }
    rx.close();
    let mut left = Vec::new();
    while let Ok(out) = rx.try_recv() {
        left.push(out);
    }
    node.detach_connection(&peer_id, generation, left);
}

/// One frame the agent sent the caller.
async fn deliver(node: &Node, peer_id: &str, frame: &Value) {
    if frame.get("type").and_then(Value::as_str) != Some("acp.message") {
        return;
    }
    let Some(parts) = frame.get("parts").filter(|p| p.is_array()) else {
        return;
    };
    let message_id = frame
        .get("message_id")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let wanted = frame.get("task_id").and_then(Value::as_str);
    let context = frame.get("context_id").and_then(Value::as_str);
    let Some(task) = answered_task(node, peer_id, wanted, context) else {
        tracing::warn!(
            peer = peer_id,
            message_id,
            "message to an A2A caller with no open task to answer: not delivered (A2A has no way to reach a client outside a task)"
        );
        return;
    };
    let body = json!({
        "status": "completed",
        "artifact": {"artifact_id": message_id, "name": "answer", "parts": parts},
    });
    match node.update_task(&task.id, &body).await {
        Ok(_) => {
            if !message_id.is_empty() {
                let ack = crate::wire::frame::ack(std::slice::from_ref(&message_id));
                node.on_frame(peer_id, &ack.to_string());
            }
        }
        Err(e) => tracing::warn!(
            peer = peer_id,
            task = %task.id,
            "answer to an A2A task not applied: {e}"
        ),
    }
}

/// The task a message answers: the one it names, if it is an open task of this caller;
/// else the caller's newest open task (in the message's context, when it names one).
fn answered_task(
    node: &Node,
    peer_id: &str,
    wanted: Option<&str>,
    context: Option<&str>,
) -> Option<AcpTask> {
    let open = |t: &AcpTask| {
        t.from_peer && t.peer_id.as_deref() == Some(peer_id) && !t.status.is_terminal()
    };
    if let Some(id) = wanted
        && let Ok(t) = node.task(id)
        && open(&t)
    {
        return Some(t);
    }
    let q = TaskQuery {
        peer_id: Some(peer_id.to_owned()),
        context_id: context.map(str::to_owned),
        limit: Some(200),
        ..TaskQuery::default()
    };
    let list = node.list_tasks(&q).ok()?;
    list.get("tasks")?
        .as_array()?
        .iter()
        .filter_map(|t| serde_json::from_value::<AcpTask>(t.clone()).ok())
        .find(open)
}

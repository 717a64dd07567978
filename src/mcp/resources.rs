//! MCP resources: the inbox, the peers, the card, the status and each task, as JSON documents
//! under `acp://` URIs. Subscribing to one makes the session receive
//! `notifications/resources/updated` when it changes (see `notify`).

use rmcp::ErrorData as McpError;
use rmcp::model::{
    ListResourceTemplatesResult, ListResourcesResult, ReadResourceResult, Resource,
    ResourceContents, ResourceTemplate,
};
use serde_json::{Value, json};

use crate::node::Node;

/// The inbox: the latest received messages.
pub const INBOX: &str = "acp://inbox";
/// Known peers and their state.
pub const PEERS: &str = "acp://peers";
/// This agent's card.
pub const CARD: &str = "acp://card";
/// Node status.
pub const STATUS: &str = "acp://status";
/// Prefix of task resources: `acp://tasks/{task_id}`.
pub const TASK_PREFIX: &str = "acp://tasks/";

/// How many tasks `resources/list` shows (newest first); older ones stay readable by URI.
const LISTED_TASKS: usize = 100;

fn json_resource(uri: &str, name: &str, title: &str, description: &str) -> Resource {
    Resource::new(uri, name)
        .with_title(title)
        .with_description(description)
        .with_mime_type("application/json")
}

/// `resources/list`.
pub fn list(node: &Node) -> ListResourcesResult {
    let mut items = vec![
        json_resource(
            INBOX,
            "inbox",
            "Inbox",
            "The latest messages other agents sent to this agent (newest last).",
        ),
        json_resource(
            PEERS,
            "peers",
            "Peers",
            "Agents this node knows, with connection state.",
        ),
        json_resource(
            CARD,
            "card",
            "Agent card",
            "This agent's AgentCard as peers see it.",
        ),
        json_resource(
            STATUS,
            "status",
            "Status",
            "Node status: link, ports, counters.",
        ),
    ];
    let tasks = node.list_tasks(&crate::node::TaskQuery {
        limit: Some(LISTED_TASKS),
        ..Default::default()
    });
    if let Ok(list) = tasks {
        for t in list["tasks"].as_array().into_iter().flatten() {
            let id = t["id"].as_str().unwrap_or_default();
            items.push(json_resource(
                &format!("{TASK_PREFIX}{id}"),
                id,
                &format!("Task {id}"),
                &format!("Task {id} ({})", t["status"].as_str().unwrap_or("?")),
            ));
        }
    }
    ListResourcesResult::with_all_items(items)
}

/// `resources/templates/list`.
pub fn templates() -> ListResourceTemplatesResult {
    ListResourceTemplatesResult::with_all_items(vec![
        ResourceTemplate::new("acp://tasks/{task_id}", "task")
            .with_title("Task")
            .with_description("One task: status, payload, artifacts, history.")
            .with_mime_type("application/json"),
    ])
}

/// Whether `uri` names a resource this node has.
pub fn is_known(node: &Node, uri: &str) -> bool {
    match uri {
        INBOX | PEERS | CARD | STATUS => true,
        _ => uri
            .strip_prefix(TASK_PREFIX)
            .is_some_and(|id| node.task(id).is_ok()),
    }
}

/// `resources/read`.
pub async fn read(node: &Node, uri: &str) -> Result<ReadResourceResult, McpError> {
    let value: Value = match uri {
        INBOX => {
            // The last 50 inbound messages, newest last; reading moves no cursor.
            let latest = node
                .messages(crate::node::MessageQuery {
                    limit: 50,
                    direction: Some("inbound".into()),
                    ..Default::default()
                })
                .await
                .map_err(|e| McpError::internal_error(e.message, None))?;
            let mut msgs = latest["messages"].as_array().cloned().unwrap_or_default();
            msgs.reverse();
            json!({
                "unread": node.unread(),
                "total": latest["total"],
                "total_exact": latest["total_exact"],
                "messages": msgs,
            })
        }
        PEERS => node.peers(),
        CARD => node.card(),
        STATUS => node.status(),
        _ => match uri.strip_prefix(TASK_PREFIX) {
            Some(id) => serde_json::to_value(
                node.task(id)
                    .map_err(|_| McpError::resource_not_found(format!("no task '{id}'"), None))?,
            )
            .unwrap_or(Value::Null),
            None => {
                return Err(McpError::resource_not_found(
                    format!("unknown resource '{uri}'"),
                    None,
                ));
            }
        },
    };
    let text = serde_json::to_string_pretty(&value).unwrap_or_default();
    let mut contents = ResourceContents::text(text, uri);
    if let ResourceContents::TextResourceContents { mime_type, .. } = &mut contents {
        *mime_type = Some("application/json".into());
    }
    Ok(ReadResourceResult::new(vec![contents]))
}

//! Which A2A task stands behind which ACP task, per agent: the remote task id (and its
//! context) kept next to the local task id, so a cancel becomes `CancelTask` on the right
//! task and the user's answer to an `input_required` continues the same A2A task. Also the
//! agent's open tasks of conversations that have no ACP task (a plain `acp_send` the agent
//! answered with a task that asks for input). Kept in the store's `meta` table
//! (`a2a_client_links:<peer_id>`), so a restart keeps them; no schema change.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::node::Node;
use crate::node::store::{self, WriteOp};

/// Most links kept per agent; the oldest (by local task id) are dropped beyond it.
const MAX_LINKS: usize = 10_000;

/// The A2A task behind an ACP task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Remote {
    /// The agent's task id.
    pub task_id: String,
    /// The agent's context id.
    #[serde(default)]
    pub context_id: Option<String>,
}

/// The links of one agent.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Links {
    /// Local (ACP) task id → the agent's task.
    #[serde(default)]
    pub by_local: BTreeMap<String, Remote>,
    /// Context id → the agent's task waiting for input there, for messages without an ACP
    /// task.
    #[serde(default)]
    pub open_in_context: BTreeMap<String, String>,
}

fn key(peer_id: &str) -> String {
    format!("a2a_client_links:{peer_id}")
}

impl Links {
    /// The links stored for `peer_id` (none when there are none or they cannot be read).
    pub async fn load(node: &Node, peer_id: &str) -> Links {
        let k = key(peer_id);
        node.store()
            .read(move |conn| store::get_meta(conn, &k))
            .await
            .ok()
            .flatten()
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default()
    }

    /// Writes them back (with the node's next commit).
    pub fn save(&self, node: &Node, peer_id: &str) {
        if let Ok(value) = serde_json::to_string(self) {
            node.store().write(WriteOp::SetMeta {
                key: key(peer_id),
                value,
            });
        }
    }

    /// Links local task `local` to the agent's task.
    pub fn link(&mut self, local: &str, remote: Remote) {
        self.by_local.insert(local.to_owned(), remote);
        while self.by_local.len() > MAX_LINKS {
            self.by_local.pop_first();
        }
    }

    /// The local task behind the agent's task `remote`.
    pub fn local_of(&self, remote: &str) -> Option<String> {
        self.by_local
            .iter()
            .find(|(_, r)| r.task_id == remote)
            .map(|(l, _)| l.clone())
    }

    /// Marks the agent's task `remote` (of `context`) as waiting, or not, for input in
    /// that context.
    pub fn set_open(&mut self, context: &str, remote: &str, open: bool) {
        if open {
            self.open_in_context
                .insert(context.to_owned(), remote.to_owned());
            while self.open_in_context.len() > MAX_LINKS {
                self.open_in_context.pop_first();
            }
        } else if self.open_in_context.get(context).map(String::as_str) == Some(remote) {
            self.open_in_context.remove(context);
        }
    }
}

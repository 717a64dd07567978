//! The A2A server: this node as an A2A agent on its HTTP port, for A2A clients (the official
//! SDKs, ADK, LangGraph, …). Its card is at `/.well-known/agent-card.json`, the JSON-RPC
//! binding at `/a2a/jsonrpc`, the HTTP+JSON binding under `/a2a/rest` (A2A's REST paths
//! `/message:send` and `/tasks/…` collide with the ACP API, so they get a prefix).
//!
//! Each caller is a peer of kind `a2a` (one per credential, see [`A2aCaller`]) whose
//! "connection" is attached here: what an A2A client sends reaches the node as ACP frames of
//! that peer (`Node::on_frame`, the path every wire session uses), so it lands in the inbox
//! with its task; what the agent sends to that peer (`acp_send`, `acp_task_update`) comes out
//! of the peer's outbox ([`outbox`]) and resolves the A2A task. An A2A task is the ACP task
//! of the same id, seen through [`convert`].
//!
//! - [`card`] — the agent card, built from the ACP card.
//! - [`ops`] — the operations both bindings share (send, stream, get, list, cancel,
//!   subscribe), answering A2A types or an [`convert::A2aError`].
//! - [`jsonrpc`] — the JSON-RPC binding (1.0 and 0.3 method names).
//! - [`rest`] — the HTTP+JSON binding.
//! - [`push`] — push-notification configs and their delivery.

pub mod card;
pub mod convert;
pub mod jsonrpc;
pub mod ops;
mod outbox;
pub mod push;
pub mod rest;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::routing::{any, get, post};
use serde_json::json;
use tokio::sync::mpsc;

use crate::node::Node;
use crate::node::peers::{ConnectionType, PeerKind};

/// The peer name of callers without an `--a2a-token`: the API token's holder and loopback
/// callers under `--a2a-open-loopback`.
pub const LOCAL_CALLER: &str = "a2a-local";

/// How many frames the agent may send an A2A caller before the node waits for the bridge.
const OUTBOX_CAPACITY: usize = 1024;

/// Who an A2A request comes from, as the guard established it: the name of the
/// `--a2a-token` it presented, or [`LOCAL_CALLER`]. One caller is one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct A2aCaller {
    /// The peer name.
    pub name: String,
    /// Whether the request came from this machine (it may then name a loopback push URL).
    pub loopback: bool,
}

impl A2aCaller {
    /// The local caller, from a loopback address or not.
    pub fn local(loopback: bool) -> A2aCaller {
        A2aCaller {
            name: LOCAL_CALLER.to_owned(),
            loopback,
        }
    }
}

/// Whether a path is one of the A2A routes (the guard applies the A2A credential rule to
/// these, and only to these).
pub fn is_a2a_path(path: &str) -> bool {
    path == crate::a2a::types::AGENT_CARD_PATH || path == "/a2a" || path.starts_with("/a2a/")
}

/// The A2A server's state: the node, and the callers whose peer is attached in this process.
#[derive(Clone)]
pub struct A2aServer {
    inner: Arc<State>,
}

struct State {
    node: Node,
    /// Caller name → attached peer id.
    attached: Mutex<HashMap<String, String>>,
    /// Bound of a blocking `SendMessage`.
    wait: Duration,
    /// Push-notification configs.
    push: push::Registry,
}

impl A2aServer {
    /// The server of `node`.
    pub fn new(node: Node) -> A2aServer {
        let wait = node.config().a2a_wait;
        A2aServer {
            inner: Arc::new(State {
                node,
                attached: Mutex::new(HashMap::new()),
                wait,
                push: push::Registry::default(),
            }),
        }
    }

    /// The node.
    pub fn node(&self) -> &Node {
        &self.inner.node
    }

    /// The caller's peer, registered and attached on first use (and again after the user
    /// removed it): its connection is the bridge's outbox reader.
    pub fn peer_for(&self, caller: &A2aCaller) -> String {
        let node = &self.inner.node;
        let mut attached = self
            .inner
            .attached
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(id) = attached.get(&caller.name)
            && node.peer_is_active(id)
            && node.peer_is_connected(id)
        {
            return id.clone();
        }
        let card = json!({
            "name": caller.name,
            "description": "an A2A client of this node's A2A server",
            "capabilities": {"delivery_ack": true},
            "a2a": {"role": "client"},
        });
        let id = node.bridged_peer(&caller.name, PeerKind::A2a, card);
        let (tx, rx) = mpsc::channel(OUTBOX_CAPACITY);
        let generation = node.attach_connection(
            &id,
            tx,
            Some(format!("a2a:{}", caller.name)),
            ConnectionType::A2a,
        );
        tracing::info!(peer = %id, caller = %caller.name, "A2A caller attached");
        node.background()
            .spawn(outbox::run(node.clone(), id.clone(), generation, rx));
        attached.insert(caller.name.clone(), id.clone());
        id
    }
}

/// The A2A routes (the guard and body limit come from `http::protect`, like every route).
pub fn router(node: Node) -> Router {
    let server = A2aServer::new(node);
    Router::new()
        .route(crate::a2a::types::AGENT_CARD_PATH, get(card::get))
        .route("/a2a/jsonrpc", post(jsonrpc::handle))
        .route("/a2a/rest/message:send", post(rest::send))
        .route("/a2a/rest/message:stream", post(rest::stream))
        .route("/a2a/rest/tasks", get(rest::list))
        .route(
            "/a2a/rest/tasks/{spec}",
            get(rest::get_spec).post(rest::post_spec),
        )
        .route(
            "/a2a/rest/tasks/{id}/pushNotificationConfigs",
            get(rest::list_push).post(rest::create_push),
        )
        .route(
            "/a2a/rest/tasks/{id}/pushNotificationConfigs/{config}",
            get(rest::get_push).delete(rest::delete_push),
        )
        .route("/a2a/rest/extendedAgentCard", get(rest::extended_card))
        .route("/a2a/rest/{*rest}", any(rest::unknown))
        .with_state(server)
}

/// A stream of items as Server-Sent Events: one `data:` line of JSON per item (what both
/// bindings send, as the SDKs read it), with keep-alive comments.
pub(crate) fn sse<F>(
    rx: mpsc::Receiver<crate::a2a::types::StreamResponse>,
    each: F,
) -> axum::response::Response
where
    F: Fn(crate::a2a::types::StreamResponse) -> serde_json::Value + Send + 'static,
{
    use axum::response::IntoResponse;
    use axum::response::sse::{Event, KeepAlive, Sse};
    use futures_util::stream;
    let events = stream::unfold((rx, each), |(mut rx, each)| async move {
        let item = rx.recv().await?;
        let ev = Event::default().data(each(item).to_string());
        Some((Ok::<_, std::convert::Infallible>(ev), (rx, each)))
    });
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

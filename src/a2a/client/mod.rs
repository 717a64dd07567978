//! The A2A client half of the bridge: an A2A agent as a peer. `acp_connect` and
//! `POST /peers/connect` take the agent's `http(s)://` URL (its base URL or its card's URL);
//! [`connect`] reads the card there (on that host only), picks an interface
//! ([`card::choose`]), stores the user's credential for it ([`credentials`], mode 0600) and
//! registers the agent as a peer of kind `a2a`. Its bridge ([`worker`]) then attaches to the
//! node as the peer's connection and carries the node's frames to the agent as A2A calls
//! ([`rpc`]), and the agent's answers back as frames ([`convert`], [`links`]).
//! docs/a2a.md ("Client") describes the behaviour.

pub mod card;
pub mod convert;
pub mod credentials;
pub mod http;
pub mod links;
pub mod rpc;
mod worker;

use serde_json::{Value, json};

use crate::node::Node;
use crate::node::error::{NodeError, NodeResult};
use crate::node::peers::PeerKind;
use crate::node::webhooks::post::Connector;

/// Longest agent URL accepted.
const MAX_URL_LEN: usize = 2048;

/// What `acp_connect` / `POST /peers/connect` were given for an A2A agent.
#[derive(Debug, Clone)]
pub struct ConnectRequest {
    /// The agent's base URL or card URL.
    pub url: String,
    /// A name to remember it by (defaults to the card's name).
    pub name: Option<String>,
    /// A bearer token for it.
    pub bearer_token: Option<String>,
    /// An API key for it (sent in the header its card names).
    pub api_key: Option<String>,
}

/// Whether a connect argument names an A2A agent (`http://` or `https://`) rather than an
/// ACP link.
pub fn is_agent_url(link: &str) -> bool {
    let l = link.trim_start().as_bytes();
    let starts = |p: &str| l.len() >= p.len() && l[..p.len()].eq_ignore_ascii_case(p.as_bytes());
    starts("http://") || starts("https://")
}

/// Checks an agent URL: http(s), a host, no user name or password, no fragment, nothing
/// invisible.
fn parse_url(raw: &str) -> NodeResult<url::Url> {
    let raw = raw.trim();
    if raw.len() > MAX_URL_LEN {
        return Err(NodeError::invalid(format!(
            "the agent URL is {} bytes long; at most {MAX_URL_LEN} are accepted",
            raw.len()
        )));
    }
    if raw.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(NodeError::invalid(
            "the agent URL contains spaces or control characters",
        ));
    }
    let url = url::Url::parse(raw)
        .map_err(|e| NodeError::invalid(format!("'{raw}' is not a valid URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(NodeError::invalid(
            "an A2A agent is connected by its http:// or https:// URL",
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(NodeError::invalid(
            "the agent URL may not carry a user name or password; give 'bearer_token' or \
             'api_key' instead",
        ));
    }
    if url.fragment().is_some() {
        return Err(NodeError::invalid("the agent URL may not have a #fragment"));
    }
    if url.port() == Some(0) {
        return Err(NodeError::invalid("the agent URL names port 0"));
    }
    Ok(url)
}

/// Connects the A2A agent at `req.url`: reads its card (a 400 with `reason` `unreachable`
/// or `unusable_card` when that fails: nothing is registered), stores the credential,
/// registers the peer and starts its bridge. Idempotent for the same URL.
pub async fn connect(node: &Node, req: ConnectRequest) -> NodeResult<Value> {
    crate::node::ensure_running(node)?;
    if req.name.as_ref().is_some_and(|n| n.len() > 128) {
        return Err(NodeError::invalid("'name' is longer than 128 characters"));
    }
    let url = parse_url(&req.url)?;
    if let Some(t) = &req.bearer_token {
        card::check_secret("bearer_token", t)?;
    }
    if let Some(k) = &req.api_key {
        card::check_secret("api_key", k)?;
    }
    let canonical = url.to_string();
    let data_dir = node.config().data_dir.clone();
    let known = node.bridged_peer_by_url(PeerKind::A2a, &canonical);
    let stored = known
        .as_deref()
        .and_then(|id| credentials::load(&data_dir, id));
    // The card is read with a bearer token the user gives now (or the stored credential):
    // some agents serve their card only to authenticated callers.
    let bearer = req
        .bearer_token
        .as_deref()
        .map(|t| credentials::Credential {
            header: "Authorization".into(),
            value: format!("Bearer {t}"),
        });
    let for_card = bearer.or(stored);
    let connector = Connector::default();
    let (raw, parsed, interface) = card::fetch(&connector, &url, for_card.as_ref())
        .await
        .map_err(|e| e.to_node_error())?;
    let credential =
        card::credential(&parsed, req.bearer_token.as_deref(), req.api_key.as_deref())?;
    let (peer_id, fresh) =
        node.register_bridged_peer(PeerKind::A2a, &canonical, req.name.as_deref(), raw)?;
    if let Some(c) = &credential {
        credentials::store(&data_dir, &peer_id, Some(c)).map_err(|e| {
            NodeError::internal(format!("cannot store the agent's credential: {e}"))
        })?;
    }
    if fresh {
        node.start_bridged(&peer_id);
    }
    let peer = node.peer(&peer_id)?;
    Ok(json!({
        "ok": true,
        "peer_id": peer_id,
        "kind": "a2a",
        "name": peer["name"],
        "url": canonical,
        "connecting_to": canonical,
        "interface": interface.to_json(),
        "credential_stored": credential.is_some() || credentials::load(&data_dir, &peer_id).is_some(),
        "connected": node.peer_is_connected(&peer_id),
    }))
}

/// Starts the bridge of the A2A peer `peer_id` (the dialler hook calls it for peers of kind
/// `a2a`, at connect time and for stored peers at start-up).
/// A second start for a peer whose bridge still runs (a peer removed and added again within
/// the bridge's backoff) is ignored: one bridge per peer.
pub fn spawn(node: Node, peer_id: String) {
    let Some(running) = worker::Running::claim(&node, &peer_id) else {
        return;
    };
    let tracker = node.background().clone();
    tracker.spawn(async move {
        worker::run(node, peer_id).await;
        drop(running);
    });
}

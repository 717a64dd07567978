//! Peers: list, one, connect (optionally accepting a peer's new key).

use axum::Json;
use axum::extract::State;
use serde_json::Value;

use super::ApiResult;
use super::extract::{ApiPath, JsonObject};
use crate::node::Node;
use crate::node::error::NodeError;
use crate::node::message::opt_str;

/// `GET /peers`.
pub async fn list(State(node): State<Node>) -> Json<Value> {
    Json(node.peers())
}

/// `GET /peers/{id}` (id, display name or agent name).
pub async fn one(State(node): State<Node>, ApiPath(id): ApiPath<String>) -> ApiResult<Json<Value>> {
    Ok(Json(node.peer(&id)?))
}

/// `POST /peers/connect` `{"link": "acp://…", "name"?}`, or `{"link": "https://…",
/// "name"?, "bearer_token"? | "api_key"?}` for an A2A agent (`docs/a2a.md`).
pub async fn connect(
    State(node): State<Node>,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<Value>> {
    let obj = body.as_object().cloned().unwrap_or_default();
    let link = opt_str(&obj, "link")?.ok_or_else(|| {
        NodeError::invalid("missing required field: link (acp://host:port/token)")
    })?;
    let name = opt_str(&obj, "name")?;
    if name.as_ref().is_some_and(|n| n.len() > 128) {
        return Err(NodeError::invalid("'name' is longer than 128 characters").into());
    }
    if crate::a2a::client::is_agent_url(&link) {
        let req = crate::a2a::client::ConnectRequest {
            url: link,
            name,
            bearer_token: opt_str(&obj, "bearer_token")?,
            api_key: opt_str(&obj, "api_key")?,
        };
        return Ok(Json(crate::a2a::client::connect(&node, req).await?));
    }
    let accept = match obj.get("accept_new_key") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(NodeError::invalid("'accept_new_key' must be a boolean").into()),
    };
    if accept {
        node.accept_key_of_link(&link)?;
    }
    Ok(Json(node.connect(&link, name.as_deref())?))
}

/// `DELETE /peers/{id}`: forget a peer (stop dialling it, close it, drop its queue).
pub async fn remove(
    State(node): State<Node>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(node.remove_peer(&id)?))
}

//! Push webhooks: register, deregister, list (the node delivers; see `node::webhooks`).

use axum::Json;
use axum::extract::State;
use serde_json::Value;

use super::ApiResult;
use super::extract::JsonObject;
use crate::node::Node;

/// `POST /webhooks/register {"url"}`: the reference's `{"ok","registered","total"}`, plus
/// `created` and the webhook's entry.
pub async fn register(
    State(node): State<Node>,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<Value>> {
    Ok(Json(node.register_webhook(&body).await?))
}

/// `POST /webhooks/deregister {"url"}`: the reference's `{"ok","remaining"}`, plus `removed`.
pub async fn deregister(
    State(node): State<Node>,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<Value>> {
    Ok(Json(node.deregister_webhook(&body).await?))
}

/// `GET /webhooks`: every webhook with its delivery counters.
pub async fn list(State(node): State<Node>) -> Json<Value> {
    Json(node.webhooks())
}

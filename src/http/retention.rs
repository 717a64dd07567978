//! Retention settings of the running node: what the store keeps (`docs/operations.md`).

use axum::Json;
use axum::extract::State;
use serde_json::Value;

use super::ApiResult;
use super::extract::JsonObject;
use crate::node::Node;

/// `GET /retention`: what the store keeps and what retention removed.
pub async fn get(State(node): State<Node>) -> Json<Value> {
    Json(node.retention())
}

/// `PATCH /retention`: change `retain_days`, `retain_messages`, `max_store_mb` on the running
/// node; saved, so they hold after a restart that does not name them in its flags.
pub async fn patch(
    State(node): State<Node>,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<Value>> {
    Ok(Json(node.set_retention(&body).await?))
}

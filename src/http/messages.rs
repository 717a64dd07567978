//! Messages: send (and its aliases), reply, the consuming inbox, history and conversations.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::extract::{ApiPath, JsonObject, Params};
use super::{ApiResult, json_response};
use crate::node::error::{ErrorCode, NodeError, NodeResult};
use crate::node::message::SendRequest;
use crate::node::search::{SearchOrder, TextQuery};
use crate::node::{Delivery, MessageQuery, Node, SendOutcome};

/// Maps a send's result to the reference's answer: 200 when sent, 503 `ERR_NOT_CONNECTED`
/// (with `queued: true`) when the peer is away and the message waits in its offline queue,
/// the error's own status otherwise. Shared with the streaming inlet, which answers each of
/// its requests with exactly this body.
pub(super) fn send_answer(result: NodeResult<SendOutcome>, legacy: bool) -> (StatusCode, Value) {
    let out = match result {
        Ok(out) => out,
        Err(e) => return error_answer(&e),
    };
    if out.delivery == Delivery::Queued {
        let err = NodeError::new(
            ErrorCode::NotConnected,
            format!(
                "Peer '{}' offline — message queued for delivery on reconnect",
                out.peer_id
            ),
        )
        .with_message_id(Some(&out.message_id))
        .with_field("queued", json!(true))
        .with_field("message_id", json!(out.message_id))
        .with_field("server_seq", json!(out.server_seq))
        .with_field("peer_id", json!(out.peer_id))
        .with_field("queue_depth", json!(out.queue_depth))
        .with_field("task", json!(out.task));
        return error_answer(&err);
    }
    let mut body = json!({
        "ok": true,
        "message_id": out.message_id,
        "server_seq": out.server_seq,
        "task": out.task,
        "peer_id": if out.peer_id.is_empty() { Value::Null } else { json!(out.peer_id) },
        "delivery": out.delivery.as_str(),
    });
    if legacy {
        body["id"] = json!(out.message_id);
    }
    if let Some(reply) = out.reply {
        body["reply"] = reply;
    }
    (StatusCode::OK, body)
}

/// An error's status and body, as `ApiError` answers it.
fn error_answer(e: &NodeError) -> (StatusCode, Value) {
    let status =
        StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, e.to_json())
}

fn send_response(result: NodeResult<SendOutcome>, legacy: bool) -> Response {
    let (status, body) = send_answer(result, legacy);
    json_response(status, body)
}

/// `POST /message:send`.
pub async fn send(State(node): State<Node>, JsonObject(body): JsonObject) -> ApiResult<Response> {
    let req = SendRequest::from_json(&body, None)?;
    Ok(send_response(node.send(req).await, false))
}

/// `POST /send` (legacy): like `/message:send`, `role` defaults to `agent`, answer adds `id`.
pub async fn legacy_send(
    State(node): State<Node>,
    JsonObject(mut body): JsonObject,
) -> ApiResult<Response> {
    if let Some(obj) = body.as_object_mut()
        && obj.get("message_id").is_none()
        && let Some(id) = obj.get("id").cloned()
    {
        obj.insert("message_id".into(), id);
    }
    let req = SendRequest::from_json(&body, Some("agent"))?;
    Ok(send_response(node.send(req).await, true))
}

/// `POST /peer/{id}/send`: to that peer only.
pub async fn peer_send(
    State(node): State<Node>,
    ApiPath(peer): ApiPath<String>,
    JsonObject(body): JsonObject,
) -> ApiResult<Response> {
    node.peer(&peer)
        .map_err(|e| e.with_message_id(body.get("message_id").and_then(Value::as_str)))?;
    let mut req = SendRequest::from_json(&body, Some("user"))?;
    req.peer_id = Some(peer);
    Ok(send_response(node.send(req).await, false))
}

/// `POST /reply`.
pub async fn reply(
    State(node): State<Node>,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<Value>> {
    Ok(Json(node.reply(&body).await?))
}

/// `GET /recv?limit=50`: consumes unread inbound messages.
pub async fn recv(State(node): State<Node>, params: Params) -> ApiResult<Json<Value>> {
    let limit = params
        .uint("limit", "limit must be a non-negative integer")?
        .unwrap_or(50)
        .min(1000);
    let wait = params.seconds("wait", 0.0, 60.0)?;
    if wait > 0.0 && node.unread() == 0 {
        node.wait_for_inbox(Duration::from_secs_f64(wait)).await;
    }
    Ok(Json(node.recv(limit).await?))
}

/// `GET /messages`: filtered, paged history.
pub async fn list(State(node): State<Node>, params: Params) -> ApiResult<Json<Value>> {
    let limit = params
        .uint("limit", "limit must be a non-negative integer")?
        .unwrap_or(20);
    let offset = params
        .uint("offset", "offset must be a non-negative integer")?
        .unwrap_or(0);
    let received_after = match params.str("received_after") {
        None => None,
        Some(v) => Some(
            v.trim()
                .parse::<f64>()
                .ok()
                .filter(|t| t.is_finite())
                .ok_or_else(|| {
                    NodeError::invalid("received_after must be a Unix timestamp (number)")
                })?,
        ),
    };
    let role = params.str("role").map(str::to_owned);
    if role.as_deref().is_some_and(|r| r != "user" && r != "agent") {
        return Err(NodeError::invalid("role must be 'user' or 'agent'").into());
    }
    let direction = params.str("direction").map(str::to_owned);
    if direction
        .as_deref()
        .is_some_and(|d| d != "inbound" && d != "outbound")
    {
        return Err(NodeError::invalid("direction must be 'inbound' or 'outbound'").into());
    }
    let ascending = params.str("sort") == Some("asc");
    let text = match params.str("q") {
        None => None,
        Some(q) => Some(TextQuery::parse(q).map_err(NodeError::invalid)?),
    };
    let order = match params.str("order") {
        None if ascending => SearchOrder::Oldest,
        None => SearchOrder::default(),
        Some(o) => SearchOrder::parse(o)
            .ok_or_else(|| NodeError::invalid("order must be 'newest', 'oldest' or 'rank'"))?,
    };
    if text.is_none() && order == SearchOrder::Rank {
        return Err(NodeError::invalid("order=rank needs a search: add q=…").into());
    }
    let q = MessageQuery {
        limit: if limit == 0 { 20 } else { limit.min(100) },
        offset,
        peer_id: params.str("peer_id").map(str::to_owned),
        role,
        ascending: ascending || order == SearchOrder::Oldest,
        received_after,
        direction,
        context_id: params.str("context_id").map(str::to_owned),
        task_id: params.str("task_id").map(str::to_owned),
        text,
        order,
    };
    Ok(Json(node.messages(q).await?))
}

/// `GET /history?limit=100`.
pub async fn history(State(node): State<Node>, params: Params) -> ApiResult<Json<Value>> {
    let limit = params
        .uint("limit", "limit must be a non-negative integer")?
        .unwrap_or(100)
        .clamp(1, 10_000);
    Ok(Json(node.history(limit).await?))
}

/// `GET /context/{id}/messages?limit=&since_seq=&sort=`.
pub async fn context(
    State(node): State<Node>,
    ApiPath(ctx): ApiPath<String>,
    params: Params,
) -> ApiResult<Json<Value>> {
    let limit = match params.str("limit") {
        None => 50,
        Some(v) => match v.trim().parse::<usize>() {
            Ok(n) if n > 0 => n.min(200),
            _ => return Err(NodeError::invalid("limit must be a positive integer").into()),
        },
    };
    let since = match params.str("since_seq") {
        None => 0,
        Some(v) => match v.trim().parse::<i64>() {
            Ok(n) if n >= 0 => n,
            _ => return Err(NodeError::invalid("since_seq must be non-negative").into()),
        },
    };
    let ascending = match params.str("sort").unwrap_or("asc") {
        "asc" => true,
        "desc" => false,
        _ => return Err(NodeError::invalid("sort must be asc or desc").into()),
    };
    Ok(Json(
        node.context_messages(&ctx, limit, since, ascending).await?,
    ))
}

/// `GET /wait/{correlation_id}?timeout=30`.
pub async fn wait_reply(
    State(node): State<Node>,
    ApiPath(corr): ApiPath<String>,
    params: Params,
) -> ApiResult<Json<Value>> {
    let timeout = params.seconds("timeout", 30.0, 300.0)?;
    Ok(Json(
        node.wait_reply(&corr, Duration::from_secs_f64(timeout))
            .await?,
    ))
}

/// `GET /offline-queue`.
pub async fn offline_queue(State(node): State<Node>) -> Json<Value> {
    Json(node.offline_queue())
}

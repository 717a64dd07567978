//! Tasks: create, list, get, update, cancel, continue, wait and subscribe. Both the
//! reference's colon actions (`/tasks/{id}:cancel`) and slash actions (`/tasks/{id}/cancel`)
//! are accepted.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::extract::{ApiPath, JsonBody, Params};
use super::{ApiResult, json_response, stream};
use crate::node::error::NodeError;
use crate::node::task::TaskState;
use crate::node::{Node, TaskQuery};

/// `POST /tasks` and `/tasks/create`: 201 with the task at the top level and under `task`.
pub async fn create(State(node): State<Node>, JsonBody(body): JsonBody) -> ApiResult<Response> {
    let (task, _) = node.create_task(&body).await?;
    let mut out = serde_json::to_value(&task).unwrap_or_else(|_| json!({}));
    out["ok"] = json!(true);
    out["task_id"] = json!(task.id);
    out["task"] = serde_json::to_value(&task).unwrap_or(Value::Null);
    Ok(json_response(StatusCode::CREATED, out))
}

/// `GET /tasks`: filters `status`, `peer_id`, `context_id`, `created_after`, `updated_after`,
/// `sort`; cursor paging by default, offset paging when `offset` is given.
pub async fn list(State(node): State<Node>, params: Params) -> ApiResult<Json<Value>> {
    let status = match params.str("status").or_else(|| params.str("state")) {
        None => None,
        Some(s) => Some(TaskState::parse(s).ok_or_else(|| {
            let mut names = TaskState::ALL.map(TaskState::as_str);
            names.sort_unstable();
            NodeError::invalid(format!(
                "Invalid status '{s}'. Valid values: {}",
                names.join(", ")
            ))
        })?),
    };
    let q = TaskQuery {
        status,
        peer_id: params.str("peer_id").map(str::to_owned),
        context_id: params.str("context_id").map(str::to_owned),
        created_after: params.str("created_after").map(str::to_owned),
        updated_after: params.str("updated_after").map(str::to_owned),
        ascending: matches!(params.str("sort"), Some("asc" | "created_asc")),
        cursor: params.str("cursor").map(str::to_owned),
        offset: params.uint("offset", "offset must be a non-negative integer")?,
        limit: params.uint("limit", "limit must be a non-negative integer")?,
    };
    Ok(Json(node.list_tasks(&q)?))
}

/// Splits `task_x:update` into (`task_x`, `update`).
fn split_action(spec: &str) -> (&str, Option<&str>) {
    match spec.rsplit_once(':') {
        Some((id, action))
            if matches!(
                action,
                "update" | "cancel" | "continue" | "wait" | "subscribe"
            ) =>
        {
            (id, Some(action))
        }
        _ => (spec, None),
    }
}

/// `GET /tasks/{id}` or `/tasks/{id}:wait` / `:subscribe`.
pub async fn get_spec(
    state: State<Node>,
    ApiPath(spec): ApiPath<String>,
    params: Params,
) -> ApiResult<Response> {
    let (id, action) = split_action(&spec);
    get_task_action(state, id.to_owned(), action.unwrap_or(""), params).await
}

/// `GET /tasks/{id}/{action}`.
pub async fn get_action(
    state: State<Node>,
    ApiPath((id, action)): ApiPath<(String, String)>,
    params: Params,
) -> ApiResult<Response> {
    get_task_action(state, id, &action, params).await
}

async fn get_task_action(
    State(node): State<Node>,
    id: String,
    action: &str,
    params: Params,
) -> ApiResult<Response> {
    match action {
        "" => Ok(Json(node.task(&id)?).into_response()),
        "wait" => {
            let timeout = params.seconds("timeout", 30.0, 300.0)?;
            let (task, waited, timed_out) = node
                .wait_task(&id, Duration::from_secs_f64(timeout))
                .await?;
            let mut body = json!({"task": task, "waited": waited});
            if timed_out {
                body["timeout"] = json!(true);
                return Ok(json_response(StatusCode::ACCEPTED, body));
            }
            Ok(Json(body).into_response())
        }
        "subscribe" => {
            node.task(&id)?;
            Ok(stream::task_stream(node, id).into_response())
        }
        other => Err(NodeError::not_found(format!("no GET action '{other}' on tasks")).into()),
    }
}

/// `POST /tasks/{id}:update` / `:cancel` / `:continue`.
pub async fn post_spec(
    state: State<Node>,
    ApiPath(spec): ApiPath<String>,
    body: JsonBody,
) -> ApiResult<Response> {
    let (id, action) = split_action(&spec);
    let Some(action) = action else {
        return Err(NodeError::invalid(format!(
            "POST /tasks/{spec}: add an action (:update, :cancel or :continue)"
        ))
        .into());
    };
    post_task_action(state, id.to_owned(), action, body).await
}

/// `POST /tasks/{id}/{action}`.
pub async fn post_action(
    state: State<Node>,
    ApiPath((id, action)): ApiPath<(String, String)>,
    body: JsonBody,
) -> ApiResult<Response> {
    post_task_action(state, id, &action, body).await
}

async fn post_task_action(
    State(node): State<Node>,
    id: String,
    action: &str,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    match action {
        "update" => {
            let task = node.update_task(&id, &body).await?;
            Ok(Json(json!({"ok": true, "task": task})).into_response())
        }
        "cancel" => Ok(Json(node.cancel_task(&id).await?).into_response()),
        "continue" => {
            let task = node.continue_task(&id, &body).await?;
            Ok(Json(json!({"ok": true, "task": task})).into_response())
        }
        other => Err(NodeError::not_found(format!("no POST action '{other}' on tasks")).into()),
    }
}

/// `DELETE /tasks/{id}`: fails a non-terminal task (the reference's behaviour).
pub async fn delete(
    State(node): State<Node>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let task = node
        .update_task(&id, &json!({"status": "failed", "error": "deleted"}))
        .await?;
    Ok(Json(json!({"ok": true, "task_id": task.id})))
}

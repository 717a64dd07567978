//! `/a2a/rest/…`: the HTTP+JSON binding (A2A 1.0's REST paths under a prefix). Answers are
//! 1.0 shapes; errors are `google.rpc.Status` bodies with an `ErrorInfo` reason and the HTTP
//! status the Python SDK maps each A2A error to (400, 404, 500; a full store 503, a caller
//! over its limits 429). The 0.3 HTTP+JSON binding (protobuf JSON under `/v1/…`) is not
//! served: 0.3 clients use JSON-RPC, which the card lists for 0.3.

use axum::Extension;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::convert::A2aError;
use super::{A2aCaller, A2aServer, sse};
use crate::a2a::types::{
    A2aErrorCode, GetTaskRequest, ListTasksRequest, ProtocolVersion, SendMessageRequest,
    SendMessageResponse, TaskIdRequest, TaskPushNotificationConfig, TaskState, VERSION_HEADER,
};

fn error(e: A2aError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    (status, axum::Json(e.code.rest_body(&e.message))).into_response()
}

fn ok(v: Value) -> Response {
    axum::Json(v).into_response()
}

/// The caller, and the version check every route makes.
fn admit(caller: Option<Extension<A2aCaller>>, headers: &HeaderMap) -> Result<A2aCaller, A2aError> {
    let header = headers.get(VERSION_HEADER).and_then(|v| v.to_str().ok());
    if ProtocolVersion::from_header(header).is_none() {
        return Err(A2aError::new(
            A2aErrorCode::VersionNotSupported,
            format!(
                "A2A-Version {:?} is not served: this node speaks 1.0 (and 0.3 over JSON-RPC)",
                header.unwrap_or("")
            ),
        ));
    }
    caller
        .map(|Extension(c)| c)
        .ok_or_else(|| A2aError::new(A2aErrorCode::InvalidRequest, "no A2A caller"))
}

fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, A2aError> {
    let v: Value = serde_json::from_slice(bytes)
        .map_err(|e| A2aError::new(A2aErrorCode::JsonParse, format!("invalid JSON: {e}")))?;
    serde_json::from_value(v).map_err(|e| A2aError::params(format!("invalid request: {e}")))
}

/// `POST /a2a/rest/message:send`.
pub async fn send(
    State(server): State<A2aServer>,
    caller: Option<Extension<A2aCaller>>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    let r = async {
        let caller = admit(caller, &headers)?;
        let req: SendMessageRequest = body(&bytes)?;
        server.send(&caller, req, ProtocolVersion::V1_0).await
    }
    .await;
    match r {
        Ok(t) => ok(SendMessageResponse::Task(t).to_version(ProtocolVersion::V1_0)),
        Err(e) => error(e),
    }
}

/// `POST /a2a/rest/message:stream`.
pub async fn stream(
    State(server): State<A2aServer>,
    caller: Option<Extension<A2aCaller>>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    let r = async {
        let caller = admit(caller, &headers)?;
        let req: SendMessageRequest = body(&bytes)?;
        server
            .send_streaming(&caller, req, ProtocolVersion::V1_0)
            .await
    }
    .await;
    match r {
        Ok(rx) => sse(rx, |item| item.to_version(ProtocolVersion::V1_0)),
        Err(e) => error(e),
    }
}

/// Query of `GET /a2a/rest/tasks/{id}` and `GET /a2a/rest/tasks` (all optional, strings
/// as query values are; checked below).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskParams {
    history_length: Option<String>,
    context_id: Option<String>,
    status: Option<String>,
    page_size: Option<String>,
    page_token: Option<String>,
    include_artifacts: Option<String>,
}

fn int(name: &str, v: Option<&String>) -> Result<Option<i32>, A2aError> {
    v.map(|s| {
        s.parse::<i32>()
            .map_err(|_| A2aError::params(format!("{name} must be an integer")))
    })
    .transpose()
}

/// `GET /a2a/rest/tasks`.
pub async fn list(
    State(server): State<A2aServer>,
    caller: Option<Extension<A2aCaller>>,
    headers: HeaderMap,
    query: Result<Query<TaskParams>, QueryRejection>,
) -> Response {
    let r = (|| {
        let caller = admit(caller, &headers)?;
        let Ok(Query(q)) = query else {
            return Err(A2aError::params("malformed query string"));
        };
        let status = match q.status.as_deref().filter(|s| !s.is_empty()) {
            None => None,
            Some(s) => Some(
                TaskState::parse(s)
                    .ok_or_else(|| A2aError::params(format!("unknown status {s:?}")))?,
            ),
        };
        let include_artifacts = match q.include_artifacts.as_deref() {
            None => None,
            Some("true") => Some(true),
            Some("false") => Some(false),
            Some(_) => return Err(A2aError::params("includeArtifacts must be true or false")),
        };
        let req = ListTasksRequest {
            tenant: None,
            context_id: q.context_id.clone(),
            status,
            page_size: int("pageSize", q.page_size.as_ref())?,
            page_token: q.page_token.clone(),
            history_length: int("historyLength", q.history_length.as_ref())?,
            include_artifacts,
        };
        server.list_tasks(&caller, &req)
    })();
    match r {
        Ok(l) => ok(serde_json::to_value(&l).unwrap_or(Value::Null)),
        Err(e) => error(e),
    }
}

/// `GET /a2a/rest/tasks/{id}` (GetTask) and `GET /a2a/rest/tasks/{id}:subscribe`.
pub async fn get_spec(
    State(server): State<A2aServer>,
    caller: Option<Extension<A2aCaller>>,
    headers: HeaderMap,
    Path(spec): Path<String>,
    query: Result<Query<TaskParams>, QueryRejection>,
) -> Response {
    if let Some(id) = spec.strip_suffix(":subscribe") {
        return subscribe(&server, caller, &headers, id);
    }
    let r = (|| {
        let caller = admit(caller, &headers)?;
        let Ok(Query(q)) = query else {
            return Err(A2aError::params("malformed query string"));
        };
        let req = GetTaskRequest {
            tenant: None,
            id: spec.clone(),
            history_length: int("historyLength", q.history_length.as_ref())?,
        };
        server.get_task(&caller, &req)
    })();
    match r {
        Ok(t) => ok(serde_json::to_value(&t).unwrap_or(Value::Null)),
        Err(e) => error(e),
    }
}

fn subscribe(
    server: &A2aServer,
    caller: Option<Extension<A2aCaller>>,
    headers: &HeaderMap,
    id: &str,
) -> Response {
    match admit(caller, headers).and_then(|c| server.subscribe(&c, id)) {
        Ok(rx) => sse(rx, |item| item.to_version(ProtocolVersion::V1_0)),
        Err(e) => error(e),
    }
}

/// `POST /a2a/rest/tasks/{id}:cancel` and `POST /a2a/rest/tasks/{id}:subscribe`.
pub async fn post_spec(
    State(server): State<A2aServer>,
    caller: Option<Extension<A2aCaller>>,
    headers: HeaderMap,
    Path(spec): Path<String>,
    bytes: Bytes,
) -> Response {
    if let Some(id) = spec.strip_suffix(":subscribe") {
        return subscribe(&server, caller, &headers, id);
    }
    let Some(id) = spec.strip_suffix(":cancel") else {
        return error(A2aError::new(
            A2aErrorCode::MethodNotFound,
            format!("no such operation: POST /a2a/rest/tasks/{spec}"),
        ));
    };
    let r = async {
        let caller = admit(caller, &headers)?;
        // The body is optional (`{}` or metadata); when given it must be JSON.
        if !bytes.is_empty() {
            body::<Value>(&bytes)?;
        }
        let req = TaskIdRequest {
            tenant: None,
            id: id.to_owned(),
            metadata: None,
        };
        server.cancel_task(&caller, &req).await
    }
    .await;
    match r {
        Ok(t) => ok(serde_json::to_value(&t).unwrap_or(Value::Null)),
        Err(e) => error(e),
    }
}

/// `POST /a2a/rest/tasks/{id}/pushNotificationConfigs`: CreateTaskPushNotificationConfig
/// (the task is the path's).
pub async fn create_push(
    State(server): State<A2aServer>,
    caller: Option<Extension<A2aCaller>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Response {
    let r = (|| {
        let caller = admit(caller, &headers)?;
        let mut cfg: TaskPushNotificationConfig = body(&bytes)?;
        cfg.task_id = id;
        server.create_push_config(&caller, cfg, ProtocolVersion::V1_0, false)
    })();
    match r {
        Ok(c) => ok(serde_json::to_value(&c).unwrap_or(Value::Null)),
        Err(e) => error(e),
    }
}

/// `GET /a2a/rest/tasks/{id}/pushNotificationConfigs`: ListTaskPushNotificationConfigs.
pub async fn list_push(
    State(server): State<A2aServer>,
    caller: Option<Extension<A2aCaller>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    match admit(caller, &headers).and_then(|c| server.list_push_configs(&c, &id)) {
        Ok(l) => ok(serde_json::to_value(&l).unwrap_or(Value::Null)),
        Err(e) => error(e),
    }
}

/// `GET /a2a/rest/tasks/{id}/pushNotificationConfigs/{config}`.
pub async fn get_push(
    State(server): State<A2aServer>,
    caller: Option<Extension<A2aCaller>>,
    headers: HeaderMap,
    Path((id, config)): Path<(String, String)>,
) -> Response {
    match admit(caller, &headers).and_then(|c| server.get_push_config(&c, &id, &config)) {
        Ok(c) => ok(serde_json::to_value(&c).unwrap_or(Value::Null)),
        Err(e) => error(e),
    }
}

/// `DELETE /a2a/rest/tasks/{id}/pushNotificationConfigs/{config}`: answers `{}`.
pub async fn delete_push(
    State(server): State<A2aServer>,
    caller: Option<Extension<A2aCaller>>,
    headers: HeaderMap,
    Path((id, config)): Path<(String, String)>,
) -> Response {
    match admit(caller, &headers).and_then(|c| server.delete_push_config(&c, &id, &config)) {
        Ok(()) => ok(serde_json::json!({})),
        Err(e) => error(e),
    }
}

/// `GET /a2a/rest/extendedAgentCard`: there is none.
pub async fn extended_card() -> Response {
    error(A2aError::new(
        A2aErrorCode::ExtendedAgentCardNotConfigured,
        "this agent has no extended card",
    ))
}

/// Any other path under `/a2a/rest/`.
pub async fn unknown(uri: axum::http::Uri) -> Response {
    error(A2aError::new(
        A2aErrorCode::MethodNotFound,
        format!("no such A2A endpoint: {}", uri.path()),
    ))
}

//! `POST /a2a/jsonrpc`: the JSON-RPC 2.0 binding. The method name says the version: 1.0
//! names (`SendMessage`, …) answer 1.0 shapes, 0.3 names (`message/send`, …) answer 0.3
//! shapes (`kind`-tagged, lowercase states), whatever the `A2A-Version` header says, as
//! long as it names a version served (1.x or 0.x; none is 0.3). Every error is a JSON-RPC
//! error in a 200 answer (as JSON-RPC over HTTP does), never a 4xx/5xx page.

use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::convert::A2aError;
use super::{A2aCaller, A2aServer, sse};
use crate::a2a::types::{
    A2aErrorCode, GetTaskRequest, JsonRpcRequest, JsonRpcResponse,
    ListTaskPushNotificationConfigsRequest, ListTasksRequest, ProtocolVersion, SendMessageRequest,
    SendMessageResponse, TaskIdRequest, TaskPushNotificationConfig,
    TaskPushNotificationConfigRequest, VERSION_HEADER, v03,
};

/// What a method does, and in which version's shapes it answers.
enum Method {
    Send,
    Stream,
    Get,
    List,
    Cancel,
    Subscribe,
    PushCreate,
    PushGet,
    PushList,
    PushDelete,
    ExtendedCard,
}

fn method(name: &str) -> Option<(Method, ProtocolVersion)> {
    use Method::*;
    use ProtocolVersion::{V0_3, V1_0};
    Some(match name {
        "SendMessage" => (Send, V1_0),
        "SendStreamingMessage" => (Stream, V1_0),
        "GetTask" => (Get, V1_0),
        "ListTasks" => (List, V1_0),
        "CancelTask" => (Cancel, V1_0),
        "SubscribeToTask" => (Subscribe, V1_0),
        "CreateTaskPushNotificationConfig" => (PushCreate, V1_0),
        "GetTaskPushNotificationConfig" => (PushGet, V1_0),
        "ListTaskPushNotificationConfigs" => (PushList, V1_0),
        "DeleteTaskPushNotificationConfig" => (PushDelete, V1_0),
        "GetExtendedAgentCard" => (ExtendedCard, V1_0),
        "message/send" => (Send, V0_3),
        "message/stream" => (Stream, V0_3),
        "tasks/get" => (Get, V0_3),
        "tasks/list" => (List, V0_3),
        "tasks/cancel" => (Cancel, V0_3),
        "tasks/resubscribe" => (Subscribe, V0_3),
        "tasks/pushNotificationConfig/set" => (PushCreate, V0_3),
        "tasks/pushNotificationConfig/get" => (PushGet, V0_3),
        "tasks/pushNotificationConfig/list" => (PushList, V0_3),
        "tasks/pushNotificationConfig/delete" => (PushDelete, V0_3),
        "agent/getAuthenticatedExtendedCard" => (ExtendedCard, V0_3),
        _ => return None,
    })
}

fn answer(r: JsonRpcResponse) -> Response {
    axum::Json(r).into_response()
}

fn fail(id: Value, e: A2aError) -> Response {
    answer(JsonRpcResponse::error(id, e.code, e.message))
}

fn params<T: DeserializeOwned>(p: Option<Value>) -> Result<T, A2aError> {
    serde_json::from_value(p.unwrap_or(Value::Null))
        .map_err(|e| A2aError::params(format!("invalid params: {e}")))
}

/// Reads a JSON-RPC 2.0 request: its id (null when unreadable) and the request, or the
/// JSON-RPC error to answer with that id.
fn parse(body: &[u8]) -> Result<(Value, JsonRpcRequest), (Value, A2aError)> {
    let raw: Value = serde_json::from_slice(body).map_err(|e| {
        (
            Value::Null,
            A2aError::new(A2aErrorCode::JsonParse, format!("invalid JSON: {e}")),
        )
    })?;
    let id = match raw.get("id") {
        Some(v @ (Value::String(_) | Value::Number(_))) => v.clone(),
        _ => Value::Null,
    };
    let invalid = |m: String| A2aError::new(A2aErrorCode::InvalidRequest, m);
    if raw.is_array() {
        return Err((id, invalid("batch requests are not supported".into())));
    }
    let req: JsonRpcRequest = match serde_json::from_value(raw) {
        Ok(r) => r,
        Err(e) => return Err((id, invalid(format!("not a JSON-RPC request: {e}")))),
    };
    if req.jsonrpc != "2.0"
        || req
            .id
            .as_ref()
            .is_some_and(|i| !matches!(i, Value::String(_) | Value::Number(_) | Value::Null))
    {
        return Err((
            id,
            invalid("jsonrpc must be \"2.0\" and id a string, number or null".into()),
        ));
    }
    Ok((id, req))
}

/// The handler.
pub async fn handle(
    State(server): State<A2aServer>,
    caller: Option<Extension<A2aCaller>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(Extension(caller)) = caller else {
        return fail(
            Value::Null,
            A2aError::new(A2aErrorCode::InvalidRequest, "no A2A caller"),
        );
    };
    let (id, req) = match parse(&body) {
        Ok(r) => r,
        Err((id, e)) => return fail(id, e),
    };
    let header = headers.get(VERSION_HEADER).and_then(|v| v.to_str().ok());
    if ProtocolVersion::from_header(header).is_none() {
        return fail(
            id,
            A2aError::new(
                A2aErrorCode::VersionNotSupported,
                format!(
                    "A2A-Version {:?} is not served: this node speaks 1.0 and 0.3",
                    header.unwrap_or("")
                ),
            ),
        );
    }
    let Some((m, version)) = method(&req.method) else {
        return fail(
            id,
            A2aError::new(
                A2aErrorCode::MethodNotFound,
                format!("method {:?} not found", req.method),
            ),
        );
    };
    let task_json = |t: &crate::a2a::types::Task| match version {
        ProtocolVersion::V1_0 => serde_json::to_value(t).unwrap_or(Value::Null),
        ProtocolVersion::V0_3 => v03::task(t),
    };
    let result: Result<Value, A2aError> = match m {
        Method::Send => match params::<SendMessageRequest>(req.params) {
            Ok(p) => server
                .send(&caller, p, version)
                .await
                .map(|t| SendMessageResponse::Task(t).to_version(version)),
            Err(e) => Err(e),
        },
        Method::Stream | Method::Subscribe => {
            let rx = match m {
                Method::Stream => match params::<SendMessageRequest>(req.params) {
                    Ok(p) => server.send_streaming(&caller, p, version).await,
                    Err(e) => Err(e),
                },
                _ => match params::<TaskIdRequest>(req.params) {
                    Ok(p) => server.subscribe(&caller, &p.id),
                    Err(e) => Err(e),
                },
            };
            return match rx {
                Ok(rx) => sse(rx, move |item| {
                    serde_json::to_value(JsonRpcResponse::result(
                        id.clone(),
                        item.to_version(version),
                    ))
                    .unwrap_or(Value::Null)
                }),
                Err(e) => fail(id, e),
            };
        }
        Method::Get => params::<GetTaskRequest>(req.params)
            .and_then(|p| server.get_task(&caller, &p))
            .map(|t| task_json(&t)),
        Method::List => {
            params::<ListTasksRequest>(req.params.or(Some(Value::Object(Default::default()))))
                .and_then(|p| server.list_tasks(&caller, &p))
                .map(|l| match version {
                    ProtocolVersion::V1_0 => serde_json::to_value(&l).unwrap_or(Value::Null),
                    ProtocolVersion::V0_3 => Value::Array(l.tasks.iter().map(v03::task).collect()),
                })
        }
        Method::Cancel => match params::<TaskIdRequest>(req.params) {
            Ok(p) => server.cancel_task(&caller, &p).await.map(|t| task_json(&t)),
            Err(e) => Err(e),
        },
        Method::PushCreate | Method::PushGet | Method::PushList | Method::PushDelete => {
            push(&server, &caller, m, version, req.params)
        }
        Method::ExtendedCard => Err(A2aError::new(
            A2aErrorCode::ExtendedAgentCardNotConfigured,
            "this agent has no extended card",
        )),
    };
    match result {
        Ok(v) => answer(JsonRpcResponse::result(id, v)),
        Err(e) => fail(id, e),
    }
}

/// The push-notification-config methods, in either version's shapes.
fn push(
    server: &A2aServer,
    caller: &A2aCaller,
    m: Method,
    version: ProtocolVersion,
    p: Option<Value>,
) -> Result<Value, A2aError> {
    use super::push::v03 as p03;
    match (m, version) {
        (Method::PushCreate, ProtocolVersion::V1_0) => {
            let cfg = params::<TaskPushNotificationConfig>(p)?;
            if cfg.task_id.is_empty() {
                return Err(A2aError::params("taskId is required"));
            }
            server
                .create_push_config(caller, cfg, version, false)
                .map(|c| to_value(&c))
        }
        (Method::PushCreate, _) => {
            let cfg = p03::set_params(&p.unwrap_or(Value::Null))?;
            server
                .create_push_config(caller, cfg, version, false)
                .map(|c| p03::config_to(&c))
        }
        (Method::PushGet, ProtocolVersion::V1_0) => {
            let r = params::<TaskPushNotificationConfigRequest>(p)?;
            server
                .get_push_config(caller, &r.task_id, &r.id)
                .map(|c| to_value(&c))
        }
        (Method::PushGet, _) => {
            let (task, id) = p03::id_params(&p.unwrap_or(Value::Null))?;
            server
                .get_push_config(caller, &task, &id)
                .map(|c| p03::config_to(&c))
        }
        (Method::PushList, ProtocolVersion::V1_0) => {
            let r = params::<ListTaskPushNotificationConfigsRequest>(p)?;
            server
                .list_push_configs(caller, &r.task_id)
                .map(|l| to_value(&l))
        }
        (Method::PushList, _) => {
            let (task, _) = p03::id_params(&p.unwrap_or(Value::Null))?;
            server
                .list_push_configs(caller, &task)
                .map(|l| Value::Array(l.configs.iter().map(p03::config_to).collect()))
        }
        (_, ProtocolVersion::V1_0) => {
            let r = params::<TaskPushNotificationConfigRequest>(p)?;
            server
                .delete_push_config(caller, &r.task_id, &r.id)
                .map(|()| Value::Null)
        }
        _ => {
            let (task, id) = p03::id_params(&p.unwrap_or(Value::Null))?;
            server
                .delete_push_config(caller, &task, &id)
                .map(|()| Value::Null)
        }
    }
}

/// An answer as JSON.
fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn requests_and_their_errors() {
        let (id, r) =
            parse(br#"{"jsonrpc":"2.0","id":"a","method":"GetTask","params":{"id":"t"}}"#).unwrap();
        assert_eq!(id, "a");
        assert_eq!(r.method, "GetTask");
        assert_eq!(parse(b"{").unwrap_err().1.code, A2aErrorCode::JsonParse);
        assert_eq!(
            parse(b"[]").unwrap_err().1.code,
            A2aErrorCode::InvalidRequest
        );
        let (id, e) = parse(br#"{"jsonrpc":"2.0","id":3,"method":1}"#).unwrap_err();
        assert_eq!(
            (id, e.code),
            (serde_json::json!(3), A2aErrorCode::InvalidRequest)
        );
        assert!(method("SendMessage").is_some() && method("message/send").is_some());
        assert!(method("sendMessage").is_none());
    }

    proptest! {
        #[test]
        fn any_body_parses_or_errors(body in proptest::collection::vec(any::<u8>(), 0..200), text in ".{0,120}") {
            let _ = parse(&body);
            let _ = parse(text.as_bytes());
            let wrapped = format!(r#"{{"jsonrpc":"2.0","id":1,"method":{text:?},"params":{text}}}"#);
            if let Ok((_, r)) = parse(wrapped.as_bytes()) {
                let _ = method(&r.method);
                let _ = params::<SendMessageRequest>(r.params.clone());
                let _ = params::<ListTasksRequest>(r.params);
            }
        }
    }
}

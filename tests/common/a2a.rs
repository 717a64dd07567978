//! Calls to a node's A2A server as an A2A client with a credential makes them: JSON-RPC,
//! HTTP+JSON, the answer as (HTTP status, JSON or the raw text).

use serde_json::{Value, json};

use super::TestNode;

/// A JSON-RPC 1.0 call at `/a2a/jsonrpc` with `token`.
pub async fn a2a_rpc(node: &TestNode, token: &str, method: &str, params: Value) -> (u16, Value) {
    let resp = node
        .http
        .post(format!("{}/a2a/jsonrpc", node.url))
        .bearer_auth(token)
        .header("A2A-Version", "1.0")
        .json(&json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params}))
        .send()
        .await
        .expect("POST /a2a/jsonrpc");
    status_and_body(resp).await
}

/// Any request to `path` with `token` (and a raw JSON body, possibly malformed).
pub async fn a2a_request(
    node: &TestNode,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<&str>,
) -> (u16, Value) {
    let mut req = node
        .http
        .request(method, format!("{}{}", node.url, path))
        .bearer_auth(token)
        .header("A2A-Version", "1.0");
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_owned());
    }
    status_and_body(req.send().await.expect("request")).await
}

/// The status and the body: JSON when it parses, else the text as a JSON string.
pub async fn status_and_body(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// A 1.0 user message with one text part.
pub fn a2a_message(id: &str, text: &str) -> Value {
    json!({"messageId": id, "role": "ROLE_USER", "parts": [{"text": text}]})
}

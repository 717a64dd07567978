//! The A2A server against real nodes on loopback: the card, the JSON-RPC binding (1.0 and
//! 0.3 method names), the HTTP+JSON binding, streaming and blocking sends, the answer an
//! agent writes with `/message:send` or MCP's `acp_send`, task states, bad input (never a
//! 5xx), and the A2A credential rule of the guard.

mod common;

use std::time::Duration;

use acp_relay::config::A2aCredential;
use common::a2a::{a2a_message as message, a2a_request, a2a_rpc, status_and_body as split};
use common::{Lab, TestNode, start_with};
use futures_util::StreamExt;
use serde_json::{Value, json};

const ALICE: &str = "alice-token-0123456789abcdef";
const API: &str = "api-token-0123456789abcdef";

/// A node whose A2A server has the credential `alice`, waiting at most `wait` on blocking
/// sends.
async fn a2a_node(lab: &Lab, name: &str, wait: Duration) -> TestNode {
    let mut cfg = lab.config(name);
    cfg.a2a_tokens = vec![A2aCredential::parse(&format!("alice={ALICE}")).unwrap()];
    cfg.a2a_wait = wait;
    start_with(cfg).await
}

/// A JSON-RPC call as `alice`: (HTTP status, body).
async fn rpc(node: &TestNode, method: &str, params: Value) -> (u16, Value) {
    a2a_rpc(node, ALICE, method, params).await
}

/// A raw request as `alice` (any body, any method).
async fn raw(
    node: &TestNode,
    method: reqwest::Method,
    path: &str,
    body: Option<&str>,
) -> (u16, Value) {
    a2a_request(node, ALICE, method, path, body).await
}

/// The items of an SSE answer, until the server ends it (bounded).
async fn sse_items(resp: reqwest::Response) -> Vec<Value> {
    assert_eq!(resp.status().as_u16(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut body = resp.bytes_stream();
    let mut buf = String::new();
    let mut items = Vec::new();
    let read = async {
        while let Some(chunk) = body.next().await {
            buf.push_str(&String::from_utf8_lossy(&chunk.expect("chunk")));
            while let Some(end) = buf.find("\n\n") {
                let event: String = buf.drain(..end + 2).collect();
                for line in event.lines() {
                    if let Some(data) = line.strip_prefix("data:") {
                        items.push(serde_json::from_str(data.trim()).expect("JSON item"));
                    }
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("the stream ends once the task is done");
    items
}

/// Waits for the next inbound message (as the agent would with `/recv`).
async fn next_inbound(node: &TestNode) -> Value {
    for _ in 0..30 {
        let (status, got) = node.get("/recv?wait=1&limit=1").await;
        assert_eq!(status, 200, "{got}");
        if let Some(m) = got["messages"].as_array().and_then(|l| l.first()) {
            return m.clone();
        }
    }
    panic!("no inbound message in 30 s");
}

/// The agent's side: answers the next inbound message with `text`, in its task, over REST.
fn answer_next(node: &TestNode, text: &'static str) -> tokio::task::JoinHandle<Value> {
    let url = node.url.clone();
    tokio::spawn(async move {
        let http = reqwest::Client::new();
        let m = loop {
            let got: Value = http
                .get(format!("{url}/recv?wait=1&limit=1"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if let Some(m) = got["messages"].as_array().and_then(|l| l.first()) {
                break m.clone();
            }
        };
        let resp: Value = http
            .post(format!("{url}/message:send"))
            .json(&json!({"role": "agent", "peer_id": "alice", "text": text, "task_id": m["task_id"]}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(resp["ok"], true, "{resp}");
        m
    })
}

#[tokio::test]
async fn the_card_has_both_interfaces_and_both_versions() {
    let lab = Lab::new();
    let node = a2a_node(&lab, "carded", Duration::from_secs(5)).await;
    let (status, card) = raw(
        &node,
        reqwest::Method::GET,
        "/.well-known/agent-card.json",
        None,
    )
    .await;
    assert_eq!(status, 200, "{card}");
    assert_eq!(card["name"], "carded");
    assert_eq!(card["capabilities"]["streaming"], true);
    let ifaces = card["supportedInterfaces"].as_array().unwrap();
    let base = &node.url;
    assert_eq!(ifaces[0]["url"], format!("{base}/a2a/jsonrpc"));
    assert_eq!(ifaces[0]["protocolBinding"], "JSONRPC");
    assert_eq!(ifaces[0]["protocolVersion"], "1.0");
    assert_eq!(ifaces[1]["url"], format!("{base}/a2a/rest"));
    assert_eq!(ifaces[1]["protocolBinding"], "HTTP+JSON");
    assert_eq!(card["url"], format!("{base}/a2a/jsonrpc"));
    assert_eq!(card["preferredTransport"], "JSONRPC");
    assert_eq!(card["protocolVersion"], "0.3.0");
    assert_eq!(card["securitySchemes"]["bearer"]["scheme"], "bearer");
    // It reads as a card of our own types, both ways.
    let parsed: acp_relay::a2a::types::AgentCard = serde_json::from_value(card).unwrap();
    assert_eq!(parsed.interfaces().len(), 3);
}

#[tokio::test]
async fn jsonrpc_1_0_blocking_send_returns_the_agents_answer() {
    let lab = Lab::new();
    let node = a2a_node(&lab, "rpc10", Duration::from_secs(20)).await;
    let agent = answer_next(&node, "pong");
    let (status, r) = rpc(
        &node,
        "SendMessage",
        json!({"message": message("m1", "ping")}),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    let task = &r["result"]["task"];
    assert_eq!(task["status"]["state"], "TASK_STATE_COMPLETED", "{r}");
    assert_eq!(task["artifacts"][0]["parts"][0]["text"], "pong");
    assert_eq!(task["status"]["message"]["role"], "ROLE_AGENT");
    assert_eq!(task["history"][0]["parts"][0]["text"], "ping");
    assert!(task["contextId"].as_str().is_some_and(|c| !c.is_empty()));
    let inbound = agent.await.unwrap();
    assert_eq!(inbound["parts"][0]["content"], "ping");
    assert_eq!(inbound["task_id"], task["id"]);
    // The caller is a peer of kind a2a, connected through the bridge.
    let peer = node.peer_named("alice").await;
    assert_eq!(peer["kind"], "a2a", "{peer}");
    assert_eq!(peer["connection_type"], "a2a", "{peer}");
    // The answer counts as delivered (the bridge confirms it).
    common::eventually(10, "the answer is delivered", || async {
        let (_, m) = node.get("/messages?direction=outbound").await;
        m.to_string().contains("delivered")
    })
    .await;
    // The same message again (a retry) is the same task, not a second message.
    let (_, again) = rpc(
        &node,
        "SendMessage",
        json!({"message": message("m1", "ping")}),
    )
    .await;
    assert_eq!(again["result"]["task"]["id"], task["id"]);
    assert_eq!(
        again["result"]["task"]["status"]["state"],
        "TASK_STATE_COMPLETED"
    );
}

#[tokio::test]
async fn jsonrpc_0_3_names_answer_0_3_shapes() {
    let lab = Lab::new();
    let node = a2a_node(&lab, "rpc03", Duration::from_secs(20)).await;
    let agent = answer_next(&node, "pong03");
    let msg = json!({"kind": "message", "messageId": "old1", "role": "user",
                     "parts": [{"kind": "text", "text": "ping"}], "contextId": "ctx-old"});
    let (status, r) = rpc(&node, "message/send", json!({"message": msg})).await;
    assert_eq!(status, 200, "{r}");
    let task = &r["result"];
    assert_eq!(task["kind"], "task", "{r}");
    assert_eq!(task["status"]["state"], "completed");
    assert_eq!(task["contextId"], "ctx-old");
    assert_eq!(task["artifacts"][0]["parts"][0]["kind"], "text");
    assert_eq!(task["artifacts"][0]["parts"][0]["text"], "pong03");
    agent.await.unwrap();
    let (_, got) = rpc(&node, "tasks/get", json!({"id": task["id"]})).await;
    assert_eq!(got["result"]["status"]["state"], "completed", "{got}");
    assert_eq!(got["result"]["history"][0]["role"], "user");
}

#[tokio::test]
async fn a_blocking_send_returns_working_after_its_bound_then_get_and_list_see_the_answer() {
    let lab = Lab::new();
    let node = a2a_node(&lab, "bounded", Duration::from_millis(300)).await;
    let (_, r) = rpc(
        &node,
        "SendMessage",
        json!({"message": message("slow", "think")}),
    )
    .await;
    let task = r["result"]["task"].clone();
    assert_eq!(task["status"]["state"], "TASK_STATE_WORKING", "{r}");
    let id = task["id"].as_str().unwrap().to_owned();
    let m = next_inbound(&node).await;
    let (status, sent) = node
        .post(
            "/message:send",
            json!({"role": "agent", "peer_id": "alice", "text": "done thinking", "task_id": m["task_id"]}),
        )
        .await;
    assert_eq!(status, 200, "{sent}");
    common::eventually(10, "the task completes", || async {
        let (_, got) = rpc(&node, "GetTask", json!({"id": id})).await;
        got["result"]["status"]["state"] == "TASK_STATE_COMPLETED"
    })
    .await;
    let (_, list) = rpc(&node, "ListTasks", json!({"includeArtifacts": true})).await;
    assert_eq!(list["result"]["tasks"][0]["id"], id.as_str(), "{list}");
    assert_eq!(
        list["result"]["tasks"][0]["artifacts"][0]["parts"][0]["text"],
        "done thinking"
    );
    let (_, list) = rpc(
        &node,
        "ListTasks",
        json!({"status": "TASK_STATE_WORKING", "pageSize": 10}),
    )
    .await;
    assert_eq!(list["result"]["tasks"], json!([]), "{list}");
    // REST sees the same task, and the same list.
    let (status, got) = raw(
        &node,
        reqwest::Method::GET,
        &format!("/a2a/rest/tasks/{id}?historyLength=0"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["status"]["state"], "TASK_STATE_COMPLETED");
    assert!(got.get("history").is_none(), "{got}");
    let (status, list) = raw(
        &node,
        reqwest::Method::GET,
        "/a2a/rest/tasks?status=TASK_STATE_COMPLETED",
        None,
    )
    .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["tasks"][0]["id"], id.as_str());
}

#[tokio::test]
async fn streaming_sends_carry_the_answer_as_it_happens_in_both_versions() {
    let lab = Lab::new();
    let node = a2a_node(&lab, "streamer", Duration::from_secs(5)).await;
    for (method, version) in [("SendStreamingMessage", "1.0"), ("message/stream", "0.3")] {
        let agent = answer_next(&node, "streamed answer");
        let resp = node
            .http
            .post(format!("{}/a2a/jsonrpc", node.url))
            .bearer_auth(ALICE)
            .header("A2A-Version", version)
            .json(&json!({"jsonrpc": "2.0", "id": "s1", "method": method,
                          "params": {"message": message(&format!("st-{version}"), "stream it")}}))
            .send()
            .await
            .unwrap();
        let items = sse_items(resp).await;
        agent.await.unwrap();
        assert!(
            items
                .iter()
                .all(|i| i["id"] == "s1" && i["jsonrpc"] == "2.0")
        );
        let results: Vec<&Value> = items.iter().map(|i| &i["result"]).collect();
        if version == "1.0" {
            assert!(results[0]["task"]["id"].is_string(), "{items:?}");
            let art = results
                .iter()
                .find(|r| r.get("artifactUpdate").is_some())
                .unwrap();
            assert_eq!(
                art["artifactUpdate"]["artifact"]["parts"][0]["text"],
                "streamed answer"
            );
            let last = results.last().unwrap();
            assert_eq!(
                last["statusUpdate"]["status"]["state"], "TASK_STATE_COMPLETED",
                "{items:?}"
            );
        } else {
            assert_eq!(results[0]["kind"], "task", "{items:?}");
            assert!(results.iter().any(|r| r["kind"] == "artifact-update"));
            let last = results.last().unwrap();
            assert_eq!(last["kind"], "status-update", "{items:?}");
            assert_eq!(last["status"]["state"], "completed");
            assert_eq!(last["final"], true);
        }
    }
    // HTTP+JSON streaming: the items themselves.
    let agent = answer_next(&node, "rest streamed");
    let resp = node
        .http
        .post(format!("{}/a2a/rest/message:stream", node.url))
        .bearer_auth(ALICE)
        .header("A2A-Version", "1.0")
        .json(&json!({"message": message("rest-st", "stream over rest")}))
        .send()
        .await
        .unwrap();
    let items = sse_items(resp).await;
    agent.await.unwrap();
    assert!(items[0]["task"].is_object(), "{items:?}");
    assert_eq!(
        items.last().unwrap()["statusUpdate"]["status"]["state"],
        "TASK_STATE_COMPLETED"
    );
}

#[tokio::test]
async fn rest_send_cancel_and_subscribe() {
    let lab = Lab::new();
    let node = a2a_node(&lab, "rester", Duration::from_secs(20)).await;
    let agent = answer_next(&node, "rest pong");
    let body = json!({"message": message("r1", "rest ping")}).to_string();
    let (status, r) = raw(
        &node,
        reqwest::Method::POST,
        "/a2a/rest/message:send",
        Some(&body),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["task"]["status"]["state"], "TASK_STATE_COMPLETED", "{r}");
    assert_eq!(r["task"]["artifacts"][0]["parts"][0]["text"], "rest pong");
    agent.await.unwrap();

    // returnImmediately: the task at once, then cancel it; cancel again is A2A's error.
    let body = json!({"message": message("r2", "never mind"),
                      "configuration": {"returnImmediately": true}})
    .to_string();
    let (_, r) = raw(
        &node,
        reqwest::Method::POST,
        "/a2a/rest/message:send",
        Some(&body),
    )
    .await;
    assert_eq!(r["task"]["status"]["state"], "TASK_STATE_WORKING", "{r}");
    let id = r["task"]["id"].as_str().unwrap().to_owned();
    // A subscriber sees the cancel.
    let sub = node
        .http
        .get(format!("{}/a2a/rest/tasks/{id}:subscribe", node.url))
        .bearer_auth(ALICE)
        .send()
        .await
        .unwrap();
    let sub = tokio::spawn(sse_items(sub));
    let (status, c) = raw(
        &node,
        reqwest::Method::POST,
        &format!("/a2a/rest/tasks/{id}:cancel"),
        Some("{}"),
    )
    .await;
    assert_eq!(status, 200, "{c}");
    assert_eq!(c["status"]["state"], "TASK_STATE_CANCELED");
    let items = sub.await.unwrap();
    assert_eq!(
        items.last().unwrap()["statusUpdate"]["status"]["state"],
        "TASK_STATE_CANCELED",
        "{items:?}"
    );
    // The agent's side sees the ACP task canceled.
    let (_, acp) = node.get(&format!("/tasks/{id}")).await;
    assert_eq!(acp["status"], "canceled", "{acp}");
    let (status, again) = raw(
        &node,
        reqwest::Method::POST,
        &format!("/a2a/rest/tasks/{id}:cancel"),
        None,
    )
    .await;
    assert_eq!(status, 400, "{again}");
    assert_eq!(
        again["error"]["details"][0]["reason"],
        "TASK_NOT_CANCELABLE"
    );
    let (_, again) = rpc(&node, "CancelTask", json!({"id": id})).await;
    assert_eq!(again["error"]["code"], -32002, "{again}");
    let (_, sub) = rpc(&node, "SubscribeToTask", json!({"id": id})).await;
    assert_eq!(sub["error"]["code"], -32004, "{sub}");
}

#[tokio::test]
async fn input_required_round_trip() {
    let lab = Lab::new();
    let node = a2a_node(&lab, "asker", Duration::from_secs(20)).await;
    let url = node.url.clone();
    let agent = tokio::spawn(async move {
        let http = reqwest::Client::new();
        let first = loop {
            let got: Value = http
                .get(format!("{url}/recv?wait=1&limit=1"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if let Some(m) = got["messages"].as_array().and_then(|l| l.first()) {
                break m.clone();
            }
        };
        let task = first["task_id"].as_str().unwrap().to_owned();
        let r: Value = http
            .post(format!("{url}/tasks/{task}:update"))
            .json(&json!({"status": "input_required", "error": "which city?"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(r["task"]["status"], "input_required", "{r}");
        task
    });
    let (_, r) = rpc(
        &node,
        "SendMessage",
        json!({"message": message("q1", "weather?")}),
    )
    .await;
    let task = &r["result"]["task"];
    assert_eq!(task["status"]["state"], "TASK_STATE_INPUT_REQUIRED", "{r}");
    assert_eq!(task["status"]["message"]["parts"][0]["text"], "which city?");
    let id = agent.await.unwrap();
    assert_eq!(task["id"], id.as_str());
    // The answer continues the same task; the agent then answers it.
    let agent = answer_next(&node, "sunny in Paris");
    let mut follow = message("q2", "Paris");
    follow["taskId"] = json!(id);
    let (_, r) = rpc(&node, "SendMessage", json!({"message": follow})).await;
    assert_eq!(
        r["result"]["task"]["status"]["state"], "TASK_STATE_COMPLETED",
        "{r}"
    );
    assert_eq!(r["result"]["task"]["id"], id.as_str());
    let inbound = agent.await.unwrap();
    assert_eq!(inbound["task_id"], id.as_str());
    // A finished task takes no more messages.
    let mut late = message("q3", "and tomorrow?");
    late["taskId"] = json!(id);
    let (_, r) = rpc(&node, "SendMessage", json!({"message": late})).await;
    assert_eq!(r["error"]["code"], -32004, "{r}");
}

#[tokio::test]
async fn the_answer_written_with_mcp_acp_send_resolves_the_task() {
    use rmcp::ServiceExt;
    use rmcp::model::CallToolRequestParams;
    use rmcp::transport::StreamableHttpClientTransport;
    let lab = Lab::new();
    let node = a2a_node(&lab, "mcpagent", Duration::from_millis(200)).await;
    let (_, r) = rpc(
        &node,
        "SendMessage",
        json!({"message": message("mc1", "hi mcp")}),
    )
    .await;
    let id = r["result"]["task"]["id"].as_str().unwrap().to_owned();
    let transport = StreamableHttpClientTransport::from_uri(format!("{}/mcp", node.url));
    let client = ().serve(transport).await.expect("MCP initialize");
    let call = |tool: &'static str, args: Value| {
        let args = args.as_object().cloned().unwrap_or_default();
        client.call_tool(CallToolRequestParams::new(tool).with_arguments(args))
    };
    let got = call("acp_receive", json!({"wait_seconds": 5}))
        .await
        .unwrap();
    let got = got.structured_content.unwrap();
    assert_eq!(got["messages"][0]["text"], "hi mcp", "{got}");
    assert_eq!(got["messages"][0]["task_id"], id.as_str());
    let sent = call(
        "acp_send",
        json!({"peer": "alice", "text": "hello from MCP", "task_id": id}),
    )
    .await
    .unwrap();
    assert_ne!(sent.is_error, Some(true), "{sent:?}");
    common::eventually(10, "the MCP answer completes the task", || async {
        let (_, got) = rpc(&node, "GetTask", json!({"id": id})).await;
        got["result"]["task"].is_null()
            && got["result"]["status"]["state"] == "TASK_STATE_COMPLETED"
            && got["result"]["artifacts"][0]["parts"][0]["text"] == "hello from MCP"
    })
    .await;
    client.cancel().await.ok();
}

#[tokio::test]
async fn bad_input_gets_a2a_errors_never_a_5xx() {
    let lab = Lab::new();
    let node = a2a_node(&lab, "strict", Duration::from_millis(200)).await;
    let post = |body: &'static str| {
        let node = &node;
        async move { raw(node, reqwest::Method::POST, "/a2a/jsonrpc", Some(body)).await }
    };
    for (body, code) in [
        ("{not json", -32700),
        ("[]", -32600),
        (r#"{"jsonrpc":"1.0","id":1,"method":"GetTask"}"#, -32600),
        (r#"{"jsonrpc":"2.0","id":1,"method":7}"#, -32600),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"NoSuchMethod"}"#,
            -32601,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"GetTask","params":{"id":5}}"#,
            -32602,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"GetTask","params":{"id":"nope"}}"#,
            -32001,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"CancelTask","params":{"id":"nope"}}"#,
            -32001,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"SendMessage","params":{}}"#,
            -32602,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"SendMessage","params":{"message":{"messageId":"x","role":"ROLE_USER","parts":[{"text":"a","url":"b"}]}}}"#,
            -32602,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"SendMessage","params":{"message":{"messageId":"x","role":"ROLE_USER","parts":[]}}}"#,
            -32602,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"SendMessage","params":{"message":{"messageId":"x","role":"ROLE_USER","parts":[{"raw":"!!"}]}}}"#,
            -32602,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"SendMessage","params":{"message":{"messageId":"y","role":"ROLE_USER","parts":[{"text":"a"}]},"configuration":{"taskPushNotificationConfig":{"url":"ftp://x"}}}}"#,
            -32602,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"CreateTaskPushNotificationConfig","params":{}}"#,
            -32602,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"GetExtendedAgentCard"}"#,
            -32007,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"ListTasks","params":{"pageSize":0}}"#,
            -32602,
        ),
    ] {
        let (status, r) = post(body).await;
        assert_eq!(status, 200, "{body}: {r}");
        assert_eq!(r["error"]["code"], code, "{body}: {r}");
        assert_eq!(r["jsonrpc"], "2.0");
    }
    // An unknown A2A version.
    let resp = node
        .http
        .post(format!("{}/a2a/jsonrpc", node.url))
        .bearer_auth(ALICE)
        .header("A2A-Version", "2.0")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": "x"}}))
        .send()
        .await
        .unwrap();
    let (_, r) = split(resp).await;
    assert_eq!(r["error"]["code"], -32009, "{r}");
    // HTTP+JSON: 4xx with the A2A reason.
    for (method, path, body, status, reason) in [
        (
            reqwest::Method::POST,
            "/a2a/rest/message:send",
            Some("{oops"),
            400,
            "INVALID_REQUEST",
        ),
        (
            reqwest::Method::POST,
            "/a2a/rest/message:send",
            Some(r#"{"message":5}"#),
            400,
            "INVALID_PARAMS",
        ),
        (
            reqwest::Method::GET,
            "/a2a/rest/tasks/nope",
            None,
            404,
            "TASK_NOT_FOUND",
        ),
        (
            reqwest::Method::POST,
            "/a2a/rest/tasks/nope:cancel",
            None,
            404,
            "TASK_NOT_FOUND",
        ),
        (
            reqwest::Method::POST,
            "/a2a/rest/tasks/nope:explode",
            None,
            404,
            "METHOD_NOT_FOUND",
        ),
        (
            reqwest::Method::GET,
            "/a2a/rest/tasks?pageSize=x",
            None,
            400,
            "INVALID_PARAMS",
        ),
        (
            reqwest::Method::GET,
            "/a2a/rest/tasks?status=bogus",
            None,
            400,
            "INVALID_PARAMS",
        ),
        (
            reqwest::Method::GET,
            "/a2a/rest/tasks/t/pushNotificationConfigs",
            None,
            404,
            "TASK_NOT_FOUND",
        ),
        (
            reqwest::Method::GET,
            "/a2a/rest/no/such/thing",
            None,
            404,
            "METHOD_NOT_FOUND",
        ),
    ] {
        let (got, r) = raw(&node, method, path, body).await;
        assert_eq!(got, status, "{path}: {r}");
        assert_eq!(r["error"]["details"][0]["reason"], reason, "{path}: {r}");
    }
    // A body over the size limit is the usual 413, not a crash.
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"SendMessage","params":{{"message":{{"messageId":"big","role":"ROLE_USER","parts":[{{"text":"{}"}}]}}}}}}"#,
        "x".repeat(2 * 1024 * 1024)
    );
    let resp = node
        .http
        .post(format!("{}/a2a/jsonrpc", node.url))
        .bearer_auth(ALICE)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 413);
    // Another caller's task is not found for this one.
    let bob = "bob-token-0123456789abcdef";
    drop(node);
    let mut cfg = lab.config("two");
    cfg.a2a_tokens = vec![
        A2aCredential::parse(&format!("alice={ALICE}")).unwrap(),
        A2aCredential::parse(&format!("bob={bob}")).unwrap(),
    ];
    cfg.a2a_wait = Duration::from_millis(100);
    let node = start_with(cfg).await;
    let (_, r) = rpc(
        &node,
        "SendMessage",
        json!({"message": message("mine", "secret")}),
    )
    .await;
    let id = r["result"]["task"]["id"].clone();
    let resp = node
        .http
        .post(format!("{}/a2a/jsonrpc", node.url))
        .bearer_auth(bob)
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": id}}))
        .send()
        .await
        .unwrap();
    let (_, r) = split(resp).await;
    assert_eq!(r["error"]["code"], -32001, "{r}");
    let resp = node
        .http
        .post(format!("{}/a2a/jsonrpc", node.url))
        .bearer_auth(bob)
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "ListTasks"}))
        .send()
        .await
        .unwrap();
    let (_, r) = split(resp).await;
    assert_eq!(r["result"]["tasks"], json!([]), "{r}");
}

#[tokio::test]
async fn the_a2a_credential_opens_the_a2a_routes_and_nothing_else() {
    let lab = Lab::new();
    let mut cfg = lab.config("guarded");
    cfg.api_token = Some(API.into());
    cfg.a2a_tokens = vec![A2aCredential::parse(ALICE).unwrap()];
    cfg.a2a_wait = Duration::from_millis(100);
    let node = start_with(cfg).await;
    let http = &node.http;
    let url = &node.url;
    let get = |path: &str, token: Option<&str>| {
        let mut req = http.get(format!("{url}{path}"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    // A stranger: 401 on every A2A route.
    for path in ["/.well-known/agent-card.json", "/a2a/rest/tasks"] {
        assert_eq!(
            get(path, None).await.unwrap().status().as_u16(),
            401,
            "{path}"
        );
        assert_eq!(
            get(path, Some("wrong-token-0123456789"))
                .await
                .unwrap()
                .status()
                .as_u16(),
            401,
            "{path}"
        );
    }
    let rpc_as = |token: Option<&str>| {
        let mut req = http
            .post(format!("{url}/a2a/jsonrpc"))
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "ListTasks"}));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    assert_eq!(rpc_as(None).await.unwrap().status().as_u16(), 401);
    // The A2A token opens the A2A routes…
    assert_eq!(
        get("/.well-known/agent-card.json", Some(ALICE))
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    assert_eq!(rpc_as(Some(ALICE)).await.unwrap().status().as_u16(), 200);
    // …and nothing else: REST, the inbox page, MCP.
    for path in [
        "/status",
        "/peers",
        "/recv",
        "/tasks",
        "/",
        "/.well-known/acp.json",
    ] {
        assert_eq!(
            get(path, Some(ALICE)).await.unwrap().status().as_u16(),
            401,
            "{path}"
        );
    }
    let resp = http
        .post(format!("{url}/message:send"))
        .bearer_auth(ALICE)
        .json(&json!({"role": "user", "text": "sneaky"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let resp = http
        .post(format!("{url}/mcp"))
        .bearer_auth(ALICE)
        .header("accept", "application/json, text/event-stream")
        .json(
            &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "x", "version": "1"}}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    // The API token's holder may use A2A too (as the local caller).
    assert_eq!(rpc_as(Some(API)).await.unwrap().status().as_u16(), 200);
    // The caller named by its token's hash is a peer of kind a2a.
    let peers: Value = http
        .get(format!("{url}/peers"))
        .bearer_auth(API)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kinds: Vec<&Value> = peers["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["kind"])
        .collect();
    assert!(
        kinds.iter().all(|k| *k == "a2a") && kinds.len() == 2,
        "{peers}"
    );
    // The Host and Origin checks apply to A2A routes as to every route.
    let resp = http
        .get(format!("{url}/.well-known/agent-card.json"))
        .bearer_auth(ALICE)
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
}

#[tokio::test]
async fn without_a_credential_rule_the_a2a_routes_stay_closed_unless_loopback_is_opened() {
    let lab = Lab::new();
    // No API token, no A2A token: REST is open on loopback as always, A2A is not.
    let closed = lab.start("closed").await;
    let (status, _) = closed.get("/.well-known/agent-card.json").await;
    assert_eq!(status, 401);
    let (status, _) = closed
        .post(
            "/a2a/jsonrpc",
            json!({"jsonrpc": "2.0", "id": 1, "method": "ListTasks"}),
        )
        .await;
    assert_eq!(status, 401);
    let (status, _) = closed.get("/status").await;
    assert_eq!(status, 200);
    // --a2a-open-loopback: loopback callers come in as the local caller.
    let mut cfg = lab.config("open");
    cfg.a2a_open_loopback = true;
    cfg.a2a_wait = Duration::from_millis(100);
    let open = start_with(cfg).await;
    let (status, card) = open.get("/.well-known/agent-card.json").await;
    assert_eq!(status, 200, "{card}");
    assert!(card.get("securitySchemes").is_none(), "{card}");
    let (status, r) = open
        .post(
            "/a2a/jsonrpc",
            json!({"jsonrpc": "2.0", "id": 1, "method": "SendMessage",
                   "params": {"message": message("lo", "from loopback")}}),
        )
        .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["result"]["task"]["status"]["state"], "TASK_STATE_WORKING");
    let m = next_inbound(&open).await;
    assert_eq!(m["raw"]["from"], "a2a-local", "{m}");
    // A wrong token is refused even there.
    let resp = open
        .http
        .get(format!("{}/.well-known/agent-card.json", open.url))
        .bearer_auth("wrong-token-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
}

/// The official A2A Python client (a2a-sdk 1.3) resolves this node's card, sends, and
/// receives the answer the agent wrote with MCP's `acp_send` (JSON-RPC) or REST's
/// `/message:send` (HTTP+JSON): both bindings, 1.0 and 0.3, streaming and not.
#[tokio::test]
async fn the_official_python_client_gets_the_answer_the_agent_wrote() {
    use rmcp::ServiceExt;
    use rmcp::model::CallToolRequestParams;
    use rmcp::transport::StreamableHttpClientTransport;
    let Some(python) = common::python_a2a::a2a_python() else {
        return;
    };
    let script = common::python_a2a::a2a_script("client_send.py");
    let lab = Lab::new();
    let node = a2a_node(&lab, "pyagent", Duration::from_secs(30)).await;
    let transport = StreamableHttpClientTransport::from_uri(format!("{}/mcp", node.url));
    let mcp = ().serve(transport).await.expect("MCP initialize");
    for (binding, streaming) in [
        ("JSONRPC", "0"),
        ("JSONRPC", "1"),
        ("HTTP+JSON", "0"),
        ("HTTP+JSON", "1"),
        ("JSONRPC-0.3", "0"),
        ("JSONRPC-0.3", "1"),
    ] {
        let case = format!("{binding} streaming={streaming}");
        let child = tokio::process::Command::new(&python)
            .arg(&script)
            .args([
                &node.url,
                ALICE,
                binding,
                streaming,
                &format!("question {case}"),
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python runs");
        let answer = format!("answer {case}");
        if binding == "HTTP+JSON" {
            // `/recv` also hands out what `acp_receive` read before: skip to this question.
            let m = loop {
                let m = next_inbound(&node).await;
                if m["parts"][0]["content"] == format!("question {case}") {
                    break m;
                }
            };
            let (status, sent) = node
                .post(
                    "/message:send",
                    json!({"role": "agent", "peer_id": "alice", "text": answer, "task_id": m["task_id"]}),
                )
                .await;
            assert_eq!(status, 200, "{sent}");
        } else {
            let call = |tool: &'static str, args: Value| {
                let args = args.as_object().cloned().unwrap_or_default();
                mcp.call_tool(CallToolRequestParams::new(tool).with_arguments(args))
            };
            // `acp_receive` also hands out what `/recv` read before: skip to this question.
            let mut task_id = Value::Null;
            for _ in 0..10 {
                let got = call("acp_receive", json!({"wait_seconds": 10}))
                    .await
                    .unwrap()
                    .structured_content
                    .unwrap();
                if let Some(m) = got["messages"]
                    .as_array()
                    .and_then(|l| l.iter().find(|m| m["text"] == format!("question {case}")))
                {
                    task_id = m["task_id"].clone();
                    break;
                }
            }
            assert!(
                task_id.is_string(),
                "{case}: the question reaches the agent"
            );
            let sent = call(
                "acp_send",
                json!({"peer": "alice", "text": answer, "task_id": task_id}),
            )
            .await
            .unwrap();
            assert_ne!(sent.is_error, Some(true), "{sent:?}");
        }
        let out = tokio::time::timeout(Duration::from_secs(90), child.wait_with_output())
            .await
            .expect("the Python client finishes")
            .expect("python output");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{case}: {stderr}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let result: Value = serde_json::from_str(stdout.lines().last().unwrap_or(""))
            .unwrap_or_else(|e| panic!("{case}: {e}: {stdout} {stderr}"));
        assert_eq!(result["state"], "TASK_STATE_COMPLETED", "{case}: {result}");
        assert!(
            result["texts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t == answer.as_str()),
            "{case}: {result}"
        );
    }
    mcp.cancel().await.ok();
}

/// A caller stays one peer across restarts, its tasks stay readable, and an answer the agent
/// wrote while the caller was away (queued, the bridge not attached) resolves the task once
/// the caller comes back.
#[tokio::test]
async fn a_caller_keeps_its_peer_and_tasks_across_a_restart() {
    let lab = Lab::new();
    let config = || {
        let mut cfg = lab.config("durable");
        cfg.a2a_tokens = vec![A2aCredential::parse(&format!("alice={ALICE}")).unwrap()];
        cfg.a2a_wait = Duration::from_millis(100);
        cfg
    };
    let node = start_with(config()).await;
    let (_, r) = rpc(
        &node,
        "SendMessage",
        json!({"message": message("d1", "before")}),
    )
    .await;
    let id = r["result"]["task"]["id"].as_str().unwrap().to_owned();
    node.stop().await;
    let node = start_with(config()).await;
    // The agent answers while the caller is away: the answer waits in the offline queue.
    let (status, sent) = node
        .post(
            "/message:send",
            json!({"role": "agent", "peer_id": "alice", "text": "after", "task_id": id}),
        )
        .await;
    // The reference's answer for a peer that is away: 503, and the message queued.
    assert_eq!(status, 503, "{sent}");
    assert_eq!(sent["queued"], true, "{sent}");
    common::eventually(10, "the queued answer resolves the task", || async {
        let (_, got) = rpc(&node, "GetTask", json!({"id": id})).await;
        got["result"]["status"]["state"] == "TASK_STATE_COMPLETED"
            && got["result"]["artifacts"][0]["parts"][0]["text"] == "after"
    })
    .await;
    let (_, peers) = node.get("/peers").await;
    let alices: Vec<&Value> = peers["peers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["agent_name"] == "alice")
        .collect();
    assert_eq!(alices.len(), 1, "{peers}");
}

/// On a node with an HMAC `--secret`, what A2A callers send is signed by the bridge like any
/// frame, so it is not refused as unsigned.
#[tokio::test]
async fn a_node_with_a_secret_takes_a2a_messages() {
    let lab = Lab::new();
    let mut cfg = lab.config("signed");
    cfg.secret = Some("shared-secret-for-hmac".into());
    cfg.a2a_tokens = vec![A2aCredential::parse(&format!("alice={ALICE}")).unwrap()];
    cfg.a2a_wait = Duration::from_secs(20);
    let node = start_with(cfg).await;
    let agent = answer_next(&node, "signed pong");
    let (_, r) = rpc(
        &node,
        "SendMessage",
        json!({"message": message("s1", "signed ping")}),
    )
    .await;
    assert_eq!(
        r["result"]["task"]["status"]["state"], "TASK_STATE_COMPLETED",
        "{r}"
    );
    let m = agent.await.unwrap();
    assert_eq!(m["parts"][0]["content"], "signed ping");
}

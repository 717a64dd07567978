//! The MCP server driven by a real MCP client (rmcp): over stdio by spawning `acp-relay mcp`,
//! and over Streamable HTTP at `/mcp`; a two-agent conversation with messages, a task,
//! notifications and tool errors; REST and MCP seeing the same node; two instances side by side.

mod common;

use std::time::Duration;

use common::{Lab, SseReader, eventually};
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, Implementation,
    ReadResourceRequestParams, ResourceUpdatedNotificationParam, SubscribeRequestParams,
};
use rmcp::service::{NotificationContext, RunningService};
use rmcp::transport::{ConfigureCommandExt, StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{ClientHandler, Peer, RoleClient, ServiceExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// A client that records `resources/updated` notifications.
#[derive(Clone)]
struct Recorder {
    updates: mpsc::UnboundedSender<String>,
}

impl ClientHandler for Recorder {
    async fn on_resource_updated(
        &self,
        params: ResourceUpdatedNotificationParam,
        _: NotificationContext<RoleClient>,
    ) {
        let _ = self.updates.send(params.uri);
    }

    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("acp-relay-tests", "0"),
        )
    }
}

type Client = RunningService<RoleClient, Recorder>;

fn recorder() -> (Recorder, mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (Recorder { updates: tx }, rx)
}

async fn spawn_stdio(
    dir: &std::path::Path,
    name: &str,
    extra: &[&str],
) -> (Client, mpsc::UnboundedReceiver<String>) {
    let (handler, rx) = recorder();
    let dir = dir.to_owned();
    let name = name.to_owned();
    let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
    let cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_acp-relay")).configure(move |c| {
        c.args([
            "mcp",
            "--name",
            &name,
            "--ws-host",
            "127.0.0.1",
            "--advertise-host",
            "127.0.0.1",
        ])
        .arg("--data-dir")
        .arg(&dir)
        .args(&extra)
        .env("ACP_LOG", "warn");
    });
    let transport = TokioChildProcess::new(cmd).expect("spawn acp-relay mcp");
    let client = handler
        .serve(transport)
        .await
        .expect("MCP initialize over stdio");
    (client, rx)
}

async fn connect_http(url: &str) -> (Client, mpsc::UnboundedReceiver<String>) {
    let (handler, rx) = recorder();
    let transport = StreamableHttpClientTransport::from_uri(format!("{url}/mcp"));
    let client = handler
        .serve(transport)
        .await
        .expect("MCP initialize over HTTP");
    (client, rx)
}

async fn call(client: &Peer<RoleClient>, tool: &'static str, args: Value) -> CallToolResult {
    let args = args.as_object().cloned().unwrap_or_default();
    client
        .call_tool(CallToolRequestParams::new(tool).with_arguments(args))
        .await
        .unwrap_or_else(|e| panic!("{tool}: protocol error {e}"))
}

/// Calls a tool that must succeed and returns its structured content.
async fn ok(client: &Peer<RoleClient>, tool: &'static str, args: Value) -> Value {
    let r = call(client, tool, args).await;
    assert_ne!(r.is_error, Some(true), "{tool} failed: {:?}", r.content);
    assert!(!r.content.is_empty(), "{tool} has a human-readable text");
    r.structured_content
        .unwrap_or_else(|| panic!("{tool} has structured content"))
}

fn text_of(r: &CallToolResult) -> String {
    r.content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn tools_are_listed_with_schemas_and_annotations() {
    let lab = Lab::new();
    let (client, _) = spawn_stdio(&lab.root.path().join("a"), "alpha", &["--port", "0"]).await;
    let info = client.peer_info().expect("server info");
    assert_eq!(
        info.server_info.as_ref().map(|i| i.name.as_str()),
        Some("acp-relay")
    );
    assert!(
        info.capabilities
            .resources
            .as_ref()
            .is_some_and(|r| r.subscribe == Some(true))
    );
    let tools = client.list_all_tools().await.unwrap();
    let mut names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    names.sort_unstable();
    let mut want = common::MCP_TOOLS.to_vec();
    want.sort_unstable();
    assert_eq!(names, want);
    for t in &tools {
        let desc = t.description.as_deref().unwrap_or("");
        assert!(desc.len() > 40, "{} needs a real description", t.name);
        assert_eq!(
            t.input_schema.get("type"),
            Some(&json!("object")),
            "{}",
            t.name
        );
        let ann = t
            .annotations
            .as_ref()
            .unwrap_or_else(|| panic!("{} has annotations", t.name));
        assert!(
            ann.read_only_hint.is_some(),
            "{} says whether it is read-only",
            t.name
        );
        // Every argument is described for the model.
        if let Some(props) = t.input_schema.get("properties").and_then(Value::as_object) {
            for (field, schema) in props {
                assert!(
                    schema.get("description").is_some(),
                    "{}.{field} has a description",
                    t.name
                );
            }
        }
    }
    let get = |n: &str| tools.iter().find(|t| t.name == n).unwrap();
    let read_only = |n: &str| get(n).annotations.as_ref().unwrap().read_only_hint;
    assert_eq!(read_only("acp_peers"), Some(true));
    assert_eq!(
        read_only("acp_receive"),
        Some(false),
        "it moves the read position"
    );
    assert_eq!(
        get("acp_task_cancel")
            .annotations
            .as_ref()
            .unwrap()
            .destructive_hint,
        Some(true)
    );
    assert_eq!(
        get("acp_send")
            .annotations
            .as_ref()
            .unwrap()
            .open_world_hint,
        Some(true)
    );
    assert!(get("acp_send").output_schema.is_some());
    assert!(get("acp_receive").output_schema.is_some());
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn two_agents_talk_through_mcp() {
    let lab = Lab::new();
    // Agent A: an MCP host's `acp-relay mcp` over stdio. Agent B: a node serving /mcp.
    let (a, mut a_updates) =
        spawn_stdio(&lab.root.path().join("a"), "alpha", &["--port", "0"]).await;
    let b_node = lab.start("beta").await;
    let (b, _) = connect_http(&b_node.url).await;

    // A watches its inbox (resources/subscribe: what today's hosts use).
    #[allow(deprecated)]
    a.subscribe(SubscribeRequestParams::new("acp://inbox"))
        .await
        .expect("subscribe");

    let link = ok(&a, "acp_get_link", json!({})).await;
    let link = link["link"].as_str().unwrap().to_owned();
    assert!(link.starts_with("acp://127.0.0.1:"));
    let conn = ok(&b, "acp_connect", json!({"link": link})).await;
    assert_eq!(conn["connected"], true, "{conn}");
    assert_eq!(conn["name"], "alpha");
    assert_eq!(conn["connection_type"], "p2p_direct", "{conn}");
    // Who answers the link proved its key (the link names it).
    let a_did = ok(&a, "acp_status", json!({})).await["did"].clone();
    assert_eq!(conn["verified"], true, "{conn}");
    assert_eq!(conn["did"], a_did);

    // B → A, and A waits for it without polling.
    let waiter = {
        let a = a.peer().clone();
        tokio::spawn(async move { ok(&a, "acp_receive", json!({"wait_seconds": 10})).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sent = ok(
        &b,
        "acp_send",
        json!({"text": "hello alpha", "context_id": "conv1", "data": {"n": 1}}),
    )
    .await;
    assert_eq!(sent["delivery"], "delivered");
    let got = waiter.await.unwrap();
    assert_eq!(got["messages"][0]["text"], "hello alpha");
    assert_eq!(got["messages"][0]["from"], "beta");
    assert_eq!(got["messages"][0]["parts"][1]["content"]["n"], 1);
    assert_eq!(got["messages"][0]["verified"], true, "{got}");
    let b_did = ok(&b, "acp_status", json!({})).await["did"].clone();
    assert_eq!(got["messages"][0]["sender_did"], b_did);
    let peers = ok(&a, "acp_peers", json!({})).await;
    assert_eq!(peers["peers"][0]["did"], b_did, "{peers}");
    let card = ok(&a, "acp_card_get", json!({})).await;
    assert_eq!(card["did"], a_did, "{card}");
    let cursor = got["cursor"].as_str().unwrap().to_owned();
    let msg_id = got["messages"][0]["message_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // The inbox subscription fired.
    let uri = tokio::time::timeout(Duration::from_secs(5), a_updates.recv())
        .await
        .expect("resources/updated")
        .unwrap();
    assert_eq!(uri, "acp://inbox");
    let inbox = a
        .read_resource(ReadResourceRequestParams::new("acp://inbox"))
        .await
        .unwrap();
    assert!(format!("{inbox:?}").contains("hello alpha"));
    assert!(
        format!("{inbox:?}").contains(r#"\"total_exact\": true"#),
        "{inbox:?}"
    );

    // The same cursor never returns the same message twice.
    let again = ok(&a, "acp_receive", json!({"cursor": cursor})).await;
    assert_eq!(again["messages"].as_array().unwrap().len(), 0);

    // A replies (reply_to keeps the conversation); B reads it.
    let reply = ok(
        &a,
        "acp_send",
        json!({"text": "hi beta", "reply_to": msg_id}),
    )
    .await;
    assert_eq!(reply["context_id"], "conv1");
    let got = ok(&b, "acp_receive", json!({"wait_seconds": 5})).await;
    assert_eq!(got["messages"][0]["text"], "hi beta");
    assert_eq!(got["messages"][0]["context_id"], "conv1");

    // Search finds both directions, newest first; a bad query is a tool error saying why.
    let found = ok(&a, "acp_search", json!({"query": "hello OR beta"})).await;
    assert_eq!(found["total"], 2, "{found}");
    assert_eq!(found["messages"][0]["direction"], "outbound", "{found}");
    assert_eq!(found["messages"][0]["text"], "hi beta");
    assert_eq!(found["messages"][1]["text"], "hello alpha");
    assert_eq!(found["messages"][1]["from"], "beta");
    let found = ok(
        &a,
        "acp_search",
        json!({"query": "HELLO", "direction": "outbound"}),
    )
    .await;
    assert_eq!(found["total"], 0, "{found}");
    let bad = call(&a, "acp_search", json!({"query": "\"open"})).await;
    assert_eq!(bad.is_error, Some(true));
    assert!(text_of(&bad).contains("not closed"), "{}", text_of(&bad));

    // A task created by B, completed by A.
    let task = ok(
        &b,
        "acp_task_create",
        json!({"text": "summarize the thread"}),
    )
    .await;
    let task_id = task["id"].as_str().unwrap().to_owned();
    assert_eq!(task["status"], "submitted");
    // The worker sees the task in its inbox, as a message carrying the task id.
    let got = ok(&a, "acp_receive", json!({"wait_seconds": 5})).await;
    assert_eq!(got["messages"][0]["task_id"], task_id.as_str());
    assert_eq!(got["messages"][0]["text"], "summarize the thread");
    eventually(5, "task reached alpha", || {
        let a = a.peer().clone();
        let id = task_id.clone();
        async move {
            call(&a, "acp_task_get", json!({"task_id": id}))
                .await
                .is_error
                != Some(true)
        }
    })
    .await;
    ok(
        &a,
        "acp_task_update",
        json!({"task_id": task_id, "status": "working"}),
    )
    .await;
    ok(
        &a,
        "acp_task_update",
        json!({"task_id": task_id, "status": "completed", "result_text": "summary: hi"}),
    )
    .await;
    eventually(5, "completed on beta", || {
        let b = b.peer().clone();
        let id = task_id.clone();
        async move { ok(&b, "acp_task_get", json!({"task_id": id})).await["status"] == "completed" }
    })
    .await;
    let done = ok(
        &b,
        "acp_task_get",
        json!({"task_id": task_id, "wait_seconds": 5}),
    )
    .await;
    assert_eq!(done["artifacts"][0]["parts"][0]["content"], "summary: hi");
    let list = ok(&b, "acp_task_list", json!({"status": "completed"})).await;
    assert_eq!(list["total"], 1);

    // Tool errors the model can act on.
    let bad = call(
        &a,
        "acp_task_update",
        json!({"task_id": task_id, "status": "working"}),
    )
    .await;
    assert_eq!(bad.is_error, Some(true));
    assert!(
        text_of(&bad).contains("ERR_INVALID_REQUEST"),
        "{}",
        text_of(&bad)
    );
    let bad = call(&a, "acp_send", json!({"text": 42})).await;
    assert_eq!(
        bad.is_error,
        Some(true),
        "wrong argument type is a tool error"
    );
    let bad = call(&a, "acp_send", json!({"text": "x", "peer": "nobody"})).await;
    assert_eq!(bad.is_error, Some(true));
    assert!(text_of(&bad).contains("ERR_NOT_FOUND"));
    let bad = call(&a, "acp_connect", json!({"link": "ftp://not-a-link"})).await;
    assert_eq!(bad.is_error, Some(true));
    let bad = call(&a, "acp_receive", json!({"wait_seconds": 600})).await;
    assert_eq!(bad.is_error, Some(true));
    let bad = call(&a, "acp_task_get", json!({})).await;
    assert_eq!(
        bad.is_error,
        Some(true),
        "missing required argument is a tool error"
    );

    // REST and MCP are one node: curl → A's REST port → A's acp_receive…
    let status = ok(&a, "acp_status", json!({})).await;
    let a_rest = format!("http://127.0.0.1:{}", status["http_port"]);
    let http = reqwest::Client::new();
    let mut a_stream = SseReader::open(&format!("{a_rest}/stream"), None).await;
    let r: Value = http
        .post(format!("{a_rest}/peer/peer_001/send"))
        .json(&json!({"role": "agent", "text": "from curl on A's port"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["ok"], true, "{r}");
    let got = ok(&b, "acp_receive", json!({"wait_seconds": 5})).await;
    assert_eq!(got["messages"][0]["text"], "from curl on A's port");
    // …and curl into B's REST API reaches A's acp_receive.
    let r = b_node.send_text("curl to alpha", json!({})).await;
    assert_eq!(r["delivery"], "sent");
    let got = ok(&a, "acp_receive", json!({"wait_seconds": 5})).await;
    assert_eq!(got["messages"][0]["text"], "curl to alpha");
    // …and acp_send shows up on A's /stream.
    ok(&a, "acp_send", json!({"text": "visible on the stream"})).await;
    a_stream
        .wait_for(5, "acp_send on /stream", |e| {
            e.data["parts"][0]["content"] == "visible on the stream"
        })
        .await;

    a.cancel().await.unwrap();
    b.cancel().await.unwrap();
}

#[tokio::test]
async fn second_instance_with_busy_ports_and_data_dir_still_works() {
    let lab = Lab::new();
    let port = common::free_port();
    let http_port = common::free_port();
    let dir = lab.root.path().join("shared");
    let ports = [
        "--port".to_owned(),
        port.to_string(),
        "--http-port".to_owned(),
        http_port.to_string(),
    ];
    let ports: Vec<&str> = ports.iter().map(String::as_str).collect();
    let (first, _) = spawn_stdio(&dir, "same", &ports).await;
    let (second, _) = spawn_stdio(&dir, "same", &ports).await;
    let s1 = ok(&first, "acp_status", json!({})).await;
    let s2 = ok(&second, "acp_status", json!({})).await;
    assert_eq!(s1["http_port"], http_port);
    assert_eq!(s1["ws_port"], port);
    assert_ne!(
        s2["http_port"], http_port,
        "the second instance moved to a free port"
    );
    assert_ne!(s2["ws_port"], port);
    assert_ne!(s1["link"], s2["link"], "each instance is its own agent");
    assert!(
        s2["data_dir"].as_str().unwrap().ends_with("shared-2"),
        "{}",
        s2["data_dir"]
    );
    // And the two can talk to each other.
    let link = ok(&first, "acp_get_link", json!({})).await["link"]
        .as_str()
        .unwrap()
        .to_owned();
    let c = ok(&second, "acp_connect", json!({"link": link})).await;
    assert_eq!(c["connected"], true);
    ok(&second, "acp_send", json!({"text": "hello neighbour"})).await;
    let got = ok(&first, "acp_receive", json!({"wait_seconds": 5})).await;
    assert_eq!(got["messages"][0]["text"], "hello neighbour");
    first.cancel().await.unwrap();
    second.cancel().await.unwrap();
}

#[tokio::test]
async fn mcp_endpoint_refuses_foreign_hosts_and_origins() {
    let lab = Lab::new();
    let node = lab.start("guarded").await;
    let http = reqwest::Client::new();
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    let post = |host: Option<&str>, origin: Option<&str>| {
        let mut req = http
            .post(format!("{}/mcp", node.url))
            .header("accept", "application/json, text/event-stream")
            .json(&init);
        if let Some(h) = host {
            req = req.header("host", h);
        }
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        req.send()
    };
    let port = node.server.http_addr.port();
    assert_eq!(post(None, None).await.unwrap().status().as_u16(), 200);
    assert_eq!(
        post(Some("evil.example"), None)
            .await
            .unwrap()
            .status()
            .as_u16(),
        403,
        "DNS rebinding: foreign Host"
    );
    assert_eq!(
        post(None, Some("http://evil.example"))
            .await
            .unwrap()
            .status()
            .as_u16(),
        403,
        "foreign Origin"
    );
    assert_eq!(
        post(None, Some(&format!("http://localhost:{port}")))
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    // Ending a session answers 204.
    let resp = post(None, None).await.unwrap();
    let session = resp
        .headers()
        .get("mcp-session-id")
        .expect("session id")
        .to_str()
        .unwrap()
        .to_owned();
    let del = http
        .delete(format!("{}/mcp", node.url))
        .header("mcp-session-id", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(del.status().as_u16(), 204);
}

#[tokio::test]
async fn subscriptions_listen_streams_resource_updates() {
    let lab = Lab::new();
    let a_node = lab.start("alpha").await;
    let b_node = lab.start("beta").await;
    // A client of the 2026-07-28 protocol (no initialize; subscriptions/listen).
    use rmcp::service::{ClientLifecycleMode, ClientServiceExt};
    let config = ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("acp-relay-tests", "0"),
    );
    let transport = StreamableHttpClientTransport::from_uri(format!("{}/mcp", a_node.url));
    let lifecycle = ClientLifecycleMode::Discover {
        preferred_versions: vec![rmcp::model::ProtocolVersion::V_2026_07_28],
    };
    let a = config
        .serve_with_lifecycle(transport, lifecycle)
        .await
        .expect("2026-07-28 session");
    let filter = rmcp::model::SubscriptionFilter::builder()
        .resources_list_changed()
        .resource_subscription("acp://inbox")
        .resource_subscription("acp://nowhere")
        .build();
    let mut sub = a
        .listen(filter)
        .await
        .expect("subscriptions/listen acknowledged");
    let ack = sub
        .acknowledged()
        .resource_subscriptions
        .clone()
        .unwrap_or_default();
    assert_eq!(
        ack,
        ["acp://inbox"],
        "only resources the node has are accepted"
    );
    common::connect(&b_node, &a_node).await;
    b_node.send_text("over listen", json!({})).await;
    let mut saw_inbox = false;
    for _ in 0..10 {
        let next = tokio::time::timeout(Duration::from_secs(5), sub.next())
            .await
            .expect("notification in time");
        let Ok(Some(note)) = next else { break };
        if format!("{note:?}").contains("acp://inbox") {
            saw_inbox = true;
            break;
        }
    }
    assert!(
        saw_inbox,
        "resources/updated for acp://inbox arrived on the listen stream"
    );
    a.cancel().await.unwrap();
}

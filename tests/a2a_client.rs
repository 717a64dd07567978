//! acp-relay as an A2A client: real nodes on loopback talk to A2A agents built with the
//! official Python SDK (`tests/a2a_py/`, in the venv of `common::python_a2a`), driven the way
//! an MCP host drives them (an rmcp client over `/mcp`: `acp_connect`, `acp_send`,
//! `acp_receive`, `acp_task_create`) and over the REST API. Bad agent URLs and cards get a
//! clear 400, never a 5xx.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::python_a2a::{a2a_python, a2a_script};
use common::{Lab, TestNode, eventually, free_port};
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

/// A Python A2A agent this test started (killed when dropped).
struct Agent {
    child: tokio::process::Child,
    port: u16,
}

impl Agent {
    /// Starts `script` (with `args`) and waits for the port it prints.
    async fn start(python: &Path, script: &str, args: &[&str]) -> Agent {
        let mut child = tokio::process::Command::new(python)
            .arg(a2a_script(script))
            .args(args)
            .current_dir(a2a_script(""))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start the Python agent");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("{script} printed no port within 60 s"))
            .expect("read the port")
            .unwrap_or_else(|| panic!("{script} ended without printing its port"));
        let port = line.trim().parse().expect("a port number");
        // Keep reading so the pipe never fills.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Agent { child, port }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops the agent (the process this test started) and waits for it to go.
    async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

type Mcp = RunningService<RoleClient, ()>;

async fn mcp(node: &TestNode) -> Mcp {
    let transport = StreamableHttpClientTransport::from_uri(format!("{}/mcp", node.url));
    ().serve(transport).await.expect("MCP initialize over HTTP")
}

async fn call(client: &Mcp, tool: &'static str, args: Value) -> CallToolResult {
    let args = args.as_object().cloned().unwrap_or_default();
    client
        .call_tool(CallToolRequestParams::new(tool).with_arguments(args))
        .await
        .unwrap_or_else(|e| panic!("{tool}: protocol error {e}"))
}

/// Calls a tool that must succeed; returns its structured content.
async fn ok(client: &Mcp, tool: &'static str, args: Value) -> Value {
    let r = call(client, tool, args).await;
    assert_ne!(r.is_error, Some(true), "{tool} failed: {:?}", r.content);
    r.structured_content
        .unwrap_or_else(|| panic!("{tool} has structured content"))
}

/// Reads with `acp_receive` until a message whose text contains `want` arrives (60 s).
async fn receive_until(client: &Mcp, want: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut cursor: Option<Value> = None;
    loop {
        let mut args = json!({"wait_seconds": 5});
        if let Some(c) = &cursor {
            args["cursor"] = c.clone();
        }
        let r = ok(client, "acp_receive", args).await;
        for m in r["messages"].as_array().cloned().unwrap_or_default() {
            if m["text"].as_str().is_some_and(|t| t.contains(want)) {
                return m;
            }
        }
        cursor = Some(r["cursor"].clone());
        assert!(
            tokio::time::Instant::now() < deadline,
            "no message with {want:?} arrived"
        );
    }
}

/// `GET /peers/{key}` (id or name).
async fn peer(node: &TestNode, key: &str) -> Value {
    node.get(&format!("/peers/{key}")).await.1
}

async fn python() -> Option<std::path::PathBuf> {
    tokio::task::spawn_blocking(a2a_python).await.expect("venv")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mcp_client_talks_to_an_a2a_echo_agent_over_both_bindings() {
    let Some(py) = python().await else { return };
    let lab = Lab::new();
    let node = lab.start("alpha").await;
    let echo = Agent::start(&py, "echo_agent.py", &[]).await;
    let client = mcp(&node).await;

    // JSON-RPC (1.0), by the agent's base URL, from an MCP client.
    let c = ok(&client, "acp_connect", json!({"link": echo.url()})).await;
    assert_eq!(c["connected"], true, "{c}");
    assert_eq!(c["connection_type"], "a2a", "{c}");
    let peer_id = c["peer_id"].as_str().unwrap().to_owned();
    let entry = peer(&node, &peer_id).await;
    assert_eq!(entry["kind"], "a2a", "{entry}");
    assert_eq!(entry["name"], "echo-agent", "{entry}");
    ok(
        &client,
        "acp_send",
        json!({"peer": peer_id, "text": "hello there"}),
    )
    .await;
    let m = receive_until(&client, "echo: hello there").await;
    let listed = call(&client, "acp_peers", json!({})).await;
    let listed_text = format!("{:?}", listed.content);
    assert!(listed_text.contains("an A2A agent at"), "{listed_text}");
    assert_eq!(m["peer_id"], peer_id.as_str(), "{m}");
    // The agent accepted it: the message shows delivered.
    eventually(10, "the message shows delivered", || async {
        let (_, msgs) = node
            .get(&format!("/messages?peer_id={peer_id}&direction=outbound"))
            .await;
        msgs["messages"]
            .as_array()
            .is_some_and(|l| l.iter().any(|m| m["delivery"] == "delivered"))
    })
    .await;

    // HTTP+JSON (1.0), by the card URL over REST, with a bearer token that is stored in a
    // private file and never shown back.
    let rest = Agent::start(&py, "echo_agent.py", &["--rest"]).await;
    let (status, r) = node
        .post(
            "/peers/connect",
            json!({"link": format!("{}/.well-known/agent-card.json", rest.url()), "bearer_token": "tok-SECRET-1"}),
        )
        .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["interface"]["protocol_binding"], "HTTP+JSON", "{r}");
    assert_eq!(r["interface"]["protocol_version"], "1.0", "{r}");
    assert_eq!(r["credential_stored"], true, "{r}");
    let rest_id = r["peer_id"].as_str().unwrap().to_owned();
    eventually(10, "the REST agent attaches", || async {
        peer(&node, &rest_id).await["connected"] == true
    })
    .await;
    node.send_text("over rest", json!({"peer_id": rest_id}))
        .await;
    receive_until(&client, "echo: over rest").await;
    let (_, peers) = node.get("/peers").await;
    assert!(!peers.to_string().contains("tok-SECRET-1"), "{peers}");
    let creds = node.dir.join("a2a-credentials.json");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&creds).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert!(
        std::fs::read_to_string(&creds)
            .unwrap()
            .contains("Bearer tok-SECRET-1")
    );
    // Removing the agent stops its bridge and forgets its credential.
    let (status, _) = node
        .request(reqwest::Method::DELETE, &format!("/peers/{rest_id}"), None)
        .await;
    assert_eq!(status, 200);
    eventually(30, "the credential is deleted", || async {
        !std::fs::read_to_string(&creds)
            .unwrap_or_default()
            .contains("tok-SECRET-1")
    })
    .await;

    // Connecting again by the same URL is the same peer.
    let again = ok(&client, "acp_connect", json!({"link": echo.url()})).await;
    assert_eq!(again["peer_id"], peer_id.as_str());
    client.cancel().await.ok();
    echo.stop().await;
    rest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_gets_an_artifact_asks_for_input_and_completes_with_the_answer() {
    let Some(py) = python().await else { return };
    task_round_trip(&py, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_round_trip_over_a_stream() {
    let Some(py) = python().await else { return };
    task_round_trip(&py, &["--stream"]).await;
}

async fn task_round_trip(py: &Path, args: &[&str]) {
    let lab = Lab::new();
    let node = lab.start("alpha").await;
    let agent = Agent::start(py, "task_agent.py", args).await;
    let client = mcp(&node).await;
    let c = ok(&client, "acp_connect", json!({"link": agent.url()})).await;
    let peer_id = c["peer_id"].as_str().unwrap().to_owned();

    let task = ok(
        &client,
        "acp_task_create",
        json!({"peer": peer_id, "text": "hi"}),
    )
    .await;
    let task_id = task["id"].as_str().expect("task id").to_owned();
    let get = |id: String| {
        let node = &node;
        async move { node.get(&format!("/tasks/{id}")).await.1 }
    };
    eventually(30, "the task asks for input", || async {
        get(task_id.clone()).await["status"] == "input_required"
    })
    .await;
    let t = get(task_id.clone()).await;
    assert!(t.to_string().contains("draft: hi"), "the artifact: {t}");
    let question = receive_until(&client, "what is your name?").await;
    assert_eq!(question["task_id"], task_id.as_str(), "{question}");

    // The answer, in the same task, continues the same A2A task.
    ok(
        &client,
        "acp_send",
        json!({"peer": peer_id, "task_id": task_id, "text": "Bob"}),
    )
    .await;
    eventually(30, "the task completes", || async {
        get(task_id.clone()).await["status"] == "completed"
    })
    .await;
    let t = get(task_id.clone()).await;
    assert!(t.to_string().contains("greeting for Bob"), "{t}");
    receive_until(&client, "hello Bob").await;

    // The agent refuses a message to its finished task: the message ends failed with the
    // agent's reason, and is not sent again.
    ok(
        &client,
        "acp_send",
        json!({"peer": peer_id, "task_id": task_id, "text": "once more"}),
    )
    .await;
    eventually(30, "the refusal is reported", || async {
        peer(&node, &peer_id).await["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("terminal state"))
    })
    .await;
    assert_eq!(get(task_id.clone()).await["status"], "completed");
    let (_, msgs) = node
        .get(&format!("/messages?peer_id={peer_id}&direction=outbound"))
        .await;
    let refused = msgs["messages"]
        .as_array()
        .and_then(|l| {
            l.iter()
                .find(|m| m["parts"][0]["content"] == "once more")
                .cloned()
        })
        .unwrap_or_default();
    assert_eq!(refused["delivery"], "failed", "{msgs}");
    assert!(
        refused["delivery_error"]
            .as_str()
            .is_some_and(|e| e.contains("terminal state")),
        "{refused}"
    );

    // A task the agent keeps working on is canceled on the agent too.
    let slow = ok(
        &client,
        "acp_task_create",
        json!({"peer": peer_id, "text": "wait"}),
    )
    .await;
    let slow_id = slow["id"].as_str().unwrap().to_owned();
    eventually(30, "the slow task is working", || async {
        get(slow_id.clone()).await["status"] == "working"
    })
    .await;
    ok(&client, "acp_task_cancel", json!({"task_id": slow_id})).await;
    eventually(30, "the slow task is canceled", || async {
        get(slow_id.clone()).await["status"] == "canceled"
    })
    .await;
    client.cancel().await.ok();
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_point_three_agent_is_reached_with_message_send() {
    let Some(py) = python().await else { return };
    let lab = Lab::new();
    let node = lab.start("alpha").await;
    let agent = Agent::start(&py, "v03_agent.py", &[]).await;
    let (status, r) = node
        .post(
            "/peers/connect",
            json!({"link": agent.url(), "name": "old"}),
        )
        .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["interface"]["protocol_version"], "0.3", "{r}");
    assert_eq!(r["interface"]["protocol_binding"], "JSONRPC", "{r}");
    eventually(10, "attached", || async {
        peer(&node, "old").await["connected"] == true
    })
    .await;
    node.send_text("from the past", json!({"peer_id": "old"}))
        .await;
    let client = mcp(&node).await;
    receive_until(&client, "echo03: from the past").await;
    client.cancel().await.ok();
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_is_down_gets_the_message_later_and_survives_a_restart() {
    let Some(py) = python().await else { return };
    let lab = Lab::new();
    let node = lab.start("alpha").await;
    let echo = Agent::start(&py, "echo_agent.py", &[]).await;
    let port = echo.port.to_string();
    let (status, r) = node
        .post("/peers/connect", json!({"link": echo.url()}))
        .await;
    assert_eq!(status, 200, "{r}");
    let peer_id = r["peer_id"].as_str().unwrap().to_owned();
    eventually(10, "attached", || async {
        peer(&node, &peer_id).await["connected"] == true
    })
    .await;
    echo.stop().await;
    let sent = node
        .send_text("while you were away", json!({"peer_id": peer_id}))
        .await;
    let sent_id = sent["message_id"].as_str().unwrap().to_owned();
    eventually(30, "the bridge notices the agent is down", || async {
        peer(&node, &peer_id).await["connected"] == false
    })
    .await;
    let (_, q) = node.get("/offline-queue").await;
    assert!(q.to_string().contains(&sent_id), "{q}");

    // Back on the same port: the queued message goes out and is answered.
    let echo = Agent::start(&py, "echo_agent.py", &[&port]).await;
    let client = mcp(&node).await;
    receive_until(&client, "echo: while you were away").await;
    client.cancel().await.ok();
    eventually(10, "the late message shows delivered", || async {
        let (_, m) = node
            .get(&format!("/messages?peer_id={peer_id}&direction=outbound"))
            .await;
        m["messages"].as_array().is_some_and(|l| {
            l.iter()
                .any(|m| m["message_id"] == sent_id.as_str() && m["delivery"] == "delivered")
        })
    })
    .await;

    // After a restart of the node the agent is still a peer, and attached again.
    let dir = node.stop().await;
    let mut config = lab.config("alpha");
    config.data_dir = dir;
    let node = common::start_with(config).await;
    let entry = peer(&node, &peer_id).await;
    assert_eq!(entry["kind"], "a2a", "{entry}");
    eventually(30, "reattached after the restart", || async {
        let p = peer(&node, &peer_id).await;
        p["connected"] == true && p["connection_type"] == "a2a"
    })
    .await;
    node.send_text("after the restart", json!({"peer_id": peer_id}))
        .await;
    let client = mcp(&node).await;
    receive_until(&client, "echo: after the restart").await;
    client.cancel().await.ok();
    echo.stop().await;
}

/// A loopback HTTP server answering the card path with `body` (as `content_type`).
async fn card_server(body: &'static str, content_type: &'static str) -> String {
    let app = axum::Router::new().route(
        "/.well-known/agent-card.json",
        axum::routing::get(move || async move { ([("content-type", content_type)], body) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test]
async fn bad_agent_urls_and_cards_get_a_clear_400() {
    let lab = Lab::new();
    let node = lab.start("alpha").await;
    let nothing = format!("http://127.0.0.1:{}", free_port());
    let not_json = card_server("<html>hello</html>", "text/html").await;
    let no_interface = card_server(
        r#"{"name":"grpc-only","supportedInterfaces":[{"url":"http://127.0.0.1:9/","protocolBinding":"GRPC","protocolVersion":"1.0"}]}"#,
        "application/json",
    )
    .await;
    let not_a_card = card_server(r#"[1,2,3]"#, "application/json").await;
    let cases = [
        (json!({"link": nothing}), "not reachable"),
        (json!({"link": not_json}), "JSON"),
        (json!({"link": no_interface}), "no interface"),
        (json!({"link": not_a_card}), "not an agent card"),
        (json!({"link": "http://user:pw@127.0.0.1:9/"}), "user name"),
        (json!({"link": "http://127.0.0.1:9/#x"}), "fragment"),
        (json!({"link": "http://exa mple/"}), "spaces"),
        (
            json!({"link": nothing, "bearer_token": "a", "api_key": "b"}),
            "not reachable",
        ),
        (
            json!({"link": not_json, "bearer_token": 5}),
            "must be a string",
        ),
        (
            json!({"link": nothing, "bearer_token": "tök"}),
            "visible ASCII",
        ),
    ];
    for (body, want) in cases {
        let (status, r) = node.post("/peers/connect", body.clone()).await;
        assert_eq!(status, 400, "{body} → {r}");
        assert!(
            r.to_string().contains(want),
            "{body}: the error says {want:?}: {r}"
        );
    }
    // An API key for a card that names no API-key header.
    let card = card_server(
        r#"{"name":"e","supportedInterfaces":[{"url":"http://127.0.0.1:9/","protocolBinding":"JSONRPC","protocolVersion":"1.0"}]}"#,
        "application/json",
    )
    .await;
    let (status, r) = node
        .post("/peers/connect", json!({"link": card, "api_key": "k"}))
        .await;
    assert_eq!(status, 400, "{r}");
    assert!(r.to_string().contains("API-key header"), "{r}");
    // Nothing was registered by the refused connects.
    let (_, peers) = node.get("/peers").await;
    assert_eq!(peers["count"], 0, "{peers}");

    // The MCP tool says the same as a tool error.
    let client = mcp(&node).await;
    let r = call(&client, "acp_connect", json!({"link": nothing})).await;
    assert_eq!(r.is_error, Some(true));
    client.cancel().await.ok();
}

/// The token of the A2A caller `bob` on the server node of the own-server tests.
const BOB: &str = "bob-token-0123456789abcdef";

/// Serves on loopback the server node's agent card edited by `edit` (fetched with `bob`'s
/// token), so that the client reads a card offering only some of the server's interfaces;
/// its interface URLs still point at the server itself. Returns the card's base URL.
async fn edited_card(server: &TestNode, edit: fn(&mut Value)) -> String {
    let mut card: Value = server
        .http
        .get(format!("{}/.well-known/agent-card.json", server.url))
        .bearer_auth(BOB)
        .send()
        .await
        .expect("GET the card")
        .json()
        .await
        .expect("a JSON card");
    edit(&mut card);
    let app = axum::Router::new().route(
        "/.well-known/agent-card.json",
        axum::routing::get(move || {
            let card = card.clone();
            async move { axum::Json(card) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// Keeps only the card's 1.0 interfaces of `binding` (and drops the 0.3 fields).
fn only_binding(card: &mut Value, binding: &str) {
    if let Some(list) = card["supportedInterfaces"].as_array_mut() {
        list.retain(|i| i["protocolBinding"] == binding && i["protocolVersion"] == "1.0");
    }
    if let Some(obj) = card.as_object_mut() {
        for legacy in ["url", "preferredTransport", "additionalInterfaces"] {
            obj.remove(legacy);
        }
    }
}

fn no_streaming(card: &mut Value) {
    card["capabilities"]["streaming"] = json!(false);
}

/// acp-relay's A2A client sends to acp-relay's A2A server, found at `card_url`, over the
/// interface that card leaves (`binding`, `streaming`), and gets the answer the server's
/// agent wrote with MCP `acp_send`.
async fn round_trip_to_our_own_server(
    lab: &Lab,
    server: &TestNode,
    card_url: &str,
    binding: &str,
    streaming: bool,
) {
    let client = lab
        .start(&format!("client-{}-{streaming}", binding.replace('+', "")))
        .await;
    let (status, r) = client
        .post(
            "/peers/connect",
            json!({"link": card_url, "bearer_token": BOB}),
        )
        .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["interface"]["protocol_version"], "1.0", "{r}");
    assert_eq!(r["interface"]["protocol_binding"], binding, "{r}");
    let card_streams = peer(&client, r["peer_id"].as_str().unwrap()).await["agent_card"]["capabilities"]
        ["streaming"]
        == true;
    assert_eq!(card_streams, streaming, "the card the client read");
    let peer_id = r["peer_id"].as_str().unwrap().to_owned();
    eventually(10, "attached to our own server", || async {
        peer(&client, &peer_id).await["connected"] == true
    })
    .await;
    let ping = format!("ping over {binding}, streaming {streaming}");
    let pong = format!("pong over {binding}, streaming {streaming}");
    client.send_text(&ping, json!({"peer_id": peer_id})).await;

    // On the server node the message is in the inbox, from the A2A caller `bob`; its agent
    // answers with acp_send in the message's task.
    let server_mcp = mcp(server).await;
    let got = receive_until(&server_mcp, &ping).await;
    ok(
        &server_mcp,
        "acp_send",
        json!({"peer": "bob", "task_id": got["task_id"], "text": pong}),
    )
    .await;
    let client_mcp = mcp(&client).await;
    let answer = receive_until(&client_mcp, &pong).await;
    assert_eq!(answer["peer_id"], peer_id.as_str(), "{answer}");
    server_mcp.cancel().await.ok();
    client_mcp.cancel().await.ok();
    client.stop().await;
}

/// Both bindings, streaming and not: the server's own card (JSON-RPC, streaming), and cards
/// edited to leave JSON-RPC without streaming and HTTP+JSON with and without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_talks_to_our_own_a2a_server() {
    let lab = Lab::new();
    let mut cfg = lab.config("server");
    cfg.a2a_tokens = vec![acp_relay::config::A2aCredential::parse(&format!("bob={BOB}")).unwrap()];
    let server = common::start_with(cfg).await;

    round_trip_to_our_own_server(&lab, &server, &server.url, "JSONRPC", true).await;
    let url = edited_card(&server, no_streaming).await;
    round_trip_to_our_own_server(&lab, &server, &url, "JSONRPC", false).await;
    let url = edited_card(&server, |c| only_binding(c, "HTTP+JSON")).await;
    round_trip_to_our_own_server(&lab, &server, &url, "HTTP+JSON", true).await;
    let url = edited_card(&server, |c| {
        only_binding(c, "HTTP+JSON");
        no_streaming(c);
    })
    .await;
    round_trip_to_our_own_server(&lab, &server, &url, "HTTP+JSON", false).await;
}

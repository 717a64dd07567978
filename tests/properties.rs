//! Property tests against one real node, over HTTP and over MCP (Streamable HTTP at `/mcp`):
//! arbitrary JSON and arbitrary bytes as request bodies (also as the WebSocket frames and
//! NDJSON lines of the streaming inlet), arbitrary query strings and arbitrary tool
//! arguments. The node answers every one with a JSON 4xx (or a success), never a 5xx other than the documented `503 ERR_NOT_CONNECTED` for a send with no peer, never a
//! transport failure, and still answers `/status` afterwards.
//!
//! Case counts are small (each case is several requests); `PROPTEST_CASES=… cargo test prop`
//! runs more. Failing cases are kept in `proptest-regressions/tests/properties.txt`.

#[path = "../src/test_support.rs"]
mod arb;
mod common;

use std::fmt::Debug;
use std::sync::OnceLock;

use acp_relay::Config;
use acp_relay::node::webhooks::url::WebhookUrl;
use acp_relay::wire::link::Link;
use common::{Lab, TestNode, start_with};
use futures_util::SinkExt;
use proptest::prelude::*;
use proptest::test_runner::{FileFailurePersistence, TestRunner};
use reqwest::Method;
use rmcp::model::CallToolRequestParams;
use rmcp::service::{RunningService, ServiceError};
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Map, Value, json};
use tokio_tungstenite::tungstenite::Message;

/// Where failing cases of this file are kept (the crate root is the working directory of
/// `cargo test`); the default location needs a `lib.rs` beside the test file.
const REGRESSIONS: &str = "proptest-regressions/tests/properties.txt";

/// Cases per HTTP property: each case makes several requests to the node.
const HTTP_CASES: u32 = 64;
/// Cases of the MCP property: each case calls all fourteen tools.
const MCP_CASES: u32 = 32;

/// The node every property shares, with the runtime it runs on. Starting one node per case
/// would dominate the run time; one node for all of them is also the harder test, since
/// whatever one case leaves behind (tasks, card edits) is there for the next.
struct Shared {
    rt: tokio::runtime::Runtime,
    node: TestNode,
}

/// The shared node, started on first use in a data dir under cargo's target tmp dir (a
/// `static` is never dropped, so a `TempDir` would never be removed; this one is reused and
/// emptied at the next run).
fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        drop(Lab::new()); // sets up test logging (ACP_LOG) as the other tests do
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("properties-node");
        let _ = std::fs::remove_dir_all(&dir);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let node = rt.block_on(start_with(Config::ephemeral("props", dir)));
        Shared { rt, node }
    })
}

/// Runs `test` on `cases` values of `strategy` with this file's failure persistence, then
/// checks the node still answers: what a property must leave intact.
fn run<S>(cases: u32, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S: Strategy,
    S::Value: Debug,
{
    let mut config = arb::config(cases);
    config.failure_persistence = Some(Box::new(FileFailurePersistence::Direct(REGRESSIONS)));
    let mut runner = TestRunner::new(config);
    if let Err(e) = runner.run(&strategy, test) {
        panic!("{e}\n{runner}");
    }
    let s = shared();
    let (status, body) = s.rt.block_on(s.node.get("/status"));
    assert_eq!(status, 200, "the node stopped answering: {body}");
}

/// Sends `body` with `Content-Type: application/json` whatever it holds (the node refuses
/// bodies that do not say they are JSON, and these tests are about the JSON parsers).
async fn send(node: &TestNode, method: Method, path: &str, body: Vec<u8>) -> (u16, Value) {
    let resp = node
        .http
        .request(method, format!("{}{}", node.url, path))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("the node answers");
    answer(resp).await
}

/// GET with `query` as the raw query string (the URL parser escapes what a URL cannot hold).
async fn get_query(node: &TestNode, path: &str, query: &str) -> (u16, Value) {
    let mut url = reqwest::Url::parse(&format!("{}{}", node.url, path)).expect("URL");
    url.set_query(Some(query));
    answer(node.http.get(url).send().await.expect("the node answers")).await
}

async fn answer(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// The contract for any answer to outside input: no 5xx but the no-peer 503, a JSON error
/// body with an `ERR_*` code on every error, a JSON object on success.
fn check(what: &str, status: u16, body: &Value) -> Result<(), TestCaseError> {
    let no_peer = status == 503 && body["error_code"] == "ERR_NOT_CONNECTED";
    prop_assert!(status < 500 || no_peer, "{what}: {status} {body}");
    if status >= 400 {
        prop_assert_eq!(&body["ok"], &json!(false), "{}: {} {}", what, status, body);
        prop_assert!(
            body["error_code"]
                .as_str()
                .is_some_and(|c| c.starts_with("ERR_")),
            "{what}: {status} {body}"
        );
    } else {
        prop_assert!(body.is_object(), "{what}: {status} {body}");
    }
    Ok(())
}

/// Keeps generated input from dialling anything: a `link` that would parse, or a webhook
/// `url` the node would take, gets a prefix that makes it invalid (these tests use
/// 127.0.0.1 only and contact nothing: a registered webhook would be sent every event, a
/// new peer would change what every later send answers).
fn defuse(mut map: Map<String, Value>) -> Map<String, Value> {
    // An agent URL would make the node read a card from it (a DNS lookup, a connection).
    if let Some(Value::String(s)) = map.get_mut("link")
        && (Link::parse(s).is_ok() || acp_relay::a2a::client::is_agent_url(s))
    {
        s.insert(0, 'x');
    }
    if let Some(Value::String(s)) = map.get_mut("url")
        && WebhookUrl::parse(s).is_ok()
    {
        s.insert(0, 'x');
    }
    map
}

/// A request body: arbitrary JSON, an object with the API's field names, arbitrary bytes, or
/// JSON with one byte inserted or cut off (the near misses a parser most often mishandles).
fn arb_body() -> BoxedStrategy<Vec<u8>> {
    let object = arb::arb_object().prop_map(|m| Value::Object(defuse(m)).to_string().into_bytes());
    prop_oneof![
        arb::arb_json().prop_map(|v| v.to_string().into_bytes()),
        object.clone(),
        proptest::collection::vec(any::<u8>(), 0..128),
        (
            object,
            any::<proptest::sample::Index>(),
            any::<u8>(),
            any::<bool>()
        )
            .prop_map(|(mut bytes, at, byte, cut)| {
                let i = at.index(bytes.len() + 1);
                if cut {
                    bytes.truncate(i);
                } else {
                    bytes.insert(i, byte);
                }
                bytes
            }),
    ]
    .boxed()
}

/// A valid body from `templates` with up to three of its fields given arbitrary values: the
/// inputs that get past the first check and exercise what comes after it (with no edit, the
/// success path). Links are defused as in [`arb_body`].
fn near(templates: Vec<Value>) -> BoxedStrategy<Vec<u8>> {
    let edits =
        proptest::collection::vec((any::<proptest::sample::Index>(), arb::arb_json()), 0..3);
    (proptest::sample::select(templates), edits)
        .prop_map(|(template, edits)| {
            let mut map = template.as_object().cloned().unwrap_or_default();
            let keys: Vec<String> = map.keys().cloned().collect();
            for (at, value) in edits {
                map.insert(keys[at.index(keys.len())].clone(), value);
            }
            Value::Object(defuse(map)).to_string().into_bytes()
        })
        .boxed()
}

/// Parts of each kind, for the templates.
fn parts() -> Value {
    json!([
        {"type": "text", "content": "hi"},
        {"type": "file", "url": "https://example.invalid/a.pdf", "media_type": "application/pdf"},
        {"type": "data", "content": {"rows": 3}},
    ])
}

/// Values the query parameters give meaning to, at and past their edges.
const QUERY_VALUES: &[&str] = &[
    "",
    "0",
    "1",
    "-1",
    "20",
    "99999999999999999999999",
    "1.5",
    "-0",
    "1e3",
    "nan",
    "inf",
    "asc",
    "desc",
    "created_asc",
    "user",
    "agent",
    "inbound",
    "outbound",
    "working",
    "cancelled",
    "bogus",
    "%",
    "%zz",
    "%C3",
    "%C3%A9",
    "+",
    "%00",
];

/// Parameter names the query handlers read.
const QUERY_KEYS: &[&str] = &[
    "limit",
    "offset",
    "sort",
    "role",
    "direction",
    "peer_id",
    "context_id",
    "task_id",
    "received_after",
    "status",
    "state",
    "created_after",
    "updated_after",
    "cursor",
    "tag",
    "q",
    "since_seq",
    "wait",
];

/// A query string: raw text (any characters; the URL escapes what it must, `%` stays as
/// typed) or `key=value` pairs of the parameters above.
fn arb_query() -> BoxedStrategy<String> {
    let pair = (
        proptest::sample::select(QUERY_KEYS),
        prop_oneof![
            proptest::sample::select(QUERY_VALUES).prop_map(str::to_owned),
            ".{0,8}"
        ],
    )
        .prop_map(|(k, v)| format!("{k}={v}"));
    prop_oneof![
        ".{0,40}",
        "[a-z_=&%+0-9A-F.-]{0,40}",
        proptest::collection::vec(pair, 0..5).prop_map(|p| p.join("&")),
    ]
    .boxed()
}

/// Arbitrary bodies to the send endpoints.
#[test]
fn prop_http_send_bodies() {
    let bodies = prop_oneof![
        arb_body(),
        near(vec![
            json!({"role": "user", "text": "hi", "message_id": "m_1", "context_id": "c_1"}),
            json!({"role": "agent", "parts": parts(), "task_id": "t_1", "sync": true, "timeout": 0.1}),
            json!({"correlation_id": "msg_1", "text": "hi", "content": "hi"}),
        ]),
    ];
    run(HTTP_CASES, bodies, |body| {
        let s = shared();
        s.rt.block_on(async {
            for path in ["/message:send", "/send", "/reply"] {
                let (status, resp) = send(&s.node, Method::POST, path, body.clone()).await;
                check(path, status, &resp)?;
            }
            Ok(())
        })
    });
}

/// Arbitrary bodies to task creation (over HTTP and by calling the node), and to `:update`
/// and `:continue` of tasks made for the case, in each state a client finds tasks in.
#[test]
fn prop_http_task_bodies() {
    let states = proptest::sample::select(&["submitted", "working", "input_required"][..]);
    let bodies = prop_oneof![
        arb_body(),
        near(vec![
            json!({"role": "user", "text": "do it", "task_id": "task_fixed", "context_id": "c_1"}),
            json!({"payload": {"role": "user", "parts": parts()}, "message_id": "m_1", "delegate": false}),
            json!({"status": "completed", "artifact": {"parts": parts()}, "message": {"text": "done"}}),
            json!({"state": "failed", "error": "no", "artifact": null}),
            json!({"text": "more input"}),
            json!({"parts": parts()}),
        ]),
    ];
    run(HTTP_CASES, (bodies, states), |(body, state)| {
        let s = shared();
        s.rt.block_on(async {
            let (status, resp) = send(&s.node, Method::POST, "/tasks", body.clone()).await;
            check("POST /tasks", status, &resp)?;
            if let Ok(value) = serde_json::from_slice::<Value>(&body)
                && let Err(e) = s.node.server.node.create_task(&value).await
            {
                let no_peer = e.code.as_str() == "ERR_NOT_CONNECTED";
                prop_assert!(e.code.http_status() < 500 || no_peer, "create_task: {}", e);
            }
            // One task per action: an update that succeeds would change what :continue sees.
            let node = &s.node.server.node;
            for action in ["update", "continue"] {
                let (task, _) = node.create_task(&json!({})).await.expect("an empty task");
                if state != "submitted" {
                    let moved = node.update_task(&task.id, &json!({"status": state})).await;
                    moved.expect("a legal move");
                }
                let path = format!("/tasks/{}:{action}", task.id);
                let (status, resp) = send(&s.node, Method::POST, &path, body.clone()).await;
                check(&path, status, &resp)?;
            }
            Ok(())
        })
    });
}

/// Arbitrary bodies to connect, skill queries and card edits.
#[test]
fn prop_http_peer_skill_card_bodies() {
    let bodies = prop_oneof![
        arb_body(),
        near(vec![
            json!({"link": "acp://[::1", "name": "peer"}),
            json!({"skill_id": "chat", "constraints": {"input_mode": "text", "file_size_bytes": 10}}),
            json!({"skill_id": "", "constraints": {"input_mode": "text"}}),
            json!({"description": "props", "skills": ["a", "b"], "limitations": ["none"]}),
            json!({"availability": {"mode": "cron", "interval_seconds": 60, "timezone": "UTC"}}),
        ]),
    ];
    run(HTTP_CASES, bodies, |body| {
        let s = shared();
        s.rt.block_on(async {
            if let Ok(Value::Object(map)) = serde_json::from_slice(&body) {
                // Raw bytes can spell a valid link too.
                prop_assume!(defuse(map.clone()) == map);
            }
            for (method, path) in [
                (Method::POST, "/peers/connect"),
                (Method::POST, "/skills/query"),
                (Method::PATCH, "/card"),
            ] {
                let (status, resp) = send(&s.node, method.clone(), path, body.clone()).await;
                check(&format!("{method} {path}"), status, &resp)?;
            }
            let (status, resp) = s.node.get("/card").await;
            prop_assert_eq!(status, 200, "the card still reads: {}", resp);
            Ok(())
        })
    });
}

/// Arbitrary bodies to the webhook, extension and heartbeat endpoints: a 4xx or a success,
/// and no webhook is ever registered from generated input (see [`defuse`]).
#[test]
fn prop_http_webhook_extension_heartbeat_bodies() {
    let bodies = prop_oneof![
        arb_body(),
        near(vec![
            json!({"url": "http://127.0.0.1:9/hook"}),
            json!({"uri": "acp:ext:props-v1", "required": true, "params": {"k": "v"}}),
            json!({"uri": "https://example.com/ext/x"}),
            json!({"mode": "cron", "schedule": "0 */4 * * *", "timezone": "UTC"}),
        ]),
    ];
    run(HTTP_CASES, bodies, |body| {
        let s = shared();
        s.rt.block_on(async {
            if let Ok(Value::Object(map)) = serde_json::from_slice(&body) {
                // Raw bytes can spell a valid URL too.
                prop_assume!(defuse(map.clone()) == map);
            }
            for path in [
                "/webhooks/register",
                "/webhooks/deregister",
                "/extensions/register",
                "/extensions/unregister",
                "/availability/heartbeat",
            ] {
                let (status, resp) = send(&s.node, Method::POST, path, body.clone()).await;
                check(&format!("POST {path}"), status, &resp)?;
            }
            let (status, hooks) = s.node.get("/webhooks").await;
            prop_assert_eq!(status, 200);
            prop_assert_eq!(&hooks["count"], &json!(0), "{}", hooks);
            for path in ["/card", "/extensions", "/availability"] {
                let (status, resp) = s.node.get(path).await;
                prop_assert_eq!(status, 200, "{} still reads: {}", path, resp);
            }
            Ok(())
        })
    });
}

/// Arbitrary query strings to the listing endpoints. `/recv` gets `wait=0` last (the last
/// value of a key wins) so no case waits for a message.
#[test]
fn prop_http_query_strings() {
    run(HTTP_CASES, arb_query(), |query| {
        let s = shared();
        s.rt.block_on(async {
            for path in [
                "/messages",
                "/history",
                "/tasks",
                "/skills",
                "/context/ctx_1/messages",
            ] {
                let (status, resp) = get_query(&s.node, path, &query).await;
                check(&format!("GET {path}?{query}"), status, &resp)?;
            }
            let recv = format!("{query}&wait=0");
            let (status, resp) = get_query(&s.node, "/recv", &recv).await;
            check(&format!("GET /recv?{recv}"), status, &resp)?;
            Ok(())
        })
    });
}

/// Arbitrary ids in paths: raw text with stray `%` escapes (not UTF-8 once decoded, too) or
/// any text escaped as a path segment. Waits get `timeout=0`.
#[test]
fn prop_http_path_ids() {
    let raw = "([A-Za-z0-9._~:@!$&'()*+,;=-]|%[0-9A-Fa-f]{2}|%){0,12}";
    let escaped = any::<String>().prop_map(|id| {
        let mut url = reqwest::Url::parse("http://x/").expect("URL");
        url.path_segments_mut().expect("base").push(&id);
        url.path()[1..].to_owned()
    });
    run(HTTP_CASES, prop_oneof![raw, escaped], |id| {
        let s = shared();
        s.rt.block_on(async {
            for (method, path) in [
                (Method::GET, format!("/tasks/{id}")),
                (Method::GET, format!("/tasks/{id}:wait?timeout=0")),
                (Method::GET, format!("/tasks/{id}/wait?timeout=0")),
                (Method::DELETE, format!("/tasks/{id}")),
                (Method::POST, format!("/tasks/{id}:cancel")),
                (Method::GET, format!("/peers/{id}")),
                (Method::GET, format!("/peer/{id}")),
                (Method::DELETE, format!("/peers/{id}")),
                (Method::POST, format!("/peer/{id}/send")),
                (Method::GET, format!("/context/{id}/messages")),
                (Method::GET, format!("/wait/{id}?timeout=0")),
            ] {
                let what = format!("{method} {path}");
                let Ok(url) = reqwest::Url::parse(&format!("{}{path}", s.node.url)) else {
                    continue;
                };
                let resp = s
                    .node
                    .http
                    .request(method, url)
                    .header("content-type", "application/json")
                    .body(r#"{"role":"user","text":"hi"}"#)
                    .send()
                    .await
                    .expect("the node answers");
                let (status, body) = answer(resp).await;
                check(&what, status, &body)?;
            }
            Ok(())
        })
    });
}

/// The streaming inlet (`/messages:stream`): arbitrary request bodies as WebSocket frames
/// (text, or the raw bytes as a binary frame) and as the lines of an NDJSON body. Every frame
/// and every non-blank line gets exactly one answer, in order, each a success or an error body
/// whose `status` obeys the same contract as an HTTP answer; the WebSocket stays open.
#[test]
fn prop_inlet_frames_and_ndjson_lines() {
    let bodies = prop_oneof![
        arb_body(),
        near(vec![
            json!({"role": "user", "text": "hi", "message_id": "m_1", "context_id": "c_1"}),
            json!({"role": "agent", "parts": parts(), "task_id": "t_1", "sync": true, "timeout": 0.1}),
        ]),
    ];
    let requests = proptest::collection::vec((bodies, any::<bool>()), 1..6);
    run(HTTP_CASES, requests, |requests| {
        let s = shared();
        s.rt.block_on(async {
            let mut ws = s.node.ws("/messages:stream").await;
            for (body, binary) in &requests {
                let frame = if *binary {
                    Message::binary(body.clone())
                } else {
                    Message::text(String::from_utf8_lossy(body).into_owned())
                };
                ws.send(frame).await.expect("the inlet takes the frame");
            }
            for i in 0..requests.len() {
                let answer = common::ws_next_json(&mut ws, 30).await;
                prop_assert!(
                    answer.is_some(),
                    "frame {} of {:?} got no answer",
                    i,
                    requests
                );
                let answer = answer.unwrap_or_default();
                let status = answer["status"].as_u64().unwrap_or(200) as u16;
                check("WebSocket /messages:stream", status, &answer)?;
            }
            ws.close(None).await.expect("the inlet is still open");

            let ndjson: Vec<u8> = requests
                .iter()
                .flat_map(|(body, _)| body.iter().copied().chain([b'\n']))
                .collect();
            let lines = ndjson
                .split(|b| *b == b'\n')
                .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
                .count();
            let resp = s
                .node
                .http
                .post(format!("{}/messages:stream", s.node.url))
                .header("content-type", "application/x-ndjson")
                .body(ndjson)
                .send()
                .await
                .expect("the node answers");
            prop_assert_eq!(resp.status().as_u16(), 200);
            let text = resp.text().await.expect("body");
            let answers: Vec<&str> = text.lines().collect();
            prop_assert_eq!(answers.len(), lines, "{}", text);
            for line in answers {
                let answer: Value = serde_json::from_str(line).unwrap_or(Value::Null);
                let status = answer["status"].as_u64().unwrap_or(200) as u16;
                check("POST /messages:stream", status, &answer)?;
            }
            Ok(())
        })
    });
}

/// Arbitrary argument objects to every tool over Streamable HTTP (the ones without arguments
/// get them too: extra arguments must not break them either): each call ends in a result
/// (a tool error included) or a JSON-RPC error, never a transport failure, and the session
/// keeps working. `wait_seconds` is capped so no call waits.
#[test]
fn prop_mcp_tool_arguments() {
    let s = shared();
    let client: RunningService<RoleClient, ()> = s.rt.block_on(async {
        let transport =
            rmcp::transport::StreamableHttpClientTransport::from_uri(format!("{}/mcp", s.node.url));
        ().serve(transport).await.expect("MCP initialize over HTTP")
    });
    run(MCP_CASES, arb::arb_object(), |args| {
        let mut args = defuse(args);
        if args
            .get("wait_seconds")
            .and_then(Value::as_f64)
            .is_some_and(|w| w > 0.0)
        {
            args.insert("wait_seconds".into(), json!(0));
        }
        s.rt.block_on(async {
            for tool in common::MCP_TOOLS {
                let call = CallToolRequestParams::new(tool).with_arguments(args.clone());
                match client.peer().call_tool(call).await {
                    Ok(_) | Err(ServiceError::McpError(_)) => {}
                    Err(e) => prop_assert!(false, "{tool}: transport failure {e}"),
                }
            }
            Ok(())
        })
    });
    let tools =
        s.rt.block_on(client.peer().list_all_tools())
            .expect("the session still works");
    assert_eq!(tools.len(), common::MCP_TOOLS.len());
    s.rt.block_on(client.cancel()).expect("MCP session closes");
}

/// Arbitrary `tasks/get`, `tasks/update` and `tasks/cancel` requests from a client with the
/// tasks extension, about a real handle (of a task waiting for input) or any string, with
/// any input responses: each ends in a result or a JSON-RPC error, never a transport
/// failure, and the real handle still answers.
#[test]
fn prop_mcp_task_requests() {
    use rmcp::model::{
        CallToolResponse, CancelTaskParams, ClientCapabilities, ClientConfig, GetTaskParams,
        Implementation, UpdateTaskParams,
    };
    let s = shared();
    let caps = ClientCapabilities::builder().enable_tasks().build();
    let (client, handle) = s.rt.block_on(async {
        let transport =
            rmcp::transport::StreamableHttpClientTransport::from_uri(format!("{}/mcp", s.node.url));
        let client = ClientConfig::new(caps, Implementation::new("props", "0"))
            .serve(transport)
            .await
            .expect("MCP initialize over HTTP");
        let create = CallToolRequestParams::new("acp_task_create").with_arguments(
            json!({"text": "asks a question", "delegate": false})
                .as_object()
                .cloned()
                .unwrap(),
        );
        let Ok(CallToolResponse::Task(created)) = client.peer().call_tool_once(create).await else {
            panic!("a task for a tasks client");
        };
        let (s2, task) = s.node.get("/tasks?limit=1").await;
        assert_eq!(s2, 200);
        let id = task["tasks"][0]["id"].as_str().unwrap().to_owned();
        let (st, body) = s
            .node
            .post(
                &format!("/tasks/{id}:update"),
                json!({"status": "input_required", "error": "which one?"}),
            )
            .await;
        assert_eq!(st, 200, "{body}");
        (client, created.task.task_id)
    });
    let ids = prop_oneof![Just(handle.clone()), any::<String>()];
    let responses = proptest::collection::btree_map(
        prop_oneof![Just("question-1".to_owned()), any::<String>()],
        arb::arb_json(),
        0..3,
    );
    run(MCP_CASES, (ids, responses), |(id, responses)| {
        s.rt.block_on(async {
            let peer = client.peer();
            let outcomes = [
                peer.get_task(GetTaskParams::new(id.clone())).await.err(),
                peer.update_task(UpdateTaskParams::new(id.clone(), responses))
                    .await
                    .err(),
                if id == handle {
                    None
                } else {
                    peer.cancel_task(CancelTaskParams::new(id.clone()))
                        .await
                        .err()
                },
            ];
            for e in outcomes.into_iter().flatten() {
                prop_assert!(
                    matches!(e, ServiceError::McpError(_)),
                    "transport failure: {e}"
                );
            }
            Ok(())
        })
    });
    s.rt.block_on(client.peer().get_task(GetTaskParams::new(handle)))
        .expect("the handle still answers");
    s.rt.block_on(client.cancel()).expect("MCP session closes");
}

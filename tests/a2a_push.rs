//! A2A push notifications against a real node on loopback: a small HTTP receiver in the
//! test gets the task's updates (the task, its artifact, its final state) with each
//! config's token and `Authorization`; configs are listed, read and deleted over JSON-RPC
//! (1.0 and 0.3 names) and REST; another caller sees none of them; bad configs get A2A
//! errors, never a 5xx.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use acp_relay::config::A2aCredential;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use common::a2a::{a2a_message as message, a2a_request, a2a_rpc as rpc};
use common::{Lab, TestNode, eventually, start_with};
use serde_json::{Value, json};

const ALICE: &str = "alice-token-0123456789abcdef";
const BOB: &str = "bob-token-0123456789abcdef";

async fn a2a_node(lab: &Lab, name: &str) -> TestNode {
    let mut cfg = lab.config(name);
    cfg.a2a_tokens = vec![
        A2aCredential::parse(&format!("alice={ALICE}")).unwrap(),
        A2aCredential::parse(&format!("bob={BOB}")).unwrap(),
    ];
    cfg.a2a_wait = Duration::from_secs(5);
    start_with(cfg).await
}

/// A REST call with `token`.
async fn rest(
    node: &TestNode,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<&str>,
) -> (u16, Value) {
    a2a_request(node, token, method, &format!("/a2a/rest{path}"), body).await
}

/// A task of `token`'s caller, started and left to the agent (answered at once).
async fn new_task(node: &TestNode, token: &str, id: &str, configuration: Value) -> (u16, Value) {
    let mut cfg = configuration;
    cfg["returnImmediately"] = json!(true);
    rpc(
        node,
        token,
        "SendMessage",
        json!({"message": message(id, "hello"), "configuration": cfg}),
    )
    .await
}

/// One notification the receiver got.
#[derive(Debug, Clone)]
struct Push {
    path: String,
    token: Option<String>,
    authorization: Option<String>,
    body: Value,
}

/// A loopback HTTP server taking POSTs on `/hook/{name}`.
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Push>>>,
}

impl Receiver {
    async fn start() -> (Receiver, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}/hook", listener.local_addr().unwrap());
        let rx = Receiver::default();
        let app = axum::Router::new()
            .route("/hook/{name}", axum::routing::post(take))
            .with_state(rx.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (rx, base)
    }

    fn at(&self, name: &str) -> Vec<Push> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|p| p.path == name)
            .cloned()
            .collect()
    }
}

async fn take(
    State(rx): State<Receiver>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> &'static str {
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    rx.got.lock().unwrap().push(Push {
        path: name,
        token: h("x-a2a-notification-token"),
        authorization: h("authorization"),
        body: serde_json::from_slice(&body).expect("a JSON body"),
    });
    "ok"
}

/// The agent answers the message of `task` with `text` in that task (artifact + done);
/// other inbound messages are read past.
async fn agent_answers(node: &TestNode, task: &str, text: &str) {
    let mut m = None;
    for _ in 0..30 {
        let (_, got) = node.get("/recv?wait=1&limit=10").await;
        m = got["messages"]
            .as_array()
            .and_then(|l| l.iter().find(|m| m["task_id"] == task).cloned());
        if m.is_some() {
            break;
        }
    }
    let m = m.expect("the task's message reaches the inbox within 30 s");
    let (status, r) = node
        .post(
            "/message:send",
            json!({"role": "agent", "peer_id": "alice", "text": text, "task_id": m["task_id"]}),
        )
        .await;
    assert_eq!(status, 200, "{r}");
}

#[tokio::test]
async fn push_configs_get_the_tasks_updates_and_belong_to_their_caller() {
    let lab = Lab::new();
    let node = a2a_node(&lab, "pusher").await;
    let (rx, base) = Receiver::start().await;

    // The card says so.
    let card: Value = node
        .http
        .get(format!("{}/.well-known/agent-card.json", node.url))
        .bearer_auth(ALICE)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(card["capabilities"]["pushNotifications"], true, "{card}");

    // A config given with SendMessage (its id defaults to the task's).
    let (status, r) = new_task(
        &node,
        ALICE,
        "p1",
        json!({"taskPushNotificationConfig": {"url": format!("{base}/send"), "token": "tok-send",
            "authentication": {"scheme": "Bearer", "credentials": "push-cred"}}}),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    let task = r["result"]["task"]["id"].as_str().unwrap().to_owned();

    // A second one over REST, a third over 0.3 JSON-RPC.
    let (status, created) = rest(
        &node,
        ALICE,
        reqwest::Method::POST,
        &format!("/tasks/{task}/pushNotificationConfigs"),
        Some(
            &json!({"id": "second", "url": format!("{base}/rest"), "token": "tok-rest"})
                .to_string(),
        ),
    )
    .await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["id"], "second");
    assert_eq!(created["taskId"], task.as_str());
    assert_eq!(created["token"], "tok-rest");
    let (_, set03) = rpc(
        &node,
        ALICE,
        "tasks/pushNotificationConfig/set",
        json!({"taskId": task, "pushNotificationConfig": {"id": "third", "url": format!("{base}/v03"), "token": "tok-03"}}),
    )
    .await;
    assert_eq!(set03["result"]["taskId"], task.as_str(), "{set03}");
    assert_eq!(set03["result"]["pushNotificationConfig"]["id"], "third");

    // List and get, in both versions and both bindings.
    let (_, list) = rpc(
        &node,
        ALICE,
        "ListTaskPushNotificationConfigs",
        json!({"taskId": task}),
    )
    .await;
    let ids: Vec<&str> = list["result"]["configs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [task.as_str(), "second", "third"], "{list}");
    let (_, got) = rpc(
        &node,
        ALICE,
        "GetTaskPushNotificationConfig",
        json!({"taskId": task, "id": task}),
    )
    .await;
    assert_eq!(got["result"]["url"], format!("{base}/send"), "{got}");
    assert_eq!(got["result"]["authentication"]["scheme"], "Bearer");
    let (status, got) = rest(
        &node,
        ALICE,
        reqwest::Method::GET,
        &format!("/tasks/{task}/pushNotificationConfigs/second"),
        None,
    )
    .await;
    assert_eq!((status, &got["token"]), (200, &json!("tok-rest")), "{got}");
    let (_, list03) = rpc(
        &node,
        ALICE,
        "tasks/pushNotificationConfig/list",
        json!({"id": task}),
    )
    .await;
    assert_eq!(list03["result"].as_array().unwrap().len(), 3, "{list03}");

    // Another caller sees none of them: the task is not found for it.
    for (method, params) in [
        (
            "GetTaskPushNotificationConfig",
            json!({"taskId": task, "id": "second"}),
        ),
        ("ListTaskPushNotificationConfigs", json!({"taskId": task})),
        (
            "DeleteTaskPushNotificationConfig",
            json!({"taskId": task, "id": "second"}),
        ),
        (
            "CreateTaskPushNotificationConfig",
            json!({"taskId": task, "url": format!("{base}/bob")}),
        ),
    ] {
        let (status, r) = rpc(&node, BOB, method, params).await;
        assert_eq!(status, 200);
        assert_eq!(r["error"]["code"], -32001, "{method}: {r}");
    }
    let (status, r) = rest(
        &node,
        BOB,
        reqwest::Method::GET,
        &format!("/tasks/{task}/pushNotificationConfigs"),
        None,
    )
    .await;
    assert_eq!(status, 404, "{r}");
    let (status, _) = rest(
        &node,
        BOB,
        reqwest::Method::DELETE,
        &format!("/tasks/{task}/pushNotificationConfigs/second"),
        None,
    )
    .await;
    assert_eq!(status, 404);

    // The agent answers: every receiver gets the artifact and the final state.
    agent_answers(&node, &task, "pong").await;
    let done = |p: &[Push]| {
        p.iter().any(|p| {
            p.body["statusUpdate"]["status"]["state"] == "TASK_STATE_COMPLETED"
                || p.body["kind"] == "status-update" && p.body["status"]["state"] == "completed"
        })
    };
    eventually(20, "every receiver has the final state", || {
        let rx = rx.clone();
        async move { ["send", "rest", "v03"].iter().all(|n| done(&rx.at(n))) }
    })
    .await;
    let send = rx.at("send");
    assert!(send[0].body.get("task").is_some(), "{:?}", send[0]);
    assert_eq!(send[0].body["task"]["id"], task.as_str());
    assert!(
        send.iter()
            .any(|p| p.body["artifactUpdate"]["artifact"]["parts"][0]["text"] == "pong"),
        "{send:?}"
    );
    for p in &send {
        assert_eq!(p.token.as_deref(), Some("tok-send"));
        assert_eq!(p.authorization.as_deref(), Some("Bearer push-cred"));
    }
    let rest_got = rx.at("rest");
    assert!(
        rest_got
            .iter()
            .all(|p| p.token.as_deref() == Some("tok-rest") && p.authorization.is_none())
    );
    assert!(
        rest_got
            .iter()
            .any(|p| p.body["artifactUpdate"]["artifact"]["parts"][0]["text"] == "pong")
    );
    // A 0.3 config gets 0.3 shapes.
    let v03 = rx.at("v03");
    assert!(
        v03.iter().any(|p| p.body["kind"] == "artifact-update"),
        "{v03:?}"
    );
    assert!(v03.iter().all(|p| p.token.as_deref() == Some("tok-03")));

    // Delete (REST answers {}, JSON-RPC null); a second delete is no error.
    let (status, r) = rest(
        &node,
        ALICE,
        reqwest::Method::DELETE,
        &format!("/tasks/{task}/pushNotificationConfigs/second"),
        None,
    )
    .await;
    assert_eq!((status, r), (200, json!({})));
    let (_, r) = rpc(
        &node,
        ALICE,
        "DeleteTaskPushNotificationConfig",
        json!({"taskId": task, "id": "second"}),
    )
    .await;
    assert_eq!(r["result"], Value::Null, "{r}");
    assert!(r.get("error").is_none(), "{r}");
    let (status, r) = rest(
        &node,
        ALICE,
        reqwest::Method::GET,
        &format!("/tasks/{task}/pushNotificationConfigs/second"),
        None,
    )
    .await;
    assert_eq!(status, 404, "{r}");
    let (_, list) = rest(
        &node,
        ALICE,
        reqwest::Method::GET,
        &format!("/tasks/{task}/pushNotificationConfigs"),
        None,
    )
    .await;
    assert_eq!(list["configs"].as_array().unwrap().len(), 2, "{list}");
}

#[tokio::test]
async fn bad_push_configs_get_a2a_errors_never_a_5xx() {
    let lab = Lab::new();
    let node = a2a_node(&lab, "badpush").await;
    let (_, base) = Receiver::start().await;
    let (_, r) = new_task(&node, ALICE, "b1", json!({})).await;
    let task = r["result"]["task"]["id"].as_str().unwrap().to_owned();
    let url = format!("{base}/x");

    for (params, code) in [
        (json!({"taskId": "no-such-task", "url": url}), -32001),
        (json!({"url": url}), -32602),
        (json!({"taskId": task}), -32602),
        (json!({"taskId": task, "url": "ftp://example.com/"}), -32602),
        (
            json!({"taskId": task, "url": "http://user:pw@example.com/"}),
            -32602,
        ),
        (json!({"taskId": task, "url": "not a url"}), -32602),
        // Private and link-local targets, even for a caller on this machine.
        (
            json!({"taskId": task, "url": "http://10.1.2.3/hook"}),
            -32602,
        ),
        (
            json!({"taskId": task, "url": "http://169.254.169.254/latest"}),
            -32602,
        ),
        (json!({"taskId": task, "url": "http://[fd00::1]/"}), -32602),
        (json!({"taskId": task, "url": url, "token": "a\nb"}), -32602),
        (json!({"taskId": task, "url": url, "token": 5}), -32602),
        (
            json!({"taskId": task, "url": url, "authentication": {"scheme": "Bearer", "credentials": "x\ry"}}),
            -32602,
        ),
        (json!([1, 2]), -32602),
    ] {
        let (status, r) = rpc(
            &node,
            ALICE,
            "CreateTaskPushNotificationConfig",
            params.clone(),
        )
        .await;
        assert_eq!(status, 200, "{params}: {r}");
        assert_eq!(r["error"]["code"], code, "{params}: {r}");
    }
    for (method, params, code) in [
        (
            "GetTaskPushNotificationConfig",
            json!({"taskId": task, "id": "none"}),
            -32001,
        ),
        (
            "GetTaskPushNotificationConfig",
            json!({"taskId": "nope", "id": "x"}),
            -32001,
        ),
        (
            "ListTaskPushNotificationConfigs",
            json!({"taskId": "nope"}),
            -32001,
        ),
        ("ListTaskPushNotificationConfigs", json!({}), -32602),
        (
            "tasks/pushNotificationConfig/set",
            json!({"taskId": task}),
            -32602,
        ),
        ("tasks/pushNotificationConfig/get", json!({"id": 3}), -32602),
        (
            "tasks/pushNotificationConfig/list",
            json!({"id": "nope"}),
            -32001,
        ),
    ] {
        let (status, r) = rpc(&node, ALICE, method, params.clone()).await;
        assert_eq!(status, 200);
        assert_eq!(r["error"]["code"], code, "{method} {params}: {r}");
    }

    // A bad config refuses the message before it goes in.
    let (_, r) = new_task(
        &node,
        ALICE,
        "b2",
        json!({"taskPushNotificationConfig": {"url": "http://192.168.0.1/"}}),
    )
    .await;
    assert_eq!(r["error"]["code"], -32602, "{r}");
    let (_, r) = rpc(
        &node,
        ALICE,
        "message/send",
        json!({"message": {"kind": "message", "messageId": "b3", "role": "user",
            "parts": [{"kind": "text", "text": "x"}]},
            "configuration": {"blocking": false, "pushNotificationConfig": {"url": "gopher://x/"}}}),
    )
    .await;
    assert_eq!(r["error"]["code"], -32602, "{r}");
    let (_, tasks) = rpc(&node, ALICE, "ListTasks", json!({})).await;
    assert_eq!(
        tasks["result"]["tasks"].as_array().unwrap().len(),
        1,
        "{tasks}"
    );

    // REST: bad JSON, unknown task, bad URL.
    let path = format!("/tasks/{task}/pushNotificationConfigs");
    for (path, body, status) in [
        (path.as_str(), "{", 400),
        (
            path.as_str(),
            r#"{"url": "http://127.0.0.1:1/", "token": 1}"#,
            400,
        ),
        (path.as_str(), r#"{"url": "file:///etc/passwd"}"#, 400),
        (
            "/tasks/nope/pushNotificationConfigs",
            r#"{"url": "https://example.com/"}"#,
            404,
        ),
    ] {
        let (got, r) = rest(&node, ALICE, reqwest::Method::POST, path, Some(body)).await;
        assert_eq!(got, status, "{path} {body}: {r}");
        assert!(r["error"]["details"][0]["reason"].is_string(), "{r}");
    }

    // At most 10 configs on one task; the same id again replaces, not adds.
    for i in 0..10 {
        let (_, r) = rpc(
            &node,
            ALICE,
            "CreateTaskPushNotificationConfig",
            json!({"taskId": task, "id": format!("c{i}"), "url": url}),
        )
        .await;
        assert!(r.get("result").is_some(), "{r}");
    }
    let (_, r) = rpc(
        &node,
        ALICE,
        "CreateTaskPushNotificationConfig",
        json!({"taskId": task, "id": "c3", "url": format!("{base}/again")}),
    )
    .await;
    assert_eq!(r["result"]["url"], format!("{base}/again"), "{r}");
    let (_, r) = rpc(
        &node,
        ALICE,
        "CreateTaskPushNotificationConfig",
        json!({"taskId": task, "id": "c10", "url": url}),
    )
    .await;
    assert_eq!(r["error"]["code"], -32602, "{r}");
}

/// The official Python client creates, reads, lists and deletes a config over both
/// bindings (skipped without Python outside CI, a failure on CI).
#[tokio::test]
async fn the_official_python_client_manages_push_configs() {
    let Some(python) = common::python_a2a::a2a_python() else {
        return;
    };
    let script = common::python_a2a::a2a_script("push_configs.py");
    let lab = Lab::new();
    let node = a2a_node(&lab, "pypush").await;
    let (_, base) = Receiver::start().await;
    for (i, binding) in ["JSONRPC", "HTTP+JSON"].into_iter().enumerate() {
        let (_, r) = new_task(&node, ALICE, &format!("py{i}"), json!({})).await;
        let task = r["result"]["task"]["id"].as_str().unwrap().to_owned();
        let url = format!("{base}/py");
        let out = tokio::time::timeout(
            Duration::from_secs(120),
            tokio::process::Command::new(&python)
                .arg(&script)
                .args([&node.url, ALICE, binding, &task, &url])
                .kill_on_drop(true)
                .output(),
        )
        .await
        .expect("the script ends")
        .expect("python runs");
        assert!(
            out.status.success(),
            "{binding}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got: Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
        assert_eq!(got["created"]["id"], "py", "{binding}: {got}");
        assert_eq!(got["created"]["taskId"], task.as_str(), "{got}");
        assert_eq!(got["got"]["url"], url.as_str(), "{got}");
        assert_eq!(
            got["got"]["authentication"]["credentials"], "py-cred",
            "{got}"
        );
        assert_eq!(got["listed"], json!(["py"]), "{got}");
        assert_eq!(got["after_delete"], json!([]), "{got}");
    }

    // What the node POSTs parses as the SDK's StreamResponse, unknown fields refused.
    let (rx, base) = Receiver::start().await;
    let (_, r) = new_task(
        &node,
        ALICE,
        "py-parse",
        json!({"taskPushNotificationConfig": {"url": format!("{base}/parse")}}),
    )
    .await;
    let task = r["result"]["task"]["id"]
        .as_str()
        .expect("a task")
        .to_owned();
    agent_answers(&node, &task, "parsed pong").await;
    eventually(20, "the final state is pushed", || {
        let rx = rx.clone();
        async move {
            rx.at("parse")
                .iter()
                .any(|p| p.body["statusUpdate"]["status"]["state"] == "TASK_STATE_COMPLETED")
        }
    })
    .await;
    let lines: String = rx
        .at("parse")
        .iter()
        .map(|p| format!("{}\n", p.body))
        .collect();
    let mut child = tokio::process::Command::new(&python)
        .arg(common::python_a2a::a2a_script("parse_stream_responses.py"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python runs");
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(lines.as_bytes()).await.unwrap();
    }
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the script ends")
        .expect("python runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed: Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    let kinds = parsed["kinds"].as_array().unwrap();
    assert_eq!(kinds[0], "task", "{parsed}");
    assert!(kinds.contains(&json!("artifact_update")), "{parsed}");
    assert!(kinds.contains(&json!("status_update")), "{parsed}");
}

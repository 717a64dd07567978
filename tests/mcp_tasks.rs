//! A delegated task as a native MCP task (the `io.modelcontextprotocol/tasks` extension),
//! driven by rmcp's client speaking the extension against two real nodes: A's MCP client
//! creates a task for B's agent and gets a handle, B's side (REST) asks a question, A sees it
//! as a form and answers with `tasks/update`, B completes with an artifact and A's
//! `tasks/get` returns it as the tool result — also across a restart of A's `acp-relay mcp`
//! process; the cancel path; `acp_send` waiting for a reply as a task; a client without the
//! extension seeing today's tools and results; and the consent form (MRTR) for a changed
//! peer key.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Lab, TestNode, eventually, free_port};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, CancelTaskParams, ClientCapabilities,
    ClientConfig, CreateTaskResult, ElicitRequestParams, ElicitResult, ElicitationAction,
    ElicitationCapability, GetTaskParams, Implementation, InputRequest, ProtocolVersion,
    TaskPayload, TaskStatus, UpdateTaskParams,
};
use rmcp::model::{DetailedTask, TaskStatusNotificationParams};
use rmcp::service::{
    ClientLifecycleMode, ClientServiceExt, NotificationContext, RequestContext, RunningService,
};
use rmcp::transport::{ConfigureCommandExt, StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{ClientHandler, ErrorData, Peer, RoleClient, ServiceExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// An MCP host: with or without the tasks extension, answering consent forms, and
/// recording the `notifications/tasks` it gets.
#[derive(Clone)]
struct Host {
    tasks: bool,
    elicitation: bool,
    accept_keys: bool,
    statuses: Option<mpsc::UnboundedSender<DetailedTask>>,
}

impl Host {
    fn with_tasks() -> Host {
        Host {
            tasks: true,
            elicitation: false,
            accept_keys: false,
            statuses: None,
        }
    }

    fn plain() -> Host {
        Host {
            tasks: false,
            ..Host::with_tasks()
        }
    }

    fn consenting(accept_keys: bool) -> Host {
        Host {
            tasks: false,
            elicitation: true,
            accept_keys,
            statuses: None,
        }
    }

    /// A tasks host that hands out the task statuses pushed to it.
    fn listening() -> (Host, mpsc::UnboundedReceiver<DetailedTask>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let host = Host {
            statuses: Some(tx),
            ..Host::with_tasks()
        };
        (host, rx)
    }
}

impl ClientHandler for Host {
    fn get_info(&self) -> ClientConfig {
        let mut caps = ClientCapabilities::default();
        if self.tasks {
            caps = ClientCapabilities::builder().enable_tasks().build();
        }
        if self.elicitation {
            caps.elicitation = Some(ElicitationCapability::default());
        }
        ClientConfig::new(caps, Implementation::new("acp-relay-task-tests", "0"))
    }

    async fn on_task_status(
        &self,
        params: TaskStatusNotificationParams,
        _: NotificationContext<RoleClient>,
    ) {
        if let Some(tx) = &self.statuses {
            let _ = tx.send(params.task);
        }
    }

    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        _: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        let ElicitRequestParams::FormElicitationParams { message, .. } = request else {
            return Ok(ElicitResult::new(ElicitationAction::Decline));
        };
        assert!(
            message.contains("Accept the new key") || message.contains("Connect anyway"),
            "{message}"
        );
        Ok(ElicitResult::new(ElicitationAction::Accept)
            .with_content(json!({"accept": self.accept_keys})))
    }
}

type Client = RunningService<RoleClient, Host>;

/// `acp-relay mcp` on stdio, as a host starts it, with `host` as its client.
async fn spawn_stdio(dir: &Path, name: &str, host: Host) -> Client {
    let dir = dir.to_owned();
    let name = name.to_owned();
    let cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_acp-relay")).configure(move |c| {
        c.args([
            "mcp",
            "--name",
            &name,
            "--port",
            "0",
            "--ws-host",
            "127.0.0.1",
            "--advertise-host",
            "127.0.0.1",
        ])
        .arg("--data-dir")
        .arg(&dir)
        .env("ACP_LOG", "warn");
    });
    host.serve(TokioChildProcess::new(cmd).expect("spawn acp-relay mcp"))
        .await
        .expect("MCP initialize over stdio")
}

/// A session at a node's `/mcp` (initialize, as today's hosts do).
async fn connect_http(node: &TestNode, host: Host) -> Client {
    let transport = StreamableHttpClientTransport::from_uri(format!("{}/mcp", node.url));
    host.serve(transport)
        .await
        .expect("MCP initialize over HTTP")
}

/// A 2026-07-28 client (no initialize: each request carries its capabilities).
async fn connect_2026(node: &TestNode, host: Host) -> Client {
    let transport = StreamableHttpClientTransport::from_uri(format!("{}/mcp", node.url));
    let lifecycle = ClientLifecycleMode::Discover {
        preferred_versions: vec![ProtocolVersion::V_2026_07_28],
    };
    host.serve_with_lifecycle(transport, lifecycle)
        .await
        .expect("2026-07-28 session")
}

fn params(tool: &'static str, args: Value) -> CallToolRequestParams {
    CallToolRequestParams::new(tool).with_arguments(args.as_object().cloned().unwrap_or_default())
}

async fn call_once(client: &Peer<RoleClient>, tool: &'static str, args: Value) -> CallToolResponse {
    client
        .call_tool_once(params(tool, args))
        .await
        .unwrap_or_else(|e| panic!("{tool}: protocol error {e}"))
}

async fn complete(client: &Peer<RoleClient>, tool: &'static str, args: Value) -> CallToolResult {
    match call_once(client, tool, args).await {
        CallToolResponse::Complete(r) => {
            assert_ne!(r.is_error, Some(true), "{tool} failed: {:?}", r.content);
            r
        }
        other => panic!("{tool}: expected a complete result, got {other:?}"),
    }
}

async fn task_of(client: &Peer<RoleClient>, tool: &'static str, args: Value) -> CreateTaskResult {
    match call_once(client, tool, args).await {
        CallToolResponse::Task(t) => t,
        other => panic!("{tool}: expected a task, got {other:?}"),
    }
}

fn text_of(r: &CallToolResult) -> String {
    r.content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Polls `tasks/get` until the task is in `status` (30 s at most) and returns its payload.
async fn wait_status(client: &Peer<RoleClient>, id: &str, status: TaskStatus) -> TaskPayload {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let got = client
            .get_task(GetTaskParams::new(id))
            .await
            .expect("tasks/get");
        if got.task.status() == status {
            return got.task.payload;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "task {id} never reached {status:?}: {:?}",
            got.task
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The next `notifications/tasks` about `handle` in `status` (the ones before it are
/// skipped), within 10 s.
async fn next_pushed(
    pushed: &mut mpsc::UnboundedReceiver<DetailedTask>,
    handle: &str,
    status: TaskStatus,
) -> DetailedTask {
    loop {
        let task = tokio::time::timeout(Duration::from_secs(10), pushed.recv())
            .await
            .unwrap_or_else(|_| panic!("notifications/tasks: no {status:?} in time"))
            .expect("the channel");
        assert_eq!(task.task.task_id, handle);
        if task.status() == status {
            return task;
        }
    }
}

/// The one form of an `input_required` payload: (key, message, schema as JSON).
fn the_form(payload: &TaskPayload) -> (String, String, Value) {
    let TaskPayload::InputRequired { input_requests } = payload else {
        panic!("not input_required: {payload:?}");
    };
    assert_eq!(input_requests.len(), 1, "{input_requests:?}");
    let (key, request) = input_requests.iter().next().unwrap();
    let InputRequest::Elicitation(req) = request else {
        panic!("not an elicitation: {request:?}");
    };
    let ElicitRequestParams::FormElicitationParams {
        message,
        requested_schema,
        ..
    } = &req.params
    else {
        panic!("not a form: {req:?}");
    };
    (
        key.clone(),
        message.clone(),
        serde_json::to_value(requested_schema).unwrap(),
    )
}

fn result_of(payload: TaskPayload) -> CallToolResult {
    let TaskPayload::Completed { result } = payload else {
        panic!("not completed: {payload:?}");
    };
    serde_json::from_value(Value::Object(result)).expect("a CallToolResult")
}

async fn answer(client: &Peer<RoleClient>, id: &str, key: &str, content: Value) {
    let responses = [(
        key.to_owned(),
        serde_json::to_value(ElicitResult::new(ElicitationAction::Accept).with_content(content))
            .unwrap(),
    )]
    .into();
    client
        .update_task(UpdateTaskParams::new(id, responses))
        .await
        .expect("tasks/update");
}

/// Connects the MCP client's node to `b` (acp_connect) and waits until both see it.
/// The message of the consent form `acp_connect` to `link` answers with (no answer given).
async fn consent_message(client: &Peer<RoleClient>, link: &str) -> String {
    let asked = call_once(client, "acp_connect", json!({"link": link})).await;
    let CallToolResponse::InputRequired(asked) = asked else {
        panic!("expected a consent form, got {asked:?}");
    };
    let form = serde_json::to_value(&asked).unwrap();
    form["inputRequests"]["accept_new_key"]["params"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("a consent form: {form}"))
        .to_owned()
}

async fn connect_to(client: &Peer<RoleClient>, b: &TestNode) {
    let r = complete(client, "acp_connect", json!({"link": b.link()})).await;
    let c = r.structured_content.unwrap();
    assert_eq!(c["connected"], true, "{c}");
}

/// The ACP task id behind a handle (the result's `_meta`, for `subscriptions/listen`).
fn acp_task_id(created: &CreateTaskResult) -> String {
    let meta = created.meta.as_ref().expect("_meta");
    assert_eq!(
        meta.get("acp-relay/resource"),
        Some(&json!(format!(
            "acp://tasks/{}",
            meta["acp-relay/taskId"].as_str().unwrap()
        )))
    );
    meta["acp-relay/taskId"].as_str().unwrap().to_owned()
}

/// What B's side received about the task (oldest first).
async fn texts_on(b: &TestNode, task_id: &str) -> Vec<Value> {
    let (_, page) = b
        .get(&format!(
            "/messages?task_id={task_id}&direction=inbound&sort=asc"
        ))
        .await;
    page["messages"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn a_delegated_task_is_an_mcp_task_with_a_question_and_a_result() {
    let lab = Lab::new();
    let b = lab.start("beta").await;
    let (host, mut pushed) = Host::listening();
    let a = spawn_stdio(&lab.root.path().join("alpha"), "alpha", host).await;
    let info = a.peer_info().expect("server info");
    assert!(
        info.capabilities.supports_tasks(),
        "the extension is listed"
    );
    connect_to(&a, &b).await;

    let created = task_of(&a, "acp_task_create", json!({"text": "survey the harbour"})).await;
    assert_eq!(
        serde_json::to_value(&created).unwrap()["resultType"],
        "task"
    );
    let handle = created.task.task_id.clone();
    assert!(handle.starts_with("mcptask_"), "{handle}");
    assert_eq!(created.task.status, TaskStatus::Working);
    assert_eq!(created.task.ttl_ms, Some(7 * 24 * 3600 * 1000));
    assert_eq!(
        created.task.poll_interval_ms,
        Some(2_000),
        "a connected peer"
    );
    let id = acp_task_id(&created);
    eventually(10, "the task on beta", || async {
        b.get(&format!("/tasks/{id}")).await.0 == 200
    })
    .await;
    let payload = wait_status(&a, &handle, TaskStatus::Working).await;
    assert_eq!(payload, TaskPayload::Working);

    // B's agent asks a question (REST).
    let (s, r) = b
        .post(
            &format!("/tasks/{id}:update"),
            json!({"status": "input_required", "error": "Which harbour, Kiel or Lübeck?"}),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    let payload = wait_status(&a, &handle, TaskStatus::InputRequired).await;
    let (key, message, schema) = the_form(&payload);
    assert_eq!(key, "question-1");
    assert!(
        message.contains("Which harbour, Kiel or Lübeck?"),
        "{message}"
    );
    assert!(message.contains("beta"), "names who asks: {message}");
    assert_eq!(schema["properties"]["answer"]["type"], "string", "{schema}");
    // The session was told (notifications/tasks), with the same form.
    let told = next_pushed(&mut pushed, &handle, TaskStatus::InputRequired).await;
    assert_eq!(the_form(&told.payload).0, key);

    // A wrong key, then the right answer.
    let wrong = a
        .update_task(UpdateTaskParams::new(
            handle.clone(),
            [("question-9".to_owned(), json!({"action": "accept"}))].into(),
        ))
        .await;
    assert!(
        wrong.is_err(),
        "an answer to no outstanding question is refused"
    );
    answer(&a, &handle, &key, json!({"answer": "Kiel"})).await;
    wait_status(&a, &handle, TaskStatus::Working).await;
    eventually(
        10,
        "the answer reached beta as a message in the task",
        || async {
            texts_on(&b, &id)
                .await
                .iter()
                .any(|m| m["parts"][0]["content"] == "Kiel")
        },
    )
    .await;

    // B asks a second question in words only (its task keeps the first reason).
    let (s, r) = b
        .post(
            "/message:send",
            json!({"role": "agent", "task_id": id, "text": "How many berths?"}),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    let (s, r) = b
        .post(
            &format!("/tasks/{id}:update"),
            json!({"status": "input_required"}),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    let payload = wait_status(&a, &handle, TaskStatus::InputRequired).await;
    let (key, message, _) = the_form(&payload);
    assert_eq!(key, "question-2", "each question has a key of its own");
    assert!(
        message.contains("How many berths?"),
        "the new words: {message}"
    );
    answer(&a, &handle, &key, json!({"answer": "two"})).await;
    wait_status(&a, &handle, TaskStatus::Working).await;

    // B completes with an artifact.
    let (s, r) = b
        .post(
            &format!("/tasks/{id}:update"),
            json!({"status": "completed", "artifact": {"parts": [
                {"type": "text", "content": "Kiel: 14 berths free"},
                {"type": "data", "content": {"berths": 14}}
            ]}}),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    let result = result_of(wait_status(&a, &handle, TaskStatus::Completed).await);
    assert!(
        text_of(&result).contains("Kiel: 14 berths free"),
        "{}",
        text_of(&result)
    );
    // The session was told of the result too.
    let done = next_pushed(&mut pushed, &handle, TaskStatus::Completed).await;
    assert!(matches!(done.payload, TaskPayload::Completed { .. }));
    let structured = result.structured_content.expect("structured");
    assert_eq!(structured["id"], id.as_str());
    assert_eq!(structured["status"], "completed");
    assert_eq!(
        structured["artifacts"][0]["parts"][1]["content"]["berths"],
        14
    );

    // The ACP side is unchanged by MCP: the same task, readable with the old tool.
    let got = complete(&a, "acp_task_get", json!({"task_id": id})).await;
    assert_eq!(got.structured_content.unwrap()["status"], "completed");
    let unknown = a.get_task(GetTaskParams::new("mcptask_nope")).await;
    assert!(unknown.is_err(), "an unknown handle is a protocol error");
    a.cancel().await.unwrap();
}

/// Waits until no process holds `dir`'s lock (the stopped `acp-relay mcp` has exited), so
/// the next one takes the same data dir instead of a fallback.
async fn wait_unlocked(dir: &Path) {
    eventually(20, "the old process released its data dir", || async {
        std::fs::OpenOptions::new()
            .write(true)
            .open(dir.join("lock"))
            .is_ok_and(|f| f.try_lock().is_ok())
    })
    .await;
}

#[tokio::test]
async fn a_task_handle_survives_a_restart_of_the_mcp_process() {
    let lab = Lab::new();
    let b = lab.start("beta").await;
    let dir = lab.root.path().join("alpha");
    let a = spawn_stdio(&dir, "alpha", Host::with_tasks()).await;
    connect_to(&a, &b).await;
    let created = task_of(&a, "acp_task_create", json!({"text": "book a berth"})).await;
    let handle = created.task.task_id.clone();
    let id = acp_task_id(&created);
    eventually(10, "the task on beta", || async {
        b.get(&format!("/tasks/{id}")).await.0 == 200
    })
    .await;

    // The host restarts its MCP server.
    a.cancel().await.unwrap();
    wait_unlocked(&dir).await;
    let a = spawn_stdio(&dir, "alpha", Host::with_tasks()).await;
    let status = complete(&a, "acp_status", json!({})).await;
    assert!(
        status.structured_content.unwrap()["data_dir"]
            .as_str()
            .unwrap()
            .ends_with("alpha"),
        "the same data dir"
    );
    wait_status(&a, &handle, TaskStatus::Working).await;
    eventually(20, "alpha redialled beta", || async {
        b.get("/peers").await.1["active"].as_u64() >= Some(1)
    })
    .await;

    // B asks with a message carrying a JSON Schema, then waits for input.
    let schema = json!({"type": "object", "properties": {
        "date": {"type": "string", "format": "date", "title": "Arrival"},
        "berths": {"type": "integer", "minimum": 1}
    }, "required": ["date"]});
    let (s, r) = b
        .post(
            "/message:send",
            json!({"role": "agent", "task_id": id, "parts": [
                {"type": "text", "content": "When do you arrive, and how many berths?"},
                {"type": "data", "content": schema}
            ]}),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    let (s, r) = b
        .post(
            &format!("/tasks/{id}:update"),
            json!({"status": "input_required"}),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    let payload = wait_status(&a, &handle, TaskStatus::InputRequired).await;
    let (key, message, form) = the_form(&payload);
    assert!(message.contains("When do you arrive"), "{message}");
    assert_eq!(
        form["properties"]["date"]["format"], "date",
        "the remote schema: {form}"
    );
    assert_eq!(form["properties"]["berths"]["type"], "integer");

    // The host restarts again between the question and the answer.
    a.cancel().await.unwrap();
    wait_unlocked(&dir).await;
    let a = spawn_stdio(&dir, "alpha", Host::with_tasks()).await;
    let payload = wait_status(&a, &handle, TaskStatus::InputRequired).await;
    assert_eq!(the_form(&payload).0, key, "the same question");
    eventually(20, "alpha redialled beta", || async {
        b.get("/peers").await.1["active"].as_u64() >= Some(1)
    })
    .await;
    answer(
        &a,
        &handle,
        &key,
        json!({"date": "2026-12-24", "berths": 2}),
    )
    .await;
    eventually(10, "the answer reached beta", || async {
        texts_on(&b, &id)
            .await
            .iter()
            .any(|m| m["parts"][1]["content"]["date"] == "2026-12-24")
    })
    .await;
    let (s, r) = b
        .post(
            &format!("/tasks/{id}:update"),
            json!({"status": "completed", "artifact": {"parts": [{"type": "text", "content": "berth 7 booked"}]}}),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    let result = result_of(wait_status(&a, &handle, TaskStatus::Completed).await);
    assert!(
        text_of(&result).contains("berth 7 booked"),
        "{}",
        text_of(&result)
    );
    a.cancel().await.unwrap();
}

#[tokio::test]
async fn cancelling_an_mcp_task_cancels_the_acp_task_and_a_finished_one_refuses() {
    let lab = Lab::new();
    let b = lab.start("beta").await;
    let a_node = lab.start("alpha").await;
    let a = connect_http(&a_node, Host::with_tasks()).await;
    connect_to(&a, &b).await;
    let created = task_of(&a, "acp_task_create", json!({"text": "long job"})).await;
    let handle = created.task.task_id.clone();
    let id = acp_task_id(&created);
    eventually(10, "the task on beta", || async {
        b.get(&format!("/tasks/{id}")).await.0 == 200
    })
    .await;
    // Nothing to answer while the task is working.
    let early = a
        .update_task(UpdateTaskParams::new(
            handle.clone(),
            [("question-1".to_owned(), json!({"action": "accept"}))].into(),
        ))
        .await;
    assert!(early.is_err(), "no question is outstanding");

    a.cancel_task(CancelTaskParams::new(handle.clone()))
        .await
        .expect("tasks/cancel");
    assert_eq!(
        wait_status(&a, &handle, TaskStatus::Cancelled).await,
        TaskPayload::Cancelled
    );
    eventually(10, "canceled on beta (the peer is told)", || async {
        b.get(&format!("/tasks/{id}")).await.1["status"] == "canceled"
    })
    .await;
    let (_, on_a) = a_node.get(&format!("/tasks/{id}")).await;
    assert_eq!(on_a["status"], "canceled");
    let again = a.cancel_task(CancelTaskParams::new(handle.clone())).await;
    assert!(again.is_err(), "a finished task cannot be cancelled");

    // A failed task: failed with the remote's reason.
    let created = task_of(&a, "acp_task_create", json!({"text": "impossible job"})).await;
    let handle = created.task.task_id.clone();
    let id = acp_task_id(&created);
    eventually(10, "the task on beta", || async {
        b.get(&format!("/tasks/{id}")).await.0 == 200
    })
    .await;
    let (s, r) = b
        .post(
            &format!("/tasks/{id}:update"),
            json!({"status": "failed", "error": "the harbour is closed"}),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    let TaskPayload::Failed { error } = wait_status(&a, &handle, TaskStatus::Failed).await else {
        unreachable!()
    };
    assert_eq!(error["message"], "the harbour is closed");
    a.cancel().await.unwrap();
}

#[tokio::test]
async fn acp_send_can_wait_for_the_reply_as_a_task() {
    let lab = Lab::new();
    let b = lab.start("beta").await;
    let a_node = lab.start("alpha").await;
    let a = connect_http(&a_node, Host::with_tasks()).await;
    connect_to(&a, &b).await;
    let tools = a.list_all_tools().await.unwrap();
    let send = tools.iter().find(|t| t.name == "acp_send").unwrap();
    assert!(
        send.input_schema["properties"]["wait_for_reply"].is_object(),
        "a tasks client sees the argument"
    );

    // Without the argument: today's result.
    let plain = complete(&a, "acp_send", json!({"text": "just so you know"})).await;
    assert_eq!(plain.structured_content.unwrap()["delivery"], "delivered");

    let created = task_of(
        &a,
        "acp_send",
        json!({"text": "what is the tide at noon?", "wait_for_reply": true}),
    )
    .await;
    let handle = created.task.task_id.clone();
    assert_eq!(created.task.ttl_ms, Some(24 * 3600 * 1000));
    wait_status(&a, &handle, TaskStatus::Working).await;
    let find_question = || async {
        let (_, page) = b.get("/messages?direction=inbound&limit=5").await;
        page["messages"].as_array().and_then(|l| {
            l.iter()
                .find(|m| m["parts"][0]["content"] == "what is the tide at noon?")
                .cloned()
        })
    };
    eventually(10, "the question on beta", || async {
        find_question().await.is_some()
    })
    .await;
    let question = find_question().await.unwrap();
    let context = question["context_id"].as_str().expect("a new conversation");
    // Another message outside the conversation does not count.
    b.send_text("unrelated", json!({})).await;
    b.send_text("high tide, 3.2 m", json!({"context_id": context}))
        .await;
    let result = result_of(wait_status(&a, &handle, TaskStatus::Completed).await);
    assert!(
        text_of(&result).contains("high tide, 3.2 m"),
        "{}",
        text_of(&result)
    );
    assert_eq!(result.structured_content.unwrap()["context_id"], context);

    // A wait can be cancelled; then it is over.
    let created = task_of(
        &a,
        "acp_send",
        json!({"text": "anyone there?", "wait_for_reply": true}),
    )
    .await;
    a.cancel_task(CancelTaskParams::new(created.task.task_id.clone()))
        .await
        .unwrap();
    wait_status(&a, &created.task.task_id, TaskStatus::Cancelled).await;
    a.cancel().await.unwrap();
}

#[tokio::test]
async fn a_client_without_the_extension_sees_todays_tools_and_results() {
    let lab = Lab::new();
    let b = lab.start("beta").await;
    let a_node = lab.start("alpha").await;
    let plain = connect_http(&a_node, Host::plain()).await;
    let tasks = connect_http(&a_node, Host::with_tasks()).await;

    // tools/list: the same, but for the one task-only argument.
    let plain_tools = serde_json::to_value(plain.list_all_tools().await.unwrap()).unwrap();
    let mut task_tools = serde_json::to_value(tasks.list_all_tools().await.unwrap()).unwrap();
    for tool in task_tools.as_array_mut().unwrap() {
        if tool["name"] == "acp_send" {
            let props = tool["inputSchema"]["properties"].as_object_mut().unwrap();
            assert!(props.shift_remove("wait_for_reply").is_some());
        }
    }
    assert_eq!(
        serde_json::to_string(&plain_tools).unwrap(),
        serde_json::to_string(&task_tools).unwrap(),
        "byte for byte"
    );

    connect_to(&plain, &b).await;
    let r = complete(&plain, "acp_task_create", json!({"text": "as before"})).await;
    let wire = serde_json::to_value(&r).unwrap();
    assert!(wire.get("taskId").is_none(), "{wire}");
    assert!(
        text_of(&r).starts_with("Created task task_"),
        "{}",
        text_of(&r)
    );
    let task = r.structured_content.unwrap();
    assert_eq!(task["status"], "submitted");
    assert_eq!(task["payload"]["parts"][0]["content"], "as before");
    assert!(
        wire.get("resultType").is_none_or(|t| t == "complete"),
        "{wire}"
    );
    // wait_for_reply means nothing without the extension: a plain send.
    let r = complete(
        &plain,
        "acp_send",
        json!({"text": "hello", "wait_for_reply": true}),
    )
    .await;
    let sent = r.structured_content.unwrap();
    assert_eq!(sent["delivery"], "delivered");
    assert!(
        sent["context_id"].is_null(),
        "no conversation was started: {sent}"
    );
    // And tasks/* are not for it.
    let refused = plain.get_task(GetTaskParams::new("mcptask_x")).await;
    assert!(refused.is_err());
    plain.cancel().await.unwrap();
    tasks.cancel().await.unwrap();
}

#[tokio::test]
async fn a_changed_peer_key_is_asked_about_through_an_input_request() {
    let lab = Lab::new();
    let a = lab.start("alpha").await;
    let mut cfg = lab.config("beta");
    cfg.port = free_port();
    let b = common::start_with(cfg.clone()).await;
    // A link without the key: the key is pinned on first contact.
    let bare = b.link().split('?').next().unwrap().to_owned();
    let (s, r) = a.post("/peers/connect", json!({"link": bare})).await;
    assert_eq!(s, 200, "{r}");
    eventually(10, "pinned", || async {
        a.get("/peers").await.1["peers"][0]["verified"] == true
    })
    .await;
    // B comes back with another key (same token, same port).
    b.stop().await;
    cfg.identity_file = Some(lab.root.path().join("beta-new-identity.json"));
    let b = common::start_with(cfg).await;
    let new_did = b.get("/status").await.1["did"].clone();
    eventually(40, "refused for the key change", || async {
        let p = &a.get("/peers").await.1["peers"][0];
        p["identity"]["key_change"]["presented_did"] == new_did && p["connected"] == false
    })
    .await;

    // A client without input requests gets today's text naming the argument that accepts.
    let plain = connect_http(&a, Host::plain()).await;
    let r = complete(&plain, "acp_connect", json!({"link": bare})).await;
    assert!(text_of(&r).contains("accept_new_key"), "{}", text_of(&r));
    assert_eq!(r.structured_content.unwrap()["connected"], false);

    // A 2026-07-28 client with forms, whose user declines: the key stays refused.
    let declining = Host::consenting(false);
    let client = connect_2026(&a, declining).await;
    let message = consent_message(&client, &bare).await;
    assert!(message.contains("Accept the new key of peer"), "{message}");
    assert!(
        message.contains(new_did.as_str().unwrap()),
        "shows the new key: {message}"
    );
    let r = client
        .call_tool(params("acp_connect", json!({"link": bare})))
        .await
        .unwrap();
    assert_eq!(r.is_error, Some(true));
    assert!(text_of(&r).contains("not accepted"), "{}", text_of(&r));
    assert_eq!(
        a.get("/peers").await.1["peers"][0]["identity"]["key_change"]["presented_did"],
        new_did
    );
    client.cancel().await.unwrap();

    // One whose user accepts: the call goes on and connects with the new key.
    let accepting = Host::consenting(true);
    let client = connect_2026(&a, accepting).await;
    let r = client
        .call_tool(params("acp_connect", json!({"link": bare})))
        .await
        .expect("the call goes on after the answer");
    assert_ne!(r.is_error, Some(true), "{}", text_of(&r));
    eventually(20, "connected and verified with the new key", || async {
        let p = &a.get("/peers").await.1["peers"][0];
        p["verified"] == true && p["did"] == new_did
    })
    .await;
    client.cancel().await.unwrap();
    plain.cancel().await.unwrap();
}

#[tokio::test]
async fn a_2026_client_gets_tasks_per_request_and_hears_of_changes_on_listen() {
    let lab = Lab::new();
    let b = lab.start("beta").await;
    let a_node = lab.start("alpha").await;
    common::connect(&a_node, &b).await;
    // No initialize: the capabilities travel with every request.
    let a = connect_2026(&a_node, Host::with_tasks()).await;
    let created = task_of(&a, "acp_task_create", json!({"text": "count the boats"})).await;
    let handle = created.task.task_id.clone();
    let id = acp_task_id(&created);
    let resource = created.meta.as_ref().unwrap()["acp-relay/resource"]
        .as_str()
        .unwrap()
        .to_owned();
    let filter = rmcp::model::SubscriptionFilter::builder()
        .resource_subscription(resource.clone())
        .build();
    let mut sub = a.listen(filter).await.expect("subscriptions/listen");
    assert_eq!(
        sub.acknowledged()
            .resource_subscriptions
            .clone()
            .unwrap_or_default(),
        std::slice::from_ref(&resource)
    );
    eventually(10, "the task on beta", || async {
        b.get(&format!("/tasks/{id}")).await.0 == 200
    })
    .await;
    let (s, r) = b
        .post(
            &format!("/tasks/{id}:update"),
            json!({"status": "completed", "artifact": {"parts": [{"type": "text", "content": "12 boats"}]}}),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    let note = tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .expect("a notification in time")
        .expect("the stream")
        .expect("a notification");
    assert!(format!("{note:?}").contains(&resource), "{note:?}");
    let result = result_of(wait_status(&a, &handle, TaskStatus::Completed).await);
    assert!(
        text_of(&result).contains("12 boats"),
        "{}",
        text_of(&result)
    );
    a.cancel().await.unwrap();
}

#[tokio::test]
async fn a_changed_key_of_a_peer_that_dialled_us_is_asked_about_by_its_name() {
    let lab = Lab::new();
    let a = lab.start("alpha").await;
    let mut cfg = lab.config("beta");
    cfg.port = free_port();
    let b = common::start_with(cfg.clone()).await;
    // B dials A with a bare link; A pins B's key on first contact.
    let bare = a.link().split('?').next().unwrap().to_owned();
    let (s, r) = b.post("/peers/connect", json!({"link": bare})).await;
    assert_eq!(s, 200, "{r}");
    eventually(10, "pinned on alpha", || async {
        a.peer_named("beta").await["verified"] == true
    })
    .await;
    // B comes back with another key and redials by itself: A refuses it.
    b.stop().await;
    cfg.identity_file = Some(lab.root.path().join("beta-new-identity.json"));
    let b = common::start_with(cfg).await;
    let new_did = b.get("/status").await.1["did"].clone();
    eventually(40, "refused for the key change", || async {
        a.peer_named("beta").await["identity"]["key_change"]["presented_did"] == new_did
    })
    .await;

    let client = connect_2026(&a, Host::consenting(true)).await;
    let r = client
        .call_tool(params("acp_connect", json!({"link": "beta"})))
        .await
        .expect("the call goes on after the answer");
    assert_ne!(r.is_error, Some(true), "{}", text_of(&r));
    assert!(
        text_of(&r).contains("Accepted the new key"),
        "{}",
        text_of(&r)
    );
    eventually(40, "beta back with its new key", || async {
        let p = a.peer_named("beta").await;
        p["connected"] == true && p["did"] == new_did
    })
    .await;
    client.cancel().await.unwrap();
}

/// A link that names a key its host does not hold: the dial is refused; a client with forms
/// is asked whether to connect without that key (declined: still refused; accepted: the host
/// is dialled as for a link without a key, and its own key pinned), and a client without
/// forms gets the error text naming the argument that accepts.
#[tokio::test]
async fn a_link_whose_host_does_not_prove_its_key_is_asked_about() {
    let lab = Lab::new();
    let a = lab.start("alpha").await;
    let b = lab.start("beta").await;
    let a_did = a.get("/status").await.1["did"].as_str().unwrap().to_owned();
    let b_did = b.get("/status").await.1["did"].clone();
    // B's address and token, but A's key: B cannot prove it holds it.
    let bare = b.link().split('?').next().unwrap().to_owned();
    let wrong = format!("{bare}?did={a_did}");
    let (s, r) = a.post("/peers/connect", json!({"link": wrong})).await;
    assert_eq!(s, 200, "{r}");
    eventually(20, "refused for the link's key", || async {
        let p = &a.get("/peers").await.1["peers"][0];
        p["connected"] == false
            && p["last_error"].as_str().is_some_and(|e| {
                e.contains("not the one its link names") && e.contains("accept_new_key")
            })
    })
    .await;

    let plain = connect_http(&a, Host::plain()).await;
    let r = complete(&plain, "acp_connect", json!({"link": wrong})).await;
    assert!(text_of(&r).contains("accept_new_key"), "{}", text_of(&r));
    assert_eq!(r.structured_content.unwrap()["connected"], false);

    let client = connect_2026(&a, Host::consenting(false)).await;
    let message = consent_message(&client, &wrong).await;
    assert!(
        message.contains(&a_did) && message.contains(b_did.as_str().unwrap()),
        "names the link's key and the one presented: {message}"
    );
    let r = client
        .call_tool(params("acp_connect", json!({"link": wrong})))
        .await
        .unwrap();
    assert_eq!(r.is_error, Some(true));
    assert!(text_of(&r).contains("not accepted"), "{}", text_of(&r));
    assert_eq!(a.get("/peers").await.1["peers"][0]["connected"], false);
    client.cancel().await.unwrap();

    let client = connect_2026(&a, Host::consenting(true)).await;
    let r = client
        .call_tool(params("acp_connect", json!({"link": wrong})))
        .await
        .expect("the call goes on after the answer");
    assert_ne!(r.is_error, Some(true), "{}", text_of(&r));
    eventually(20, "connected, with B's own key pinned", || async {
        let p = &a.get("/peers").await.1["peers"][0];
        p["connected"] == true && p["verified"] == true && p["did"] == b_did
    })
    .await;
    let peers = a.get("/peers").await.1;
    assert_eq!(peers["count"], 1, "the same peer entry: {peers}");
    assert_eq!(peers["peers"][0]["identity"]["link_key_waived"], true);
    client.cancel().await.unwrap();
    plain.cancel().await.unwrap();
}

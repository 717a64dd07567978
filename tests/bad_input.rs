//! Bad input of every kind against real nodes: malformed and mistyped JSON bodies, invalid
//! fields, oversize bodies, unknown peers and tasks, illegal task transitions, bad links,
//! bad query parameters, unknown paths and methods, and garbage on the peer WebSocket port.
//!
//! Every bad HTTP request must get a 4xx with a
//! JSON body carrying `error_code` (`ERR_*`) and `error`; the connection must not be dropped;
//! after every case the node must still answer `GET /status`, and in the tests with a
//! connected peer the peer stays connected, what was accepted before is still there, and a
//! normal send afterwards still arrives.

mod common;

use std::time::Duration;

use common::{Lab, TestNode, connect, eventually};
use futures_util::{SinkExt, StreamExt};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

const INVALID: &str = "ERR_INVALID_REQUEST";
const NOT_FOUND: &str = "ERR_NOT_FOUND";
const TOO_LARGE: &str = "ERR_MSG_TOO_LARGE";
const NOT_ALLOWED: &str = "ERR_METHOD_NOT_ALLOWED";

/// A request body.
enum Body {
    None,
    Json(Value),
    /// Raw bytes sent as `application/json`.
    Raw(Vec<u8>),
}

fn raw(s: &str) -> Body {
    Body::Raw(s.as_bytes().to_vec())
}

fn js(v: Value) -> Body {
    Body::Json(v)
}

/// Sends one request; a transport failure (dropped connection) fails the test.
async fn call(
    node: &TestNode,
    method: Method,
    path: &str,
    body: Body,
    headers: &[(&str, &str)],
) -> (u16, Value, String) {
    let mut req = node
        .http
        .request(method.clone(), format!("{}{}", node.url, path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req = match body {
        Body::None => req,
        Body::Json(v) => req.json(&v),
        Body::Raw(b) => req.header("content-type", "application/json").body(b),
    };
    let shown = if path.len() > 120 {
        format!("{}…", &path[..120])
    } else {
        path.to_owned()
    };
    let resp = tokio::time::timeout(Duration::from_secs(20), req.send())
        .await
        .unwrap_or_else(|_| panic!("{method} {shown}: no answer within 20 s"))
        .unwrap_or_else(|e| panic!("{method} {shown}: connection dropped / request failed: {e}"));
    let status = resp.status().as_u16();
    let text = resp
        .text()
        .await
        .unwrap_or_else(|e| panic!("{method} {shown}: body could not be read: {e}"));
    let value = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, value, text)
}

/// Runs bad-input cases against one node and checks the node after each.
struct Checker<'a> {
    node: &'a TestNode,
    /// The node has a connected peer that must stay connected.
    peer_connected: bool,
    cases: usize,
}

impl<'a> Checker<'a> {
    fn new(node: &'a TestNode, peer_connected: bool) -> Self {
        Checker {
            node,
            peer_connected,
            cases: 0,
        }
    }

    /// Sends a bad request and asserts the status, the JSON error body and the node's health.
    async fn bad(&mut self, method: Method, path: &str, body: Body, status: u16, code: &str) {
        self.bad_with_headers(method, path, body, &[], status, code)
            .await;
    }

    async fn bad_with_headers(
        &mut self,
        method: Method,
        path: &str,
        body: Body,
        headers: &[(&str, &str)],
        status: u16,
        code: &str,
    ) -> Value {
        self.cases += 1;
        let shown = if path.len() > 120 {
            format!("{}…", &path[..120])
        } else {
            path.to_owned()
        };
        let (got, value, text) = call(self.node, method.clone(), path, body, headers).await;
        let what = format!("{method} {shown} -> {got} {text:.400}");
        assert!(got < 500, "server error: {what}");
        assert_eq!(got, status, "wrong status: {what}");
        assert!(value.is_object(), "error body is not a JSON object: {what}");
        let ec = value["error_code"].as_str();
        assert!(
            ec.is_some_and(|c| c.starts_with("ERR_")),
            "missing or malformed error_code: {what}"
        );
        assert_eq!(ec, Some(code), "wrong error_code: {what}");
        assert!(
            value["error"].as_str().is_some_and(|e| !e.is_empty()),
            "missing error string: {what}"
        );
        assert_eq!(value["ok"], false, "error body without ok:false: {what}");
        self.healthy(&what).await;
        value
    }

    /// The node still answers `/status` (and keeps its peer connected, when it has one).
    async fn healthy(&self, after: &str) {
        let (s, st, text) = call(self.node, Method::GET, "/status", Body::None, &[]).await;
        assert_eq!(
            s, 200,
            "node unhealthy after {after}: /status -> {s} {text:.300}"
        );
        if self.peer_connected {
            assert_eq!(st["connected"], true, "peer dropped after {after}");
        }
    }
}

/// Two connected nodes; `b` has sent one message ("before") to `a`, which `a` has received.
async fn pair(lab: &Lab) -> (TestNode, TestNode, String) {
    let a = lab.start("alpha").await;
    let b = lab.start("beta").await;
    let peer_on_b = connect(&b, &a).await;
    let sent = b
        .send_text(
            "before",
            json!({"message_id": "m_before", "context_id": "c"}),
        )
        .await;
    assert_eq!(sent["delivery"], "sent");
    eventually(5, "alpha received 'before'", || async {
        a.get("/messages?direction=inbound").await.1["total"] == 1
    })
    .await;
    (a, b, peer_on_b)
}

/// Nothing accepted before the bad input is lost, no bad input leaked through as a message,
/// and a normal send afterwards still arrives.
async fn nothing_lost(a: &TestNode, b: &TestNode) {
    let (_, out) = b.get("/messages?direction=outbound").await;
    assert_eq!(
        out["total"], 1,
        "exactly the one good message went out: {out}"
    );
    assert_eq!(out["messages"][0]["message_id"], "m_before");
    let (_, inb) = a.get("/messages?direction=inbound").await;
    assert_eq!(inb["total"], 1, "no bad input arrived as a message: {inb}");
    assert_eq!(inb["messages"][0]["message_id"], "m_before");
    assert_eq!(inb["messages"][0]["parts"][0]["content"], "before");

    let sent = b
        .send_text("after", json!({"message_id": "m_after", "context_id": "c"}))
        .await;
    assert_eq!(sent["delivery"], "sent", "{sent}");
    eventually(5, "alpha received 'after'", || async {
        a.get("/messages?direction=inbound").await.1["total"] == 2
    })
    .await;
    let (_, got) = a.get("/recv").await;
    let texts: Vec<&str> = got["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["parts"][0]["content"].as_str())
        .collect();
    assert_eq!(texts, ["before", "after"], "{got}");
    let (_, ctx) = b.get("/context/c/messages").await;
    assert_eq!(ctx["total"], 2, "{ctx}");
}

fn text_msg(extra: Value) -> Value {
    let mut body = json!({"role": "user", "parts": [{"type": "text", "content": "x"}]});
    for (k, v) in extra.as_object().expect("object") {
        body[k] = v.clone();
    }
    body
}

#[tokio::test]
async fn send_endpoints_refuse_bad_bodies_and_keep_the_peer() {
    let lab = Lab::new();
    let (a, b, peer) = pair(&lab).await;
    let mut c = Checker::new(&b, true);
    let post = Method::POST;

    // Malformed JSON.
    for path in ["/message:send", "/send", &format!("/peer/{peer}/send")] {
        c.bad(post.clone(), path, raw("{not json"), 400, INVALID)
            .await;
        c.bad(
            post.clone(),
            path,
            raw(r#"{"role":"user","text":"hi""#),
            400,
            INVALID,
        )
        .await;
    }
    c.bad(
        post.clone(),
        "/message:send",
        Body::Raw(vec![b'"', 0xff, 0xfe, 0xfd, b'"']),
        400,
        INVALID,
    )
    .await;
    c.bad(
        post.clone(),
        "/message:send",
        raw(&"[".repeat(10_000)),
        400,
        INVALID,
    )
    .await;
    c.bad(
        post.clone(),
        "/message:send",
        raw(&format!(
            "{}1{}",
            "{\"a\":".repeat(5_000),
            "}".repeat(5_000)
        )),
        400,
        INVALID,
    )
    .await;
    c.bad(
        post.clone(),
        "/message:send",
        raw(r#"{"role":"user","text":"x","timeout":1e999}"#),
        400,
        INVALID,
    )
    .await;

    c.bad(
        post.clone(),
        "/message:send",
        raw("\u{feff}{\"role\":\"user\",\"text\":\"bom\"}"),
        400,
        INVALID,
    )
    .await;

    // A burst of concurrent malformed requests.
    let burst = (0..64).map(|i| {
        call(
            &b,
            Method::POST,
            "/message:send",
            Body::Raw(format!("{{\"role\": \"user\", \"text\": {i}").into_bytes()),
            &[],
        )
    });
    for (s, v, t) in futures_util::future::join_all(burst).await {
        assert_eq!(s, 400, "{t}");
        assert_eq!(v["error_code"], INVALID, "{t}");
    }
    c.cases += 1;
    c.healthy("a burst of 64 concurrent malformed sends").await;

    // JSON of the wrong top-level type.
    for v in [
        json!([1, 2]),
        json!("a string"),
        json!(42),
        json!(null),
        json!(true),
    ] {
        c.bad(post.clone(), "/message:send", js(v.clone()), 400, INVALID)
            .await;
        c.bad(post.clone(), "/send", js(v.clone()), 400, INVALID)
            .await;
        c.bad(
            post.clone(),
            &format!("/peer/{peer}/send"),
            js(v),
            400,
            INVALID,
        )
        .await;
    }

    // Wrong field types.
    let long_id = "m".repeat(200);
    for body in [
        json!({"role": 5, "text": "x"}),
        json!({"role": "user", "parts": "not a list"}),
        json!({"role": "user", "parts": {"type": "text", "content": "x"}}),
        json!({"role": "user", "parts": [1, "two"]}),
        json!({"role": "user", "parts": [[{"type": "text", "content": "x"}]]}),
        json!({"role": "user", "text": 5}),
        json!({"role": "user", "text": ["x"]}),
        text_msg(json!({"task_id": {"id": "t"}})),
        text_msg(json!({"context_id": [1]})),
        text_msg(json!({"peer_id": 7})),
        text_msg(json!({"message_id": 1})),
        text_msg(json!({"message_id": long_id})),
        text_msg(json!({"sync": "yes"})),
        text_msg(json!({"create_task": 1})),
        text_msg(json!({"timeout": "10"})),
        text_msg(json!({"timeout": -1})),
        text_msg(json!({"timeout": 99_999})),
    ] {
        c.bad(post.clone(), "/message:send", js(body), 400, INVALID)
            .await;
    }

    // Missing or invalid fields.
    for body in [
        json!({}),
        json!({"text": "no role"}),
        json!({"role": "boss", "text": "x"}),
        json!({"role": "", "text": "x"}),
        json!({"role": "USER", "text": "x"}),
        json!({"role": "user"}),
        json!({"role": "user", "parts": []}),
        json!({"role": "user", "text": ""}),
        json!({"role": "user", "parts": null, "text": null}),
        json!({"role": "user", "parts": [{"type": "video", "content": "x"}]}),
        json!({"role": "user", "parts": [{"content": "untyped"}]}),
        json!({"role": "user", "parts": [{"type": 3, "content": "x"}]}),
        json!({"role": "user", "parts": [{"type": "text"}]}),
        json!({"role": "user", "parts": [{"type": "text", "content": 5}]}),
        json!({"role": "user", "parts": [{"type": "text", "content": "ok"}, {"type": "text"}]}),
        json!({"role": "user", "parts": [{"type": "file", "name": "f.txt"}]}),
        json!({"role": "user", "parts": [{"type": "file", "url": ""}]}),
        json!({"role": "user", "parts": [{"type": "file", "url": 5}]}),
        json!({"role": "user", "parts": [{"type": "data"}]}),
        json!({"role": "user", "parts": vec![json!({"type": "text", "content": "p"}); 257]}),
    ] {
        c.bad(post.clone(), "/message:send", js(body), 400, INVALID)
            .await;
    }
    c.bad(post.clone(), "/message:send", raw(""), 400, INVALID)
        .await;
    c.bad(
        post.clone(),
        "/send",
        js(json!({"role": "boss", "text": "x"})),
        400,
        INVALID,
    )
    .await;
    c.bad(
        post.clone(),
        &format!("/peer/{peer}/send"),
        js(json!({"role": "user", "parts": [{"type": "text"}]})),
        400,
        INVALID,
    )
    .await;

    // The failed request's message_id is echoed back.
    let err = c
        .bad_with_headers(
            post.clone(),
            "/message:send",
            js(json!({"role": "boss", "text": "x", "message_id": "m_bad"})),
            &[],
            400,
            INVALID,
        )
        .await;
    assert_eq!(err["failed_message_id"], "m_bad", "{err}");

    // Unknown peers.
    c.bad(
        post.clone(),
        "/peer/nope/send",
        js(json!({"role": "user", "text": "x"})),
        404,
        NOT_FOUND,
    )
    .await;
    c.bad(
        post.clone(),
        "/message:send",
        js(json!({"role": "user", "text": "x", "peer_id": "nope"})),
        404,
        NOT_FOUND,
    )
    .await;
    c.bad(
        post.clone(),
        "/send",
        js(json!({"text": "x", "peer_id": "nope"})),
        404,
        NOT_FOUND,
    )
    .await;
    c.bad(Method::GET, "/peers/nope", Body::None, 404, NOT_FOUND)
        .await;

    // /reply.
    c.bad(post.clone(), "/reply", raw("{oops"), 400, INVALID)
        .await;
    c.bad(post.clone(), "/reply", js(json!([1])), 400, INVALID)
        .await;
    c.bad(
        post.clone(),
        "/reply",
        js(json!({"text": "x"})),
        400,
        INVALID,
    )
    .await;
    c.bad(
        post.clone(),
        "/reply",
        js(json!({"correlation_id": 5, "text": "x"})),
        400,
        INVALID,
    )
    .await;
    c.bad(
        post.clone(),
        "/reply",
        js(json!({"correlation_id": "m_x", "parts": [{"type": "video"}]})),
        400,
        INVALID,
    )
    .await;
    c.bad(
        post.clone(),
        "/reply",
        js(json!({"correlation_id": "never_seen", "text": "x"})),
        404,
        NOT_FOUND,
    )
    .await;

    // /skills/query.
    c.bad(post.clone(), "/skills/query", raw("{"), 400, INVALID)
        .await;
    c.bad(post.clone(), "/skills/query", js(json!("x")), 400, INVALID)
        .await;
    c.bad(
        post.clone(),
        "/skills/query",
        js(json!({"skill_id": 5})),
        400,
        INVALID,
    )
    .await;
    c.bad(
        post.clone(),
        "/skills/query",
        js(json!({"constraints": "fast"})),
        400,
        INVALID,
    )
    .await;

    eprintln!("send endpoints: {} bad-input cases", c.cases);
    nothing_lost(&a, &b).await;
}

#[tokio::test]
async fn connect_refuses_bad_links() {
    let lab = Lab::new();
    let (a, b, _) = pair(&lab).await;
    let mut c = Checker::new(&b, true);
    let post = Method::POST;

    for path in ["/peers/connect", "/connect"] {
        c.bad(post.clone(), path, raw("{\"link\": "), 400, INVALID)
            .await;
        for v in [
            json!(["acp://127.0.0.1:1/tok"]),
            json!("acp://127.0.0.1:1/tok"),
            json!(7),
        ] {
            c.bad(post.clone(), path, js(v), 400, INVALID).await;
        }
    }
    let garbage: String = (0..10_000u32)
        .map(|i| char::from_u32(0x21 + (i * 7919) % 0x5e).unwrap())
        .collect();
    let own = b.link();
    let own_did = b.server.node.identity().did_acp().to_owned();
    for body in [
        json!({}),
        json!({"name": "x"}),
        json!({"link": null}),
        json!({"link": ""}),
        json!({"link": 5}),
        json!({"link": ["acp://127.0.0.1:1/tok"]}),
        json!({"link": "ftp://x"}),
        json!({"link": "ws://127.0.0.1:7801/tok_abc"}),
        json!({"link": "acp://host:99999/tok"}),
        json!({"link": "acp://host:0/tok"}),
        json!({"link": "acp://host:port/tok"}),
        json!({"link": "acp://:7801/tok"}),
        json!({"link": "acp://host:7801/"}),
        json!({"link": "acp://host:7801/tok with space"}),
        json!({"link": "acp://user@host:7801/tok"}),
        json!({"link": "acp://ho st:7801/tok"}),
        json!({"link": "acp://[::1]:99999/tok"}),
        json!({"link": "acp://[::1/tok"}),
        json!({"link": "acp://[]:1/tok"}),
        json!({"link": "ACP://127.0.0.1:1/tok"}),
        json!({"link": "acp+wss://relay/acp/tok"}),
        json!({"link": "acp+ws://relay/acp/tok"}),
        // Route hints without the key to dial, or that are not what they claim.
        json!({"link": "acp://127.0.0.1:1/tok?relay=https://relay.example/"}),
        json!({"link": "acp://127.0.0.1:1/tok?addr=203.0.113.7:4"}),
        json!({"link": format!("acp://127.0.0.1:1/tok?did={own_did}&relay=javascript:alert(1)")}),
        json!({"link": format!("acp://127.0.0.1:1/tok?did={own_did}&addr=example.org:4")}),
        json!({"link": format!("acp://127.0.0.1:1/tok?did={own_did}&addr=%zz")}),
        json!({"link": format!("acp://{}/tok", "x".repeat(5_000))}),
        json!({"link": garbage}),
        json!({"link": "acp://127.0.0.1:1/tok_ok", "name": "n".repeat(200)}),
        json!({"link": "acp://127.0.0.1:1/tok_ok", "name": 5}),
        json!({"link": own}),
    ] {
        c.bad(post.clone(), "/peers/connect", js(body), 400, INVALID)
            .await;
    }

    // None of the refused links became a peer.
    let (_, peers) = b.get("/peers").await;
    assert_eq!(peers["count"], 1, "{peers}");
    eprintln!("connect: {} bad-input cases", c.cases);
    nothing_lost(&a, &b).await;
}

#[tokio::test]
async fn card_patch_refuses_bad_edits() {
    let lab = Lab::new();
    let (a, b, _) = pair(&lab).await;
    let (s, r) = b
        .request(
            Method::PATCH,
            "/.well-known/acp.json",
            Some(json!({"description": "stable description"})),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    let mut c = Checker::new(&b, true);
    let patch = Method::PATCH;

    for path in ["/.well-known/acp.json", "/card"] {
        c.bad(
            patch.clone(),
            path,
            raw("{\"availability\": {"),
            400,
            INVALID,
        )
        .await;
        for v in [json!([{"description": "x"}]), json!("x"), json!(1.5)] {
            c.bad(patch.clone(), path, js(v), 400, INVALID).await;
        }
    }
    for body in [
        json!({}),
        json!({"name": "mallory"}),
        json!({"description": "ok", "capabilities": {}}),
        json!({"availability": {"mode": "sometimes"}}),
        json!({"availability": {"mode": 5}}),
        json!({"availability": {"bogus": 1}}),
        json!({"availability": "always"}),
        json!({"description": 5}),
        json!({"description": "d".repeat(5_000)}),
        json!({"skills": "translate"}),
        json!({"skills": [1, 2]}),
        json!({"limitations": "none"}),
        json!({"limitations": [1]}),
    ] {
        c.bad(
            patch.clone(),
            "/.well-known/acp.json",
            js(body),
            400,
            INVALID,
        )
        .await;
    }

    let (_, card) = b.get("/.well-known/acp.json").await;
    assert_eq!(card["description"], "stable description", "{card}");
    assert_eq!(card["name"], "beta");
    assert!(card.get("availability").is_none(), "{card}");
    let (_, avail) = b.get("/availability").await;
    assert_eq!(avail["mode"], "persistent", "{avail}");
    eprintln!("card: {} bad-input cases", c.cases);
    nothing_lost(&a, &b).await;
}

#[tokio::test]
async fn task_endpoints_refuse_bad_input_and_illegal_transitions() {
    let lab = Lab::new();
    let (a, b, _) = pair(&lab).await;
    let task_body = |id: &str| json!({"role": "user", "parts": [{"type": "text", "content": "work"}], "task_id": id});
    for id in ["t_keep", "t_done", "t_sub", "t_wait"] {
        let (s, r) = b.post("/tasks", task_body(id)).await;
        assert_eq!(s, 201, "{r}");
    }
    let update = |id: &str, body: Value| {
        let b = &b;
        let path = format!("/tasks/{id}:update");
        async move {
            let (s, r) = b.post(&path, body).await;
            assert_eq!(s, 200, "{path}: {r}");
        }
    };
    update("t_done", json!({"status": "working"})).await;
    update(
        "t_done",
        json!({"status": "completed", "artifact": {"parts": [{"type": "text", "content": "result"}]}}),
    )
    .await;
    update("t_sub", json!({"status": "working"})).await;
    update("t_wait", json!({"status": "input_required"})).await;

    let mut c = Checker::new(&b, true);
    let post = Method::POST;

    // Create: malformed, wrong top-level type, wrong fields.
    for path in ["/tasks", "/tasks/create"] {
        c.bad(post.clone(), path, raw("{\"role\":"), 400, INVALID)
            .await;
        for v in [json!([1]), json!("task"), json!(3)] {
            c.bad(post.clone(), path, js(v), 400, INVALID).await;
        }
    }
    for body in [
        json!({"payload": "x"}),
        json!({"payload": [1]}),
        json!({"role": 5, "parts": [{"type": "text", "content": "x"}]}),
        json!({"role": "boss", "parts": [{"type": "text", "content": "x"}]}),
        json!({"role": "user", "parts": "x"}),
        json!({"role": "user", "parts": [{"type": "video"}]}),
        json!({"role": "user", "parts": [{"type": "text"}]}),
        json!({"role": "user", "task_id": {"a": 1}}),
        json!({"role": "user", "task_id": "t".repeat(200)}),
        json!({"role": "user", "context_id": 5}),
        json!({"role": "user", "delegate": "yes"}),
    ] {
        c.bad(post.clone(), "/tasks", js(body), 400, INVALID).await;
    }
    c.bad(
        post.clone(),
        "/tasks",
        js(json!({"role": "user", "peer_id": "nope"})),
        404,
        NOT_FOUND,
    )
    .await;

    // Unknown task.
    c.bad(Method::GET, "/tasks/nope", Body::None, 404, NOT_FOUND)
        .await;
    c.bad(
        Method::GET,
        "/tasks/nope:wait?timeout=0",
        Body::None,
        404,
        NOT_FOUND,
    )
    .await;
    c.bad(
        Method::GET,
        "/tasks/nope:subscribe",
        Body::None,
        404,
        NOT_FOUND,
    )
    .await;
    c.bad(
        Method::GET,
        "/tasks/nope/wait?timeout=0",
        Body::None,
        404,
        NOT_FOUND,
    )
    .await;
    for path in ["/tasks/nope:update", "/tasks/nope/update"] {
        c.bad(
            post.clone(),
            path,
            js(json!({"status": "working"})),
            404,
            NOT_FOUND,
        )
        .await;
    }
    for path in ["/tasks/nope:cancel", "/tasks/nope/cancel"] {
        c.bad(post.clone(), path, Body::None, 404, NOT_FOUND).await;
    }
    for path in ["/tasks/nope:continue", "/tasks/nope/continue"] {
        c.bad(
            post.clone(),
            path,
            js(json!({"text": "more"})),
            404,
            NOT_FOUND,
        )
        .await;
    }
    c.bad(Method::DELETE, "/tasks/nope", Body::None, 404, NOT_FOUND)
        .await;
    c.bad(post.clone(), "/tasks/t_keep", js(json!({})), 400, INVALID)
        .await;
    c.bad(
        post.clone(),
        "/tasks/t_keep/bogus",
        js(json!({})),
        404,
        NOT_FOUND,
    )
    .await;
    c.bad(
        Method::GET,
        "/tasks/t_keep/bogus",
        Body::None,
        404,
        NOT_FOUND,
    )
    .await;

    // Update: malformed, wrong top-level type, wrong fields.
    for path in ["/tasks/t_keep:update", "/tasks/t_keep/update"] {
        c.bad(
            post.clone(),
            path,
            raw("{\"status\": working}"),
            400,
            INVALID,
        )
        .await;
        for v in [json!(["completed"]), json!("completed"), json!(1)] {
            c.bad(post.clone(), path, js(v), 400, INVALID).await;
        }
    }
    for body in [
        json!({"status": 5}),
        json!({"status": ["completed"]}),
        json!({"status": "bogus"}),
        json!({"status": "COMPLETED"}),
        json!({"state": "done"}),
        json!({"status": "working", "artifact": "x"}),
        json!({"artifact": "x"}),
        json!({"artifact": 5}),
        json!({"status": "completed", "artifact": {"parts": "x"}}),
        json!({"status": "completed", "artifact": {"parts": [{"type": "video"}]}}),
    ] {
        c.bad(post.clone(), "/tasks/t_keep:update", js(body), 400, INVALID)
            .await;
    }

    // Illegal transitions (409 with the reference's ERR_INVALID_REQUEST).
    for body in [
        json!({"status": "working"}),
        json!({"status": "input_required"}),
        json!({"status": "failed", "error": "late"}),
        json!({"status": "submitted"}),
        json!({"status": "cancelled"}),
        json!({}),
    ] {
        let err = c
            .bad_with_headers(
                post.clone(),
                "/tasks/t_done:update",
                js(body),
                &[],
                409,
                INVALID,
            )
            .await;
        assert_eq!(err["current_status"], "completed", "{err}");
    }
    c.bad(Method::DELETE, "/tasks/t_done", Body::None, 409, INVALID)
        .await;
    c.bad(
        post.clone(),
        "/tasks/t_sub:update",
        js(json!({"status": "submitted"})),
        409,
        INVALID,
    )
    .await;

    // :continue on a task that is not input_required.
    for id in ["t_keep", "t_sub", "t_done"] {
        c.bad(
            post.clone(),
            &format!("/tasks/{id}:continue"),
            js(json!({"text": "more"})),
            409,
            INVALID,
        )
        .await;
    }
    // :continue with a bad body on an input_required task.
    c.bad(
        post.clone(),
        "/tasks/t_wait:continue",
        raw("{text"),
        400,
        INVALID,
    )
    .await;
    for body in [
        json!(["more"]),
        json!({}),
        json!({"text": 5}),
        json!({"parts": "more"}),
        json!({"parts": []}),
        json!({"parts": [{"type": "text"}]}),
    ] {
        c.bad(
            post.clone(),
            "/tasks/t_wait:continue",
            js(body),
            400,
            INVALID,
        )
        .await;
    }

    // Nothing changed.
    let (_, t) = b.get("/tasks/t_keep").await;
    assert_eq!(t["status"], "submitted", "{t}");
    assert_eq!(t["artifacts"], json!([]), "{t}");
    let (_, t) = b.get("/tasks/t_done").await;
    assert_eq!(t["status"], "completed", "{t}");
    assert_eq!(t["artifacts"].as_array().map(Vec::len), Some(1), "{t}");
    assert!(t.get("error").is_none_or(Value::is_null), "{t}");
    let (_, t) = b.get("/tasks/t_sub").await;
    assert_eq!(t["status"], "working", "{t}");
    let (_, t) = b.get("/tasks/t_wait").await;
    assert_eq!(t["status"], "input_required", "{t}");
    assert_eq!(t["history"], json!([]), "{t}");
    let (_, list) = b.get("/tasks").await;
    assert_eq!(list["total"], 4, "no refused create made a task: {list}");

    eprintln!("tasks: {} bad-input cases", c.cases);
    nothing_lost(&a, &b).await;

    // Good task operations still work afterwards (the continuation goes to the only peer).
    let (s, r) = b
        .post("/tasks/t_wait:continue", json!({"text": "here you go"}))
        .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["task"]["status"], "working");
    eventually(5, "continuation arrives", || async {
        a.get("/messages?direction=inbound&task_id=t_wait").await.1["total"] == 1
    })
    .await;
    update("t_keep", json!({"status": "completed"})).await;
    assert_eq!(b.get("/tasks/t_keep").await.1["status"], "completed");
}

#[tokio::test]
async fn bad_query_parameters_are_400() {
    let lab = Lab::new();
    let (a, b, _) = pair(&lab).await;
    let mut c = Checker::new(&a, true);
    for path in [
        "/messages?limit=abc",
        "/messages?limit=1.5",
        "/messages?limit=-5",
        "/messages?offset=-1",
        "/messages?offset=x",
        "/messages?received_after=xyz",
        "/messages?role=boss",
        "/messages?direction=sideways",
        "/context/c/messages?limit=0",
        "/context/c/messages?limit=abc",
        "/context/c/messages?sort=sideways",
        "/context/c/messages?since_seq=-1",
        "/context/c/messages?since_seq=x",
        "/tasks?status=bogus",
        "/tasks?state=bogus",
        "/tasks?limit=abc",
        "/tasks?offset=-1",
        "/stream?since=abc",
        "/stream?since=-1",
        "/recv?limit=x",
        "/recv?limit=-1",
        "/recv?wait=abc",
        "/recv?wait=-1",
        "/history?limit=abc",
        "/skills?limit=abc",
        "/skills?offset=-2",
        "/wait/m_before?timeout=abc",
        "/wait/m_before?timeout=-3",
        "/tasks/nope:wait?timeout=abc",
        "/messages?limit=%FF",
        "/messages?limit=1&limit=abc",
        "/recv?limit=99999999999999999999999999",
        "/wait/m_before?timeout=NaN",
        "/recv?wait=inf",
        "/history?limit=-1",
    ] {
        c.bad(Method::GET, path, Body::None, 400, INVALID).await;
    }
    c.bad_with_headers(
        Method::GET,
        "/stream",
        Body::None,
        &[("last-event-id", "abc")],
        400,
        INVALID,
    )
    .await;
    // The refused /recv calls consumed nothing.
    let (_, inbox) = a.get("/messages?direction=inbound").await;
    assert_eq!(inbox["total"], 1);
    eprintln!("query parameters: {} bad-input cases", c.cases);
    nothing_lost(&a, &b).await;
}

#[tokio::test]
async fn unknown_paths_wrong_methods_and_unsupported_endpoints() {
    let lab = Lab::new();
    let (a, b, _) = pair(&lab).await;
    let mut c = Checker::new(&b, true);
    for path in [
        "/nope",
        "/message:sned",
        "/tasks/a/b/c",
        "/peers/x/y/z",
        "/%2e%2e/etc/passwd",
    ] {
        c.bad(Method::GET, path, Body::None, 404, NOT_FOUND).await;
    }
    c.bad(
        Method::POST,
        "/nope",
        js(json!({"role": "user"})),
        404,
        NOT_FOUND,
    )
    .await;
    for (method, path) in [
        (Method::DELETE, "/status"),
        (Method::POST, "/status"),
        (Method::GET, "/message:send"),
        (Method::PUT, "/message:send"),
        (Method::PUT, "/tasks"),
        (Method::DELETE, "/peers"),
        (Method::PATCH, "/messages"),
        (Method::GET, "/reply"),
        (Method::POST, "/recv"),
        (Method::DELETE, "/.well-known/did.json"),
        (Method::POST, "/.well-known/jwks.json"),
        (Method::GET, "/identity/delegate"),
        (Method::PUT, "/verify/card"),
        (Method::POST, "/extensions"),
        (Method::GET, "/webhooks/register"),
        (Method::GET, "/availability/heartbeat"),
        (Method::POST, "/discover"),
        (Method::DELETE, "/peers/discover"),
        (Method::POST, "/ws/stream"),
        (Method::DELETE, "/messages:stream"),
    ] {
        c.bad(method, path, Body::None, 405, NOT_ALLOWED).await;
    }
    let resp = b
        .http
        .delete(format!("{}/status", b.url))
        .send()
        .await
        .expect("DELETE /status");
    let allow = resp
        .headers()
        .get("allow")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert!(
        allow.contains("GET"),
        "405 names the allowed methods: {allow:?}"
    );
    eprintln!("routing: {} bad-input cases", c.cases);
    nothing_lost(&a, &b).await;
}

#[tokio::test]
async fn oversize_bodies_and_messages_are_413() {
    let lab = Lab::new();
    let mut cfg = lab.config("small");
    cfg.max_msg_size = 4096;
    let small = common::start_with(cfg).await;
    let other = lab.start("other").await;
    let peer = connect(&small, &other).await;
    let before = small
        .send_text("before", json!({"message_id": "m_before"}))
        .await;
    assert_eq!(before["delivery"], "sent");
    eventually(5, "'before' arrives", || async {
        other.get("/messages?direction=inbound").await.1["total"] == 1
    })
    .await;

    let mut c = Checker::new(&small, true);
    let post = Method::POST;
    // Bodies above max_msg_size + 64 KiB are refused by the body limit.
    let huge = json!({"role": "user", "text": "h".repeat(4096 + 64 * 1024 + 4096)}).to_string();
    for path in [
        "/message:send",
        "/send",
        &format!("/peer/{peer}/send"),
        "/tasks",
        "/tasks/nope:update",
        "/peers/connect",
        "/reply",
    ] {
        c.bad(post.clone(), path, raw(&huge), 413, TOO_LARGE).await;
    }
    c.bad(
        Method::PATCH,
        "/.well-known/acp.json",
        raw(&huge),
        413,
        TOO_LARGE,
    )
    .await;
    // Messages just above max_msg_size (but far below the body limit) are refused too.
    let text = "t".repeat(4200);
    let peer_path = format!("/peer/{peer}/send");
    for (path, body) in [
        ("/message:send", json!({"role": "user", "text": text})),
        ("/send", json!({"text": text})),
        (peer_path.as_str(), json!({"text": text})),
        (
            "/message:send",
            json!({"role": "agent", "parts": [{"type": "data", "content": {"blob": text}}]}),
        ),
        (
            "/message:send",
            json!({"role": "user", "parts": vec![json!({"type": "text", "content": "x".repeat(100)}); 50]}),
        ),
    ] {
        c.bad(post.clone(), path, js(body), 413, TOO_LARGE).await;
    }

    let (_, out) = small.get("/messages?direction=outbound").await;
    assert_eq!(out["total"], 1, "no oversize message was stored: {out}");
    let (_, st) = small.get("/status").await;
    assert_eq!(st["messages_sent"], 1, "{st}");
    // A message just under the limit still goes through.
    let after = small
        .send_text(&"a".repeat(3000), json!({"message_id": "m_after"}))
        .await;
    assert_eq!(after["delivery"], "sent", "{after}");
    eventually(5, "'after' arrives", || async {
        other.get("/messages?direction=inbound").await.1["total"] == 2
    })
    .await;
    let (_, got) = other.get("/recv").await;
    assert_eq!(got["messages"][0]["message_id"], "m_before", "{got}");
    assert_eq!(got["messages"][1]["message_id"], "m_after", "{got}");
    eprintln!("oversize: {} bad-input cases", c.cases);
}

// ---- Peer port (WebSocket) ----

fn ws_url(node: &TestNode, token: &str) -> String {
    format!("ws://127.0.0.1:{}/{}", node.server.ws_addr.port(), token)
}

async fn status_of(node: &TestNode) -> Value {
    let (s, st) = node.get("/status").await;
    assert_eq!(s, 200, "node unhealthy: {st}");
    st
}

#[tokio::test]
async fn ws_wrong_token_gets_error_frame_and_close() {
    let lab = Lab::new();
    let n = lab.start("host").await;
    let token = n.server.node.token().to_owned();
    for bad in [
        "tok_wrong".to_owned(),
        String::new(),
        format!("{token}x"),
        token[..token.len() - 1].to_owned(),
        format!("x/{token}"),
    ] {
        let (mut ws, _) = tokio_tungstenite::connect_async(ws_url(&n, &bad))
            .await
            .unwrap_or_else(|e| panic!("handshake with token {bad:?}: {e}"));
        let first = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .unwrap_or_else(|_| panic!("no frame for token {bad:?}"));
        let text = match first {
            Some(Ok(Message::Text(t))) => t.to_string(),
            other => panic!("expected an error frame for token {bad:?}, got {other:?}"),
        };
        let v: Value = serde_json::from_str(&text).expect("error frame is JSON");
        assert_eq!(v["type"], "error", "{v}");
        assert_eq!(v["code"], "invalid_token", "{v}");
        // Then the node closes the connection.
        let closed = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match ws.next().await {
                    None | Some(Ok(Message::Close(_))) | Some(Err(_)) => return true,
                    Some(Ok(_)) => continue,
                }
            }
        })
        .await;
        assert_eq!(closed, Ok(true), "connection with token {bad:?} not closed");
        status_of(&n).await;
    }
    let (_, peers) = n.get("/peers").await;
    assert_eq!(
        peers["count"], 0,
        "a refused dialler became a peer: {peers}"
    );
    // A real peer can still connect.
    let b = lab.start("beta").await;
    connect(&b, &n).await;
    b.send_text("hello", json!({})).await;
    eventually(5, "message arrives", || async {
        n.get("/messages?direction=inbound").await.1["total"] == 1
    })
    .await;
}

#[tokio::test]
async fn ws_garbage_frames_are_rejected_without_dropping_the_peer() {
    let lab = Lab::new();
    let mut cfg = lab.config("host");
    cfg.max_msg_size = 4096;
    let n = common::start_with(cfg).await;
    let token = n.server.node.token().to_owned();
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url(&n, &token))
        .await
        .expect("handshake");
    // The host sends its card first.
    let first = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("host card in time");
    match first {
        Some(Ok(Message::Text(t))) => {
            let v: Value = serde_json::from_str(t.as_str()).expect("card is JSON");
            assert_eq!(v["type"], "acp.agent_card", "{v}");
        }
        other => panic!("expected the host's card, got {other:?}"),
    }
    ws.send(Message::text(
        json!({"type": "acp.agent_card", "card": {"name": "mallory"}}).to_string(),
    ))
    .await
    .expect("send card");
    eventually(5, "mallory connected", || async {
        n.get("/peers").await.1["active"] == 1
    })
    .await;
    let rejected0 = status_of(&n).await["frames_rejected"]
        .as_u64()
        .expect("frames_rejected");

    let big = json!({
        "type": "acp.message", "message_id": "m_big", "role": "user",
        "parts": [{"type": "text", "content": "b".repeat(10 * 1024)}],
    })
    .to_string();
    // Frames that are not a JSON object, binary frames and oversize frames: always refused
    // (counted in frames_rejected), never stored.
    let must_reject: Vec<Message> = vec![
        Message::text("this is not json"),
        Message::text(""),
        Message::text("{\"type\": \"acp.message\", \"parts\": ["),
        Message::text("[1, 2, 3]"),
        Message::text("\"just a string\""),
        Message::text("42"),
        Message::binary(vec![0u8, 159, 146, 150, 255]),
        Message::binary(
            json!({"type": "acp.message", "message_id": "m_bin",
                   "parts": [{"type": "text", "content": "bin"}]})
            .to_string()
            .into_bytes(),
        ),
        Message::text(big),
    ];
    // JSON objects that are not valid messages (unknown type, invalid parts, task frames
    // without ids): the node may refuse them (counted) or keep them as a (legacy) message,
    // but must neither drop the connection nor lose them silently.
    let odd: Vec<Message> = vec![
        Message::text(json!({"type": "acp.bogus", "x": 1}).to_string()),
        Message::text(json!({"no_type": true}).to_string()),
        Message::text(
            json!({"type": "acp.message", "message_id": "m_bad1", "parts": "nope"}).to_string(),
        ),
        Message::text(
            json!({"type": "acp.message", "message_id": "m_bad2", "parts": []}).to_string(),
        ),
        Message::text(
            json!({"type": "acp.message", "message_id": "m_bad3", "parts": [{"type": "video"}]})
                .to_string(),
        ),
        Message::text(
            json!({"type": "acp.message", "message_id": "m_bad4", "parts": [{"type": "text"}]})
                .to_string(),
        ),
        Message::text(
            json!({"type": "acp.message", "message_id": "m_bad5", "parts": [1, "two"]}).to_string(),
        ),
        Message::text(json!({"type": "acp.message", "message_id": "m_bad6"}).to_string()),
        Message::text(json!({"type": "task.updated", "status": "completed"}).to_string()),
        Message::text(
            json!({"type": "task.updated", "task_id": "t1", "status": "bogus"}).to_string(),
        ),
        Message::text(json!({"type": "task.delegate", "payload": {}}).to_string()),
    ];
    let n_reject = must_reject.len() as u64;
    let n_total = n_reject + odd.len() as u64;
    for (i, frame) in must_reject.into_iter().chain(odd).enumerate() {
        ws.send(frame)
            .await
            .unwrap_or_else(|e| panic!("garbage frame {i}: connection dropped: {e}"));
        status_of(&n).await;
    }
    // A valid message after the garbage arrives.
    ws.send(Message::text(
        json!({
            "type": "acp.message", "message_id": "m_ok", "from": "mallory", "role": "user",
            "parts": [{"type": "text", "content": "still here"}],
        })
        .to_string(),
    ))
    .await
    .expect("valid frame sent");
    let has = |list: &Value, id: &str| {
        list["messages"]
            .as_array()
            .is_some_and(|m| m.iter().any(|x| x["message_id"] == id))
    };
    eventually(5, "valid message arrives", || async {
        has(
            &n.get("/messages?direction=inbound&limit=100").await.1,
            "m_ok",
        )
    })
    .await;
    let (_, got) = n.get("/recv?limit=100").await;
    let ok = got["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .find(|m| m["message_id"] == "m_ok")
        .unwrap_or_else(|| panic!("m_ok not in /recv: {got}"));
    assert_eq!(ok["parts"][0]["content"], "still here", "{ok}");
    assert_eq!(ok["role"], "user", "{ok}");
    for refused in ["m_big", "m_bin"] {
        assert!(!has(&got, refused), "{refused} must not be stored: {got}");
    }

    let st = status_of(&n).await;
    let rejected = st["frames_rejected"].as_u64().unwrap() - rejected0;
    assert!(rejected >= 6, "frames_rejected grew by {rejected}: {st}");
    assert!(
        rejected >= n_reject,
        "every non-object, binary and oversize frame is counted ({rejected} < {n_reject}): {st}"
    );
    let kept = st["messages_received"].as_u64().unwrap() - 1;
    assert_eq!(
        rejected + kept,
        n_total,
        "each of the {n_total} garbage frames is either counted as rejected ({rejected}) or \
         kept as a message ({kept}), none lost silently or counted twice: {st}"
    );
    assert_eq!(st["connected"], true, "{st}");
    let (_, peers) = n.get("/peers").await;
    assert_eq!(peers["active"], 1, "{peers}");
    assert_eq!(peers["peers"][0]["agent_name"], "mallory", "{peers}");
    assert_eq!(peers["peers"][0]["connected"], true, "{peers}");

    // The connection still works both ways: the host can send to mallory.
    let sent = n.send_text("back to you", json!({})).await;
    assert_eq!(sent["delivery"], "sent", "{sent}");
    let echoed = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(msg)) = ws.next().await {
            if let Message::Text(t) = msg {
                let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
                if v["type"] == "acp.message" {
                    return v;
                }
            }
        }
        Value::Null
    })
    .await
    .expect("host's message reaches the peer");
    assert_eq!(echoed["parts"][0]["content"], "back to you", "{echoed}");
}

#[tokio::test]
async fn ws_garbage_instead_of_card_is_survivable() {
    let lab = Lab::new();
    let n = lab.start("host").await;
    let token = n.server.node.token().to_owned();
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url(&n, &token))
        .await
        .expect("handshake");
    // First frame: garbage instead of a card. Then a valid message.
    ws.send(Message::text("\u{0}\u{1}garbage"))
        .await
        .expect("send");
    ws.send(Message::text(
        json!({"type": "acp.message", "message_id": "m_1", "role": "agent",
               "parts": [{"type": "text", "content": "no card"}]})
        .to_string(),
    ))
    .await
    .expect("send");
    eventually(5, "message arrives", || async {
        n.get("/messages?direction=inbound").await.1["total"] == 1
    })
    .await;
    let st = status_of(&n).await;
    assert!(st["frames_rejected"].as_u64() >= Some(1), "{st}");
    assert_eq!(st["connected"], true, "{st}");
    drop(ws);
}

#[tokio::test]
async fn raw_tcp_garbage_on_the_peer_port() {
    let lab = Lab::new();
    let a = lab.start("alpha").await;
    let addr = a.server.ws_addr;

    // A silent connection held open the whole time must not block other peers.
    let silent = tokio::net::TcpStream::connect(addr).await.expect("connect");

    let long_header = format!(
        "GET /{} HTTP/1.1\r\nHost: x\r\nX-Junk: {}\r\n\r\n",
        a.server.node.token(),
        "A".repeat(100_000)
    );
    let inputs: Vec<Vec<u8>> = vec![
        b"hello\r\n\r\n".to_vec(),
        vec![0u8, 255, 1, 254, 2, 253, 13, 10, 13, 10],
        (0..20_000u32).map(|i| (i * 31 % 251) as u8).collect(),
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", a.server.node.token()).into_bytes(),
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n".to_vec(),
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03".to_vec(),
        long_header.into_bytes(),
        Vec::new(),
    ];
    for (i, bytes) in inputs.iter().enumerate() {
        let mut s = tokio::net::TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("input {i}: peer port refused a connection: {e}"));
        let _ = s.write_all(bytes).await;
        let _ = s.shutdown().await;
        // Read whatever the node answers until it closes (bounded).
        let mut sink = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut sink)).await;
        status_of(&a).await;
    }
    // Half a WebSocket handshake, then the connection vanishes.
    {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let _ = s
            .write_all(b"GET /tok HTTP/1.1\r\nHost: x\r\nUpgrade: webs")
            .await;
    }
    status_of(&a).await;

    let (_, peers) = a.get("/peers").await;
    assert_eq!(peers["count"], 0, "garbage made no peer: {peers}");
    // A real peer still connects and messages flow while the silent socket is open.
    let b = lab.start("beta").await;
    connect(&b, &a).await;
    b.send_text("after garbage", json!({})).await;
    eventually(5, "message arrives", || async {
        a.get("/messages?direction=inbound").await.1["total"] == 1
    })
    .await;
    let (_, got) = a.get("/recv").await;
    assert_eq!(got["messages"][0]["parts"][0]["content"], "after garbage");
    drop(silent);
    status_of(&a).await;
}

// ---- Regression tests for bugs this suite found (all fixed) ----

#[tokio::test]
async fn invalid_utf8_in_path_parameter_is_a_json_400() {
    let lab = Lab::new();
    let (a, b, _) = pair(&lab).await;
    let mut c = Checker::new(&b, true);
    for (method, path, body) in [
        (Method::GET, "/tasks/%FF", Body::None),
        (
            Method::POST,
            "/tasks/%FF:update",
            js(json!({"status": "working"})),
        ),
        (Method::GET, "/tasks/%FF/wait", Body::None),
        (Method::GET, "/peers/%FF", Body::None),
        (Method::POST, "/peer/%FF/send", js(json!({"text": "x"}))),
        (Method::GET, "/context/%FF/messages", Body::None),
        (Method::GET, "/wait/%FF", Body::None),
    ] {
        c.bad(method, path, body, 400, INVALID).await;
    }
    nothing_lost(&a, &b).await;
}

#[tokio::test]
async fn malformed_query_encoding_is_400() {
    let lab = Lab::new();
    let (a, b, _) = pair(&lab).await;
    let mut c = Checker::new(&a, true);
    for path in [
        "/messages?peer_id=%FF",
        "/messages?context_id=%C3%28",
        "/tasks?context_id=%FF",
    ] {
        c.bad(Method::GET, path, Body::None, 400, INVALID).await;
    }
    nothing_lost(&a, &b).await;
}

#[tokio::test]
async fn non_finite_received_after_is_400() {
    let lab = Lab::new();
    let (a, b, _) = pair(&lab).await;
    let mut c = Checker::new(&a, true);
    for path in [
        "/messages?received_after=NaN",
        "/messages?received_after=inf",
        "/messages?received_after=-inf",
    ] {
        c.bad(Method::GET, path, Body::None, 400, INVALID).await;
    }
    nothing_lost(&a, &b).await;
}

#[tokio::test]
async fn ws_non_object_agent_card_is_rejected() {
    let lab = Lab::new();
    let n = lab.start("host").await;
    let token = n.server.node.token().to_owned();
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url(&n, &token))
        .await
        .expect("handshake");
    let _host_card = tokio::time::timeout(Duration::from_secs(5), ws.next()).await;
    ws.send(Message::text(
        json!({"type": "acp.agent_card", "card": {"name": "mallory"}}).to_string(),
    ))
    .await
    .expect("send card");
    eventually(5, "mallory connected", || async {
        n.get("/peers").await.1["peers"][0]["agent_name"] == "mallory"
    })
    .await;
    let rejected0 = status_of(&n).await["frames_rejected"].as_u64().unwrap();
    for card in [json!(5), json!("card"), json!([1]), json!(null)] {
        ws.send(Message::text(
            json!({"type": "acp.agent_card", "card": card}).to_string(),
        ))
        .await
        .expect("send bad card");
    }
    // A valid message after the bad cards marks the point where they were all processed.
    ws.send(Message::text(
        json!({"type": "acp.message", "message_id": "m_ok", "role": "user",
               "parts": [{"type": "text", "content": "ok"}]})
        .to_string(),
    ))
    .await
    .expect("send message");
    eventually(5, "message arrives", || async {
        n.get("/messages?direction=inbound").await.1["total"] == 1
    })
    .await;
    let st = status_of(&n).await;
    assert_eq!(
        st["frames_rejected"].as_u64().unwrap() - rejected0,
        4,
        "bad cards are counted as rejected frames: {st}"
    );
    let (_, peers) = n.get("/peers").await;
    assert_eq!(
        peers["peers"][0]["agent_card"]["name"], "mallory",
        "the good card is kept: {peers}"
    );
    let (_, doc) = n.get("/.well-known/acp.json").await;
    assert!(
        doc["peer"].is_object(),
        "peer card stays an object: {}",
        doc["peer"]
    );
}

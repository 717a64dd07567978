//! The WebSocket endpoints of the HTTP port against real nodes: `/ws/stream` (events, replay
//! with `?since=`, a reader that falls behind) and the streaming send inlet
//! `/messages:stream` (WebSocket and NDJSON: order, exactly once, bad requests in the middle,
//! limits), and the guard in front of both upgrades.

mod common;

use std::time::Duration;

use common::{Lab, TestNode, Ws, connect, eventually, start_with, ws_next_json};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// The next event frame, checked for the reference's shape.
async fn next_event(ws: &mut Ws) -> Value {
    // Generous: a loaded machine may take a while to replay thousands of events.
    let frame = ws_next_json(ws, 60)
        .await
        .expect("an event frame within 60 s");
    assert!(
        frame["event"]
            .as_str()
            .is_some_and(|e| e.starts_with("acp.")),
        "{frame}"
    );
    assert!(frame["data"]["seq"].as_u64().is_some(), "{frame}");
    frame
}

/// Reads event frames until one matches `pred`.
async fn event_where(ws: &mut Ws, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..1000 {
        let frame = ws_next_json(ws, 10)
            .await
            .unwrap_or_else(|| panic!("no event frame: {what}"));
        if pred(&frame) {
            return frame;
        }
    }
    panic!("not among 1000 events: {what}");
}

/// Every inbound message id on `node`, oldest first.
async fn inbound_ids(node: &TestNode) -> Vec<String> {
    let mut ids = Vec::new();
    loop {
        let (status, page) = node
            .get(&format!(
                "/messages?direction=inbound&sort=asc&limit=100&offset={}",
                ids.len()
            ))
            .await;
        assert_eq!(status, 200, "{page}");
        let msgs = page["messages"].as_array().cloned().unwrap_or_default();
        if msgs.is_empty() {
            return ids;
        }
        ids.extend(
            msgs.iter()
                .map(|m| m["message_id"].as_str().unwrap_or("").to_owned()),
        );
    }
}

fn send_body(id: &str, text: &str) -> Value {
    json!({"role": "user", "message_id": id, "text": text})
}

#[tokio::test]
async fn messages_and_task_events_arrive_in_the_reference_shape() {
    let lab = Lab::new();
    let a = lab.start("alpha").await;
    let b = lab.start("beta").await;
    connect(&b, &a).await;
    let mut ws = a.ws("/ws/stream").await;

    b.send_text("hello over ws", json!({"message_id": "ws-hello"}))
        .await;
    let frame = event_where(&mut ws, "the inbound message", |f| {
        f["event"] == "acp.message"
    })
    .await;
    let data = &frame["data"];
    assert_eq!(data["message_id"], "ws-hello");
    assert_eq!(data["direction"], "inbound");
    assert_eq!(data["parts"][0]["content"], "hello over ws");
    assert_eq!(data["type"], "message");
    // The reference's fields: `server_seq` (the event seq for an inbound message) and
    // `timestamp`.
    assert_eq!(data["server_seq"], data["seq"]);
    assert_eq!(data["timestamp"], data["ts"]);

    let (s, created) = a
        .post(
            "/tasks",
            json!({"role": "user", "text": "summarize", "delegate": true}),
        )
        .await;
    assert_eq!(s, 201, "{created}");
    let id = created["id"].as_str().expect("task id").to_owned();
    let (s, r) = a
        .post(
            &format!("/tasks/{id}:update"),
            json!({"status": "completed", "artifact": {"parts": [{"type": "text", "content": "done"}]}}),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    let artifact = event_where(&mut ws, "the artifact", |f| {
        f["event"] == "acp.task.artifact"
    })
    .await;
    assert_eq!(artifact["data"]["task_id"], id.as_str());
    assert_eq!(artifact["data"]["artifact"]["parts"][0]["content"], "done");
    let status = next_event(&mut ws).await;
    assert_eq!(
        status["event"], "acp.task.status",
        "the status follows its artifact"
    );
    assert_eq!(status["data"]["state"], "completed");
    assert!(status["data"]["seq"].as_u64() > artifact["data"]["seq"].as_u64());

    // The same events as /stream: replay both from the start and compare.
    let mut sse = common::SseReader::open(&format!("{}/stream?since=0", a.url), None).await;
    let mut replay = a.ws("/ws/stream?since=0").await;
    let last = status["data"]["seq"].as_u64().expect("seq");
    loop {
        let over_sse = sse.next(10).await.expect("an SSE event");
        let over_ws = next_event(&mut replay).await;
        assert_eq!(over_ws["data"]["seq"].as_u64(), over_sse.id);
        assert_eq!(over_ws["data"]["type"], over_sse.data["type"]);
        if over_sse.id == Some(last) {
            break;
        }
    }

    // A node going down closes the stream with 1001.
    drop(sse);
    b.stop().await;
    a.stop().await;
    let close = loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => break frame,
            Ok(Some(Ok(_))) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(close.map(|f| f.code), Some(CloseCode::Away));
}

#[tokio::test]
async fn since_replays_from_the_store_then_goes_live_without_gap_or_duplicate() {
    let lab = Lab::new();
    let a = lab.start("alpha").await;
    let b = lab.start("beta").await;
    connect(&b, &a).await;
    for i in 0..20 {
        b.send_text(
            &format!("early {i}"),
            json!({"message_id": format!("early-{i}")}),
        )
        .await;
    }
    eventually(10, "20 messages on alpha", || async {
        inbound_ids(&a).await.len() == 20
    })
    .await;
    // The seq of the tenth inbound message: resume right after it.
    let mut all = a.ws("/ws/stream?since=0").await;
    let mut seqs = Vec::new();
    let tenth = loop {
        let f = next_event(&mut all).await;
        seqs.push(f["data"]["seq"].as_u64().unwrap());
        if f["data"]["message_id"] == "early-9" {
            break f["data"]["seq"].as_u64().unwrap();
        }
    };
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "replay from 0 is contiguous: {seqs:?}"
    );

    let mut resumed = a.ws(&format!("/ws/stream?since={tenth}")).await;
    // More messages arrive while the replay is read: the hand-over to live must not lose or
    // repeat any.
    let sender = tokio::spawn(async move {
        for i in 0..30 {
            b.send_text(
                &format!("late {i}"),
                json!({"message_id": format!("late-{i}")}),
            )
            .await;
        }
        b
    });
    let mut expect = tenth + 1;
    let mut seen_ids = Vec::new();
    while seen_ids.len() < 40 {
        let f = next_event(&mut resumed).await;
        assert_eq!(f["data"]["seq"].as_u64(), Some(expect), "{f}");
        expect += 1;
        if f["event"] == "acp.message" {
            seen_ids.push(f["data"]["message_id"].as_str().unwrap().to_owned());
        }
    }
    let want: Vec<String> = (10..20)
        .map(|i| format!("early-{i}"))
        .chain((0..30).map(|i| format!("late-{i}")))
        .collect();
    assert_eq!(seen_ids, want);
    let _b = sender.await.unwrap();

    // A bad `since` is refused before the upgrade.
    let err = tokio_tungstenite::connect_async(a.ws_url("/ws/stream?since=x"))
        .await
        .expect_err("a bad since is refused");
    match err {
        tokio_tungstenite::tungstenite::Error::Http(resp) => assert_eq!(resp.status(), 400),
        other => panic!("expected an HTTP refusal, got {other}"),
    }
    // A plain GET is told to upgrade.
    let (s, body) = a.get("/ws/stream").await;
    assert_eq!(
        (s, body["error_code"].as_str()),
        (426, Some("ERR_UPGRADE_REQUIRED")),
        "{body}"
    );
}

/// NDJSON lines of `/message:send` bodies.
fn ndjson(bodies: &[Value]) -> String {
    bodies.iter().map(|b| b.to_string() + "\n").collect()
}

async fn post_ndjson(node: &TestNode, body: String, content_type: &str) -> (u16, String, String) {
    let resp = node
        .http
        .post(format!("{}/messages:stream", node.url))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("POST /messages:stream");
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    (status, ct, resp.text().await.expect("body"))
}

#[tokio::test]
async fn a_reader_that_stops_reading_catches_up_and_does_not_stall_the_node() {
    let lab = Lab::new();
    let mut config = lab.config("alpha");
    config.offline_queue_limit = 20_000;
    config.sign_frames = false;
    let a = start_with(config).await;
    // Sends to a peer that is away are queued and make events without waiting for any peer.
    let b = lab.start("beta").await;
    connect(&a, &b).await;
    b.stop().await;
    eventually(10, "beta away", || async {
        a.get("/peers").await.1["active"].as_u64() == Some(0)
    })
    .await;
    // A client with a small receive buffer that reads nothing while 9,000 events of 1 KB
    // are made: far more than the live channel holds (4,096) and than the socket takes.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(a.server.http_addr).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(
        a.ws_url("/ws/stream"),
        tokio_tungstenite::MaybeTlsStream::Plain(tcp),
    )
    .await
    .expect("upgrade");
    let text = "x".repeat(256);
    let (total, per_post) = (9_000, 3_000);
    for chunk in 0..(total / per_post) {
        let bodies: Vec<Value> = (0..per_post)
            .map(|i| send_body(&format!("slow-{}", chunk * per_post + i), &text))
            .collect();
        let (s, _, answers) = post_ndjson(&a, ndjson(&bodies), "application/x-ndjson").await;
        assert_eq!(s, 200);
        let last: Value = serde_json::from_str(answers.lines().last().unwrap()).unwrap();
        assert_eq!(last["queued"], true, "{last}");
        assert_eq!(answers.lines().count(), per_post);
    }
    // The node kept answering while the subscriber read nothing.
    assert_eq!(a.get("/status").await.0, 200);
    let mut expect = None;
    let mut ids = Vec::new();
    while ids.len() < total {
        let f = next_event(&mut ws).await;
        let seq = f["data"]["seq"].as_u64().unwrap();
        if let Some(e) = expect {
            assert_eq!(seq, e, "no gap, no duplicate");
        }
        expect = Some(seq + 1);
        if f["event"] == "acp.message" {
            ids.push(f["data"]["message_id"].as_str().unwrap().to_owned());
        }
    }
    let want: Vec<String> = (0..total).map(|i| format!("slow-{i}")).collect();
    assert_eq!(ids, want);
}

#[tokio::test]
async fn the_inlet_sends_in_order_exactly_once() {
    let lab = Lab::new();
    let a = lab.start("alpha").await;
    let b = lab.start("beta").await;
    connect(&b, &a).await;
    let mut ws = b.ws("/messages:stream").await;
    let n = 300;
    // All frames first, answers after: the client pipelines as far as it likes.
    for i in 0..n {
        ws.feed(Message::text(
            send_body(&format!("in-{i}"), &format!("#{i}")).to_string(),
        ))
        .await
        .unwrap();
    }
    ws.flush().await.unwrap();
    let mut last_seq = 0;
    for i in 0..n {
        let answer = ws_next_json(&mut ws, 20).await.expect("an answer");
        assert_eq!(answer["ok"], true, "{answer}");
        assert_eq!(
            answer["message_id"],
            format!("in-{i}"),
            "answers come in request order"
        );
        assert_eq!(answer["delivery"], "sent");
        let seq = answer["server_seq"].as_i64().unwrap();
        assert!(
            seq > last_seq,
            "server_seq rises with the order of the requests"
        );
        last_seq = seq;
        assert!(
            answer.get("status").is_none(),
            "success is the /message:send body: {answer}"
        );
    }
    // A repeat is answered as /message:send answers it.
    ws.send(Message::text(send_body("in-0", "again").to_string()))
        .await
        .unwrap();
    let again = ws_next_json(&mut ws, 10).await.unwrap();
    assert_eq!(again["delivery"], "duplicate");

    let want: Vec<String> = (0..n).map(|i| format!("in-{i}")).collect();
    eventually(20, "every message on alpha", || async {
        inbound_ids(&a).await.len() >= n
    })
    .await;
    assert_eq!(inbound_ids(&a).await, want, "each arrives once, in order");

    // Durable when answered: B's store has them all as soon as the answers are in.
    let (_, page) = b.get("/messages?direction=outbound&limit=1").await;
    assert_eq!(page["messages"][0]["message_id"], format!("in-{}", n - 1));

    // A ping is answered with a pong and changes nothing else.
    ws.send(Message::Ping(b"hi".to_vec().into())).await.unwrap();
    ws.send(Message::text(send_body("after-ping", "x").to_string()))
        .await
        .unwrap();
    let answer = ws_next_json(&mut ws, 10)
        .await
        .expect("an answer after the ping");
    assert_eq!(answer["message_id"], "after-ping");
    // The node going down closes the inlet with 1001.
    b.stop().await;
    let close = loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => break frame,
            Ok(Some(Ok(_))) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(close.map(|f| f.code), Some(CloseCode::Away));
}

#[tokio::test]
async fn bad_frames_get_error_frames_and_the_connection_goes_on() {
    let lab = Lab::new();
    let mut config = lab.config("alpha");
    config.max_msg_size = 16 * 1024;
    let limit = 16 * 1024 + 64 * 1024;
    let a = start_with(config).await;
    let b = lab.start("beta").await;
    connect(&a, &b).await;
    let mut ws = a.ws("/messages:stream").await;
    let frames: Vec<(Message, u16, &str)> = vec![
        (
            Message::text(send_body("ok-1", "first").to_string()),
            200,
            "",
        ),
        (Message::text("{nope"), 400, "ERR_INVALID_REQUEST"),
        (
            Message::binary(b"{\"role\":\"user\",\"text\":\"bin\"}".to_vec()),
            415,
            "ERR_UNSUPPORTED_MEDIA_TYPE",
        ),
        (Message::text("[1,2]"), 400, "ERR_INVALID_REQUEST"),
        (Message::text(""), 400, "ERR_INVALID_REQUEST"),
        (
            Message::text(
                json!({"role": "boss", "text": "x", "message_id": "bad-role"}).to_string(),
            ),
            400,
            "ERR_INVALID_REQUEST",
        ),
        (
            Message::text(send_body("too-big", &"y".repeat(limit)).to_string()),
            413,
            "ERR_MSG_TOO_LARGE",
        ),
        (
            Message::text(send_body("big-msg", &"z".repeat(20 * 1024)).to_string()),
            413,
            "ERR_MSG_TOO_LARGE",
        ),
        (
            Message::text(json!({"role": "user", "text": "x", "peer_id": "nobody"}).to_string()),
            404,
            "ERR_NOT_FOUND",
        ),
        (
            Message::text(send_body("ok-2", "second").to_string()),
            200,
            "",
        ),
    ];
    let count = frames.len();
    for (frame, _, _) in &frames {
        ws.feed(frame.clone()).await.unwrap();
    }
    ws.flush().await.unwrap();
    for (i, (_, status, code)) in frames.iter().enumerate() {
        let answer = ws_next_json(&mut ws, 10)
            .await
            .unwrap_or_else(|| panic!("answer {i} of {count}"));
        if *status == 200 {
            assert_eq!(answer["ok"], true, "frame {i}: {answer}");
        } else {
            assert_eq!(answer["ok"], false, "frame {i}: {answer}");
            assert_eq!(answer["status"], *status, "frame {i}: {answer}");
            assert_eq!(answer["error_code"], *code, "frame {i}: {answer}");
            assert!(answer["error"].as_str().is_some_and(|e| !e.is_empty()));
        }
    }
    eventually(10, "the two good ones on beta", || async {
        inbound_ids(&b).await.len() >= 2
    })
    .await;
    assert_eq!(inbound_ids(&b).await, ["ok-1", "ok-2"]);

    // A frame the connection cannot read past (over four times the limit) is answered, then
    // the connection is closed with 1009 (message too big).
    ws.send(Message::text("w".repeat(4 * limit + 1)))
        .await
        .unwrap();
    let answer = ws_next_json(&mut ws, 10)
        .await
        .expect("an answer to the huge frame");
    assert_eq!(
        (answer["status"].as_u64(), answer["error_code"].as_str()),
        (Some(413), Some("ERR_MSG_TOO_LARGE")),
        "{answer}"
    );
    let close = loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => break frame,
            Ok(Some(Ok(_))) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(close.map(|f| f.code), Some(CloseCode::Size));
    // The node is fine.
    assert_eq!(a.get("/status").await.0, 200);
}

#[tokio::test]
async fn ndjson_posts_are_answered_line_by_line() {
    let lab = Lab::new();
    let a = lab.start("alpha").await;
    let b = lab.start("beta").await;
    connect(&a, &b).await;
    let body = format!(
        "{}\n\r\n{{nope\n{}\n   \n{}",
        send_body("nd-1", "one"),
        json!({"text": "no role"}),
        send_body("nd-2", "two"),
    );
    let (s, ct, text) = post_ndjson(&a, body, "application/x-ndjson").await;
    assert_eq!(s, 200, "{text}");
    assert_eq!(ct, "application/x-ndjson");
    let answers: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert_eq!(answers.len(), 4, "empty lines are skipped: {text}");
    assert_eq!(answers[0]["message_id"], "nd-1");
    assert_eq!(answers[0]["delivery"], "sent");
    assert_eq!(
        (
            answers[1]["status"].as_u64(),
            answers[1]["error_code"].as_str()
        ),
        (Some(400), Some("ERR_INVALID_REQUEST"))
    );
    assert_eq!(answers[2]["status"], 400);
    assert_eq!(answers[3]["message_id"], "nd-2");
    eventually(10, "both on beta", || async {
        inbound_ids(&b).await.len() >= 2
    })
    .await;
    assert_eq!(inbound_ids(&b).await, ["nd-1", "nd-2"]);

    // Without a content type, and as JSON, the body is read the same way.
    let (s, _, text) = post_ndjson(
        &a,
        ndjson(&[send_body("nd-3", "three")]),
        "application/json",
    )
    .await;
    assert_eq!(s, 200, "{text}");
    // Other types are refused by the guard, here and elsewhere; NDJSON only goes here.
    for (path, ct) in [
        ("/messages:stream", "text/plain"),
        ("/messages:stream", "application/x-www-form-urlencoded"),
        ("/message:send", "application/x-ndjson"),
        ("/tasks", "application/x-ndjson"),
    ] {
        let (s, body) = a
            .post_raw(path, send_body("nd-x", "x").to_string(), ct)
            .await;
        assert_eq!(
            (s, body["error_code"].as_str()),
            (415, Some("ERR_UNSUPPORTED_MEDIA_TYPE")),
            "{path} {ct}: {body}"
        );
    }
    // Bounded: more lines than allowed is refused whole, before anything is sent.
    let many: String = (0..10_001).map(|_| "{}\n").collect();
    let (s, _, text) = post_ndjson(&a, many, "application/x-ndjson").await;
    assert_eq!(s, 413, "{text}");
    // And so is a body over the inlet's byte limit (16 request bodies).
    let huge = "z".repeat(17 * (1024 * 1024 + 64 * 1024));
    let (s, _, text) = post_ndjson(&a, huge, "application/x-ndjson").await;
    assert_eq!(s, 413, "{}", &text[..text.len().min(300)]);
    // A line over one request's limit is answered 413; the others go through.
    let big_line = send_body("nd-big", &"q".repeat(1024 * 1024 + 64 * 1024));
    let (s, _, text) = post_ndjson(
        &a,
        ndjson(&[big_line, send_body("nd-4", "four")]),
        "application/x-ndjson",
    )
    .await;
    assert_eq!(s, 200);
    let answers: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(answers[0]["status"], 413);
    assert_eq!(answers[1]["message_id"], "nd-4");
    // Sent to a peer that is away: queued, answered as /message:send answers it (503).
    b.stop().await;
    eventually(10, "beta gone", || async {
        a.get("/peers").await.1["active"].as_u64() == Some(0)
    })
    .await;
    let (s, _, text) = post_ndjson(
        &a,
        ndjson(&[send_body("nd-5", "five")]),
        "application/x-ndjson",
    )
    .await;
    assert_eq!(s, 200);
    let queued: Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(
        (queued["status"].as_u64(), queued["queued"].as_bool()),
        (Some(503), Some(true)),
        "{queued}"
    );
    assert_eq!(queued["message_id"], "nd-5");
}

/// The answer to a WebSocket upgrade of `path` with `headers`: 101, or the refusal's status
/// and error code.
async fn upgrade(node: &TestNode, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut req = node.ws_url(path).into_client_request().expect("request");
    for (k, v) in headers {
        req.headers_mut().insert(
            reqwest::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((_, resp)) => (resp.status().as_u16(), String::new()),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            let body: Value = resp
                .body()
                .as_deref()
                .and_then(|b| serde_json::from_slice(b).ok())
                .unwrap_or(Value::Null);
            (
                resp.status().as_u16(),
                body["error_code"].as_str().unwrap_or("").to_owned(),
            )
        }
        Err(e) => panic!("upgrade of {path}: {e}"),
    }
}

#[tokio::test]
async fn the_guard_stands_in_front_of_both_upgrades() {
    let lab = Lab::new();
    let mut config = lab.config("guarded");
    config.api_token = Some("tok-ws-secret".into());
    let a = start_with(config).await;
    let port = a.server.http_addr.port();
    let own = format!("http://127.0.0.1:{port}");
    for path in ["/ws/stream", "/messages:stream"] {
        assert_eq!(
            upgrade(&a, path, &[]).await,
            (401, "ERR_UNAUTHORIZED".into()),
            "{path}"
        );
        assert_eq!(
            upgrade(&a, path, &[("authorization", "Bearer wrong")]).await,
            (401, "ERR_UNAUTHORIZED".into()),
            "{path}"
        );
        let bearer = [("authorization", "Bearer tok-ws-secret")];
        assert_eq!(upgrade(&a, path, &bearer).await.0, 101, "{path}");
        // A browser page: the token in the query (an upgrade cannot carry a header there).
        assert_eq!(
            upgrade(
                &a,
                &format!("{path}?access_token=tok-ws-secret"),
                &[("origin", &own)]
            )
            .await
            .0,
            101,
            "{path}"
        );
        for origin in [
            "http://evil.example",
            "null",
            "https://127.0.0.1.evil.example",
        ] {
            assert_eq!(
                upgrade(&a, path, &[bearer[0], ("origin", origin)]).await,
                (403, "ERR_ORIGIN_NOT_ALLOWED".into()),
                "{path} from {origin}"
            );
        }
        assert_eq!(
            upgrade(
                &a,
                path,
                &[bearer[0], ("host", &format!("evil.example:{port}"))]
            )
            .await,
            (403, "ERR_HOST_NOT_ALLOWED".into()),
            "{path}"
        );
    }
}

//! Per-peer limits with real nodes: a peer flooding a node is refused (`rate_limited`) and
//! its messages still all arrive, once, because the sender keeps them and sends them again,
//! while a second peer's messages are never refused and arrive promptly; a peer past 90 % of
//! its stored-bytes cap loses its own oldest messages (nobody else's), and one whose messages
//! are all kept (an open task) is refused (`quota_exceeded`) until they may go; a peer that does
//! not confirm delivery (the Python reference) gets the same error frame; bad flag values are
//! refused at start with a clear message.

mod common;

use std::time::Duration;

use acp_relay::node::quota::Limits;
use common::{Lab, TestNode, connect, eventually, start_with};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

fn no_limits() -> Limits {
    Limits {
        msgs_per_sec: 0,
        msgs_burst: 0,
        bytes_per_sec: 0,
        bytes_burst: 0,
        max_store_bytes: 0,
    }
}

/// A receiving node with these limits.
async fn receiver(lab: &Lab, limits: Limits) -> TestNode {
    let mut cfg = lab.config("receiver");
    cfg.peer_limits = limits;
    start_with(cfg).await
}

/// Whether `node` has stored the inbound message `id`.
async fn has(node: &TestNode, id: &str) -> bool {
    node.server
        .node
        .inbound_message(id)
        .await
        .unwrap()
        .is_some()
}

/// Inbound rows and distinct inbound ids in `node`'s store.
async fn inbound_rows(node: &TestNode) -> (i64, i64) {
    node.server
        .node
        .store()
        .read(|c| {
            c.query_row(
                "SELECT count(*), count(DISTINCT message_id) FROM messages
                  WHERE direction = 'inbound'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
        })
        .await
        .unwrap()
}

/// `node`'s `/peers` entry for the peer whose agent is `name`.
async fn entry(node: &TestNode, name: &str) -> Value {
    let e = node.peer_named(name).await;
    assert!(e.is_object(), "{name} is a peer");
    e
}

#[tokio::test]
async fn a_flooding_peer_is_throttled_while_another_keeps_flowing() {
    let lab = Lab::new();
    let r = receiver(
        &lab,
        Limits {
            msgs_per_sec: 20,
            msgs_burst: 20,
            ..no_limits()
        },
    )
    .await;
    let flood = lab.start("flood").await;
    let calm = lab.start("calm").await;
    connect(&flood, &r).await;
    connect(&calm, &r).await;

    const FLOOD: usize = 150;
    let flooding = async {
        for i in 0..FLOOD {
            let resp = flood
                .send_text(
                    &format!("flood {i}"),
                    json!({"message_id": format!("f{i:04}")}),
                )
                .await;
            assert_eq!(resp["delivery"], "sent", "{resp}");
        }
    };
    // Well under the rate: three messages a second, each checked before the next.
    let calm_sends = async {
        for i in 0..8 {
            let id = format!("c{i:02}");
            calm.send_text(&format!("calm {i}"), json!({"message_id": id}))
                .await;
            eventually(15, &format!("{id} arrives promptly"), || has(&r, &id)).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    };
    tokio::join!(flooding, calm_sends);

    eventually(20, "the flooder is refused for rate", || async {
        entry(&r, "flood").await["limits"]["refused_rate"].as_u64() > Some(0)
    })
    .await;
    let calm_entry = entry(&r, "calm").await;
    assert_eq!(calm_entry["limits"]["refused_rate"], 0, "{calm_entry}");
    assert_eq!(calm_entry["limits"]["refused_quota"], 0, "{calm_entry}");

    // The flooder keeps what was refused and sends it again: everything arrives, once.
    eventually(90, "every flooded message arrives", || async {
        inbound_rows(&r).await.1 == (FLOOD + 8) as i64
    })
    .await;
    eventually(30, "the flooder has nothing unconfirmed", || async {
        entry(&flood, "receiver").await["unconfirmed"] == 0
    })
    .await;
    for i in 0..FLOOD {
        assert!(has(&r, &format!("f{i:04}")).await, "f{i:04} arrived");
    }
    let (rows, distinct) = inbound_rows(&r).await;
    assert_eq!(rows, distinct, "no duplicates");
    let (_, status) = r.get("/status").await;
    assert_eq!(status["messages_received"].as_i64(), Some(rows), "{status}");
    assert_eq!(status["peer_limits"]["msgs_per_sec"], 20);
    assert!(status["peer_limits"]["refused_rate"].as_u64() > Some(0));
    assert_eq!(status["peer_limits"]["refused_quota"], 0);
}

/// The cap for the two stored-bytes tests: ten of their 20 kB messages.
const CAP: u64 = 200_000;

/// Sends `n` messages of 20 kB from `s` (ids `{prefix}00…`), one at a time, each stored or
/// refused by `r` before the next (the cap is checked against what is committed).
async fn send_one_by_one(s: &TestNode, r: &TestNode, prefix: &str, n: usize, extra: Value) {
    let text = "y".repeat(20_000);
    for i in 0..n {
        let id = format!("{prefix}{i:02}");
        let mut body = extra.clone();
        body["message_id"] = json!(id);
        s.send_text(&text, body).await;
        let before = entry(r, "sender").await["limits"]["refused_quota"]
            .as_u64()
            .unwrap();
        eventually(15, &format!("{id} stored or refused"), || async {
            has(r, &id).await
                || entry(r, "sender").await["limits"]["refused_quota"].as_u64() > Some(before)
        })
        .await;
    }
}

/// A receiver storing at most [`CAP`] bytes per peer, and a sender (not yet connected).
async fn capped_receiver_and_sender(lab: &Lab) -> (TestNode, TestNode) {
    let r = receiver(
        lab,
        Limits {
            max_store_bytes: CAP,
            ..no_limits()
        },
    )
    .await;
    (r, lab.start("sender").await)
}

#[tokio::test]
async fn a_peer_past_its_cap_loses_its_own_oldest_messages_and_nobody_elses() {
    let lab = Lab::new();
    let (r, s) = capped_receiver_and_sender(&lab).await;
    let other = lab.start("other").await;
    connect(&s, &r).await;
    connect(&other, &r).await;
    for i in 0..3 {
        other
            .send_text(&"o".repeat(20_000), json!({"message_id": format!("o{i}")}))
            .await;
    }
    eventually(15, "the other peer's messages are stored", || async {
        has(&r, "o2").await
    })
    .await;

    // Half again as much as the cap: every message is taken (some perhaps after a refusal
    // and the sender's retry), and retention keeps the sender near 90 % of its cap.
    const N: usize = 15;
    send_one_by_one(&s, &r, "q", N, json!({})).await;
    eventually(120, "the sender has nothing unconfirmed", || async {
        entry(&s, "receiver").await["unconfirmed"] == 0
    })
    .await;
    eventually(30, "the sender is pruned back under its cap", || async {
        entry(&r, "sender").await["limits"]["stored_bytes"].as_u64() <= Some(CAP / 10 * 9)
    })
    .await;
    let (_, status) = r.get("/status").await;
    assert_eq!(
        status["messages_received"],
        N + 3,
        "each message taken once: {status}"
    );
    assert!(!has(&r, "q00").await, "the sender's oldest went");
    assert!(has(&r, &format!("q{:02}", N - 1)).await, "its newest stays");
    for i in 0..3 {
        assert!(has(&r, &format!("o{i}")).await, "the other peer keeps o{i}");
    }
    let (rows, _) = inbound_rows(&r).await;
    let stored = entry(&r, "sender").await["limits"]["stored_bytes"]
        .as_u64()
        .unwrap();
    assert!(
        stored <= (rows as u64 - 3) * 21_000,
        "stored bytes follow what retention removed: {stored} for {rows} rows"
    );
}

#[tokio::test]
async fn messages_of_an_open_task_are_kept_so_the_cap_refuses_until_the_task_ends() {
    let lab = Lab::new();
    let (r, s) = capped_receiver_and_sender(&lab).await;
    connect(&s, &r).await;
    let (status, task) = s
        .post(
            "/tasks",
            json!({"role": "user", "text": "a long job", "delegate": true}),
        )
        .await;
    assert_eq!(status, 201, "{task}");
    let task_id = task["id"].as_str().expect("task id").to_owned();
    eventually(15, "the receiver has the task", || async {
        r.get(&format!("/tasks/{task_id}")).await.0 == 200
    })
    .await;

    const N: usize = 15;
    send_one_by_one(&s, &r, "t", N, json!({"task_id": task_id})).await;
    let e = entry(&r, "sender").await;
    let stored = e["limits"]["stored_bytes"].as_u64().unwrap();
    assert!(stored <= CAP + 200, "stored {stored} over the cap: {e}");
    assert!(
        stored + 21_000 > CAP,
        "refused only when the next does not fit: {e}"
    );
    assert_eq!(e["limits"]["max_store_bytes"], CAP);
    assert!(e["limits"]["refused_quota"].as_u64() > Some(0), "{e}");
    assert_eq!(e["limits"]["refused_rate"], 0);
    assert!(
        has(&r, "t00").await,
        "an open task's messages are not pruned"
    );
    // The sender holds what was refused.
    let held = entry(&s, "receiver").await;
    assert!(held["unconfirmed"].as_u64() > Some(0), "{held}");

    // The task ends: its messages may go, and the sender's next tries are taken.
    let (status, resp) = r
        .post(
            &format!("/tasks/{task_id}/update"),
            json!({"status": "completed"}),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    eventually(120, "the sender has nothing unconfirmed", || async {
        entry(&s, "receiver").await["unconfirmed"] == 0
    })
    .await;
    let (_, status) = r.get("/status").await;
    assert_eq!(
        status["messages_received"], N,
        "each message taken once: {status}"
    );
    assert!(
        has(&r, &format!("t{:02}", N - 1)).await,
        "the last one is kept"
    );
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next text frame as JSON, or None after `secs`.
async fn next_frame(ws: &mut Ws, secs: u64) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return serde_json::from_str(t.as_str()).ok(),
            Ok(Some(Ok(_))) => continue,
            _ => return None,
        }
    }
}

fn reference_message(i: usize) -> String {
    json!({"type": "acp.message", "message_id": format!("p{i}"), "role": "user",
           "parts": [{"type": "text", "content": "hi"}]})
    .to_string()
}

#[tokio::test]
async fn a_peer_that_does_not_confirm_gets_the_same_error_frame() {
    let lab = Lab::new();
    // Room for two frames, then a byte a second: the third has to wait for a minute.
    let size = reference_message(0).len() as u64;
    let r = receiver(
        &lab,
        Limits {
            bytes_per_sec: 1,
            bytes_burst: size * 2 + size / 2,
            ..no_limits()
        },
    )
    .await;
    let url = format!(
        "ws://127.0.0.1:{}/{}",
        r.server.ws_addr.port(),
        r.server.node.token()
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("dial");
    ws.send(Message::text(
        json!({"type": "acp.agent_card", "card": {"name": "reference", "capabilities": {}}})
            .to_string(),
    ))
    .await
    .unwrap();
    let card = next_frame(&mut ws, 10).await.expect("the host's card");
    assert_eq!(card["type"], "acp.agent_card");
    for i in 0..5 {
        ws.send(Message::text(reference_message(i))).await.unwrap();
    }
    let mut refused = Vec::new();
    while refused.len() < 3 {
        let frame = next_frame(&mut ws, 10)
            .await
            .expect("an error frame in time");
        assert_ne!(
            frame["type"], "acp.ack",
            "this peer does not confirm: {frame}"
        );
        if frame["type"] == "error" {
            assert_eq!(frame["code"], "rate_limited", "{frame}");
            let wait = frame["retry_after_ms"].as_u64().unwrap();
            assert!((250..=60_000).contains(&wait), "{frame}");
            assert!(
                frame["message"]
                    .as_str()
                    .unwrap()
                    .contains("--peer-msgs-per-sec"),
                "{frame}"
            );
            for id in frame["message_ids"].as_array().unwrap() {
                refused.push(id.as_str().unwrap().to_owned());
            }
        }
    }
    assert_eq!(refused, ["p2", "p3", "p4"]);
    assert!(has(&r, "p0").await && has(&r, "p1").await);
    assert!(!has(&r, "p2").await);
    assert_eq!(entry(&r, "reference").await["limits"]["refused_rate"], 3);
}

#[test]
fn bad_limit_flags_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_acp-relay"));
        cmd.arg("serve")
            .args(["--port", "0", "--data-dir"])
            .arg(dir.path())
            .args(args)
            .stdin(std::process::Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("run acp-relay");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&["--peer-msgs-burst", "0"], &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("--peer-msgs-burst must be at least 1"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    let (code, err) = run(&["--peer-mb-burst", "0"], &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--peer-mb-burst"), "{err}");
    let (code, err) = run(&["--peer-max-store-mb", "99999999999999"], &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("too large"), "{err}");
    let (code, err) = run(&[], &[("ACP_PEER_MB_PER_SEC", "fast")]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--peer-mb-per-sec"), "{err}");
    let (code, err) = run(&["--peer-msgs-per-sec=-1"], &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--peer-msgs-per-sec"), "{err}");
}

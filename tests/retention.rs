//! Retention with real nodes: `PATCH /retention` prunes a running node's history oldest
//! first, never removes what a peer has not confirmed, what waits in an offline queue or what
//! belongs to an open task, refuses bad settings with a 400, and a bounded soak with a size
//! limit keeps the data dir under its bound while messages flow.

mod common;

use std::time::Duration;

use common::{Lab, TestNode, connect, eventually, start_with};
use serde_json::{Value, json};

/// Messages in `node`'s store, both directions.
async fn stored(node: &TestNode) -> i64 {
    node.server
        .node
        .store()
        .read(|c| c.query_row("SELECT count(*) FROM messages", [], |r| r.get(0)))
        .await
        .unwrap()
}

/// Whether `node` still stores a message with this id (either direction).
async fn has(node: &TestNode, id: &str) -> bool {
    let id = id.to_owned();
    node.server
        .node
        .store()
        .read(move |c| {
            c.query_row(
                "SELECT count(*) FROM messages WHERE message_id = ?1",
                [id],
                |r| r.get::<_, i64>(0),
            )
        })
        .await
        .unwrap()
        > 0
}

/// Bytes of every file in `dir`.
fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn a_count_limit_prunes_the_oldest_and_status_shows_it() {
    let lab = Lab::new();
    let a = lab.start("a").await;
    let b = lab.start("b").await;
    connect(&b, &a).await;
    for i in 0..120 {
        b.send_text(&format!("m{i}"), json!({"message_id": format!("m{i:04}")}))
            .await;
    }
    eventually(30, "a stores all 120", || async { stored(&a).await == 120 }).await;
    eventually(30, "b's messages are confirmed", || async {
        b.get("/peers").await.1["peers"][0]["unconfirmed"] == 0
    })
    .await;

    let (status, resp) = a
        .request(
            reqwest::Method::PATCH,
            "/retention",
            Some(json!({"retain_messages": 50})),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["retain_messages"], 50);
    eventually(30, "a keeps the newest 50", || async {
        stored(&a).await == 50
    })
    .await;
    assert!(!has(&a, "m0000").await && has(&a, "m0119").await && has(&a, "m0070").await);
    // The pass that pruned reports when it ends.
    eventually(30, "retention reports what it removed", || async {
        a.get("/retention").await.1["removed_messages"] == 70
    })
    .await;
    let (_, status) = a.get("/status").await;
    assert_eq!(
        status["retention"]["oldest_kept_message_id"], "m0070",
        "{status}"
    );
    assert!(status["store"]["store_bytes"].as_u64() > Some(0));

    // The sender's copies are confirmed, so its own limit prunes them too.
    let (status, _) = b
        .request(
            reqwest::Method::PATCH,
            "/retention",
            Some(json!({"retain_messages": 10})),
        )
        .await;
    assert_eq!(status, 200);
    eventually(30, "b keeps the newest 10", || async {
        stored(&b).await == 10
    })
    .await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn retention_never_removes_queued_unconfirmed_or_open_task_messages() {
    let lab = Lab::new();
    let a = lab.start("a").await;
    let b = lab.start("b").await;
    connect(&a, &b).await;
    // An open task with a message in it, then plenty of ordinary messages.
    let (status, created) = a
        .post("/tasks", json!({"role": "user", "text": "open task"}))
        .await;
    assert_eq!(status, 201, "{created}");
    let task = created["task"]["id"].as_str().unwrap().to_owned();
    a.send_text(
        "in the task",
        json!({"message_id": "task-msg", "task_id": task}),
    )
    .await;
    for i in 0..30 {
        a.send_text(&format!("x{i}"), json!({"message_id": format!("x{i:04}")}))
            .await;
    }
    eventually(30, "everything is confirmed", || async {
        a.get("/peers").await.1["peers"][0]["unconfirmed"] == 0
    })
    .await;
    // The peer goes away: what is sent now waits in the offline queue.
    b.stop().await;
    eventually(30, "a sees b gone", || async {
        a.get("/peers").await.1["peers"][0]["connected"] == false
    })
    .await;
    for i in 0..5 {
        let (status, resp) = a
            .post(
                "/message:send",
                json!({"role": "user", "text": "later", "message_id": format!("q{i}")}),
            )
            .await;
        assert_eq!(status, 503, "queued for the absent peer: {resp}");
    }

    let (status, _) = a
        .request(
            reqwest::Method::PATCH,
            "/retention",
            Some(json!({"retain_messages": 1})),
        )
        .await;
    assert_eq!(status, 200);
    eventually(30, "ordinary messages are pruned", || async {
        !has(&a, "x0028").await
    })
    .await;
    assert!(
        has(&a, "task-msg").await,
        "an open task's message was removed"
    );
    for i in 0..5 {
        assert!(has(&a, &format!("q{i}")).await, "queued q{i} was removed");
    }
    a.stop().await;
}

/// A peer that says it confirms delivery and never does: everything sent to it stays
/// unconfirmed, so retention must keep it.
#[tokio::test]
async fn unconfirmed_messages_are_kept() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let lab = Lab::new();
    let a = lab.start("a").await;
    let url = format!(
        "ws://127.0.0.1:{}/{}",
        a.server.ws_addr.port(),
        a.server.node.token()
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("dial");
    ws.send(Message::text(
        json!({"type": "acp.agent_card",
               "card": {"name": "silent", "capabilities": {"delivery_ack": true}}})
        .to_string(),
    ))
    .await
    .unwrap();
    eventually(10, "a sees the peer", || async {
        a.get("/peers").await.1["peers"][0]["connected"] == true
    })
    .await;
    for i in 0..10 {
        a.send_text("unconfirmed", json!({"message_id": format!("u{i}")}))
            .await;
    }
    // Keep reading so the socket does not back up (and confirm nothing).
    let reader = tokio::spawn(async move { while let Some(Ok(_)) = ws.next().await {} });
    let (status, _) = a
        .request(
            reqwest::Method::PATCH,
            "/retention",
            Some(json!({"retain_messages": 1})),
        )
        .await;
    assert_eq!(status, 200);
    eventually(30, "a pass ran", || async {
        a.get("/retention").await.1["passes"].as_u64() >= Some(2)
    })
    .await;
    for i in 0..10 {
        assert!(
            has(&a, &format!("u{i}")).await,
            "unconfirmed u{i} was removed"
        );
    }
    reader.abort();
    a.stop().await;
}

#[tokio::test]
async fn bad_retention_settings_are_a_400() {
    let lab = Lab::new();
    let a = lab.start("a").await;
    for body in [
        json!({"retain_days": -1}),
        json!({"retain_days": "7"}),
        json!({"max_store_mb": 1.5}),
        json!({"retain_forever": true}),
        json!([]),
    ] {
        let (status, resp) = a
            .request(reqwest::Method::PATCH, "/retention", Some(body.clone()))
            .await;
        assert_eq!(status, 400, "{body} → {resp}");
        assert_eq!(resp["error_code"], "ERR_INVALID_REQUEST", "{resp}");
    }
    let (status, resp) = a.request(reqwest::Method::POST, "/retention", None).await;
    assert_eq!(status, 405, "{resp}");
    let (_, ret) = a.get("/retention").await;
    assert_eq!(ret["retain_days"], 30, "unchanged: {ret}");
    assert_eq!(ret["max_store_mb"], 2048);
    a.stop().await;
}

/// A bounded soak: with `--max-store-mb 16` on both nodes, sending three times that much
/// (six times with the event log's copies, both sides) keeps each data dir under a bound
/// (the limit plus growth step and WAL room), and every send is answered 200 or, while
/// pruning catches up, 507.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_size_limit_keeps_the_data_dir_bounded_while_messages_flow() {
    const LIMIT_MB: u64 = 16;
    let lab = Lab::new();
    let mut config = lab.config("a");
    config.retention.max_store_mb = LIMIT_MB;
    let a = start_with(config).await;
    let mut config = lab.config("b");
    config.retention.max_store_mb = LIMIT_MB;
    let b = start_with(config).await;
    connect(&b, &a).await;
    let body = "s".repeat(4096);
    let target = 3 * LIMIT_MB * 1024 * 1024;
    // The limit, plus the database file's growth step (8 MiB), plus room for the WAL (which
    // the checkpointer rewinds at an eighth of the limit) and for a pass that lags behind.
    let bound = (2 * LIMIT_MB + 8) * 1024 * 1024;
    let mut sent = 0u64;
    let mut refused = 0u64;
    let mut largest = 0u64;
    let started = tokio::time::Instant::now();
    while sent < target {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "soak did not finish: {sent} bytes sent"
        );
        // A few sends at once, then look at the sizes.
        let mut batch = Vec::new();
        for _ in 0..8 {
            batch.push(b.post("/message:send", json!({"role": "user", "text": body})));
        }
        for (status, resp) in futures_util::future::join_all(batch).await {
            match status {
                200 => sent += body.len() as u64,
                507 => {
                    assert_eq!(resp["error_code"], "ERR_STORAGE_FULL");
                    refused += 1;
                }
                other => panic!("send got {other}: {resp}"),
            }
        }
        if refused > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        largest = largest.max(dir_bytes(&a.dir)).max(dir_bytes(&b.dir));
        assert!(
            largest <= bound,
            "a data dir reached {largest} bytes, bound {bound} (sent {sent})"
        );
    }
    let (_, ret) = a.get("/retention").await;
    assert!(ret["removed_messages"].as_u64() > Some(0), "{ret}");
    let value: Value = b.get("/retention").await.1;
    assert!(value["removed_messages"].as_u64() > Some(0), "{value}");
    println!("soak: sent {sent} bytes, largest data dir {largest} bytes, {refused} sends refused");
    a.stop().await;
    b.stop().await;
}

/// A `PATCH /retention` holds after a restart; a setting the restart names in its flags wins
/// over the saved one, and `sources` says which is which.
#[tokio::test]
async fn a_retention_patch_survives_a_restart_unless_the_flags_name_the_setting() {
    let lab = Lab::new();
    let a = lab.start("a").await;
    let (_, before) = a.get("/retention").await;
    assert_eq!(
        before["sources"],
        json!({"retain_days": "default", "retain_messages": "default", "max_store_mb": "default"}),
        "{before}"
    );
    let (status, patched) = a
        .request(
            reqwest::Method::PATCH,
            "/retention",
            Some(json!({"retain_messages": 500, "max_store_mb": 64})),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["saved"], true, "{patched}");
    assert_eq!(patched["sources"]["retain_messages"], "saved");
    let (status, _) = a
        .request(
            reqwest::Method::PATCH,
            "/retention",
            Some(json!({"retain_days": 9})),
        )
        .await;
    assert_eq!(status, 200);
    a.stop().await;

    let a = lab.start("a").await;
    let (_, after) = a.get("/retention").await;
    assert_eq!(
        (
            &after["retain_days"],
            &after["retain_messages"],
            &after["max_store_mb"]
        ),
        (&json!(9), &json!(500), &json!(64)),
        "both patches hold after the restart: {after}"
    );
    assert_eq!(
        after["sources"],
        json!({"retain_days": "saved", "retain_messages": "saved", "max_store_mb": "saved"})
    );
    a.stop().await;

    let mut flags = lab.config("a");
    flags.retention.max_store_mb = 32;
    flags.retention_named.max_store_mb = Some(32);
    let a = start_with(flags).await;
    let (_, named) = a.get("/retention").await;
    assert_eq!(named["max_store_mb"], 32, "the flag wins: {named}");
    assert_eq!(
        named["retain_messages"], 500,
        "the rest stays saved: {named}"
    );
    assert_eq!(named["sources"]["max_store_mb"], "flag");
    assert_eq!(named["sources"]["retain_messages"], "saved");
    a.stop().await;
}

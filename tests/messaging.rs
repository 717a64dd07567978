//! Two real nodes on loopback: link, connect, messages both ways, /recv, /messages filters,
//! /context, SSE push and replay with Last-Event-ID.

mod common;

use common::{Lab, SseReader, connect, eventually};
use serde_json::json;

#[tokio::test]
async fn link_connect_and_send_both_ways() {
    let lab = Lab::new();
    let a = lab.start("alpha").await;
    let b = lab.start("beta").await;

    let (status, link) = a.get("/link").await;
    assert_eq!(status, 200);
    assert!(
        link["link"]
            .as_str()
            .unwrap()
            .starts_with("acp://127.0.0.1:")
    );
    let peer_on_b = connect(&b, &a).await;
    assert_eq!(peer_on_b, "peer_001");

    // Names bind from the exchanged cards.
    let (_, peers) = b.get("/peers").await;
    assert_eq!(peers["peers"][0]["agent_name"], "alpha");
    let (_, peers) = a.get("/peers").await;
    assert_eq!(peers["peers"][0]["agent_name"], "beta");

    let sent = b
        .send_text("hello alpha", json!({"context_id": "ctx1"}))
        .await;
    assert_eq!(sent["ok"], true);
    assert_eq!(sent["delivery"], "sent");
    assert!(sent["server_seq"].as_i64().unwrap() >= 1);

    let reply = a
        .post(
            "/message:send",
            json!({"role": "agent", "parts": [
                {"type": "text", "content": "hello beta"},
                {"type": "data", "content": {"score": 7}},
                {"type": "file", "url": "https://example.invalid/f.txt", "media_type": "text/plain", "name": "f.txt"}
            ], "context_id": "ctx1"}),
        )
        .await;
    assert_eq!(reply.0, 200, "{}", reply.1);

    eventually(5, "alpha received", || async {
        a.get("/messages?direction=inbound").await.1["total"] == 1
    })
    .await;
    eventually(5, "beta received", || async {
        b.get("/messages?direction=inbound").await.1["total"] == 1
    })
    .await;

    // /recv consumes: first call returns it, second returns nothing.
    let (_, got) = a.get("/recv").await;
    assert_eq!(got["count"], 1);
    assert_eq!(got["messages"][0]["parts"][0]["content"], "hello alpha");
    assert_eq!(got["messages"][0]["raw"]["from"], "beta");
    assert_eq!(got["remaining"], 0);
    assert_eq!(a.get("/recv").await.1["count"], 0);

    let (_, got) = b.get("/recv").await;
    let parts = &got["messages"][0]["parts"];
    assert_eq!(parts[1]["content"]["score"], 7);
    assert_eq!(parts[2]["url"], "https://example.invalid/f.txt");

    // The conversation is visible on both sides, in server_seq order, both directions.
    let (_, ctx) = a.get("/context/ctx1/messages").await;
    assert_eq!(ctx["total"], 2);
    let (_, ctx) = b.get("/context/ctx1/messages?sort=desc&limit=1").await;
    assert_eq!(ctx["count"], 1);
    assert_eq!(ctx["has_more"], true);

    // Status counters.
    let (_, st) = b.get("/status").await;
    assert_eq!(st["messages_sent"], 1);
    assert_eq!(st["messages_received"], 1);
    assert_eq!(st["connected"], true);
}

#[tokio::test]
async fn messages_filters_and_paging() {
    let lab = Lab::new();
    let a = lab.start("alpha").await;
    let b = lab.start("beta").await;
    connect(&b, &a).await;
    for i in 0..5 {
        b.send_text(&format!("u{i}"), json!({})).await;
    }
    for i in 0..3 {
        let (s, r) = b
            .post(
                "/message:send",
                json!({"role": "agent", "text": format!("a{i}"), "context_id": "c9"}),
            )
            .await;
        assert_eq!(s, 200, "{r}");
    }
    eventually(5, "8 messages on alpha", || async {
        a.get("/messages").await.1["total"] == 8
    })
    .await;

    let (_, r) = a.get("/messages?role=agent").await;
    assert_eq!(r["total"], 3);
    let (_, r) = a.get("/messages?role=user&limit=2&sort=asc").await;
    assert_eq!(r["total"], 5);
    assert_eq!(r["messages"].as_array().unwrap().len(), 2);
    assert_eq!(r["messages"][0]["parts"][0]["content"], "u0");
    assert_eq!(r["has_more"], true);
    assert_eq!(r["next_offset"], 2);
    let (_, r) = a.get("/messages?role=user&limit=2&offset=4&sort=asc").await;
    assert_eq!(r["messages"][0]["parts"][0]["content"], "u4");
    assert_eq!(r["has_more"], false);
    let (_, r) = a.get("/messages?peer_id=beta").await;
    assert_eq!(r["total"], 8);
    let (_, r) = a.get("/messages?peer_id=peer_001").await;
    assert_eq!(r["total"], 8);
    let (_, r) = a.get("/messages?peer_id=nobody").await;
    assert_eq!(r["total"], 0);
    let (_, r) = a.get("/messages?context_id=c9").await;
    assert_eq!(r["total"], 3);
    let (_, r) = a.get("/messages?received_after=99999999999").await;
    assert_eq!(r["total"], 0);
    let (_, r) = b.get("/messages?direction=outbound").await;
    assert_eq!(r["total"], 8);
    let (_, r) = a.get("/history?limit=3").await;
    assert_eq!(r["total"], 8);
    assert_eq!(r["history"].as_array().unwrap().len(), 3);
    // Default sort is newest first.
    let (_, r) = a.get("/messages?limit=1").await;
    assert_eq!(r["messages"][0]["parts"][0]["content"], "a2");
}

#[tokio::test]
async fn sse_pushes_and_replays_after_reconnect() {
    let lab = Lab::new();
    let a = lab.start("alpha").await;
    let b = lab.start("beta").await;
    connect(&b, &a).await;

    let mut live = SseReader::open(&format!("{}/stream", a.url), None).await;
    b.send_text("first", json!({})).await;
    let ev = live
        .wait_for(5, "message event", |e| {
            e.data["type"] == "message" && e.data["direction"] == "inbound"
        })
        .await;
    assert_eq!(ev.data["parts"][0]["content"], "first");
    let first_id = ev.id.expect("every event has an id");
    assert_eq!(ev.data["seq"].as_u64(), Some(first_id));
    assert!(
        ev.event.is_none(),
        "message events are data-only, as in the reference"
    );
    drop(live);

    // Missed while disconnected: a task (named events) and two messages.
    let (s, task) = b.post("/tasks", json!({"role": "user", "parts": [{"type": "text", "content": "do it"}], "delegate": true})).await;
    assert_eq!(s, 201, "{task}");
    b.send_text("second", json!({})).await;
    b.send_text("third", json!({})).await;
    eventually(5, "alpha got 3", || async {
        a.get("/messages?direction=inbound").await.1["total"] == 3
    })
    .await;

    let mut again = SseReader::open(&format!("{}/stream", a.url), Some(first_id)).await;
    let mut seen = Vec::new();
    let mut last = first_id;
    while let Some(ev) = again.next(2).await {
        let id = ev.id.unwrap();
        assert!(id > last, "ids strictly increase ({id} after {last})");
        last = id;
        seen.push(ev);
        if seen.iter().filter(|e| e.data["type"] == "message").count() == 2 {
            break;
        }
    }
    let texts: Vec<_> = seen
        .iter()
        .filter(|e| e.data["type"] == "message")
        .map(|e| e.data["parts"][0]["content"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(texts, ["second", "third"]);
    let status = seen
        .iter()
        .find(|e| e.data["type"] == "status")
        .expect("task status replayed");
    assert_eq!(status.event.as_deref(), Some("acp.task.status"));

    // ?since= works like Last-Event-ID.
    let mut since = SseReader::open(&format!("{}/stream?since={first_id}", a.url), None).await;
    let ev = since.next(2).await.expect("replayed event");
    assert!(ev.id.unwrap() > first_id);

    // And live events keep flowing after a replay.
    b.send_text("fourth", json!({})).await;
    again
        .wait_for(5, "live after replay", |e| {
            e.data["parts"][0]["content"] == "fourth"
        })
        .await;
}

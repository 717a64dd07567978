//! Delivery acknowledgement, on the wire: a hand-driven peer that advertises
//! `capabilities.delivery_ack` gets `acp.ack` for the messages it sends once they are stored,
//! and what it does not confirm is re-sent, first and in order, when it connects again. A peer
//! without the capability (the Python reference) never sees an `acp.ack`. Between two real
//! nodes, messages end up `delivered` in `/messages`, with a `delivered` SSE event.

mod common;

use std::time::Duration;

use common::{Lab, SseReader, TestNode, connect, eventually};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connects to `node`'s peer port as an agent named `name`, sending a card with or without
/// the capability; returns after the host's card.
async fn fake_peer(node: &TestNode, name: &str, confirms: bool) -> Ws {
    let url = format!(
        "ws://127.0.0.1:{}/{}",
        node.server.ws_addr.port(),
        node.server.node.token()
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("dial");
    let caps = if confirms {
        json!({"delivery_ack": true})
    } else {
        json!({})
    };
    ws.send(Message::text(
        json!({"type": "acp.agent_card", "card": {"name": name, "capabilities": caps}}).to_string(),
    ))
    .await
    .unwrap();
    let card = next_frame(&mut ws, 10).await.expect("the host's card");
    assert_eq!(card["type"], "acp.agent_card");
    ws
}

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

fn message(id: &str) -> Message {
    Message::text(
        json!({"type": "acp.message", "message_id": id, "role": "user",
               "parts": [{"type": "text", "content": id}]})
        .to_string(),
    )
}

#[tokio::test]
async fn a_confirming_peer_gets_acks_for_what_is_stored() {
    let lab = Lab::new();
    let host = lab.start("host").await;
    let mut ws = fake_peer(&host, "careful", true).await;
    for id in ["m1", "m2", "m3"] {
        ws.send(message(id)).await.unwrap();
    }
    // A repeat is confirmed too (it is stored: the first copy was).
    ws.send(message("m2")).await.unwrap();
    let mut acked = Vec::new();
    while acked.len() < 4 {
        let frame = next_frame(&mut ws, 10).await.expect("acks in time");
        if frame["type"] == "acp.ack" {
            for id in frame["message_ids"].as_array().unwrap() {
                acked.push(id.as_str().unwrap().to_owned());
            }
        }
    }
    assert_eq!(acked, ["m1", "m2", "m3", "m2"]);
    // Acked means stored: the node has them now.
    let (_, inbound) = host.get("/messages?direction=inbound").await;
    assert_eq!(inbound["total"], 3, "{inbound}");
}

#[tokio::test]
async fn a_peer_without_the_capability_never_sees_an_ack() {
    let lab = Lab::new();
    let host = lab.start("host").await;
    let mut ws = fake_peer(&host, "reference", false).await;
    ws.send(message("r1")).await.unwrap();
    eventually(10, "stored", || async {
        host.get("/messages?direction=inbound").await.1["total"] == 1
    })
    .await;
    // A round trip after the message: whatever the node would say about r1 came before.
    let (s, _) = host
        .post("/message:send", json!({"role": "agent", "text": "pong"}))
        .await;
    assert_eq!(s, 200);
    let frame = next_frame(&mut ws, 10).await.expect("the node's message");
    assert_eq!(frame["type"], "acp.message", "no ack before it: {frame}");
    // The node does not wait for this peer to confirm anything.
    assert_eq!(host.peer_named("reference").await["unconfirmed"], 0);
}

#[tokio::test]
async fn what_a_peer_did_not_confirm_is_sent_again_first_and_in_order() {
    let lab = Lab::new();
    let host = lab.start("host").await;
    let mut ws = fake_peer(&host, "flaky", true).await;
    for i in 0..5 {
        let (s, r) = host
            .post(
                "/message:send",
                json!({"role": "agent", "text": format!("n{i}"), "message_id": format!("n{i}")}),
            )
            .await;
        assert_eq!((s, r["delivery"].as_str()), (200, Some("sent")), "{r}");
    }
    let mut got = Vec::new();
    while got.len() < 5 {
        let f = next_frame(&mut ws, 10).await.expect("the sends");
        got.push(f["message_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(got, ["n0", "n1", "n2", "n3", "n4"]);
    // Confirm only n0 and n1, then drop the connection.
    ws.send(Message::text(
        json!({"type": "acp.ack", "message_ids": ["n0", "n1", "nobody"]}).to_string(),
    ))
    .await
    .unwrap();
    eventually(10, "n0 and n1 confirmed", || async {
        host.peer_named("flaky").await["unconfirmed"] == 3
    })
    .await;
    let (_, list) = host.get("/messages?direction=outbound&limit=10").await;
    let state = |id: &str| {
        list["messages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["message_id"] == id)
            .map(|m| m["delivery"].clone())
    };
    assert_eq!(state("n0"), Some(json!("delivered")), "{list}");
    assert_eq!(state("n2"), Some(json!("sent")), "{list}");
    drop(ws);
    eventually(10, "disconnected", || async {
        host.peer_named("flaky").await["connected"] == false
    })
    .await;
    // Sent while away: queued, after the unconfirmed ones.
    let (s, r) = host
        .post(
            "/message:send",
            json!({"role": "agent", "text": "q", "message_id": "q0"}),
        )
        .await;
    assert_eq!(s, 503, "{r}");
    assert_eq!(r["queued"], true);
    let mut ws = fake_peer(&host, "flaky", true).await;
    let mut again = Vec::new();
    while again.len() < 4 {
        let f = next_frame(&mut ws, 10).await.expect("the re-sends");
        again.push(f["message_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(again, ["n2", "n3", "n4", "q0"]);
    ws.send(Message::text(
        json!({"type": "acp.ack", "message_ids": again}).to_string(),
    ))
    .await
    .unwrap();
    eventually(10, "all confirmed", || async {
        host.peer_named("flaky").await["unconfirmed"] == 0
    })
    .await;
}

#[tokio::test]
async fn unconfirmed_messages_survive_a_restart_of_the_sender() {
    let lab = Lab::new();
    let host = lab.start("host").await;
    let mut ws = fake_peer(&host, "slow", true).await;
    host.post(
        "/message:send",
        json!({"role": "agent", "text": "x", "message_id": "keep-me"}),
    )
    .await;
    let f = next_frame(&mut ws, 10).await.expect("the send");
    assert_eq!(f["message_id"], "keep-me");
    drop(ws);
    let dir = host.stop().await;
    let host = common::start_with(lab.config("host")).await;
    assert_eq!(host.dir, dir);
    assert_eq!(host.peer_named("slow").await["unconfirmed"], 1);
    let mut ws = fake_peer(&host, "slow", true).await;
    let f = next_frame(&mut ws, 10).await.expect("the re-send");
    assert_eq!(f["message_id"], "keep-me");
}

#[tokio::test]
async fn between_two_nodes_messages_become_delivered() {
    let lab = Lab::new();
    let a = lab.start("a").await;
    let b = lab.start("b").await;
    connect(&b, &a).await;
    let mut sse = SseReader::open(&format!("{}/stream", b.url), None).await;
    let sent = b.send_text("hello", json!({"message_id": "hello-1"})).await;
    assert_eq!(sent["delivery"], "sent");
    let ev = sse
        .wait_for(10, "delivered event", |e| {
            e.event.as_deref() == Some("delivered") || e.data["type"] == "delivered"
        })
        .await;
    assert_eq!(ev.data["message_ids"], json!(["hello-1"]), "{:?}", ev);
    let (_, list) = b.get("/messages?direction=outbound").await;
    assert_eq!(list["messages"][0]["delivery"], "delivered", "{list}");
    let (_, peers) = b.get("/peers").await;
    assert_eq!(peers["peers"][0]["unconfirmed"], 0);
    assert_eq!(peers["peers"][0]["delivery_ack"], true);
}

#[tokio::test]
async fn a_peer_that_never_confirms_cannot_make_the_sender_hold_more_than_the_bound() {
    let lab = Lab::new();
    let host = lab.start("host").await;
    let mut ws = fake_peer(&host, "silent", true).await;
    // Reads everything, confirms nothing.
    let reader = tokio::spawn(async move { while let Some(Ok(_)) = ws.next().await {} });
    let bound = acp_relay::node::unconfirmed::MAX_UNCONFIRMED;
    let url = host.url.clone();
    let clients: Vec<_> = (0..8)
        .map(|k| {
            let url = url.clone();
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                let mut ok = 0usize;
                for i in 0..bound / 8 + 50 {
                    let resp = http
                        .post(format!("{url}/message:send"))
                        .json(&json!({"role": "agent", "text": "x", "message_id": format!("b{k}-{i}")}))
                        .send()
                        .await
                        .unwrap();
                    let status = resp.status().as_u16();
                    let body: Value = resp.json().await.unwrap();
                    match status {
                        200 => ok += 1,
                        429 => {
                            assert_eq!(body["error_code"], "ERR_QUEUE_FULL", "{body}");
                            assert!(body["error"].as_str().unwrap().contains("not confirmed"));
                        }
                        other => panic!("{other}: {body}"),
                    }
                }
                ok
            })
        })
        .collect();
    let mut accepted = 0;
    for c in clients {
        accepted += c.await.unwrap();
    }
    // The bound is checked when a send picks its peer, so the sends in flight at that moment
    // (8 here) may pass it together, but no more.
    assert!(
        (bound..=bound + 8).contains(&accepted),
        "{accepted} accepted for a bound of {bound}"
    );
    assert_eq!(host.peer_named("silent").await["unconfirmed"], accepted);
    reader.abort();
}

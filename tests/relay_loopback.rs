//! Levels 2 and 3 on loopback: a relay started in-process with a self-signed certificate,
//! and nodes that use it. A link whose host:port does not answer still reaches its node over
//! iroh by key (through the relay, then directly), with the same messages, tasks, offline
//! queue and acknowledgements as over TCP. What only a real NAT can show (hole punching,
//! relayed traffic, a relay outage) is in `tests/nat.rs`.

mod common;

use std::net::SocketAddr;
use std::path::Path;

use acp_relay::relay::{RelayArgs, RunningRelay};
use acp_relay::wire::link::Link;
use acp_relay::wire::relay_url::RelaySpec;
use common::{Lab, SseReader, TestNode, eventually, start_with};
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::StreamableHttpClientTransport;
use serde_json::{Value, json};

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

async fn start_relay(cert_out: &Path) -> RunningRelay {
    let args = RelayArgs {
        https_bind: any_port(),
        quic_bind: any_port(),
        http_bind: any_port(),
        tls_cert: None,
        tls_key: None,
        tls_self_signed: Some("127.0.0.1".into()),
        tls_cert_out: Some(cert_out.to_owned()),
        acme_domain: None,
        acme_contact: None,
        acme_cache: None,
    };
    acp_relay::relay::start(&args).await.expect("relay starts")
}

/// A node that uses `relay`, trusting its certificate.
async fn start_node(lab: &Lab, name: &str, relay: &RunningRelay, ca: &Path) -> TestNode {
    let mut config = lab.config(name);
    config.relays = vec![RelaySpec {
        url: format!("https://{}/", relay.https_addr().unwrap()),
        quic_port: Some(relay.quic_addr().unwrap().port()),
    }];
    config.relay_ca = Some(ca.to_owned());
    start_with(config).await
}

/// A relay and the lab its nodes live in.
struct World {
    lab: Lab,
    ca: std::path::PathBuf,
    relay: RunningRelay,
}

impl World {
    async fn new() -> World {
        let lab = Lab::new();
        let ca = lab.root.path().join("relay.pem");
        let relay = start_relay(&ca).await;
        World { lab, ca, relay }
    }

    /// A node that uses the relay.
    async fn node(&self, name: &str) -> TestNode {
        start_node(&self.lab, name, &self.relay, &self.ca).await
    }

    /// Stops the nodes, then the relay.
    async fn stop(self, nodes: Vec<TestNode>) {
        for node in nodes {
            node.stop().await;
        }
        self.relay.shutdown().await;
    }
}

/// `node`'s link with its host:port pointing where nothing listens, as a NATed node's LAN
/// address looks from elsewhere; once its endpoint has joined the relay.
async fn link_without_direct_route(node: &TestNode) -> String {
    eventually(20, "the link carries the relay hint", || async {
        Link::parse(&node.link()).unwrap().relay.is_some()
    })
    .await;
    let mut link = Link::parse(&node.link()).unwrap();
    link.port = common::free_port();
    link.to_string()
}

async fn peer_entry(node: &TestNode, id: &str) -> Value {
    node.get(&format!("/peers/{id}")).await.1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_whose_host_does_not_answer_reaches_its_node_over_iroh() {
    let world = World::new().await;
    let alice = world.node("alice").await;
    let bob = world.node("bob").await;

    let link = link_without_direct_route(&alice).await;
    let mut events = SseReader::open(&format!("{}/stream", bob.url), None).await;
    let (status, r) = bob.post("/peers/connect", json!({"link": link})).await;
    assert_eq!(status, 200, "{r}");
    let peer = r["peer_id"].as_str().unwrap().to_owned();
    // Watchers learn the path with the connection (and of every later change).
    let ev = events
        .wait_for(30, "the peer's connected event", |e| {
            e.data["type"] == "peer" && e.data["event"] == "connected"
        })
        .await;
    let kind = ev.data["connection_type"].as_str().unwrap_or_default();
    assert!(matches!(kind, "dcutr_direct" | "relay"), "{:?}", ev);
    eventually(30, "bob connected to alice over iroh", || async {
        peer_entry(&bob, &peer).await["connected"] == true
    })
    .await;
    let entry = peer_entry(&bob, &peer).await;
    // On one machine the direct UDP path always works: iroh finds it.
    eventually(30, "the path becomes direct", || async {
        peer_entry(&bob, &peer).await["connection_type"] == "dcutr_direct"
    })
    .await;
    assert_eq!(
        entry["verified"], true,
        "the QUIC handshake proved the key: {entry}"
    );
    let (_, status) = bob.get("/status").await;
    assert_ne!(status["connection_type"], "host");

    // Messages both ways, confirmed as delivered.
    let sent = bob
        .send_text("hello over quic", json!({"context_id": "c1"}))
        .await;
    eventually(10, "alice has bob's message", || async {
        let (_, m) = alice.get("/context/c1/messages").await;
        m.to_string().contains("hello over quic")
    })
    .await;
    alice.send_text("hi bob", json!({"context_id": "c1"})).await;
    eventually(10, "bob has alice's reply", || async {
        let (_, m) = bob.get("/context/c1/messages").await;
        m.to_string().contains("hi bob")
    })
    .await;
    let id = sent["message_id"].as_str().unwrap().to_owned();
    eventually(10, "bob's message is confirmed", || async {
        let (_, m) = bob.get("/messages?direction=outbound").await;
        m["messages"].as_array().is_some_and(|l| {
            l.iter()
                .any(|x| x["id"] == id && x["delivery"] == "delivered")
        })
    })
    .await;

    // A task both ways: bob delegates, alice completes it.
    let (status, task) = bob
        .post(
            "/tasks",
            json!({"role": "user", "text": "summarize", "delegate": true}),
        )
        .await;
    assert_eq!(status, 201, "{task}");
    let task_id = task["id"].as_str().unwrap().to_owned();
    eventually(10, "alice has the task", || async {
        alice.get(&format!("/tasks/{task_id}")).await.0 == 200
    })
    .await;
    let (status, r) = alice
        .post(
            &format!("/tasks/{task_id}:update"),
            json!({"status": "completed", "artifact": {"parts": [{"type": "text", "content": "done"}]}}),
        )
        .await;
    assert_eq!(status, 200, "{r}");
    eventually(10, "bob sees the task completed", || async {
        bob.get(&format!("/tasks/{task_id}")).await.1["status"] == "completed"
    })
    .await;

    // The offline queue across a restart of alice: her UDP port changes, so bob reaches her
    // again through the relay her link names.
    let dir = alice.dir.clone();
    let mut config = alice.server.node.config().clone();
    alice.stop().await;
    eventually(60, "bob sees alice gone", || async {
        peer_entry(&bob, &peer).await["connected"] == false
    })
    .await;
    let (status, queued) = bob
        .post(
            "/message:send",
            json!({"role": "user", "text": "while you were away", "context_id": "c2"}),
        )
        .await;
    // The reference's answer for an offline peer: 503, and the message kept in the queue.
    assert_eq!((status, &queued["queued"]), (503, &json!(true)), "{queued}");
    config.data_dir = dir;
    let alice = start_with(config).await;
    eventually(
        60,
        "alice gets the queued message after her restart",
        || async {
            let (_, m) = alice.get("/context/c2/messages").await;
            m.to_string().contains("while you were away")
        },
    )
    .await;
    world.stop(vec![alice, bob]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_relays_tries_only_the_direct_route_and_says_why() {
    let world = World::new().await;
    let alice = world.node("alice").await;
    let bob = world.lab.start("bob").await;
    let link = link_without_direct_route(&alice).await;
    let (status, r) = bob.post("/peers/connect", json!({"link": link})).await;
    assert_eq!(status, 200, "{r}");
    let peer = r["peer_id"].as_str().unwrap().to_owned();
    eventually(20, "the dial error explains what was not tried", || async {
        let e = peer_entry(&bob, &peer).await;
        e["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("not reachable directly") && e.contains("--relay"))
    })
    .await;
    assert_eq!(peer_entry(&bob, &peer).await["connected"], false);
    world.stop(vec![alice, bob]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acp_connect_says_which_level_worked() {
    let world = World::new().await;
    let alice = world.node("alice").await;
    let bob = world.node("bob").await;
    let link = link_without_direct_route(&alice).await;
    let client = ()
        .serve(StreamableHttpClientTransport::from_uri(format!(
            "{}/mcp",
            bob.url
        )))
        .await
        .expect("MCP session");
    let args = json!({"link": link}).as_object().cloned().unwrap();
    let r = client
        .call_tool(CallToolRequestParams::new("acp_connect").with_arguments(args))
        .await
        .expect("acp_connect");
    let text: String = r
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect();
    let result = r.structured_content.expect("structured result");
    assert_eq!(result["connected"], true, "{result}");
    // Over iroh: punched (on one machine the direct UDP path is there at once) or, for a
    // moment, relayed; the words say which.
    match result["connection_type"].as_str() {
        Some("dcutr_direct") => assert!(text.contains("hole punched"), "{text}"),
        Some("relay") => assert!(text.contains("through the relay"), "{text}"),
        other => panic!("unexpected connection_type {other:?}: {result}"),
    }
    client.cancel().await.expect("close MCP session");
    world.stop(vec![alice, bob]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_iroh_a_card_must_be_signed_by_the_key_the_connection_proved() {
    use futures_util::{SinkExt, StreamExt};
    use iroh::{EndpointAddr, RelayConfig, RelayMap, RelayMode, RelayUrl};
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    use tokio_tungstenite::tungstenite::Message;

    let world = World::new().await;
    let alice = world.node("alice").await;
    let bob = world.node("bob").await;
    let link = Link::parse(&link_without_direct_route(&alice).await).unwrap();
    // An impostor with a key of its own, replaying bob's (validly signed) card to alice.
    let relay: RelayUrl = link.relay.as_deref().unwrap().parse().unwrap();
    let map = RelayMap::empty();
    map.insert(
        relay.clone(),
        std::sync::Arc::new(RelayConfig::new(relay.clone(), None)),
    );
    let ca = CertificateDer::pem_file_iter(&world.ca)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let impostor = iroh::Endpoint::builder(iroh::endpoint::presets::Minimal)
        .relay_mode(RelayMode::Custom(map))
        .ca_tls_config(iroh_relay::tls::CaTlsConfig::embedded().with_extra_roots(ca))
        .bind()
        .await
        .expect("impostor endpoint");
    let key = acp_relay::wire::did::parse_did(link.did.as_deref().unwrap()).unwrap();
    let mut to = EndpointAddr::new(iroh::PublicKey::from_bytes(key.as_bytes()).unwrap())
        .with_relay_url(relay);
    for a in &link.addrs {
        to = to.with_ip_addr(*a);
    }
    let conn = impostor
        .connect(to, acp_relay::wire::quic::ALPN)
        .await
        .expect("QUIC to alice");
    let (send, recv) = conn.open_bi().await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(link.ws_url(), tokio::io::join(recv, send))
        .await
        .expect("WebSocket over QUIC");
    let replayed = acp_relay::wire::frame::agent_card(&bob.server.node.card());
    ws.send(Message::text(replayed.to_string())).await.unwrap();
    let mut refusal = Value::Null;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while let Ok(Some(msg)) = tokio::time::timeout_at(deadline, ws.next()).await {
        let Ok(msg) = msg else { break };
        if let Message::Text(t) = msg {
            let frame: Value = serde_json::from_str(t.as_str()).unwrap();
            if frame["type"] == "error" {
                refusal = frame;
                break;
            }
        }
    }
    assert_eq!(refusal["code"], "invalid_card_signature", "{refusal}");
    assert!(
        refusal["message"].as_str().unwrap_or("").contains("QUIC"),
        "{refusal}"
    );
    let (_, peers) = alice.get("/peers").await;
    assert_eq!(
        peers["count"], 0,
        "the impostor left no peer behind: {peers}"
    );
    conn.close(0u32.into(), b"");
    impostor.close().await;
    world.stop(vec![alice, bob]).await;
}

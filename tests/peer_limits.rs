//! What a stranger can make the peer port hold: bad-token floods, silent connections that
//! never finish their handshake, and peers past `--max-peers`. Each test shows the node stays
//! healthy and a good peer still gets in. The tests in this file run one at a time (they
//! measure the process's memory and read its log).

mod common;

use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use common::{Lab, TestNode, eventually};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// Everything the nodes of this test binary logged (warn and above unless `ACP_LOG` says
/// otherwise), so tests can check what was logged.
static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());

/// Serializes the tests: memory is measured for the whole process.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOG.lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        std::io::stderr().write_all(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A lab whose log is captured in [`LOG`] (installed before `Lab::new` installs its own).
fn lab() -> Lab {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ACP_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_ansi(false)
        .with_writer(|| LogWriter)
        .try_init();
    Lab::new()
}

fn log_lines_with(needle: &str) -> usize {
    let log = LOG.lock().unwrap_or_else(|p| p.into_inner());
    String::from_utf8_lossy(&log)
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

fn ws_url(node: &TestNode, token: &str) -> String {
    format!("ws://127.0.0.1:{}/{}", node.server.ws_addr.port(), token)
}

/// This process's resident set size in bytes (the nodes run in-process).
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS line");
    kb * 1024
}

async fn peer_count(node: &TestNode) -> u64 {
    let (status, st) = node.get("/status").await;
    assert_eq!(status, 200, "node unhealthy: {st}");
    st["peer_count"].as_u64().expect("peer_count")
}

/// Dials with a wrong token; checks the refusal frame and that the node closes.
async fn bad_dial(url: &str) {
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("the upgrade succeeds; the refusal comes after it");
    let first = tokio::time::timeout(Duration::from_secs(30), ws.next())
        .await
        .expect("refusal frame in time");
    match first {
        Some(Ok(Message::Text(t))) => {
            let v: Value = serde_json::from_str(t.as_str()).expect("JSON");
            assert_eq!(v["code"], "invalid_token", "{v}");
        }
        other => panic!("expected the invalid_token frame, got {other:?}"),
    }
    let closed = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match ws.next().await {
                None | Some(Ok(Message::Close(_))) | Some(Err(_)) => return,
                Some(Ok(_)) => continue,
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the node did not close a refused connection"
    );
}

/// A good peer connects to `host` (within `secs`) and a message gets through.
async fn good_peer_gets_in(host: &TestNode, peer: &TestNode, secs: u64, text: &str) {
    let before = peer_count(host).await;
    let (status, resp) = peer
        .post("/peers/connect", json!({"link": host.link()}))
        .await;
    assert_eq!(status, 200, "connect: {resp}");
    eventually(secs, "the good peer is connected on both sides", || async {
        peer_count(host).await > before && peer_count(peer).await >= 1
    })
    .await;
    let inbound0 = host.get("/messages?direction=inbound").await.1["total"]
        .as_u64()
        .unwrap_or(0);
    peer.send_text(text, json!({"peer_id": resp["peer_id"]}))
        .await;
    eventually(secs, "the good peer's message arrives", || async {
        host.get("/messages?direction=inbound").await.1["total"].as_u64() > Some(inbound0)
    })
    .await;
}

#[tokio::test]
async fn bad_token_flood_leaves_the_node_healthy_and_its_memory_flat() {
    let _serial = SERIAL.lock().await;
    let lab = lab();
    let host = lab.start("host").await;
    let url = ws_url(&host, "wrongtoken");
    let lines0 = log_lines_with("peer refused: invalid token");
    let started = std::time::Instant::now();

    for _ in 0..300 {
        bad_dial(&url).await;
    }
    assert_eq!(peer_count(&host).await, 0);
    let warm = rss_bytes();
    for _ in 300..3000 {
        bad_dial(&url).await;
    }
    let after = rss_bytes();
    let elapsed = started.elapsed();
    eprintln!(
        "bad-token flood: RSS after 300 dials {:.1} MiB, after 3000 dials {:.1} MiB ({:+.1} MiB), {:.1} s",
        warm as f64 / 1048576.0,
        after as f64 / 1048576.0,
        (after as f64 - warm as f64) / 1048576.0,
        elapsed.as_secs_f64()
    );
    assert!(
        after <= warm + 16 * 1024 * 1024,
        "memory grew with refused dials: {warm} -> {after} bytes"
    );

    // Healthy, nobody became a peer, and the refusals were logged in a few aggregated lines
    // (at most one per 5 s), not one line per dial.
    let (status, peers) = host.get("/peers").await;
    assert_eq!(status, 200);
    assert_eq!(
        peers["count"], 0,
        "a refused dialler became a peer: {peers}"
    );
    let lines = log_lines_with("peer refused: invalid token") - lines0;
    assert!(lines >= 1, "the refusals were not logged at all");
    let most = 2 + elapsed.as_secs() as usize / 5;
    assert!(
        lines <= most,
        "{lines} refusal lines for 3000 dials in {elapsed:?} (at most {most} expected)"
    );

    let good = lab.start("good").await;
    good_peer_gets_in(&host, &good, 30, "still here").await;
}

#[tokio::test]
async fn silent_strangers_cannot_keep_a_good_peer_out() {
    let _serial = SERIAL.lock().await;
    let lab = lab();
    let host = lab.start("host").await;
    let addr = host.server.ws_addr;
    let token = host.server.node.token().to_owned();

    // More strangers than there are handshake places (64), all holding their connection:
    // some send nothing, some half a request, some complete the upgrade with the right token
    // and then never send their card.
    let mut held = Vec::new();
    for i in 0..120 {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        if i % 3 == 1 {
            s.write_all(format!("GET /{token} HTTP/1.1\r\nHost: x\r\n").as_bytes())
                .await
                .expect("half a request");
        }
        held.push(s);
    }
    let mut silent_ws = Vec::new();
    for _ in 0..20 {
        let (ws, _) = tokio_tungstenite::connect_async(ws_url(&host, &token))
            .await
            .expect("upgrade");
        silent_ws.push(ws);
    }

    // And strangers that open a new silent connection as soon as the node closes theirs
    // (bounded: at most 50 reconnections each).
    let mut persistent = Vec::new();
    for _ in 0..40 {
        persistent.push(tokio::spawn(async move {
            for _ in 0..50 {
                let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
                    return;
                };
                let mut buf = [0u8; 64];
                // Returns when the node closes the connection.
                let _ = tokio::io::AsyncReadExt::read(&mut s, &mut buf).await;
            }
        }));
    }

    let good = lab.start("good").await;
    good_peer_gets_in(&host, &good, 30, "let me in").await;
    assert_eq!(peer_count(&host).await, 1, "a stranger became a peer");
    let (status, _) = host.get("/status").await;
    assert_eq!(status, 200);
    for task in &persistent {
        task.abort();
    }
    drop(held);
    drop(silent_ws);
}

/// Opens a raw peer connection named `name` and returns it with the host's first frame.
async fn raw_peer(
    host: &TestNode,
    name: &str,
) -> (
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    Value,
) {
    let token = host.server.node.token().to_owned();
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url(host, &token))
        .await
        .expect("upgrade");
    ws.send(Message::text(
        json!({"type": "acp.agent_card", "card": {"name": name}}).to_string(),
    ))
    .await
    .expect("send card");
    let first = loop {
        match tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                break serde_json::from_str(t.as_str()).expect("JSON frame");
            }
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            other => panic!("no first frame for {name}: {other:?}"),
        }
    };
    (ws, first)
}

/// Reads until the connection ends; returns the close code if there was a close frame.
async fn closed_with(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> Option<CloseCode> {
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| f.code),
                None | Some(Err(_)) => return None,
                Some(Ok(_)) => continue,
            }
        }
    })
    .await
    .expect("the connection is closed in time")
}

#[tokio::test]
async fn max_peers_refuses_past_the_cap_and_frees_places() {
    let _serial = SERIAL.lock().await;
    let lab = lab();
    let mut cfg = lab.config("host");
    cfg.max_peers = 2;
    let host = common::start_with(cfg).await;
    let a = lab.start("alpha").await;
    let b = lab.start("beta").await;
    let c = lab.start("gamma").await;
    let refusals0 = log_lines_with("peer refused: this node is at --max-peers");

    let a_peer = common::connect(&a, &host).await;
    common::connect(&b, &host).await;
    eventually(30, "two peers on the host", || async {
        peer_count(&host).await == 2
    })
    .await;

    // A third dialler is refused with the error frame; its node says why in /peers.
    let (status, resp) = c.post("/peers/connect", json!({"link": host.link()})).await;
    assert_eq!(status, 200, "{resp}");
    let c_peer = resp["peer_id"].as_str().expect("peer_id").to_owned();
    eventually(30, "the third dialler is told the host is full", || async {
        let (_, p) = c.get(&format!("/peers/{c_peer}")).await;
        p["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("too_many_peers"))
    })
    .await;
    assert_eq!(peer_count(&host).await, 2);
    assert!(
        log_lines_with("peer refused: this node is at --max-peers") > refusals0,
        "the host did not log the refusal"
    );
    let (_, host_peers) = host.get("/peers").await;
    assert_eq!(
        host_peers["count"], 2,
        "a refused peer left an entry: {host_peers}"
    );

    // Dialling out past the cap: a clear 429, and no entry is created.
    let d = lab.start("delta").await;
    let (status, err) = host.post("/peers/connect", json!({"link": d.link()})).await;
    assert_eq!(status, 429, "{err}");
    assert_eq!(err["error_code"], "ERR_TOO_MANY_PEERS", "{err}");
    assert!(
        err["error"]
            .as_str()
            .is_some_and(|e| e.contains("--max-peers")),
        "{err}"
    );
    assert_eq!(host.get("/peers").await.1["count"], 2);

    // One peer leaves (and the refused one stops trying): a new one gets in.
    c.stop().await;
    let (status, resp) = a
        .request(reqwest::Method::DELETE, &format!("/peers/{a_peer}"), None)
        .await;
    assert_eq!(status, 200, "{resp}");
    eventually(30, "the host sees alpha leave", || async {
        peer_count(&host).await == 1
    })
    .await;
    good_peer_gets_in(&host, &d, 30, "my turn").await;
    assert_eq!(peer_count(&host).await, 2);
}

#[tokio::test]
async fn a_peer_replacing_its_connection_is_not_refused_at_the_cap() {
    let _serial = SERIAL.lock().await;
    let lab = lab();
    let mut cfg = lab.config("host");
    cfg.max_peers = 2;
    let host = common::start_with(cfg).await;

    let (mut old, first) = raw_peer(&host, "dup").await;
    assert_eq!(first["type"], "acp.agent_card", "{first}");
    let (_other, first) = raw_peer(&host, "other").await;
    assert_eq!(first["type"], "acp.agent_card", "{first}");
    eventually(30, "two peers on the host", || async {
        peer_count(&host).await == 2
    })
    .await;
    let (_, peers) = host.get("/peers").await;
    let dup_id = peers["peers"]
        .as_array()
        .and_then(|l| l.iter().find(|p| p["agent_name"] == "dup"))
        .and_then(|p| p["id"].as_str())
        .expect("dup's entry")
        .to_owned();

    // A stranger at the cap: the error frame first, then close 1013 (try again later).
    let (mut stranger, first) = raw_peer(&host, "stranger").await;
    assert_eq!(first["type"], "error", "{first}");
    assert_eq!(first["code"], "too_many_peers", "{first}");
    assert_eq!(closed_with(&mut stranger).await, Some(CloseCode::Again));

    // "dup" comes back on a new connection while the old one still counts: it is let in,
    // takes over its entry, and the old connection is closed.
    let (mut new, first) = raw_peer(&host, "dup").await;
    assert_eq!(first["type"], "acp.agent_card", "{first}");
    closed_with(&mut old).await;
    new.send(Message::text(
        json!({"type": "acp.message", "message_id": "m_back", "role": "user",
               "parts": [{"type": "text", "content": "back"}]})
        .to_string(),
    ))
    .await
    .expect("send");
    eventually(30, "the message on the new connection arrives", || async {
        host.get("/messages?direction=inbound").await.1["total"] == 1
    })
    .await;
    assert_eq!(peer_count(&host).await, 2);
    let (_, peers) = host.get("/peers").await;
    assert_eq!(
        peers["count"], 2,
        "the returning peer got a new entry: {peers}"
    );
    let (_, p) = host.get(&format!("/peers/{dup_id}")).await;
    assert_eq!(p["connected"], true, "{p}");
    assert_eq!(p["messages_received"], 1, "{p}");
}

#[tokio::test]
async fn a_burst_of_real_peers_only_slows_down() {
    let _serial = SERIAL.lock().await;
    let lab = lab();
    let host = lab.start("host").await;
    let url = ws_url(&host, host.server.node.token());
    // More peers than there are handshake places, 64 dialling at once (as the load
    // benchmark does): none may be evicted as a stranger would be.
    let n = 200;
    let mut clients = Vec::new();
    let mut dials = futures_util::stream::iter(0..n)
        .map(|i| {
            let url = url.clone();
            async move {
                let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
                    .await
                    .expect("upgrade");
                ws.send(Message::text(
                    json!({"type": "acp.agent_card", "card": {"name": format!("burst-{i}")}})
                        .to_string(),
                ))
                .await
                .expect("send card");
                ws
            }
        })
        .buffer_unordered(64);
    while let Some(ws) = dials.next().await {
        clients.push(ws);
    }
    eventually(60, "every peer of the burst connected", || async {
        peer_count(&host).await == n
    })
    .await;
    drop(clients);
}

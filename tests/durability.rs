//! What must survive: the offline queue across a peer's absence and restarts of either side,
//! everything acknowledged across a SIGKILL, and signed traffic only between nodes that share
//! the secret.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{Lab, TestNode, connect, eventually, free_port, start_with};
use serde_json::{Value, json};

async fn recv_texts(node: &TestNode, want: usize) -> Vec<String> {
    let mut texts = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while texts.len() < want {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out: got {texts:?}, want {want}"
        );
        let (_, r) = node.get("/recv?limit=1000&wait=1").await;
        for m in r["messages"].as_array().unwrap() {
            texts.push(m["parts"][0]["content"].as_str().unwrap().to_owned());
        }
    }
    texts
}

#[tokio::test]
async fn offline_queue_survives_restarts_and_flushes_in_order() {
    let lab = Lab::new();
    let mut a_cfg = lab.config("alpha");
    a_cfg.port = free_port();
    let a = start_with(a_cfg.clone()).await;
    let b = lab.start("beta").await;
    connect(&b, &a).await; // beta dials alpha and will redial it

    let b_dir = b.stop().await;
    eventually(5, "alpha sees beta gone", || async {
        a.get("/peers").await.1["active"] == 0
    })
    .await;

    // Alpha sends to the absent peer: each is queued (503 ERR_NOT_CONNECTED, queued: true).
    for i in 0..10 {
        let (s, r) = a
            .post(
                "/message:send",
                json!({"role": "user", "text": format!("q{i}")}),
            )
            .await;
        assert_eq!(s, 503, "{r}");
        assert_eq!(r["error_code"], "ERR_NOT_CONNECTED");
        assert_eq!(r["queued"], true);
        assert_eq!(r["queue_depth"], i + 1);
    }
    let (_, q) = a.get("/offline-queue").await;
    assert_eq!(q["total_queued"], 10);
    assert!(
        q["queue"]["peer_001"]["messages"][0]["id"]
            .as_str()
            .is_some()
    );

    // Restart alpha: the queue is in the store.
    a.stop().await;
    let a = start_with(a_cfg.clone()).await;
    assert_eq!(a.get("/offline-queue").await.1["total_queued"], 10);

    // Beta comes back (same data dir): it redials alpha by itself and gets the queue in order.
    let mut b_cfg = lab.config("beta");
    b_cfg.data_dir = b_dir;
    let b = start_with(b_cfg).await;
    let texts = recv_texts(&b, 10).await;
    assert_eq!(texts, (0..10).map(|i| format!("q{i}")).collect::<Vec<_>>());
    eventually(5, "queue drained", || async {
        a.get("/offline-queue").await.1["total_queued"] == 0
    })
    .await;

    // New sends after the flush arrive after the queued ones.
    a.send_text("live", json!({})).await;
    assert_eq!(recv_texts(&b, 1).await, ["live"]);

    // Queue limit: a full queue is refused explicitly, nothing is silently dropped.
    b.stop().await;
    eventually(5, "beta gone again", || async {
        a.get("/peers").await.1["active"] == 0
    })
    .await;
    let mut cfg = lab.config("gamma");
    cfg.offline_queue_limit = 3;
    let c = start_with(cfg).await;
    let d = lab.start("delta").await;
    connect(&d, &c).await;
    d.stop().await;
    eventually(5, "gamma sees delta gone", || async {
        c.get("/peers").await.1["active"] == 0
    })
    .await;
    for _ in 0..3 {
        assert_eq!(
            c.post("/message:send", json!({"role": "user", "text": "x"}))
                .await
                .0,
            503
        );
    }
    let (s, r) = c
        .post(
            "/message:send",
            json!({"role": "user", "text": "one too many"}),
        )
        .await;
    assert_eq!(s, 429, "{r}");
    assert_eq!(r["error_code"], "ERR_QUEUE_FULL");
}

#[tokio::test]
async fn dialer_queues_while_host_is_down_and_redials() {
    let lab = Lab::new();
    let mut a_cfg = lab.config("alpha");
    a_cfg.port = free_port();
    let a = start_with(a_cfg.clone()).await;
    let b = lab.start("beta").await;
    connect(&b, &a).await;
    a.stop().await;
    eventually(5, "beta sees alpha gone", || async {
        b.get("/peers").await.1["active"] == 0
    })
    .await;
    for i in 0..5 {
        let (s, _) = b
            .post(
                "/message:send",
                json!({"role": "agent", "text": format!("m{i}")}),
            )
            .await;
        assert_eq!(s, 503);
    }
    let a = start_with(a_cfg).await;
    let texts = recv_texts(&a, 5).await;
    assert_eq!(texts, ["m0", "m1", "m2", "m3", "m4"]);
    let (_, st) = b.get("/status").await;
    assert!(st["reconnect_count"].as_u64().unwrap() >= 1);
}

struct Child {
    proc: std::process::Child,
    url: String,
}

async fn spawn_node(dir: &std::path::Path, port: u16, http_port: u16) -> Child {
    let proc = std::process::Command::new(env!("CARGO_BIN_EXE_acp-relay"))
        .args([
            "serve",
            "--name",
            "killme",
            "--ws-host",
            "127.0.0.1",
            "--advertise-host",
            "127.0.0.1",
        ])
        .args([
            "--port",
            &port.to_string(),
            "--http-port",
            &http_port.to_string(),
        ])
        .arg("--data-dir")
        .arg(dir)
        .env("ACP_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn acp-relay");
    let url = format!("http://127.0.0.1:{http_port}");
    let client = reqwest::Client::new();
    eventually(10, "child node up", || async {
        client.get(format!("{url}/status")).send().await.is_ok()
    })
    .await;
    Child { proc, url }
}

async fn get(url: &str) -> Value {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn sigkill_loses_nothing_acknowledged() {
    let lab = Lab::new();
    let peer = lab.start("peer").await;
    let dir = lab.root.path().join("killme");
    let (port, http_port) = (free_port(), free_port());
    let mut child = spawn_node(&dir, port, http_port).await;
    let http = reqwest::Client::new();
    let link_before = get(&format!("{}/link", child.url)).await["link"].clone();

    let r: Value = http
        .post(format!("{}/peers/connect", child.url))
        .json(&json!({"link": peer.link()}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["ok"], true);
    eventually(5, "child connected", || async {
        get(&format!("{}/peers", child.url)).await["active"] == 1
    })
    .await;

    // Acknowledged sends and tasks on the child.
    for i in 0..50 {
        let resp = http
            .post(format!("{}/message:send", child.url))
            .json(&json!({"role": "user", "text": format!("out{i}"), "context_id": "k"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
    }
    let t: Value = http
        .post(format!("{}/tasks", child.url))
        .json(&json!({"text": "keep me"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let task_id = t["id"].as_str().unwrap().to_owned();
    // Inbound messages the child has shown in /messages are stored.
    for i in 0..20 {
        peer.send_text(&format!("in{i}"), json!({})).await;
    }
    eventually(5, "child stored inbound", || async {
        get(&format!("{}/messages?direction=inbound", child.url)).await["total"] == 20
    })
    .await;

    child.proc.kill().expect("SIGKILL");
    child.proc.wait().unwrap();
    let mut child = spawn_node(&dir, port, http_port).await;

    assert_eq!(
        get(&format!("{}/link", child.url)).await["link"],
        link_before,
        "the link survives a restart"
    );
    assert_eq!(
        get(&format!("{}/messages?direction=outbound", child.url)).await["total"],
        50
    );
    assert_eq!(
        get(&format!("{}/context/k/messages?limit=200", child.url)).await["total"],
        50
    );
    assert_eq!(
        get(&format!("{}/tasks/{task_id}", child.url)).await["status"],
        "submitted"
    );
    let recv = get(&format!("{}/recv?limit=100", child.url)).await;
    assert_eq!(
        recv["count"], 20,
        "unread inbound messages are still unread"
    );
    assert_eq!(recv["messages"][0]["parts"][0]["content"], "in0");
    // It redials the peer it had dialled.
    eventually(10, "child redialled", || async {
        get(&format!("{}/peers", child.url)).await["active"] == 1
    })
    .await;
    // The server_seq continues after the restart.
    let r: Value = http
        .post(format!("{}/message:send", child.url))
        .json(&json!({"role": "user", "text": "after"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["server_seq"], 51);

    // SIGTERM: graceful exit.
    unsafe_sigterm(child.proc.id());
    let status = tokio::task::spawn_blocking(move || child.proc.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(
        status.success(),
        "graceful shutdown exits 0, got {status:?}"
    );
}

fn unsafe_sigterm(pid: u32) {
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

#[tokio::test]
async fn hmac_mismatch_is_refused_and_match_is_accepted() {
    let lab = Lab::new();
    let mut a_cfg = lab.config("alpha");
    a_cfg.secret = Some("s3cret".into());
    let a = start_with(a_cfg).await;
    let mut b_cfg = lab.config("beta");
    b_cfg.secret = Some("s3cret".into());
    let b = start_with(b_cfg).await;
    let mut c_cfg = lab.config("mallory");
    c_cfg.secret = Some("wrong".into());
    let c = start_with(c_cfg).await;

    assert_eq!(
        a.get("/.well-known/acp.json").await.1["capabilities"]["hmac_signing"],
        true
    );
    connect(&b, &a).await;
    b.send_text("signed ok", json!({})).await;
    assert_eq!(recv_texts(&a, 1).await, ["signed ok"]);

    connect(&c, &a).await;
    let (_, before) = a.get("/status").await;
    let (s, _) = c
        .post(
            "/message:send",
            json!({"role": "user", "text": "forged", "peer_id": "peer_001"}),
        )
        .await;
    assert_eq!(s, 200, "the sender cannot know the receiver refuses it");
    eventually(5, "refusal counted", || async {
        a.get("/status").await.1["frames_rejected"].as_u64() > before["frames_rejected"].as_u64()
    })
    .await;
    let (_, msgs) = a.get("/messages?direction=inbound").await;
    assert_eq!(
        msgs["total"], 1,
        "the forged message was not stored: {msgs}"
    );
}

#[tokio::test]
async fn refused_dial_keeps_the_queue_and_backs_off() {
    let lab = Lab::new();
    let a = lab.start("alpha").await;
    let b = lab.start("beta").await;
    // A stale link: right host and port, wrong token (what a restarted reference node gives).
    let stale = format!(
        "acp://127.0.0.1:{}/tok_0000000000000000",
        a.server.ws_addr.port()
    );
    let (s, r) = b.post("/peers/connect", json!({"link": stale})).await;
    assert_eq!(s, 200, "{r}");
    let (s, r) = b
        .post("/message:send", json!({"role": "user", "text": "keep me"}))
        .await;
    assert_eq!(s, 503, "{r}");
    assert_eq!(r["queued"], true);
    eventually(5, "refusal recorded", || async {
        let (_, p) = b.get("/peers/peer_001").await;
        p["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("invalid_token"))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, p) = b.get("/peers/peer_001").await;
    assert_eq!(p["connected"], false);
    let attempts = p["reconnect_attempts"].as_u64().unwrap();
    assert!(
        (1..=4).contains(&attempts),
        "backs off instead of hammering: {attempts} attempts in ~1.5 s"
    );
    assert_eq!(
        b.get("/offline-queue").await.1["total_queued"],
        1,
        "the queued message is kept"
    );
    assert_eq!(a.get("/messages").await.1["total"], 0);
}

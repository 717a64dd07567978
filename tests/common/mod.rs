//! Shared helpers for integration tests: real nodes on ephemeral loopback ports, a JSON HTTP
//! client, an SSE reader, a WebSocket client for the API port, and bounded polling.

#![allow(dead_code)]

pub mod a2a;
pub mod python_a2a;

use std::path::{Path, PathBuf};
use std::time::Duration;

use acp_relay::{Config, Server};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// A WebSocket client connection to a node's HTTP port (`/ws/stream`, `/messages:stream`).
pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A node started for a test, with its data dir kept alive (and reusable for restarts).
pub struct TestNode {
    pub server: Server,
    pub url: String,
    pub dir: PathBuf,
    pub http: reqwest::Client,
}

/// Everything a test needs to start nodes in one temporary directory.
pub struct Lab {
    pub root: tempfile::TempDir,
}

impl Lab {
    pub fn new() -> Lab {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_env("ACP_LOG")
                    .unwrap_or_else(|_| "warn".into()),
            )
            .with_test_writer()
            .try_init();
        Lab {
            root: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn config(&self, name: &str) -> Config {
        Config::ephemeral(name, self.root.path().join(name))
    }

    pub async fn start(&self, name: &str) -> TestNode {
        start_with(self.config(name)).await
    }
}

pub async fn start_with(config: Config) -> TestNode {
    let dir = config.data_dir.clone();
    let server = Server::start(config).await.expect("node starts");
    let url = server.base_url();
    TestNode {
        server,
        url,
        dir,
        http: reqwest::Client::new(),
    }
}

impl TestNode {
    pub fn link(&self) -> String {
        self.server.node.link()
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let resp = self
            .http
            .get(format!("{}{}", self.url, path))
            .send()
            .await
            .expect("GET");
        split(resp).await
    }

    /// This node's `/peers` entry for the peer named `name` (`null` when there is none).
    pub async fn peer_named(&self, name: &str) -> Value {
        let (_, peers) = self.get("/peers").await;
        peers["peers"]
            .as_array()
            .and_then(|l| l.iter().find(|p| p["agent_name"] == name).cloned())
            .unwrap_or(Value::Null)
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}{}", self.url, path))
            .json(&body)
            .send()
            .await
            .expect("POST");
        split(resp).await
    }

    pub async fn post_raw(
        &self,
        path: &str,
        body: impl Into<reqwest::Body>,
        content_type: &str,
    ) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}{}", self.url, path))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("POST raw");
        split(resp).await
    }

    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{}", self.url, path));
        if let Some(b) = body {
            req = req.json(&b);
        }
        split(req.send().await.expect("request")).await
    }

    /// Sends a text message and asserts it was accepted.
    pub async fn send_text(&self, text: &str, extra: Value) -> Value {
        let mut body = json!({"role": "user", "text": text});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                b.insert(k.clone(), v.clone());
            }
        }
        let (status, resp) = self.post("/message:send", body).await;
        assert_eq!(status, 200, "send failed: {resp}");
        resp
    }

    /// `ws://…` for a path of this node's HTTP port.
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{}", self.server.http_addr, path)
    }

    /// Opens a WebSocket on a path of the HTTP port; panics when the upgrade is refused.
    pub async fn ws(&self, path: &str) -> Ws {
        let (ws, resp) = tokio_tungstenite::connect_async(self.ws_url(path))
            .await
            .unwrap_or_else(|e| panic!("WebSocket {path}: {e}"));
        assert_eq!(resp.status().as_u16(), 101);
        ws
    }

    pub async fn stop(self) -> PathBuf {
        let dir = self.dir.clone();
        self.server.shutdown().await;
        dir
    }
}

async fn split(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

/// Polls `check` every 20 ms for up to `secs` seconds.
pub async fn eventually<F, Fut>(secs: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if check().await {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Connects `from` to `to` and waits until both see the connection.
pub async fn connect(from: &TestNode, to: &TestNode) -> String {
    let (status, resp) = from
        .post("/peers/connect", json!({"link": to.link()}))
        .await;
    assert_eq!(status, 200, "connect failed: {resp}");
    let peer_id = resp["peer_id"].as_str().expect("peer_id").to_owned();
    eventually(10, "both sides connected", || async {
        let (_, a) = from.get("/peers").await;
        let (_, b) = to.get("/peers").await;
        a["active"].as_u64() >= Some(1) && b["active"].as_u64() >= Some(1)
    })
    .await;
    peer_id
}

/// One parsed SSE event.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub id: Option<u64>,
    pub event: Option<String>,
    pub data: Value,
}

/// A reader of an SSE response.
pub struct SseReader {
    stream: futures_util::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buf: String,
}

impl SseReader {
    pub async fn open(url: &str, last_event_id: Option<u64>) -> SseReader {
        let mut req = reqwest::Client::new().get(url);
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id.to_string());
        }
        let resp = req.send().await.expect("SSE GET");
        assert_eq!(resp.status().as_u16(), 200);
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        assert!(ct.starts_with("text/event-stream"), "content-type {ct}");
        SseReader {
            stream: resp.bytes_stream().boxed(),
            buf: String::new(),
        }
    }

    /// Next data event (comments skipped), or None after `secs` seconds.
    pub async fn next(&mut self, secs: u64) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            while let Some(pos) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..pos + 2).collect();
                let mut ev = SseEvent {
                    id: None,
                    event: None,
                    data: Value::Null,
                };
                let mut has_data = false;
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        ev.id = v.trim().parse().ok();
                    } else if let Some(v) = line.strip_prefix("event:") {
                        ev.event = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        ev.data = serde_json::from_str(v.trim())
                            .unwrap_or(Value::String(v.trim().to_owned()));
                        has_data = true;
                    }
                }
                if has_data {
                    return Some(ev);
                }
            }
            let chunk = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .ok()??
                .ok()?;
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Reads events until one matches, or panics after `secs`.
    pub async fn wait_for(
        &mut self,
        secs: u64,
        what: &str,
        pred: impl Fn(&SseEvent) -> bool,
    ) -> SseEvent {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let left = deadline
                .saturating_duration_since(tokio::time::Instant::now())
                .as_secs()
                .max(1);
            match self.next(left).await {
                Some(ev) if pred(&ev) => return ev,
                Some(_) => continue,
                None => panic!("SSE: timed out waiting for {what}"),
            }
        }
    }
}

/// The next text frame of `ws` as JSON (control frames skipped), or `None` after `secs`
/// seconds or when the connection ends.
pub async fn ws_next_json(ws: &mut Ws, secs: u64) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await.ok()?? {
            Ok(Message::Text(t)) => {
                return Some(serde_json::from_str(&t).unwrap_or(Value::String(t.to_string())));
            }
            Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => continue,
            Ok(Message::Binary(_)) => panic!("binary frame from the node"),
            Ok(Message::Close(_)) | Err(_) => return None,
        }
    }
}

pub fn data_dir_exists(p: &Path) -> bool {
    p.join("node.db").exists()
}

/// A port that was free a moment ago (for tests that must restart a node on the same port).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Every MCP tool the node serves (the names are the contract; `tests/mcp.rs` checks the
/// list is complete).
pub const MCP_TOOLS: [&str; 14] = [
    "acp_get_link",
    "acp_connect",
    "acp_send",
    "acp_receive",
    "acp_search",
    "acp_peers",
    "acp_status",
    "acp_task_create",
    "acp_task_update",
    "acp_task_cancel",
    "acp_task_get",
    "acp_task_list",
    "acp_card_get",
    "acp_card_update",
];

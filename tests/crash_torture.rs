//! Nothing acknowledged is lost when a node is killed. Two real `acp-relay serve` processes,
//! B connected to A; four clients send to B without pause; every round one of the nodes is
//! killed with SIGKILL in the middle of that load, its store is checked with
//! `PRAGMA integrity_check`, and it is started again on the same ports and data dir. At the
//! end every message B acknowledged must be in A's store exactly once, and in B's exactly
//! once.
//!
//! Without delivery acknowledgement between the nodes this fails: frames that B handed to
//! A's socket and that A had not yet committed when it died are gone, and B, which answered
//! `"delivery":"sent"`, never sends them again.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::RngExt;
use serde_json::{Value, json};

/// Kill rounds (alternating A and B); bounded so CI stays within minutes.
const ROUNDS: usize = 8;
/// Concurrent senders to B.
const SENDERS: usize = 4;

/// One node process with fixed ports, restartable on the same ports and data dir.
struct NodeProc {
    name: &'static str,
    dir: PathBuf,
    ws_port: u16,
    http_port: u16,
    child: Option<Child>,
}

impl NodeProc {
    fn new(root: &Path, name: &'static str) -> NodeProc {
        NodeProc {
            name,
            dir: root.join(name),
            ws_port: common::free_port(),
            http_port: common::free_port(),
            child: None,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    async fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.with_extension("log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_acp-relay"))
            .args(["serve", "--name", self.name])
            .args(["--port", &self.ws_port.to_string()])
            .args(["--http-port", &self.http_port.to_string()])
            .args(["--ws-host", "127.0.0.1", "--advertise-host", "127.0.0.1"])
            .args(["--offline-queue-limit", "1000000"])
            .arg("--data-dir")
            .arg(&self.dir)
            .env("ACP_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start acp-relay");
        self.child = Some(child);
        let url = self.url();
        common::eventually(60, &format!("{} answers", self.name), || {
            let url = url.clone();
            async move {
                reqwest::get(format!("{url}/status"))
                    .await
                    .is_ok_and(|r| r.status().is_success())
            }
        })
        .await;
    }

    /// SIGKILL: no shutdown, no flush.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.dir.join("node.db")).expect("open node.db")
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn integrity_ok(node: &NodeProc) {
    let verdict: String = node
        .db()
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(verdict, "ok", "{} store after SIGKILL", node.name);
}

/// Message ids in `node`'s store in `direction`, and how many rows they fill.
fn stored_ids(node: &NodeProc, direction: &str) -> (HashSet<String>, usize) {
    let conn = node.db();
    let mut stmt = conn
        .prepare("SELECT message_id FROM messages WHERE direction = ?1 AND message_id LIKE 't%'")
        .unwrap();
    let ids: Vec<String> = stmt
        .query_map([direction], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let rows = ids.len();
    (ids.into_iter().collect(), rows)
}

/// Sends to B until told to stop; returns the ids B acknowledged (stored: sent or queued).
async fn sender(k: usize, b_url: String, stop: Arc<Mutex<bool>>) -> Vec<String> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut acked = Vec::new();
    let mut i = 0u64;
    while !*stop.lock().unwrap() {
        let id = format!("t{k}-{i}");
        i += 1;
        let resp = http
            .post(format!("{b_url}/message:send"))
            .json(&json!({"role": "user", "text": "torture", "message_id": id}))
            .send()
            .await;
        let Ok(resp) = resp else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        // 200: sent or queued; 503 with queued:true: kept in the offline queue.
        if status == 200 || (status == 503 && body["queued"] == true) {
            acked.push(id);
        } else if status >= 500 && status != 503 {
            panic!("B answered {status}: {body}");
        } else {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_acknowledged_is_lost_when_nodes_are_killed() {
    let root = tempfile::tempdir().unwrap();
    let mut a = NodeProc::new(root.path(), "A");
    let mut b = NodeProc::new(root.path(), "B");
    a.start().await;
    b.start().await;
    let link = reqwest::get(format!("{}/link", a.url()))
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["link"]
        .as_str()
        .unwrap()
        .to_owned();
    let resp = reqwest::Client::new()
        .post(format!("{}/peers/connect", b.url()))
        .json(&json!({ "link": link }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let b_url = b.url();
    common::eventually(30, "B connected to A", || {
        let b_url = b_url.clone();
        async move {
            let peers: Value = reqwest::get(format!("{b_url}/peers"))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            peers["active"].as_u64() >= Some(1)
        }
    })
    .await;

    let stop = Arc::new(Mutex::new(false));
    let senders: Vec<_> = (0..SENDERS)
        .map(|k| tokio::spawn(sender(k, b_url.clone(), stop.clone())))
        .collect();
    for round in 0..ROUNDS {
        let pause = rand::rng().random_range(600..1500);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let victim = if round % 2 == 0 { &mut a } else { &mut b };
        victim.kill();
        integrity_ok(victim);
        victim.start().await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    *stop.lock().unwrap() = true;
    let mut acked = HashSet::new();
    for s in senders {
        acked.extend(s.await.unwrap());
    }
    assert!(acked.len() > 500, "load ran: {} acknowledged", acked.len());

    // Everything B acknowledged reaches A once B has redialled and caught up.
    let mut missing = Vec::new();
    for _ in 0..600 {
        let (got, _) = stored_ids(&a, "inbound");
        missing = acked.difference(&got).cloned().collect();
        if missing.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    missing.sort();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged messages never reached A, e.g. {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(10)]
    );
    let (on_a, rows_a) = stored_ids(&a, "inbound");
    assert_eq!(rows_a, on_a.len(), "duplicates on A");
    let (on_b, rows_b) = stored_ids(&b, "outbound");
    assert_eq!(rows_b, on_b.len(), "duplicates on B");
    let lost_on_b: Vec<_> = acked.difference(&on_b).take(10).collect();
    assert!(
        lost_on_b.is_empty(),
        "B lost what it acknowledged: {lost_on_b:?}"
    );
    a.kill();
    b.kill();
    integrity_ok(&a);
    integrity_ok(&b);
}

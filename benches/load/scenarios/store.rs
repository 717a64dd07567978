//! The store at scale: a generated history written through the node's own store writer, then
//! start-up time, query latency and disk use on it, and start-up with every message unread.

use std::path::Path;
use std::time::{Duration, Instant};

use acp_relay::node::store::{MessageRow, Store, WriteOp};
use serde_json::{Value, json};

use crate::generator::{Lat, hist, ns};
use crate::http::{HttpConn, addr_of, get_req};
use crate::opts::Opts;
use crate::procs::{dir_bytes, spawn_node};
use crate::{Res, TEXT};

/// about 100 messages plus one long conversation holding 10 % of everything, 1 % of the
/// messages in tasks, one message per millisecond.
pub struct Shape {
    pub t0: f64,
}

impl Shape {
    pub const CONTEXTS: usize = 9_000;
    pub const TASKS: usize = 1_000;

    /// Distinct `ticketN` words: each in 1 of this many messages (200 at 1M).
    pub const TICKETS: usize = 5_000;
    /// Words for full-text search, one per message: each about 1 in 50 (20k at 1M); pairs
    /// of them never meet in one message, but `Self::topic` spreads them evenly.
    pub const TOPICS: [&'static str; 50] = [
        "deploy",
        "staging",
        "invoice",
        "receipt",
        "review",
        "retention",
        "backup",
        "latency",
        "refund",
        "schema",
        "migration",
        "rollback",
        "incident",
        "outage",
        "billing",
        "quota",
        "release",
        "hotfix",
        "pipeline",
        "cluster",
        "gateway",
        "webhook",
        "cache",
        "index",
        "replica",
        "failover",
        "contract",
        "customer",
        "roadmap",
        "budget",
        "forecast",
        "summary",
        "translation",
        "summarize",
        "analysis",
        "dataset",
        "training",
        "inference",
        "prompt",
        "agent",
        "handoff",
        "approval",
        "security",
        "audit",
        "compliance",
        "onboarding",
        "feedback",
        "survey",
        "meeting",
        "calendar",
    ];

    pub fn topic(i: usize) -> &'static str {
        Self::TOPICS[(i.wrapping_mul(7919) / 13) % Self::TOPICS.len()]
    }

    pub fn context(&self, i: usize) -> String {
        if i.is_multiple_of(10) {
            "ctx_hot".into()
        } else {
            format!("ctx_{:05}", i % Self::CONTEXTS)
        }
    }

    pub fn row(&self, i: usize, unread_from: usize) -> MessageRow {
        let outbound = i.is_multiple_of(2);
        let peer = format!("peer_{:03}", 1 + (i / 2) % 10);
        let sender = if outbound {
            "store-node".to_owned()
        } else {
            format!("agent-{}", 1 + (i / 2) % 10)
        };
        let role = if (i / 2).is_multiple_of(2) {
            "user"
        } else {
            "agent"
        };
        let message_id = format!("msg_{i:012x}");
        let context_id = self.context(i);
        let task_id = (i % 100 == 7).then(|| format!("task_{:04}", (i / 100) % Self::TASKS));
        let seq = (i / 2 + 1) as i64;
        let received_at = self.t0 + i as f64 * 0.001;
        let ts = format!(
            "2026-01-{:02}T{:02}:{:02}:{:02}.{:06}Z",
            1 + (i / 86_400_000) % 28,
            (i / 3_600_000) % 24,
            (i / 60_000) % 60,
            (i / 1000) % 60,
            (i % 1000) * 1000
        );
        let mut frame = json!({
            "type": "acp.message",
            "message_id": message_id,
            "ts": ts,
            "from": sender,
            "role": role,
            "parts": [{"type": "text", "content": format!(
                "stored message {i}: {TEXT} {} ticket{}",
                Self::topic(i),
                i % Self::TICKETS
            )}],
            "context_id": context_id,
            "server_seq": seq,
        });
        if let Some(t) = &task_id {
            frame["task_id"] = json!(t);
        }
        MessageRow {
            message_id,
            direction: if outbound { "outbound" } else { "inbound" },
            peer_id: Some(peer),
            sender: Some(sender),
            role: role.to_owned(),
            task_id,
            context_id: Some(context_id),
            server_seq: Some(seq),
            ts,
            received_at,
            consumed: outbound || i < unread_from,
            frame,
            local_seq: 0,
        }
    }
}

pub struct StoreRun {
    pub n: usize,
    pub insert_secs: f64,
    pub frame_bytes: f64,
    pub disk_bytes: u64,
    pub startup: Vec<Duration>,
    pub rss_kb: u64,
    pub queries: Vec<(String, Lat, usize)>,
    pub unread_startup: Option<Duration>,
    pub unread_rss_kb: u64,
    pub unread_count: usize,
}

pub async fn store_at_scale(root: &Path, logdir: &Path, o: &Opts) -> Res<StoreRun> {
    let n = o.store_messages;
    let dir = root.join("store-d");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    // Dated just before now: the node's default retention (30 days) would otherwise start
    // removing the store's messages while the queries are measured.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(1_780_000_000.0);
    let shape = Shape {
        t0: (now - n as f64 * 0.001 - 60.0).floor(),
    };
    // The REST user's case: every inbound message read by /recv except the newest 1,000.
    let unread_from = n.saturating_sub(2000);
    let t0 = Instant::now();
    let mut frame_bytes = 0usize;
    {
        let store = Store::open(&dir.join("node.db")).map_err(|e| e.to_string())?;
        // The ten peers the messages belong to (a peer record needs only id and name).
        for p in 1..=10 {
            let id = format!("peer_{p:03}");
            let body =
                json!({"id": id, "name": format!("agent-{p}"), "agent_name": format!("agent-{p}")});
            store.write(WriteOp::UpsertPeer {
                id,
                body: body.to_string(),
            });
        }
        for i in 0..n {
            let row = shape.row(i, unread_from);
            if i % 1000 == 0 {
                frame_bytes += row.frame.to_string().len();
            }
            store.write(WriteOp::InsertMessage(Box::new(row), None));
            if i % 20_000 == 19_999 {
                store.flush().await.map_err(|e| e.to_string())?;
            }
        }
        store.flush().await.map_err(|e| e.to_string())?;
        store.close().await;
    }
    let insert_secs = t0.elapsed().as_secs_f64();
    let frame_bytes = frame_bytes as f64 / n.div_ceil(1000) as f64;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let disk_bytes = dir_bytes(&dir, &["node.db", "node.db-wal"]);

    let runs = if o.quick { 1 } else { 3 };
    let mut startup = Vec::new();
    for r in 0..runs {
        let node = spawn_node("store-d", &dir, None, logdir, Duration::from_secs(120)).await?;
        startup.push(node.started_in);
        if r + 1 < runs {
            node.stop().await;
            continue;
        }
        // Queries, each `samples` times on one keep-alive connection.
        let after = shape.t0 + (n as f64 * 0.99) * 0.001;
        let tail_seq = (n / 2) as i64 - 100;
        let queries: Vec<(String, String)> = vec![
            ("/messages (newest 20)".into(), "/messages".into()),
            (
                "/messages?peer_id=peer_003".into(),
                "/messages?peer_id=peer_003".into(),
            ),
            (
                "/messages?context_id=ctx_00123".into(),
                "/messages?context_id=ctx_00123".into(),
            ),
            (
                "/messages?task_id=task_0042".into(),
                "/messages?task_id=task_0042".into(),
            ),
            (
                "/messages?role=agent&direction=inbound".into(),
                "/messages?role=agent&direction=inbound".into(),
            ),
            (
                "/messages?received_after=(last 1 %)".into(),
                format!("/messages?received_after={after:.3}"),
            ),
            (
                "/messages?context_id=ctx_hot&sort=asc".into(),
                "/messages?context_id=ctx_hot&sort=asc".into(),
            ),
            (
                "/messages?q=ticket1234 (1 in 5,000)".into(),
                "/messages?q=ticket1234".into(),
            ),
            (
                "/messages?q=deploy (1 in 50)".into(),
                "/messages?q=deploy".into(),
            ),
            (
                "/messages?q=deploy&order=rank".into(),
                "/messages?q=deploy&order=rank".into(),
            ),
            (
                "/messages?q=deploy ticket1234 (both)".into(),
                "/messages?q=deploy%20ticket1234".into(),
            ),
            (
                "/messages?q=\"stored message 123456\" (phrase)".into(),
                "/messages?q=%22stored%20message%20123456%22".into(),
            ),
            (
                "/messages?q=ticket12* (prefix, 111 words)".into(),
                "/messages?q=ticket12*".into(),
            ),
            (
                "/messages?q=invoice OR refund -ticket7".into(),
                "/messages?q=invoice%20OR%20refund%20-ticket7".into(),
            ),
            (
                "/messages?q=deploy&context_id=ctx_00123".into(),
                "/messages?q=deploy&context_id=ctx_00123".into(),
            ),
            (
                "/context/ctx_00123/messages".into(),
                "/context/ctx_00123/messages".into(),
            ),
            (
                "/context/ctx_hot/messages (10 % of all)".into(),
                "/context/ctx_hot/messages".into(),
            ),
            (
                "/context/ctx_hot/messages?since_seq=(tail)".into(),
                format!("/context/ctx_hot/messages?since_seq={tail_seq}"),
            ),
        ];
        let (addr, host) = addr_of(&node.url)?;
        let mut results = Vec::new();
        let samples = (o.samples / 4).clamp(20, 500);
        // Each series is bounded in time too: a query that takes seconds gets fewer samples
        // (at least 5, after one warm-up), and the table says how many.
        let budget = Duration::from_secs(if o.quick { 2 } else { 4 });
        for (label, path) in queries {
            let req = get_req(&host, &path);
            let mut c = HttpConn::new(addr);
            let mut h = hist();
            let mut rows = 0;
            let started = Instant::now();
            for i in 0..=samples {
                if i > 5 && started.elapsed() > budget {
                    break;
                }
                let t = Instant::now();
                let status = c.send(&req).await.map_err(|e| format!("{path}: {e}"))?;
                let took = t.elapsed();
                if status != 200 {
                    return Err(format!("{path}: HTTP {status}: {}", c.body_text()));
                }
                if i == 0 {
                    let v: Value = serde_json::from_slice(&c.body).unwrap_or(Value::Null);
                    rows = v["messages"].as_array().map_or(0, Vec::len);
                } else {
                    let _ = h.record(ns(took).max(1));
                }
            }
            results.push((label, Lat::of(&h), rows));
        }
        let rss_kb = node.rss_kb();
        node.stop().await;
        let mut out = StoreRun {
            n,
            insert_secs,
            frame_bytes,
            disk_bytes,
            startup,
            rss_kb,
            queries: results,
            unread_startup: None,
            unread_rss_kb: 0,
            unread_count: 0,
        };
        if !o.skip.iter().any(|s| s == "unread") {
            // The MCP/SSE user's case: nobody calls /recv, so no inbound message is ever
            // marked read (acp_receive reads by cursor and does not mark).
            let conn =
                rusqlite::Connection::open(dir.join("node.db")).map_err(|e| e.to_string())?;
            out.unread_count = conn
                .execute(
                    "UPDATE messages SET consumed = 0 WHERE direction = 'inbound'",
                    [],
                )
                .map_err(|e| e.to_string())?;
            drop(conn);
            let node = spawn_node(
                "store-d-unread",
                &dir,
                None,
                logdir,
                Duration::from_secs(300),
            )
            .await?;
            out.unread_startup = Some(node.started_in);
            out.unread_rss_kb = node.rss_kb();
            node.stop().await;
        }
        return Ok(out);
    }
    Err("no start-up run".into())
}

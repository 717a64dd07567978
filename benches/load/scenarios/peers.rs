//! Resident memory of one node with many connected WebSocket peers.

use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::json;

use crate::Res;
use crate::http::get_json;
use crate::procs::spawn_node;

pub struct Peers {
    pub wanted: usize,
    pub connected: u64,
    pub connect_secs: f64,
    pub rss_idle_kb: u64,
    pub rss_kb: u64,
    pub rss_per_peer_kb: f64,
}

pub async fn many_peers(root: &Path, logdir: &Path, n: usize) -> Res<Peers> {
    let node = spawn_node(
        "peers-c",
        &root.join("peers-c"),
        None,
        logdir,
        Duration::from_secs(20),
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_idle_kb = node.rss_kb();
    let link = node.link.clone().ok_or("node C printed no link")?;
    let ws_url = link.replacen("acp://", "ws://", 1);
    let t0 = Instant::now();
    let mut clients = Vec::with_capacity(n);
    let mut pending = futures_util::stream::iter(0..n)
        .map(|i| {
            let url = ws_url.clone();
            async move {
                let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
                    .await
                    .map_err(|e| format!("peer {i}: {e}"))?;
                let card = json!({
                    "type": "acp.agent_card",
                    "message_id": format!("card_{i:012}"),
                    "ts": "2026-01-01T00:00:00Z",
                    "card": {"name": format!("bench-peer-{i}"), "version": "1.0", "skills": []},
                });
                ws.send(tokio_tungstenite::tungstenite::Message::text(
                    card.to_string(),
                ))
                .await
                .map_err(|e| format!("peer {i}: {e}"))?;
                Ok::<_, String>(ws)
            }
        })
        .buffer_unordered(64);
    while let Some(r) = pending.next().await {
        clients.push(r?);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut connected = 0;
    while tokio::time::Instant::now() < deadline {
        let peers = get_json(&node.url, "/peers").await?;
        connected = peers["active"].as_u64().unwrap_or(0);
        if connected >= n as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let connect_secs = t0.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss = node.rss_kb();
    for mut ws in clients {
        let _ = ws.close(None).await;
    }
    node.stop().await;
    Ok(Peers {
        wanted: n,
        connected,
        connect_secs,
        rss_idle_kb,
        rss_kb: rss,
        rss_per_peer_kb: rss.saturating_sub(rss_idle_kb) as f64 / n.max(1) as f64,
    })
}

//! End-to-end latency: a send on B until the SSE event arrives on A's `/stream`.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::Res;
use crate::generator::{Lat, hist, ns};
use crate::http::{HttpConn, addr_of, post_req, send_body};

pub struct E2e {
    pub e2e: Lat,
    pub post: Lat,
    pub missing: u64,
}

pub async fn e2e_latency(b_url: &str, a_url: &str, samples: usize) -> Res<E2e> {
    let resp = reqwest::Client::new()
        .get(format!("{a_url}/stream"))
        .send()
        .await
        .map_err(|e| format!("SSE: {e}"))?;
    if resp.status().as_u16() != 200 {
        return Err(format!("SSE: HTTP {}", resp.status()));
    }
    let (tx, mut rx) = mpsc::unbounded_channel::<(String, Instant)>();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<()>();
    let reader = tokio::spawn(async move {
        let mut stream = resp.bytes_stream();
        let mut buf = String::new();
        let mut ready = Some(ready_tx);
        while let Some(Ok(chunk)) = stream.next().await {
            let now = Instant::now();
            if let Some(r) = ready.take() {
                let _ = r.send(());
            }
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(pos) = buf.find("\n\n") {
                let block: String = buf.drain(..pos + 2).collect();
                for line in block.lines() {
                    let Some(data) = line.strip_prefix("data:") else {
                        continue;
                    };
                    let Ok(v) = serde_json::from_str::<Value>(data.trim()) else {
                        continue;
                    };
                    if v["direction"] == "inbound"
                        && let Some(id) = v["message_id"].as_str()
                        && id.starts_with("e2e-")
                    {
                        let _ = tx.send((id.to_owned(), now));
                    }
                }
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(5), ready_rx)
        .await
        .map_err(|_| "SSE: no first event (keepalive) in 5 s".to_owned())?
        .map_err(|_| "SSE: stream ended".to_owned())?;
    let (addr, host) = addr_of(b_url)?;
    let mut conn = HttpConn::new(addr);
    let (mut e2e, mut post) = (hist(), hist());
    let mut missing = 0;
    let nonce = std::process::id();
    for i in 0..samples {
        let id = format!("e2e-{nonce}-{i}");
        let req = post_req(
            &host,
            "/message:send",
            &send_body(Some(("message_id", &id))),
        );
        let t0 = Instant::now();
        let status = conn
            .send(&req)
            .await
            .map_err(|e| format!("e2e send: {e}"))?;
        let _ = post.record(ns(t0.elapsed()).max(1));
        if status != 200 {
            return Err(format!("e2e send: HTTP {status}: {}", conn.body_text()));
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some((got, at))) if got == id => {
                    let _ = e2e.record(ns(at.duration_since(t0)).max(1));
                    break;
                }
                Ok(Some(_)) => continue,
                _ => {
                    missing += 1;
                    break;
                }
            }
        }
    }
    reader.abort();
    Ok(E2e {
        e2e: Lat::of(&e2e),
        post: Lat::of(&post),
        missing,
    })
}

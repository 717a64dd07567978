//! Send throughput through the streaming inlet (`/messages:stream`) against `/message:send`,
//! on the same pair of nodes, back to back in the same run: B's `/message:send` with one
//! keep-alive connection and with the most connections of the run (closed loop), then one
//! WebSocket on B's `/messages:stream` kept full up to a window of unanswered requests, then
//! one connection POSTing NDJSON bodies of many requests, one after another. Every way sends
//! the same body, and every message is counted when node A has received it.

use std::time::{Duration, Instant};

use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::Res;
use crate::generator::{messages_received, run_level, settle_delivered};
use crate::http::{HttpConn, addr_of};
use crate::procs::cpu_secs;

/// One way in, measured.
pub struct Way {
    pub name: String,
    /// Connections (HTTP) or the window of unanswered requests (WebSocket), or lines per
    /// body (NDJSON): what the way was driven with.
    pub shape: String,
    pub secs: f64,
    pub ok: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Received by A by the end of the window.
    pub delivered: u64,
    pub lost: u64,
    /// CPU seconds of node B (the sender) and node A during the window.
    pub cpu_b: f64,
    pub cpu_a: f64,
}

impl Way {
    pub fn accepted_rate(&self) -> f64 {
        self.ok as f64 / self.secs
    }

    pub fn delivered_rate(&self) -> f64 {
        self.delivered as f64 / self.secs
    }

    /// B's CPU per accepted message, in µs.
    pub fn cpu_b_per_msg(&self) -> f64 {
        1e6 * self.cpu_b / self.ok.max(1) as f64
    }
}

/// Runs every way for `dur` each. `http_conns` are the `/message:send` levels, `window` the
/// WebSocket's unanswered requests at most, `lines` the requests per NDJSON body.
#[allow(clippy::too_many_arguments)]
pub async fn inlet_throughput(
    b_url: &str,
    a_url: &str,
    (b_pid, a_pid): (u32, u32),
    body: &str,
    http_conns: &[usize],
    window: usize,
    lines: usize,
    dur: Duration,
) -> Res<Vec<Way>> {
    let cpu = || (cpu_secs(b_pid), cpu_secs(a_pid));
    let mut ways = Vec::new();
    let procs = vec![("B".to_owned(), b_pid), ("A".to_owned(), a_pid)];
    for &c in http_conns {
        let (b0, a0) = cpu();
        let l = run_level(b_url, body, Some(a_url), &procs, c, dur).await?;
        let (b1, a1) = cpu();
        ways.push(Way {
            name: "POST /message:send".into(),
            shape: format!("{c} conn{}", if c == 1 { "" } else { "s" }),
            secs: l.secs,
            ok: l.ok,
            errors: l.errors,
            first_error: l.first_error.clone(),
            delivered: l.delivered_window.unwrap_or(0),
            lost: l.lost.unwrap_or(0),
            cpu_b: b1 - b0,
            cpu_a: a1 - a0,
        });
    }
    let before = messages_received(a_url).await?;
    let (b0, a0) = cpu();
    let mut way = ws_drive(b_url, body, window, dur).await?;
    let (b1, a1) = cpu();
    (way.cpu_b, way.cpu_a) = (b1 - b0, a1 - a0);
    settle(&mut way, a_url, before).await?;
    ways.push(way);

    let before = messages_received(a_url).await?;
    let (b0, a0) = cpu();
    let mut way = ndjson_drive(b_url, body, lines, dur).await?;
    let (b1, a1) = cpu();
    (way.cpu_b, way.cpu_a) = (b1 - b0, a1 - a0);
    settle(&mut way, a_url, before).await?;
    ways.push(way);
    Ok(ways)
}

/// Counts what A received of `way`'s accepted messages by the end of the window (the rate),
/// then waits up to 15 s for the rest (the lost ones are those that never came).
async fn settle(way: &mut Way, a_url: &str, before: u64) -> Res<()> {
    let mut level = crate::generator::Level {
        ok: way.ok,
        ..Default::default()
    };
    settle_delivered(&mut level, a_url, before).await?;
    way.delivered = level.delivered_window.unwrap_or(0);
    way.lost = level.lost.unwrap_or(0);
    Ok(())
}

/// An answer of the inlet that says the message was accepted: the `/message:send` success
/// body, which starts with `"ok":true`.
fn accepted(answer: &str) -> bool {
    answer.starts_with(r#"{"ok":true"#)
}

/// One WebSocket on `/messages:stream`: keeps up to `window` requests unanswered, writing as
/// many as the window allows at once and reading every answer at hand before topping up.
async fn ws_drive(b_url: &str, body: &str, window: usize, dur: Duration) -> Res<Way> {
    let (addr, _) = addr_of(b_url)?;
    let url = format!("ws://{addr}/messages:stream");
    let (ws, _) = tokio_tungstenite::connect_async(&url)
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let (mut sink, mut stream) = ws.split();
    let frame = Message::text(body.to_owned());
    let (mut ok, mut errors, mut first_error) = (0u64, 0u64, None);
    let mut in_flight = 0usize;
    let start = Instant::now();
    let deadline = start + dur;
    loop {
        if Instant::now() < deadline && in_flight < window {
            while in_flight < window {
                sink.feed(frame.clone())
                    .await
                    .map_err(|e| format!("inlet write: {e}"))?;
                in_flight += 1;
            }
            sink.flush()
                .await
                .map_err(|e| format!("inlet write: {e}"))?;
        }
        if in_flight == 0 {
            break;
        }
        let mut take = |msg: Option<Result<Message, _>>| -> Res<()> {
            match msg {
                Some(Ok(Message::Text(t))) => {
                    in_flight -= 1;
                    if accepted(&t) {
                        ok += 1;
                    } else {
                        errors += 1;
                        first_error.get_or_insert_with(|| t.to_string());
                    }
                    Ok(())
                }
                Some(Ok(_)) => Ok(()),
                Some(Err(e)) => Err(format!("inlet read: {e}")),
                None => Err("inlet closed".to_owned()),
            }
        };
        let first = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .map_err(|_| "inlet: no answer in 5 s".to_owned())?;
        take(first)?;
        while let Some(msg) = stream.next().now_or_never() {
            take(msg)?;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let _ = sink.close().await;
    Ok(Way {
        name: "WebSocket /messages:stream".into(),
        shape: format!("1 conn, window {window}"),
        secs,
        ok,
        errors,
        first_error,
        delivered: 0,
        lost: 0,
        cpu_b: 0.0,
        cpu_a: 0.0,
    })
}

/// One keep-alive connection POSTing NDJSON bodies of `lines` requests, one after another.
async fn ndjson_drive(b_url: &str, body: &str, lines: usize, dur: Duration) -> Res<Way> {
    let (addr, host) = addr_of(b_url)?;
    let payload: String = std::iter::repeat_n(format!("{body}\n"), lines).collect();
    let req = format!(
        "POST /messages:stream HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-ndjson\r\nContent-Length: {}\r\n\r\n{payload}",
        payload.len()
    )
    .into_bytes();
    let mut c = HttpConn::new(addr);
    let (mut ok, mut errors, mut first_error) = (0u64, 0u64, None);
    let start = Instant::now();
    let deadline = start + dur;
    while Instant::now() < deadline {
        let status = c
            .send(&req)
            .await
            .map_err(|e| format!("NDJSON POST: {e}"))?;
        if status != 200 {
            return Err(format!("NDJSON POST: HTTP {status}: {}", c.body_text()));
        }
        for answer in c.body_text().lines() {
            if accepted(answer) {
                ok += 1;
            } else {
                errors += 1;
                first_error.get_or_insert_with(|| answer.to_owned());
            }
        }
    }
    Ok(Way {
        name: "POST /messages:stream (NDJSON)".into(),
        shape: format!("1 conn, {lines} lines a body"),
        secs: start.elapsed().as_secs_f64(),
        ok,
        errors,
        first_error,
        delivered: 0,
        lost: 0,
        cpu_b: 0.0,
        cpu_a: 0.0,
    })
}

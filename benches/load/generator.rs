//! The send load: `drive` runs closed-loop connections for a fixed window and records every
//! latency in an HDR histogram; `run_level` wraps one window with the CPU and delivery counts.
//!
//! A closed loop under-reports stalls: while the server stalls for 100 ms, a connection has
//! one request outstanding instead of the ~100 ms / interval requests a steady client would
//! have sent, so the stall is one sample. The level's headline latencies are therefore
//! corrected for this coordinated omission the way wrk 4 corrects its own (back-filled at the
//! level's mean per-connection interval, see [`Lat::corrected`]); the raw per-request figures
//! are kept beside them (`Level::raw`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::Value;

use crate::Res;
use crate::http::{HttpConn, addr_of, get_json, post_req};
use crate::procs::{cpu_secs, machine_busy_secs};

/// Histogram of nanoseconds, 1 ns to 120 s at 3 significant digits (a value is off by at
/// most 0.1 %; nothing a run can take is clipped: a request is abandoned after 5 s).
pub fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000_000, 3).expect("histogram bounds")
}

/// A duration as histogram nanoseconds.
pub fn ns(d: Duration) -> u64 {
    d.as_nanos().min(u128::from(u64::MAX)) as u64
}

/// Latency summary in microseconds.
#[derive(Clone, Copy, Debug, Default)]
pub struct Lat {
    pub n: u64,
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Lat {
    pub fn of(h: &Histogram<u64>) -> Lat {
        if h.is_empty() {
            return Lat::default();
        }
        let us = |v: u64| v as f64 / 1000.0;
        Lat {
            n: h.len(),
            p50: us(h.value_at_quantile(0.50)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
        }
    }

    /// The figures of `h` after the coordinated-omission correction wrk 4 applies to its own
    /// latency histogram (`stats_correct` in wrk.c): every sample longer than `interval_ns`
    /// (the mean time between two requests on one connection: window × conns / requests)
    /// gets back-filled samples, each `interval` shorter, down to `interval`: the requests a
    /// client sending at the measured rate would have had waiting during the stall.
    pub fn corrected(h: &Histogram<u64>, interval_ns: u64) -> Lat {
        if interval_ns == 0 {
            return Lat::of(h);
        }
        Lat::of(&h.clone_correct(interval_ns))
    }
}

pub struct Drive {
    pub ok: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub hist: Histogram<u64>,
    pub connects: u64,
    /// From the common start to the last answer: the window plus the requests in flight at
    /// its end, which are waited for (up to 5 s) and counted.
    pub window: Duration,
}

impl Drive {
    /// Nothing counted yet: what each connection starts from and the total sums into.
    fn empty() -> Drive {
        Drive {
            ok: 0,
            errors: 0,
            first_error: None,
            hist: hist(),
            connects: 0,
            window: Duration::ZERO,
        }
    }
}

/// Drives `req` on `conns` connections for `dur`, each connection sending its next request
/// as soon as the previous answer is read (closed loop).
pub async fn drive(addr: SocketAddr, req: Arc<Vec<u8>>, conns: usize, dur: Duration) -> Drive {
    let start = tokio::time::Instant::now() + Duration::from_millis(100);
    let deadline = start + dur;
    let hard_stop = deadline + Duration::from_secs(5);
    let mut tasks = Vec::with_capacity(conns);
    for _ in 0..conns {
        let req = req.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = HttpConn::new(addr);
            let _ = tokio::time::timeout_at(start, c.connect()).await;
            tokio::time::sleep_until(start).await;
            let mut d = Drive::empty();
            loop {
                let t0 = tokio::time::Instant::now();
                if t0 >= deadline {
                    break;
                }
                // A request still unanswered 5 s after the window is abandoned (an error):
                // the run stays bounded in time even against a server that stops answering.
                let sent = match tokio::time::timeout_at(hard_stop, c.send(&req)).await {
                    Ok(r) => r,
                    Err(_) => Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "no answer within 5 s after the window",
                    )),
                };
                match sent {
                    Ok(s) if (200..300).contains(&s) => {
                        d.ok += 1;
                        let _ = d.hist.record(ns(t0.elapsed()).max(1));
                    }
                    Ok(s) => {
                        d.errors += 1;
                        if d.first_error.is_none() {
                            d.first_error = Some(format!("HTTP {s}: {}", c.body_text()));
                        }
                    }
                    Err(e) => {
                        d.errors += 1;
                        if d.first_error.is_none() {
                            d.first_error = Some(e.to_string());
                        }
                        c.stream = None;
                        if tokio::time::Instant::now() >= hard_stop {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            }
            d.connects = c.connects;
            d
        }));
    }
    let mut total = Drive::empty();
    for t in tasks {
        if let Ok(d) = t.await {
            total.ok += d.ok;
            total.errors += d.errors;
            total.connects += d.connects;
            if total.first_error.is_none() {
                total.first_error = d.first_error;
            }
            let _ = total.hist.add(&d.hist);
        }
    }
    total.window = start.elapsed();
    total
}

/// One level against one server.
#[derive(Clone, Debug, Default)]
pub struct Level {
    pub conns: usize,
    pub secs: f64,
    pub ok: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Latency corrected for coordinated omission (what wrk reports): the headline figures.
    pub lat: Lat,
    /// The same requests' own latencies, uncorrected (service time from the write of the
    /// request to the end of its answer); `None` for wrk rows, which wrk prints corrected only.
    pub raw: Option<Lat>,
    /// Delivered on the counting node by the end of the window, and after draining.
    pub delivered_window: Option<u64>,
    pub delivered_total: Option<u64>,
    pub lost: Option<u64>,
    /// CPU seconds during the window: generator, then each server process.
    pub cpu_gen: f64,
    /// Busy CPU of everything else on the machine during the window (other users' builds…).
    pub cpu_other: f64,
    pub cpu_procs: Vec<(String, f64)>,
    pub connects: u64,
}

impl Level {
    pub fn accepted_rate(&self) -> f64 {
        self.ok as f64 / self.secs
    }

    pub fn delivered_rate(&self) -> Option<f64> {
        self.delivered_window.map(|d| d as f64 / self.secs)
    }
}

pub async fn messages_received(url: &str) -> Res<u64> {
    let v = get_json(url, "/status").await?;
    v.get("messages_received")
        .and_then(Value::as_u64)
        .ok_or_else(|| format!("{url}/status has no messages_received"))
}

/// Runs one level: `url` is driven, `count` (if any) is where deliveries are counted, `procs`
/// are the processes whose CPU is recorded.
pub async fn run_level(
    url: &str,
    body: &str,
    count: Option<&str>,
    procs: &[(String, u32)],
    conns: usize,
    dur: Duration,
) -> Res<Level> {
    let (addr, host) = addr_of(url)?;
    let req = Arc::new(post_req(&host, "/message:send", body));
    let before = match count {
        Some(c) => Some(messages_received(c).await?),
        None => None,
    };
    let me = std::process::id();
    let gen0 = cpu_secs(me);
    let busy0 = machine_busy_secs();
    let cpu0: Vec<f64> = procs.iter().map(|(_, p)| cpu_secs(*p)).collect();
    let d = drive(addr, req, conns, dur).await;
    let gen1 = cpu_secs(me);
    let busy1 = machine_busy_secs();
    let cpu1: Vec<f64> = procs.iter().map(|(_, p)| cpu_secs(*p)).collect();
    // wrk's interval: the run time over the requests per connection.
    let per_conn = d.ok / conns.max(1) as u64;
    let interval = ns(d.window).checked_div(per_conn).unwrap_or(0);
    let mut level = Level {
        conns,
        secs: d.window.as_secs_f64(),
        ok: d.ok,
        errors: d.errors,
        first_error: d.first_error,
        lat: Lat::corrected(&d.hist, interval),
        raw: Some(Lat::of(&d.hist)),
        cpu_gen: gen1 - gen0,
        cpu_other: ((busy1 - busy0)
            - (gen1 - gen0)
            - cpu1.iter().zip(&cpu0).map(|(b, a)| b - a).sum::<f64>())
        .max(0.0),
        cpu_procs: procs
            .iter()
            .zip(cpu0.iter().zip(&cpu1))
            .map(|((n, _), (a, b))| (n.clone(), b - a))
            .collect(),
        connects: d.connects,
        ..Level::default()
    };
    if let (Some(c), Some(b)) = (count, before) {
        settle_delivered(&mut level, c, b).await?;
    }
    Ok(level)
}

/// Fills in the delivery columns of `level` from the counting node `count` (whose
/// `messages_received` was `before` when the window opened): delivered by now (the end of the
/// window), then again once the count has caught up with the accepted sends or 15 s passed.
pub async fn settle_delivered(level: &mut Level, count: &str, before: u64) -> Res<()> {
    let at_end = messages_received(count).await?.saturating_sub(before);
    level.delivered_window = Some(at_end.min(level.ok));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut got = at_end;
    while got < level.ok && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        got = messages_received(count).await?.saturating_sub(before);
    }
    level.delivered_total = Some(got);
    level.lost = Some(level.ok.saturating_sub(got));
    Ok(())
}

pub async fn warm_up(url: &str, body: &str, n: usize) -> Res<()> {
    let (addr, host) = addr_of(url)?;
    let req = post_req(&host, "/message:send", body);
    let mut c = HttpConn::new(addr);
    for _ in 0..n {
        let s = c
            .send(&req)
            .await
            .map_err(|e| format!("warm-up {url}: {e}"))?;
        if !(200..300).contains(&s) {
            return Err(format!("warm-up {url}: HTTP {s}: {}", c.body_text()));
        }
    }
    Ok(())
}

//! Load benchmark of acp-relay: `cargo bench --bench load -- [--quick]`.
//!
//! It builds nothing by hand and needs no network beyond loopback. What it does:
//!
//! 1. starts a trivial axum JSON handler (this binary re-run as `--baseline-server`) as the
//!    floor, and two `acp-relay serve` release binaries, node A and node B, where B dials A;
//! 2. drives `POST /message:send` on B (forwarded to A over the peer WebSocket) and the same
//!    request on the baseline with 1, 8, 32 and 128 keep-alive connections for a fixed time,
//!    counting accepted requests (2xx on B), delivered messages (A's `/status`
//!    `messages_received`), errors, lost messages, latency in an HDR histogram, and the CPU
//!    time of the generator and of every server process;
//! 3. measures end-to-end latency (send on B until the SSE event arrives on A's `/stream`),
//!    MCP tool-call latency (`acp_send`, `acp_receive`) over Streamable HTTP with the rmcp
//!    client, resident memory idle, after load and with 1,000 connected peers (raw WebSocket
//!    clients that send an `acp.agent_card` frame);
//! 4. builds a store of 1,000,000 messages through the node's own store writer, then measures
//!    start-up time on that data dir, `/messages` and `/context/{id}/messages` latency, and disk
//!    bytes per message; then again start-up with every inbound message unread.
//!
//! Every figure is printed next to the baseline measured in the same run, with the ratio, and
//! the targets are checked (met / missed by how much). `--quick` is the CI smoke run
//! (1 s per level, 2 levels, 100,000 stored messages). `--target URL [--count URL]` only drives
//! an existing node's `/message:send` (e.g. the Python reference), counting deliveries on the
//! `--count` node. `--help` lists every option.
//!
//! The load generator is a minimal HTTP/1.1 client on a single-threaded runtime (like `wrk`
//! with one thread), so it uses at most one core and little CPU per request; its CPU time is
//! printed for every level next to the servers' so a saturated generator is visible.

use std::io::Write as _;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use acp_relay::node::store::{MessageRow, Store, WriteOp};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::StreamableHttpClientTransport;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// The node binary cargo built for this bench (release settings).
const NODE_BIN: &str = env!("CARGO_BIN_EXE_acp-relay");
/// Linux USER_HZ: the unit of utime/stime in /proc/PID/stat.
const CLK_TCK: f64 = 100.0;
/// The text of every load message (64 bytes).
const TEXT: &str = "benchmark message: sixty-four bytes of text, the same every time.";

type Res<T> = Result<T, String>;

// ------------------------------------------------------------------------------------------
// Options
// ------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct Opts {
    quick: bool,
    levels: Vec<usize>,
    duration: Duration,
    target: Option<String>,
    count: Option<String>,
    pids: Vec<u32>,
    store_messages: usize,
    peers: usize,
    samples: usize,
    skip: Vec<String>,
    ref_rate: Option<f64>,
    out: Option<PathBuf>,
    strict: bool,
    keep: bool,
}

const USAGE: &str = "usage: cargo bench --bench load -- [options]
  --quick               CI smoke run: 1 s per level, levels 1,32, 100k stored messages
  --levels 1,8,32,128   connection counts of the send load
  --duration SECS       seconds per level (default 5, quick 1)
  --samples N           requests per latency series (e2e, MCP, store queries)
  --store-messages N    messages in the store-at-scale phase (default 1000000)
  --peers N             WebSocket peers in the connected-peers phase (default 1000)
  --skip a,b            skip phases: send,e2e,mcp,peers,store,unread
  --ref-rate R          delivered msgs/s of the Python reference measured by hand in the
                        same session: the throughput target becomes 20 x R
  --out FILE            also write the report (markdown) to FILE
  --strict              exit 1 when a target is missed (default: only when a phase fails)
  --keep                keep the temporary data dirs and logs (path printed)
  --target URL          only drive POST URL/message:send (an existing node, e.g. the
                        Python reference) at the levels, and report
  --count URL           with --target: count deliveries on this node's /status
  --pids P1,P2          with --target: also report the CPU time of these processes";

fn parse_opts() -> Res<Opts> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` passes `--bench` to harness-less benches.
    args.retain(|a| a != "--bench");
    let mut o = Opts {
        quick: false,
        levels: vec![1, 8, 32, 128],
        duration: Duration::from_secs(5),
        target: None,
        count: None,
        pids: Vec::new(),
        store_messages: 1_000_000,
        peers: 1000,
        samples: 2000,
        skip: Vec::new(),
        ref_rate: None,
        out: None,
        strict: false,
        keep: false,
    };
    let (mut levels, mut duration, mut store, mut samples) = (None, None, None, None);
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        let mut val = || {
            it.next()
                .ok_or_else(|| format!("{a} needs a value\n{USAGE}"))
        };
        match a.as_str() {
            "--quick" => o.quick = true,
            "--strict" => o.strict = true,
            "--keep" => o.keep = true,
            "--levels" => {
                let v = val()?;
                levels = Some(
                    v.split(',')
                        .map(|s| {
                            s.trim()
                                .parse::<usize>()
                                .map_err(|e| format!("--levels: {e}"))
                        })
                        .collect::<Res<Vec<_>>>()?,
                );
            }
            "--duration" => {
                let secs: f64 = val()?.parse().map_err(|e| format!("--duration: {e}"))?;
                duration = Some(Duration::from_secs_f64(secs));
            }
            "--samples" => samples = Some(val()?.parse().map_err(|e| format!("--samples: {e}"))?),
            "--store-messages" => {
                store = Some(
                    val()?
                        .parse()
                        .map_err(|e| format!("--store-messages: {e}"))?,
                )
            }
            "--peers" => o.peers = val()?.parse().map_err(|e| format!("--peers: {e}"))?,
            "--skip" => o.skip = val()?.split(',').map(|s| s.trim().to_owned()).collect(),
            "--ref-rate" => {
                o.ref_rate = Some(val()?.parse().map_err(|e| format!("--ref-rate: {e}"))?)
            }
            "--out" => o.out = Some(PathBuf::from(val()?)),
            "--target" => o.target = Some(val()?.trim_end_matches('/').to_owned()),
            "--count" => o.count = Some(val()?.trim_end_matches('/').to_owned()),
            "--pids" => {
                o.pids = val()?
                    .split(',')
                    .map(|s| s.trim().parse::<u32>().map_err(|e| format!("--pids: {e}")))
                    .collect::<Res<Vec<_>>>()?
            }
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown option {other}\n{USAGE}")),
        }
    }
    if o.quick {
        o.levels = vec![1, 32];
        o.duration = Duration::from_secs(1);
        o.store_messages = 100_000;
        o.samples = 300;
    }
    o.levels = levels.unwrap_or(o.levels);
    o.duration = duration.unwrap_or(o.duration);
    o.store_messages = store.unwrap_or(o.store_messages).max(1000);
    o.samples = samples.unwrap_or(o.samples).max(10);
    Ok(o)
}

// ------------------------------------------------------------------------------------------
// A minimal keep-alive HTTP/1.1 client (the load generator)
// ------------------------------------------------------------------------------------------

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn io_err(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned())
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<()> {
    buf.reserve(16 * 1024);
    if stream.read_buf(buf).await? == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "connection closed mid-response",
        ));
    }
    Ok(())
}

/// One client connection. Reconnects transparently when the server closes it (HTTP/1.0
/// servers such as the Python reference close after every response; the reconnect is then
/// part of the measured latency, as it is for their real clients).
struct HttpConn {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
    body: Vec<u8>,
    connects: u64,
}

impl HttpConn {
    fn new(addr: SocketAddr) -> HttpConn {
        HttpConn {
            addr,
            stream: None,
            buf: Vec::with_capacity(16 * 1024),
            body: Vec::with_capacity(1024),
            connects: 0,
        }
    }

    async fn connect(&mut self) -> std::io::Result<()> {
        if self.stream.is_none() {
            let s = TcpStream::connect(self.addr).await?;
            s.set_nodelay(true)?;
            self.connects += 1;
            self.stream = Some(s);
        }
        Ok(())
    }

    /// Sends one request (complete bytes) and reads the response; returns the status. The
    /// body is left in `self.body`.
    async fn send(&mut self, req: &[u8]) -> std::io::Result<u16> {
        self.connect().await?;
        let Some(mut stream) = self.stream.take() else {
            return Err(io_err("no connection"));
        };
        stream.write_all(req).await?;
        self.buf.clear();
        let head_end = loop {
            if let Some(p) = find(&self.buf, b"\r\n\r\n") {
                break p + 4;
            }
            read_more(&mut stream, &mut self.buf).await?;
        };
        let head =
            std::str::from_utf8(&self.buf[..head_end]).map_err(|_| io_err("non-UTF-8 head"))?;
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let mut keep = !status_line.starts_with("HTTP/1.0");
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io_err("bad status line"))?;
        let (mut length, mut chunked) = (None, false);
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse::<usize>().ok();
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.eq_ignore_ascii_case("chunked");
            } else if name.eq_ignore_ascii_case("connection") {
                if value.eq_ignore_ascii_case("close") {
                    keep = false;
                } else if value.eq_ignore_ascii_case("keep-alive") {
                    keep = true;
                }
            }
        }
        self.body.clear();
        if let Some(len) = length {
            while self.buf.len() < head_end + len {
                read_more(&mut stream, &mut self.buf).await?;
            }
            self.body
                .extend_from_slice(&self.buf[head_end..head_end + len]);
        } else if chunked {
            let mut pos = head_end;
            loop {
                let line_end = loop {
                    if let Some(p) = find(&self.buf[pos..], b"\r\n") {
                        break pos + p;
                    }
                    read_more(&mut stream, &mut self.buf).await?;
                };
                let size_text = std::str::from_utf8(&self.buf[pos..line_end]).unwrap_or("");
                let size_text = size_text.split(';').next().unwrap_or("").trim();
                let size =
                    usize::from_str_radix(size_text, 16).map_err(|_| io_err("bad chunk size"))?;
                let data = line_end + 2;
                while self.buf.len() < data + size + 2 {
                    read_more(&mut stream, &mut self.buf).await?;
                }
                if size == 0 {
                    break;
                }
                self.body.extend_from_slice(&self.buf[data..data + size]);
                pos = data + size + 2;
            }
        } else {
            // Close-delimited body.
            while read_more(&mut stream, &mut self.buf).await.is_ok() {}
            self.body.extend_from_slice(&self.buf[head_end..]);
            keep = false;
        }
        if keep {
            self.stream = Some(stream);
        }
        Ok(status)
    }

    fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// `http://host:port[/...]` → socket address and `host:port`.
fn addr_of(url: &str) -> Res<(SocketAddr, String)> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// URLs are supported"))?;
    let hostport = rest.split('/').next().unwrap_or(rest).to_owned();
    let addr = hostport
        .to_socket_addrs()
        .map_err(|e| format!("{url}: {e}"))?
        .next()
        .ok_or_else(|| format!("{url}: no address"))?;
    Ok((addr, hostport))
}

fn post_req(host: &str, path: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn get_req(host: &str, path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes()
}

/// One GET returning JSON, on a fresh connection.
async fn get_json(url: &str, path: &str) -> Res<Value> {
    let (addr, host) = addr_of(url)?;
    let mut c = HttpConn::new(addr);
    let status = c
        .send(&get_req(&host, path))
        .await
        .map_err(|e| format!("GET {url}{path}: {e}"))?;
    if status != 200 {
        return Err(format!("GET {url}{path}: HTTP {status}: {}", c.body_text()));
    }
    serde_json::from_slice(&c.body).map_err(|e| format!("GET {url}{path}: {e}"))
}

/// The send body used everywhere (ours, the baseline and the reference accept it).
fn send_body(extra: Option<(&str, &str)>) -> String {
    let mut body = json!({
        "role": "user",
        "parts": [{"type": "text", "content": TEXT}],
        "context_id": "bench",
    });
    if let Some((k, v)) = extra {
        body[k] = json!(v);
    }
    body.to_string()
}

// ------------------------------------------------------------------------------------------
// Histograms and process metrics
// ------------------------------------------------------------------------------------------

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000_000, 3).expect("histogram bounds")
}

fn ns(d: Duration) -> u64 {
    d.as_nanos().min(u128::from(u64::MAX)) as u64
}

/// Latency summary in microseconds.
#[derive(Clone, Copy, Debug, Default)]
struct Lat {
    n: u64,
    p50: f64,
    p99: f64,
    p999: f64,
    max: f64,
}

impl Lat {
    fn of(h: &Histogram<u64>) -> Lat {
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
}

fn fmt_us(us: f64) -> String {
    if us <= 0.0 {
        "–".into()
    } else if us < 10.0 {
        format!("{us:.1} µs")
    } else if us < 1000.0 {
        format!("{us:.0} µs")
    } else if us < 1_000_000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{:.2} s", us / 1_000_000.0)
    }
}

fn fmt_rate(r: f64) -> String {
    if r >= 100.0 {
        let n = r.round() as u64;
        let s = n.to_string();
        let mut out = String::new();
        for (i, ch) in s.chars().enumerate() {
            if i > 0 && (s.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(ch);
        }
        out
    } else {
        format!("{r:.1}")
    }
}

fn fmt_mb(kb: u64) -> String {
    format!("{:.1} MB", kb as f64 / 1024.0)
}

fn ratio(ours: f64, base: f64) -> String {
    if base > 0.0 && ours > 0.0 {
        format!("{:.2}×", ours / base)
    } else {
        "–".into()
    }
}

/// Resident set size in kB (`VmRSS`).
fn rss_kb(pid: u32) -> u64 {
    status_field(pid, "VmRSS:")
}

fn status_field(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// User + system CPU seconds of a process (all threads).
fn cpu_secs(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / CLK_TCK
}

/// Busy CPU seconds of the whole machine (all cores) from /proc/stat: everything but idle
/// and iowait. Minus our own processes it shows load from elsewhere on the box.
fn machine_busy_secs() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return 0.0;
    };
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return 0.0;
    };
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: f64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0.0) + v.get(4).copied().unwrap_or(0.0);
    (total - idle) / CLK_TCK
}

fn dir_bytes(dir: &Path, names: &[&str]) -> u64 {
    names
        .iter()
        .filter_map(|n| std::fs::metadata(dir.join(n)).ok())
        .map(|m| m.len())
        .sum()
}

// ------------------------------------------------------------------------------------------
// Child processes: the nodes and the baseline
// ------------------------------------------------------------------------------------------

struct Proc {
    name: String,
    child: tokio::process::Child,
    pid: u32,
    url: String,
    link: Option<String>,
    log: PathBuf,
    /// Spawn until the first `GET /status` (or `/` for the baseline) answered 200.
    started_in: Duration,
}

impl Proc {
    fn rss_kb(&self) -> u64 {
        rss_kb(self.pid)
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// SIGTERM (graceful: the node flushes and checkpoints), then SIGKILL after 15 s.
    async fn stop(mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        if tokio::time::timeout(Duration::from_secs(15), self.child.wait())
            .await
            .is_err()
        {
            eprintln!("  {} did not stop in 15 s; killing it", self.name);
            let _ = self.child.kill().await;
        }
    }
}

/// Copies a child's output lines to its log file and forwards them to `lines`.
fn pump_lines<R>(reader: R, log: PathBuf, lines: mpsc::UnboundedSender<String>)
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .ok();
        let mut reader = BufReader::new(reader).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            if let Some(f) = file.as_mut() {
                let _ = writeln!(f, "{line}");
            }
            let _ = lines.send(line);
        }
    });
}

/// Spawns `cmd`, waits for a line starting with `marker` (the URL follows it), then for the
/// first 200 from `ready_path`.
async fn spawn_proc(
    name: &str,
    mut cmd: tokio::process::Command,
    logdir: &Path,
    marker: &str,
    ready_path: &str,
    wait: Duration,
) -> Res<Proc> {
    let log = logdir.join(format!("{name}.log"));
    let t0 = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .env("NO_COLOR", "1")
        .spawn()
        .map_err(|e| format!("{name}: cannot start: {e}"))?;
    let pid = child.id().unwrap_or(0);
    let (tx, mut rx) = mpsc::unbounded_channel();
    if let Some(out) = child.stdout.take() {
        pump_lines(out, log.clone(), tx.clone());
    }
    if let Some(err) = child.stderr.take() {
        pump_lines(err, log.clone(), tx);
    }
    let deadline = tokio::time::Instant::now() + wait;
    let (mut url, mut link) = (None, None);
    while url.is_none() {
        let line = match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(l)) => l,
            _ => {
                let tail = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(format!(
                    "{name}: did not report its URL in {wait:?}\n{tail}"
                ));
            }
        };
        if let Some(rest) = line.strip_prefix("acp-relay: link ") {
            link = Some(rest.trim().to_owned());
        }
        if let Some(rest) = line.strip_prefix(marker) {
            url = rest.split_whitespace().next().map(str::to_owned);
        }
    }
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let url = url.unwrap_or_default();
    let (addr, host) = addr_of(&url)?;
    let probe = get_req(&host, ready_path);
    loop {
        let mut c = HttpConn::new(addr);
        if let Ok(200) = c.send(&probe).await {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("{name}: {url}{ready_path} never answered 200"));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(Proc {
        name: name.to_owned(),
        child,
        pid,
        url,
        link,
        log,
        started_in: t0.elapsed(),
    })
}

async fn spawn_node(
    name: &str,
    data_dir: &Path,
    join: Option<&str>,
    logdir: &Path,
    wait: Duration,
) -> Res<Proc> {
    let mut cmd = tokio::process::Command::new(NODE_BIN);
    cmd.args([
        "serve",
        "--name",
        name,
        "--port",
        "0",
        "--ws-host",
        "127.0.0.1",
        "--advertise-host",
        "127.0.0.1",
    ])
    .arg("--data-dir")
    .arg(data_dir);
    if let Some(link) = join {
        cmd.args(["--join", link]);
    }
    spawn_proc(name, cmd, logdir, "acp-relay: REST API ", "/status", wait).await
}

async fn spawn_baseline(logdir: &Path) -> Res<Proc> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg("--baseline-server");
    spawn_proc(
        "baseline",
        cmd,
        logdir,
        "BASELINE ",
        "/status",
        Duration::from_secs(20),
    )
    .await
}

/// The floor: a trivial axum JSON handler on the same runtime configuration as the node
/// (`#[tokio::main]`, multi-threaded): parse the JSON body, answer a JSON object of the same
/// shape as a node's send answer.
fn baseline_server() -> std::process::ExitCode {
    use axum::Json;
    use axum::routing::{get, post};
    use std::sync::atomic::{AtomicU64, Ordering};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let seq = Arc::new(AtomicU64::new(0));
        let app = axum::Router::new()
            .route(
                "/message:send",
                post(move |Json(body): Json<Value>| {
                    let seq = seq.clone();
                    async move {
                        let n = seq.fetch_add(1, Ordering::Relaxed) + 1;
                        let ok = body.get("role").is_some() && body.get("parts").is_some();
                        Json(json!({
                            "ok": ok,
                            "message_id": format!("msg_{n:012x}"),
                            "server_seq": n,
                            "task": null,
                            "peer_id": "peer_001",
                            "delivery": "sent",
                        }))
                    }
                }),
            )
            .route("/status", get(|| async { Json(json!({"ok": true})) }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        println!("BASELINE http://{addr}");
        let _ = std::io::stdout().flush();
        axum::serve(listener, app).await.expect("serve");
    });
    std::process::ExitCode::SUCCESS
}

// ------------------------------------------------------------------------------------------
// Send load
// ------------------------------------------------------------------------------------------

struct Drive {
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    hist: Histogram<u64>,
    connects: u64,
}

/// Drives `req` on `conns` connections for `dur`, each connection sending its next request
/// as soon as the previous answer is read (closed loop).
async fn drive(addr: SocketAddr, req: Arc<Vec<u8>>, conns: usize, dur: Duration) -> Drive {
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
            let mut d = Drive {
                ok: 0,
                errors: 0,
                first_error: None,
                hist: hist(),
                connects: 0,
            };
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
    let mut total = Drive {
        ok: 0,
        errors: 0,
        first_error: None,
        hist: hist(),
        connects: 0,
    };
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
    total
}

/// One level against one server.
#[derive(Clone, Debug, Default)]
struct Level {
    conns: usize,
    secs: f64,
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    lat: Lat,
    /// Delivered on the counting node by the end of the window, and after draining.
    delivered_window: Option<u64>,
    delivered_total: Option<u64>,
    lost: Option<u64>,
    /// CPU seconds during the window: generator, then each server process.
    cpu_gen: f64,
    /// Busy CPU of everything else on the machine during the window (other users' builds…).
    cpu_other: f64,
    cpu_procs: Vec<(String, f64)>,
    connects: u64,
}

impl Level {
    fn accepted_rate(&self) -> f64 {
        self.ok as f64 / self.secs
    }

    fn delivered_rate(&self) -> Option<f64> {
        self.delivered_window.map(|d| d as f64 / self.secs)
    }
}

async fn messages_received(url: &str) -> Res<u64> {
    let v = get_json(url, "/status").await?;
    v.get("messages_received")
        .and_then(Value::as_u64)
        .ok_or_else(|| format!("{url}/status has no messages_received"))
}

/// Runs one level: `url` is driven, `count` (if any) is where deliveries are counted, `procs`
/// are the processes whose CPU is recorded.
async fn run_level(
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
    let mut level = Level {
        conns,
        secs: dur.as_secs_f64(),
        ok: d.ok,
        errors: d.errors,
        first_error: d.first_error,
        lat: Lat::of(&d.hist),
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
        let at_end = messages_received(c).await?.saturating_sub(b);
        level.delivered_window = Some(at_end.min(d.ok));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        let mut got = at_end;
        while got < d.ok && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
            got = messages_received(c).await?.saturating_sub(b);
        }
        level.delivered_total = Some(got);
        level.lost = Some(d.ok.saturating_sub(got));
    }
    Ok(level)
}

async fn warm_up(url: &str, body: &str, n: usize) -> Res<()> {
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

// ------------------------------------------------------------------------------------------
// End-to-end latency: send on B → SSE event on A
// ------------------------------------------------------------------------------------------

struct E2e {
    e2e: Lat,
    post: Lat,
    missing: u64,
}

async fn e2e_latency(b_url: &str, a_url: &str, samples: usize) -> Res<E2e> {
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

// ------------------------------------------------------------------------------------------
// MCP tool calls over Streamable HTTP
// ------------------------------------------------------------------------------------------

struct Mcp {
    send: Lat,
    receive: Lat,
    received: u64,
}

async fn mcp_latency(b_url: &str, a_url: &str, samples: usize) -> Res<Mcp> {
    let connect = |url: &str, node: &'static str| {
        let transport = StreamableHttpClientTransport::from_uri(format!("{url}/mcp"));
        async move {
            ().serve(transport)
                .await
                .map_err(|e| format!("MCP initialize on {node}: {e}"))
        }
    };
    let b = connect(b_url, "B").await?;
    let a = connect(a_url, "A").await?;
    let ctx = format!("mcp-bench-{}", std::process::id());
    let call = |peer: &rmcp::Peer<rmcp::RoleClient>, tool: &'static str, args: Value| {
        let peer = peer.clone();
        async move {
            let args = args.as_object().cloned().unwrap_or_default();
            let r = peer
                .call_tool(CallToolRequestParams::new(tool).with_arguments(args))
                .await
                .map_err(|e| format!("{tool}: {e}"))?;
            if r.is_error == Some(true) {
                return Err(format!("{tool} failed: {:?}", r.content));
            }
            Ok::<Value, String>(r.structured_content.unwrap_or(Value::Null))
        }
    };
    let mut cursor = "0".to_owned();
    let (mut send_h, mut recv_h) = (hist(), hist());
    let mut received = 0;
    let warm = 20;
    for i in 0..samples + warm {
        let t0 = Instant::now();
        call(
            b.peer(),
            "acp_send",
            json!({"text": format!("mcp {i}"), "context_id": ctx}),
        )
        .await?;
        let sent = t0.elapsed();
        let t1 = Instant::now();
        let r = call(
            a.peer(),
            "acp_receive",
            json!({"cursor": cursor, "context_id": ctx, "wait_seconds": 5, "limit": 10}),
        )
        .await?;
        let got = t1.elapsed();
        if let Some(c) = r["cursor"].as_str() {
            cursor = c.to_owned();
        }
        let n = r["messages"].as_array().map_or(0, Vec::len) as u64;
        if i >= warm {
            let _ = send_h.record(ns(sent).max(1));
            let _ = recv_h.record(ns(got).max(1));
            received += n;
        }
    }
    let _ = a.cancel().await;
    let _ = b.cancel().await;
    Ok(Mcp {
        send: Lat::of(&send_h),
        receive: Lat::of(&recv_h),
        received,
    })
}

// ------------------------------------------------------------------------------------------
// 1,000 connected peers
// ------------------------------------------------------------------------------------------

struct Peers {
    wanted: usize,
    connected: u64,
    connect_secs: f64,
    rss_idle_kb: u64,
    rss_kb: u64,
    rss_per_peer_kb: f64,
}

async fn many_peers(root: &Path, logdir: &Path, n: usize) -> Res<Peers> {
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

// ------------------------------------------------------------------------------------------
// The store at scale
// ------------------------------------------------------------------------------------------

/// Shape of the generated history: both directions, 10 peers, a few thousand conversations of
/// about 100 messages plus one long conversation holding 10 % of everything, 1 % of the
/// messages in tasks, one message per millisecond.
struct Shape {
    t0: f64,
}

impl Shape {
    const CONTEXTS: usize = 9_000;
    const TASKS: usize = 1_000;

    fn context(&self, i: usize) -> String {
        if i.is_multiple_of(10) {
            "ctx_hot".into()
        } else {
            format!("ctx_{:05}", i % Self::CONTEXTS)
        }
    }

    fn row(&self, i: usize, unread_from: usize) -> MessageRow {
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
            "parts": [{"type": "text", "content": format!("stored message {i}: {TEXT}")}],
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

struct StoreRun {
    n: usize,
    insert_secs: f64,
    frame_bytes: f64,
    disk_bytes: u64,
    startup: Vec<Duration>,
    rss_kb: u64,
    queries: Vec<(String, Lat, usize)>,
    unread_startup: Option<Duration>,
    unread_rss_kb: u64,
    unread_count: usize,
}

async fn store_at_scale(root: &Path, logdir: &Path, o: &Opts) -> Res<StoreRun> {
    let n = o.store_messages;
    let dir = root.join("store-d");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let shape = Shape {
        t0: 1_780_000_000.0,
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

// ------------------------------------------------------------------------------------------
// Report
// ------------------------------------------------------------------------------------------

#[derive(Default)]
struct Report {
    lines: Vec<String>,
    targets: Vec<(String, bool, String)>,
}

impl Report {
    fn line(&mut self, s: impl Into<String>) {
        let s = s.into();
        println!("{s}");
        self.lines.push(s);
    }

    fn target(&mut self, what: &str, met: bool, detail: String) {
        self.targets.push((what.to_owned(), met, detail));
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "?".into());
    let mem_kb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0);
    let nofile = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Max open files"))
                .map(|l| l.split_whitespace().nth(3).unwrap_or("?").to_owned())
        })
        .unwrap_or_else(|| "?".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{} cores ({cpu}), {:.1} GiB RAM, Linux {}, ulimit -n {nofile}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        mem_kb as f64 / 1024.0 / 1024.0,
        kernel.trim()
    )
}

fn cpu_cell(l: &Level) -> String {
    let mut parts = vec![format!("gen {:.0}%", 100.0 * l.cpu_gen / l.secs)];
    for (n, c) in &l.cpu_procs {
        parts.push(format!("{n} {:.0}%", 100.0 * c / l.secs));
    }
    parts.push(format!("other {:.0}%", 100.0 * l.cpu_other / l.secs));
    parts.join(", ")
}

fn level_table(r: &mut Report, title: &str, rows: &[(String, Level)]) {
    r.line(format!("\n### {title}\n"));
    r.line("| server | conns | accepted/s | delivered/s | p50 | p99 | p99.9 | max | errors | lost | CPU (1 core = 100%) |");
    r.line("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for (who, l) in rows {
        r.line(format!(
            "| {who} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            l.conns,
            fmt_rate(l.accepted_rate()),
            l.delivered_rate().map_or("–".into(), fmt_rate),
            fmt_us(l.lat.p50),
            fmt_us(l.lat.p99),
            fmt_us(l.lat.p999),
            fmt_us(l.lat.max),
            l.errors,
            l.lost.map_or("–".into(), |v| v.to_string()),
            cpu_cell(l)
        ));
    }
    for (who, l) in rows {
        if let Some(e) = &l.first_error {
            r.line(format!(
                "\n{who} at {} connections, first error: {}",
                l.conns,
                e.chars().take(300).collect::<String>()
            ));
        }
    }
}

// ------------------------------------------------------------------------------------------
// Main flows
// ------------------------------------------------------------------------------------------

async fn target_mode(o: &Opts) -> Res<Report> {
    let mut r = Report::default();
    let url = o.target.clone().unwrap_or_default();
    r.line(format!(
        "# acp-relay load tool, --target mode\n\nmachine: {}",
        machine()
    ));
    r.line(format!(
        "target: {url}/message:send; deliveries counted on: {}; {} s per level",
        o.count.as_deref().unwrap_or("(none)"),
        o.duration.as_secs_f64()
    ));
    let body = send_body(None);
    warm_up(&url, &body, 50).await?;
    let procs: Vec<(String, u32)> = o.pids.iter().map(|p| (format!("pid {p}"), *p)).collect();
    let mut rows = Vec::new();
    for &c in &o.levels {
        let l = run_level(&url, &body, o.count.as_deref(), &procs, c, o.duration).await?;
        eprintln!(
            "  {c} conns: {:.0} accepted/s, p50 {}, p99 {}, {} errors, {} TCP connects",
            l.accepted_rate(),
            fmt_us(l.lat.p50),
            fmt_us(l.lat.p99),
            l.errors,
            l.connects
        );
        rows.push(("target".to_owned(), l));
    }
    level_table(&mut r, "POST /message:send on the target", &rows);
    Ok(r)
}

async fn full_mode(o: &Opts, root: &Path) -> Res<Report> {
    let mut r = Report::default();
    let logdir = root.join("logs");
    std::fs::create_dir_all(&logdir).map_err(|e| e.to_string())?;
    let skip = |p: &str| o.skip.iter().any(|s| s == p);
    r.line("# acp-relay load benchmark");
    r.line(format!("\nmachine: {}", machine()));
    r.line(format!(
        "mode: {}; levels {:?}; {} s per level; {} latency samples; {} stored messages; node binary {}",
        if o.quick { "--quick" } else { "full" },
        o.levels,
        o.duration.as_secs_f64(),
        o.samples,
        o.store_messages,
        NODE_BIN
    ));

    let busy0 = machine_busy_secs();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let background = machine_busy_secs() - busy0;
    r.line(format!(
        "background load before the run (other processes on this machine): {:.0}% of one core{}",
        100.0 * background,
        if background > 0.2 {
            " (figures below are disturbed; see the \"other\" CPU per level)"
        } else {
            ""
        }
    ));
    // Load the node binary into the page cache (it may have just been rebuilt), so the
    // first start-up time is not a disk read.
    let _ = tokio::process::Command::new(NODE_BIN)
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .await;
    eprintln!("starting the baseline and nodes A and B (B dials A) ...");
    let base = spawn_baseline(&logdir).await?;
    let a = spawn_node(
        "bench-a",
        &root.join("a"),
        None,
        &logdir,
        Duration::from_secs(20),
    )
    .await?;
    let a_link = a.link.clone().ok_or("node A printed no link")?;
    let b = spawn_node(
        "bench-b",
        &root.join("b"),
        Some(&a_link),
        &logdir,
        Duration::from_secs(20),
    )
    .await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let pa = get_json(&a.url, "/peers").await?;
        let pb = get_json(&b.url, "/peers").await?;
        if pa["active"].as_u64() >= Some(1) && pb["active"].as_u64() >= Some(1) {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!(
                "B never connected to A\n--- A ---\n{}\n--- B ---\n{}",
                a.log_tail(),
                b.log_tail()
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = (a.rss_kb(), b.rss_kb(), base.rss_kb());
    let startup_empty = (a.started_in, b.started_in, base.started_in);

    let body = send_body(None);
    let mut levels: Vec<(String, Level)> = Vec::new();
    if !skip("send") {
        eprintln!("send load ...");
        warm_up(&base.url, &body, 300).await?;
        warm_up(&b.url, &body, 300).await?;
        let procs_base = vec![("baseline".to_owned(), base.pid)];
        let procs_node = vec![("B".to_owned(), b.pid), ("A".to_owned(), a.pid)];
        for &c in &o.levels {
            let lb = run_level(&base.url, &body, None, &procs_base, c, o.duration).await?;
            let ln = run_level(&b.url, &body, Some(&a.url), &procs_node, c, o.duration).await?;
            eprintln!(
                "  {c:>3} conns: baseline {:>8.0}/s p50 {:>9} | B→A accepted {:>8.0}/s delivered {:>8.0}/s p50 {:>9} p99 {:>9} errors {} lost {}",
                lb.accepted_rate(),
                fmt_us(lb.lat.p50),
                ln.accepted_rate(),
                ln.delivered_rate().unwrap_or(0.0),
                fmt_us(ln.lat.p50),
                fmt_us(ln.lat.p99),
                ln.errors,
                ln.lost.unwrap_or(0)
            );
            levels.push(("baseline".into(), lb));
            levels.push(("acp-relay B→A".into(), ln));
        }
    }
    let e2e = if skip("e2e") {
        None
    } else {
        eprintln!("end-to-end latency (send on B → SSE on A) ...");
        Some(e2e_latency(&b.url, &a.url, o.samples).await?)
    };
    let mcp = if skip("mcp") {
        None
    } else {
        eprintln!("MCP tool calls ...");
        Some(mcp_latency(&b.url, &a.url, (o.samples / 4).max(50)).await?)
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = (a.rss_kb(), b.rss_kb(), base.rss_kb());
    let a_status = get_json(&a.url, "/status").await?;
    let a_received = a_status["messages_received"].as_u64().unwrap_or(0);
    let peak = (status_field(a.pid, "VmHWM:"), status_field(b.pid, "VmHWM:"));
    a.stop().await;
    b.stop().await;

    let peers = if skip("peers") {
        None
    } else {
        eprintln!("{} connected peers on one node ...", o.peers);
        Some(many_peers(root, &logdir, o.peers).await?)
    };
    let store = if skip("store") {
        None
    } else {
        eprintln!("store at scale: {} messages ...", o.store_messages);
        Some(store_at_scale(root, &logdir, o).await?)
    };
    let base_rss_idle = idle.2;
    base.stop().await;

    // ---- tables
    let base1 = levels
        .iter()
        .find(|(w, l)| w == "baseline" && l.conns == 1)
        .map(|(_, l)| l.lat)
        .unwrap_or_default();
    if !levels.is_empty() {
        level_table(
            &mut r,
            "POST /message:send: node B forwarding to node A, and the baseline",
            &levels,
        );
        r.line("\n| conns | B→A delivered/s | baseline req/s | throughput ratio | p50 ratio | p99 ratio |");
        r.line("|---:|---:|---:|---:|---:|---:|");
        for pair in levels.chunks(2) {
            if let [(_, lb), (_, ln)] = pair {
                r.line(format!(
                    "| {} | {} | {} | {} | {} | {} |",
                    ln.conns,
                    fmt_rate(ln.delivered_rate().unwrap_or(0.0)),
                    fmt_rate(lb.accepted_rate()),
                    ratio(ln.delivered_rate().unwrap_or(0.0), lb.accepted_rate()),
                    ratio(ln.lat.p50, lb.lat.p50),
                    ratio(ln.lat.p99, lb.lat.p99),
                ));
            }
        }
    }
    r.line("\n### Latency, memory, start-up (ratio = ours / baseline of the same run)\n");
    r.line("| measurement | acp-relay | baseline | ratio |");
    r.line("|---|---:|---:|---:|");
    let bp50 = base1.p50;
    let bp99 = base1.p99;
    if let Some(e) = &e2e {
        r.line(format!(
            "| end-to-end send on B → SSE event on A, p50 / p99 / p99.9 ({} samples, {} missing) | {} / {} / {} | {} / {} (1-conn POST) | {} / {} |",
            e.e2e.n,
            e.missing,
            fmt_us(e.e2e.p50),
            fmt_us(e.e2e.p99),
            fmt_us(e.e2e.p999),
            fmt_us(bp50),
            fmt_us(bp99),
            ratio(e.e2e.p50, bp50),
            ratio(e.e2e.p99, bp99)
        ));
        r.line(format!(
            "| the same sends' POST latency on B, p50 / p99 | {} / {} | {} / {} | {} / {} |",
            fmt_us(e.post.p50),
            fmt_us(e.post.p99),
            fmt_us(bp50),
            fmt_us(bp99),
            ratio(e.post.p50, bp50),
            ratio(e.post.p99, bp99)
        ));
    }
    if let Some(m) = &mcp {
        r.line(format!(
            "| MCP acp_send (on B, Streamable HTTP, rmcp client), p50 / p99 ({} calls) | {} / {} | {} / {} | {} / {} |",
            m.send.n,
            fmt_us(m.send.p50),
            fmt_us(m.send.p99),
            fmt_us(bp50),
            fmt_us(bp99),
            ratio(m.send.p50, bp50),
            ratio(m.send.p99, bp99)
        ));
        r.line(format!(
            "| MCP acp_receive (on A, cursor + context filter, returns the message just sent; {} received), p50 / p99 | {} / {} | {} / {} | {} / {} |",
            m.received,
            fmt_us(m.receive.p50),
            fmt_us(m.receive.p99),
            fmt_us(bp50),
            fmt_us(bp99),
            ratio(m.receive.p50, bp50),
            ratio(m.receive.p99, bp99)
        ));
    }
    let b_rss = idle.2 as f64;
    r.line(format!(
        "| RSS idle, node A / node B (connected, before load) | {} / {} | {} | {} / {} |",
        fmt_mb(idle.0),
        fmt_mb(idle.1),
        fmt_mb(idle.2),
        ratio(idle.0 as f64, b_rss),
        ratio(idle.1 as f64, b_rss)
    ));
    r.line(format!(
        "| RSS after load, node A (holds {a_received} received messages) / node B | {} / {} | {} | {} / {} |",
        fmt_mb(after.0),
        fmt_mb(after.1),
        fmt_mb(after.2),
        ratio(after.0 as f64, after.2 as f64),
        ratio(after.1 as f64, after.2 as f64)
    ));
    r.line(format!(
        "| peak RSS (VmHWM) during the run, node A / node B | {} / {} | – | – |",
        fmt_mb(peak.0),
        fmt_mb(peak.1)
    ));
    if let Some(p) = &peers {
        r.line(format!(
            "| RSS with {} connected WebSocket peers ({} active, connected in {:.2} s; idle {}; {:.1} kB per peer) | {} | {} | {} |",
            p.wanted,
            p.connected,
            p.connect_secs,
            fmt_mb(p.rss_idle_kb),
            p.rss_per_peer_kb,
            fmt_mb(p.rss_kb),
            fmt_mb(base_rss_idle),
            ratio(p.rss_kb as f64, base_rss_idle as f64)
        ));
    }
    let su = |d: Duration| d.as_secs_f64() * 1e6;
    r.line(format!(
        "| start-up on an empty data dir (spawn → first /status 200), A / B | {} / {} | {} | {} |",
        fmt_us(su(startup_empty.0)),
        fmt_us(su(startup_empty.1)),
        fmt_us(su(startup_empty.2)),
        ratio(su(startup_empty.0), su(startup_empty.2))
    ));
    if let Some(s) = &store {
        let med = {
            let mut v = s.startup.clone();
            v.sort();
            v[v.len() / 2]
        };
        r.line(format!(
            "| start-up with {} stored messages (median of {}: {}) | {} | {} | {} |",
            fmt_rate(s.n as f64),
            s.startup.len(),
            s.startup
                .iter()
                .map(|d| fmt_us(su(*d)))
                .collect::<Vec<_>>()
                .join(", "),
            fmt_us(su(med)),
            fmt_us(su(startup_empty.2)),
            ratio(su(med), su(startup_empty.2))
        ));
        if let Some(u) = s.unread_startup {
            r.line(format!(
                "| start-up with the same store, all {} inbound messages unread (RSS after start {}) | {} | {} | {} |",
                fmt_rate(s.unread_count as f64),
                fmt_mb(s.unread_rss_kb),
                fmt_us(su(u)),
                fmt_us(su(startup_empty.2)),
                ratio(su(u), su(startup_empty.2))
            ));
        }
        r.line(format!(
            "| disk per stored message (node.db + WAL {:.1} MB / {}; frame JSON is {:.0} B) | {:.0} B | {:.0} B (frame) | {} |",
            s.disk_bytes as f64 / 1e6,
            fmt_rate(s.n as f64),
            s.frame_bytes,
            s.disk_bytes as f64 / s.n as f64,
            s.frame_bytes,
            ratio(s.disk_bytes as f64 / s.n as f64, s.frame_bytes)
        ));
        r.line(format!(
            "| RSS of the node on the big store after the queries | {} | {} | {} |",
            fmt_mb(s.rss_kb),
            fmt_mb(base_rss_idle),
            ratio(s.rss_kb as f64, base_rss_idle as f64)
        ));
        r.line(format!(
            "\n### Queries on {} stored messages (inserted in {:.1} s through the store writer; one keep-alive connection, sequential)\n",
            fmt_rate(s.n as f64),
            s.insert_secs
        ));
        r.line("| query | rows | samples | p50 | p99 | max | p99 / baseline p99 |");
        r.line("|---|---:|---:|---:|---:|---:|---:|");
        for (label, lat, rows) in &s.queries {
            r.line(format!(
                "| {label} | {rows} | {} | {} | {} | {} | {} |",
                lat.n,
                fmt_us(lat.p50),
                fmt_us(lat.p99),
                fmt_us(lat.max),
                ratio(lat.p99, bp99)
            ));
        }
    }

    // ---- targets
    let lvl = |c: usize| {
        levels
            .iter()
            .find(|(w, l)| w != "baseline" && l.conns == c)
            .map(|(_, l)| l.clone())
    };
    if let Some(l) = lvl(1) {
        r.target(
            "1 connection: p50 ≤ 100 µs",
            l.lat.p50 <= 100.0,
            format!("{} ({})", fmt_us(l.lat.p50), ratio(l.lat.p50, 100.0)),
        );
        r.target(
            "1 connection: p99 ≤ 300 µs",
            l.lat.p99 <= 300.0,
            format!("{} ({})", fmt_us(l.lat.p99), ratio(l.lat.p99, 300.0)),
        );
    }
    let floor = o.ref_rate.map_or(33_000.0, |r| 20.0 * r);
    for c in [8, 32] {
        if let Some(l) = lvl(c) {
            let d = l.delivered_rate().unwrap_or(0.0);
            r.target(
                &format!("{c} connections: ≥ {} delivered/s", fmt_rate(floor)),
                d >= floor,
                format!("{} ({:.0}% of target)", fmt_rate(d), 100.0 * d / floor),
            );
        }
    }
    let node_levels: Vec<&Level> = levels
        .iter()
        .filter(|(w, _)| w != "baseline")
        .map(|(_, l)| l)
        .collect();
    if !node_levels.is_empty() {
        let errs: u64 = node_levels.iter().map(|l| l.errors).sum();
        let lost: u64 = node_levels.iter().filter_map(|l| l.lost).sum();
        r.target(
            "zero errors, zero lost (all levels)",
            errs == 0 && lost == 0,
            format!("{errs} errors, {lost} lost"),
        );
    }
    if let Some(l) = lvl(32) {
        r.target(
            "32 connections: p99 ≤ 5 ms",
            l.lat.p99 <= 5000.0,
            format!("{} ({})", fmt_us(l.lat.p99), ratio(l.lat.p99, 5000.0)),
        );
    }
    if let Some(e) = &e2e {
        r.target(
            "end-to-end send → SSE p50 ≤ 0.25 ms",
            e.e2e.p50 <= 250.0 && e.missing == 0,
            format!(
                "{} ({}), {} missing",
                fmt_us(e.e2e.p50),
                ratio(e.e2e.p50, 250.0),
                e.missing
            ),
        );
    }
    let idle_max = idle.0.max(idle.1);
    r.target(
        "idle RSS ≤ 15 MB per node",
        idle_max <= 15 * 1024,
        format!(
            "{} ({})",
            fmt_mb(idle_max),
            ratio(idle_max as f64, 15.0 * 1024.0)
        ),
    );
    if let Some(p) = &peers {
        r.target(
            &format!("{} connected peers ≤ 150 MB", p.wanted),
            p.rss_kb <= 150 * 1024 && p.connected >= p.wanted as u64,
            format!(
                "{} ({}), {} of {} active",
                fmt_mb(p.rss_kb),
                ratio(p.rss_kb as f64, 150.0 * 1024.0),
                p.connected,
                p.wanted
            ),
        );
    }
    if let Some(s) = &store {
        let worst = s
            .queries
            .iter()
            .map(|(l, q, _)| (l.clone(), q.p99))
            .fold((String::new(), 0.0), |a, b| if b.1 > a.1 { b } else { a });
        let over: Vec<String> = s
            .queries
            .iter()
            .filter(|(_, q, _)| q.p99 > 5000.0)
            .map(|(l, q, _)| format!("{l} {}", fmt_us(q.p99)))
            .collect();
        r.target(
            &format!("{} stored: every query p99 ≤ 5 ms", fmt_rate(s.n as f64)),
            over.is_empty(),
            if over.is_empty() {
                format!("worst {} {}", worst.0, fmt_us(worst.1))
            } else {
                format!("{} over: {}", over.len(), over.join("; "))
            },
        );
        let med = {
            let mut v = s.startup.clone();
            v.sort();
            v[v.len() / 2]
        };
        r.target(
            &format!("{} stored: start-up ≤ 1 s", fmt_rate(s.n as f64)),
            med <= Duration::from_secs(1),
            format!("{} ({})", fmt_us(su(med)), ratio(su(med), 1e6)),
        );
        if let Some(u) = s.unread_startup {
            r.target(
                &format!(
                    "{} stored, all inbound unread: start-up ≤ 1 s",
                    fmt_rate(s.n as f64)
                ),
                u <= Duration::from_secs(1),
                format!("{} ({})", fmt_us(su(u)), ratio(su(u), 1e6)),
            );
        }
    }
    // Generator check: the generator's CPU at the node's busiest level vs the baseline's.
    if let Some((_, l)) = levels
        .iter()
        .filter(|(w, _)| w != "baseline")
        .max_by(|x, y| x.1.accepted_rate().total_cmp(&y.1.accepted_rate()))
    {
        let per_req = 1e6 * l.cpu_gen / l.ok.max(1) as f64;
        let best_base = levels
            .iter()
            .filter(|(w, _)| w == "baseline")
            .map(|(_, l)| l.accepted_rate())
            .fold(0.0, f64::max);
        r.line(format!(
            "\nGenerator check: at the node's best level ({} conns) the generator used {:.0}% of one core \
             ({:.1} µs CPU per request); the same generator drove the baseline at up to {} req/s, {:.1}× the node's rate.",
            l.conns,
            100.0 * l.cpu_gen / l.secs,
            per_req,
            fmt_rate(best_base),
            best_base / l.accepted_rate().max(1.0)
        ));
    }
    Ok(r)
}

fn print_targets(r: &mut Report) -> bool {
    if r.targets.is_empty() {
        return true;
    }
    r.line("\n### Targets\n");
    r.line("| target | result | measured |");
    r.line("|---|---|---|");
    let targets = std::mem::take(&mut r.targets);
    let mut all = true;
    for (what, met, detail) in &targets {
        all &= *met;
        r.line(format!(
            "| {what} | {} | {detail} |",
            if *met { "met" } else { "MISSED" }
        ));
    }
    all
}

fn main() -> std::process::ExitCode {
    if std::env::args().any(|a| a == "--baseline-server") {
        return baseline_server();
    }
    let o = match parse_opts() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::from(2);
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let root = match tempfile::Builder::new().prefix("acp-bench-").tempdir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("tempdir: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let t0 = Instant::now();
    let result = rt.block_on(async {
        if o.target.is_some() {
            target_mode(&o).await
        } else {
            full_mode(&o, root.path()).await
        }
    });
    let code = match result {
        Ok(mut report) => {
            let all_met = print_targets(&mut report);
            report.line(format!(
                "\nbench wall time: {:.1} s",
                t0.elapsed().as_secs_f64()
            ));
            if let Some(path) = &o.out
                && let Err(e) = std::fs::write(path, report.lines.join("\n") + "\n")
            {
                eprintln!("cannot write {}: {e}", path.display());
            }
            if o.strict && !all_met {
                std::process::ExitCode::FAILURE
            } else {
                std::process::ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("benchmark failed: {e}");
            std::process::ExitCode::FAILURE
        }
    };
    rt.shutdown_timeout(Duration::from_secs(2));
    if o.keep {
        let kept = root.keep();
        eprintln!("kept data dirs and logs in {}", kept.display());
    }
    code
}

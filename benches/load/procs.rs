//! Child processes (the nodes and the baseline server) and what /proc says about them.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

use crate::http::{HttpConn, addr_of, get_json, get_req};
use crate::{CLK_TCK, Res, node_bin};

/// Resident set size in kB (`VmRSS`).
pub fn rss_kb(pid: u32) -> u64 {
    status_field(pid, "VmRSS:")
}

pub fn status_field(pid: u32, field: &str) -> u64 {
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
pub fn cpu_secs(pid: u32) -> f64 {
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
pub fn machine_busy_secs() -> f64 {
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

pub fn dir_bytes(dir: &Path, names: &[&str]) -> u64 {
    names
        .iter()
        .filter_map(|n| std::fs::metadata(dir.join(n)).ok())
        .map(|m| m.len())
        .sum()
}

pub struct Proc {
    pub name: String,
    pub child: tokio::process::Child,
    pub pid: u32,
    pub url: String,
    pub link: Option<String>,
    pub log: PathBuf,
    /// Spawn until the first `GET /status` (or `/` for the baseline) answered 200.
    pub started_in: Duration,
}

impl Proc {
    pub fn rss_kb(&self) -> u64 {
        rss_kb(self.pid)
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// SIGTERM (graceful: the node flushes and checkpoints), then SIGKILL after 15 s.
    pub async fn stop(mut self) {
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
pub fn pump_lines<R>(reader: R, log: PathBuf, lines: mpsc::UnboundedSender<String>)
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
pub async fn spawn_proc(
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

/// Extra arguments for every node the bench starts (`--node-arg`).
pub static NODE_ARGS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

pub async fn spawn_node(
    name: &str,
    data_dir: &Path,
    join: Option<&str>,
    logdir: &Path,
    wait: Duration,
) -> Res<Proc> {
    let mut cmd = tokio::process::Command::new(node_bin());
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
        // The bench measures the node, not the per-peer limits: one pair carries thousands
        // of messages a second, far above what the defaults let one peer send.
        "--peer-msgs-per-sec",
        "0",
        "--peer-mb-per-sec",
        "0",
        "--peer-max-store-mb",
        "0",
    ])
    .arg("--data-dir")
    .arg(data_dir);
    if let Some(link) = join {
        cmd.args(["--join", link]);
    }
    cmd.args(NODE_ARGS.lock().unwrap_or_else(|p| p.into_inner()).iter());
    spawn_proc(name, cmd, logdir, "acp-relay: REST API ", "/status", wait).await
}

/// Node A, and node B dialling A (`--join` with A's link), each on its own data dir under
/// `root`; returns once both `/peers` report the link active, so a send on B has a peer.
pub async fn spawn_pair(root: &Path, logdir: &Path) -> Res<(Proc, Proc)> {
    let a = spawn_node(
        "bench-a",
        &root.join("a"),
        None,
        logdir,
        Duration::from_secs(20),
    )
    .await?;
    let a_link = a.link.clone().ok_or("node A printed no link")?;
    let b = spawn_node(
        "bench-b",
        &root.join("b"),
        Some(&a_link),
        logdir,
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
    Ok((a, b))
}

pub async fn spawn_baseline(logdir: &Path) -> Res<Proc> {
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
pub fn baseline_server() -> std::process::ExitCode {
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

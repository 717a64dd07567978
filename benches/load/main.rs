//! Load benchmark of acp-relay: `cargo bench --bench load -- [--quick]`.
//!
//! It builds nothing by hand and needs no network beyond loopback. What it does:
//!
//! 1. starts a trivial axum JSON handler (this binary re-run as `--baseline-server`) as the
//!    floor, and two `acp-relay serve` release binaries, node A and node B, where B dials A;
//! 2. drives `POST /message:send` on B (forwarded to A over the peer WebSocket) and the same
//!    request on the baseline with 1, 8, 32 and 128 keep-alive connections for 30 s a
//!    level, counting accepted requests (2xx on B), delivered messages (A's `/status`
//!    `messages_received`), errors, lost messages, latency in an HDR histogram (corrected for
//!    coordinated omission as wrk 4 does, raw beside it), and the CPU time of the generator
//!    and of every server process;
//! 3. measures the streaming inlet (`/messages:stream`: one WebSocket pipelined with a bounded
//!    window, and NDJSON POSTs) against `/message:send` on 1 and the most connections, back
//!    to back on the same pair, as delivered messages per second and their ratio;
//! 4. measures end-to-end latency (send on B until the SSE event arrives on A's `/stream`),
//!    MCP tool-call latency (`acp_send`, `acp_receive`) over Streamable HTTP with the rmcp
//!    client, resident memory idle, after load and with 1,000 connected peers (raw WebSocket
//!    clients that send an `acp.agent_card` frame);
//! 5. builds a store of 1,000,000 messages through the node's own store writer, then measures
//!    start-up time on that data dir, `/messages` and `/context/{id}/messages` latency, and disk
//!    bytes per message; then again start-up with every inbound message unread.
//!
//! Every figure is printed next to the baseline measured in the same run, with the ratio, and
//! the targets are checked (met / missed by how much). `--quick` is the CI smoke run
//! (1 s per level, 2 levels, 100,000 stored messages). `--target URL [--count URL]` only drives
//! an existing node's `/message:send` (e.g. the Python reference), counting deliveries on the
//! `--count` node. `--wrk` drives the same pair with the generator and then with `wrk` and
//! `benches/wrk/send.lua`, level by level, to check the two agree. `--help` lists every option.
//!
//! The load generator is a minimal HTTP/1.1 client on a single-threaded runtime (like `wrk`
//! with one thread), so it uses at most one core and little CPU per request; its CPU time is
//! printed for every level next to the servers' so a saturated generator is visible.

//!
//! Layout (`benches/load/`, one `[[bench]]` target with `harness = false`):
//!
//! | file | what is in it |
//! |---|---|
//! | `main.rs` | this map, the shared constants, `main` |
//! | `opts.rs` | command-line options and `--help` |
//! | `http.rs` | the raw keep-alive HTTP/1.1 client, request builders, `get_json` |
//! | `generator.rs` | `drive` (the closed-loop connections), latency histograms, one level |
//! | `procs.rs` | spawning nodes and the baseline server, /proc readings (CPU, RSS) |
//! | `scenarios/` | the other phases: `inlet`, `e2e`, `mcp`, `peers`, `store` (incl. the unread start-up) |
//! | `report.rs` | number formatting, the markdown report, the level table, the targets |
//! | `run.rs` | the flows that put it together: `full_mode` and `target_mode` |
//! | `wrk.rs` | `--wrk`: the bench generator and wrk back to back on the same pair of nodes |

mod generator;
mod http;
mod opts;
mod procs;
mod report;
mod run;
mod scenarios;
mod wrk;

use std::time::{Duration, Instant};

/// The node binary cargo built for this bench (release settings).
const BUILT_NODE_BIN: &str = env!("CARGO_BIN_EXE_acp-relay");
/// `--node-bin`: another build of the node to measure instead (the released `dist` binary,
/// a build with other settings), so two builds are compared by the same bench on the same
/// machine.
pub static OTHER_NODE_BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The node binary every phase starts.
pub fn node_bin() -> &'static str {
    OTHER_NODE_BIN.get().map_or(BUILT_NODE_BIN, String::as_str)
}
/// Linux USER_HZ: the unit of utime/stime in /proc/PID/stat.
pub const CLK_TCK: f64 = 100.0;
/// The text of every load message (64 bytes).
pub const TEXT: &str = "benchmark message: sixty-four bytes of text, the same every time.";

pub type Res<T> = Result<T, String>;

fn main() -> std::process::ExitCode {
    if std::env::args().any(|a| a == "--baseline-server") {
        return procs::baseline_server();
    }
    let o = match opts::parse_opts() {
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
        if o.wrk {
            wrk::wrk_mode(&o, root.path()).await
        } else if o.target.is_some() {
            run::target_mode(&o).await
        } else {
            run::full_mode(&o, root.path()).await
        }
    });
    let code = match result {
        Ok(mut report) => {
            let all_met = report::print_targets(&mut report);
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

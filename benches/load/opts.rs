//! Command-line options of the bench (`--help` prints [`USAGE`]).

use std::path::PathBuf;
use std::time::Duration;

use crate::Res;

#[derive(Clone, Debug)]
pub struct Opts {
    pub quick: bool,
    pub levels: Vec<usize>,
    pub duration: Duration,
    pub target: Option<String>,
    pub count: Option<String>,
    pub pids: Vec<u32>,
    pub store_messages: usize,
    pub peers: usize,
    pub samples: usize,
    pub skip: Vec<String>,
    pub ref_rate: Option<f64>,
    pub out: Option<PathBuf>,
    pub strict: bool,
    pub keep: bool,
    /// `--wrk`: the cross-check flow (bench generator and wrk back to back on one pair).
    pub wrk: bool,
    pub wrk_bin: Option<String>,
    /// Unanswered requests the streaming inlet's WebSocket client keeps in flight at most.
    pub inlet_window: usize,
    /// Requests per NDJSON body of the streaming inlet.
    pub inlet_lines: usize,
}

pub const USAGE: &str = "usage: cargo bench --bench load -- [options]
  --quick               CI smoke run: 1 s per level, levels 1,32, 100k stored messages
  --levels 1,8,32,128   connection counts of the send load
  --duration SECS       seconds per level (default 30, quick 1): stalls that come every
                        few seconds (WAL checkpoints, writeback) need long levels
  --samples N           requests per latency series (e2e, MCP, store queries)
  --store-messages N    messages in the store-at-scale phase (default 1000000)
  --peers N             WebSocket peers in the connected-peers phase (default 1000)
  --skip a,b            skip phases: send,inlet,e2e,mcp,peers,store,unread
  --inlet-window N      the inlet phase's WebSocket keeps at most N requests unanswered
                        (default 512)
  --inlet-lines N       requests per NDJSON body in the inlet phase (default 1000)
  --ref-rate R          delivered msgs/s of the Python reference measured by hand in the
                        same session: the throughput target becomes 20 x R
  --out FILE            also write the report (markdown) to FILE
  --strict              exit 1 when a target is missed (default: only when a phase fails)
  --keep                keep the temporary data dirs and logs (path printed)
  --target URL          only drive POST URL/message:send (an existing node, e.g. the
                        Python reference) at the levels, and report
  --count URL           with --target: count deliveries on this node's /status
  --pids P1,P2          with --target: also report the CPU time of these processes
  --wrk                 cross-check: start nodes A and B, and drive each level (default
                        1,32) first with the bench generator, then with wrk -t1 and
                        benches/wrk/send.lua; print both and the ratios
  --wrk-bin PATH        the wrk binary (default: wrk on PATH)
  --node-arg ARG        pass ARG to every node started (repeatable), e.g.
                        --node-arg --no-sign-frames to measure without frame signatures
  --node-bin PATH       start the nodes from this binary instead of the one cargo built
                        for the bench (e.g. target/x86_64-unknown-linux-musl/dist/acp-relay,
                        the released build), to compare builds on the same machine";

pub fn parse_opts() -> Res<Opts> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` passes `--bench` to harness-less benches.
    args.retain(|a| a != "--bench");
    let mut o = Opts {
        quick: false,
        levels: vec![1, 8, 32, 128],
        // 30 s: at 5 s a level held too few of the node's periodic stalls to show its tail.
        duration: Duration::from_secs(30),
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
        wrk: false,
        wrk_bin: None,
        inlet_window: 512,
        inlet_lines: 1000,
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
            "--wrk" => o.wrk = true,
            "--wrk-bin" => o.wrk_bin = Some(val()?),
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
            "--inlet-window" => {
                o.inlet_window = val()?
                    .parse::<usize>()
                    .map_err(|e| format!("--inlet-window: {e}"))?
                    .max(1)
            }
            "--inlet-lines" => {
                o.inlet_lines = val()?
                    .parse::<usize>()
                    .map_err(|e| format!("--inlet-lines: {e}"))?
                    .clamp(1, 10_000)
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
            "--node-bin" => {
                let path = val()?;
                if !std::path::Path::new(&path).is_file() {
                    return Err(format!("--node-bin: no file {path}"));
                }
                let _ = crate::OTHER_NODE_BIN.set(path);
            }
            "--node-arg" => {
                let arg = val()?;
                crate::procs::NODE_ARGS
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(arg);
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
    if o.wrk && !o.quick {
        o.levels = vec![1, 32];
    }
    o.levels = levels.unwrap_or(o.levels);
    o.duration = duration.unwrap_or(o.duration);
    o.store_messages = store.unwrap_or(o.store_messages).max(1000);
    o.samples = samples.unwrap_or(o.samples).max(10);
    Ok(o)
}

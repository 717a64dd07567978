//! `--wrk`: the cross-check. On one pair of nodes (B dialling A, as the full run sets them up)
//! every level is driven twice back to back with the same connection count and duration:
//! first by the bench's own generator, then by `wrk -t1` with `benches/wrk/send.lua` (the
//! same request). Both rows go into one table with the ratios, so a generator that hides a
//! tail or caps the rate shows up as a disagreement with an independent tool.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::Res;
use crate::generator::{Lat, Level, messages_received, run_level, settle_delivered, warm_up};
use crate::http::send_body;
use crate::opts::Opts;
use crate::procs::{cpu_secs, machine_busy_secs, spawn_pair};
use crate::report::{Report, fmt_rate, fmt_us, level_table, machine, ratio};

/// The Lua script wrk runs; it is the one docs/benchmarks.md gives for running wrk by hand.
pub const WRK_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/wrk/send.lua");

/// The figures of one wrk run, from the `WRK ...` line the script's `done()` prints.
#[derive(Debug, Default)]
struct WrkOut {
    requests: u64,
    duration_us: u64,
    non2xx: u64,
    socket_errors: u64,
    timeouts: u64,
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
    max_us: f64,
}

/// Parses the `WRK key=value ...` line; `None` when wrk printed none (old wrk, bad script).
fn parse_wrk(stdout: &str) -> Option<WrkOut> {
    let line = stdout.lines().find(|l| l.starts_with("WRK "))?;
    let mut o = WrkOut::default();
    for kv in line.split_whitespace().skip(1) {
        let (k, v) = kv.split_once('=')?;
        let n: u64 = v.parse().ok()?;
        match k {
            "requests" => o.requests = n,
            "duration_us" => o.duration_us = n,
            "non2xx" => o.non2xx = n,
            "connect" | "read" | "write" => o.socket_errors += n,
            "timeout" => o.timeouts = n,
            "p50_us" => o.p50_us = n as f64,
            "p99_us" => o.p99_us = n as f64,
            "p999_us" => o.p999_us = n as f64,
            "max_us" => o.max_us = n as f64,
            _ => {}
        }
    }
    Some(o)
}

/// One wrk level against `url`, with deliveries counted on `count` and the CPU of `procs`
/// recorded as for the bench's own levels. wrk's CPU is sampled every 50 ms while it runs
/// (the last sample before it exits), so it shows in the "gen" column.
async fn wrk_level(
    wrk: &str,
    url: &str,
    count: &str,
    procs: &[(String, u32)],
    conns: usize,
    dur: Duration,
) -> Res<Level> {
    let before = messages_received(count).await?;
    let busy0 = machine_busy_secs();
    let cpu0: Vec<f64> = procs.iter().map(|(_, p)| cpu_secs(*p)).collect();
    let secs = dur.as_secs_f64().ceil().max(1.0) as u64;
    // --timeout well above any latency we expect: wrk drops a response slower than its
    // timeout from the latency histogram (it counts it as a timeout instead).
    let mut child = tokio::process::Command::new(wrk)
        .args(["-t1", &format!("-c{conns}"), &format!("-d{secs}s")])
        .args(["--timeout", "30s", "-s", WRK_SCRIPT, url])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {wrk}: {e} (apt-get install wrk, or --wrk-bin PATH)"))?;
    let pid = child.id().unwrap_or(0);
    let mut cpu_gen = 0.0;
    let hard_stop = tokio::time::Instant::now() + Duration::from_secs(secs + 60);
    let status = loop {
        if let Some(st) = child.try_wait().map_err(|e| format!("wrk: {e}"))? {
            break st;
        }
        if tokio::time::Instant::now() > hard_stop {
            let _ = child.kill().await;
            return Err(format!("wrk did not finish within {} s", secs + 60));
        }
        cpu_gen = cpu_secs(pid).max(cpu_gen);
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let busy1 = machine_busy_secs();
    let cpu1: Vec<f64> = procs.iter().map(|(_, p)| cpu_secs(*p)).collect();
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| format!("wrk: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let w = parse_wrk(&stdout).ok_or_else(|| {
        format!(
            "wrk ({status}) printed no WRK line\n{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    let secs = w.duration_us as f64 / 1e6;
    let cpu_servers: f64 = cpu1.iter().zip(&cpu0).map(|(b, a)| b - a).sum();
    let mut level = Level {
        conns,
        secs,
        ok: w.requests.saturating_sub(w.non2xx),
        errors: w.non2xx + w.socket_errors + w.timeouts,
        first_error: (w.non2xx + w.socket_errors + w.timeouts > 0).then(|| {
            format!(
                "{} non-2xx, {} socket errors, {} timeouts",
                w.non2xx, w.socket_errors, w.timeouts
            )
        }),
        lat: Lat {
            n: w.requests,
            p50: w.p50_us,
            p99: w.p99_us,
            p999: w.p999_us,
            max: w.max_us,
        },
        cpu_gen,
        cpu_other: ((busy1 - busy0) - cpu_gen - cpu_servers).max(0.0),
        cpu_procs: procs
            .iter()
            .zip(cpu0.iter().zip(&cpu1))
            .map(|((n, _), (a, b))| (n.clone(), b - a))
            .collect(),
        connects: conns as u64,
        ..Level::default()
    };
    settle_delivered(&mut level, count, before).await?;
    Ok(level)
}

/// The `--wrk` flow: start the pair, warm B up, then per level the bench generator and wrk
/// back to back, and the table with both.
pub async fn wrk_mode(o: &Opts, root: &Path) -> Res<Report> {
    let mut r = Report::default();
    let logdir = root.join("logs");
    std::fs::create_dir_all(&logdir).map_err(|e| e.to_string())?;
    let wrk = o.wrk_bin.clone().unwrap_or_else(|| "wrk".to_owned());
    let version = tokio::process::Command::new(&wrk)
        .arg("--version")
        .output()
        .await
        .map_err(|e| format!("cannot run {wrk}: {e} (apt-get install wrk, or --wrk-bin PATH)"))?;
    let version = String::from_utf8_lossy(&version.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .to_owned();
    r.line("# acp-relay load benchmark, --wrk cross-check");
    r.line(format!("\nmachine: {}", machine()));
    r.line(format!(
        "levels {:?}; {} s per level; each level: the bench generator, then `{wrk} -t1 -cN -dSECS --timeout 30s -s benches/wrk/send.lua` ({version})",
        o.levels,
        o.duration.as_secs_f64(),
    ));
    let busy0 = machine_busy_secs();
    tokio::time::sleep(Duration::from_secs(1)).await;
    r.line(format!(
        "background load before the run (other processes on this machine): {:.0}% of one core",
        100.0 * (machine_busy_secs() - busy0)
    ));
    eprintln!("starting nodes A and B (B dials A) ...");
    let (a, b) = spawn_pair(root, &logdir).await?;
    let body = send_body(None);
    warm_up(&b.url, &body, 300).await?;
    let procs = vec![("B".to_owned(), b.pid), ("A".to_owned(), a.pid)];
    let mut rows = Vec::new();
    for &c in &o.levels {
        // On an error the nodes are killed when `a` and `b` drop (kill_on_drop).
        let lb = run_level(&b.url, &body, Some(&a.url), &procs, c, o.duration).await?;
        let lw = wrk_level(&wrk, &b.url, &a.url, &procs, c, o.duration).await?;
        eprintln!(
            "  {c:>3} conns: bench {:>8.0}/s p50 {:>9} p99 {:>9} | wrk {:>8.0}/s p50 {:>9} p99 {:>9}",
            lb.accepted_rate(),
            fmt_us(lb.lat.p50),
            fmt_us(lb.lat.p99),
            lw.accepted_rate(),
            fmt_us(lw.lat.p50),
            fmt_us(lw.lat.p99),
        );
        rows.push(("bench generator".to_owned(), lb));
        rows.push(("wrk".to_owned(), lw));
    }
    a.stop().await;
    b.stop().await;
    level_table(
        &mut r,
        "POST /message:send on node B (forwarded to A): bench generator vs wrk",
        &rows,
    );
    r.line("\n| conns | req/s wrk / bench | p50 wrk / bench | p99 wrk / bench | p99.9 wrk / bench | max wrk / bench |");
    r.line("|---:|---:|---:|---:|---:|---:|");
    for pair in rows.chunks(2) {
        if let [(_, lb), (_, lw)] = pair {
            r.line(format!(
                "| {} | {} / {} = {} | {} | {} | {} | {} |",
                lb.conns,
                fmt_rate(lw.accepted_rate()),
                fmt_rate(lb.accepted_rate()),
                ratio(lw.accepted_rate(), lb.accepted_rate()),
                ratio(lw.lat.p50, lb.lat.p50),
                ratio(lw.lat.p99, lb.lat.p99),
                ratio(lw.lat.p999, lb.lat.p999),
                ratio(lw.lat.max, lb.lat.max),
            ));
        }
    }
    Ok(r)
}

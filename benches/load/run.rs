//! The two flows: `full_mode` (every phase, with the baseline) and `target_mode` (only the
//! send levels against an existing node).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::generator::{Level, run_level, warm_up};
use crate::http::{get_json, send_body};
use crate::opts::Opts;
use crate::procs::{machine_busy_secs, spawn_baseline, spawn_pair, status_field};
use crate::report::{Report, fmt_mb, fmt_rate, fmt_us, level_table, machine, ratio};
use crate::scenarios::inlet::Way;
use crate::scenarios::{
    e2e::e2e_latency, inlet::inlet_throughput, mcp::mcp_latency, peers::many_peers,
    store::store_at_scale,
};
use crate::{Res, node_bin};

pub async fn target_mode(o: &Opts) -> Res<Report> {
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

/// The inlet phase's table: every way in with its rate and the ratio to `/message:send` on
/// one connection and at its best level.
fn inlet_table(r: &mut Report, ways: &[Way]) {
    let http = |one: bool| {
        ways.iter()
            .filter(|w| w.name == "POST /message:send" && (w.shape == "1 conn") == one)
            .map(Way::delivered_rate)
            .fold(0.0, f64::max)
    };
    let (one, best) = (http(true), http(true).max(http(false)));
    r.line("\n### Ways in: the streaming inlet against /message:send (node B sending to node A, back to back)\n");
    r.line("| way in | driven with | accepted/s | delivered/s | errors | lost | B CPU per message | CPU B / A (1 core = 100%) | ratio to /message:send 1 conn | ratio to /message:send best |");
    r.line("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for w in ways {
        r.line(format!(
            "| {} | {} | {} | {} | {} | {} | {:.1} µs | {:.0}% / {:.0}% | {} | {} |",
            w.name,
            w.shape,
            fmt_rate(w.accepted_rate()),
            fmt_rate(w.delivered_rate()),
            w.errors,
            w.lost,
            w.cpu_b_per_msg(),
            100.0 * w.cpu_b / w.secs,
            100.0 * w.cpu_a / w.secs,
            ratio(w.delivered_rate(), one),
            ratio(w.delivered_rate(), best)
        ));
    }
    for w in ways {
        if let Some(e) = &w.first_error {
            r.line(format!(
                "\n{} ({}), first error: {}",
                w.name,
                w.shape,
                e.chars().take(300).collect::<String>()
            ));
        }
    }
}

pub async fn full_mode(o: &Opts, root: &Path) -> Res<Report> {
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
        node_bin()
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
    let _ = tokio::process::Command::new(node_bin())
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .await;
    eprintln!("starting the baseline and nodes A and B (B dials A) ...");
    let base = spawn_baseline(&logdir).await?;
    let (a, b) = spawn_pair(root, &logdir).await?;
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
    let inlet = if skip("inlet") {
        None
    } else {
        eprintln!("streaming inlet against /message:send ...");
        let most = o.levels.iter().copied().max().unwrap_or(1);
        let conns: Vec<usize> = if most > 1 { vec![1, most] } else { vec![1] };
        let ways = inlet_throughput(
            &b.url,
            &a.url,
            (b.pid, a.pid),
            &body,
            &conns,
            o.inlet_window,
            o.inlet_lines,
            o.duration,
        )
        .await?;
        for w in &ways {
            eprintln!(
                "  {:<32} {:<26} accepted {:>8.0}/s delivered {:>8.0}/s errors {} lost {}",
                w.name,
                w.shape,
                w.accepted_rate(),
                w.delivered_rate(),
                w.errors,
                w.lost
            );
        }
        Some(ways)
    };
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
    // The e2e, MCP and query series below are one request at a time, uncorrected, so they
    // are set against the baseline's raw 1-connection latencies.
    let base1 = levels
        .iter()
        .find(|(w, l)| w == "baseline" && l.conns == 1)
        .map(|(_, l)| l.raw.unwrap_or(l.lat))
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
    if let Some(ways) = &inlet {
        inlet_table(&mut r, ways);
    }
    r.line("\n### Latency, memory, start-up (ratio = ours / baseline of the same run)\n");
    r.line("| measurement | acp-relay | baseline | ratio |");
    r.line("|---|---:|---:|---:|");
    let bp50 = base1.p50;
    let bp99 = base1.p99;
    // A row of p50 / p99 beside the baseline's one-connection POST and their ratios.
    let vs_baseline = |label: String, p50: f64, p99: f64| {
        format!(
            "| {label} | {} / {} | {} / {} | {} / {} |",
            fmt_us(p50),
            fmt_us(p99),
            fmt_us(bp50),
            fmt_us(bp99),
            ratio(p50, bp50),
            ratio(p99, bp99)
        )
    };
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
        r.line(vs_baseline(
            "the same sends' POST latency on B, p50 / p99".into(),
            e.post.p50,
            e.post.p99,
        ));
    }
    if let Some(m) = &mcp {
        r.line(vs_baseline(
            format!(
                "MCP acp_send (on B, Streamable HTTP, rmcp client), p50 / p99 ({} calls)",
                m.send.n
            ),
            m.send.p50,
            m.send.p99,
        ));
        r.line(vs_baseline(
            format!(
                "MCP acp_receive (on A, cursor + context filter, returns the message just sent; {} received), p50 / p99",
                m.received
            ),
            m.receive.p50,
            m.receive.p99,
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
        // The filters' target is 5 ms; full-text searches (`q=`) have their own, 10 ms.
        for (search, bound_us, what) in [(false, 5000.0, "query"), (true, 10_000.0, "search")] {
            let series: Vec<_> = s
                .queries
                .iter()
                .filter(|(l, _, _)| l.contains("q=") == search)
                .collect();
            if series.is_empty() {
                continue;
            }
            let worst = series
                .iter()
                .map(|(l, q, _)| (l.clone(), q.p99))
                .fold((String::new(), 0.0), |a, b| if b.1 > a.1 { b } else { a });
            let over: Vec<String> = series
                .iter()
                .filter(|(_, q, _)| q.p99 > bound_us)
                .map(|(l, q, _)| format!("{l} {}", fmt_us(q.p99)))
                .collect();
            r.target(
                &format!(
                    "{} stored: every {what} p99 ≤ {} ms",
                    fmt_rate(s.n as f64),
                    bound_us / 1000.0
                ),
                over.is_empty(),
                if over.is_empty() {
                    format!("worst {} {}", worst.0, fmt_us(worst.1))
                } else {
                    format!("{} over: {}", over.len(), over.join("; "))
                },
            );
        }
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
    if let Some(ways) = &inlet {
        let best_http = ways
            .iter()
            .filter(|w| w.name == "POST /message:send")
            .map(Way::delivered_rate)
            .fold(0.0, f64::max);
        if let Some(ws) = ways.iter().find(|w| w.name.starts_with("WebSocket")) {
            r.target(
                "the streaming inlet is the fastest way in (delivered/s ≥ the best /message:send level)",
                ws.delivered_rate() >= best_http && ws.errors == 0 && ws.lost == 0,
                format!(
                    "{} vs {} ({}), {} errors, {} lost",
                    fmt_rate(ws.delivered_rate()),
                    fmt_rate(best_http),
                    ratio(ws.delivered_rate(), best_http),
                    ws.errors,
                    ws.lost
                ),
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

//! The markdown report: number formatting, the level table, the targets.

use crate::generator::Level;

pub fn fmt_us(us: f64) -> String {
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

pub fn fmt_rate(r: f64) -> String {
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

pub fn fmt_mb(kb: u64) -> String {
    format!("{:.1} MB", kb as f64 / 1024.0)
}

pub fn ratio(ours: f64, base: f64) -> String {
    if base > 0.0 && ours > 0.0 {
        format!("{:.2}×", ours / base)
    } else {
        "–".into()
    }
}

#[derive(Default)]
pub struct Report {
    pub lines: Vec<String>,
    pub targets: Vec<(String, bool, String)>,
}

impl Report {
    pub fn line(&mut self, s: impl Into<String>) {
        let s = s.into();
        println!("{s}");
        self.lines.push(s);
    }

    pub fn target(&mut self, what: &str, met: bool, detail: String) {
        self.targets.push((what.to_owned(), met, detail));
    }
}

pub fn machine() -> String {
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

pub fn cpu_cell(l: &Level) -> String {
    let mut parts = vec![format!("gen {:.0}%", 100.0 * l.cpu_gen / l.secs)];
    for (n, c) in &l.cpu_procs {
        parts.push(format!("{n} {:.0}%", 100.0 * c / l.secs));
    }
    parts.push(format!("other {:.0}%", 100.0 * l.cpu_other / l.secs));
    parts.join(", ")
}

pub fn level_table(r: &mut Report, title: &str, rows: &[(String, Level)]) {
    r.line(format!("\n### {title}\n"));
    r.line("| server | conns | accepted/s | delivered/s | p50 | p99 | p99.9 | max | raw p50 / p99 / p99.9 | errors | lost | CPU (1 core = 100%) |");
    r.line("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for (who, l) in rows {
        r.line(format!(
            "| {who} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            l.conns,
            fmt_rate(l.accepted_rate()),
            l.delivered_rate().map_or("–".into(), fmt_rate),
            fmt_us(l.lat.p50),
            fmt_us(l.lat.p99),
            fmt_us(l.lat.p999),
            fmt_us(l.lat.max),
            l.raw.map_or("–".into(), |w| format!(
                "{} / {} / {}",
                fmt_us(w.p50),
                fmt_us(w.p99),
                fmt_us(w.p999)
            )),
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
    r.line(
        "\np50 … max: latency corrected for coordinated omission as wrk 4 corrects its own \
         (each answer slower than the mean per-connection interval back-fills the requests a \
         steady client would have sent meanwhile); raw: the requests' own latencies, \
         uncorrected (what a closed loop alone measures, and hides stalls in).",
    );
}

pub fn print_targets(r: &mut Report) -> bool {
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

//! Logs that an MCP host captures (stderr into a file or a pipe) are plain text: no ANSI
//! colour codes unless stderr is a terminal; `ACP_LOG` picks levels per module.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

/// Starts a node with `ACP_LOG=acp_log` and stderr on a pipe, and returns its log lines up to
/// "node ready".
fn start_lines(acp_log: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_acp-relay"))
        .args([
            "serve",
            "--port",
            "0",
            "--ws-host",
            "127.0.0.1",
            "--advertise-host",
            "127.0.0.1",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .env("ACP_LOG", acp_log)
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start acp-relay");
    let stderr = child.stderr.take().unwrap();
    let mut seen = Vec::new();
    // Bounded: the node logs a handful of lines at start; "node ready" is among the first.
    for line in BufReader::new(stderr).lines().take(50) {
        let line = line.unwrap();
        let ready = line.contains("node ready");
        seen.push(line);
        if ready {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        seen.iter().any(|l| l.contains("node ready")),
        "the node logged its start: {seen:?}"
    );
    seen
}

#[test]
fn logs_to_a_pipe_carry_no_colour_codes() {
    for line in &start_lines("info") {
        assert!(!line.contains('\u{1b}'), "escape code in {line:?}");
    }
}

#[test]
fn acp_log_sets_levels_per_module() {
    // Below the default level too: the store logs that it opened at debug.
    let debug = start_lines("info,acp_relay::node::store=debug");
    assert!(debug.iter().any(|l| l.contains("store open")), "{debug:?}");
    assert!(
        !start_lines("info").iter().any(|l| l.contains("store open")),
        "debug lines are off by default"
    );
    // A fresh data dir: the node logs that it created its identity (acp_relay::node), then
    // that it is ready (acp_relay::server).
    let all = start_lines("info");
    assert!(
        all.iter().any(|l| l.contains("created Ed25519 identity")),
        "{all:?}"
    );
    let quieter = start_lines("info,acp_relay::node=warn");
    assert!(
        !quieter
            .iter()
            .any(|l| l.contains("created Ed25519 identity")),
        "acp_relay::node is at warn: {quieter:?}"
    );
}

//! An MCP host, a launcher (`npx`, `uvx`) or a service manager stops `acp-relay mcp` with
//! SIGTERM while its stdin is still open. The node must shut down and the process exit,
//! not wait for stdin (tokio reads it on a blocking thread that a pending read keeps busy).

#![cfg(unix)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn sigterm_stops_mcp_mode_while_stdin_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_acp-relay"))
        .args([
            "mcp",
            "--name",
            "sigterm",
            "--port",
            "0",
            "--ws-host",
            "127.0.0.1",
            "--advertise-host",
            "127.0.0.1",
        ])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("ACP_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped()) // held open for the whole test
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start acp-relay mcp");
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    // Bounded: "node ready" is among the first few lines.
    for _ in 0..50 {
        line.clear();
        if stderr.read_line(&mut line).unwrap() == 0 || line.contains("node ready") {
            break;
        }
    }
    assert!(line.contains("node ready"), "node started: {line}");

    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(kill.success());

    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if start.elapsed() > Duration::from_secs(15) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("acp-relay mcp still running 15 s after SIGTERM (stdin open)");
    };
    assert!(status.success(), "graceful exit after SIGTERM: {status}");
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut stderr, &mut rest);
    assert!(
        rest.contains("shutting down"),
        "logged its shutdown: {rest}"
    );
    drop(child.stdin.take());
}

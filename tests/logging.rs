//! Logs that an MCP host captures (stderr into a file or a pipe) are plain text: no ANSI
//! colour codes unless stderr is a terminal.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[test]
fn logs_to_a_pipe_carry_no_colour_codes() {
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
        .env("ACP_LOG", "info")
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
    for line in &seen {
        assert!(!line.contains('\u{1b}'), "escape code in {line:?}");
    }
}

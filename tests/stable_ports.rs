//! A second `acp-relay mcp` on taken ports moves to free ones; it must take the same ones
//! again at its next start, so the link a peer dialled stays valid (issue 13: the same name
//! and data dir gave `…:45011/tok_…` and then `…:41995/tok_…`).

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Starts `acp-relay mcp` asking for `port`/`http_port`, returns its link once it is up.
fn start(data: &Path, port: u16, http_port: u16) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_acp-relay"))
        .args(["mcp", "--name", "stable", "--ws-host", "127.0.0.1"])
        .args(["--advertise-host", "127.0.0.1"])
        .args([
            "--port",
            &port.to_string(),
            "--http-port",
            &http_port.to_string(),
        ])
        .arg("--data-dir")
        .arg(data)
        .env("ACP_LOG", "warn")
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start acp-relay mcp");
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    let mut line = String::new();
    // Bounded by the number of lines, not by time: the link line comes after a few warnings.
    for _ in 0..100 {
        line.clear();
        if stderr.read_line(&mut line).unwrap() == 0 {
            break;
        }
        seen.push_str(&line);
        if let Some(link) = line.trim().strip_prefix("acp-relay: link ") {
            // Keep draining stderr so the node never blocks on a full pipe.
            std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
            return (child, link.to_owned());
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("no link line from acp-relay mcp:\n{seen}");
}

/// Closes stdin (the host going away) and waits for a clean exit, releasing ports and lock.
fn stop(mut child: Child) {
    drop(child.stdin.take());
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("acp-relay mcp did not exit 30 s after stdin closed");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn port_of(link: &str) -> u16 {
    let rest = link.strip_prefix("acp://127.0.0.1:").expect(link);
    rest.split('/').next().unwrap().parse().expect(link)
}

#[test]
fn a_node_that_moved_keeps_its_link_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // The "default" ports, taken by another instance (here: the test).
    let peer = TcpListener::bind("127.0.0.1:0").unwrap();
    let http = TcpListener::bind("127.0.0.1:0").unwrap();
    let (asked, asked_http) = (
        peer.local_addr().unwrap().port(),
        http.local_addr().unwrap().port(),
    );

    let (child, first) = start(&data, asked, asked_http);
    stop(child);
    assert_ne!(port_of(&first), asked, "moved off the taken port: {first}");
    let remembered = std::fs::read_to_string(data.join("ports.json")).expect("ports.json");
    assert!(
        remembered.contains(&port_of(&first).to_string()),
        "{remembered}"
    );

    let (child, second) = start(&data, asked, asked_http);
    stop(child);
    assert_eq!(second, first, "same link at the next start");

    // The remembered port taken as well: the node still starts, on another free port, and
    // remembers that one.
    let squatter = TcpListener::bind(("127.0.0.1", port_of(&first))).unwrap();
    let (child, third) = start(&data, asked, asked_http);
    stop(child);
    assert_ne!(port_of(&third), port_of(&first));
    assert_ne!(port_of(&third), asked);
    drop(squatter);
    let (child, fourth) = start(&data, asked, asked_http);
    stop(child);
    assert_eq!(fourth, third, "the new ports are the remembered ones now");

    // The asked ports free again and no file: the node is on them, and nothing is kept.
    drop((peer, http));
    std::fs::remove_file(data.join("ports.json")).unwrap();
    let (child, fifth) = start(&data, asked, asked_http);
    stop(child);
    assert_eq!(port_of(&fifth), asked);
    assert!(!data.join("ports.json").exists());
}

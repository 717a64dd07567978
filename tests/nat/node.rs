//! A real `acp-relay` process in a network namespace, and its REST API from inside that
//! namespace: what the namespace tests (NAT traversal, LAN discovery) start and talk to.

#![allow(dead_code)] // each test file uses its own part

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::net::http;

/// Every node's peer port and HTTP port, inside its own namespace.
pub const PEER_PORT: u16 = 7801;
pub const HTTP_PORT: u16 = 7901;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_acp-relay")
}

/// A process started in a namespace; stopped (by its PID) on drop.
pub struct Proc {
    child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn start(ns: &str, args: &[&str], log: PathBuf) -> Proc {
        let out = std::fs::File::create(&log).unwrap();
        // `ip netns exec` execs the program, so the child's PID is the program's.
        let child = Command::new("ip")
            .args(["netns", "exec", ns, bin()])
            .args(args)
            .env("ACP_LOG", "info,iroh=warn,noq=warn,iroh_relay=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .expect("start acp-relay");
        Proc { child, log }
    }

    /// SIGTERM (a graceful stop), then wait for the exit.
    pub fn stop(mut self) {
        let pid = self.child.id() as i32;
        // SAFETY: signalling our own child by its PID.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
/// The last lines of a log, for failure messages.
pub fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

pub fn wait_for_log(log: &Path, what: &str, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if std::fs::read_to_string(log).is_ok_and(|t| t.contains(what)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "no {what:?} in {} within {secs} s:\n{}",
        log.display(),
        tail(log)
    );
}

/// A running node in a namespace.
pub struct Node {
    pub ns: String,
    pub name: String,
    pub proc: Option<Proc>,
}

impl Node {
    pub fn get(&self, path: &str) -> (u16, Value) {
        http(&self.ns, "GET", HTTP_PORT, path, None)
    }

    pub fn post(&self, path: &str, body: Value) -> (u16, Value) {
        http(&self.ns, "POST", HTTP_PORT, path, Some(&body))
    }

    pub fn log(&self) -> String {
        self.proc.as_ref().map(|p| tail(&p.log)).unwrap_or_default()
    }

    /// Polls `check` every 100 ms for up to `secs`; on timeout, fails with the node's log.
    pub fn wait(&self, secs: u64, what: &str, mut check: impl FnMut(&Node) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if check(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "{}: timed out waiting for {what}; log:\n{}",
            self.name,
            self.log()
        );
    }

    /// The `/peers` entry for `id`.
    pub fn peer(&self, id: &str) -> Value {
        self.get(&format!("/peers/{id}")).1
    }

    /// Connects to `link`; returns the peer id once connected.
    pub fn connect(&self, link: &str, secs: u64) -> String {
        let (status, r) = self.post("/peers/connect", json!({"link": link}));
        assert_eq!(status, 200, "{r}");
        let id = r["peer_id"].as_str().unwrap().to_owned();
        self.wait(secs, "the connection", |n| n.peer(&id)["connected"] == true);
        id
    }

    pub fn send(&self, text: &str, context: &str) -> Value {
        let (status, r) = self.post(
            "/message:send",
            json!({"role": "user", "text": text, "context_id": context}),
        );
        assert_eq!(status, 200, "{}: send: {r}", self.name);
        r
    }

    pub fn has_message(&self, context: &str, text: &str) -> bool {
        self.get(&format!("/context/{context}/messages"))
            .1
            .to_string()
            .contains(text)
    }

    /// Stops the process gracefully (its data dir stays).
    pub fn stop(&mut self) {
        if let Some(p) = self.proc.take() {
            p.stop();
        }
    }
}

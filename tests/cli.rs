//! The CLI client (`acp-relay link|connect|send|recv|watch|peers|status|tasks|task`) run as
//! the real binary against real nodes on loopback: a whole conversation and a delegated task
//! through it, live events from `watch`, finding a node by name, and every failure as one
//! line with its exit code (1 node refused, 2 bad arguments, 3 no node, 4 token).

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::{Lab, TestNode, eventually, start_with};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

/// What one CLI run printed and how it ended.
#[derive(Debug)]
struct Run {
    code: i32,
    out: String,
    err: String,
}

impl Run {
    fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "CLI failed: {self:?}");
        &self.out
    }

    fn json(&self) -> Value {
        serde_json::from_str(self.ok()).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }

    /// A failure: its exit code and exactly one line on stderr, nothing on stdout.
    fn failed(&self, code: i32) -> &str {
        assert_eq!(self.code, code, "{self:?}");
        assert_eq!(self.out, "", "{self:?}");
        assert_eq!(self.err.lines().count(), 1, "one line: {self:?}");
        assert!(self.err.starts_with("acp-relay: "), "{self:?}");
        &self.err
    }
}

/// A CLI command with the environment of a clean shell: no ACP_* variables leaking in from
/// the machine, a throwaway data root so no real node's files are found.
fn command(home: &Path, args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_acp-relay"));
    cmd.args(args)
        .env_remove("ACP_NODE")
        .env_remove("ACP_NAME")
        .env_remove("ACP_API_TOKEN")
        .env_remove("ACP_API_TOKEN_FILE")
        .env_remove("ACP_DATA_DIR")
        .env("HOME", home)
        .env("XDG_DATA_HOME", home.join("data"))
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

async fn cli(home: &Path, args: &[&str]) -> Run {
    let out = tokio::time::timeout(Duration::from_secs(60), command(home, args).output())
        .await
        .expect("the CLI finishes")
        .expect("the CLI runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        out: String::from_utf8_lossy(&out.stdout).into_owned(),
        err: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `cli` against `node`.
async fn on(node: &TestNode, home: &Path, args: &[&str]) -> Run {
    let mut all = vec!["--node", node.url.as_str()];
    all.splice(0..0, args.iter().copied());
    cli(home, &all).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_conversation_and_a_delegated_task_through_the_cli() {
    let lab = Lab::new();
    let home = lab.root.path().join("home");
    let alice = lab.start("alice").await;
    let bob = lab.start("bob").await;

    let link = on(&alice, &home, &["link"]).await.ok().trim().to_owned();
    assert_eq!(link, alice.link());
    let connected = on(&bob, &home, &["connect", &link]).await;
    assert!(
        connected.ok().starts_with("connected to alice (peer_"),
        "{connected:?}"
    );

    let sent = on(
        &bob,
        &home,
        &[
            "send",
            "the build is green",
            "--context",
            "ctx_release",
            "--data",
            r#"{"commit":"abc123"}"#,
            "--file",
            "https://example.invalid/report.txt",
        ],
    )
    .await;
    assert!(sent.ok().starts_with("sent msg_"), "{sent:?}");

    // `recv` for a person: a header and one aligned row per message.
    // Polled (bounded): the message is on its way from bob's node.
    let mut shown = String::new();
    for _ in 0..200 {
        shown = on(&alice, &home, &["recv", "--wait", "5"])
            .await
            .ok()
            .to_owned();
        if shown.contains("the build is green") {
            break;
        }
    }
    let lines: Vec<&str> = shown.lines().collect();
    assert!(
        lines[0].starts_with("TIME") && lines[0].contains("FROM"),
        "{shown}"
    );
    assert!(
        lines[1].contains("bob") && lines[1].contains("ctx_release"),
        "{shown}"
    );
    // It marked them read: the next recv has nothing, and --json says so for a script.
    let again = on(&alice, &home, &["recv", "--json"]).await.json();
    assert_eq!(
        again["messages"].as_array().map(Vec::len),
        Some(0),
        "{again}"
    );

    let peers = on(&alice, &home, &["peers"]).await;
    assert!(
        peers
            .ok()
            .lines()
            .any(|l| l.contains("bob") && l.contains("connected")),
        "{peers:?}"
    );
    let peers_json = on(&alice, &home, &["peers", "--json"]).await.json();
    assert_eq!(peers_json["peers"][0]["name"], "bob", "{peers_json}");
    let status = on(&alice, &home, &["status"]).await;
    assert!(
        status.ok().contains("name:     alice") && status.out.contains("1 received"),
        "{status:?}"
    );

    // A task bob hands to alice, which alice completes with a result.
    let created = on(
        &bob,
        &home,
        &[
            "task",
            "create",
            "summarise the release notes",
            "--delegate",
            "--json",
        ],
    )
    .await
    .json();
    let task_id = created["task"]["id"].as_str().expect("task id").to_owned();
    eventually(10, "alice has the delegated task", || async {
        on(&alice, &home, &["tasks"]).await.ok().contains(&task_id)
    })
    .await;
    let working = on(
        &alice,
        &home,
        &["task", "update", &task_id, "--status", "working"],
    )
    .await;
    assert!(working.ok().contains("working"), "{working:?}");
    let done = on(
        &alice,
        &home,
        &[
            "task",
            "update",
            &task_id,
            "--status",
            "completed",
            "--artifact",
            "three fixes, one feature",
        ],
    )
    .await;
    assert!(done.ok().contains("completed"), "{done:?}");
    eventually(
        10,
        "bob sees the task completed with its result",
        || async {
            let got = on(&bob, &home, &["task", "get", &task_id]).await;
            got.ok().contains("completed") && got.out.contains("three fixes, one feature")
        },
    )
    .await;

    // A second task, cancelled by the one who asked for it.
    let other = on(
        &bob,
        &home,
        &["task", "create", "never mind", "--delegate", "--json"],
    )
    .await
    .json();
    let other_id = other["task"]["id"].as_str().unwrap().to_owned();
    let cancel = on(&bob, &home, &["task", "cancel", &other_id]).await;
    assert_eq!(cancel.code, 0, "{cancel:?}");
    let tasks = on(&bob, &home, &["tasks", "--json"]).await.json();
    assert_eq!(tasks["tasks"].as_array().map(Vec::len), Some(2), "{tasks}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watch_prints_each_live_event_on_one_line() {
    let lab = Lab::new();
    let home = lab.root.path().join("home");
    let alice = lab.start("alice").await;
    let bob = lab.start("bob").await;
    common::connect(&bob, &alice).await;

    let mut watch = command(&home, &["watch", "--node", &alice.url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("watch starts");
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    // `watch` starts from now: send until its stream is open and shows one (bounded).
    let seen = tokio::time::timeout(Duration::from_secs(30), async {
        let mut n = 0;
        loop {
            n += 1;
            bob.send_text(&format!("ping {n}"), Value::Null).await;
            let next = tokio::time::timeout(Duration::from_millis(500), lines.next_line()).await;
            if let Ok(line) = next {
                return line.expect("read watch").expect("watch still running");
            }
        }
    })
    .await
    .expect("watch shows a live message");
    assert!(
        seen.contains("bob") && seen.contains("ping "),
        "one readable line: {seen}"
    );
    assert!(!seen.contains('{'), "a person's line, not JSON: {seen}");
    watch.start_kill().expect("stop watch");
    let _ = watch.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_is_found_by_its_name_and_its_token_by_its_data_dir() {
    let lab = Lab::new();
    let home = lab.root.path().join("home");
    // Where `acp-relay mcp --name claude-code` keeps its data with this HOME.
    let dir = home.join("data/acp-relay/claude-code");
    let mut config = lab.config("claude-code");
    config.data_dir = dir.clone();
    config.api_token = Some("a-long-enough-test-token-0001".into());
    let node = start_with(config).await;

    let status = cli(&home, &["status", "--name", "claude-code"]).await;
    assert!(status.ok().contains("name:     claude-code"), "{status:?}");
    let elsewhere = cli(&home, &["status", "--name", "vscode"]).await;
    let line = elsewhere.failed(3);
    assert!(
        line.contains("no node named \"vscode\"")
            && line.contains(&format!("claude-code ({})", node.url)),
        "{line}"
    );
    // The token file is only sent to a node on this machine, and a wrong token is exit 4.
    let wrong = cli(
        &home,
        &[
            "status",
            "--name",
            "claude-code",
            "--token",
            "not-the-token",
        ],
    )
    .await;
    assert!(wrong.failed(4).contains("ERR_UNAUTHORIZED"), "{wrong:?}");

    node.stop().await;
    let gone = cli(&home, &["status", "--name", "claude-code"]).await;
    assert!(
        gone.failed(3).contains("no node named \"claude-code\""),
        "a graceful stop withdraws the address: {gone:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_failure_is_one_line_with_its_exit_code() {
    let lab = Lab::new();
    let home = lab.root.path().join("home");
    let mut config = lab.config("guarded");
    config.api_token = Some("a-long-enough-test-token-0002".into());
    let guarded = start_with(config).await;
    let open = lab.start("open").await;

    // 3: nothing listens there.
    let port = common::free_port().to_string();
    let none = cli(&home, &["status", "--node", &port]).await;
    assert!(
        none.failed(3).contains("no node at http://127.0.0.1:"),
        "{none:?}"
    );
    // 2: the command line is wrong, before anything is sent.
    for args in [
        vec!["send", "x", "--data", "{not json", "--node", &open.url],
        vec!["send", "--node", &open.url],
        vec!["recv", "--wait=-1", "--node", &open.url],
        vec!["status", "--node", "https://127.0.0.1:1"],
    ] {
        let run = cli(&home, &args).await;
        run.failed(2);
    }
    // 1: the node refused, with its error code.
    let refused = on(&open, &home, &["send", "hello", "--peer", "peer_nobody"]).await;
    assert!(refused.failed(1).contains("ERR_"), "{refused:?}");
    let refused = on(&open, &home, &["task", "get", "task_missing"]).await;
    assert!(refused.failed(1).contains("ERR_"), "{refused:?}");
    let refused = on(&open, &home, &["connect", "acp://not a link"]).await;
    assert!(refused.failed(1).contains("ERR_"), "{refused:?}");
    // 4: no token, then the right one three ways: flag, environment, the node's data dir.
    let denied = on(&guarded, &home, &["status"]).await;
    assert!(denied.failed(4).contains("--token"), "{denied:?}");
    let token = "a-long-enough-test-token-0002";
    on(&guarded, &home, &["status", "--token", token])
        .await
        .ok();
    let by_env = command(&home, &["status", "--node", &guarded.url])
        .env("ACP_API_TOKEN", token)
        .output()
        .await
        .unwrap();
    assert!(by_env.status.success(), "{by_env:?}");
    let data_dir = guarded.dir.to_string_lossy().into_owned();
    on(&guarded, &home, &["status", "--data-dir", &data_dir])
        .await
        .ok();
}

//! `acp-relay backup | export | restore` against real nodes: a backup made while messages
//! are being sent holds every acknowledged message and passes `integrity_check`; a restore
//! into an empty data dir gives a node with the same message ids, `server_seq`, peer ids
//! and identity; a restore refuses a non-empty dir, a foreign file and a too-new schema with
//! one line each; an export parses line by line and matches `/messages`.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use common::{Lab, TestNode, connect, eventually, start_with};
use serde_json::{Value, json};

/// What one run of the binary gave: exit code, stdout, stderr.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The run failed with exactly one line on stderr; returns it.
    fn refusal(&self) -> &str {
        assert_eq!(
            self.code, 1,
            "stdout {} stderr {}",
            self.stdout, self.stderr
        );
        assert_eq!(self.stderr.lines().count(), 1, "one line: {}", self.stderr);
        assert!(!self.stderr.contains("panicked"), "{}", self.stderr);
        self.stderr.trim()
    }

    fn ok(&self) -> &str {
        assert_eq!(
            self.code, 0,
            "stdout {} stderr {}",
            self.stdout, self.stderr
        );
        &self.stdout
    }
}

async fn acp(args: &[&str]) -> Run {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_acp-relay"))
        .args(args)
        .env("ACP_LOG", "warn")
        .env_remove("ACP_DATA_DIR")
        .env_remove("ACP_NAME")
        .output()
        .await
        .expect("run acp-relay");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Every message a node's `/messages` shows, oldest first.
async fn all_messages(node: &TestNode) -> Vec<Value> {
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let (status, page) = node
            .get(&format!("/messages?limit=100&sort=asc&offset={offset}"))
            .await;
        assert_eq!(status, 200, "{page}");
        out.extend(page["messages"].as_array().unwrap().iter().cloned());
        if page["has_more"] != true {
            return out;
        }
        offset = page["next_offset"].as_u64().unwrap();
    }
}

/// What must survive a restore: id, direction, server_seq, peer and text of each message.
fn identity_of(messages: &[Value]) -> Vec<Value> {
    messages
        .iter()
        .map(|m| {
            json!([
                m["message_id"],
                m["direction"],
                m["server_seq"],
                m["peer_id"],
                m["parts"],
                m["context_id"]
            ])
        })
        .collect()
}

async fn peer_ids(node: &TestNode) -> Vec<String> {
    let (_, peers) = node.get("/peers").await;
    let mut ids: Vec<String> = peers["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

fn did_of(node: &TestNode) -> String {
    let link = node.link();
    link.split("did=").nth(1).expect("did in link").to_owned()
}

fn open_copy(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_load_holds_every_acknowledged_message() {
    let lab = Lab::new();
    let a = lab.start("alpha").await;
    let b = lab.start("beta").await;
    connect(&a, &b).await;
    // Enough pages that the copy, one page per step (`--step-pages 1`), takes hundreds of
    // steps while the sender below keeps committing.
    let body = "x".repeat(1000);
    for i in 0..200 {
        a.send_text(&format!("before {i} {body}"), json!({})).await;
    }
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let (url, acked, stop) = (a.url.clone(), acked.clone(), stop.clone());
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let resp = http
                    .post(format!("{url}/message:send"))
                    .json(&json!({"role": "user", "text": format!("during {i}")}))
                    .send()
                    .await
                    .expect("send");
                assert_eq!(resp.status().as_u16(), 200);
                let v: Value = resp.json().await.unwrap();
                acked
                    .lock()
                    .unwrap()
                    .push(v["message_id"].as_str().unwrap().to_owned());
                i += 1;
            }
        })
    };
    eventually(30, "sends flowing", || async {
        acked.lock().unwrap().len() >= 20
    })
    .await;
    let mut before: Vec<String> = all_messages(&a)
        .await
        .iter()
        .map(|m| m["message_id"].as_str().unwrap().to_owned())
        .collect();
    before.extend(acked.lock().unwrap().iter().cloned());
    let file = lab.root.path().join("alpha.backup");
    let run = acp(&[
        "backup",
        s(&file),
        "--data-dir",
        s(&a.dir),
        "--step-pages",
        "1",
    ])
    .await;
    let line = run.ok().trim().to_owned();
    let acked_by_then = acked.lock().unwrap().len();
    eventually(30, "sends go on after the backup", || async {
        acked.lock().unwrap().len() > acked_by_then
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    sender.await.unwrap();

    assert!(
        line.starts_with(&format!("backup {}: ", file.display())),
        "{line}"
    );
    assert!(
        line.contains(" bytes, ") && line.contains(" messages, "),
        "{line}"
    );
    assert!(
        line.contains(&current_schema()) && line.contains("integrity ok"),
        "{line}"
    );
    assert!(
        !Path::new(&format!("{}-wal", file.display())).exists(),
        "one self-contained file"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }
    let copy = open_copy(&file);
    let check: String = copy
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let mut stmt = copy
        .prepare("SELECT 1 FROM messages WHERE direction = 'outbound' AND message_id = ?1")
        .unwrap();
    let missing: Vec<&String> = before
        .iter()
        .filter(|id| !stmt.exists([id.as_str()]).unwrap())
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged before the backup, missing: {missing:?}"
    );
    let held: i64 = copy
        .query_row("SELECT count(*) FROM messages", [], |r| r.get(0))
        .unwrap();
    assert!(
        line.contains(&format!(" {held} messages, ")),
        "{line} vs {held}"
    );

    // FILE exists now: refused without --force, replaced with it.
    let again = acp(&["backup", s(&file), "--data-dir", s(&a.dir)]).await;
    let msg = again.refusal();
    assert!(msg.contains("exists") && msg.contains("--force"), "{msg}");
    acp(&["backup", s(&file), "--data-dir", s(&a.dir), "--force"])
        .await
        .ok();
    // A data dir without a store.
    let none = lab.root.path().join("nobody");
    let msg = acp(&[
        "backup",
        s(&lab.root.path().join("x.db")),
        "--data-dir",
        s(&none),
    ])
    .await;
    assert!(msg.refusal().contains("no store at"), "{}", msg.stderr);
    assert!(!none.exists(), "backup creates no data dir");
    // Into the data dir it copies (with --force it could have replaced the live store).
    let live = a.dir.join("node.db");
    let msg = acp(&["backup", s(&live), "--data-dir", s(&a.dir), "--force"]).await;
    assert!(
        msg.refusal().contains("inside the data dir"),
        "{}",
        msg.stderr
    );
    // A directory that does not exist for FILE.
    let msg = acp(&["backup", s(&none.join("x.db")), "--data-dir", s(&a.dir)]).await;
    assert!(msg.refusal().contains("does not exist"), "{}", msg.stderr);
}

/// Node alpha with messages both ways and a conversation with beta, and a task.
async fn alpha_with_history(lab: &Lab) -> (TestNode, TestNode) {
    let a = lab.start("alpha").await;
    let b = lab.start("beta").await;
    connect(&a, &b).await;
    for i in 0..5 {
        a.send_text(
            &format!("hello {i} from alpha"),
            json!({"context_id": "ctx-plan"}),
        )
        .await;
        b.send_text(
            &format!("answer {i} from beta"),
            json!({"context_id": "ctx-plan"}),
        )
        .await;
    }
    a.send_text("a note without a conversation", json!({}))
        .await;
    b.send_text("other talk", json!({"context_id": "ctx-other"}))
        .await;
    let (status, task) = a
        .post(
            "/tasks",
            json!({"role": "user", "text": "plan the trip", "context_id": "ctx-plan"}),
        )
        .await;
    assert_eq!(status, 201, "{task}");
    eventually(10, "alpha has beta's messages", || async {
        all_messages(&a)
            .await
            .iter()
            .filter(|m| m["direction"] == "inbound")
            .count()
            == 6
    })
    .await;
    (a, b)
}

#[tokio::test]
async fn a_restore_keeps_every_id_server_seq_peer_and_the_identity() {
    let lab = Lab::new();
    let (a, b) = alpha_with_history(&lab).await;
    let file = lab.root.path().join("alpha.backup");
    acp(&["backup", s(&file), "--data-dir", s(&a.dir)])
        .await
        .ok();
    let messages = all_messages(&a).await;
    let peers = peer_ids(&a).await;
    let did = did_of(&a);
    let (_, tasks) = a.get("/tasks").await;
    let identity = a.dir.join("identity.json");
    let old_dir = a.stop().await;
    b.stop().await;

    let target: PathBuf = lab.root.path().join("restored");
    let run = acp(&[
        "restore",
        s(&file),
        "--data-dir",
        s(&target),
        "--identity",
        s(&identity),
    ])
    .await;
    let line = run.ok().trim().to_owned();
    assert!(
        line.starts_with(&format!("restored {}", file.display())),
        "{line}"
    );
    assert!(
        line.contains(&format!("{} messages", messages.len())),
        "{line}"
    );
    assert!(
        line.contains("1 peers") && line.contains(&current_schema()),
        "{line}"
    );

    // Restoring again: the dir is not empty any more.
    let msg = acp(&["restore", s(&file), "--data-dir", s(&target)]).await;
    let msg = msg.refusal();
    assert!(
        msg.contains("is not empty") && msg.contains("node.db"),
        "{msg}"
    );

    let restored = start_with(acp_relay::Config::ephemeral("alpha", target.clone())).await;
    assert_eq!(
        identity_of(&all_messages(&restored).await),
        identity_of(&messages)
    );
    assert_eq!(peer_ids(&restored).await, peers);
    assert_eq!(did_of(&restored), did);
    let (_, restored_tasks) = restored.get("/tasks").await;
    assert_eq!(restored_tasks["tasks"], tasks["tasks"]);
    // New messages number after the old ones.
    let highest = messages
        .iter()
        .filter(|m| m["direction"] == "outbound")
        .filter_map(|m| m["server_seq"].as_i64())
        .max()
        .unwrap();
    // Beta is stopped: the message is queued, numbered after the old ones.
    let (_, sent) = restored
        .post(
            "/message:send",
            json!({"role": "user", "text": "after the restore"}),
        )
        .await;
    assert!(sent["server_seq"].as_i64().unwrap() > highest, "{sent}");
    restored.stop().await;
    assert!(old_dir.join("node.db").exists());
}

#[tokio::test]
async fn a_restore_refuses_a_foreign_file_a_newer_schema_and_a_damaged_copy() {
    let lab = Lab::new();
    let node = lab.start("alpha").await;
    let good = lab.root.path().join("good.backup");
    acp(&["backup", s(&good), "--data-dir", s(&node.dir)])
        .await
        .ok();
    node.stop().await;
    let empty = lab.root.path().join("empty");
    let refuse = |file: PathBuf| {
        let empty = empty.clone();
        async move {
            let run = acp(&["restore", s(&file), "--data-dir", s(&empty)]).await;
            let line = run.refusal().to_owned();
            assert!(
                !empty.exists(),
                "a refused restore leaves no data dir behind"
            );
            line
        }
    };

    let text = lab.root.path().join("notes.txt");
    std::fs::write(&text, "not a database").unwrap();
    let msg = refuse(text.clone()).await;
    assert!(msg.contains("not an SQLite database"), "{msg}");

    let other = lab.root.path().join("other.db");
    rusqlite::Connection::open(&other)
        .unwrap()
        .execute_batch(
            "CREATE TABLE accounts(id INTEGER PRIMARY KEY, name TEXT); PRAGMA user_version = 3;",
        )
        .unwrap();
    let msg = refuse(other).await;
    assert!(msg.contains("not an acp-relay store"), "{msg}");

    let newer = lab.root.path().join("newer.backup");
    std::fs::copy(&good, &newer).unwrap();
    rusqlite::Connection::open(&newer)
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    let msg = refuse(newer).await;
    assert!(
        msg.contains("schema version 99") && msg.contains("newer"),
        "{msg}"
    );

    // A page of the messages table overwritten: integrity_check names the damage.
    let damaged = lab.root.path().join("damaged.backup");
    let mut bytes = std::fs::read(&good).unwrap();
    let page_size = u16::from_be_bytes([bytes[16], bytes[17]]) as usize;
    let root: i64 = rusqlite::Connection::open(&good)
        .unwrap()
        .query_row(
            "SELECT rootpage FROM sqlite_master WHERE name = 'messages_by_time'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let at = (root as usize - 1) * page_size;
    for b in &mut bytes[at..at + page_size] {
        *b = 0x5A;
    }
    std::fs::write(&damaged, &bytes).unwrap();
    let msg = refuse(damaged).await;
    assert!(
        msg.contains("integrity_check") || msg.contains("cannot be read"),
        "{msg}"
    );

    let msg = refuse(lab.root.path().join("absent.backup")).await;
    assert!(msg.contains("cannot read"), "{msg}");

    // A data dir that is in fact a file.
    let msg = acp(&["restore", s(&good), "--data-dir", s(&text)]).await;
    assert!(msg.refusal().contains("not a directory"), "{}", msg.stderr);

    // And the good one restores.
    acp(&["restore", s(&good), "--data-dir", s(&empty)])
        .await
        .ok();
    assert!(empty.join("node.db").exists());
}

#[tokio::test]
async fn export_jsonl_matches_the_api_and_markdown_holds_the_texts() {
    let lab = Lab::new();
    let (a, b) = alpha_with_history(&lab).await;
    let dir = s(&a.dir).to_owned();
    let run = acp(&["export", "--data-dir", &dir, "--format", "jsonl"]).await;
    let out = run.ok();
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let exported: Vec<Value> = lines
        .iter()
        .filter(|l| l["kind"] == "message")
        .map(|l| l["message"].clone())
        .collect();
    let mut api = all_messages(&a).await;
    for m in &mut api {
        m.as_object_mut().unwrap().remove("delivery");
    }
    assert_eq!(exported, api);
    let tasks: Vec<&Value> = lines.iter().filter(|l| l["kind"] == "task").collect();
    assert_eq!(tasks.len(), 1);
    let id = tasks[0]["task"]["id"].as_str().unwrap();
    let (_, task) = a.get(&format!("/tasks/{id}")).await;
    assert_eq!(tasks[0]["task"], task);
    assert_eq!(
        lines.len(),
        api.len() + 1,
        "messages and tasks, nothing else"
    );
    let summary = format!("exported {} messages and 1 tasks to stdout", api.len());
    assert!(run.stderr.contains(&summary), "{}", run.stderr);

    // One conversation, to a file.
    let file = lab.root.path().join("plan.jsonl");
    let run = acp(&[
        "export",
        "--data-dir",
        &dir,
        "--format",
        "jsonl",
        "--context",
        "ctx-plan",
        "-o",
        s(&file),
    ])
    .await;
    run.ok();
    let text = std::fs::read_to_string(&file).unwrap();
    let plan: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let in_plan = api.iter().filter(|m| m["context_id"] == "ctx-plan").count();
    assert_eq!(plan.len(), in_plan + 1);
    assert!(plan.iter().all(|l| {
        let v = if l["kind"] == "task" {
            &l["task"]
        } else {
            &l["message"]
        };
        v["context_id"] == "ctx-plan"
    }));
    let live = a.dir.join("node.db");
    let into = acp(&[
        "export",
        "--data-dir",
        &dir,
        "--format",
        "md",
        "--force",
        "-o",
        s(&live),
    ])
    .await;
    assert!(
        into.refusal().contains("inside the data dir"),
        "{}",
        into.stderr
    );
    let again = acp(&[
        "export",
        "--data-dir",
        &dir,
        "--format",
        "md",
        "-o",
        s(&file),
    ])
    .await;
    assert!(again.refusal().contains("--force"), "{}", again.stderr);

    // Nothing since a time in the future.
    let run = acp(&[
        "export",
        "--data-dir",
        &dir,
        "--format",
        "jsonl",
        "--since",
        "2999-01-01",
    ])
    .await;
    assert_eq!(run.ok(), "");
    let bad = acp(&[
        "export",
        "--data-dir",
        &dir,
        "--format",
        "jsonl",
        "--since",
        "soon",
    ])
    .await;
    assert_eq!(bad.code, 2, "a usage error: {}", bad.stderr);
    assert!(bad.stderr.contains("--since"), "{}", bad.stderr);

    let md = acp(&["export", "--data-dir", &dir, "--format", "md"]).await;
    let md = md.ok();
    assert!(md.starts_with("# acp-relay export"), "{md}");
    for text in [
        "hello 0 from alpha",
        "answer 4 from beta",
        "a note without a conversation",
        "other talk",
    ] {
        assert!(md.contains(&format!("> {text}")), "{text} missing:\n{md}");
    }
    let plan_at = md.find("## Conversation `ctx-plan`").expect("plan section");
    let other_at = md
        .find("## Conversation `ctx-other`")
        .expect("other section");
    assert!(plan_at < other_at, "conversations in the order they began");
    assert!(md.contains("## Messages without a conversation"));
    assert!(md.contains("## Tasks"));
    a.stop().await;
    b.stop().await;
}

/// How the tools' lines name this binary's schema version.
fn current_schema() -> String {
    format!("schema v{}", acp_relay::node::store::schema_version())
}

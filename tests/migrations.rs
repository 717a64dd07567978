//! Stores from every earlier schema version open with this binary: the node migrates them at
//! start, keeps every row (messages with their ids and `server_seq`, the peer, the task, the
//! offline queue, the unread mark), indexes the old messages for search, and the file passes
//! `integrity_check` afterwards. The fixtures are SQL dumps in `tests/fixtures/store-vN.sql`
//! (how they were made is written at the top of each); each test loads one into a fresh
//! file as the old node left it (WAL mode) and starts a current node on it.

mod common;

use std::path::{Path, PathBuf};

use common::{TestNode, start_with};
use serde_json::{Value, json};

/// Loads `tests/fixtures/store-v{version}.sql` into `dir/node.db`.
fn load_fixture(version: i64, dir: &Path) -> PathBuf {
    let sql_path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("store-v{version}.sql"));
    let sql = std::fs::read_to_string(&sql_path).expect("fixture");
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("node.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(&sql).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let loaded: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(loaded, version, "the fixture is at its version");
    path
}

const OLD_IDS: [(&str, &str, i64); 5] = [
    ("msg_old000000001", "outbound", 1),
    ("msg_old000000002", "inbound", 1),
    ("msg_old000000003", "outbound", 2),
    ("msg_old000000004", "inbound", 2),
    ("msg_old000000005", "outbound", 3),
];

/// What every fixture holds, as a node started on it shows it.
async fn check_old_rows(node: &TestNode) {
    let (_, page) = node.get("/messages?limit=100&sort=asc").await;
    let seen: Vec<(String, String, i64)> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["message_id"].as_str().unwrap().to_owned(),
                m["direction"].as_str().unwrap().to_owned(),
                m["server_seq"].as_i64().unwrap(),
            )
        })
        .collect();
    let want: Vec<(String, String, i64)> = OLD_IDS
        .iter()
        .map(|(id, d, s)| ((*id).to_owned(), (*d).to_owned(), *s))
        .collect();
    assert_eq!(seen, want, "{page}");
    assert_eq!(
        page["messages"][0]["parts"][0]["content"],
        "kickoff for the harbour survey"
    );
    let (_, found) = node.get("/messages?q=lighthouse").await;
    assert_eq!(
        found["messages"][0]["message_id"], "msg_old000000003",
        "old messages are searchable: {found}"
    );
    let (_, conversation) = node.get("/context/ctx-old/messages").await;
    assert_eq!(
        conversation["messages"].as_array().map(Vec::len),
        Some(2),
        "{conversation}"
    );
    let peer = node.peer_named("beta").await;
    assert_eq!(peer["id"], "peer_001", "{peer}");
    let (status, task) = node.get("/tasks/task_old00000001").await;
    assert_eq!(status, 200, "{task}");
    assert_eq!(task["status"], "working");
    assert_eq!(task["context_id"], "ctx-old");
    let (_, queue) = node.get("/offline-queue").await;
    assert!(queue.to_string().contains("msg_old000000005"), "{queue}");
    let (_, unread) = node.get("/recv?limit=10").await;
    let unread: Vec<&Value> = unread["messages"].as_array().unwrap().iter().collect();
    assert_eq!(unread.len(), 1, "{unread:?}");
    assert_eq!(unread[0]["message_id"], "msg_old000000004");
    // New messages are numbered after the old ones (beta is away: queued).
    let (_, sent) = node
        .post(
            "/message:send",
            json!({"role": "user", "text": "after the upgrade"}),
        )
        .await;
    assert_eq!(sent["server_seq"], 4, "{sent}");
}

/// The store after the node stopped: current schema, intact, incremental vacuum on, every row.
fn check_migrated_file(path: &Path, version: i64, page_size: i64) {
    let conn = rusqlite::Connection::open(path).unwrap();
    let pragma = |name: &str| -> i64 { conn.pragma_query_value(None, name, |r| r.get(0)).unwrap() };
    assert_eq!(
        pragma("user_version"),
        acp_relay::node::store::schema_version()
    );
    assert_eq!(pragma("auto_vacuum"), 2, "incremental");
    assert_eq!(pragma("page_size"), page_size, "kept its page size");
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(count("SELECT count(*) FROM messages"), 6);
    assert_eq!(count("SELECT count(*) FROM peers WHERE id = 'peer_001'"), 1);
    assert_eq!(count("SELECT count(*) FROM tasks"), 1);
    assert_eq!(
        count("SELECT count(*) FROM meta WHERE key = 'token' AND value = 'tok_0123456789abcdef'"),
        1,
        "the link token is kept"
    );
    assert_eq!(count("SELECT count(*) FROM messages_fts"), 6);
    assert_eq!(
        count("SELECT count(*) FROM peer_stored WHERE peer_id = 'peer_001'"),
        1,
        "inbound bytes per peer (v6)"
    );
    assert_eq!(
        count("SELECT count(*) FROM webhooks"),
        i64::from(version >= 7),
        "v7's table, with the v7 fixture's webhook kept"
    );
    assert_eq!(
        count("SELECT count(*) FROM task_handles"),
        0,
        "the task handles table exists (v8), empty"
    );
}

/// A node on `dir` that keeps messages however old: the fixtures' messages are dated when
/// their code was written, and age-based retention would remove them once they pass 30 days.
fn keep_everything(dir: PathBuf) -> acp_relay::Config {
    let mut config = acp_relay::Config::ephemeral("alpha", dir);
    config.retention.retain_days = 0;
    config
}

async fn migrates(version: i64, page_size: i64) {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join(format!("v{version}"));
    let path = load_fixture(version, &dir);
    let node = start_with(keep_everything(dir)).await;
    check_old_rows(&node).await;
    node.stop().await;
    check_migrated_file(&path, version, page_size);
}

#[tokio::test]
async fn a_v1_store_migrates_and_keeps_its_rows() {
    migrates(1, 4096).await;
}

#[tokio::test]
async fn a_v2_store_migrates_and_keeps_its_rows() {
    migrates(2, 4096).await;
}

#[tokio::test]
async fn a_v3_store_migrates_and_keeps_its_rows() {
    migrates(3, 4096).await;
}

#[tokio::test]
async fn a_v4_store_migrates_and_keeps_its_rows() {
    migrates(4, 1024).await;
}

#[tokio::test]
async fn a_v5_store_migrates_and_keeps_its_rows() {
    migrates(5, 1024).await;
}

#[tokio::test]
async fn a_v6_store_migrates_and_keeps_its_rows() {
    migrates(6, 1024).await;
}

#[tokio::test]
async fn a_v7_store_migrates_and_keeps_its_rows() {
    migrates(7, 1024).await;
}

/// `acp-relay restore` takes an old backup as it is; the node migrates it at its start.
#[tokio::test]
async fn an_old_backup_restores_and_migrates() {
    let root = tempfile::tempdir().unwrap();
    let old = load_fixture(1, &root.path().join("old"));
    let target = root.path().join("restored");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_acp-relay"))
        .args(["restore", old.to_str().unwrap(), "--data-dir"])
        .arg(&target)
        .env("ACP_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("5 messages, 1 peers, 1 tasks, schema v1"),
        "{stdout}"
    );
    let node = start_with(keep_everything(target.clone())).await;
    check_old_rows(&node).await;
    node.stop().await;
    check_migrated_file(&target.join("node.db"), 1, 4096);
}

//! A damaged, foreign or too-new store is never silently replaced: the node refuses to start
//! with one line that names the file, says what is wrong and gives the recovery step, and the
//! file is left exactly as it was.

mod common;

use common::{Lab, start_with};

/// Starting on `dir` fails; returns the one-line message.
async fn refusal(lab: &Lab, name: &str) -> String {
    match acp_relay::Server::start(lab.config(name)).await {
        Ok(_) => panic!("the node started on a bad store"),
        Err(e) => {
            assert!(!e.message.contains('\n'), "one line: {}", e.message);
            e.message
        }
    }
}

/// A store made by this version, stopped cleanly.
async fn made_store(lab: &Lab, name: &str) -> std::path::PathBuf {
    let node = start_with(lab.config(name)).await;
    node.stop().await.join("node.db")
}

#[tokio::test]
async fn a_file_that_is_not_sqlite_is_refused_and_kept() {
    let lab = Lab::new();
    let dir = lab.root.path().join("foreign");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("node.db");
    std::fs::write(&path, b"{\"this\": \"is a JSON file, not a store\"}\n").unwrap();
    let msg = refusal(&lab, "foreign").await;
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("not an SQLite database"), "{msg}");
    assert!(msg.contains("move it away"), "{msg}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        b"{\"this\": \"is a JSON file, not a store\"}\n",
        "the file was changed"
    );
}

#[tokio::test]
async fn a_store_from_a_newer_version_is_refused() {
    let lab = Lab::new();
    let path = made_store(&lab, "newer").await;
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 999).unwrap();
    }
    let msg = refusal(&lab, "newer").await;
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("schema version 999"), "{msg}");
    assert!(msg.contains("newer acp-relay"), "{msg}");
    let conn = rusqlite::Connection::open(&path).unwrap();
    let v: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(v, 999, "left as it was");
}

#[tokio::test]
async fn a_damaged_store_is_refused() {
    let lab = Lab::new();
    let path = made_store(&lab, "damaged").await;
    // Overwrite the schema page's b-tree (page 1 after the 100-byte file header).
    let mut bytes = std::fs::read(&path).unwrap();
    for b in &mut bytes[100..1024] {
        *b = 0xA5;
    }
    std::fs::write(&path, &bytes).unwrap();
    let msg = refusal(&lab, "damaged").await;
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("damaged"), "{msg}");
    assert!(msg.contains("backup"), "{msg}");
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "the file was changed");
}

//! A full disk is a state, not a crash. Each test puts one node's data dir on a small tmpfs
//! that it mounts itself (root only; CI runs as root and must run them), fills the filesystem
//! with a filler file while messages flow, then removes the filler:
//! - the full node answers sends with `507 ERR_STORAGE_FULL` naming its data dir, keeps
//!   answering reads, and resumes by itself, without a restart;
//! - every message a sender acknowledged (200) reaches the receiver exactly once, whichever
//!   side's disk was full, and the sender ends with nothing unconfirmed.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::{Lab, TestNode, connect, eventually, start_with};
use serde_json::{Value, json};

/// A tmpfs mounted for one test, unmounted (lazily, so a node still holding files cannot
/// keep it) when dropped, also when the test fails.
struct Tmpfs {
    dir: PathBuf,
    _parent: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `mb` MiB, or says why it cannot.
    fn mount(mb: u64) -> Result<Tmpfs, String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("needs root".into());
        }
        let parent = tempfile::tempdir().map_err(|e| e.to_string())?;
        let dir = parent.path().join("fs");
        std::fs::create_dir(&dir).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={mb}m,mode=0700"),
                "tmpfs",
            ])
            .arg(&dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs {
            dir,
            _parent: parent,
        })
    }

    /// Writes a filler file until the filesystem has no space left.
    fn fill(&self) -> PathBuf {
        let path = self.dir.join("filler");
        let mut file = std::fs::File::create(&path).expect("filler");
        for chunk in [1 << 20, 4096, 512] {
            let block = vec![0u8; chunk];
            while file.write_all(&block).is_ok() {}
        }
        let _ = file.sync_all();
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// The tmpfs, or `None` when the test cannot run here and may be skipped (not root, not CI).
/// In CI (`CI=true`) a test that cannot mount fails.
fn tmpfs_or_skip(mb: u64) -> Option<Tmpfs> {
    match Tmpfs::mount(mb) {
        Ok(fs) => Some(fs),
        Err(why) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI must run the disk-full tests, but: {why}")
        }
        Err(why) => {
            println!("skipped: needs root ({why})");
            None
        }
    }
}

/// A message body big enough that a few thousand fill the store quickly.
fn body(i: usize) -> String {
    format!("{i:06} {}", "x".repeat(8 * 1024))
}

/// Sends one message; returns the HTTP status and the body.
async fn send(node: &TestNode, i: usize) -> (u16, Value) {
    node.post(
        "/message:send",
        json!({"role": "user", "text": body(i), "message_id": format!("m{i:06}")}),
    )
    .await
}

/// Whether `node` reports its store full in `/status`.
async fn reports_full(node: &TestNode) -> bool {
    let (_, status) = node.get("/status").await;
    status["store"]["full"] == true
}

/// Every id in `ids` is stored at `receiver`, once, and the sender confirmed all of them.
async fn assert_all_arrived(sender: &TestNode, receiver: &TestNode, ids: &[String]) {
    eventually(60, "the sender has nothing unconfirmed", || async {
        let (_, peers) = sender.get("/peers").await;
        peers["peers"][0]["unconfirmed"] == 0
    })
    .await;
    for id in ids {
        let row = receiver.server.node.inbound_message(id).await.unwrap();
        assert!(row.is_some(), "acknowledged message {id} never arrived");
    }
    let (rows, distinct) = receiver
        .server
        .node
        .store()
        .read(|c| {
            c.query_row(
                "SELECT count(*), count(DISTINCT message_id) FROM messages WHERE direction = 'inbound'",
                [],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
            )
        })
        .await
        .unwrap();
    assert_eq!(rows, distinct, "duplicates at the receiver");
    let (_, status) = receiver.get("/status").await;
    assert_eq!(
        status["messages_received"].as_i64(),
        Some(rows),
        "the receiver counted a message twice"
    );
}

/// The sender's disk fills: sends get 507 with a clear message while reads go on, nothing it
/// acknowledged is lost, and sends succeed again once the test frees space.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_at_the_sender_refuses_sends_and_resumes() {
    let Some(fs) = tmpfs_or_skip(48) else { return };
    let lab = Lab::new();
    let receiver = lab.start("receiver").await;
    let sender = start_with(acp_relay::Config::ephemeral("sender", fs.dir.join("data"))).await;
    connect(&sender, &receiver).await;

    let mut acked = Vec::new();
    for i in 0..20 {
        let (status, resp) = send(&sender, i).await;
        assert_eq!(status, 200, "{resp}");
        acked.push(format!("m{i:06}"));
    }
    let filler = fs.fill();

    // Sends go on until the store notices; bounded far above what fits.
    let mut refused = None;
    let mut i = 20;
    let started = tokio::time::Instant::now();
    while refused.is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(120) && i < 50_000,
            "no 507 after {i} sends into a full disk"
        );
        let (status, resp) = send(&sender, i).await;
        match status {
            200 => acked.push(format!("m{i:06}")),
            507 => refused = Some(resp),
            other => panic!("a send into a full disk got {other}: {resp}"),
        }
        i += 1;
    }
    let refused = refused.unwrap();
    assert_eq!(refused["error_code"], "ERR_STORAGE_FULL", "{refused}");
    let text = refused["error"].as_str().unwrap();
    assert!(
        text.contains(&fs.dir.join("data").display().to_string()),
        "{text}"
    );
    assert!(text.contains("free"), "{text}");

    // While full: sends are refused at once, reads and status go on.
    for _ in 0..5 {
        let (status, resp) = send(&sender, i).await;
        assert_eq!(status, 507, "{resp}");
        i += 1;
    }
    assert!(reports_full(&sender).await);
    let (status, page) = sender.get("/messages?limit=5").await;
    assert_eq!(status, 200, "{page}");
    let (status, _) = sender.get("/peers").await;
    assert_eq!(status, 200);
    let (status, task) = sender
        .post("/tasks", json!({"role": "user", "text": "t"}))
        .await;
    assert_eq!(status, 507, "task writes are refused too: {task}");
    // A retention change (what a user reaches for now) applies. Whether its one small row
    // still fits depends on the free pages SQLite has left; when it does not, the answer
    // says so.
    let (status, ret) = sender
        .request(
            reqwest::Method::PATCH,
            "/retention",
            Some(json!({"retain_days": 29})),
        )
        .await;
    assert_eq!(status, 200, "{ret}");
    assert_eq!(ret["retain_days"], 29, "{ret}");
    assert!(
        ret["saved"] == true
            || ret["warning"]
                .as_str()
                .is_some_and(|w| w.contains("until the node stops")),
        "{ret}"
    );

    std::fs::remove_file(&filler).unwrap();
    eventually(60, "the sender takes sends again", || async {
        !reports_full(&sender).await
    })
    .await;
    for _ in 0..20 {
        let (status, resp) = send(&sender, i).await;
        assert_eq!(status, 200, "{resp}");
        acked.push(format!("m{i:06}"));
        i += 1;
    }
    assert_all_arrived(&sender, &receiver, &acked).await;
    sender.stop().await;
    receiver.stop().await;
    drop(fs);
}

/// The receiver's disk fills while a sender keeps sending: the receiver confirms nothing it
/// could not commit and tells the sender to hold its frames, which the sender re-sends until
/// they are stored; once the test frees space everything acknowledged arrives, exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_at_the_receiver_loses_nothing_the_sender_acknowledged() {
    let Some(fs) = tmpfs_or_skip(48) else { return };
    let lab = Lab::new();
    let sender = lab.start("sender").await;
    let receiver = start_with(acp_relay::Config::ephemeral(
        "receiver",
        fs.dir.join("data"),
    ))
    .await;
    connect(&sender, &receiver).await;

    let mut acked = Vec::new();
    let filler = fs.fill();
    let mut i = 0;
    let started = tokio::time::Instant::now();
    // Until the receiver notices, then on for a while it is full (long enough for the sender
    // to re-send what was held more than once), but at most AFTER_FULL_MAX sends: what the
    // sender acknowledges meanwhile must fit in the space the test frees afterwards (a fast
    // machine sent thousands of these 8 KB messages in those seconds, more than the tmpfs).
    const AFTER_FULL_MAX: usize = 1000;
    let mut after_full = 0;
    let mut full_at = None;
    while after_full < 200
        || full_at.is_none_or(|t: tokio::time::Instant| t.elapsed() < Duration::from_secs(5))
    {
        if after_full >= AFTER_FULL_MAX {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120) && i < 50_000,
            "the receiver never reported its store full after {i} messages"
        );
        let (status, resp) = send(&sender, i).await;
        match status {
            200 => acked.push(format!("m{i:06}")),
            // The sender holds at most 10,000 unconfirmed messages per peer.
            429 => tokio::time::sleep(Duration::from_millis(50)).await,
            other => panic!("send got {other}: {resp}"),
        }
        i += 1;
        if after_full > 0 || (i % 50 == 0 && reports_full(&receiver).await) {
            after_full += 1;
            full_at.get_or_insert_with(tokio::time::Instant::now);
        }
    }
    // The full receiver refuses its own sends, and still serves reads.
    let (status, resp) = receiver
        .post("/message:send", json!({"role": "user", "text": "x"}))
        .await;
    assert_eq!(status, 507, "{resp}");
    assert_eq!(resp["error_code"], "ERR_STORAGE_FULL");
    let (status, _) = receiver.get("/messages?limit=5").await;
    assert_eq!(status, 200);
    let (_, peers) = sender.get("/peers").await;
    assert!(
        peers["peers"][0]["unconfirmed"].as_u64() > Some(0),
        "the sender keeps what the receiver could not store: {peers}"
    );

    std::fs::remove_file(&filler).unwrap();
    eventually(60, "the receiver takes writes again", || async {
        !reports_full(&receiver).await
    })
    .await;
    assert_all_arrived(&sender, &receiver, &acked).await;
    receiver.stop().await;
    sender.stop().await;
    drop(fs);
}

//! A bug report has to say what was running: `acp-relay --version` prints the Cargo version
//! and the commit on stdout (nothing else, so a host or script that reads it is not confused
//! with MCP output), and `/status`, `acp_status` and the card carry the same version.

mod common;

use std::process::{Command, Stdio};

#[test]
fn version_flag_prints_version_and_commit() {
    for flag in ["--version", "-V"] {
        let out = Command::new(env!("CARGO_BIN_EXE_acp-relay"))
            .arg(flag)
            .stdin(Stdio::null())
            .output()
            .expect("run acp-relay --version");
        assert!(out.status.success(), "{flag} exits 0");
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert_eq!(
            stdout,
            format!(
                "acp-relay {} (commit {})\n",
                env!("CARGO_PKG_VERSION"),
                acp_relay::COMMIT
            ),
            "{flag}: one line on stdout"
        );
        assert!(out.stderr.is_empty(), "{flag}: nothing on stderr");
    }
}

#[test]
fn commit_is_the_checkouts_head() {
    let commit = acp_relay::COMMIT;
    assert!(
        commit == "unknown"
            || (commit.len() == 12 && commit.chars().all(|c| c.is_ascii_hexdigit())),
        "12 hex digits or unknown: {commit}"
    );
    if std::env::var_os("ACP_RELAY_COMMIT").is_some() {
        return; // set by hand: the build took it as given
    }
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stderr(Stdio::null())
        .output();
    if let Ok(out) = head
        && out.status.success()
    {
        // In a checkout the build must name its HEAD (build.rs reruns when HEAD moves).
        assert_eq!(commit, String::from_utf8_lossy(&out.stdout).trim());
    }
}

#[tokio::test]
async fn status_and_card_carry_the_version() {
    let lab = common::Lab::new();
    let node = lab.start("v").await;
    let (code, status) = node.get("/status").await;
    assert_eq!(code, 200);
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(status["commit"], acp_relay::COMMIT);
    let (code, card) = node.get("/.well-known/acp.json").await;
    assert_eq!(code, 200);
    assert_eq!(card["self"]["version"], env!("CARGO_PKG_VERSION"));
    node.stop().await;
}

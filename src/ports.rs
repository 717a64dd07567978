//! The ports a node that had to move remembers: `acp-relay mcp` whose asked ports are taken
//! (a second host on the defaults) moves to free ones, and without this file its link (which
//! carries the peer port) would change at every restart, so a peer that dialled it could never
//! re-dial. The file, `ports.json` in the data dir, ties the ports the node took to the ports
//! it was asked for: next start with the same asked ports tries the remembered ones first.
//! Asking for other ports (`--port`, `--http-port`) or deleting the file is how a user changes
//! the link on purpose.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The file's name in the data dir.
pub const FILE_NAME: &str = "ports.json";

/// What `ports.json` holds: the asked ports and the ones the node took instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Remembered {
    /// `--port` when the node moved.
    pub asked_port: u16,
    /// `--http-port` (resolved) when the node moved.
    pub asked_http_port: u16,
    /// The peer port it took (the one in its link).
    pub port: u16,
    /// The HTTP port it took.
    pub http_port: u16,
}

fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE_NAME)
}

/// Parses the file's text; anything else than the four ports is no memory at all (a damaged
/// file must not stop the node: it then moves to free ports as before and rewrites it).
pub fn parse(text: &str) -> Option<Remembered> {
    serde_json::from_str::<Remembered>(text)
        .ok()
        .filter(|r| r.port != 0 && r.http_port != 0)
}

/// The remembered ports for these asked ports, if the node moved from them before.
pub fn load(data_dir: &Path, asked_port: u16, asked_http_port: u16) -> Option<Remembered> {
    let text = std::fs::read_to_string(path(data_dir)).ok()?;
    let r = parse(&text);
    if r.is_none() {
        tracing::warn!(file = %path(data_dir).display(), "ignoring an unreadable ports file");
    }
    r.filter(|r| r.asked_port == asked_port && r.asked_http_port == asked_http_port)
}

/// Records where the node listens after it started: the ports it took when they differ from
/// the asked ones, and no file when it got the asked ones (nothing to remember then). Asked
/// port 0 means "any", which nobody expects to be stable, so nothing is kept for it.
pub fn store(data_dir: &Path, asked_port: u16, asked_http_port: u16, port: u16, http_port: u16) {
    let file = path(data_dir);
    let moved = (asked_port != 0 && port != asked_port)
        || (asked_http_port != 0 && http_port != asked_http_port);
    if !moved || asked_port == 0 || asked_http_port == 0 {
        if file.exists()
            && let Err(e) = std::fs::remove_file(&file)
        {
            tracing::warn!(file = %file.display(), "cannot remove the ports file: {e}");
        }
        return;
    }
    let r = Remembered {
        asked_port,
        asked_http_port,
        port,
        http_port,
    };
    let text = serde_json::to_string_pretty(&r).unwrap_or_default() + "\n";
    if std::fs::read_to_string(&file).is_ok_and(|old| old == text) {
        return;
    }
    let tmp = data_dir.join(format!("{FILE_NAME}.tmp"));
    match std::fs::write(&tmp, &text).and_then(|()| std::fs::rename(&tmp, &file)) {
        Ok(()) => tracing::info!(
            file = %file.display(),
            port,
            http_port,
            "remembering the ports this node moved to: its link stays the same at the next start"
        ),
        Err(e) => tracing::warn!(file = %file.display(), "cannot remember the ports: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_moved_node_is_remembered_and_a_node_on_its_ports_is_not() {
        let dir = tempfile::tempdir().unwrap();
        store(dir.path(), 7801, 7901, 45011, 45012);
        let r = load(dir.path(), 7801, 7901).unwrap();
        assert_eq!((r.port, r.http_port), (45011, 45012));
        assert_eq!(load(dir.path(), 7802, 7902), None, "other asked ports");
        store(dir.path(), 7801, 7901, 7801, 7901);
        assert!(!dir.path().join(FILE_NAME).exists());
        store(dir.path(), 0, 0, 45011, 45012);
        assert!(!dir.path().join(FILE_NAME).exists());
    }

    proptest! {
        #[test]
        fn prop_any_file_text_parses_or_is_ignored(text in ".{0,200}") {
            if let Some(r) = parse(&text) {
                prop_assert!(r.port != 0 && r.http_port != 0);
            }
        }

        #[test]
        fn prop_stored_ports_read_back(a in 1u16.., b in 1u16.., p in 1u16.., h in 1u16..) {
            prop_assume!(p != a);
            let dir = tempfile::tempdir().unwrap();
            store(dir.path(), a, b, p, h);
            prop_assert_eq!(load(dir.path(), a, b), Some(Remembered {
                asked_port: a, asked_http_port: b, port: p, http_port: h,
            }));
        }
    }
}

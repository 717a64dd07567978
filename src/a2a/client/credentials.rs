//! Per-agent credentials: the header (and value) an A2A agent's card asks for, given by the
//! user at connect time. Kept in `a2a-credentials.json` in the data dir, mode 0600, written
//! whole to a 0600 temporary file and renamed into place; never logged, never in `/peers`
//! (the store holds no secret: a backup or `/peers` shows none).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// The file's name in the data dir.
pub const FILE_NAME: &str = "a2a-credentials.json";

/// One header the bridge adds to every request to an agent.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Credential {
    /// Header name (`Authorization`, or the API key's header from the card).
    pub header: String,
    /// Header value (`Bearer …`, or the key).
    pub value: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The value never reaches a log line, even through a debug print.
        write!(f, "Credential({}: <hidden>)", self.header)
    }
}

/// Serializes read-modify-write of the file between concurrent connects.
static LOCK: Mutex<()> = Mutex::new(());

fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE_NAME)
}

fn read_all(data_dir: &Path) -> BTreeMap<String, Credential> {
    std::fs::read(path(data_dir))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// The credential stored for `peer_id`.
pub fn load(data_dir: &Path, peer_id: &str) -> Option<Credential> {
    let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    read_all(data_dir).remove(peer_id)
}

/// Stores (or, with `None`, forgets) the credential of `peer_id`.
pub fn store(
    data_dir: &Path,
    peer_id: &str,
    credential: Option<&Credential>,
) -> std::io::Result<()> {
    let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let mut all = read_all(data_dir);
    match credential {
        Some(c) => {
            all.insert(peer_id.to_owned(), c.clone());
        }
        None => {
            if all.remove(peer_id).is_none() {
                return Ok(());
            }
        }
    }
    let text = serde_json::to_vec_pretty(&all).map_err(std::io::Error::other)?;
    crate::private_file::write_atomically(&path(data_dir), &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_kept_per_peer_in_a_private_file_and_hidden_from_debug() {
        let dir = tempfile::tempdir().unwrap();
        let c = Credential {
            header: "X-API-Key".into(),
            value: "s3cret".into(),
        };
        store(dir.path(), "peer_001", Some(&c)).unwrap();
        assert_eq!(load(dir.path(), "peer_001"), Some(c.clone()));
        assert_eq!(load(dir.path(), "peer_002"), None);
        assert!(!format!("{c:?}").contains("s3cret"));
        #[cfg(unix)]
        assert_eq!(crate::private_file::mode_of(&path(dir.path())), 0o600);
        store(dir.path(), "peer_001", None).unwrap();
        assert_eq!(load(dir.path(), "peer_001"), None);
    }
}

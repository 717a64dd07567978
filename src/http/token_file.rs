//! The `api_token` file in the data dir: how the CLI client (`acp-relay status`, `send`, …)
//! on the same machine finds the token of a node started with `--api-token`, without the
//! user repeating it in every shell.
//!
//! The node writes the file only when it was given a token (it never makes one up), mode
//! 0600 inside the data dir, which is itself 0700 and already holds what the token guards
//! (every message in `node.db`, the private key in `identity.json`): whoever can read the
//! file could read those directly, so the file widens nobody's access. A node started
//! without a token removes a file left by an earlier start, so no stale secret lingers.

use std::path::{Path, PathBuf};

/// The file's name inside the data dir.
pub const FILE_NAME: &str = "api_token";

/// Where the token file of the node whose data dir is `data_dir` lives.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE_NAME)
}

/// Writes (or, with no token, removes) the token file; written to a 0600 temporary file
/// first and renamed into place, so a reader never sees half a token.
pub fn publish(data_dir: &Path, token: Option<&str>) -> std::io::Result<()> {
    let target = path(data_dir);
    let Some(token) = token else {
        return match std::fs::remove_file(&target) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => other,
        };
    };
    crate::private_file::write_atomically(&target, format!("{token}\n").as_bytes())
}

/// Reads a token file: its first line, trimmed. `Ok(None)` when there is no such file.
/// With `private`, a file that other users may read or write is refused (the node writes
/// 0600; any other mode means someone else made or changed it).
pub fn read(file: &Path, private: bool) -> Result<Option<String>, String> {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(format!(
                "cannot read the token file {}: {e}",
                file.display()
            ));
        }
    };
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(file)
            .map_err(|e| format!("cannot read the token file {}: {e}", file.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(format!(
                "the token file {} is open to other users (mode {:o}); chmod 600 it",
                file.display(),
                mode & 0o777
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = private;
    let token = text.lines().next().unwrap_or("").trim().to_owned();
    Ok((!token.is_empty()).then_some(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_private_read_back_and_removed_without_a_token() {
        let dir = tempfile::tempdir().unwrap();
        publish(dir.path(), Some("0123456789abcdef")).unwrap();
        #[cfg(unix)]
        assert_eq!(crate::private_file::mode_of(&path(dir.path())), 0o600);
        assert_eq!(
            read(&path(dir.path()), true).unwrap().as_deref(),
            Some("0123456789abcdef")
        );
        publish(dir.path(), None).unwrap();
        assert!(!path(dir.path()).exists());
        assert_eq!(read(&path(dir.path()), true).unwrap(), None);
        publish(dir.path(), None).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn a_file_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = path(dir.path());
        std::fs::write(&file, "0123456789abcdef\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = read(&file, true).unwrap_err();
        assert!(err.contains("chmod 600") && !err.contains('\n'), "{err}");
        assert!(read(&file, false).unwrap().is_some());
    }
}

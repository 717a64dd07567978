//! The `http_address` file in the data dir: how the CLI client finds a running node by its
//! name (`acp-relay status --name claude-code`) instead of by port. Nodes that `acp-relay
//! install` wires into hosts listen on a port pair of their own (7911, 7912, …) and a node
//! that found its ports taken moves to free ones, so "the default port" names only the node
//! `acp-relay serve` starts with no options.
//!
//! The node writes the file once it listens (the base URL of its REST API, reachable from
//! this machine) and removes it at a graceful stop. A file left by a node that crashed is
//! harmless: the client then meets a refused connection and says which file sent it there.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The file's name inside the data dir.
pub const FILE_NAME: &str = "http_address";

/// Where the address file of the node whose data dir is `data_dir` lives.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE_NAME)
}

/// The URL a client on this machine uses for a node listening on `addr`: a node bound to
/// every interface (`0.0.0.0`, `::`) is reached on loopback.
pub fn local_url(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(v4) if v4.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(v6) if v6.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

/// Writes the file for a node listening on `addr` (through a temporary file and a rename,
/// so a reader never sees half a URL).
pub fn publish(data_dir: &Path, addr: SocketAddr) -> std::io::Result<()> {
    let tmp = data_dir.join(format!("{FILE_NAME}.tmp"));
    std::fs::write(&tmp, format!("{}\n", local_url(addr)))?;
    std::fs::rename(&tmp, path(data_dir))
}

/// Removes the file at a graceful stop, but only when it still names `addr`: a second node
/// that took over the data dir's name since then keeps its own.
pub fn withdraw(data_dir: &Path, addr: SocketAddr) {
    let file = path(data_dir);
    if read(&file).is_some_and(|url| url == local_url(addr))
        && let Err(e) = std::fs::remove_file(&file)
    {
        tracing::warn!(file = %file.display(), "cannot remove the address file: {e}");
    }
}

/// The URL in an address file, if there is one that looks like a URL.
pub fn read(file: &Path) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    let url = text.lines().next()?.trim();
    url.starts_with("http://").then(|| url.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_read_back_and_withdrawn_only_by_its_node() {
        let dir = tempfile::tempdir().unwrap();
        let mine: SocketAddr = "0.0.0.0:7911".parse().unwrap();
        let other: SocketAddr = "127.0.0.1:7912".parse().unwrap();
        publish(dir.path(), mine).unwrap();
        assert_eq!(
            read(&path(dir.path())).as_deref(),
            Some("http://127.0.0.1:7911")
        );
        withdraw(dir.path(), other);
        assert!(path(dir.path()).exists(), "another node's stop keeps it");
        withdraw(dir.path(), mine);
        assert!(!path(dir.path()).exists());
        assert_eq!(read(&path(dir.path())), None);
    }

    #[test]
    fn unspecified_v6_is_reached_on_loopback_and_garbage_is_no_address() {
        assert_eq!(
            local_url("[::]:80".parse().unwrap()),
            "http://[::1]:80".to_owned()
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(path(dir.path()), "not a url\n").unwrap();
        assert_eq!(read(&path(dir.path())), None);
    }
}

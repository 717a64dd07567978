//! Which node a client command talks to: `--node URL` (or `ACP_NODE`) when given; else the
//! node named by `--name` (or `ACP_NAME`, the variable `serve` reads), found through the
//! address file it keeps in its data dir; else the default local node on
//! 127.0.0.1:7901. A node `acp-relay install` wired into a host listens on a port of its own,
//! so `acp-relay status --name claude-code` reaches it without knowing that port; when
//! nothing answers, the error lists the nodes this machine runs.

use std::path::{Path, PathBuf};

use super::error::CliError;
use super::node_url::{DEFAULT_NODE, NodeUrl};
use crate::http::address_file;

/// The node to talk to and what to tell the user when it does not answer.
#[derive(Debug, Clone)]
pub struct Located {
    /// Its REST API.
    pub url: NodeUrl,
    /// The local data dir where its token file may be (`None` for a `--node` elsewhere).
    pub data_dir: Option<PathBuf>,
    /// What to do when nothing answers there (appended to "no node at …").
    pub hint: String,
}

/// Where the user's options and environment point.
#[derive(Debug, Clone, Default)]
pub struct Wanted<'a> {
    /// `--node` / `ACP_NODE`.
    pub node: Option<&'a str>,
    /// `--name` / `ACP_NAME`.
    pub name: Option<&'a str>,
    /// `--data-dir` / `ACP_DATA_DIR`.
    pub data_dir: Option<&'a Path>,
    /// Where named nodes keep their data dirs (normally [`crate::config::data_root`]).
    pub data_root: Option<&'a Path>,
}

/// Resolves [`Wanted`] to one node.
pub fn locate(w: &Wanted) -> Result<Located, CliError> {
    let name = w.name.map(str::trim).filter(|n| !n.is_empty());
    let data_dir = w.data_dir.map(Path::to_path_buf).or_else(|| {
        let name = name.unwrap_or(crate::config::DEFAULT_NAME);
        w.data_root
            .map(|root| root.join(crate::config::data_dir_name(name)))
    });
    if let Some(raw) = w.node.map(str::trim).filter(|n| !n.is_empty()) {
        let url = NodeUrl::parse(raw)?;
        return Ok(Located {
            data_dir: data_dir.filter(|_| url.is_loopback()),
            hint: "is the node running, and is --node (ACP_NODE) right?".into(),
            url,
        });
    }
    let file = data_dir.as_deref().map(address_file::path);
    if let Some((file, found)) = file
        .as_ref()
        .and_then(|f| address_file::read(f).map(|u| (f, u)))
    {
        let url = NodeUrl::parse(&found)
            .map_err(|_| CliError::usage(format!("{}: not a node address", file.display())))?;
        return Ok(Located {
            url,
            data_dir,
            hint: format!(
                "{} names it, but that node is not running now (a crash leaves the file): start it, or its MCP host",
                file.display()
            ),
        });
    }
    if let Some(name) = name.filter(|_| w.data_dir.is_none()) {
        return Err(CliError::unreachable(format!(
            "no node named {name:?} is running on this machine{}",
            running_list(w.data_root)
        )));
    }
    Ok(Located {
        url: NodeUrl::parse(DEFAULT_NODE)?,
        data_dir,
        hint: format!(
            "start one with acp-relay serve, or name it with --node URL or --name NAME{}",
            running_list(w.data_root)
        ),
    })
}

/// "; running here: claude-code (http://127.0.0.1:7911), …" or "" when none is.
fn running_list(root: Option<&Path>) -> String {
    let found = root.map(running).unwrap_or_default();
    if found.is_empty() {
        return String::new();
    }
    let list: Vec<String> = found.iter().map(|(n, u)| format!("{n} ({u})")).collect();
    format!(
        "; nodes that were started here: {} (pick one with --name)",
        list.join(", ")
    )
}

/// The named nodes under `root` with an address file, sorted by name.
pub fn running(root: &Path) -> Vec<(String, String)> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut found: Vec<(String, String)> = entries
        .flatten()
        .filter_map(|e| {
            let url = address_file::read(&address_file::path(&e.path()))?;
            Some((e.file_name().to_string_lossy().into_owned(), url))
        })
        .collect();
    found.sort();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish(root: &Path, dir: &str, port: u16) {
        let d = root.join(dir);
        std::fs::create_dir_all(&d).unwrap();
        address_file::publish(&d, ([127, 0, 0, 1], port).into()).unwrap();
    }

    #[test]
    fn node_flag_then_named_address_file_then_default() {
        let root = tempfile::tempdir().unwrap();
        publish(root.path(), "claude-code", 7911);
        let mut w = Wanted {
            node: Some("7950"),
            name: Some("claude-code"),
            data_dir: None,
            data_root: Some(root.path()),
        };
        let got = locate(&w).unwrap();
        assert_eq!(got.url.port, 7950);
        assert_eq!(got.data_dir, Some(root.path().join("claude-code")));
        w.node = None;
        let got = locate(&w).unwrap();
        assert_eq!(got.url.port, 7911);
        assert!(got.hint.contains("http_address"), "{}", got.hint);
        w.name = None;
        let got = locate(&w).unwrap();
        assert_eq!(got.url.port, 7901);
        assert!(
            got.hint
                .contains("claude-code (http://127.0.0.1:7911) (pick one with --name)"),
            "{}",
            got.hint
        );
    }

    #[test]
    fn a_name_with_no_running_node_says_so_and_lists_the_others() {
        let root = tempfile::tempdir().unwrap();
        publish(root.path(), "cursor", 7912);
        publish(root.path(), "codex", 7916);
        let e = locate(&Wanted {
            name: Some("vscode"),
            data_root: Some(root.path()),
            ..Wanted::default()
        })
        .unwrap_err();
        assert_eq!(e.exit, super::super::error::EXIT_UNREACHABLE);
        assert!(
            e.message.contains("no node named \"vscode\"")
                && e.message
                    .contains("codex (http://127.0.0.1:7916), cursor (http://127.0.0.1:7912)"),
            "{}",
            e.message
        );
    }

    #[test]
    fn an_explicit_data_dir_is_used_for_the_address_and_a_remote_node_gets_no_data_dir() {
        let root = tempfile::tempdir().unwrap();
        publish(root.path(), "mine", 7960);
        let dir = root.path().join("mine");
        let w = Wanted {
            data_dir: Some(&dir),
            ..Wanted::default()
        };
        assert_eq!(locate(&w).unwrap().url.port, 7960);
        let w = Wanted {
            node: Some("http://192.0.2.7:7901"),
            data_dir: Some(&dir),
            ..Wanted::default()
        };
        assert_eq!(locate(&w).unwrap().data_dir, None);
    }
}

//! Which API token the client sends: `--token` (or `ACP_API_TOKEN`, the variable the node
//! itself reads), else `--token-file` (or `ACP_API_TOKEN_FILE`), else, for a node on this
//! machine only, the `api_token` file a node started with `--api-token` keeps in its data
//! dir (`--data-dir`, else the default data dir of `--name`, as `serve` picks it). A
//! remote `--node` never gets the local node's token.

use std::path::PathBuf;

use super::error::CliError;
use super::node_url::NodeUrl;
use crate::http::token_file;

/// Where to look, from the command line and the environment.
#[derive(Debug, Clone, Default)]
pub struct TokenSources {
    /// `--token` / `ACP_API_TOKEN`.
    pub token: Option<String>,
    /// `--token-file` / `ACP_API_TOKEN_FILE`.
    pub token_file: Option<PathBuf>,
    /// The local node's data dir (from `--data-dir`, or the default one of `--name`).
    pub data_dir: Option<PathBuf>,
}

/// The token and a description of where it came from (for the 401 hint), if any.
pub fn find(src: &TokenSources, node: &NodeUrl) -> Result<Option<(String, String)>, CliError> {
    if let Some(t) = src
        .token
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        return Ok(Some((t.to_owned(), "--token / ACP_API_TOKEN".into())));
    }
    if let Some(file) = &src.token_file {
        return match token_file::read(file, false).map_err(CliError::usage)? {
            Some(t) => Ok(Some((t, file.display().to_string()))),
            None => Err(CliError::usage(format!(
                "--token-file {}: no such file, or it is empty",
                file.display()
            ))),
        };
    }
    if !node.is_loopback() {
        return Ok(None);
    }
    let Some(dir) = &src.data_dir else {
        return Ok(None);
    };
    let file = token_file::path(dir);
    Ok(token_file::read(&file, true)
        .map_err(CliError::usage)?
        .map(|t| (t, file.display().to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> NodeUrl {
        NodeUrl::parse("http://127.0.0.1:7901").unwrap()
    }

    #[test]
    fn precedence_flag_then_file_then_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        token_file::publish(dir.path(), Some("from-the-data-dir-0001")).unwrap();
        let other = dir.path().join("explicit");
        std::fs::write(&other, "from-the-explicit-file\n").unwrap();
        let mut src = TokenSources {
            token: Some("from-the-flag-000001".into()),
            token_file: Some(other.clone()),
            data_dir: Some(dir.path().to_owned()),
        };
        let got = |s: &TokenSources, n: &NodeUrl| find(s, n).unwrap().map(|(t, _)| t);
        assert_eq!(got(&src, &local()).as_deref(), Some("from-the-flag-000001"));
        src.token = None;
        assert_eq!(
            got(&src, &local()).as_deref(),
            Some("from-the-explicit-file")
        );
        src.token_file = None;
        assert_eq!(
            got(&src, &local()).as_deref(),
            Some("from-the-data-dir-0001")
        );
        // A node elsewhere never gets the local node's token.
        let remote = NodeUrl::parse("http://192.0.2.7:7901").unwrap();
        assert_eq!(got(&src, &remote), None);
        src.data_dir = Some(dir.path().join("nothing-here"));
        assert_eq!(got(&src, &local()), None);
        src.token_file = Some(dir.path().join("missing"));
        assert!(
            find(&src, &local())
                .unwrap_err()
                .message
                .contains("--token-file")
        );
    }
}

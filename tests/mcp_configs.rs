//! Every ready config in `mcp-config-examples/` parses (JSON or TOML), starts `acp-relay mcp`
//! (directly, or as `uvx acp-relay mcp` / `npx -y acp-relay mcp`) with flags the CLI accepts
//! (or points at a loopback `/mcp` URL), and is listed in the folder's README.

use std::path::{Path, PathBuf};

use acp_relay::config::NodeArgs;
use clap::Parser;
use serde_json::Value;

#[derive(Parser)]
struct McpCommand {
    #[command(flatten)]
    args: NodeArgs,
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// Checks one server entry; returns a description for the report.
fn check_server(file: &Path, name: &str, entry: &Value) {
    let here = format!("{} → {name}", file.display());
    if let Some(url) = entry.get("url").and_then(Value::as_str) {
        assert!(
            url.starts_with("http://127.0.0.1:") && url.ends_with("/mcp"),
            "{here}: loopback /mcp URL, got {url}"
        );
        return;
    }
    let command = entry["command"].as_str().unwrap_or_default();
    let args: Vec<String> = entry["args"]
        .as_array()
        .unwrap_or_else(|| panic!("{here}: args list"))
        .iter()
        .map(|a| {
            a.as_str()
                .unwrap_or_else(|| panic!("{here}: string args"))
                .to_owned()
        })
        .collect();
    // The launchers put the package name before acp-relay's own arguments.
    let own = match command {
        "acp-relay" => &args[..],
        "uvx" => {
            assert_eq!(
                args.first().map(String::as_str),
                Some("acp-relay"),
                "{here}: uvx acp-relay"
            );
            &args[1..]
        }
        "npx" => {
            assert_eq!(
                args.get(..2),
                Some(&["-y".to_owned(), "acp-relay".to_owned()][..]),
                "{here}: npx -y acp-relay (-y: no prompt, a host has no terminal)"
            );
            &args[2..]
        }
        other => panic!("{here}: runs acp-relay, uvx or npx, not {other:?}"),
    };
    check_command_line(&here, own);
}

fn check_command_line(here: &str, args: &[String]) {
    assert_eq!(
        args.first().map(String::as_str),
        Some("mcp"),
        "{here}: first argument is the mcp command"
    );
    let parsed = McpCommand::try_parse_from(
        std::iter::once("acp-relay mcp".to_owned()).chain(args[1..].iter().cloned()),
    )
    .unwrap_or_else(|e| panic!("{here}: flags rejected by the CLI: {e}"));
    let config = parsed
        .args
        .resolve()
        .unwrap_or_else(|e| panic!("{here}: {e}"));
    assert!(!config.name.is_empty());
    assert_ne!(
        config.name,
        acp_relay::config::DEFAULT_NAME,
        "{here}: each host gets its own --name"
    );
}

#[test]
fn every_example_config_is_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("mcp-config-examples");
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README");
    let mut all = Vec::new();
    files(&root, &mut all);
    let mut checked = 0;
    let mut names = std::collections::HashSet::new();
    for file in &all {
        let rel = file
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let ext = file.extension().and_then(|e| e.to_str()).unwrap_or("");
        let text = std::fs::read_to_string(file).unwrap();
        let doc: Value = match ext {
            "json" => {
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{rel}: invalid JSON: {e}"))
            }
            "toml" => {
                let t: toml::Value =
                    toml::from_str(&text).unwrap_or_else(|e| panic!("{rel}: invalid TOML: {e}"));
                serde_json::to_value(t).unwrap()
            }
            "txt" => {
                let line = text.lines().find(|l| !l.trim().is_empty()).unwrap();
                let (_, cmd) = line
                    .split_once(" -- ")
                    .unwrap_or_else(|| panic!("{rel}: `claude mcp add … -- command`"));
                let words: Vec<String> = cmd.split_whitespace().map(str::to_owned).collect();
                assert_eq!(words[0], "acp-relay", "{rel}");
                check_command_line(&rel, &words[1..]);
                assert!(readme.contains(&rel), "README lists {rel}");
                checked += 1;
                continue;
            }
            "md" => continue,
            other => panic!("{rel}: unexpected file type {other:?}"),
        };
        assert!(readme.contains(&rel), "README lists {rel}");
        let servers = ["mcpServers", "servers", "mcp_servers"]
            .iter()
            .find_map(|k| doc.get(*k))
            .and_then(Value::as_object)
            .unwrap_or_else(|| panic!("{rel}: has a servers map"));
        assert!(
            servers.contains_key("acp-relay"),
            "{rel}: an acp-relay entry"
        );
        for (name, entry) in servers {
            check_server(file, name, entry);
            if let Some(args) = entry.get("args").and_then(Value::as_array) {
                let i = args.iter().position(|a| a == "--name").unwrap();
                assert!(
                    names.insert(args[i + 1].as_str().unwrap().to_owned()),
                    "{rel}: --name is unique across hosts"
                );
            }
        }
        checked += 1;
    }
    assert!(checked >= 11, "all configs were checked ({checked})");
}

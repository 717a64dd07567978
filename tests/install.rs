//! `acp-relay install|uninstall --host …` against fixture configs in a throwaway HOME: the real
//! binary, with `HOME`, `XDG_CONFIG_HOME` and `APPDATA` pointed at a temp dir.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_acp-relay");

/// A throwaway home with the environment variables the installer reads.
struct Home {
    _dir: tempfile::TempDir,
    home: PathBuf,
}

impl Home {
    fn new() -> Home {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        Home { _dir: dir, home }
    }

    /// The per-user application config dir of this OS, under the throwaway home.
    fn app_config(&self) -> PathBuf {
        if cfg!(target_os = "macos") {
            self.home.join("Library/Application Support")
        } else if cfg!(windows) {
            self.home.join("AppData").join("Roaming")
        } else {
            self.home.join("xdg-config")
        }
    }

    /// Where `host` keeps its config, as docs/install.md says.
    fn config(&self, host: &str) -> PathBuf {
        match host {
            "claude-desktop" => self.app_config().join("Claude/claude_desktop_config.json"),
            "cursor" => self.home.join(".cursor/mcp.json"),
            "claude-code" => self.home.join(".claude.json"),
            "vscode" => self.app_config().join("Code/User/mcp.json"),
            "windsurf" => self.home.join(".codeium/windsurf/mcp_config.json"),
            "codex" => self.home.join(".codex/config.toml"),
            _ => unreachable!(),
        }
    }

    /// Puts `text` at `host`'s config path.
    fn put(&self, host: &str, text: &str) -> PathBuf {
        let path = self.config(host);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .env("HOME", &self.home)
            .env("USERPROFILE", &self.home)
            .env("XDG_CONFIG_HOME", self.home.join("xdg-config"))
            .env("APPDATA", self.home.join("AppData").join("Roaming"))
            .env_remove("CODEX_HOME")
            .env("NO_COLOR", "1")
            .output()
            .expect("run acp-relay")
    }

    /// Runs a command that must succeed; returns its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let (stdout, stderr) = texts(&out);
        assert!(out.status.success(), "{args:?} failed:\n{stdout}\n{stderr}");
        stdout
    }
}

fn texts(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&read(path)).unwrap()
}

fn bak(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn exe() -> String {
    std::fs::canonicalize(BIN)
        .unwrap()
        .to_str()
        .unwrap()
        .trim_start_matches(r"\\?\")
        .to_owned()
}

const CURSOR: &str = r#"{
  "editor.fontSize": 13,
  "mcpServers": {
    "github": {
      "command": "npx",
      "args": ["-y", "@modelcontextprotocol/server-github"],
      "env": {"GITHUB_TOKEN": "secret"}
    },
    "remote": {"url": "https://example.invalid/mcp"}
  },
  "nested": {"a": [1, 2, {"b": null}], "c": 1.5}
}
"#;

const CODEX: &str = r#"# Codex settings, kept by hand
model = "o3" # the default model
approval_policy = "on-request"

# servers
[mcp_servers.docs]
command = "docs-server" # inline comment
args = ["--stdio"]

[mcp_servers.docs.env]
DOCS_TOKEN = "t"

[profiles.fast]
model = "mini"
"#;

#[test]
fn install_adds_one_entry_keeps_the_rest_and_uninstall_gives_it_back() {
    let home = Home::new();
    let path = home.put("cursor", CURSOR);
    let before = json(&path);

    let out = home.ok(&["install", "--host", "cursor"]);
    assert!(out.contains("added acp-relay"), "{out}");
    assert!(out.contains(".bak"), "names the backup: {out}");
    assert_eq!(read(&bak(&path, ".bak")), CURSOR, "backup is the original");

    let mut after = json(&path);
    let ours = after["mcpServers"]
        .as_object_mut()
        .unwrap()
        .shift_remove("acp-relay")
        .expect("our entry");
    assert_eq!(ours["command"], exe().as_str());
    assert_eq!(
        ours["args"],
        serde_json::json!([
            "mcp",
            "--name",
            "cursor",
            "--port",
            "7812",
            "--http-port",
            "7912"
        ])
    );
    assert_eq!(after, before, "every other key and server as it was");
    let keys: Vec<&String> = after.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        ["editor.fontSize", "mcpServers", "nested"],
        "order kept"
    );
    assert!(
        read(&path).contains("\n  \"mcpServers\": {"),
        "two-space indent"
    );

    let installed = read(&path);
    let again = home.ok(&["install", "--host", "cursor"]);
    assert!(again.contains("already installed"), "{again}");
    assert_eq!(read(&path), installed, "second install writes nothing");
    assert!(!bak(&path, ".bak.2").exists(), "and backs nothing up");

    let out = home.ok(&["uninstall", "--host", "cursor"]);
    assert!(out.contains("removed acp-relay"), "{out}");
    assert_eq!(json(&path), before, "only our entry removed");
    assert_eq!(
        read(&bak(&path, ".bak.2")),
        installed,
        "uninstall backed up first"
    );
    assert_eq!(read(&bak(&path, ".bak")), CURSOR, "no backup overwritten");
    let out = home.ok(&["uninstall", "--host", "cursor"]);
    assert!(out.contains("nothing to remove"), "{out}");
}

#[test]
fn codex_toml_keeps_its_comments() {
    let home = Home::new();
    let path = home.put("codex", CODEX);
    let out = home.ok(&["install", "--host", "codex", "--name", "my codex"]);
    assert!(out.contains("added acp-relay"), "{out}");
    let text = read(&path);
    for line in CODEX.lines() {
        assert!(text.contains(line), "kept {line:?}:\n{text}");
    }
    let doc: toml::Table = toml::from_str(&text).unwrap();
    let ours = &doc["mcp_servers"]["acp-relay"];
    assert_eq!(ours["command"].as_str(), Some(exe().as_str()));
    let args: Vec<&str> = ours["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        args,
        [
            "mcp",
            "--name",
            "my codex",
            "--port",
            "7816",
            "--http-port",
            "7916"
        ]
    );
    assert_eq!(
        doc["mcp_servers"]["docs"]["env"]["DOCS_TOKEN"].as_str(),
        Some("t")
    );
    assert_eq!(read(&bak(&path, ".bak")), CODEX);

    assert!(
        home.ok(&["install", "--host", "codex", "--name", "my codex"])
            .contains("already installed")
    );
    home.ok(&["uninstall", "--host", "codex"]);
    assert_eq!(
        read(&path),
        CODEX,
        "uninstall gives the file back byte for byte"
    );
}

#[test]
fn dry_run_prints_the_entry_and_writes_nothing() {
    let home = Home::new();
    let path = home.put("cursor", CURSOR);
    let out = home.ok(&["install", "--host", "cursor", "--dry-run"]);
    assert!(out.contains("would add acp-relay"), "{out}");
    assert!(
        out.contains(&exe()) && out.contains("\"--http-port\""),
        "shows the entry: {out}"
    );
    assert_eq!(read(&path), CURSOR);
    assert!(!bak(&path, ".bak").exists());

    home.ok(&["install", "--host", "cursor"]);
    let installed = read(&path);
    let out = home.ok(&["uninstall", "--host", "cursor", "--dry-run"]);
    assert!(out.contains("would remove acp-relay"), "{out}");
    assert_eq!(read(&path), installed);
    assert!(!bak(&path, ".bak.2").exists());
}

#[test]
fn a_moved_binary_updates_the_entry_and_keeps_its_env() {
    let home = Home::new();
    let old = r#"{"servers": {"acp-relay": {"type": "stdio", "command": "/old/acp-relay", "args": ["mcp"], "env": {"ACP_LOG": "debug"}}, "other": {"type": "http", "url": "http://127.0.0.1:9/mcp"}}}"#;
    let path = home.put("vscode", old);
    let out = home.ok(&["install", "--host", "vscode"]);
    assert!(
        out.contains("updated acp-relay") && out.contains("/old/acp-relay"),
        "{out}"
    );
    let v = json(&path);
    assert_eq!(v["servers"]["acp-relay"]["command"], exe().as_str());
    assert_eq!(v["servers"]["acp-relay"]["type"], "stdio");
    assert_eq!(v["servers"]["acp-relay"]["env"]["ACP_LOG"], "debug");
    assert_eq!(v["servers"]["other"]["url"], "http://127.0.0.1:9/mcp");
}

#[test]
fn malformed_configs_are_refused_and_left_alone() {
    let home = Home::new();
    for (host, bad) in [
        ("cursor", "{\"mcpServers\": {\"a\": 1,}}"),
        ("windsurf", "[1, 2]"),
        ("claude-desktop", "{\"mcpServers\": \"nope\"}"),
        ("codex", "[mcp_servers.docs\ncommand = \"x\"\n"),
    ] {
        let path = home.put(host, bad);
        for cmd in ["install", "uninstall"] {
            let out = home.run(&[cmd, "--host", host]);
            let (stdout, stderr) = texts(&out);
            assert!(!out.status.success(), "{cmd} {host} refused: {stdout}");
            assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
            assert!(
                stderr.contains(path.to_str().unwrap()),
                "names the file: {stderr}"
            );
            assert!(stderr.contains("nothing changed"), "{stderr}");
            assert_eq!(read(&path), bad, "{host} unchanged");
            assert!(!bak(&path, ".bak").exists());
        }
    }
}

#[test]
fn host_all_does_the_installed_hosts_and_skips_the_others() {
    let home = Home::new();
    // Nothing installed: a failure, with a reason.
    let out = home.run(&["install", "--host", "all"]);
    assert!(!out.status.success());
    assert!(texts(&out).1.contains("no MCP host"), "{:?}", texts(&out));

    let cursor = home.put("cursor", CURSOR);
    let codex = home.put("codex", CODEX);
    // Installed, no config file yet: the file (and VS Code's User dir) is created.
    std::fs::create_dir_all(home.home.join(".claude")).unwrap();
    std::fs::create_dir_all(home.app_config().join("Code")).unwrap();
    let out = home.ok(&["install", "--host", "all"]);
    for skipped in ["claude-desktop", "windsurf"] {
        assert!(
            out.contains(&format!("{skipped}: skipped: not installed")),
            "{out}"
        );
        assert!(!home.config(skipped).exists());
    }
    let code = json(&home.config("claude-code"));
    assert_eq!(code["mcpServers"]["acp-relay"]["type"], "stdio");
    assert_eq!(code["mcpServers"]["acp-relay"]["args"][2], "claude-code");
    let vscode = json(&home.config("vscode"));
    assert_eq!(vscode["servers"]["acp-relay"]["args"][2], "vscode");
    assert_eq!(
        json(&cursor)["mcpServers"]["acp-relay"]["args"][2],
        "cursor"
    );
    assert!(read(&codex).contains("[mcp_servers.acp-relay]"));
    let mut ports: Vec<String> = Vec::new();
    for host in ["claude-code", "vscode", "cursor"] {
        let v = json(&home.config(host));
        let key = if host == "vscode" {
            "servers"
        } else {
            "mcpServers"
        };
        ports.push(v[key]["acp-relay"]["args"][4].as_str().unwrap().to_owned());
    }
    ports.sort();
    ports.dedup();
    assert_eq!(ports.len(), 3, "each host its own port");

    assert!(
        home.ok(&["install", "--host", "all"])
            .matches("already installed")
            .count()
            == 4
    );
    home.ok(&["uninstall", "--host", "all"]);
    assert_eq!(read(&codex), CODEX);
    assert_eq!(
        json(&cursor),
        serde_json::from_str::<Value>(CURSOR).unwrap()
    );
    let code = json(&home.config("claude-code"));
    assert_eq!(code["mcpServers"], serde_json::json!({}));
}

#[test]
fn a_named_host_that_is_not_installed_is_an_error() {
    let home = Home::new();
    let out = home.run(&["install", "--host", "windsurf"]);
    let (_, stderr) = texts(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("not installed"), "{stderr}");
    let out = home.run(&["install", "--host", "notepad"]);
    assert!(!out.status.success());
    let out = home.run(&["install", "--host", "all", "--name", "x"]);
    assert!(!out.status.success(), "one name for every host refused");
}

//! The MCP hosts `acp-relay install` knows: where each keeps its user-level config on Linux,
//! macOS and Windows, which key holds its servers, and the port pair it gets. The paths are
//! worked out from `HOME`, `XDG_CONFIG_HOME` and `APPDATA` read at run time (not from a
//! cached platform lookup), so a test, or a user with an unusual setup, can point them
//! anywhere. The table is documented in `docs/install.md`; keep the two in step.

use std::path::PathBuf;

/// How a host's config file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A JSON object whose `key` maps server names to entries; `typed` hosts want
    /// `"type": "stdio"` in the entry.
    Json {
        /// The object holding the servers (`mcpServers`, or `servers` for VS Code).
        key: &'static str,
        /// Whether the entry carries `"type": "stdio"`.
        typed: bool,
    },
    /// Codex's TOML, `[mcp_servers.<name>]` tables.
    Toml,
}

/// One host: its id on the command line, the file it reads, and its ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Host {
    /// What `--host` takes, and the default `--name` of its agent.
    pub id: &'static str,
    /// How its config file is written.
    pub format: Format,
    /// Its place in the port table: peer port `7810 + slot`, HTTP port `7910 + slot`, so
    /// two hosts never start on each other's ports (nor on the defaults 7801/7901 that
    /// `acp-relay serve` uses).
    pub slot: u16,
}

/// Every host, in the order `--host all` goes through them.
pub const HOSTS: [Host; 6] = [
    Host {
        id: "claude-desktop",
        format: Format::Json {
            key: "mcpServers",
            typed: false,
        },
        slot: 1,
    },
    Host {
        id: "cursor",
        format: Format::Json {
            key: "mcpServers",
            typed: false,
        },
        slot: 2,
    },
    Host {
        id: "claude-code",
        format: Format::Json {
            key: "mcpServers",
            typed: true,
        },
        slot: 3,
    },
    Host {
        id: "vscode",
        format: Format::Json {
            key: "servers",
            typed: true,
        },
        slot: 4,
    },
    Host {
        id: "windsurf",
        format: Format::Json {
            key: "mcpServers",
            typed: false,
        },
        slot: 5,
    },
    Host {
        id: "codex",
        format: Format::Toml,
        slot: 6,
    },
];

/// The operating systems whose paths differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Os {
    /// Linux and the other Unixes (XDG).
    Linux,
    /// macOS (`~/Library/Application Support`).
    MacOs,
    /// Windows (`%APPDATA%`, `%USERPROFILE%`).
    Windows,
}

impl Os {
    /// The OS this binary runs on.
    pub fn current() -> Os {
        if cfg!(target_os = "macos") {
            Os::MacOs
        } else if cfg!(windows) {
            Os::Windows
        } else {
            Os::Linux
        }
    }
}

/// The environment the paths come from, read once so the path rules stay pure functions.
#[derive(Debug, Clone, Default)]
pub struct Env {
    /// The home dir: `HOME` (`USERPROFILE` on Windows when `HOME` is unset).
    pub home: Option<PathBuf>,
    /// `XDG_CONFIG_HOME` (Linux only).
    pub xdg_config_home: Option<PathBuf>,
    /// `APPDATA` (Windows only).
    pub appdata: Option<PathBuf>,
    /// `CODEX_HOME`, where Codex keeps `config.toml` instead of `~/.codex`.
    pub codex_home: Option<PathBuf>,
}

impl Env {
    /// The process's environment (empty variables count as unset).
    pub fn from_process() -> Env {
        let var = |name: &str| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let home = var("HOME")
            .or_else(|| var("USERPROFILE"))
            .or_else(dirs::home_dir);
        Env {
            home,
            xdg_config_home: var("XDG_CONFIG_HOME"),
            appdata: var("APPDATA"),
            codex_home: var("CODEX_HOME"),
        }
    }
}

/// Where one host's config lives on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// The config file.
    pub file: PathBuf,
    /// The dir whose presence says the host is installed: the file is created when it is
    /// missing but this dir exists.
    pub host_dir: PathBuf,
}

impl Host {
    /// Looks a host up by its `--host` id.
    pub fn by_id(id: &str) -> Option<Host> {
        HOSTS.into_iter().find(|h| h.id == id)
    }

    /// The peer port its agent listens on.
    pub fn port(&self) -> u16 {
        7810 + self.slot
    }

    /// The HTTP (REST/SSE, `/mcp`) port of its agent.
    pub fn http_port(&self) -> u16 {
        7910 + self.slot
    }

    /// Its config file and host dir on `os`, or why there is none (no home dir).
    pub fn place(&self, env: &Env, os: Os) -> Result<Place, String> {
        let home = env
            .home
            .clone()
            .ok_or("no home dir: set HOME (USERPROFILE on Windows)")?;
        // The per-user application config dir of the desktop apps (Claude, VS Code).
        let app_config = match os {
            Os::Linux => env
                .xdg_config_home
                .clone()
                .filter(|p| p.is_absolute())
                .unwrap_or_else(|| home.join(".config")),
            Os::MacOs => home.join("Library").join("Application Support"),
            Os::Windows => env
                .appdata
                .clone()
                .unwrap_or_else(|| home.join("AppData").join("Roaming")),
        };
        let (host_dir, file) = match self.id {
            "claude-desktop" => {
                let dir = app_config.join("Claude");
                (dir.clone(), dir.join("claude_desktop_config.json"))
            }
            "cursor" => {
                let dir = home.join(".cursor");
                (dir.clone(), dir.join("mcp.json"))
            }
            // Claude Code keeps its user config in one file beside its `~/.claude` dir.
            "claude-code" => (home.join(".claude"), home.join(".claude.json")),
            "vscode" => {
                let dir = app_config.join("Code");
                (dir.clone(), dir.join("User").join("mcp.json"))
            }
            "windsurf" => {
                let dir = home.join(".codeium").join("windsurf");
                (dir.clone(), dir.join("mcp_config.json"))
            }
            "codex" => {
                let dir = env
                    .codex_home
                    .clone()
                    .unwrap_or_else(|| home.join(".codex"));
                (dir.clone(), dir.join("config.toml"))
            }
            other => return Err(format!("no paths for host {other}")),
        };
        Ok(Place { file, host_dir })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Env {
        Env {
            home: Some(PathBuf::from("/h")),
            xdg_config_home: None,
            appdata: Some(PathBuf::from("/appdata")),
            codex_home: None,
        }
    }

    #[test]
    fn every_host_has_its_own_ports_and_a_file_on_every_os() {
        let mut ports = std::collections::HashSet::new();
        for h in HOSTS {
            assert!(
                ports.insert(h.port()) && ports.insert(h.http_port()),
                "{h:?}"
            );
            assert_eq!(Host::by_id(h.id), Some(h));
            for os in [Os::Linux, Os::MacOs, Os::Windows] {
                let place = h.place(&env(), os).unwrap();
                assert!(place.file.starts_with("/h") || place.file.starts_with("/appdata"));
            }
        }
        assert!(!ports.contains(&7801) && !ports.contains(&7901));
    }

    #[test]
    fn paths_follow_the_environment() {
        let claude = Host::by_id("claude-desktop").unwrap();
        let linux = claude.place(&env(), Os::Linux).unwrap().file;
        assert_eq!(
            linux,
            PathBuf::from("/h/.config/Claude/claude_desktop_config.json")
        );
        let mut e = env();
        e.xdg_config_home = Some(PathBuf::from("/xdg"));
        let xdg = claude.place(&e, Os::Linux).unwrap().file;
        assert_eq!(xdg, PathBuf::from("/xdg/Claude/claude_desktop_config.json"));
        let win = claude.place(&e, Os::Windows).unwrap().file;
        assert_eq!(
            win,
            PathBuf::from("/appdata/Claude/claude_desktop_config.json")
        );
        let mac = Host::by_id("vscode").unwrap().place(&e, Os::MacOs).unwrap();
        assert_eq!(
            mac.file,
            PathBuf::from("/h/Library/Application Support/Code/User/mcp.json")
        );
        e.codex_home = Some(PathBuf::from("/cx"));
        let codex = Host::by_id("codex").unwrap().place(&e, Os::Linux).unwrap();
        assert_eq!(codex.file, PathBuf::from("/cx/config.toml"));
        assert!(claude.place(&Env::default(), Os::Linux).is_err());
    }
}

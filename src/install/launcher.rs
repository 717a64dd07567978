//! Which command a host's entry should run: the way the user started this binary.
//!
//! `uvx acp-relay install …` and `npx -y acp-relay install …` run the binary out of a cache
//! that uv and npm may empty at any time (uv's `archive-v0` / `environments-v2`, npm's
//! `_npx`). An entry holding that path would break the day the cache is cleaned, and would
//! never see an update, so such a run writes the launcher instead (`uvx acp-relay mcp …`,
//! `npx -y acp-relay mcp …`), as the user would have written it by hand. Anything else
//! (`cargo install`, `uv tool install`, `pipx`, `npm install -g`, an unpacked archive) is a
//! stable place, and the entry holds the binary's absolute path as before.
//!
//! The launcher's own path is written absolute when it can be found, because hosts start
//! servers with a minimal `PATH` (Claude Desktop on macOS does not see `~/.local/bin`).

use std::ffi::OsStr;
use std::path::{Component, Path, PathBuf};

/// The package name on PyPI and npm.
const PACKAGE: &str = "acp-relay";

/// How the host should start acp-relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Launcher {
    /// Through `uvx` (its path, or the bare name when it cannot be found).
    Uvx(String),
    /// Through `npx -y` (its path, or the bare name).
    Npx(String),
    /// This binary, by its absolute path.
    Binary(String),
}

/// What detection reads from the process, gathered in one place so tests can supply it.
#[derive(Debug, Clone, Default)]
pub struct Surroundings {
    /// `UV`: uv sets it, for every process it starts, to its own path.
    pub uv: Option<PathBuf>,
    /// `PATH`, to find `uvx` or `npx` when uv did not say where it is.
    pub path: Option<std::ffi::OsString>,
}

impl Surroundings {
    /// The running process's.
    pub fn from_process() -> Surroundings {
        Surroundings {
            uv: std::env::var_os("UV").map(PathBuf::from),
            path: std::env::var_os("PATH"),
        }
    }
}

impl Launcher {
    /// The launcher for a binary at `exe` (already canonical, symlinks resolved).
    pub fn detect(exe: &str, around: &Surroundings) -> Launcher {
        let path = Path::new(exe);
        if in_dir_named(path, |name| {
            is_versioned(name, "archive-v") || is_versioned(name, "environments-v")
        }) {
            let sibling = around
                .uv
                .as_deref()
                .and_then(Path::parent)
                .map(|dir| dir.join(executable("uvx")))
                .filter(|p| p.is_file());
            let uvx = sibling.or_else(|| on_path(around.path.as_deref(), "uvx"));
            return Launcher::Uvx(shown(uvx, "uvx"));
        }
        if in_dir_named(path, |name| name == "_npx") {
            return Launcher::Npx(shown(on_path(around.path.as_deref(), "npx"), "npx"));
        }
        Launcher::Binary(exe.to_owned())
    }

    /// The entry's command and the arguments that come before acp-relay's own.
    pub fn command(&self) -> (String, Vec<String>) {
        match self {
            Launcher::Uvx(uvx) => (uvx.clone(), vec![PACKAGE.to_owned()]),
            Launcher::Npx(npx) => (npx.clone(), vec!["-y".to_owned(), PACKAGE.to_owned()]),
            Launcher::Binary(path) => (path.clone(), Vec::new()),
        }
    }
}

/// Whether any directory above the file has a name that `pick` accepts.
fn in_dir_named(file: &Path, pick: impl Fn(&str) -> bool) -> bool {
    file.parent().is_some_and(|dir| {
        dir.components().any(|c| match c {
            Component::Normal(name) => name.to_str().is_some_and(&pick),
            _ => false,
        })
    })
}

/// `archive-v0`, `environments-v2`: a cache bucket of uv's, any format version.
fn is_versioned(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix)
        .is_some_and(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
}

/// `name` with the platform's executable suffix.
fn executable(name: &str) -> String {
    format!("{name}{}", std::env::consts::EXE_SUFFIX)
}

/// The first `name` on `PATH` that is a file (`npx.cmd` on Windows, where npm's shims are
/// batch files).
fn on_path(path: Option<&OsStr>, name: &str) -> Option<PathBuf> {
    let names: Vec<String> = if cfg!(windows) {
        vec![format!("{name}.exe"), format!("{name}.cmd")]
    } else {
        vec![name.to_owned()]
    };
    std::env::split_paths(path?)
        .filter(|dir| dir.is_absolute())
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

/// The path as text, or the bare name when it is unknown or not UTF-8.
fn shown(found: Option<PathBuf>, bare: &str) -> String {
    found
        .and_then(|p| p.to_str().map(str::to_owned))
        .unwrap_or_else(|| bare.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nothing() -> Surroundings {
        Surroundings::default()
    }

    #[test]
    fn a_stable_install_is_written_as_its_path() {
        for exe in [
            "/home/u/.cargo/bin/acp-relay",
            "/home/u/.local/share/uv/tools/acp-relay/bin/acp-relay",
            "/home/u/.local/pipx/venvs/acp-relay/bin/acp-relay",
            "/usr/lib/node_modules/acp-relay-linux-x64/bin/acp-relay",
            "/opt/archive-vault/acp-relay",
        ] {
            assert_eq!(
                Launcher::detect(exe, &nothing()),
                Launcher::Binary(exe.to_owned()),
                "{exe}"
            );
        }
    }

    #[test]
    fn a_run_from_uvs_cache_is_written_as_uvx() {
        for exe in [
            "/home/u/.cache/uv/archive-v0/AbC123/bin/acp-relay",
            "/Users/u/.cache/uv/environments-v2/acp-relay-0f1e/bin/acp-relay",
        ] {
            let launcher = Launcher::detect(exe, &nothing());
            assert_eq!(launcher, Launcher::Uvx("uvx".into()), "{exe}");
            assert_eq!(
                launcher.command(),
                ("uvx".to_owned(), vec!["acp-relay".to_owned()])
            );
        }
    }

    #[test]
    fn uvx_is_found_beside_uv_then_on_path() {
        let dir = tempfile::tempdir().unwrap();
        let uv_dir = dir.path().join("uv-home");
        std::fs::create_dir(&uv_dir).unwrap();
        let exe = "/c/uv/archive-v0/x/bin/acp-relay";
        // Beside `UV` only when the file is there.
        let around = Surroundings {
            uv: Some(uv_dir.join(executable("uv"))),
            path: None,
        };
        assert_eq!(Launcher::detect(exe, &around), Launcher::Uvx("uvx".into()));
        let uvx = uv_dir.join(executable("uvx"));
        std::fs::write(&uvx, "").unwrap();
        assert_eq!(
            Launcher::detect(exe, &around),
            Launcher::Uvx(uvx.to_str().unwrap().into())
        );
        // On PATH: the first directory that has it; relative PATH entries are skipped.
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        std::fs::write(bin.join(if cfg!(windows) { "uvx.exe" } else { "uvx" }), "").unwrap();
        let path = std::env::join_paths([PathBuf::from("relative"), bin.clone()]).unwrap();
        let around = Surroundings {
            uv: None,
            path: Some(path),
        };
        let found = Launcher::detect(exe, &around);
        let Launcher::Uvx(text) = found else {
            panic!("{found:?}")
        };
        assert!(text.starts_with(bin.to_str().unwrap()), "{text}");
    }

    #[test]
    fn a_run_from_npxs_cache_is_written_as_npx() {
        let exe = "/home/u/.npm/_npx/4d2f/node_modules/acp-relay-linux-x64/bin/acp-relay";
        let launcher = Launcher::detect(exe, &nothing());
        assert_eq!(launcher, Launcher::Npx("npx".into()));
        assert_eq!(
            launcher.command(),
            (
                "npx".to_owned(),
                vec!["-y".to_owned(), "acp-relay".to_owned()]
            )
        );
    }

    #[test]
    fn only_the_directories_count_and_only_versioned_buckets() {
        // The file's own name is not a directory; `archive-v` needs digits after it.
        for exe in [
            "/x/_npx",
            "/x/archive-v0",
            "/x/archive-v/bin/acp-relay",
            "/x/archive-vx1/bin/acp-relay",
            "/x/my_npx/bin/acp-relay",
        ] {
            assert!(
                matches!(Launcher::detect(exe, &nothing()), Launcher::Binary(_)),
                "{exe}"
            );
        }
    }
}

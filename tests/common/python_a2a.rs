//! The official A2A Python SDK for interop tests: a venv under the target dir with exactly
//! what `tests/a2a_py/requirements.txt` pins (`a2a-sdk[http-server]` 1.3, uvicorn), made from
//! PyPI on first use and reused after. The test scripts in `tests/a2a_py/` run in it.
//!
//! Without Python or PyPI a developer's run says why and skips; under `CI=true` the same is a
//! failure, because a skipped interop test proves nothing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The pinned requirements, compiled in so a change to them makes a new venv.
const REQUIREMENTS: &str = include_str!("../a2a_py/requirements.txt");

/// The venv's Python with the A2A SDK installed, or `None` (after printing why) when it cannot
/// be made outside CI. Panics under `CI=true` instead of returning `None`.
pub fn a2a_python() -> Option<PathBuf> {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match PYTHON.get_or_init(make_venv) {
        Ok(python) => Some(python.clone()),
        Err(why) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("the A2A Python SDK is required on CI: {why}")
        }
        Err(why) => {
            eprintln!("skipping the A2A interop part: {why}");
            None
        }
    }
}

/// A script of `tests/a2a_py/` by file name.
pub fn a2a_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/a2a_py")
        .join(name)
}

/// Builds the venv in a private directory and renames it into place, so test processes
/// that race (nextest runs binaries in parallel) each end with a complete venv: the loser's
/// rename fails on the winner's directory and it uses that one.
fn make_venv() -> Result<PathBuf, String> {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dir = root.join(format!("a2a-venv-{:016x}", fnv1a(REQUIREMENTS)));
    let python = dir.join("bin/python");
    if dir.join(".ready").exists() {
        return Ok(python);
    }
    let base = std::env::var("ACP_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let staging = root.join(format!("a2a-venv-staging-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    run(Command::new(&base).args(["-m", "venv"]).arg(&staging))?;
    let requirements = staging.join("requirements.txt");
    std::fs::write(&requirements, REQUIREMENTS).map_err(|e| e.to_string())?;
    run(Command::new(staging.join("bin/python"))
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
        ])
        .arg(&requirements))?;
    std::fs::write(staging.join(".ready"), "").map_err(|e| e.to_string())?;
    // A venv records its own path in its scripts; `bin/python -m …` does not use them, and
    // the interpreter finds its site-packages relative to itself, so a renamed venv works.
    if std::fs::rename(&staging, &dir).is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    if dir.join(".ready").exists() {
        Ok(python)
    } else {
        Err(format!("could not put the venv at {}", dir.display()))
    }
}

/// Runs a set-up command, turning a failure into the reason a test prints.
fn run(cmd: &mut Command) -> Result<(), String> {
    let shown = format!("{cmd:?}");
    let out = cmd.output().map_err(|e| format!("{shown}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{shown} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A stable hash for the venv's name (std's hasher may change between releases).
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

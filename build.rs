//! Build script: tells the crate which commit it was built from, so that `acp-relay --version`
//! and `/status` name it (a bug report then says exactly what was running).
//!
//! Where the commit comes from, first match wins:
//! 1. `ACP_RELAY_COMMIT` in the build's environment (release jobs may set it explicitly);
//! 2. `git rev-parse` in the source tree (a clone, `cargo install --path .`, the wheel and npm
//!    builds of the release workflow);
//! 3. `.cargo_vcs_info.json`, which `cargo package` writes into a published crate
//!    (`cargo install acp-relay` from crates.io has no `.git`);
//! 4. `unknown`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=ACP_RELAY_COMMIT");
    let commit = std::env::var("ACP_RELAY_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .map(|c| c.trim().to_owned())
        .or_else(from_git)
        .or_else(from_vcs_info)
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=ACP_RELAY_COMMIT={commit}");
}

/// Runs git in the crate's directory; `None` when git or the repository is missing.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!text.is_empty()).then_some(text)
}

/// The short hash of `HEAD`, and rerun triggers so that a new commit rebuilds with its hash.
fn from_git() -> Option<String> {
    let commit = git(&["rev-parse", "--short=12", "HEAD"])?;
    // A worktree has its own HEAD; branch refs live in the common dir (loose or packed).
    let abs = |p: String| -> PathBuf {
        let p = PathBuf::from(p);
        if p.is_absolute() {
            p
        } else {
            Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
        }
    };
    if let Some(git_dir) = git(&["rev-parse", "--git-dir"]).map(abs) {
        watch(&git_dir.join("HEAD"));
    }
    if let Some(common) = git(&["rev-parse", "--git-common-dir"]).map(abs) {
        watch(&common.join("packed-refs"));
        if let Some(head_ref) = git(&["symbolic-ref", "-q", "HEAD"]) {
            let loose = common.join(head_ref);
            if loose.exists() {
                watch(&loose);
            } else {
                // After `git gc` the branch lives only in packed-refs, and the next commit
                // creates its loose file anew: watch the folder until then. (Not always:
                // other worktrees' commits would rebuild this one.)
                watch(&common.join("refs").join("heads"));
            }
        }
    }
    Some(commit)
}

/// Rebuild when `path` changes. Only paths that exist: cargo reruns a build script whose
/// watched file is missing on every build.
fn watch(path: &Path) {
    if path.exists() {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

/// `{"git": {"sha1": "…"}}` from a packaged crate.
fn from_vcs_info() -> Option<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(".cargo_vcs_info.json");
    watch(&path);
    let text = std::fs::read_to_string(path).ok()?;
    // No JSON crate in build-dependencies for one field: find `"sha1": "<hex>"`.
    let rest = &text[text.find("\"sha1\"")? + 6..];
    let start = rest.find('"')? + 1;
    let hex: String = rest[start..]
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .collect();
    (hex.len() >= 12).then(|| hex[..12].to_owned())
}

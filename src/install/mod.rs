//! `acp-relay install --host …` and `acp-relay uninstall --host …`: one command instead of
//! hand-editing each MCP host's config. It writes one `acp-relay` entry that starts acp-relay
//! the way the user did (this binary by its absolute path, so the host's minimal `PATH` does
//! not matter; or `uvx acp-relay` / `npx -y acp-relay` when it ran from their caches) as
//! `mcp --name <host> --port <p> --http-port <h>`, with a port pair of the host's own so two
//! hosts never collide and each keeps its link. Everything else in the file stays as it was;
//! the file is backed up before every write; a file it cannot parse is left alone.
//!
//! - `hosts` — the host table: config paths per OS, key, port pair.
//! - `launcher` — which command the entry runs: the binary's path, `uvx` or `npx`.
//! - `json`, `toml_doc` — the edits, pure functions on the file's text.
//! - this file — the command: find, edit, back up, write, report.

pub mod edit;
pub mod hosts;
pub mod json;
pub mod launcher;
pub mod toml_doc;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use edit::{Change, Edit, Entry, SERVER};
use hosts::{Env, Format, HOSTS, Host, Os};
use launcher::{Launcher, Surroundings};

/// Flags of `acp-relay install`.
#[derive(Debug, Clone, clap::Args)]
pub struct InstallArgs {
    /// The MCP host whose user config gets the entry: claude-desktop, cursor, claude-code,
    /// vscode, windsurf, codex, or all (every one of them found on this machine; the others
    /// are skipped with a line).
    #[arg(long, value_parser = host_choice)]
    pub host: String,
    /// The agent's name (what peers see; it also picks the data dir). Default: the host's id.
    #[arg(long)]
    pub name: Option<String>,
    /// Print what would change, entry included, and write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Flags of `acp-relay uninstall`.
#[derive(Debug, Clone, clap::Args)]
pub struct UninstallArgs {
    /// The MCP host to remove the `acp-relay` entry from (or all).
    #[arg(long, value_parser = host_choice)]
    pub host: String,
    /// Print what would change and write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

fn host_choice(s: &str) -> Result<String, String> {
    if s == "all" || Host::by_id(s).is_some() {
        return Ok(s.to_owned());
    }
    let ids: Vec<&str> = HOSTS.iter().map(|h| h.id).collect();
    Err(format!("unknown host; one of: {}, all", ids.join(", ")))
}

/// What one host's run came to.
enum Outcome {
    /// The host is not on this machine (only `all` goes on past it).
    NotFound(String),
    /// Done (written, already so, or dry run).
    Done,
}

/// `acp-relay install`.
pub fn install(args: &InstallArgs) -> ExitCode {
    if let Some(name) = &args.name {
        if args.host == "all" {
            eprintln!(
                "acp-relay: --name with --host all would give every host the same agent; name them one host at a time"
            );
            return ExitCode::from(2);
        }
        if name.trim().is_empty() || name.len() > 128 {
            eprintln!("acp-relay: --name must be 1 to 128 characters");
            return ExitCode::from(2);
        }
    }
    let launcher = match binary_path() {
        Ok(exe) => Launcher::detect(&exe, &Surroundings::from_process()),
        Err(e) => {
            eprintln!("acp-relay: {e}");
            return ExitCode::FAILURE;
        }
    };
    run(&args.host, args.dry_run, |host, text| {
        let name = args.name.clone().unwrap_or_else(|| host.id.to_owned());
        let entry = entry_for(host, &name, &launcher);
        match host.format {
            Format::Json { key, typed } => json::install(text, key, &entry, typed),
            Format::Toml => toml_doc::install(text, &entry),
        }
    })
}

/// `acp-relay uninstall`.
pub fn uninstall(args: &UninstallArgs) -> ExitCode {
    run(&args.host, args.dry_run, |host, text| match host.format {
        Format::Json { key, .. } => json::uninstall(text, key),
        Format::Toml => toml_doc::uninstall(text),
    })
}

/// The entry that starts acp-relay, through `launcher`, as `host`'s agent.
pub fn entry_for(host: &Host, name: &str, launcher: &Launcher) -> Entry {
    let (command, mut args) = launcher.command();
    args.extend(
        [
            "mcp",
            "--name",
            name,
            "--port",
            &host.port().to_string(),
            "--http-port",
            &host.http_port().to_string(),
        ]
        .map(str::to_owned),
    );
    Entry { command, args }
}

/// Runs `edit` on every selected host's config and reports each; fails when any host fails
/// (or, for `all`, when no host is found at all).
fn run(which: &str, dry_run: bool, edit: impl Fn(&Host, &str) -> Result<Edit, String>) -> ExitCode {
    let env = Env::from_process();
    let os = Os::current();
    let all = which == "all";
    let hosts: Vec<Host> = HOSTS.into_iter().filter(|h| all || h.id == which).collect();
    let (mut failed, mut found) = (false, 0);
    for host in &hosts {
        match one(host, &env, os, dry_run, &edit) {
            Ok(Outcome::Done) => found += 1,
            Ok(Outcome::NotFound(why)) if all => println!("{}: skipped: {why}", host.id),
            Ok(Outcome::NotFound(why)) => {
                eprintln!("acp-relay: {}: {why}", host.id);
                failed = true;
            }
            Err(e) => {
                eprintln!("acp-relay: {}: {e}", host.id);
                failed = true;
            }
        }
    }
    if all && found == 0 && !failed {
        eprintln!("acp-relay: no MCP host found on this machine");
        failed = true;
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// One host: read its file, edit, back up, write, report.
fn one(
    host: &Host,
    env: &Env,
    os: Os,
    dry_run: bool,
    edit: &impl Fn(&Host, &str) -> Result<Edit, String>,
) -> Result<Outcome, String> {
    let place = host.place(env, os)?;
    // A symlinked config (a dotfiles repo) is edited where it points, the link kept.
    let file = std::fs::canonicalize(&place.file).unwrap_or(place.file.clone());
    let shown = file.display();
    let original = match std::fs::read_to_string(&file) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(format!("cannot read {shown}: {e}")),
    };
    if original.is_none() && !place.host_dir.is_dir() {
        return Ok(Outcome::NotFound(format!(
            "not installed (no {})",
            place.host_dir.display()
        )));
    }
    let text = original.as_deref().unwrap_or("");
    let result = edit(host, text).map_err(|e| format!("{shown} {e}; nothing changed"))?;
    let verb = match (&result.change, dry_run) {
        (Change::Unchanged, _) => {
            println!("{}: already installed in {shown}", host.id);
            return Ok(Outcome::Done);
        }
        (Change::Absent, _) => {
            let why = if original.is_some() {
                ""
            } else {
                " (no such file)"
            };
            println!(
                "{}: {SERVER} is not in {shown}{why}; nothing to remove",
                host.id
            );
            return Ok(Outcome::Done);
        }
        (Change::Added, false) => "added",
        (Change::Added, true) => "would add",
        (Change::Updated { .. }, false) => "updated",
        (Change::Updated { .. }, true) => "would update",
        (Change::Removed, false) => "removed",
        (Change::Removed, true) => "would remove",
    };
    let into = if matches!(result.change, Change::Removed) {
        "from"
    } else if original.is_none() {
        "in a new"
    } else {
        "in"
    };
    let mut line = format!("{}: {verb} {SERVER} {into} {shown}", host.id);
    if !dry_run {
        let backup = write(&file, original.as_deref(), &result.text)
            .map_err(|e| format!("cannot write {shown}: {e}"))?;
        if let Some(b) = backup {
            line.push_str(&format!(" (backup: {})", b.display()));
        }
    }
    println!("{line}");
    if let Change::Updated { before } = &result.change {
        println!("  was:");
        println!("{}", indent(before));
        println!("  now:");
    }
    println!("{}", indent(&result.entry));
    Ok(Outcome::Done)
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Backs up the original (when there is one) to the first free `<file>.bak`, `<file>.bak.2`…
/// (a backup is never overwritten), then replaces the file in one rename so a host reading it
/// meanwhile never sees half of it. Returns the backup's path.
fn write(file: &Path, original: Option<&str>, text: &str) -> std::io::Result<Option<PathBuf>> {
    let with_suffix = |suffix: &str| {
        let mut name = file.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    let backup = match original {
        None => {
            if let Some(parent) = file.parent() {
                std::fs::create_dir_all(parent)?;
            }
            None
        }
        Some(_) => {
            let free = (1..1000)
                .map(|n| {
                    with_suffix(&if n == 1 {
                        ".bak".into()
                    } else {
                        format!(".bak.{n}")
                    })
                })
                .find(|p| !p.exists())
                .ok_or_else(|| std::io::Error::other("no free backup name (.bak … .bak.999)"))?;
            // `copy` keeps the file's permissions: a config may hold secrets in `env`.
            std::fs::copy(file, &free)?;
            Some(free)
        }
    };
    let tmp = with_suffix(".acp-relay-tmp");
    std::fs::write(&tmp, text)?;
    if original.is_some()
        && let Ok(meta) = std::fs::metadata(file)
    {
        std::fs::set_permissions(&tmp, meta.permissions())?;
    }
    if let Err(e) = std::fs::rename(&tmp, file) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(backup)
}

/// The absolute path of the running binary, as hosts must launch it.
fn binary_path() -> Result<String, String> {
    let exe = std::env::current_exe()
        .and_then(std::fs::canonicalize)
        .map_err(|e| format!("cannot find the path of this binary: {e}"))?;
    let text = exe
        .to_str()
        .ok_or_else(|| format!("the path of this binary is not UTF-8: {}", exe.display()))?;
    // Windows' canonical form `\\?\C:\…` is not what hosts expect in a command.
    Ok(text.strip_prefix(r"\\?\").unwrap_or(text).to_owned())
}

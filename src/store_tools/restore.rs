//! `acp-relay restore FILE`: puts a backup into an empty data dir, exactly as it was.
//!
//! The file is checked first (an SQLite file, `PRAGMA integrity_check`, an acp-relay store,
//! a schema version this binary knows), then copied page by page with SQLite's backup API:
//! every row keeps its rowid, message id, `server_seq`, peer id and the `AUTOINCREMENT`
//! counters, so a node started on the data dir shows the same conversations with the same
//! peers and numbers new messages after the old ones. An older schema is upgraded by the
//! node's migrations at its first start, as for any store. Only an empty (or absent) data
//! dir is accepted: a restore never mixes with, or replaces, a store that is there. The
//! data dir's lock is held while the copy is written, so a node cannot start on it halfway.

use std::path::{Path, PathBuf};

use clap::Args;
use rusqlite::Connection;

use super::{StoreLocation, ToolError};

/// Flags of `acp-relay restore`.
#[derive(Debug, Clone, Args)]
pub struct RestoreArgs {
    /// The backup to restore (made by `acp-relay backup`, or a stopped node's node.db).
    pub file: PathBuf,

    /// The node's keypair file (`identity.json` from the old data dir) to restore with the
    /// store, so the node keeps its did:acp identity and peers that pinned its key accept it.
    #[arg(long)]
    pub identity: Option<PathBuf>,

    #[command(flatten)]
    pub store: StoreLocation,
}

/// `acp-relay restore`: restores and prints one line saying what the data dir now holds.
pub fn run(args: &RestoreArgs) -> std::process::ExitCode {
    super::exit_code(restore(args).map(|line| println!("{line}")))
}

/// Restores `args.file` into the data dir; returns the summary line.
pub fn restore(args: &RestoreArgs) -> Result<String, ToolError> {
    let dir = args.store.dir()?;
    refuse_unless_empty(&dir)?;
    let src = super::open_read_only(&args.file)?;
    if let Some(problem) = super::integrity_problem(&src).map_err(|e| {
        ToolError(format!(
            "{} cannot be read as a store (SQLite: {e})",
            args.file.display()
        ))
    })? {
        return Err(ToolError(format!(
            "{} fails integrity_check ({problem}): restore another backup",
            args.file.display()
        )));
    }
    let version = super::check_store(&args.file, &src)?;
    let keypair = match &args.identity {
        Some(path) => Some(read_keypair(path)?),
        None => None,
    };
    let created = !dir.exists();
    crate::node::store::create_private_dir(&dir).map_err(|e| ToolError(e.message))?;
    let written = write_store(&dir, &src, &args.file, keypair.as_deref());
    drop(src);
    let counts = match written {
        Ok(c) => c,
        Err(e) => {
            // Leave the data dir as it was found (a retry then finds it empty again); a dir
            // that holds anything now (a node started on it) stays.
            if created {
                let _ = std::fs::remove_dir(&dir);
            }
            return Err(e);
        }
    };
    let target = dir.join(super::STORE_FILE);
    Ok(format!(
        "restored {} into {}: {} messages, {} peers, {} tasks, schema v{version}{}",
        args.file.display(),
        target.display(),
        counts.messages,
        counts.peers,
        counts.tasks,
        if args.identity.is_some() {
            ", with its identity.json"
        } else {
            ""
        }
    ))
}

/// Under the data dir's lock: the store (and the keypair) written beside their final names,
/// then renamed into place. On failure nothing of it is left behind.
fn write_store(
    dir: &Path,
    src: &Connection,
    source: &Path,
    keypair: Option<&str>,
) -> Result<super::Counts, ToolError> {
    let _lock = lock(dir)?;
    let target = dir.join(super::STORE_FILE);
    // A node that started and stopped between the check and the lock made its store.
    if target.exists() {
        return Err(ToolError(format!(
            "data dir {} got a store while restoring (a node started on it?); nothing was restored",
            dir.display()
        )));
    }
    let partial = super::temp_beside(&target);
    let done = (|| {
        let counts = copy_into(src, source, &partial)?;
        if let Some(text) = keypair {
            write_private(&dir.join("identity.json"), text)?;
        }
        std::fs::rename(&partial, &target)
            .map_err(|e| ToolError(format!("cannot write {}: {e}", target.display())))?;
        super::sync_dir(dir);
        Ok(counts)
    })();
    if done.is_err() {
        super::remove_with_side_files(&partial);
        if keypair.is_some() && !target.exists() {
            let _ = std::fs::remove_file(dir.join("identity.json"));
        }
        // Still ours: removed before the lock is let go.
        let _ = std::fs::remove_file(dir.join("lock"));
    }
    done
}

/// Refuses a data dir that holds anything (or is not a directory).
fn refuse_unless_empty(dir: &Path) -> Result<(), ToolError> {
    if !dir.exists() {
        return Ok(());
    }
    if !dir.is_dir() {
        return Err(ToolError(format!(
            "{} is not a directory: restore needs an empty data dir",
            dir.display()
        )));
    }
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| ToolError(format!("cannot read data dir {}: {e}", dir.display())))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    if names.is_empty() {
        return Ok(());
    }
    names.sort();
    let shown = if names.len() > 4 {
        format!("{}, …", names[..4].join(", "))
    } else {
        names.join(", ")
    };
    Err(ToolError(format!(
        "data dir {} is not empty (holds {shown}): restore only into an empty data dir \
         (pass another --data-dir, or move its contents away first)",
        dir.display()
    )))
}

/// Takes the data dir's lock as a node does, so none starts on the dir during the copy.
fn lock(dir: &Path) -> Result<std::fs::File, ToolError> {
    let path = dir.join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| ToolError(format!("cannot open {}: {e}", path.display())))?;
    file.try_lock().map_err(|_| {
        ToolError(format!(
            "data dir {} is in use by an acp-relay; stop it first",
            dir.display()
        ))
    })?;
    Ok(file)
}

/// Copies the checked source into the new file `target` and counts what it holds.
fn copy_into(src: &Connection, source: &Path, target: &Path) -> Result<super::Counts, ToolError> {
    let write_err =
        |e: rusqlite::Error| ToolError(format!("cannot write {}: {e}", target.display()));
    drop(super::create_private_file(target)?);
    let mut dst = Connection::open(target).map_err(write_err)?;
    super::backup::copy_snapshot(src, &mut dst, source, super::backup::STEP_PAGES)?;
    // The node switches it to WAL at its first start.
    dst.pragma_update(None, "journal_mode", "DELETE")
        .map_err(write_err)?;
    if let Some(problem) = super::integrity_problem(&dst).map_err(write_err)? {
        return Err(ToolError(format!(
            "the restored copy of {} fails integrity_check ({problem}); nothing was restored",
            source.display()
        )));
    }
    let counts = super::counts(&dst).map_err(write_err)?;
    dst.close().map_err(|(_, e)| write_err(e))?;
    std::fs::File::open(target)
        .and_then(|f| f.sync_all())
        .map_err(|e| ToolError(format!("cannot write {}: {e}", target.display())))?;
    Ok(counts)
}

/// Reads and checks a keypair file.
fn read_keypair(path: &Path) -> Result<String, ToolError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ToolError(format!("cannot read {}: {e}", path.display())))?;
    crate::wire::identity::Identity::from_file_text(&text)
        .map_err(|e| ToolError(format!("{} is not a keypair file: {e}", path.display())))?;
    Ok(text)
}

/// Writes a file only its owner can read (the keypair's secret key).
fn write_private(path: &Path, text: &str) -> Result<(), ToolError> {
    use std::io::Write;
    let mut f = super::create_private_file(path)?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| ToolError(format!("cannot write {}: {e}", path.display())))
}

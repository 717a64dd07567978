//! `acp-relay backup FILE`: a consistent copy of a node's store, made while the node runs.
//!
//! SQLite's online backup API copies the database page by page. The copy reads inside one
//! read transaction on the live store, so every page comes from the same committed snapshot
//! (what was committed when the backup started: every message the node had acknowledged),
//! and the backup never restarts however much the node writes meanwhile. A WAL reader never
//! blocks the node's writer; between steps the copy pauses briefly so that its disk reads
//! leave room for the node's commits. The copy is written under a temporary name, switched
//! to rollback-journal mode (one self-contained file, no `-wal` beside it), checked with
//! `PRAGMA integrity_check` and only then renamed to FILE.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use rusqlite::Connection;
use rusqlite::backup::{Backup, StepResult};

use super::{StoreLocation, ToolError};

/// Flags of `acp-relay backup`.
#[derive(Debug, Clone, Args)]
pub struct BackupArgs {
    /// Where the copy goes (a new file; see --force).
    pub file: PathBuf,

    /// Replace FILE if it exists.
    #[arg(long)]
    pub force: bool,

    /// Pages copied per step (tuning; the tests copy one page per step to make the copy
    /// long while a node writes).
    #[arg(long, default_value_t = STEP_PAGES, hide = true,
          value_parser = clap::value_parser!(i32).range(1..))]
    pub step_pages: i32,

    #[command(flatten)]
    pub store: StoreLocation,
}

/// Pages copied per step: 4 MiB at the store's 1 KiB pages.
pub const STEP_PAGES: std::ffi::c_int = 4096;
/// Pause between steps, so the copy's reads do not crowd out the node's commits.
const STEP_PAUSE: Duration = Duration::from_millis(2);

/// What a finished backup reports.
#[derive(Debug, Clone)]
pub struct BackupReport {
    /// The copy.
    pub file: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// What it holds.
    pub counts: super::Counts,
    /// Its schema version.
    pub schema_version: i64,
}

impl std::fmt::Display for BackupReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "backup {}: {} bytes, {} messages, {} peers, {} tasks, schema v{}, integrity ok",
            self.file.display(),
            self.bytes,
            self.counts.messages,
            self.counts.peers,
            self.counts.tasks,
            self.schema_version
        )
    }
}

/// `acp-relay backup`: makes the copy and prints its one-line report.
pub fn run(args: &BackupArgs) -> std::process::ExitCode {
    super::exit_code(backup(args).map(|report| println!("{report}")))
}

/// Copies the store named by `args.store` to `args.file`.
pub fn backup(args: &BackupArgs) -> Result<BackupReport, ToolError> {
    let source = args.store.store_file()?;
    super::refuse_inside(&args.file, &args.store.dir()?)?;
    if args.file.exists() && !args.force {
        return Err(ToolError(format!(
            "{} exists: pass --force to replace it, or choose another file",
            args.file.display()
        )));
    }
    if args.file.is_dir() {
        return Err(ToolError(format!(
            "{} is a directory: name the backup file",
            args.file.display()
        )));
    }
    let parent = match args.file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    if !parent.is_dir() {
        return Err(ToolError(format!(
            "cannot write {}: directory {} does not exist",
            args.file.display(),
            parent.display()
        )));
    }
    let partial = super::temp_beside(&args.file);
    let result = copy_checked(&source, &partial, args.step_pages);
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            super::remove_with_side_files(&partial);
            return Err(e);
        }
    };
    std::fs::rename(&partial, &args.file).map_err(|e| {
        super::remove_with_side_files(&partial);
        ToolError(format!("cannot write {}: {e}", args.file.display()))
    })?;
    super::sync_dir(&parent);
    let bytes = std::fs::metadata(&args.file).map(|m| m.len()).unwrap_or(0);
    Ok(BackupReport {
        file: args.file.clone(),
        bytes,
        ..report
    })
}

/// Copies `source` into the new file `target` and checks the copy.
fn copy_checked(source: &Path, target: &Path, step_pages: i32) -> Result<BackupReport, ToolError> {
    let src = super::open_read_only(source)?;
    super::check_store(source, &src)?;
    let write_err =
        |e: rusqlite::Error| ToolError(format!("cannot write {}: {e}", target.display()));
    drop(super::create_private_file(target)?);
    let mut dst = Connection::open(target).map_err(write_err)?;
    copy_snapshot(&src, &mut dst, source, step_pages)?;
    drop(src);
    // The copy's header still says WAL (the source's); a backup is one self-contained file.
    dst.pragma_update(None, "journal_mode", "DELETE")
        .map_err(write_err)?;
    if let Some(problem) = super::integrity_problem(&dst).map_err(write_err)? {
        return Err(ToolError(format!(
            "the copy of {} fails integrity_check ({problem}); the store itself may be damaged",
            source.display()
        )));
    }
    let schema_version = super::check_store(target, &dst)?;
    let counts = super::counts(&dst).map_err(write_err)?;
    dst.close().map_err(|(_, e)| write_err(e))?;
    std::fs::File::open(target)
        .and_then(|f| f.sync_all())
        .map_err(|e| ToolError(format!("cannot write {}: {e}", target.display())))?;
    Ok(BackupReport {
        file: target.to_owned(),
        bytes: 0,
        counts,
        schema_version,
    })
}

/// Runs the online backup from `src` to `dst` inside one read transaction on `src`: one
/// snapshot for every step, so the copy is consistent and never restarts. Also used by
/// `restore`.
pub fn copy_snapshot(
    src: &Connection,
    dst: &mut Connection,
    source: &Path,
    step_pages: i32,
) -> Result<(), ToolError> {
    let read_err = |e: rusqlite::Error| ToolError(format!("cannot read {}: {e}", source.display()));
    src.execute_batch("BEGIN").map_err(read_err)?;
    // The snapshot starts with the first read.
    src.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
        r.get::<_, i64>(0)
    })
    .map_err(read_err)?;
    let outcome = (|| {
        let backup = Backup::new(src, dst).map_err(read_err)?;
        loop {
            match backup.step(step_pages).map_err(read_err)? {
                StepResult::Done => return Ok(()),
                // More, Busy (a lock held for a moment), Locked: the next step goes on.
                _ => std::thread::sleep(STEP_PAUSE),
            }
        }
    })();
    let _ = src.execute_batch("COMMIT");
    outcome
}

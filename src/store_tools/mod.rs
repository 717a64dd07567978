//! `acp-relay backup | export | restore`: the store as files, from the command line.
//!
//! Each command works on the SQLite file directly, beside a node that may be running on it:
//! the store runs in WAL mode, where a reader sees one committed snapshot and never blocks
//! the node's writer. One file per command (`backup`, `export`, `restore`); this file holds
//! what they share: where the store is, how it is opened for reading, and what makes a file
//! an acp-relay store.

pub mod backup;
pub mod export;
pub mod restore;

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand};
use rusqlite::{Connection, OpenFlags};

use crate::node::store;

/// The three commands, as `acp-relay` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum StoreCommand {
    /// Copy the node's store to FILE while it runs (SQLite's online backup), then check
    /// the copy.
    Backup(backup::BackupArgs),
    /// Write the stored messages and tasks as JSON lines or a Markdown transcript.
    Export(export::ExportArgs),
    /// Put a backup into an empty data dir, keeping every id, server_seq and peer id.
    Restore(restore::RestoreArgs),
}

impl StoreCommand {
    /// Runs the command; its outcome as the process's exit code (blocking: no runtime needed).
    pub fn run(&self) -> std::process::ExitCode {
        match self {
            StoreCommand::Backup(args) => backup::run(args),
            StoreCommand::Export(args) => export::run(args),
            StoreCommand::Restore(args) => restore::run(args),
        }
    }
}

/// Which node's store a command works on: the same `--data-dir` / `--name` rule as
/// `acp-relay serve`, so `backup` finds the store a default `serve` writes.
#[derive(Debug, Clone, Args)]
pub struct StoreLocation {
    /// The node's data dir (holds node.db); default: the platform data dir of --name,
    /// e.g. ~/.local/share/acp-relay/<name>.
    #[arg(long, env = "ACP_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// Agent name that selects the default data dir (as for `serve`).
    #[arg(long, env = "ACP_NAME", default_value = crate::config::DEFAULT_NAME)]
    pub name: String,
}

impl StoreLocation {
    /// The data dir these flags name.
    pub fn dir(&self) -> Result<PathBuf, ToolError> {
        match &self.data_dir {
            Some(d) => Ok(d.clone()),
            None => crate::config::default_data_dir(&self.name)
                .ok_or_else(|| ToolError("no platform data dir: set --data-dir".into())),
        }
    }

    /// The store file (`node.db` in the data dir), which must exist.
    pub fn store_file(&self) -> Result<PathBuf, ToolError> {
        let dir = self.dir()?;
        let file = dir.join(STORE_FILE);
        if !file.is_file() {
            return Err(ToolError(format!(
                "no store at {} (is --data-dir / --name right? a node creates it on its first start)",
                file.display()
            )));
        }
        Ok(file)
    }
}

/// The store's file name inside a data dir (what `Node::open` opens).
pub const STORE_FILE: &str = "node.db";

/// A command's failure: one line for stderr, exit code 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolError(pub String);

impl std::fmt::Display for ToolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ToolError {}

/// Prints a command's outcome the CLI way: its error as one line on stderr and exit code 1.
pub fn exit_code(result: Result<(), ToolError>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("acp-relay: {}", e.0.replace('\n', " "));
            std::process::ExitCode::FAILURE
        }
    }
}

/// Refuses an output file inside the data dir being read: a `--force` there could replace
/// the live store or its WAL, and a backup kept beside the store is lost with it.
pub fn refuse_inside(file: &Path, data_dir: &Path) -> Result<(), ToolError> {
    let parent = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if let (Ok(a), Ok(b)) = (parent.canonicalize(), data_dir.canonicalize())
        && a == b
    {
        return Err(ToolError(format!(
            "{} is inside the data dir {}: write it elsewhere",
            file.display(),
            data_dir.display()
        )));
    }
    Ok(())
}

/// How long a read waits for a lock the node holds for a moment (a WAL rewind).
const BUSY_WAIT: Duration = Duration::from_secs(10);

/// Opens a store for reading only: never creates the file, never writes to it (a live node's
/// store, or a backup being restored). Refuses a file that is not SQLite before SQLite parses
/// it.
pub fn open_read_only(path: &Path) -> Result<Connection, ToolError> {
    check_sqlite_header(path)?;
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| ToolError(format!("cannot open {}: {e}", path.display())))?;
    conn.busy_timeout(BUSY_WAIT)
        .map_err(|e| ToolError(format!("cannot open {}: {e}", path.display())))?;
    Ok(conn)
}

/// Refuses a file whose first bytes are not SQLite's header.
fn check_sqlite_header(path: &Path) -> Result<(), ToolError> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)
        .map_err(|e| ToolError(format!("cannot read {}: {e}", path.display())))?;
    let mut head = Vec::with_capacity(16);
    file.by_ref()
        .take(16)
        .read_to_end(&mut head)
        .map_err(|e| ToolError(format!("cannot read {}: {e}", path.display())))?;
    if head != b"SQLite format 3\0" {
        return Err(ToolError(format!(
            "{} is not an SQLite database (not an acp-relay store)",
            path.display()
        )));
    }
    Ok(())
}

/// The tables every acp-relay schema version has had since v1.
const STORE_TABLES: [&str; 6] = [
    "meta",
    "messages",
    "tasks",
    "peers",
    "offline_queue",
    "events",
];

/// Checks that `conn` holds an acp-relay store this binary can use and returns its schema
/// version: the tables of schema v1 on, a version between 1 and [`store::schema_version`].
pub fn check_store(path: &Path, conn: &Connection) -> Result<i64, ToolError> {
    let sqlite = |e: rusqlite::Error| {
        ToolError(format!(
            "{} cannot be read as a store (SQLite: {e})",
            path.display()
        ))
    };
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(sqlite)?;
    let mut missing = Vec::new();
    for table in STORE_TABLES {
        let found: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [table],
                |r| r.get(0),
            )
            .map_err(sqlite)?;
        if found == 0 {
            missing.push(table);
        }
    }
    if version < 1 || !missing.is_empty() {
        return Err(ToolError(format!(
            "{} is an SQLite database but not an acp-relay store (schema version {version}, \
             missing tables: {})",
            path.display(),
            if missing.is_empty() {
                "none".to_owned()
            } else {
                missing.join(", ")
            }
        )));
    }
    let known = store::schema_version();
    if version > known {
        return Err(ToolError(format!(
            "{} has schema version {version}, newer than this acp-relay knows ({known}): use \
             a newer acp-relay",
            path.display()
        )));
    }
    Ok(version)
}

/// Runs `PRAGMA integrity_check` and returns its first complaint, if any.
pub fn integrity_problem(conn: &Connection) -> rusqlite::Result<Option<String>> {
    let first: String = conn.query_row("PRAGMA integrity_check(1)", [], |r| r.get(0))?;
    Ok((first != "ok").then_some(first))
}

/// What a one-line summary says about a store: how many messages, peers and tasks it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Rows in `messages`.
    pub messages: i64,
    /// Rows in `peers`.
    pub peers: i64,
    /// Rows in `tasks`.
    pub tasks: i64,
}

/// Counts the rows a summary line reports.
pub fn counts(conn: &Connection) -> rusqlite::Result<Counts> {
    let count = |table: &str| -> rusqlite::Result<i64> {
        conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
    };
    Ok(Counts {
        messages: count("messages")?,
        peers: count("peers")?,
        tasks: count("tasks")?,
    })
}

/// Writes `dir`'s entry table to disk, so a rename into it survives a crash.
pub fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

/// A file name beside `target` for writing before the final rename: a crash or a failed
/// check never leaves a half-written file under the target's name.
pub fn temp_beside(target: &Path) -> PathBuf {
    let mut name = target
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".partial-{}", std::process::id()));
    target.with_file_name(name)
}

/// Creates a new, empty file only its owner can read: a backup or an export holds every
/// message and the link token, like the data dir (0700) it comes from.
pub fn create_private_file(path: &Path) -> Result<std::fs::File, ToolError> {
    crate::private_file::create_new(path)
        .map_err(|e| ToolError(format!("cannot create {}: {e}", path.display())))
}

/// Removes a temporary file and the side files SQLite may have made for it.
pub fn remove_with_side_files(path: &Path) {
    for suffix in ["", "-journal", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What `restore` runs on its FILE before copying anything.
    fn checked(path: &Path) -> Result<i64, ToolError> {
        let conn = open_read_only(path)?;
        if let Some(p) = integrity_problem(&conn).map_err(|e| ToolError(e.to_string()))? {
            return Err(ToolError(p));
        }
        check_store(path, &conn)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Any bytes as a store file, with or without SQLite's header in front: refused with
        /// a line, never a panic, and the file is left as it was.
        #[test]
        fn prop_arbitrary_files_are_refused(
            body in proptest::collection::vec(any::<u8>(), 0..3000),
            with_header in any::<bool>(),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("f.db");
            let mut bytes = if with_header { b"SQLite format 3\0".to_vec() } else { Vec::new() };
            bytes.extend_from_slice(&body);
            std::fs::write(&path, &bytes).unwrap();
            let result = checked(&path);
            prop_assert!(result.is_err(), "{result:?}");
            prop_assert!(!result.unwrap_err().0.contains('\n'));
            prop_assert_eq!(std::fs::read(&path).unwrap(), bytes);
        }
    }

    #[test]
    fn a_foreign_file_and_a_foreign_database_are_named_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("notes.txt");
        std::fs::write(&text, "hello").unwrap();
        let e = open_read_only(&text).unwrap_err();
        assert!(e.0.contains("not an SQLite database"), "{e}");
        let other = dir.path().join("other.db");
        Connection::open(&other)
            .unwrap()
            .execute_batch("CREATE TABLE t(x);")
            .unwrap();
        let conn = open_read_only(&other).unwrap();
        let e = check_store(&other, &conn).unwrap_err();
        assert!(e.0.contains("not an acp-relay store"), "{e}");
        assert!(e.0.contains("missing tables: meta"), "{e}");
        let missing = dir.path().join("absent.db");
        assert!(
            open_read_only(&missing)
                .unwrap_err()
                .0
                .contains("cannot read")
        );
        assert!(!missing.exists(), "a read never creates the file");
    }
}

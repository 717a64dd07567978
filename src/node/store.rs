//! SQLite persistence. One writer thread owns the write connection and commits whatever has
//! queued up as one transaction (group commit), so the hot path never pays a transaction per
//! message; readers use their own connections from a small pool.
//!
//! Durability: the database runs in WAL mode with `synchronous=NORMAL`. A write that a caller
//! awaited (`write_wait`) is committed to the WAL before the caller continues, so it survives
//! a crash of the process; only a power loss or kernel crash can lose the transactions since
//! the last WAL checkpoint. Writes that are not awaited (`write`) are at most one batch behind:
//! a process crash loses at most the batch being built (a few milliseconds of inbound frames).
//! A clean shutdown drains the queue and checkpoints.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, ffi, params};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::capacity::Capacity;
use super::error::{NodeError, NodeResult};
use super::quota::StoredBytes;
use super::retention::{PruneOutcome, PruneStep, prune_step};

/// One schema change: SQL as written, or built by the module that owns the schema part.
enum Migration {
    Sql(&'static str),
    Built(fn() -> String),
}

impl Migration {
    fn sql(&self) -> std::borrow::Cow<'static, str> {
        match self {
            Migration::Sql(s) => (*s).into(),
            Migration::Built(f) => f().into(),
        }
    }
}

/// Migrations, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[Migration] = &[
    // v1: the first schema.
    Migration::Sql("CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
     CREATE TABLE messages(
        rowid_seq   INTEGER PRIMARY KEY AUTOINCREMENT,
        message_id  TEXT NOT NULL,
        direction   TEXT NOT NULL,
        peer_id     TEXT,
        sender      TEXT,
        role        TEXT NOT NULL,
        task_id     TEXT,
        context_id  TEXT,
        server_seq  INTEGER,
        ts          TEXT NOT NULL,
        received_at REAL NOT NULL,
        consumed    INTEGER NOT NULL DEFAULT 0,
        frame       TEXT NOT NULL
     );
     CREATE UNIQUE INDEX messages_by_id ON messages(direction, message_id);
     CREATE INDEX messages_by_time ON messages(received_at);
     CREATE INDEX messages_by_peer ON messages(peer_id, received_at);
     CREATE INDEX messages_by_sender ON messages(sender, received_at);
     CREATE INDEX messages_by_context ON messages(context_id, server_seq);
     CREATE INDEX messages_by_task ON messages(task_id, received_at);
     CREATE INDEX messages_unconsumed ON messages(rowid_seq) WHERE consumed = 0 AND direction = 'inbound';
     CREATE TABLE tasks(id TEXT PRIMARY KEY, body TEXT NOT NULL);
     CREATE TABLE peers(id TEXT PRIMARY KEY, body TEXT NOT NULL);
     CREATE TABLE offline_queue(
        id        INTEGER PRIMARY KEY AUTOINCREMENT,
        peer_id   TEXT NOT NULL,
        message_id TEXT NOT NULL,
        frame     TEXT NOT NULL,
        queued_at TEXT NOT NULL
     );
     CREATE INDEX offline_by_peer ON offline_queue(peer_id, id);
     CREATE TABLE events(seq INTEGER PRIMARY KEY, body TEXT NOT NULL);"),
    // v2: start-up reads the highest outbound server_seq without scanning every message.
    Migration::Sql("CREATE INDEX messages_outbound_seq ON messages(server_seq) WHERE direction = 'outbound';"),
    // v3: `/messages?context_id=` pages in receive order. `messages_by_context` is ordered by
    // `server_seq` (for `/context/{id}/messages`), so without this index a conversation's
    // page sorted all of its messages (0.16 s for a 100k-message conversation).
    Migration::Sql("CREATE INDEX IF NOT EXISTS messages_by_context_time ON messages(context_id, received_at);"),
    // v4: messages without a task or a conversation (most of them) stay out of the task and
    // conversation indexes: every index a row enters is one more page that its commit writes
    // to the WAL. A `task_id = ?` or `context_id = ?` filter implies `IS NOT NULL`, so the
    // queries still use them.
    Migration::Sql("DROP INDEX messages_by_task;
     CREATE INDEX messages_by_task ON messages(task_id, received_at) WHERE task_id IS NOT NULL;
     DROP INDEX messages_by_context;
     CREATE INDEX messages_by_context ON messages(context_id, server_seq)
        WHERE context_id IS NOT NULL;
     DROP INDEX messages_by_context_time;
     CREATE INDEX messages_by_context_time ON messages(context_id, received_at)
        WHERE context_id IS NOT NULL;"),
    // v5: full-text search over message text (`GET /messages?q=`, `acp_search`): an FTS5
    // index kept in step by triggers; indexes the messages already stored, once.
    Migration::Built(super::search::migration),
    // v6: bytes of inbound messages stored per peer (`--peer-max-store-mb`), kept by the
    // writer in the same transactions that insert and prune messages, so a restart reads
    // them here instead of summing every message.
    Migration::Sql("CREATE TABLE peer_stored(peer_id TEXT PRIMARY KEY, bytes INTEGER NOT NULL)
        WITHOUT ROWID;
     INSERT INTO peer_stored(peer_id, bytes)
        SELECT peer_id, SUM(length(CAST(frame AS BLOB))) FROM messages
         WHERE direction = 'inbound' AND peer_id IS NOT NULL GROUP BY peer_id;"),
    // v7: push webhooks (`POST /webhooks/register`), one row per URL in registration order
    // (rowid); the body is the JSON record (`url`, `registered_at`).
    Migration::Sql("CREATE TABLE webhooks(url TEXT PRIMARY KEY, body TEXT NOT NULL);"),
    // v8: task handles given to MCP clients (the tasks extension), which must outlive the
    // process that gave them out.
    Migration::Built(super::handles::migration),
];

/// The schema version this binary writes (`PRAGMA user_version` after every migration): a
/// store with a higher one was written by a newer acp-relay and is refused (start, restore).
pub fn schema_version() -> i64 {
    MIGRATIONS.len() as i64
}

/// How many events the log keeps for replay; older ones are pruned by the writer.
pub const EVENT_RETENTION: u64 = 100_000;

/// Stored messages are node types: the store keeps them, front-ends read them.
pub use super::message::MessageRow;

/// One queued outbound frame of the offline queue.
#[derive(Debug, Clone)]
pub struct QueuedRow {
    /// Store-assigned position (orders the queue).
    pub id: i64,
    /// Peer the frame waits for.
    pub peer_id: String,
    /// The frame's message id.
    pub message_id: String,
    /// The frame as it will be sent.
    pub frame: Value,
    /// When it was queued (ISO-8601).
    pub queued_at: String,
}

/// A write for the writer thread.
#[derive(Debug)]
pub enum WriteOp {
    /// Insert a message (ignored if the same direction+id is already stored). The frame's
    /// JSON text is passed along when the caller already serialized it.
    InsertMessage(Box<MessageRow>, Option<std::sync::Arc<str>>),
    /// Mark inbound messages as handed out by `/recv`.
    MarkConsumed(Vec<String>),
    /// Insert or replace a task document.
    UpsertTask { id: String, body: String },
    /// Insert or replace a peer record.
    UpsertPeer { id: String, body: String },
    /// Append to a peer's offline queue.
    Enqueue(Box<QueuedRow>),
    /// Remove delivered entries from the offline queue.
    Dequeue(Vec<i64>),
    /// Append one event to the replay log.
    AppendEvent { seq: u64, body: String },
    /// Set a metadata value (token, session counters).
    SetMeta { key: String, value: String },
    /// Insert or replace a webhook's record.
    UpsertWebhook { url: String, body: String },
    /// Remove a webhook.
    DeleteWebhook { url: String },
    /// Insert or replace a task handle.
    UpsertHandle(Box<super::handles::TaskHandle>),
    /// Drop the task handles expired at this Unix time.
    DropExpiredHandles(f64),
    /// A small real write that tells whether the disk takes writes again (sent by the
    /// checkpointer while the store is full and the filesystem shows room).
    Probe,
}

/// Why a batch did not commit.
#[derive(Debug, Clone)]
enum CommitError {
    /// SQLite reported the disk full; the batch's writes are kept and retried.
    Full,
    /// A write found the database locked past the busy wait (another process writing, or a
    /// checkpoint stuck behind a reader): the whole batch is rolled back and tried again, so
    /// no write is skipped while the batch's others commit and its waiters hear success.
    Busy,
    /// Anything else (the batch is given up).
    Failed(String),
}

enum Command {
    Write(WriteOp),
    /// One bounded retention step, run in a transaction of its own after the batch it came
    /// with has committed and been answered.
    Prune(
        Box<PruneStep>,
        oneshot::Sender<Result<PruneOutcome, CommitError>>,
    ),
    /// Resolves once every command queued before it is committed.
    Barrier(oneshot::Sender<Result<(), CommitError>>),
}

/// Most writes the writer keeps while the disk is full. Sends, task writes and new inbound
/// frames are refused while the store is full, so what accumulates is the few writes in
/// flight when the disk filled plus control writes (events, peer records, read marks); past
/// this bound the newest are dropped and counted.
const MAX_HELD_WRITES: usize = 200_000;

/// Whether an SQLite error means "no space left".
fn is_disk_full(e: &rusqlite::Error) -> bool {
    matches!(e.sqlite_error_code(), Some(rusqlite::ErrorCode::DiskFull))
}

/// SQLITE_BUSY / SQLITE_LOCKED: the database was locked for longer than the busy wait.
fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// Times a batch that met a locked database is rolled back and tried again (each try waits
/// up to [`LOCK_WAIT`] for the lock) before its waiters are told it failed.
const BUSY_BATCH_TRIES: u32 = 6;

/// Handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    tx: mpsc::UnboundedSender<Command>,
    readers: Arc<Mutex<Vec<Connection>>>,
    path: PathBuf,
    capacity: Arc<Capacity>,
    /// Bytes of inbound messages stored per peer, kept by the writer.
    stored: Arc<StoredBytes>,
    /// Dropped with the last handle, which stops the checkpointer thread.
    _checkpointer: Arc<std::sync::mpsc::Sender<()>>,
}

/// How often a full store checks whether the disk takes writes again.
const PROBE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// How often the WAL is checkpointed into the database file.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

/// Page size of new databases. Every commit writes each page it touched to the WAL in full
/// (the row's table page, one page per index, the event log's page); at 1 KiB instead of
/// SQLite's default 4 KiB a send writes 2.6× fewer WAL bytes (measured), which shortens
/// every checkpoint's fsync. Existing databases keep the page size they were created with.
const PAGE_SIZE: i64 = 1024;

/// WAL size past which the checkpointer rewinds the WAL even under load (small in tests, so
/// that a test can reach it).
const REWIND_BYTES: i64 = if cfg!(test) {
    2 * 1024 * 1024
} else {
    128 * 1024 * 1024
};

/// Uncopied frames a forced rewind may be left with (a few milliseconds of writes).
const REWIND_TAIL: i64 = 1024;
/// Passive passes tried to get the uncopied tail under [`REWIND_TAIL`] before a forced rewind.
const CATCH_UP_PASSES: usize = 8;

/// WAL file size past which an idle store's WAL is truncated (small in tests, so that a test
/// sees the file shrink).
const WAL_SIZE_LIMIT: i64 = if cfg!(test) {
    4 * 1024 * 1024
} else {
    32 * 1024 * 1024
};

/// How long the WAL must have stayed unchanged before the checkpointer truncates it.
///
/// SQLite's own limit (`journal_size_limit`) truncates the WAL on the writer's thread, in the
/// first commit after each rewind: measured on ext4 mounted with `discard`, that commit took
/// 6–12 ms in `ftruncate` (discarding the freed blocks) and the next ones up to 7 ms more
/// while growing the file again allocated blocks under the inode's lock that writeback held;
/// 19 commits over 3 ms in 20 s at one connection, 214 ms the longest. So the writer never
/// truncates: the WAL keeps its size, rewinds overwrite it in place, and only a store that
/// nobody writes to gives the space back.
const SHRINK_WHEN_IDLE_FOR: std::time::Duration = if cfg!(test) {
    std::time::Duration::from_millis(500)
} else {
    std::time::Duration::from_secs(5)
};

/// Checkpoints the WAL off the writer thread, so the writer never fsyncs.
///
/// A checkpoint is the only step that fsyncs in WAL + `synchronous=NORMAL`. Run by the
/// writer (SQLite's auto-checkpoint) it stalled every commit waiting on it for as long as
/// the fsync took, so the writer turns auto-checkpoints off and this thread runs passive
/// checkpoints, which never block the writer, five times a second: each one has little
/// dirty data to sync.
///
/// A passive checkpoint cannot rewind the WAL: SQLite writes from the WAL's start again only
/// when a write transaction begins while every frame is already copied. After any lull that
/// happens by itself; under sustained load it never does, and the WAL grows without bound
/// (1.3 GB in 10 s of load was measured). A RESTART checkpoint rewinds it, but holds the
/// writer off while it copies the remaining frames and fsyncs: 20–180 ms stalls of every
/// send were measured when it ran every time the WAL passed a few MB. So it runs only once
/// the WAL passes [`REWIND_BYTES`], after passive passes have caught up with the writer so
/// that little is left to copy. Even then it holds the writer for two fsyncs of that little
/// (10–60 ms measured on a shared virtual disk): the floor of SQLite's design, paid once per
/// [`REWIND_BYTES`] of WAL (docs/benchmarks.md, "Tails on disk").
///
/// The WAL file keeps its size between rewinds (overwritten in place, no blocks to allocate);
/// once nothing has been written for [`SHRINK_WHEN_IDLE_FOR`], a TRUNCATE checkpoint gives
/// the space back.
fn checkpointer(
    path: PathBuf,
    stop: std::sync::mpsc::Receiver<()>,
    capacity: Arc<Capacity>,
    writer: mpsc::WeakUnboundedSender<Command>,
) {
    let Ok(mut conn) = open_connection(&path) else {
        tracing::error!("store: checkpointer cannot open the database; the WAL will grow");
        return;
    };
    if let Err(e) = conn.busy_handler(Some(wait_for_checkpoint_lock)) {
        tracing::warn!("store: checkpointer keeps the default lock wait: {e}");
    }
    let page_size: i64 = conn
        .pragma_query_value(None, "page_size", |r| r.get(0))
        .unwrap_or(4096)
        .max(512);
    let wal_path = {
        let mut p = path.clone().into_os_string();
        p.push("-wal");
        PathBuf::from(p)
    };
    // (frames in the WAL, frames already copied into the database file)
    let checkpoint = |mode: &str| {
        conn.query_row(&format!("PRAGMA wal_checkpoint({mode});"), [], |r| {
            Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        })
    };
    let mut last_frames = -1;
    let mut unchanged_since = std::time::Instant::now();
    let mut last_probe = std::time::Instant::now();
    let mut rewind_not_before = std::time::Instant::now();
    while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(CHECKPOINT_EVERY)
    {
        let file_len = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        capacity.set_file_bytes(file_len(&path) + file_len(&wal_path));
        // A full store tries again once the filesystem shows room: the probe is a real write,
        // and its commit (with every write held since the disk filled) ends the state.
        if capacity.disk_full()
            && last_probe.elapsed() >= PROBE_EVERY
            && capacity.room_to_resume()
            && let Some(tx) = writer.upgrade()
        {
            last_probe = std::time::Instant::now();
            let _ = tx.send(Command::Write(WriteOp::Probe));
        }
        let mut pass = checkpoint("PASSIVE");
        let frames = match pass {
            Ok((frames, _)) => {
                // What the store holds: the database's pages in use, as this connection
                // sees them (through the WAL), not the free ones nor the file's preallocated
                // growth nor the space a rewound WAL keeps for reuse.
                let pragma =
                    |name: &str| conn.pragma_query_value(None, name, |r| r.get::<_, i64>(0));
                if let (Ok(pages), Ok(free)) = (pragma("page_count"), pragma("freelist_count")) {
                    capacity.set_store_bytes(((pages - free).max(0) * page_size) as u64);
                }
                frames
            }
            // A full disk is logged once, by the writer.
            Err(e) if is_disk_full(&e) || capacity.disk_full() => {
                tracing::debug!("store: checkpoint failed: {e}");
                continue;
            }
            Err(e) => {
                tracing::warn!("store: checkpoint failed: {e}");
                continue;
            }
        };
        if frames != last_frames {
            last_frames = frames;
            unchanged_since = std::time::Instant::now();
        } else if unchanged_since.elapsed() >= SHRINK_WHEN_IDLE_FOR
            && std::fs::metadata(&wal_path)
                .is_ok_and(|m| m.len() as i64 > bounded(WAL_SIZE_LIMIT, &capacity))
        {
            // Idle: nothing waits on the writer, so a checkpoint that holds it off costs
            // nobody anything. TRUNCATE rewinds the WAL and gives its space back.
            if let Err(e) = checkpoint("TRUNCATE") {
                tracing::warn!("store: WAL truncation failed: {e}");
            }
            last_frames = -1;
            continue;
        }
        if frames * page_size < bounded(REWIND_BYTES, &capacity)
            || std::time::Instant::now() < rewind_not_before
        {
            continue;
        }
        for _ in 0..CATCH_UP_PASSES {
            match pass {
                Ok((frames, copied)) if frames - copied > REWIND_TAIL => {
                    pass = checkpoint("PASSIVE");
                }
                _ => break,
            }
        }
        let started = std::time::Instant::now();
        // Passive passes copy every frame up to the oldest reader's snapshot: when they
        // caught up, no reader pins the WAL, and a rewind that failed could only have met
        // the writer's own transaction, which a longer wait outlasts.
        let unpinned = matches!(pass, Ok((frames, copied)) if frames - copied <= REWIND_TAIL);
        let escalate = unpinned
            && frames * page_size >= ESCALATE_AFTER_REWINDS * bounded(REWIND_BYTES, &capacity);
        CHECKPOINT_WAIT.set(if escalate {
            LOCK_WAIT
        } else {
            CHECKPOINT_LOCK_WAIT
        });
        match conn.query_row("PRAGMA wal_checkpoint(RESTART);", [], |r| {
            r.get::<_, i64>(0)
        }) {
            Ok(0) => tracing::debug!("store: WAL rewound in {:?}", started.elapsed()),
            // A reader holds an older snapshot (a backup, an export) or the writer kept its
            // lock: the writer goes on, and the next try waits a while.
            Ok(_) => {
                rewind_not_before = std::time::Instant::now() + REWIND_BACKOFF;
                tracing::debug!("store: WAL rewind put off (a reader holds an older snapshot)");
            }
            Err(e) => tracing::warn!("store: WAL rewind failed: {e}"),
        }
    }
}

/// `bytes`, or an eighth of `--max-store-mb`, or an eighth of the filesystem holding the
/// store, whichever is smallest: with a small store limit or a small disk the WAL (which is
/// on the same disk, and not counted in the limit) is rewound and truncated sooner, so the
/// data dir stays near its bound and the WAL cannot fill the disk by itself (a 48 MB
/// filesystem held a 20 MB WAL beside 25 MB of store, in `tests/disk_full.rs`). The default
/// limit (2 GB) on a disk of a few GB or more leaves both at their constants, so the write
/// tails of the default setup are unchanged.
fn bounded(bytes: i64, capacity: &Capacity) -> i64 {
    let eighth = |total: u64| (total / 8).max(1024 * 1024).min(i64::MAX as u64) as i64;
    let mut b = bytes;
    if capacity.max_bytes() > 0 {
        b = b.min(eighth(capacity.max_bytes()));
    }
    if capacity.disk_bytes() > 0 {
        b = b.min(eighth(capacity.disk_bytes()));
    }
    b
}

/// How long a connection waits for a lock held by another (the checkpointer's short RESTART,
/// a reader at start-up) before giving up with "database is locked".
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// The step of that wait.
const LOCK_POLL: std::time::Duration = std::time::Duration::from_micros(100);

/// Waits in short steps: SQLite's default handler backs off to sleeps of 25–100 ms, so a lock
/// held for 3 ms could stall the writer (and every send waiting on it) for 10–30 ms.
fn wait_for_lock(attempts: i32) -> bool {
    if LOCK_POLL * attempts.max(0) as u32 >= LOCK_WAIT {
        return false;
    }
    std::thread::sleep(LOCK_POLL);
    true
}

/// How long the checkpointer's RESTART and TRUNCATE wait for a lock. Both hold the WAL's
/// write lock while they wait for readers of older snapshots, so every commit waits with
/// them: with [`LOCK_WAIT`], a reader that kept a snapshot open (`acp-relay backup`, an
/// export, a `sqlite3` shell inside a transaction) held every commit for 5 s per rewind
/// attempt (9.7 s measured in `a_reader_holding_an_old_snapshot_does_not_hold_the_writer`),
/// and the writer's own wait could run out. Now a rewind that cannot finish gives up after
/// this, and the next one waits [`REWIND_BACKOFF`]; the WAL grows meanwhile, as it must
/// while a snapshot older than its frames is being read.
const CHECKPOINT_LOCK_WAIT: std::time::Duration = std::time::Duration::from_millis(50);

/// How long the checkpointer waits after a rewind a reader or the writer kept from
/// finishing.
const REWIND_BACKOFF: std::time::Duration = std::time::Duration::from_secs(1);

/// [`wait_for_lock`] for the checkpointer: the same short steps, bounded by
/// [`CHECKPOINT_LOCK_WAIT`].
fn wait_for_checkpoint_lock(attempts: i32) -> bool {
    if LOCK_POLL * attempts.max(0) as u32 >= CHECKPOINT_WAIT.get() {
        return false;
    }
    std::thread::sleep(LOCK_POLL);
    true
}

thread_local! {
    /// The checkpointer thread's current lock wait: [`CHECKPOINT_LOCK_WAIT`], or
    /// [`LOCK_WAIT`] once rewinds have failed long enough for an unpinned WAL to pass
    /// [`ESCALATE_AFTER_REWINDS`] times its rewind size (a thread-local because SQLite's busy
    /// handler is a plain function, and each store has its own checkpointer thread).
    static CHECKPOINT_WAIT: std::cell::Cell<std::time::Duration> =
        const { std::cell::Cell::new(CHECKPOINT_LOCK_WAIT) };
}

/// A WAL this many times its rewind size, with no reader pinning it, makes the next rewind
/// wait as long as any writer ([`LOCK_WAIT`]). The short wait gives up not only behind a
/// reader's old snapshot but also behind the writer's own transactions when they are long
/// (batches of thousands of rows, e.g. many peers at once: 200 ms each at 1M stored
/// messages), and then the WAL grew to 650 MB in the 1M-message load benchmark. Behind the
/// writer a longer wait ends with the writer's transaction; behind a reader it would stall
/// every commit, so a pinned WAL keeps the short wait.
const ESCALATE_AFTER_REWINDS: i64 = 4;

/// How much the database file grows at a time.
const GROWTH_CHUNK: std::ffi::c_int = 8 * 1024 * 1024;

/// Makes the database file grow in [`GROWTH_CHUNK`] steps (SQLite allocates them with
/// `fallocate`), so that a checkpoint's copy rarely changes the file's size: a sync of a file
/// whose size did not change (`fdatasync`, see `.cargo/config.toml`) needs no journal commit.
/// Set on every connection, since the checkpointer's is the one that extends the file.
fn grow_in_chunks(conn: &Connection) {
    let mut size = GROWTH_CHUNK;
    // SAFETY: `conn.handle()` is a valid open connection for the duration of the call, the
    // schema name is a NUL-terminated literal, and SQLITE_FCNTL_CHUNK_SIZE reads one c_int
    // from the pointer, which points at a live local.
    let rc = unsafe {
        ffi::sqlite3_file_control(
            conn.handle(),
            c"main".as_ptr(),
            ffi::SQLITE_FCNTL_CHUNK_SIZE,
            (&mut size as *mut std::ffi::c_int).cast(),
        )
    };
    if rc != ffi::SQLITE_OK {
        tracing::debug!("store: chunked growth unavailable (SQLite code {rc})");
    }
}

fn open_connection(path: &Path) -> rusqlite::Result<Connection> {
    let mut conn = match super::wal_vfs::register() {
        Ok(()) => Connection::open_with_flags_and_vfs(
            path,
            rusqlite::OpenFlags::default(),
            super::wal_vfs::VFS_NAME,
        )?,
        Err(e) => {
            tracing::warn!("store: WAL write batching unavailable ({e}); using SQLite's default");
            Connection::open(path)?
        }
    };
    conn.busy_handler(Some(wait_for_lock))?;
    grow_in_chunks(&conn);
    // Take effect only on a new, empty database (before the WAL switch below writes it).
    conn.pragma_update(None, "page_size", PAGE_SIZE)?;
    // Pages freed by retention go back to the filesystem (`PRAGMA incremental_vacuum`).
    conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    for (i, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let started = std::time::Instant::now();
        if version > 0 {
            tracing::info!("store: upgrading the schema to v{} (once)", i + 1);
        }
        let tx = conn.transaction()?;
        tx.execute_batch(&migration.sql())?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
        if version > 0 {
            tracing::info!("store: schema v{} in {:?}", i + 1, started.elapsed());
        }
    }
    enable_incremental_vacuum(conn);
    conn.execute_batch(super::search::INDEX_SETTINGS)?;
    Ok(())
}

/// Stores made before retention have `auto_vacuum = NONE`: freed pages stay in the file
/// forever. Switching mode needs one full `VACUUM` (a rewrite of the file, which needs about
/// its size in free disk space, done once, at start-up); if it fails (no space), the store
/// keeps working and retention still frees pages for reuse, and the next start tries again.
fn enable_incremental_vacuum(conn: &Connection) {
    let mode: i64 = conn
        .pragma_query_value(None, "auto_vacuum", |r| r.get(0))
        .unwrap_or(2);
    if mode == 2 {
        return;
    }
    let started = std::time::Instant::now();
    tracing::info!("store: enabling incremental vacuum (a one-time rewrite of the store)");
    // The rewrite's temporary copy goes to a file, not to memory.
    let result = conn
        .pragma_update(None, "temp_store", "FILE")
        .and_then(|()| conn.pragma_update(None, "auto_vacuum", "INCREMENTAL"))
        .and_then(|()| conn.execute_batch("VACUUM;"));
    let _ = conn.pragma_update(None, "temp_store", "MEMORY");
    match result {
        Ok(()) => tracing::info!("store: incremental vacuum on, in {:?}", started.elapsed()),
        Err(e) => tracing::warn!(
            "store: could not enable incremental vacuum ({e}); the file will not shrink \
             after retention until a start-up where it succeeds"
        ),
    }
}

/// Creates the data dir readable by its owner only (0700 on Unix): it holds every message, the
/// link token that lets a peer connect, and the HMAC-signed history, and other users of the
/// machine must not read them. A dir that already exists keeps its mode, with a warning when
/// other users can read it.
pub(crate) fn create_private_dir(dir: &Path) -> NodeResult<()> {
    let existed = dir.is_dir();
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|e| {
        NodeError::internal(format!("cannot create data dir {}: {e}", dir.display()))
    })?;
    #[cfg(unix)]
    if existed
        && let Ok(meta) = std::fs::metadata(dir)
        && std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o077 != 0
    {
        tracing::warn!(
            dir = %dir.display(),
            "data dir is readable by other users of this machine (messages, link token): chmod 700 it"
        );
    }
    #[cfg(not(unix))]
    let _ = existed;
    Ok(())
}

/// The refusal to start on a store: one line naming the file, what is wrong and the step
/// that recovers. The file is left exactly as it was.
fn refuse(path: &Path, what: &str, step: &str) -> NodeError {
    NodeError::internal(format!("store {}: {what}; {step}", path.display()))
}

/// What a store that cannot be used gets as its recovery step.
const MOVE_AWAY: &str = "move it away (or point --data-dir elsewhere) to start with an empty \
     store, or restore a backup into an empty data dir";

/// Refuses a file that is not an SQLite database, before SQLite (which would treat some such
/// files as empty and write a new database over them) touches it.
fn check_is_sqlite(path: &Path) -> NodeResult<()> {
    use std::io::Read;
    let Ok(mut file) = std::fs::File::open(path) else {
        return Ok(());
    };
    let mut head = Vec::with_capacity(16);
    if let Err(e) = file.by_ref().take(16).read_to_end(&mut head) {
        return Err(refuse(path, &format!("cannot be read ({e})"), MOVE_AWAY));
    }
    if head.is_empty() || head == b"SQLite format 3\0" {
        return Ok(());
    }
    Err(refuse(
        path,
        "is not an SQLite database (foreign file; nothing was changed)",
        MOVE_AWAY,
    ))
}

/// Reads the schema (which finds a damaged schema page) and the schema version; refuses a
/// damaged store and one written by a newer acp-relay (whose schema this one cannot know).
fn check_store(path: &Path, conn: &Connection) -> NodeResult<()> {
    let damaged = |e: rusqlite::Error| {
        refuse(
            path,
            &format!("is damaged (SQLite: {e}; nothing was changed)"),
            "restore a backup into an empty data dir, or move it away to start empty \
             (`sqlite3 node.db .recover` may save its messages)",
        )
    };
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
        r.get::<_, i64>(0)
    })
    .map_err(damaged)?;
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(damaged)?;
    if version > MIGRATIONS.len() as i64 {
        return Err(refuse(
            path,
            &format!(
                "schema version {version} is newer than this acp-relay knows ({}); nothing was \
                 changed",
                MIGRATIONS.len()
            ),
            "run a newer acp-relay on it, or restore a backup made by this version into an \
             empty data dir",
        ));
    }
    Ok(())
}

impl Store {
    /// Opens (creating and migrating as needed) the database at `path` and starts the writer.
    /// A file that is not an SQLite database, a damaged store and one from a newer version
    /// are refused with one line (the file is left alone), never replaced.
    pub fn open(path: &Path) -> NodeResult<Store> {
        if let Some(dir) = path.parent() {
            create_private_dir(dir)?;
        }
        check_is_sqlite(path)?;
        let mut writer_conn = open_connection(path).map_err(|e| match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt) => {
                refuse(path, &format!("is damaged (SQLite: {e})"), MOVE_AWAY)
            }
            _ => NodeError::from(e),
        })?;
        check_store(path, &writer_conn)?;
        migrate(&mut writer_conn)?;
        writer_conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        // No limit: the checkpointer truncates the WAL when idle (see SHRINK_WHEN_IDLE_FOR).
        writer_conn.pragma_update(None, "journal_size_limit", -1)?;
        let page_size: i64 = writer_conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
        tracing::debug!(path = %path.display(), schema = schema_version(), page_size, "store open");
        let readers = (0..3)
            .map(|_| open_connection(path))
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let capacity = Arc::new(Capacity::new(path.parent().unwrap_or(Path::new("."))));
        let stored = Arc::new(StoredBytes::default());
        stored.load(read_peer_stored(&writer_conn)?);
        let (tx, rx) = mpsc::unbounded_channel();
        let writer_capacity = capacity.clone();
        let writer_stored = stored.clone();
        std::thread::Builder::new()
            .name("acp-store-writer".into())
            .spawn(move || writer_loop(writer_conn, rx, writer_capacity, writer_stored))
            .map_err(|e| NodeError::internal(format!("cannot start store writer: {e}")))?;
        let (stop_tx, stop_rx) = std::sync::mpsc::channel();
        let checkpoint_path = path.to_owned();
        let (checkpoint_capacity, weak_tx) = (capacity.clone(), tx.downgrade());
        std::thread::Builder::new()
            .name("acp-store-checkpoint".into())
            .spawn(move || checkpointer(checkpoint_path, stop_rx, checkpoint_capacity, weak_tx))
            .map_err(|e| NodeError::internal(format!("cannot start store checkpointer: {e}")))?;
        Ok(Store {
            tx,
            readers: Arc::new(Mutex::new(readers)),
            path: path.to_owned(),
            capacity,
            stored,
            _checkpointer: Arc::new(stop_tx),
        })
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the store takes new writes (disk full, `--max-store-mb`).
    pub fn capacity(&self) -> &Arc<Capacity> {
        &self.capacity
    }

    /// Bytes of inbound messages stored per peer (what `--peer-max-store-mb` bounds), as
    /// committed.
    pub fn stored_bytes(&self) -> &Arc<StoredBytes> {
        &self.stored
    }

    /// Queues a write without waiting for it to commit.
    pub fn write(&self, op: WriteOp) {
        if self.tx.send(Command::Write(op)).is_err() {
            tracing::error!("store writer is gone; a write was dropped");
        }
    }

    /// Waits until everything queued so far is committed.
    pub async fn flush(&self) -> NodeResult<()> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Command::Barrier(done))
            .map_err(|_| NodeError::internal("store writer is gone"))?;
        match wait.await {
            Err(_) => Err(NodeError::internal("store writer stopped")),
            Ok(Ok(())) => Ok(()),
            Ok(Err(CommitError::Full)) => Err(self.capacity.error()),
            Ok(Err(CommitError::Failed(e))) => {
                Err(NodeError::internal(format!("store commit failed: {e}")))
            }
            Ok(Err(CommitError::Busy)) => Err(NodeError::internal(
                "store commit failed: the database stayed locked",
            )),
        }
    }

    /// Runs one retention step on the writer (after everything queued before it) and waits
    /// for its outcome.
    pub async fn prune(&self, step: PruneStep) -> NodeResult<PruneOutcome> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Command::Prune(Box::new(step), done))
            .map_err(|_| NodeError::internal("store writer is gone"))?;
        match wait.await {
            Err(_) => Err(NodeError::internal("store writer stopped")),
            Ok(Ok(out)) => Ok(out),
            Ok(Err(CommitError::Full)) => Err(self.capacity.error()),
            Ok(Err(CommitError::Failed(e))) => {
                Err(NodeError::internal(format!("retention step failed: {e}")))
            }
            Ok(Err(CommitError::Busy)) => Err(NodeError::internal(
                "retention step failed: database is locked",
            )),
        }
    }

    /// Queues a write and waits until it is committed.
    pub async fn write_wait(&self, op: WriteOp) -> NodeResult<()> {
        self.write(op);
        self.flush().await
    }

    /// Runs a read on a pooled connection after all earlier writes are committed.
    pub async fn read<T, F>(&self, f: F) -> NodeResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        // While the disk is full, reads go on over what is committed (the writes held for
        // later are not visible yet).
        if let Err(e) = self.flush().await
            && e.code != super::error::ErrorCode::StorageFull
        {
            return Err(e);
        }
        let readers = self.readers.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = readers.lock().map(|mut r| r.pop()).unwrap_or(None);
            let conn = match pooled {
                Some(c) => c,
                None => open_connection(&path)?,
            };
            let result = f(&conn);
            if let Ok(mut r) = readers.lock() {
                r.push(conn);
            }
            result.map_err(NodeError::from)
        })
        .await
        .map_err(|e| NodeError::internal(format!("store read task failed: {e}")))?
    }

    /// Runs a read synchronously (start-up only, before the runtime serves requests).
    pub fn read_now<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> NodeResult<T> {
        let conn = open_connection(&self.path)?;
        f(&conn).map_err(NodeError::from)
    }

    /// Commits everything queued and checkpoints the WAL into the database file (a clean
    /// shutdown leaves no WAL to replay). The writer thread ends when the last handle drops.
    pub async fn close(&self) {
        let _ = self.flush().await;
        let path = self.path.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if let Ok(conn) = open_connection(&path) {
                let _ = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);");
            }
        })
        .await;
    }
}

/// How long the writer waits for more commands before committing a batch nobody waits on yet.
const LINGER: std::time::Duration = std::time::Duration::from_micros(50);

/// Takes `first` and whatever else is queued. A send queues its message row, its event and
/// then the barrier it waits on, microseconds apart; committing as soon as the queue looked
/// empty split one send into two commits (each writing its pages to the WAL) about half the
/// time. So while no barrier has arrived, the writer lingers up to [`LINGER`] for the rest:
/// nobody is waiting on those writes yet, and a barrier ends the wait at once.
fn collect_batch(
    first: Command,
    rx: &mut mpsc::UnboundedReceiver<Command>,
    max: usize,
) -> Vec<Command> {
    let mut waited_on = matches!(first, Command::Barrier(_));
    let mut batch = vec![first];
    let mut last_arrival = std::time::Instant::now();
    while batch.len() < max {
        match rx.try_recv() {
            Ok(cmd) => {
                waited_on |= matches!(cmd, Command::Barrier(_));
                batch.push(cmd);
                last_arrival = std::time::Instant::now();
            }
            Err(mpsc::error::TryRecvError::Empty)
                if !waited_on && last_arrival.elapsed() < LINGER =>
            {
                std::thread::yield_now();
            }
            Err(_) => break,
        }
    }
    batch
}

fn writer_loop(
    mut conn: Connection,
    mut rx: mpsc::UnboundedReceiver<Command>,
    capacity: Arc<Capacity>,
    stored: Arc<StoredBytes>,
) {
    const MAX_BATCH: usize = 4096;
    let mut events_since_prune: u64 = 0;
    // Writes of batches that could not commit because the disk was full, oldest first: every
    // later transaction applies them first, so a barrier still resolves only once everything
    // queued before it is committed, and nothing accepted is lost while the disk stays full.
    let mut held: Vec<WriteOp> = Vec::new();
    while let Some(first) = rx.blocking_recv() {
        let mut barriers = Vec::new();
        let mut ops = Vec::new();
        let mut probe = false;
        let mut prunes = Vec::new();
        for cmd in collect_batch(first, &mut rx, MAX_BATCH) {
            match cmd {
                Command::Barrier(done) => barriers.push(done),
                Command::Prune(step, done) => prunes.push((step, done)),
                Command::Write(WriteOp::Probe) => probe = true,
                Command::Write(op) => ops.push(op),
            }
        }
        if probe {
            ops.push(WriteOp::SetMeta {
                key: "storage_probe".into(),
                value: super::ids::now_iso(),
            });
        }
        let mut added = HashMap::new();
        let mut outcome = Err(CommitError::Busy);
        for attempt in 1..=BUSY_BATCH_TRIES {
            added.clear();
            outcome = commit_batch(&mut conn, &held, &ops, &mut events_since_prune, &mut added);
            if !matches!(outcome, Err(CommitError::Busy)) {
                break;
            }
            tracing::warn!(
                "store: the database stayed locked; trying the batch of {} writes again ({attempt}/{BUSY_BATCH_TRIES})",
                ops.len()
            );
        }
        if matches!(outcome, Err(CommitError::Busy)) {
            outcome = Err(CommitError::Failed("the database stayed locked".into()));
        }
        match &outcome {
            Ok(()) => {
                held.clear();
                stored.apply(&added, &HashMap::new());
                // Only a probe ends the full state: it is sent once the filesystem shows room,
                // while a commit that fitted into the WAL's old space proves nothing.
                if probe {
                    capacity.clear_disk_full();
                }
            }
            Err(CommitError::Full) => {
                capacity.set_disk_full();
                let room = MAX_HELD_WRITES.saturating_sub(held.len());
                let keep = ops.len().min(room);
                if keep < ops.len() {
                    capacity.note_dropped((ops.len() - keep) as u64);
                }
                held.extend(ops.into_iter().take(keep));
            }
            Err(CommitError::Failed(e)) => {
                tracing::error!("store: commit failed: {e}");
            }
            Err(CommitError::Busy) => tracing::error!("store: commit failed: locked"),
        }
        for done in barriers {
            let _ = done.send(outcome.clone());
        }
        for (step, done) in prunes {
            // How long each step holds the writer (every send queued behind it waits as
            // long): `ACP_LOG=info,acp_relay::node::store=debug`.
            let started = std::time::Instant::now();
            let out = run_prune(&mut conn, &step, &stored);
            if let Ok(o) = &out {
                tracing::debug!(took = ?started.elapsed(), deleted = o.deleted, vacuumed = o.vacuumed, "store: prune step");
            }
            let _ = done.send(out);
        }
    }
}

/// A retention step in its own transaction.
fn run_prune(
    conn: &mut Connection,
    step: &PruneStep,
    stored: &StoredBytes,
) -> Result<PruneOutcome, CommitError> {
    let fail = |e: rusqlite::Error| {
        if is_disk_full(&e) {
            CommitError::Full
        } else {
            CommitError::Failed(e.to_string())
        }
    };
    let tx = conn.transaction().map_err(fail)?;
    let out = prune_step(&tx, step).map_err(fail)?;
    tx.commit().map_err(fail)?;
    stored.apply(&HashMap::new(), &out.freed_by_peer);
    Ok(out)
}

/// One transaction: the held writes, then `ops`. A write that the database itself refuses (a
/// constraint) is logged and skipped (the rest commits); a full disk fails the whole
/// transaction, whose writes the caller keeps; a locked database fails it too
/// ([`CommitError::Busy`]), and the caller tries the same batch again. `added` gets the bytes of the inbound
/// messages the transaction inserted, per peer (applied by the caller once it committed).
fn commit_batch(
    conn: &mut Connection,
    held: &[WriteOp],
    ops: &[WriteOp],
    events_since_prune: &mut u64,
    added: &mut HashMap<String, u64>,
) -> Result<(), CommitError> {
    // A transaction that cannot even begin (disk gone, database locked for >5 s) is retried
    // a few times before the batch is given up and its waiters told.
    let mut attempt = 0;
    let tx = loop {
        match conn.transaction() {
            Ok(tx) => break tx,
            Err(e) if is_disk_full(&e) => return Err(CommitError::Full),
            Err(e) if attempt < 5 => {
                attempt += 1;
                tracing::warn!("store: cannot begin transaction (attempt {attempt}): {e}");
                std::thread::sleep(std::time::Duration::from_millis(100 * attempt));
            }
            Err(e) => {
                tracing::error!("store: giving up on a batch of {} writes: {e}", ops.len());
                return Err(CommitError::Failed("cannot begin a transaction".into()));
            }
        }
    };
    let mut last_event_seq = 0;
    for op in held.iter().chain(ops) {
        if let WriteOp::AppendEvent { seq, .. } = op {
            last_event_seq = *seq;
            *events_since_prune += 1;
        }
        match apply(&tx, op) {
            Ok(None) => {}
            Ok(Some((peer, bytes))) => *added.entry(peer.to_owned()).or_insert(0) += bytes,
            Err(e) if is_disk_full(&e) => return Err(CommitError::Full),
            Err(e) if is_busy(&e) => return Err(CommitError::Busy),
            Err(e) => tracing::error!("store write failed: {e}"),
        }
    }
    if let Err(e) = add_peer_stored(&tx, added) {
        if is_disk_full(&e) {
            return Err(CommitError::Full);
        }
        tracing::warn!("store: counting stored bytes per peer failed: {e}");
    }
    if *events_since_prune >= 10_000 && last_event_seq > EVENT_RETENTION {
        *events_since_prune = 0;
        if let Err(e) = tx.execute(
            "DELETE FROM events WHERE seq <= ?1",
            params![(last_event_seq - EVENT_RETENTION) as i64],
        ) {
            if is_disk_full(&e) {
                return Err(CommitError::Full);
            }
            tracing::warn!("store: pruning events failed: {e}");
        }
    }
    tx.commit().map_err(|e| {
        if is_disk_full(&e) {
            CommitError::Full
        } else {
            CommitError::Failed(e.to_string())
        }
    })
}

/// Adds the batch's inserted bytes to the `peer_stored` table.
fn add_peer_stored(
    tx: &rusqlite::Transaction<'_>,
    added: &HashMap<String, u64>,
) -> rusqlite::Result<()> {
    if added.is_empty() {
        return Ok(());
    }
    let mut stmt = tx.prepare_cached(
        "INSERT INTO peer_stored(peer_id, bytes) VALUES (?1, ?2)
         ON CONFLICT(peer_id) DO UPDATE SET bytes = bytes + excluded.bytes",
    )?;
    for (peer, bytes) in added {
        stmt.execute(params![peer, *bytes as i64])?;
    }
    Ok(())
}

/// The `peer_stored` table: bytes of inbound messages stored per peer.
fn read_peer_stored(conn: &Connection) -> rusqlite::Result<Vec<(String, u64)>> {
    let mut stmt = conn.prepare("SELECT peer_id, bytes FROM peer_stored")?;
    let rows = stmt.query_map([], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?.max(0) as u64))
    })?;
    rows.collect()
}

/// Applies one write. For an inbound message from a peer that was inserted (not a repeat
/// ignored by the unique index), returns the peer and the bytes of the stored frame.
fn apply<'a>(
    tx: &rusqlite::Transaction<'_>,
    op: &'a WriteOp,
) -> rusqlite::Result<Option<(&'a str, u64)>> {
    match op {
        WriteOp::InsertMessage(m, text) => {
            // The text the caller already has is bound as is, not copied on the writer thread.
            let frame: std::borrow::Cow<'_, str> = match text.as_deref() {
                Some(t) => t.into(),
                None => m.frame.to_string().into(),
            };
            let mut stmt = tx.prepare_cached(
                "INSERT OR IGNORE INTO messages(message_id, direction, peer_id, sender, role,
                    task_id, context_id, server_seq, ts, received_at, consumed, frame)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            )?;
            let inserted = stmt.execute(params![
                m.message_id,
                m.direction,
                m.peer_id,
                m.sender,
                m.role,
                m.task_id,
                m.context_id,
                m.server_seq,
                m.ts,
                m.received_at,
                m.consumed,
                frame.as_ref(),
            ])?;
            if inserted > 0
                && m.direction == "inbound"
                && let Some(peer) = m.peer_id.as_deref()
            {
                return Ok(Some((peer, frame.len() as u64)));
            }
        }
        WriteOp::MarkConsumed(ids) => {
            let mut stmt = tx.prepare_cached(
                "UPDATE messages SET consumed = 1 WHERE direction = 'inbound' AND message_id = ?1",
            )?;
            for id in ids {
                stmt.execute(params![id])?;
            }
        }
        WriteOp::UpsertTask { id, body } => {
            tx.prepare_cached("INSERT OR REPLACE INTO tasks(id, body) VALUES (?1, ?2)")?
                .execute(params![id, body])?;
        }
        WriteOp::UpsertPeer { id, body } => {
            tx.prepare_cached("INSERT OR REPLACE INTO peers(id, body) VALUES (?1, ?2)")?
                .execute(params![id, body])?;
        }
        WriteOp::Enqueue(q) => {
            tx.prepare_cached(
                "INSERT INTO offline_queue(id, peer_id, message_id, frame, queued_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                q.id,
                q.peer_id,
                q.message_id,
                q.frame.to_string(),
                q.queued_at
            ])?;
        }
        WriteOp::Dequeue(ids) => {
            let mut stmt = tx.prepare_cached("DELETE FROM offline_queue WHERE id = ?1")?;
            for id in ids {
                stmt.execute(params![id])?;
            }
        }
        WriteOp::AppendEvent { seq, body } => {
            tx.prepare_cached("INSERT OR REPLACE INTO events(seq, body) VALUES (?1, ?2)")?
                .execute(params![*seq as i64, body])?;
        }
        WriteOp::SetMeta { key, value } => {
            tx.prepare_cached("INSERT OR REPLACE INTO meta(key, value) VALUES (?1, ?2)")?
                .execute(params![key, value])?;
        }
        WriteOp::UpsertWebhook { url, body } => {
            tx.prepare_cached("INSERT OR REPLACE INTO webhooks(url, body) VALUES (?1, ?2)")?
                .execute(params![url, body])?;
        }
        WriteOp::DeleteWebhook { url } => {
            tx.prepare_cached("DELETE FROM webhooks WHERE url = ?1")?
                .execute(params![url])?;
        }
        WriteOp::UpsertHandle(h) => super::handles::upsert(tx, h)?,
        WriteOp::DropExpiredHandles(now) => super::handles::drop_expired(tx, *now)?,
        // Replaced by a meta write in `writer_loop`.
        WriteOp::Probe => {}
    }
    Ok(None)
}

/// Reads one metadata value.
pub fn get_meta(conn: &Connection, key: &str) -> rusqlite::Result<Option<String>> {
    conn.query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| {
        r.get(0)
    })
    .optional()
}

/// Maps a `messages` row (selected with [`MESSAGE_COLUMNS`]) to a [`MessageRow`].
pub fn message_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<MessageRow> {
    let direction: String = row.get(1)?;
    let frame: String = row.get(11)?;
    Ok(MessageRow {
        message_id: row.get(0)?,
        direction: if direction == "outbound" {
            "outbound"
        } else {
            "inbound"
        },
        peer_id: row.get(2)?,
        sender: row.get(3)?,
        role: row.get(4)?,
        task_id: row.get(5)?,
        context_id: row.get(6)?,
        server_seq: row.get(7)?,
        ts: row.get(8)?,
        received_at: row.get(9)?,
        consumed: row.get(10)?,
        frame: serde_json::from_str(&frame).unwrap_or(Value::Null),
        local_seq: row.get(12)?,
    })
}

/// Column list matching [`message_from_row`].
pub const MESSAGE_COLUMNS: &str = "message_id, direction, peer_id, sender, role, task_id, \
     context_id, server_seq, ts, received_at, consumed, frame, rowid_seq";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::retention::CHUNK;
    use serde_json::json;
    use std::time::Duration;

    #[tokio::test]
    async fn writes_survive_reopen_and_migrations_are_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.db");
        {
            let store = Store::open(&path).unwrap();
            store
                .write_wait(WriteOp::SetMeta {
                    key: "token".into(),
                    value: "tok_x".into(),
                })
                .await
                .unwrap();
            store.close().await;
        }
        let store = Store::open(&path).unwrap();
        let token = store.read(|c| get_meta(c, "token")).await.unwrap();
        assert_eq!(token.as_deref(), Some("tok_x"));
        let version: i64 = store
            .read(|c| c.pragma_query_value(None, "user_version", |r| r.get(0)))
            .await
            .unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
    }

    fn inbound(id: &str, peer: &str, text: &str, direction: &'static str) -> WriteOp {
        let row = MessageRow {
            message_id: id.into(),
            direction,
            peer_id: Some(peer.into()),
            sender: None,
            role: "user".into(),
            task_id: None,
            context_id: None,
            server_seq: None,
            ts: "2026-01-01T00:00:00Z".into(),
            received_at: 1.0,
            consumed: false,
            frame: Value::Null,
            local_seq: 0,
        };
        WriteOp::InsertMessage(Box::new(row), Some(Arc::from(text)))
    }

    /// A retention step over the rows `after..=up_to` with nothing to keep.
    fn range_step(after: i64, up_to: i64, budget: Duration) -> PruneStep {
        PruneStep {
            after,
            up_to,
            keep_outbound_above: i64::MAX,
            open_tasks: "[]".into(),
            trim_events: false,
            from_peer: None,
            budget,
        }
    }

    /// Runs a prune step. The checkpointer may hold the database for a moment: retention
    /// takes the step again then, and so does this.
    async fn prune(store: &Store, step: PruneStep) -> PruneOutcome {
        for _ in 0..100 {
            match store.prune(step.clone()).await {
                Ok(out) => return out,
                Err(e) if e.message.contains("locked") => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                Err(e) => panic!("{e:?}"),
            }
        }
        panic!("the database stayed locked")
    }

    /// A prune step holds the writer for its budget, not for a fixed number of rows: with
    /// none it deletes one chunk and gives back one page (so a pass always moves on); with
    /// room it deletes its whole window and empties the free list in one step (the vacuum
    /// runs to its end, where a single step of the pragma gave back one page). What it
    /// deletes leaves the search index, and deletions never make the index merge on the spot.
    #[tokio::test]
    async fn a_prune_step_works_in_chunks_for_its_budget() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("node.db")).unwrap();
        let words = "prunable ".repeat(200);
        for i in 0..200 {
            let frame = json!({"parts": [{"type": "text", "text": format!("{words}{i}")}]});
            store.write(inbound(
                &format!("m{i}"),
                "peer_a",
                &frame.to_string(),
                "inbound",
            ));
        }
        store.flush().await.unwrap();
        let matching = || {
            store.read(|c| {
                c.query_row(
                    "SELECT count(*) FROM messages_fts WHERE messages_fts MATCH 'prunable'",
                    [],
                    |r| r.get::<_, i64>(0),
                )
            })
        };
        assert_eq!(matching().await.unwrap(), 200);

        let out = prune(&store, range_step(0, 200, Duration::ZERO)).await;
        assert_eq!(out.examined_to, CHUNK);
        assert_eq!(out.deleted, CHUNK as u64);
        assert_eq!(out.vacuumed, 1, "{out:?}");
        assert!(out.freelist > 0, "{out:?}");

        let out = prune(&store, range_step(CHUNK, 200, Duration::from_secs(600))).await;
        assert_eq!(out.examined_to, 200);
        assert_eq!(out.deleted, 200 - CHUNK as u64);
        assert_eq!(out.freelist, 0, "{out:?}");
        assert!(out.vacuumed > 1, "{out:?}");
        assert_eq!(matching().await.unwrap(), 0);
        let deletemerge = store
            .read(|c| {
                c.query_row(
                    "SELECT v FROM messages_fts_config WHERE k = 'deletemerge'",
                    [],
                    |r| r.get::<_, i64>(0),
                )
            })
            .await
            .unwrap();
        assert_eq!(deletemerge, 0);
    }

    /// What `--peer-max-store-mb` counts: the bytes of inbound frames per peer, kept in step
    /// with inserts (a repeat ignored by the unique index adds nothing) and prunes, persisted
    /// across a restart, and seeded from the messages when an older store is migrated.
    #[tokio::test]
    async fn inbound_bytes_per_peer_follow_inserts_prunes_and_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.db");
        let a1 = r#"{"parts":"héllo €"}"#;
        let a2 = r#"{"parts":"x"}"#;
        {
            let store = Store::open(&path).unwrap();
            store.write(inbound("m1", "peer_a", a1, "inbound"));
            store.write(inbound("m2", "peer_a", a2, "inbound"));
            store.write(inbound("m2", "peer_a", a2, "inbound"));
            store.write(inbound("m3", "peer_b", a2, "inbound"));
            store.write(inbound("o1", "peer_a", a1, "outbound"));
            store.flush().await.unwrap();
            let s = store.stored_bytes();
            assert_eq!(s.get("peer_a"), (a1.len() + a2.len()) as u64);
            assert_eq!(s.get("peer_b"), a2.len() as u64);
            store.close().await;
        }
        // An older store (before v6) gets the table filled from its messages.
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "DROP TABLE peer_stored; DROP TABLE webhooks; DROP TABLE task_handles;
                 PRAGMA user_version = 5;",
            )
            .unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(
            store.stored_bytes().get("peer_a"),
            (a1.len() + a2.len()) as u64
        );
        assert_eq!(store.stored_bytes().get("peer_b"), a2.len() as u64);
        let out = prune(&store, range_step(0, 2, Duration::from_secs(600))).await;
        assert_eq!(out.deleted, 2);
        assert_eq!(store.stored_bytes().get("peer_a"), 0);
        assert_eq!(store.stored_bytes().get("peer_b"), a2.len() as u64);
        store.close().await;
        drop(store);
        let store = Store::open(&path).unwrap();
        assert_eq!(store.stored_bytes().get("peer_a"), 0);
        assert_eq!(store.stored_bytes().get("peer_b"), a2.len() as u64);
    }

    /// A store made before retention (auto_vacuum NONE) is switched to incremental vacuum
    /// once, keeping its data; a new one starts with it.
    #[tokio::test]
    async fn old_stores_get_incremental_vacuum_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(&MIGRATIONS[0].sql()).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            conn.execute(
                "INSERT INTO meta(key, value) VALUES ('token', 'tok_old')",
                [],
            )
            .unwrap();
            let mode: i64 = conn
                .pragma_query_value(None, "auto_vacuum", |r| r.get(0))
                .unwrap();
            assert_eq!(mode, 0);
        }
        let store = Store::open(&path).unwrap();
        let (mode, token) = store
            .read(|c| {
                Ok((
                    c.pragma_query_value(None, "auto_vacuum", |r| r.get::<_, i64>(0))?,
                    get_meta(c, "token")?,
                ))
            })
            .await
            .unwrap();
        assert_eq!(mode, 2, "incremental");
        assert_eq!(token.as_deref(), Some("tok_old"));
        let fresh = Store::open(&dir.path().join("new/node.db")).unwrap();
        let mode: i64 = fresh
            .read(|c| c.pragma_query_value(None, "auto_vacuum", |r| r.get(0)))
            .await
            .unwrap();
        assert_eq!(mode, 2);
    }

    /// A new data dir is its owner's alone.
    #[cfg(unix)]
    #[test]
    fn a_new_data_dir_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b");
        create_private_dir(&dir).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "{mode:o}");
        create_private_dir(&dir).unwrap();
    }

    /// Under sustained writes the WAL is rewound, so it does not grow without bound.
    ///
    /// Without rewinds the WAL holds every page ever written, so it is always longer than the
    /// values written into it. With them it stays near [`REWIND_BYTES`] however much is
    /// written. How soon a rewind comes depends on the disk's fsync speed (a slow CI disk let
    /// the WAL reach 32 MB first) and on the checkpointer getting CPU (a loaded machine let
    /// a flat-out writer reach 268 MB with no rewind), so the test writes until the WAL is far
    /// shorter than what was written, pausing 20 ms between batches once past 32 MB, within
    /// 120 s: a WAL without rewinds never gets shorter than what was written.
    #[tokio::test]
    async fn wal_stays_bounded_under_sustained_writes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("node.db")).unwrap();
        let page_size: i64 = store
            .read(|c| c.pragma_query_value(None, "page_size", |r| r.get(0)))
            .await
            .unwrap();
        assert_eq!(page_size, PAGE_SIZE);
        let wal_len = || {
            std::fs::metadata(dir.path().join("node.db-wal"))
                .map(|m| m.len() as i64)
                .unwrap_or(0)
        };
        let value = "x".repeat(3000);
        let started = std::time::Instant::now();
        let mut written = 0i64;
        let mut i = 0u64;
        loop {
            store.write(WriteOp::SetMeta {
                key: format!("k{}", i % 1000),
                value: value.clone(),
            });
            written += value.len() as i64;
            i += 1;
            if i.is_multiple_of(20) {
                store.flush().await.unwrap();
                // Ends on what it checks, not on the clock: once far more was written than
                // the WAL holds, the WAL was rewound (a fast disk gets there in under a
                // second, a slow one takes longer; both pass).
                if written > 8 * WAL_SIZE_LIMIT {
                    if wal_len() < written / 4 {
                        break;
                    }
                    // Still writing, but leaving the checkpointer room: on a loaded machine
                    // it may get no CPU while the writer runs flat out, and the WAL can only
                    // be rewound after a checkpoint has caught up.
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                assert!(
                    started.elapsed() < std::time::Duration::from_secs(120),
                    "WAL file is {} bytes after {written} bytes written",
                    wal_len()
                );
            }
        }
    }

    /// A reader that keeps an old snapshot open for long (`acp-relay backup`, an export, a
    /// `sqlite3` shell inside a transaction) does not hold the writer off: the checkpointer's
    /// rewind, which holds the WAL's write lock while it waits for such readers, waits only
    /// briefly and tries again later, and no write is lost. Before, each rewind attempt held
    /// every commit for the whole 5 s lock wait (and the writer's own wait could then fail).
    /// The bound asserted is 80 times the checkpointer's wait, far below the 5 s it was.
    #[tokio::test]
    async fn a_reader_holding_an_old_snapshot_does_not_hold_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.db");
        let store = Store::open(&path).unwrap();
        store
            .write_wait(WriteOp::SetMeta {
                key: "before".into(),
                value: "x".into(),
            })
            .await
            .unwrap();
        let reader = Connection::open(&path).unwrap();
        reader.execute_batch("BEGIN").unwrap();
        let _: i64 = reader
            .query_row("SELECT count(*) FROM meta", [], |r| r.get(0))
            .unwrap();
        // Far past REWIND_BYTES (2 MB in tests), and for several checkpoint periods: the
        // checkpointer tries rewinds meanwhile.
        let value = "w".repeat(3000);
        let mut slowest = std::time::Duration::ZERO;
        let began = std::time::Instant::now();
        let mut written: i64 = 0;
        while written < 3000 || began.elapsed() < CHECKPOINT_EVERY * 10 {
            for _ in 0..20 {
                store.write(WriteOp::SetMeta {
                    key: format!("k{written}"),
                    value: value.clone(),
                });
                written += 1;
            }
            let started = std::time::Instant::now();
            store.flush().await.unwrap();
            slowest = slowest.max(started.elapsed());
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let kept: i64 = store
            .read(|c| {
                c.query_row("SELECT count(*) FROM meta WHERE key LIKE 'k%'", [], |r| {
                    r.get(0)
                })
            })
            .await
            .unwrap();
        assert_eq!(kept, written, "no write was lost");
        let seen: i64 = reader
            .query_row("SELECT count(*) FROM meta", [], |r| r.get(0))
            .unwrap();
        assert_eq!(seen, 1, "the reader kept its snapshot throughout");
        reader.execute_batch("COMMIT").unwrap();
        assert!(
            slowest < CHECKPOINT_LOCK_WAIT * 80,
            "a commit waited {slowest:?} behind the checkpointer"
        );
    }

    /// A write that meets the database locked for longer than the busy wait (another
    /// process holding the write lock) is not skipped: its batch is rolled back and tried
    /// again, and the waiter hears success only once it is committed.
    #[tokio::test]
    async fn a_write_that_meets_a_locked_database_waits_and_is_not_lost() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.db");
        let store = Store::open(&path).unwrap();
        let other = Connection::open(&path).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let writer = store.clone();
        let write = tokio::spawn(async move {
            writer
                .write_wait(WriteOp::SetMeta {
                    key: "while_locked".into(),
                    value: "x".into(),
                })
                .await
        });
        // Longer than two busy waits, shorter than all the tries.
        tokio::time::sleep(LOCK_WAIT * 3).await;
        other.execute_batch("COMMIT").unwrap();
        write
            .await
            .unwrap()
            .expect("the write commits once the lock is free");
        let kept: Option<String> = store.read(|c| get_meta(c, "while_locked")).await.unwrap();
        assert_eq!(kept.as_deref(), Some("x"));
    }

    /// The writer never truncates the WAL; the checkpointer does, once nobody writes.
    #[tokio::test]
    async fn an_idle_store_gives_the_wal_space_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("node.db")).unwrap();
        let wal_len = || {
            std::fs::metadata(dir.path().join("node.db-wal"))
                .map(|m| m.len() as i64)
                .unwrap_or(0)
        };
        // One transaction bigger than the limit (the writer batches up to 4096 writes).
        let value = "y".repeat(3000);
        for i in 0..2000 {
            store.write(WriteOp::SetMeta {
                key: format!("big{i}"),
                value: value.clone(),
            });
        }
        store.flush().await.unwrap();
        assert!(wal_len() > WAL_SIZE_LIMIT, "WAL is {} bytes", wal_len());
        let started = std::time::Instant::now();
        while wal_len() > WAL_SIZE_LIMIT {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(60),
                "WAL still {} bytes after a minute without writes",
                wal_len()
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let kept = store
            .read(|c| get_meta(c, "big1999"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(kept, value);
    }

    /// The database file grows in whole chunks, whichever connection checkpoints.
    #[tokio::test]
    async fn the_database_file_grows_in_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("node.db")).unwrap();
        for i in 0..100 {
            store.write(WriteOp::SetMeta {
                key: format!("k{i}"),
                value: "z".repeat(1000),
            });
        }
        store.flush().await.unwrap();
        store
            .read(|c| c.query_row("PRAGMA wal_checkpoint(PASSIVE);", [], |_| Ok(())))
            .await
            .unwrap();
        let len = std::fs::metadata(dir.path().join("node.db")).unwrap().len();
        assert!(
            len > 0 && len.is_multiple_of(GROWTH_CHUNK as u64),
            "database file is {len} bytes"
        );
    }

    /// The partial task and conversation indexes still serve their filters.
    #[tokio::test]
    async fn partial_indexes_serve_task_and_context_filters() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("node.db")).unwrap();
        let plans = store
            .read(|c| {
                let plan = |sql: &str| -> rusqlite::Result<String> {
                    let mut stmt = c.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
                    let rows = stmt.query_map([], |r| r.get::<_, String>(3))?;
                    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?.join("; "))
                };
                Ok([
                    plan("SELECT * FROM messages WHERE task_id = 't' ORDER BY received_at DESC")?,
                    plan("SELECT * FROM messages WHERE context_id = 'c' AND server_seq > 0 ORDER BY server_seq")?,
                    plan("SELECT * FROM messages WHERE context_id = 'c' ORDER BY received_at DESC")?,
                ])
            })
            .await
            .unwrap();
        assert!(plans[0].contains("messages_by_task"), "{}", plans[0]);
        assert!(plans[1].contains("messages_by_context "), "{}", plans[1]);
        assert!(
            plans[2].contains("messages_by_context_time"),
            "{}",
            plans[2]
        );
        assert!(
            !plans.iter().any(|p| p.contains("TEMP B-TREE")),
            "{plans:?}"
        );
    }
}

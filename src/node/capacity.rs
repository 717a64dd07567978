//! Whether the store can take new writes: a full disk (SQLite reported `SQLITE_FULL`) or a
//! store above `--max-store-mb` is a *state* of the node, not a crash. While it lasts, sends
//! and task writes are refused with `507 ERR_STORAGE_FULL` before anything is numbered, sent
//! or queued, peers are told to keep their frames (they stay unconfirmed on their side), and
//! reads go on. The writer keeps the writes it could not commit and commits them first once
//! there is room again, so nothing it had accepted is lost; the checkpointer thread probes for
//! space every second and the state ends by itself, without a restart.
//!
//! Transitions are logged once each (entering, leaving), never once per refused request.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::error::{ErrorCode, NodeError};

/// Free space the data dir's filesystem must have before a full store tries writing again:
/// one growth chunk of the database file (see `store::GROWTH_CHUNK`). With less, the next
/// checkpoint would fail to copy the WAL into the database and the store would be full again
/// at once.
pub const RESUME_FREE_BYTES: u64 = 8 * 1024 * 1024;

/// How long a peer is asked to wait before sending the frames this node could not store.
pub const HOLD_RETRY_MS: u64 = 2_000;

/// The store's room for writes, shared by the writer, the checkpointer and the node.
#[derive(Debug)]
pub struct Capacity {
    dir: PathBuf,
    disk_full: AtomicBool,
    over_limit: AtomicBool,
    /// `--max-store-mb` in bytes; 0 = no limit.
    max_bytes: AtomicU64,
    /// What the store holds (the database's pages in use), refreshed by the checkpointer a
    /// few times a second: what `--max-store-mb` bounds.
    store_bytes: AtomicU64,
    /// The database and WAL files' sizes (with preallocated growth and reusable WAL space).
    file_bytes: AtomicU64,
    /// When the disk-full state began (for `/status`).
    full_since: Mutex<Option<String>>,
    /// Writes the writer could not keep (its hold buffer was at its bound): counted, logged.
    dropped: AtomicU64,
    /// The size of the filesystem holding the store (0 when unknown), read at open.
    disk_bytes: u64,
}

impl Capacity {
    /// Capacity of the store in `dir`, with no size limit yet.
    pub fn new(dir: &Path) -> Capacity {
        Capacity {
            dir: dir.to_owned(),
            disk_full: AtomicBool::new(false),
            over_limit: AtomicBool::new(false),
            max_bytes: AtomicU64::new(0),
            store_bytes: AtomicU64::new(0),
            file_bytes: AtomicU64::new(0),
            full_since: Mutex::new(None),
            dropped: AtomicU64::new(0),
            disk_bytes: disk_bytes(dir).unwrap_or(0),
        }
    }

    /// The size of the filesystem holding the store, in bytes (0 when unknown).
    pub fn disk_bytes(&self) -> u64 {
        self.disk_bytes
    }

    /// Whether new writes are refused (disk full, or the store above its limit).
    pub fn is_full(&self) -> bool {
        self.disk_full.load(Ordering::Relaxed) || self.over_limit.load(Ordering::Relaxed)
    }

    /// Whether SQLite reported the disk full and space has not been seen back yet.
    pub fn disk_full(&self) -> bool {
        self.disk_full.load(Ordering::Relaxed)
    }

    /// `Err(507 ERR_STORAGE_FULL)` while new writes are refused.
    pub fn check(&self) -> Result<(), NodeError> {
        if self.is_full() {
            Err(self.error())
        } else {
            Ok(())
        }
    }

    /// The refusal: which directory, how much is free, what to do. The same words go to REST
    /// clients, to the LLM (`acp_send`) and to the log.
    pub fn error(&self) -> NodeError {
        let free = free_bytes(&self.dir)
            .map(|b| format!("{} free", human(b)))
            .unwrap_or_else(|| "free space unknown".into());
        let message = if self.disk_full() || !self.over_limit.load(Ordering::Relaxed) {
            format!(
                "storage full: the disk holding the data dir {} is full ({free}); nothing was \
                 stored or sent. Free space on that disk (or lower --retain-days / \
                 --retain-messages so retention removes old history); the node resumes by \
                 itself within seconds once there is room, and keeps everything it had \
                 acknowledged. Retry this request later.",
                self.dir.display()
            )
        } else {
            format!(
                "storage full: the store in {} holds {}, at its limit --max-store-mb {} \
                 ({free} on the disk); nothing was stored or sent. What is left cannot be pruned \
                 yet (unconfirmed or queued messages, open tasks): raise the limit \
                 (PATCH /retention {{\"max_store_mb\": N}}) or let peers confirm and tasks \
                 finish; sending resumes by itself once the store is below its limit.",
                self.dir.display(),
                human(self.store_bytes()),
                self.max_bytes() / (1024 * 1024),
            )
        };
        NodeError::new(ErrorCode::StorageFull, message)
    }

    /// Notes that SQLite could not write for lack of space; logs on the transition only.
    pub(crate) fn set_disk_full(&self) {
        if !self.disk_full.swap(true, Ordering::Relaxed) {
            *self.full_since.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(super::ids::now_iso());
            tracing::error!(
                "{} (logged once; writes that could not be committed are kept and retried)",
                self.error().message
            );
        }
    }

    /// Notes that a write committed after space came back; logs on the transition only.
    pub(crate) fn clear_disk_full(&self) {
        if self.disk_full.swap(false, Ordering::Relaxed) {
            *self.full_since.lock().unwrap_or_else(|p| p.into_inner()) = None;
            tracing::warn!(dir = %self.dir.display(), "storage: space is back, writes resumed");
        }
    }

    /// Whether a full store may try writing again: the filesystem has room for one growth
    /// chunk.
    pub(crate) fn room_to_resume(&self) -> bool {
        free_bytes(&self.dir).is_none_or(|free| free >= RESUME_FREE_BYTES)
    }

    /// Sets `--max-store-mb` (0 = no limit) and re-checks the current size against it.
    pub fn set_max_bytes(&self, bytes: u64) {
        self.max_bytes.store(bytes, Ordering::Relaxed);
        self.set_store_bytes(self.store_bytes());
    }

    /// The size limit in bytes (0 = none).
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes.load(Ordering::Relaxed)
    }

    /// What the store holds, as last measured (the database's pages in use).
    pub fn store_bytes(&self) -> u64 {
        self.store_bytes.load(Ordering::Relaxed)
    }

    /// Records the files' size on disk.
    pub(crate) fn set_file_bytes(&self, bytes: u64) {
        self.file_bytes.store(bytes, Ordering::Relaxed);
    }

    /// Records the measured size; enters or leaves the over-limit state (logged once each).
    pub(crate) fn set_store_bytes(&self, bytes: u64) {
        self.store_bytes.store(bytes, Ordering::Relaxed);
        let max = self.max_bytes();
        let over = max > 0 && bytes >= max;
        if self.over_limit.swap(over, Ordering::Relaxed) != over {
            if over {
                tracing::error!("{} (logged once)", self.error().message);
            } else {
                tracing::warn!(
                    dir = %self.dir.display(),
                    "storage: the store is below --max-store-mb again, writes resumed"
                );
            }
        }
    }

    /// Counts a write the writer had to give up while the disk was full.
    pub(crate) fn note_dropped(&self, n: u64) {
        if self.dropped.fetch_add(n, Ordering::Relaxed) == 0 {
            tracing::error!(
                "storage: the disk stayed full long enough that writes had to be dropped \
                 (events, read marks, peer records); messages already acknowledged are kept"
            );
        }
    }

    /// The `/status` view.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "full": self.is_full(),
            "disk_full": self.disk_full(),
            "over_limit": self.over_limit.load(Ordering::Relaxed),
            "full_since": *self.full_since.lock().unwrap_or_else(|p| p.into_inner()),
            "store_bytes": self.store_bytes(),
            "file_bytes": self.file_bytes.load(Ordering::Relaxed),
            "max_store_bytes": self.max_bytes(),
            "disk_free_bytes": free_bytes(&self.dir),
            "writes_dropped": self.dropped.load(Ordering::Relaxed),
        })
    }
}

/// Bytes an unprivileged writer may still use on the filesystem holding `dir`.
pub fn free_bytes(dir: &Path) -> Option<u64> {
    statvfs(dir).map(|s| s.available)
}

/// The size of the filesystem holding `dir`: how big the WAL may grow before it is rewound
/// depends on it (a WAL of 128 MB on a 48 MB disk fills the disk by itself).
pub fn disk_bytes(dir: &Path) -> Option<u64> {
    statvfs(dir).map(|s| s.total)
}

/// What `statvfs` says of a filesystem, in bytes.
struct FsSpace {
    available: u64,
    total: u64,
}

fn statvfs(dir: &Path) -> Option<FsSpace> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
        // SAFETY: `path` is a valid NUL-terminated string for the duration of the call and
        // `stat` is a zeroed, properly aligned statvfs that the call fills in.
        let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::statvfs(path.as_ptr(), &mut stat) };
        if rc != 0 {
            return None;
        }
        #[allow(clippy::unnecessary_cast)] // the field types differ between platforms
        Some(FsSpace {
            available: stat.f_bavail as u64 * stat.f_frsize as u64,
            total: stat.f_blocks as u64 * stat.f_frsize as u64,
        })
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        None
    }
}

/// `12.3 MB`-style sizes for messages.
pub fn human(bytes: u64) -> String {
    let mb = bytes as f64 / (1024.0 * 1024.0);
    if mb >= 1024.0 {
        format!("{:.1} GB", mb / 1024.0)
    } else {
        format!("{mb:.1} MB")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_state_follows_the_measured_size() {
        let dir = tempfile::tempdir().unwrap();
        let cap = Capacity::new(dir.path());
        cap.set_store_bytes(10 << 20);
        assert!(!cap.is_full(), "no limit");
        cap.set_max_bytes(8 << 20);
        assert!(cap.is_full());
        let err = cap.check().unwrap_err();
        assert_eq!(err.code.as_str(), "ERR_STORAGE_FULL");
        assert!(err.message.contains("--max-store-mb 8"), "{}", err.message);
        assert!(err.message.contains(&dir.path().display().to_string()));
        cap.set_store_bytes(4 << 20);
        assert!(!cap.is_full());
    }

    #[test]
    fn disk_full_says_where_and_how_much_is_free() {
        let dir = tempfile::tempdir().unwrap();
        let cap = Capacity::new(dir.path());
        cap.set_disk_full();
        let err = cap.check().unwrap_err();
        assert_eq!(err.code.http_status(), 507);
        assert!(err.message.contains("free"), "{}", err.message);
        assert!(err.message.contains("resumes by itself"), "{}", err.message);
        cap.clear_disk_full();
        assert!(cap.check().is_ok());
        assert!(free_bytes(dir.path()).is_some());
    }
}

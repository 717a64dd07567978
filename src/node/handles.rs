//! Task handles: durable references that a front-end hands a client for work that goes on
//! after the call that started it — an ACP task delegated to a peer, or the wait for a peer's
//! reply in a conversation. MCP's tasks extension (`resultType: "task"`) gives the client such
//! a handle and expects it to outlive the server process, so a handle is committed to the
//! store before it is handed out and read back from the store on every use (nothing about it
//! lives only in memory).
//!
//! A handle expires after its TTL: expiry forgets the handle only, never the ACP task or a
//! message it points at.

use rusqlite::{OptionalExtension, params};

use super::Node;
use super::error::{NodeError, NodeResult};
use super::ids::{make_id, now_iso, now_unix};
use super::store::WriteOp;

/// What a handle stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandleKind {
    /// An ACP task (`task_id`): the handle follows its state.
    Task,
    /// The reply a peer sends in a conversation (`context_id`) after `message_id`.
    Reply,
}

impl HandleKind {
    fn as_str(self) -> &'static str {
        match self {
            HandleKind::Task => "task",
            HandleKind::Reply => "reply",
        }
    }

    fn parse(s: &str) -> Option<HandleKind> {
        match s {
            "task" => Some(HandleKind::Task),
            "reply" => Some(HandleKind::Reply),
            _ => None,
        }
    }
}

/// One stored handle.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskHandle {
    /// The id the client holds (`mcptask_…`).
    pub id: String,
    /// What it stands for.
    pub kind: HandleKind,
    /// The ACP task ([`HandleKind::Task`]).
    pub task_id: Option<String>,
    /// The conversation.
    pub context_id: Option<String>,
    /// The peer doing the work or expected to reply.
    pub peer_id: Option<String>,
    /// The message whose reply is awaited ([`HandleKind::Reply`]).
    pub message_id: Option<String>,
    /// Creation time, ISO-8601.
    pub created_at: String,
    /// Creation time, Unix seconds.
    pub created_unix: f64,
    /// Replies received after this Unix time count ([`HandleKind::Reply`]: taken just before
    /// the message was sent, so a reply that beats the handle into the store still counts).
    pub since: f64,
    /// Time to live from creation, milliseconds.
    pub ttl_ms: u64,
    /// How many questions of the worker the client answered through this handle (names the
    /// next question, so each one has a key of its own).
    pub answers: u32,
    /// The client stopped waiting ([`HandleKind::Reply`]; an ACP task is cancelled instead).
    pub cancelled: bool,
    /// The question the client last answered, and when (Unix time): a worker that asks again
    /// keeps its earlier reason in the task unless it gives a new one, so what was already
    /// answered must not be shown as the new question, nor an older message as its words.
    pub answered: Option<String>,
    /// When that answer was sent.
    pub answered_at: Option<f64>,
}

impl TaskHandle {
    /// Unix time at which the handle expires.
    pub fn expires_at(&self) -> f64 {
        self.created_unix + self.ttl_ms as f64 / 1000.0
    }
}

/// What a new handle points at.
#[derive(Debug, Clone)]
pub struct NewHandle {
    /// What it stands for.
    pub kind: HandleKind,
    /// The ACP task.
    pub task_id: Option<String>,
    /// The conversation.
    pub context_id: Option<String>,
    /// The peer.
    pub peer_id: Option<String>,
    /// The message whose reply is awaited.
    pub message_id: Option<String>,
    /// Time to live, milliseconds.
    pub ttl_ms: u64,
    /// Replies after this Unix time count (default: the handle's creation).
    pub since: Option<f64>,
}

/// Schema v8: the handles table (`store.rs` runs it as a migration).
pub(crate) fn migration() -> String {
    "CREATE TABLE task_handles(
        id           TEXT PRIMARY KEY,
        kind         TEXT NOT NULL,
        task_id      TEXT,
        context_id   TEXT,
        peer_id      TEXT,
        message_id   TEXT,
        created_at   TEXT NOT NULL,
        created_unix REAL NOT NULL,
        since        REAL NOT NULL,
        ttl_ms       INTEGER NOT NULL,
        expires_at   REAL NOT NULL,
        answers      INTEGER NOT NULL DEFAULT 0,
        cancelled    INTEGER NOT NULL DEFAULT 0,
        answered     TEXT,
        answered_at  REAL
     );
     CREATE INDEX task_handles_by_expiry ON task_handles(expires_at);"
        .to_owned()
}

/// Writes one handle (the store writer calls this for [`WriteOp::UpsertHandle`]).
pub(crate) fn upsert(tx: &rusqlite::Transaction<'_>, h: &TaskHandle) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT OR REPLACE INTO task_handles(id, kind, task_id, context_id, peer_id, message_id,
            created_at, created_unix, since, ttl_ms, expires_at, answers, cancelled, answered,
            answered_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
    )?
    .execute(params![
        h.id,
        h.kind.as_str(),
        h.task_id,
        h.context_id,
        h.peer_id,
        h.message_id,
        h.created_at,
        h.created_unix,
        h.since,
        h.ttl_ms as i64,
        h.expires_at(),
        h.answers,
        h.cancelled,
        h.answered,
        h.answered_at,
    ])?;
    Ok(())
}

/// Drops the handles expired at `now` (the store writer calls this for
/// [`WriteOp::DropExpiredHandles`]).
pub(crate) fn drop_expired(tx: &rusqlite::Transaction<'_>, now: f64) -> rusqlite::Result<()> {
    tx.prepare_cached("DELETE FROM task_handles WHERE expires_at <= ?1")?
        .execute(params![now])?;
    Ok(())
}

fn read(conn: &rusqlite::Connection, id: &str) -> rusqlite::Result<Option<TaskHandle>> {
    conn.query_row(
        "SELECT id, kind, task_id, context_id, peer_id, message_id, created_at, created_unix,
                since, ttl_ms, answers, cancelled, answered, answered_at
           FROM task_handles WHERE id = ?1",
        params![id],
        |r| {
            let kind: String = r.get(1)?;
            Ok(TaskHandle {
                id: r.get(0)?,
                kind: HandleKind::parse(&kind).unwrap_or(HandleKind::Task),
                task_id: r.get(2)?,
                context_id: r.get(3)?,
                peer_id: r.get(4)?,
                message_id: r.get(5)?,
                created_at: r.get(6)?,
                created_unix: r.get(7)?,
                since: r.get(8)?,
                ttl_ms: r.get::<_, i64>(9)?.max(0) as u64,
                answers: r.get(10)?,
                cancelled: r.get(11)?,
                answered: r.get(12)?,
                answered_at: r.get(13)?,
            })
        },
    )
    .optional()
}

impl Node {
    /// Creates a handle and commits it before returning, so the client that is given its id
    /// can use it after any crash or restart. Expired handles are dropped on the way.
    pub async fn create_handle(&self, new: NewHandle) -> NodeResult<TaskHandle> {
        super::ensure_writable(self)?;
        let now = now_unix();
        let handle = TaskHandle {
            id: make_id("mcptask"),
            kind: new.kind,
            task_id: new.task_id,
            context_id: new.context_id,
            peer_id: new.peer_id,
            message_id: new.message_id,
            created_at: now_iso(),
            created_unix: now,
            since: new.since.unwrap_or(now),
            ttl_ms: new.ttl_ms,
            answers: 0,
            cancelled: false,
            answered: None,
            answered_at: None,
        };
        let store = self.store();
        store.write(WriteOp::DropExpiredHandles(handle.created_unix));
        store.write(WriteOp::UpsertHandle(Box::new(handle.clone())));
        store.flush().await?;
        Ok(handle)
    }

    /// A live handle. An unknown or expired one is "not found" (an expired one is dropped).
    pub async fn handle(&self, id: &str) -> NodeResult<TaskHandle> {
        let key = id.to_owned();
        let found = self.store().read(move |c| read(c, &key)).await?;
        let not_found = || NodeError::not_found(format!("task '{id}' not found (or expired)"));
        let handle = found.ok_or_else(not_found)?;
        let now = now_unix();
        if handle.expires_at() <= now {
            self.store().write(WriteOp::DropExpiredHandles(now));
            return Err(not_found());
        }
        Ok(handle)
    }

    /// Stores a changed handle (an answer counted, a wait cancelled) and waits for the commit.
    pub async fn save_handle(&self, handle: &TaskHandle) -> NodeResult<()> {
        super::ensure_writable(self)?;
        self.store()
            .write_wait(WriteOp::UpsertHandle(Box::new(handle.clone())))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn new_task(ttl_ms: u64) -> NewHandle {
        NewHandle {
            kind: HandleKind::Task,
            task_id: Some("task_1".into()),
            context_id: Some("ctx".into()),
            peer_id: Some("peer_001".into()),
            message_id: None,
            ttl_ms,
            since: None,
        }
    }

    #[tokio::test]
    async fn handles_survive_a_restart_and_expire_alone() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::ephemeral("h", dir.path().join("h"));
        let node = Node::open(config.clone()).unwrap();
        let (task, _) = node
            .create_task(&serde_json::json!({"payload": {"role": "user", "parts": [{"type": "text", "content": "x"}]}, "task_id": "task_1"}))
            .await
            .unwrap();
        let long = node.create_handle(new_task(3_600_000)).await.unwrap();
        let short = node.create_handle(new_task(1)).await.unwrap();
        assert!(long.id.starts_with("mcptask_"));
        let mut changed = node.handle(&long.id).await.unwrap();
        changed.answers = 2;
        changed.answered = Some("Which harbour?".into());
        changed.answered_at = Some(now_unix());
        node.save_handle(&changed).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let err = node.handle(&short.id).await.unwrap_err();
        assert_eq!(err.code, crate::node::error::ErrorCode::NotFound);
        assert_eq!(
            node.task(&task.id).unwrap().id,
            "task_1",
            "expiry drops the handle, never the ACP task"
        );
        node.shutdown().await;
        drop(node);

        let node = Node::open(config).unwrap();
        let back = node.handle(&long.id).await.unwrap();
        assert_eq!(back, changed, "every field comes back after a restart");
        assert!(node.handle(&short.id).await.is_err());
        assert!(node.handle("mcptask_nope").await.is_err());
        node.shutdown().await;
    }
}

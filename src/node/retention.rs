//! Retention: what the store keeps, and the background pruning that holds it to that.
//!
//! Three limits (`--retain-days`, `--retain-messages`, `--max-store-mb`; 0 = none), changeable
//! on a running node (`PATCH /retention`). A background task works out, from a read
//! connection, which messages are past them (oldest first, by insertion order) and sends the
//! store writer small bounded steps ([`PruneStep`]): each deletes at most [`WINDOW`]
//! consecutive rows and gives back up to [`VACUUM_PAGES`] free pages to the filesystem
//! (incremental vacuum), and stops early once it has held the writer for its budget
//! ([`STEP_BUDGET`], or [`PRESSED_BUDGET`] while the size limit presses). A
//! step runs in a transaction of its own after the writer has committed and answered the
//! batch before it, so normal writes interleave with it and a send waits behind at most one
//! short step.
//!
//! A `PATCH /retention` is saved in the store (`meta` key `retention`) and holds across
//! restarts for every setting the next start does not name itself (a flag or its
//! environment variable wins); `GET /retention` says where each setting came from.
//!
//! Never removed: an outbound message a peer has not confirmed (numbered above the oldest
//! unconfirmed one of any peer), a message waiting in an offline queue, and the messages of
//! an open (not terminal) task.

use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::Notify;

use super::Node;
use super::error::{NodeError, NodeResult};

/// Most rows one prune step examines (and so deletes).
pub const WINDOW: i64 = 256;
/// Rows the first delete statement of a step examines; the next ones are sized to the budget
/// left ([`next_chunk`]). A step deletes until its budget is spent, so it holds the writer
/// about [`STEP_BUDGET`] on any machine instead of for a fixed number of rows (a whole
/// window of 256 took 7-11 ms typically on the project's test machine, most of it removing
/// the rows from the search index).
pub const CHUNK: i64 = 4;
/// Writer time after which a step starts no further chunk and gives back no further page:
/// well under the single-connection p99 of a send, so a send that queues behind a step does
/// not land in the tail.
pub const STEP_BUDGET: Duration = Duration::from_millis(1);
/// A step's budget while the size limit presses: sends are refused (507) until there is
/// room, so making room quickly counts more than a millisecond of latency, and longer steps
/// remove more rows per unit of writer time (each step has a fixed cost: its commit, its
/// pragmas).
pub const PRESSED_BUDGET: Duration = Duration::from_millis(8);
/// Most free pages one step gives back to the filesystem.
pub const VACUUM_PAGES: i64 = 1024;
/// How often retention runs a pass when nothing presses (age and count limits).
const PASS_EVERY: Duration = Duration::from_secs(30);
/// How often it looks at the store's measured size (a pass runs at once above 90 % of
/// `--max-store-mb`).
const SIZE_CHECK_EVERY: Duration = Duration::from_millis(250);
/// Wait after a pass under size pressure that removed nothing.
const FRUITLESS_BACKOFF: Duration = Duration::from_secs(2);
/// Times a step that found the database busy is tried again before the pass gives up.
const BUSY_RETRIES: u32 = 100;
/// Steps one peer's quota pass may take (each removes up to [`WINDOW`] messages).
const MAX_PEER_STEPS: usize = 100_000;
/// Pause between two steps of a pass that no size limit presses: the writer's queue drains
/// between them, and pruning takes at most about a third of the writer's time.
const STEP_PAUSE: Duration = Duration::from_millis(2);

/// What the store keeps; 0 means no limit for each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Policy {
    /// Messages older than this many days are removed.
    pub retain_days: u64,
    /// At most this many messages are kept.
    pub retain_messages: u64,
    /// The store (database + WAL) is kept under this many MiB.
    pub max_store_mb: u64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            retain_days: crate::config::DEFAULT_RETAIN_DAYS,
            retain_messages: crate::config::DEFAULT_RETAIN_MESSAGES,
            max_store_mb: crate::config::DEFAULT_MAX_STORE_MB,
        }
    }
}

/// Upper bounds of the three settings (a century, a trillion messages, an exabyte).
const MAX_DAYS: u64 = 36_500;
const MAX_MESSAGES: u64 = 1_000_000_000_000;
const MAX_STORE_MB: u64 = 1_000_000_000_000;

impl Policy {
    /// This policy with the fields of a `PATCH /retention` body changed. Unknown fields and
    /// values that are not non-negative integers within bounds are refused (400).
    pub fn patched(self, body: &Value) -> NodeResult<Policy> {
        let obj = body
            .as_object()
            .ok_or_else(|| NodeError::invalid("body must be a JSON object"))?;
        let mut out = self;
        for (key, value) in obj {
            let (slot, max) = match key.as_str() {
                "retain_days" => (&mut out.retain_days, MAX_DAYS),
                "retain_messages" => (&mut out.retain_messages, MAX_MESSAGES),
                "max_store_mb" => (&mut out.max_store_mb, MAX_STORE_MB),
                other => {
                    return Err(NodeError::invalid(format!(
                        "unknown field '{other}': expected retain_days, retain_messages, max_store_mb"
                    )));
                }
            };
            *slot = value.as_u64().filter(|v| *v <= max).ok_or_else(|| {
                NodeError::invalid(format!(
                    "'{key}' must be an integer from 0 (no limit) to {max}"
                ))
            })?;
        }
        Ok(out)
    }

    /// The size limit in bytes (0 = none).
    pub fn max_store_bytes(&self) -> u64 {
        self.max_store_mb.saturating_mul(1024 * 1024)
    }
}

/// Retention settings named one by one, each optional: the ones a start's flags named, or
/// the ones `PATCH /retention` saved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overrides {
    /// `retain_days`, when named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retain_days: Option<u64>,
    /// `retain_messages`, when named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retain_messages: Option<u64>,
    /// `max_store_mb`, when named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_store_mb: Option<u64>,
}

/// The `meta` key a `PATCH /retention` is saved under.
pub(crate) const SAVED_KEY: &str = "retention";

impl Overrides {
    /// The settings of `policy` that a (validated) `PATCH` body names.
    fn named_in(body: &Value, policy: Policy) -> Overrides {
        let has = |k: &str| body.get(k).is_some();
        Overrides {
            retain_days: has("retain_days").then_some(policy.retain_days),
            retain_messages: has("retain_messages").then_some(policy.retain_messages),
            max_store_mb: has("max_store_mb").then_some(policy.max_store_mb),
        }
    }

    /// `later` over `self`, setting by setting.
    fn then(self, later: Overrides) -> Overrides {
        Overrides {
            retain_days: later.retain_days.or(self.retain_days),
            retain_messages: later.retain_messages.or(self.retain_messages),
            max_store_mb: later.max_store_mb.or(self.max_store_mb),
        }
    }
}

/// Where each setting in force came from: `flag` (this start named it), `saved` (a `PATCH
/// /retention`, in this run or an earlier one) or `default`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Sources {
    retain_days: &'static str,
    retain_messages: &'static str,
    max_store_mb: &'static str,
}

/// The policy a node starts with, and where each setting came from: a setting this start
/// `named` (flag or environment) wins, else the one a `PATCH` `saved`, else `defaults`.
pub fn starting(defaults: Policy, named: Overrides, saved: Overrides) -> (Policy, Sources) {
    let pick = |flag: Option<u64>, saved: Option<u64>, default: u64| match (flag, saved) {
        (Some(v), _) => (v, "flag"),
        (None, Some(v)) => (v, "saved"),
        (None, None) => (default, "default"),
    };
    let days = pick(named.retain_days, saved.retain_days, defaults.retain_days);
    let messages = pick(
        named.retain_messages,
        saved.retain_messages,
        defaults.retain_messages,
    );
    let size = pick(
        named.max_store_mb,
        saved.max_store_mb,
        defaults.max_store_mb,
    );
    (
        Policy {
            retain_days: days.0,
            retain_messages: messages.0,
            max_store_mb: size.0,
        },
        Sources {
            retain_days: days.1,
            retain_messages: messages.1,
            max_store_mb: size.1,
        },
    )
}

/// What retention did, for `/status`.
#[derive(Debug, Default, Clone, Serialize)]
struct Stats {
    removed_messages: u64,
    vacuumed_pages: u64,
    passes: u64,
    last_pass_at: Option<String>,
    oldest_kept_message_id: Option<String>,
    oldest_kept_at: Option<String>,
    messages_kept: u64,
}

/// The live policy and what retention did with it.
#[derive(Debug)]
pub struct Retention {
    policy: Mutex<Policy>,
    /// Where each setting in force came from.
    sources: Mutex<Sources>,
    /// What `PATCH /retention` saved, in this run and earlier ones.
    saved: Mutex<Overrides>,
    stats: Mutex<Stats>,
    wake: Notify,
}

impl Retention {
    /// Retention as a node starts: [`starting`] made the policy and its sources; `saved`
    /// is what earlier `PATCH`es left in the store.
    pub fn new((policy, sources): (Policy, Sources), saved: Overrides) -> Retention {
        Retention {
            policy: Mutex::new(policy),
            sources: Mutex::new(sources),
            saved: Mutex::new(saved),
            stats: Mutex::new(Stats::default()),
            wake: Notify::new(),
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> Policy {
        *self.policy.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One bounded prune step for the store writer.
#[derive(Debug, Clone)]
pub struct PruneStep {
    /// Rows numbered above this are examined …
    pub after: i64,
    /// … up to this one (and at most [`WINDOW`] of them).
    pub up_to: i64,
    /// Outbound messages numbered (`server_seq`) above this are kept: some peer has not
    /// confirmed them (`i64::MAX` when every peer confirmed everything).
    pub keep_outbound_above: i64,
    /// Ids of open tasks, as a JSON array: their messages are kept.
    pub open_tasks: String,
    /// Also remove up to [`WINDOW`] of the oldest events of the replay log (each carries a
    /// copy of its message's parts), keeping the newest [`EVENTS_KEPT`]: under size pressure.
    pub trim_events: bool,
    /// Instead of the rows `after..=up_to`: the oldest [`WINDOW`] inbound messages from this
    /// peer (one past 90 % of `--peer-max-store-mb`), so a peer that sends a lot loses its
    /// own oldest history and never pushes out anyone else's or stops being heard.
    pub from_peer: Option<String>,
    /// Writer time after which the step starts no further chunk or page ([`STEP_BUDGET`]).
    pub budget: Duration,
}

/// Events the replay log keeps however hard the size limit presses (SSE clients further
/// behind than this replay from `/messages` instead).
pub const EVENTS_KEPT: i64 = 1_000;

/// What a prune step did.
#[derive(Debug, Clone, Default)]
pub struct PruneOutcome {
    /// Messages removed.
    pub deleted: u64,
    /// Events removed from the replay log.
    pub events_deleted: u64,
    /// Of them, inbound messages `/recv` had not handed out.
    pub deleted_unread: u64,
    /// The last row number examined (the next step starts after it).
    pub examined_to: i64,
    /// Free pages left in the database file after the vacuum.
    pub freelist: i64,
    /// Pages given back to the filesystem.
    pub vacuumed: i64,
    /// Bytes the database's pages in use take.
    pub used_bytes: u64,
    /// Bytes of inbound messages removed, per peer (what `--peer-max-store-mb` counts).
    pub freed_by_peer: std::collections::HashMap<String, u64>,
}

/// The size of a step's next delete statement: what is left of its budget at the pace of
/// the rows done so far (so a step is a few statements, not one per [`CHUNK`]), growing at
/// most fourfold from the last one (a first chunk that happened to be cheap must not commit
/// the step to a window's worth); `None` once the budget is spent.
fn next_chunk(started: std::time::Instant, budget: Duration, done: i64, last: i64) -> Option<i64> {
    let took = started.elapsed();
    let left = budget.checked_sub(took).filter(|left| !left.is_zero())?;
    let pace = done as f64 / took.as_secs_f64().max(1e-6);
    Some(((left.as_secs_f64() * pace) as i64).clamp(CHUNK, last.saturating_mul(4).min(WINDOW)))
}

/// Runs one step inside the writer's transaction: deletes chunk after chunk, then gives free
/// pages back, until the rows or pages run out or the step has held the writer for
/// `step.budget` (it always does one chunk and one page, so every step makes progress).
pub(crate) fn prune_step(
    tx: &rusqlite::Transaction<'_>,
    step: &PruneStep,
) -> rusqlite::Result<PruneOutcome> {
    let started = std::time::Instant::now();
    let spent = || started.elapsed() >= step.budget;
    let end = step.up_to.min(step.after.saturating_add(WINDOW));
    let mut out = PruneOutcome {
        examined_to: step.after,
        ..PruneOutcome::default()
    };
    const RETURNING: &str = "RETURNING direction = 'inbound' AND consumed = 0,
                        CASE WHEN direction = 'inbound' THEN peer_id END,
                        length(CAST(frame AS BLOB))";
    let row = |r: &rusqlite::Row| -> rusqlite::Result<(bool, Option<String>, i64)> {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    };
    let mut rows: Vec<(bool, Option<String>, i64)> = Vec::new();
    if let Some(peer) = &step.from_peer {
        // Inbound only: no offline queue or confirmation protects them, an open task does.
        let mut stmt = tx.prepare_cached(&format!(
            "DELETE FROM messages WHERE rowid_seq IN (
                SELECT rowid_seq FROM messages
                 WHERE peer_id = ?1 AND direction = 'inbound'
                   AND (task_id IS NULL OR task_id NOT IN (SELECT value FROM json_each(?2)))
                 ORDER BY received_at LIMIT ?3)
              {RETURNING}"
        ))?;
        let mut chunk = CHUNK;
        loop {
            let limit = chunk.min(WINDOW - rows.len() as i64);
            let before = rows.len();
            for r in stmt.query_map(rusqlite::params![peer, step.open_tasks, limit], row)? {
                rows.push(r?);
            }
            if ((rows.len() - before) as i64) < limit || rows.len() as i64 >= WINDOW {
                break;
            }
            match next_chunk(started, step.budget, rows.len() as i64, chunk) {
                Some(next) => chunk = next,
                None => break,
            }
        }
    } else if end > step.after {
        let mut stmt = tx.prepare_cached(&format!(
            "DELETE FROM messages
              WHERE rowid_seq > ?1 AND rowid_seq <= ?2
                AND NOT (direction = 'outbound' AND server_seq > ?3)
                AND message_id NOT IN (SELECT message_id FROM offline_queue)
                AND (task_id IS NULL OR task_id NOT IN (SELECT value FROM json_each(?4)))
              {RETURNING}"
        ))?;
        let mut chunk = CHUNK;
        while out.examined_to < end {
            let to = end.min(out.examined_to.saturating_add(chunk));
            let params = rusqlite::params![
                out.examined_to,
                to,
                step.keep_outbound_above,
                step.open_tasks
            ];
            for r in stmt.query_map(params, row)? {
                rows.push(r?);
            }
            out.examined_to = to;
            match next_chunk(started, step.budget, out.examined_to - step.after, chunk) {
                Some(next) => chunk = next,
                None => break,
            }
        }
    }
    if !rows.is_empty() {
        out.deleted = rows.len() as u64;
        out.deleted_unread = rows.iter().filter(|u| u.0).count() as u64;
        for (_, peer, bytes) in rows {
            if let Some(peer) = peer {
                *out.freed_by_peer.entry(peer).or_insert(0) += bytes.max(0) as u64;
            }
        }
        let mut stmt = tx.prepare_cached(
            "UPDATE peer_stored SET bytes = max(0, bytes - ?2) WHERE peer_id = ?1",
        )?;
        for (peer, bytes) in &out.freed_by_peer {
            stmt.execute(rusqlite::params![peer, *bytes as i64])?;
        }
        tx.execute(
            "INSERT INTO meta(key, value) VALUES ('retention_removed', ?1)
             ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + excluded.value",
            [out.deleted as i64],
        )?;
    }
    if step.trim_events {
        out.events_deleted = tx.execute(
            "DELETE FROM events WHERE seq IN (SELECT seq FROM events ORDER BY seq LIMIT ?1)
               AND seq <= (SELECT max(seq) FROM events) - ?2",
            rusqlite::params![WINDOW, EVENTS_KEPT],
        )? as u64;
    }
    let pragma = |name: &str| -> rusqlite::Result<i64> {
        tx.pragma_query_value(None, name, |r| r.get::<_, i64>(0))
    };
    let before = pragma("freelist_count")?;
    if before > 0 && pragma("auto_vacuum")? == 2 {
        // SQLite gives back one page per step of this statement (one result row each), so
        // it is stepped until it is done or the budget is spent; `execute` would step it
        // once and give back a single page.
        let mut stmt = tx.prepare_cached(&format!("PRAGMA incremental_vacuum({VACUUM_PAGES})"))?;
        let mut pages = stmt.query([])?;
        while pages.next()?.is_some() && !spent() {}
    }
    out.freelist = pragma("freelist_count")?;
    out.vacuumed = before - out.freelist;
    let pages = pragma("page_count")?;
    out.used_bytes = ((pages - out.freelist).max(0) * pragma("page_size")?) as u64;
    Ok(out)
}

impl Node {
    /// `GET /retention`: the policy in force and what retention did.
    pub fn retention(&self) -> Value {
        let r = &self.inner.retention;
        let stats = r.stats.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let sources = *r.sources.lock().unwrap_or_else(|p| p.into_inner());
        let mut v = json!(r.policy());
        if let (Some(obj), Value::Object(s)) = (v.as_object_mut(), json!(stats)) {
            obj.extend(s);
            obj.insert("sources".into(), json!(sources));
            obj.insert(
                "store_bytes".into(),
                json!(self.inner.store.capacity().store_bytes()),
            );
        }
        v
    }

    /// `PATCH /retention`: changes the policy of the running node, runs a pass at once, and
    /// saves the settings it names so that they hold after a restart (unless the restart
    /// names them itself). The change applies even when the store cannot save it (a full
    /// disk is when a user lowers the limits): the answer then says `"saved": false`.
    pub async fn set_retention(&self, body: &Value) -> NodeResult<Value> {
        let r = &self.inner.retention;
        let (policy, patch) = {
            let mut p = r.policy.lock().unwrap_or_else(|p| p.into_inner());
            *p = p.patched(body)?;
            (*p, Overrides::named_in(body, *p))
        };
        let saved = {
            let mut saved = r.saved.lock().unwrap_or_else(|p| p.into_inner());
            *saved = saved.then(patch);
            *saved
        };
        {
            let mut sources = r.sources.lock().unwrap_or_else(|p| p.into_inner());
            let mark = |slot: &mut &'static str, named: Option<u64>| {
                if named.is_some() {
                    *slot = "saved";
                }
            };
            mark(&mut sources.retain_days, patch.retain_days);
            mark(&mut sources.retain_messages, patch.retain_messages);
            mark(&mut sources.max_store_mb, patch.max_store_mb);
        }
        self.inner
            .store
            .capacity()
            .set_max_bytes(policy.max_store_bytes());
        tracing::info!(?policy, "retention changed");
        r.wake.notify_one();
        let stored = self
            .inner
            .store
            .write_wait(super::store::WriteOp::SetMeta {
                key: SAVED_KEY.into(),
                value: serde_json::to_string(&saved).unwrap_or_default(),
            })
            .await;
        let mut v = self.retention();
        if let Some(obj) = v.as_object_mut() {
            obj.insert("ok".into(), json!(true));
            obj.insert("saved".into(), json!(stored.is_ok()));
            if let Err(e) = stored {
                tracing::warn!(error = %e, "the retention change applies until the node stops: it could not be saved");
                obj.insert(
                    "warning".into(),
                    json!(format!(
                        "applies until the node stops: it could not be saved ({e})"
                    )),
                );
            }
        }
        Ok(v)
    }

    /// Starts the background pruning (once, when the node starts serving).
    pub fn start_retention(&self) {
        let node = self.clone();
        let stop = self.shutdown_token();
        self.background().spawn(async move {
            let mut last_pass: Option<tokio::time::Instant> = None;
            // A pass under size pressure that could remove nothing (all of it unconfirmed,
            // queued or in open tasks, for now) is not repeated for FRUITLESS_BACKOFF:
            // scanning the whole store four times a second would cost the writer for nothing.
            let mut fruitless: Option<tokio::time::Instant> = None;
            // The same for peers past their stored-bytes quota whose messages are all in
            // open tasks.
            let mut peer_fruitless: Option<tokio::time::Instant> = None;
            loop {
                let target = node.inner.retention.policy().max_store_bytes() / 10 * 9;
                let pressed = target > 0
                    && node.inner.store.capacity().store_bytes() > target
                    && fruitless.is_none_or(|t| t.elapsed() >= FRUITLESS_BACKOFF);
                if pressed || last_pass.is_none_or(|t| t.elapsed() >= PASS_EVERY) {
                    last_pass = Some(tokio::time::Instant::now());
                    match node.retention_pass().await {
                        // Only a pass under pressure that removed nothing backs off: an
                        // unpressed pass over a young store (the first one, at start) removes
                        // nothing too, and must not hold back the pressed passes after it.
                        Ok(0) if pressed => fruitless = Some(tokio::time::Instant::now()),
                        Ok(0) => {}
                        Ok(_) => fruitless = None,
                        Err(e) => tracing::debug!("retention pass stopped: {e}"),
                    }
                }
                let peer_target = node.inner.quotas.limits().max_store_bytes / 10 * 9;
                if peer_target > 0
                    && peer_fruitless.is_none_or(|t| t.elapsed() >= FRUITLESS_BACKOFF)
                    && !node
                        .inner
                        .store
                        .stored_bytes()
                        .above(peer_target)
                        .is_empty()
                {
                    match node.peer_quota_pass().await {
                        Ok(0) => peer_fruitless = Some(tokio::time::Instant::now()),
                        Ok(_) => peer_fruitless = None,
                        Err(e) => tracing::debug!("peer quota pass stopped: {e}"),
                    }
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = node.inner.retention.wake.notified() => {
                        last_pass = None;
                        fruitless = None;
                        peer_fruitless = None;
                    }
                    _ = tokio::time::sleep(SIZE_CHECK_EVERY) => {}
                }
            }
        });
    }

    /// The outbound number above which messages are kept because some peer has not
    /// confirmed them.
    fn unconfirmed_floor(&self) -> i64 {
        self.lock_peers()
            .peers
            .values()
            .filter_map(|p| p.unconfirmed.ids().next().map(|(seq, _)| seq - 1))
            .min()
            .unwrap_or(i64::MAX)
    }

    /// Runs the step `make` builds (given the open tasks, as a JSON array). A step can meet
    /// the checkpointer holding the database (SQLITE_BUSY: it rewinds the WAL more often
    /// under a small --max-store-mb): wait a little and take it again rather than giving up
    /// the whole pass.
    async fn prune_retrying(&self, make: impl Fn(String) -> PruneStep) -> NodeResult<PruneOutcome> {
        let store = &self.inner.store;
        let mut busy = 0;
        let out = loop {
            let open_tasks: Vec<String> = self
                .lock_tasks()
                .values()
                .filter(|t| !t.status.is_terminal())
                .map(|t| t.id.clone())
                .collect();
            match store.prune(make(json!(open_tasks).to_string())).await {
                Err(e)
                    if e.message.contains("database is locked")
                        && busy < BUSY_RETRIES
                        && !store.capacity().disk_full() =>
                {
                    busy += 1;
                    tokio::time::sleep(STEP_PAUSE.max(Duration::from_millis(10))).await;
                }
                other => break other?,
            }
        };
        if out.deleted_unread > 0 {
            self.inner
                .unread
                .fetch_sub(out.deleted_unread as i64, Ordering::Relaxed);
        }
        Ok(out)
    }

    /// Prunes the oldest inbound messages of every peer past 90 % of
    /// `--peer-max-store-mb`, down to that mark (or until what is left is in open tasks);
    /// returns how many it removed.
    async fn peer_quota_pass(&self) -> NodeResult<u64> {
        let target = self.inner.quotas.limits().max_store_bytes / 10 * 9;
        if target == 0 {
            return Ok(0);
        }
        let stored = self.inner.store.stored_bytes().clone();
        let mut removed = 0;
        for (peer, _) in stored.above(target) {
            // Bounded: each step removes up to WINDOW rows or ends the loop.
            for _ in 0..MAX_PEER_STEPS {
                if stored.get(&peer) <= target || self.is_shutting_down() {
                    break;
                }
                let out = self
                    .prune_retrying(|open_tasks| PruneStep {
                        after: 0,
                        up_to: 0,
                        keep_outbound_above: i64::MAX,
                        open_tasks,
                        trim_events: false,
                        from_peer: Some(peer.clone()),
                        budget: STEP_BUDGET,
                    })
                    .await?;
                removed += out.deleted;
                if out.deleted == 0 {
                    break;
                }
                tokio::time::sleep(STEP_PAUSE).await;
            }
        }
        if removed > 0 {
            self.inner
                .retention
                .stats
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .removed_messages += removed;
            tracing::info!(
                removed,
                "retention removed peers' oldest messages past their quota"
            );
        }
        Ok(removed)
    }

    /// One pass: prunes what is past the policy, step by step; returns how many messages
    /// and events it removed.
    async fn retention_pass(&self) -> NodeResult<u64> {
        let policy = self.inner.retention.policy();
        let store = &self.inner.store;
        let cutoff = (policy.retain_days > 0)
            .then(|| super::ids::now_unix() - policy.retain_days as f64 * 86_400.0);
        let keep = policy.retain_messages;
        let (first, last, age_stop, count_stop, used) = store
            .read(move |c| {
                let one = |sql: &str, p: &[&dyn rusqlite::ToSql]| -> rusqlite::Result<i64> {
                    use rusqlite::OptionalExtension;
                    Ok(c.query_row(sql, p, |r| r.get::<_, Option<i64>>(0))
                        .optional()?
                        .flatten()
                        .unwrap_or(0))
                };
                let first = one("SELECT min(rowid_seq) FROM messages", &[])?;
                let last = one("SELECT max(rowid_seq) FROM messages", &[])?;
                let age_stop = match cutoff {
                    Some(t) => one(
                        "SELECT rowid_seq FROM messages WHERE received_at < ?1
                         ORDER BY received_at DESC LIMIT 1",
                        &[&t],
                    )?,
                    None => 0,
                };
                let count_stop = if keep > 0 {
                    one(
                        "SELECT rowid_seq FROM messages ORDER BY rowid_seq DESC LIMIT 1 OFFSET ?1",
                        &[&(keep.min(i64::MAX as u64) as i64)],
                    )?
                } else {
                    0
                };
                let pages = one("PRAGMA page_count", &[])?;
                let free = one("PRAGMA freelist_count", &[])?;
                let size = one("PRAGMA page_size", &[])?;
                Ok((
                    first,
                    last,
                    age_stop,
                    count_stop,
                    ((pages - free) * size) as u64,
                ))
            })
            .await?;
        // Pruning starts at 90 % of the limit: the rest is room for the WAL's live frames
        // (which the checkpointer keeps short) and for what arrives during a pass.
        let target = policy.max_store_bytes() / 10 * 9;
        let pressed = |used: u64| target > 0 && used > target;
        let mut used = used;
        let mut cursor = first.saturating_sub(1);
        let (mut removed, mut vacuumed, mut events) = (0u64, 0i64, 0u64);
        loop {
            let pressing = pressed(used);
            let end = if pressing {
                last
            } else {
                age_stop.max(count_stop)
            };
            let keep_outbound_above = self.unconfirmed_floor();
            let out = self
                .prune_retrying(|open_tasks| PruneStep {
                    after: cursor,
                    up_to: end,
                    keep_outbound_above,
                    open_tasks,
                    trim_events: pressing,
                    from_peer: None,
                    budget: if pressing {
                        PRESSED_BUDGET
                    } else {
                        STEP_BUDGET
                    },
                })
                .await?;
            removed += out.deleted;
            events += out.events_deleted;
            vacuumed += out.vacuumed;
            used = out.used_bytes;
            cursor = out.examined_to;
            if cursor >= end && out.events_deleted == 0 && (out.freelist == 0 || out.vacuumed == 0)
            {
                break;
            }
            if self.is_shutting_down() {
                break;
            }
            if pressing {
                // The store is at its size limit: sends get 507 until there is room, so the
                // next step goes straight into the writer's queue (after whatever is queued
                // there: sends still interleave with the steps).
                tokio::task::yield_now().await;
            } else {
                tokio::time::sleep(STEP_PAUSE).await;
            }
        }
        let oldest = store
            .read(|c| {
                use rusqlite::OptionalExtension;
                let oldest = c
                    .query_row(
                        "SELECT message_id, received_at FROM messages ORDER BY rowid_seq LIMIT 1",
                        [],
                        |r| Ok((r.get::<_, String>(0)?, r.get::<_, f64>(1)?)),
                    )
                    .optional()?;
                let kept: i64 = c.query_row("SELECT count(*) FROM messages", [], |r| r.get(0))?;
                Ok((oldest, kept))
            })
            .await?;
        {
            let mut s = self
                .inner
                .retention
                .stats
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            s.removed_messages += removed;
            s.vacuumed_pages += vacuumed.max(0) as u64;
            s.passes += 1;
            s.last_pass_at = Some(super::ids::now_iso());
            s.oldest_kept_message_id = oldest.0.as_ref().map(|(id, _)| id.clone());
            s.oldest_kept_at = oldest
                .0
                .as_ref()
                .map(|(_, at)| super::ids::unix_to_iso(*at));
            s.messages_kept = oldest.1.max(0) as u64;
        }
        if removed > 0 {
            tracing::info!(removed, vacuumed, "retention removed old messages");
        }
        Ok(removed + events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A step's chunks follow its budget: none once it is spent, and otherwise what is left
    /// at the pace so far, but never below [`CHUNK`], above [`WINDOW`], or more than four
    /// times the last chunk.
    #[test]
    fn the_next_chunk_fits_what_is_left_of_the_budget() {
        let started = std::time::Instant::now() - Duration::from_secs(1);
        assert_eq!(next_chunk(started, Duration::ZERO, 4, 4), None);
        assert_eq!(next_chunk(started, Duration::from_millis(500), 4, 4), None);
        let hour = Duration::from_secs(3600);
        assert_eq!(next_chunk(started, hour, 4, 4), Some(16));
        assert_eq!(next_chunk(started, hour, 1000, 100), Some(WINDOW));
        // One row a second so far, under two seconds left: the smallest chunk.
        assert_eq!(
            next_chunk(started, Duration::from_secs(2), 1, 64),
            Some(CHUNK)
        );
    }

    #[test]
    fn a_patch_changes_only_what_it_names() {
        let p = Policy::default();
        let q = p
            .patched(&json!({"retain_days": 0, "max_store_mb": 64}))
            .unwrap();
        assert_eq!(q.retain_days, 0);
        assert_eq!(q.max_store_mb, 64);
        assert_eq!(q.retain_messages, p.retain_messages);
        for bad in [
            json!({"retain_days": -1}),
            json!({"retain_days": 1.5}),
            json!({"retain_days": "3"}),
            json!({"retain_days": 36_501}),
            json!({"keep": 1}),
            json!([1]),
        ] {
            let err = p.patched(&bad).unwrap_err();
            assert_eq!(err.code.http_status(), 400, "{bad}");
        }
    }

    #[test]
    fn a_start_takes_its_flags_then_the_saved_patch_then_the_defaults() {
        let defaults = Policy::default();
        let named = Overrides {
            retain_days: Some(7),
            ..Overrides::default()
        };
        let saved = Overrides {
            retain_days: Some(1),
            max_store_mb: Some(64),
            ..Overrides::default()
        };
        let (policy, sources) = starting(defaults, named, saved);
        assert_eq!(policy.retain_days, 7, "a flag wins over a saved patch");
        assert_eq!(
            policy.max_store_mb, 64,
            "a saved patch wins over the default"
        );
        assert_eq!(policy.retain_messages, defaults.retain_messages);
        assert_eq!(
            (
                sources.retain_days,
                sources.max_store_mb,
                sources.retain_messages
            ),
            ("flag", "saved", "default")
        );
        let later = Overrides {
            max_store_mb: Some(128),
            retain_messages: Some(5),
            ..Overrides::default()
        };
        assert_eq!(
            saved.then(later),
            Overrides {
                retain_days: Some(1),
                retain_messages: Some(5),
                max_store_mb: Some(128),
            }
        );
        assert_eq!(
            Overrides::named_in(&json!({"retain_messages": 5}), defaults),
            Overrides {
                retain_messages: Some(defaults.retain_messages),
                ..Overrides::default()
            }
        );
    }

    proptest! {
        /// Any JSON body gives a policy or a 400, never a panic.
        #[test]
        fn prop_any_patch_is_a_policy_or_a_400(body in crate::test_support::arb_json()) {
            match Policy::default().patched(&body) {
                Ok(p) => prop_assert!(p.retain_days <= MAX_DAYS),
                Err(e) => prop_assert_eq!(e.code.http_status(), 400),
            }
        }
    }
}

//! Reading messages back: the consuming inbox (`/recv`), the stored history with filters and
//! paging (`/messages`, `/history`), and a conversation's messages (`/context/{id}/messages`).
//! Queries run on the store's reader connections, after a barrier, so they see every message
//! accepted before they started.

use serde_json::{Value, json};

use super::Node;
use super::error::{ErrorCode, NodeResult};
use super::search::{SearchOrder, TextQuery};
use super::search_plan;
use super::store::{self, MessageRow, WriteOp};

/// A `WHERE` clause built from optional filters, with its bound values.
#[derive(Default)]
pub(super) struct Where {
    clauses: Vec<&'static str>,
    /// The values of the clauses' placeholders, in order.
    pub(super) args: Vec<rusqlite::types::Value>,
}

impl Where {
    /// Adds a condition with its placeholders' values.
    pub(super) fn and<const N: usize>(
        &mut self,
        clause: &'static str,
        values: [rusqlite::types::Value; N],
    ) {
        self.clauses.push(clause);
        self.args.extend(values);
    }

    /// Adds a one-placeholder condition when a value is given.
    fn and_some(&mut self, clause: &'static str, value: Option<&String>) {
        if let Some(v) = value {
            self.and(clause, [v.clone().into()]);
        }
    }

    /// Whether there is no condition at all.
    pub(super) fn is_empty(&self) -> bool {
        self.clauses.is_empty()
    }

    /// Adds every condition of `other` after these.
    pub(super) fn extend(&mut self, other: &Where) {
        self.clauses.extend(other.clauses.iter().copied());
        self.args.extend(other.args.iter().cloned());
    }

    /// `WHERE …`, or nothing when there is no condition.
    pub(super) fn sql(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.clauses.join(" AND "))
        }
    }
}

impl Node {
    /// The condition a peer filter becomes: a known peer (id, display or agent name) by its
    /// local id — every stored message carries one, and it is indexed — else the sender name.
    fn peer_condition(&self, key: &str) -> (&'static str, String) {
        match self.lock_peers().resolve(key) {
            Some(p) => ("peer_id = ?", p.record.id.clone()),
            None => ("sender = ?", key.to_owned()),
        }
    }
}

/// One page of stored messages and where the next one starts.
#[derive(Debug, Clone)]
pub struct MessagePage {
    /// The page's messages, in the query's order.
    pub rows: Vec<MessageRow>,
    /// Matches past the offset, counted up to [`TOTAL_COUNT_CAP`].
    pub total: usize,
    /// Whether `total` is the whole count.
    pub total_exact: bool,
    /// Whether another page follows.
    pub has_more: bool,
    /// The offset of the next page.
    pub next_offset: usize,
}

/// Filters and paging of `GET /messages`.
#[derive(Debug, Clone, Default)]
pub struct MessageQuery {
    /// Page size (1–100, default 20).
    pub limit: usize,
    /// Rows to skip.
    pub offset: usize,
    /// Only messages from or to this peer (local id, display or agent name).
    pub peer_id: Option<String>,
    /// Only this role.
    pub role: Option<String>,
    /// Oldest first (default newest first).
    pub ascending: bool,
    /// Only messages received after this Unix time.
    pub received_after: Option<f64>,
    /// Only `inbound` or `outbound`.
    pub direction: Option<String>,
    /// Only this conversation.
    pub context_id: Option<String>,
    /// Only this task.
    pub task_id: Option<String>,
    /// Only messages whose text matches this search (`q`), in `order`.
    pub text: Option<TextQuery>,
    /// The order of search results (`ascending` orders the rest).
    pub order: SearchOrder,
}

impl Node {
    /// `/recv`: hands out up to `limit` unread inbound messages, oldest first, and marks them
    /// read (durably, before answering).
    ///
    /// While the store is full nothing is handed out (`507`): reads see only committed rows,
    /// so a second `/recv` would hand out the same messages again. A read mark caught by the
    /// disk filling is kept by the store writer and committed once there is room, so those
    /// messages are handed out now, once.
    pub async fn recv(&self, limit: usize) -> NodeResult<Value> {
        let _one_at_a_time = self.inner.recv_lock.lock().await;
        if self.unread() > 0 {
            self.inner.store.capacity().check()?;
        }
        let limit = limit.min(1000) as i64;
        let taken = self
            .inner
            .store
            .read(move |conn| {
                // Without statistics the planner prefers `messages_by_id (direction)` (half the
                // table, then a sort: 0.3 s at 1M messages); the partial index holds exactly the
                // unread rows in order.
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {} FROM messages INDEXED BY messages_unconsumed
                     WHERE consumed = 0 AND direction = 'inbound' ORDER BY rowid_seq LIMIT ?1",
                    store::MESSAGE_COLUMNS
                ))?;
                stmt.query_map([limit], store::message_from_row)?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .await?;
        if !taken.is_empty() {
            self.inner
                .store
                .write_wait(WriteOp::MarkConsumed(
                    taken.iter().map(|m| m.message_id.clone()).collect(),
                ))
                .await
                .or_else(|e| match e.code {
                    ErrorCode::StorageFull => Ok(()),
                    _ => Err(e),
                })?;
            self.inner
                .unread
                .fetch_sub(taken.len() as i64, std::sync::atomic::Ordering::Relaxed);
        }
        let messages: Vec<Value> = taken.iter().map(|m| m.recv_entry()).collect();
        Ok(json!({"messages": messages, "count": messages.len(), "remaining": self.unread()}))
    }

    /// Number of inbound messages `/recv` has not handed out.
    pub fn unread(&self) -> usize {
        self.inner
            .unread
            .load(std::sync::atomic::Ordering::Relaxed)
            .max(0) as usize
    }

    /// `/messages`: stored history (both directions), filtered and paged, newest first unless
    /// `ascending`. `has_more` comes from reading one row past the page, and `total` counts at
    /// most [`TOTAL_COUNT_CAP`] matches past `offset` (`total_exact` says whether it is the
    /// whole count), so a page costs the same at 1,000 or 1,000,000 stored messages.
    pub async fn messages(&self, q: MessageQuery) -> NodeResult<Value> {
        let page = self.message_page(q).await?;
        let mut messages: Vec<Value> = page.rows.iter().map(MessageRow::history_entry).collect();
        self.mark_delivery(&page.rows, &mut messages);
        Ok(json!({
            "messages": messages,
            "total": page.total,
            "total_exact": page.total_exact,
            "has_more": page.has_more,
            "next_offset": page.next_offset,
        }))
    }

    /// The rows of one `/messages` page (and of `acp_search`), with the paging facts.
    pub async fn message_page(&self, q: MessageQuery) -> NodeResult<MessagePage> {
        let peer_keys = q.peer_id.as_deref().map(|key| self.peer_condition(key));
        let limit = q.limit.clamp(1, 100);
        let offset = q.offset;
        let (mut rows, total) = self
            .inner
            .store
            .read(move |conn| {
                let mut w = Where::default();
                if let Some((clause, value)) = &peer_keys {
                    w.and(clause, [value.clone().into()]);
                }
                w.and_some("role = ?", q.role.as_ref());
                if let Some(after) = q.received_after {
                    w.and("received_at > ?", [after.into()]);
                }
                // Unary `+`: half the table has either direction, so the planner must never
                // pick `messages_by_id (direction)` over an index that serves the order.
                w.and_some("+direction = ?", q.direction.as_ref());
                w.and_some("context_id = ?", q.context_id.as_ref());
                w.and_some("task_id = ?", q.task_id.as_ref());
                if let Some(text) = &q.text {
                    let selective =
                        peer_keys.is_some() || q.context_id.is_some() || q.task_id.is_some();
                    return search_plan::search_page(
                        conn,
                        &search_plan::SearchPageQuery {
                            filters: &w,
                            selective,
                            text,
                            order: q.order,
                            limit,
                            offset,
                        },
                    );
                }
                let filter = w.sql();
                let dir = if q.ascending { "ASC" } else { "DESC" };
                let sql = format!(
                    "SELECT {} FROM messages {filter} ORDER BY received_at {dir}, rowid_seq {dir} LIMIT ? OFFSET ?",
                    store::MESSAGE_COLUMNS
                );
                read_page(conn, "messages", &filter, w.args, &sql, limit, offset)
            })
            .await?;
        let has_more = rows.len() > limit;
        rows.truncate(limit);
        let next_offset = if has_more {
            offset + limit
        } else {
            offset + rows.len()
        };
        Ok(MessagePage {
            rows,
            total: total.value,
            total_exact: total.exact,
            has_more,
            next_offset,
        })
    }

    /// `/history`: the last `limit` inbound messages, oldest first (the reference's inbox log).
    pub async fn history(&self, limit: usize) -> NodeResult<Value> {
        let limit = limit.max(1);
        let (rows, total) = self
            .inner
            .store
            .read(move |conn| {
                let total: i64 = conn.query_row("SELECT COUNT(*) FROM messages WHERE direction = 'inbound'", [], |r| r.get(0))?;
                // `+direction`: walk the rowid backwards instead of half the table through
                // `messages_by_id (direction)` and a sort.
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {} FROM messages WHERE +direction = 'inbound' ORDER BY rowid_seq DESC LIMIT ?1",
                    store::MESSAGE_COLUMNS
                ))?;
                let mut rows = stmt
                    .query_map([limit as i64], store::message_from_row)?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                rows.reverse();
                Ok((rows, total as usize))
            })
            .await?;
        let history: Vec<Value> = rows.iter().map(MessageRow::recv_entry).collect();
        Ok(json!({"history": history, "total": total}))
    }

    /// `/context/{id}/messages`: a conversation in `server_seq` order, after `since_seq`.
    /// A message without a `server_seq` counts as 0. `has_more` comes from reading one row
    /// past the page; `total` counts at most [`TOTAL_COUNT_CAP`] matches (`total_exact`).
    pub async fn context_messages(
        &self,
        context_id: &str,
        limit: usize,
        since_seq: i64,
        ascending: bool,
    ) -> NodeResult<Value> {
        let ctx = context_id.to_owned();
        let limit = limit.clamp(1, 200);
        let (mut rows, total) = self
            .inner
            .store
            .read(move |conn| {
                // With `since_seq >= 0` a NULL `server_seq` (counted as 0) never matches, so the
                // bare column gives the same rows and order and lets `messages_by_context
                // (context_id, server_seq)` serve both the range and the order; a COALESCE
                // would sort the whole conversation on every call.
                let seq = if since_seq >= 0 {
                    "server_seq"
                } else {
                    "COALESCE(server_seq, 0)"
                };
                let filter = format!("WHERE context_id = ?1 AND {seq} > ?2");
                let args: Vec<rusqlite::types::Value> = vec![ctx.into(), since_seq.into()];
                let total = capped_count(
                    conn,
                    &format!("SELECT 1 FROM messages {filter}"),
                    args.clone(),
                    TOTAL_COUNT_CAP,
                )?;
                let order = if ascending { "ASC" } else { "DESC" };
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {} FROM messages {filter}
                     ORDER BY {seq} {order}, received_at {order}, rowid_seq {order} LIMIT ?3",
                    store::MESSAGE_COLUMNS
                ))?;
                let mut all = args;
                all.push(((limit + 1) as i64).into());
                let rows = stmt
                    .query_map(
                        rusqlite::params_from_iter(all.iter()),
                        store::message_from_row,
                    )?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok((rows, total))
            })
            .await?;
        let has_more = rows.len() > limit;
        rows.truncate(limit);
        let messages: Vec<Value> = rows.iter().map(MessageRow::context_entry).collect();
        Ok(json!({
            "context_id": context_id,
            "messages": messages,
            "count": messages.len(),
            "total": total.value,
            "total_exact": total.exact,
            "has_more": has_more,
        }))
    }
}

/// How many matching messages `/messages` (past `offset`) and `/context/{id}/messages` count
/// at most for their `total`. An exact count costs a scan of every match (10 ms for 100k
/// index entries, seconds for a filter no index serves), paid again on every page; past this
/// many the answer says `total_exact: false` and `total` is a lower bound.
pub const TOTAL_COUNT_CAP: usize = 1000;

/// A match count that stopped at a cap.
pub(super) struct CappedCount {
    /// The number of matches, or the cap when `exact` is false.
    pub(super) value: usize,
    /// Whether `value` is the whole count (fewer matches than the cap).
    pub(super) exact: bool,
}

/// One page of `/messages`: the matches of `from` under `filter` counted up to
/// [`TOTAL_COUNT_CAP`] past `offset`, and `limit + 1` rows of `sql`, a query over the same
/// `from` and `filter` (bound by `args`) that ends in `LIMIT ? OFFSET ?`.
pub(super) fn read_page(
    conn: &rusqlite::Connection,
    from: &str,
    filter: &str,
    args: Vec<rusqlite::types::Value>,
    sql: &str,
    limit: usize,
    offset: usize,
) -> rusqlite::Result<(Vec<MessageRow>, CappedCount)> {
    let total = capped_count(
        conn,
        &format!("SELECT 1 FROM {from} {filter}"),
        args.clone(),
        offset.saturating_add(TOTAL_COUNT_CAP),
    )?;
    let mut all = args;
    all.push(((limit + 1) as i64).into());
    all.push((offset as i64).into());
    let rows = conn
        .prepare_cached(sql)?
        .query_map(
            rusqlite::params_from_iter(all.iter()),
            store::message_from_row,
        )?
        .collect::<rusqlite::Result<Vec<MessageRow>>>()?;
    Ok((rows, total))
}

/// Counts the rows of `select` (a `SELECT 1 FROM …` with its arguments), stopping at `cap`.
pub(super) fn capped_count(
    conn: &rusqlite::Connection,
    select: &str,
    mut args: Vec<rusqlite::types::Value>,
    cap: usize,
) -> rusqlite::Result<CappedCount> {
    args.push((cap.min(i64::MAX as usize) as i64).into());
    let n: i64 = conn
        .prepare_cached(&format!("SELECT COUNT(*) FROM ({select} LIMIT ?)"))?
        .query_row(rusqlite::params_from_iter(args.iter()), |r| r.get(0))?;
    let n = n.max(0) as usize;
    Ok(CappedCount {
        value: n,
        exact: n < cap,
    })
}

/// Filters of [`Node::receive`].
#[derive(Debug, Clone, Default)]
pub struct ReceiveFilter {
    /// Only from this peer (local id, display or agent name).
    pub peer: Option<String>,
    /// Only this conversation.
    pub context_id: Option<String>,
    /// Only this task.
    pub task_id: Option<String>,
}

/// Metadata key of the cursor used when a caller of [`Node::receive`] passes none.
const RECEIVE_CURSOR_KEY: &str = "receive_cursor";

impl Node {
    /// Inbound messages after `cursor` (a local sequence number), oldest first, at most
    /// `limit`. Returns the rows, the cursor to pass next time, and whether more are waiting.
    /// Without a cursor, reading starts where the last cursor-less read stopped (persisted),
    /// so a new conversation sees what no earlier one was shown.
    pub async fn receive(
        &self,
        cursor: Option<i64>,
        filter: &ReceiveFilter,
        limit: usize,
    ) -> NodeResult<(Vec<MessageRow>, i64, bool)> {
        // Without a cursor the persisted position is used; it only moves for unfiltered reads,
        // so a filtered read never hides other messages from later cursor-less reads.
        let implicit = cursor.is_none()
            && filter.peer.is_none()
            && filter.context_id.is_none()
            && filter.task_id.is_none();
        let peer_keys = filter.peer.as_deref().map(|key| self.peer_condition(key));
        let filter = filter.clone();
        let limit = limit.clamp(1, 200);
        let (rows, start) = self
            .inner
            .store
            .read(move |conn| {
                let start = match cursor {
                    Some(c) => c,
                    None => store::get_meta(conn, RECEIVE_CURSOR_KEY)?
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0),
                };
                let mut w = Where::default();
                // `+direction`: the rowid range serves this, not `messages_by_id (direction)`.
                w.and("+direction = 'inbound' AND rowid_seq > ?", [start.into()]);
                if let Some((clause, value)) = &peer_keys {
                    w.and(clause, [value.clone().into()]);
                }
                w.and_some("context_id = ?", filter.context_id.as_ref());
                w.and_some("task_id = ?", filter.task_id.as_ref());
                let mut sql = format!(
                    "SELECT {} FROM messages {}",
                    store::MESSAGE_COLUMNS,
                    w.sql()
                );
                let mut args = w.args;
                sql.push_str(" ORDER BY rowid_seq LIMIT ?");
                args.push(((limit + 1) as i64).into());
                let mut stmt = conn.prepare_cached(&sql)?;
                let rows = stmt
                    .query_map(
                        rusqlite::params_from_iter(args.iter()),
                        store::message_from_row,
                    )?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok((rows, start))
            })
            .await?;
        let has_more = rows.len() > limit;
        let rows: Vec<MessageRow> = rows.into_iter().take(limit).collect();
        let next = rows.last().map_or(start, |r| r.local_seq);
        if implicit && next > start {
            self.inner.store.write(WriteOp::SetMeta {
                key: RECEIVE_CURSOR_KEY.into(),
                value: next.to_string(),
            });
        }
        Ok((rows, next, has_more))
    }

    /// [`Node::receive`] that, when nothing matches, waits up to `wait` for a matching
    /// message (woken by arrivals, never polling) before answering.
    pub async fn receive_wait(
        &self,
        cursor: Option<i64>,
        filter: &ReceiveFilter,
        limit: usize,
        wait: std::time::Duration,
    ) -> NodeResult<(Vec<MessageRow>, i64, bool)> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.inner.inbox_notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let result = self.receive(cursor, filter, limit).await?;
            if !result.0.is_empty()
                || tokio::time::Instant::now() >= deadline
                || self.is_shutting_down()
            {
                return Ok(result);
            }
            let shutdown = self.inner.shutdown.clone();
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {}
                _ = &mut notified => {}
                _ = shutdown.cancelled() => {}
            }
        }
    }
}

impl Node {
    /// One received message by id (for replies).
    pub async fn inbound_message(&self, message_id: &str) -> NodeResult<Option<MessageRow>> {
        let id = message_id.to_owned();
        self.inner
            .store
            .read(move |conn| {
                use rusqlite::OptionalExtension;
                conn.query_row(
                    &format!(
                        "SELECT {} FROM messages WHERE direction = 'inbound' AND message_id = ?1",
                        store::MESSAGE_COLUMNS
                    ),
                    [id],
                    store::message_from_row,
                )
                .optional()
            })
            .await
    }
}

impl Node {
    /// Inbound messages not yet returned by a cursor-less [`Node::receive`].
    pub async fn receive_backlog(&self) -> NodeResult<i64> {
        self.inner
            .store
            .read(|conn| {
                let start: i64 = store::get_meta(conn, RECEIVE_CURSOR_KEY)?
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                // `+direction`: count over the rowid range, not over every inbound message.
                conn.query_row(
                    "SELECT COUNT(*) FROM messages WHERE +direction = 'inbound' AND rowid_seq > ?1",
                    [start],
                    |r| r.get(0),
                )
            })
            .await
    }
}

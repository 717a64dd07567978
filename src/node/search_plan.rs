//! How one page of a full-text search (`GET /messages?q=…`, `acp_search`) is read, so that
//! it costs about the same on a store of 1,000 or 1,000,000 messages whatever the filters.
//!
//! Two plans, picked per query:
//! - **Index first** (the usual one): walk the FTS5 index's matches newest (or oldest)
//!   first and join each to its row, checking the other filters. A page of a common word
//!   costs a page of rows. It is slow only when a filter keeps few of the matches (a common
//!   word in one short conversation), because it then walks most matches to fill a page.
//! - **Filter first**, for exactly that case: when a selective filter (a conversation, a
//!   task, a peer) holds at most [`FEW_ROWS`] messages, read those through their index and
//!   ask the FTS5 index about each one. The cost is bounded by [`FEW_ROWS`] lookups,
//!   however many messages match the words elsewhere.
//!
//! `order=rank` (bm25) must score every match before it can return the best one. It sorts
//! only (rowid, score) pairs and reads the page's rows afterwards, so the cost is about a
//! microsecond per match rather than a wide row per match; a word in 2 % of a 1M-message
//! store still means 20,000 scores (`docs/benchmarks.md` has the figures).

use rusqlite::Connection;
use rusqlite::types::Value as SqlValue;

use super::history::{CappedCount, Where, capped_count, read_page};
use super::search::{SearchOrder, TextQuery};
use super::store::{self, MessageRow};

/// A filter holding at most this many messages is read filter first.
pub const FEW_ROWS: usize = 500;

/// What a search page needs besides its words.
pub struct SearchPageQuery<'a> {
    /// The other filters (no `MATCH` in them).
    pub filters: &'a Where,
    /// Whether one of them can be selective enough for the filter-first plan (a
    /// conversation, a task or a peer; not a role or a direction).
    pub selective: bool,
    /// The words.
    pub text: &'a TextQuery,
    /// The order of the results.
    pub order: SearchOrder,
    /// Rows to return (one more is read to tell whether another page follows).
    pub limit: usize,
    /// Rows to skip.
    pub offset: usize,
}

/// Reads one page of a search: `limit + 1` rows at most, and the capped count of matches.
pub fn search_page(
    conn: &Connection,
    q: &SearchPageQuery,
) -> rusqlite::Result<(Vec<MessageRow>, CappedCount)> {
    if q.selective {
        let held = capped_count(
            conn,
            &format!("SELECT 1 FROM messages {}", q.filters.sql()),
            q.filters.args.clone(),
            FEW_ROWS + 1,
        )?;
        if held.exact {
            return filter_first(conn, q);
        }
    }
    index_first(conn, q)
}

/// The filter's rows (at most [`FEW_ROWS`]), each asked whether it matches (and its rank).
fn filter_first(
    conn: &Connection,
    q: &SearchPageQuery,
) -> rusqlite::Result<(Vec<MessageRow>, CappedCount)> {
    let sql = format!(
        "SELECT rowid_seq, (SELECT rank FROM messages_fts
                            WHERE messages_fts MATCH ? AND rowid = messages.rowid_seq)
         FROM messages {}",
        q.filters.sql()
    );
    let mut args: Vec<SqlValue> = vec![q.text.match_expr().to_owned().into()];
    args.extend(q.filters.args.iter().cloned());
    let mut hits: Vec<(i64, f64)> = conn
        .prepare_cached(&sql)?
        .query_map(rusqlite::params_from_iter(args.iter()), |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, Option<f64>>(1)?))
        })?
        .filter_map(|r| match r {
            Ok((id, Some(rank))) => Some(Ok((id, rank))),
            Ok((_, None)) => None,
            Err(e) => Some(Err(e)),
        })
        .collect::<rusqlite::Result<_>>()?;
    match q.order {
        SearchOrder::Newest => hits.sort_by_key(|h| std::cmp::Reverse(h.0)),
        SearchOrder::Oldest => hits.sort_by_key(|h| h.0),
        SearchOrder::Rank => hits.sort_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0))),
    }
    let total = CappedCount {
        value: hits.len(),
        exact: true,
    };
    let page: Vec<i64> = hits
        .iter()
        .skip(q.offset)
        .take(q.limit + 1)
        .map(|h| h.0)
        .collect();
    Ok((rows_by_id(conn, &page)?, total))
}

/// The rows with these `rowid_seq`s, in the given order.
fn rows_by_id(conn: &Connection, ids: &[i64]) -> rusqlite::Result<Vec<MessageRow>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let marks = vec!["?"; ids.len()].join(",");
    let mut rows = conn
        .prepare(&format!(
            "SELECT {} FROM messages WHERE rowid_seq IN ({marks})",
            store::MESSAGE_COLUMNS
        ))?
        .query_map(
            rusqlite::params_from_iter(ids.iter()),
            store::message_from_row,
        )?
        .collect::<rusqlite::Result<Vec<MessageRow>>>()?;
    let position = |row: &MessageRow| ids.iter().position(|id| *id == row.local_seq);
    rows.sort_by_key(position);
    Ok(rows)
}

/// Walks the index's matches (newest or oldest first, or all of them scored for rank) and
/// joins each to its row.
fn index_first(
    conn: &Connection,
    q: &SearchPageQuery,
) -> rusqlite::Result<(Vec<MessageRow>, CappedCount)> {
    let mut filters = Where::default();
    filters.and(
        "messages_fts MATCH ?",
        [q.text.match_expr().to_owned().into()],
    );
    filters.extend(q.filters);
    let (filter, args) = (filters.sql(), filters.args);
    let joined = "messages_fts JOIN messages ON messages.rowid_seq = messages_fts.rowid";
    let sql = match q.order {
        SearchOrder::Newest | SearchOrder::Oldest => {
            let dir = if q.order == SearchOrder::Oldest {
                "ASC"
            } else {
                "DESC"
            };
            format!(
                "SELECT {} FROM {joined} {filter} ORDER BY messages_fts.rowid {dir} LIMIT ? OFFSET ?",
                store::MESSAGE_COLUMNS
            )
        }
        // Score and sort narrow pairs; join the page's rows after. Without other filters
        // the scores come from the index alone.
        SearchOrder::Rank => {
            let source = if q.filters.is_empty() {
                "messages_fts"
            } else {
                joined
            };
            format!(
                "SELECT {} FROM (SELECT messages_fts.rowid AS hit, messages_fts.rank AS score
                                 FROM {source} {filter}
                                 ORDER BY score, hit DESC LIMIT ? OFFSET ?) AS ranked
                 JOIN messages ON messages.rowid_seq = ranked.hit
                 ORDER BY ranked.score, ranked.hit DESC",
                store::MESSAGE_COLUMNS
            )
        }
    };
    read_page(conn, joined, &filter, args, &sql, q.limit, q.offset)
}

//! Full-text search over message text: the FTS5 index the store keeps in step with the
//! `messages` table, and the small query language of `GET /messages?q=` and `acp_search`.
//!
//! The index is *contentless* (`content=''`): it holds the words and their positions, not a
//! second copy of the text, which already sits in each row's frame. Triggers on `messages`
//! add a row's text when it is inserted and remove it when the row is deleted (retention,
//! `DELETE /peers/{id}` …), inside the same transaction, so the index can never disagree
//! with the store, whatever path wrote to it. What is indexed is the text of the message's
//! `text` parts (their `content`, or `text` as some SDKs write it), joined by newlines.
//!
//! Queries are not passed to FTS5 as written: its syntax (column filters, `NEAR`, `^`,
//! bare punctuation) turns ordinary input such as `don't` or `a-b` into syntax errors. The
//! user's words are parsed here and each one is quoted, so every accepted query is valid
//! FTS5 and anything else is refused with a clear message.

use std::fmt::Write as _;

/// The SQL expression (over a `messages` row named `NEW_ROW`) that yields the text to index.
/// One definition, used by the insert trigger and by the migration that indexes old stores.
/// `json_valid` first: a frame that is not valid JSON (none is, but a damaged store must
/// not make every later insert fail) indexes as no text.
const TEXT_OF_ROW: &str = "CASE WHEN json_valid(NEW_ROW.frame) THEN (
        SELECT group_concat(COALESCE(json_extract(p.value, '$.content'),
                                     json_extract(p.value, '$.text')), char(10))
        FROM json_each(NEW_ROW.frame, '$.parts') AS p
        WHERE p.type = 'object' AND json_extract(p.value, '$.type') = 'text'
          AND COALESCE(json_type(p.value, '$.content'), json_type(p.value, '$.text')) = 'text'
    ) END";

/// The schema change that adds the index (one store migration): the FTS5 table, the two
/// triggers, and the indexing of every message already stored.
pub fn migration() -> String {
    let new_text = TEXT_OF_ROW.replace("NEW_ROW", "new");
    let old_text = TEXT_OF_ROW.replace("NEW_ROW", "messages");
    format!(
        "CREATE VIRTUAL TABLE messages_fts USING fts5(
            body, content='', contentless_delete=1,
            tokenize='unicode61 remove_diacritics 2');
         CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
            INSERT INTO messages_fts(rowid, body) VALUES (new.rowid_seq, {new_text});
         END;
         CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
            DELETE FROM messages_fts WHERE rowid = old.rowid_seq;
         END;
         INSERT INTO messages_fts(rowid, body) SELECT rowid_seq, {old_text} FROM messages;"
    )
}

/// Index settings applied at every start (FTS5 keeps them in its own config table, so this
/// also reaches stores indexed before it): no merge triggered by deletions. With FTS5's
/// default (`deletemerge` at 10 %), the commit that deletes a tenth of a level's rows merges
/// that level there and then, reading every deleted entry, and its work bound counts only
/// the pages it writes. Retention deletes the oldest rows, which sit in the largest
/// segments, so such a commit held the store writer 100-480 ms, and every send queued
/// behind it waited as long. Without it, deleted entries leave the index when the ordinary
/// merges (as inserts flush) take in their segments, and queries skip them until then.
pub const INDEX_SETTINGS: &str =
    "INSERT INTO messages_fts(messages_fts, rank) VALUES('deletemerge', 0);";

/// Longest query accepted, in bytes: longer input is not a search a person or an LLM means.
pub const MAX_QUERY_BYTES: usize = 1000;
/// Most terms (words, prefixes, phrases, exclusions) in one query.
pub const MAX_TERMS: usize = 32;

/// How search results are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SearchOrder {
    /// Most recently stored first (the default, like `/messages` without `q`).
    #[default]
    Newest,
    /// Oldest first.
    Oldest,
    /// Best match first (BM25: rarer words and shorter messages weigh more).
    Rank,
}

impl SearchOrder {
    /// Parses `newest`, `oldest` or `rank` (the `order` parameter and the MCP argument).
    pub fn parse(s: &str) -> Option<SearchOrder> {
        match s {
            "newest" => Some(SearchOrder::Newest),
            "oldest" => Some(SearchOrder::Oldest),
            "rank" | "relevance" => Some(SearchOrder::Rank),
            _ => None,
        }
    }
}

/// A parsed search: the FTS5 `MATCH` expression, built only from quoted terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextQuery {
    expr: String,
}

/// One term of a query as the user wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Term {
    /// A word (or a word with punctuation, tokenized by FTS5 into consecutive words).
    Word(String),
    /// `word*`: any word starting with this.
    Prefix(String),
    /// `"several words"`: these words next to each other, in this order.
    Phrase(String),
}

impl Term {
    /// The term as an FTS5 string (a quoted phrase, `*` for a prefix).
    fn fts(&self) -> String {
        let quoted = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
        match self {
            Term::Word(w) | Term::Phrase(w) => quoted(w),
            Term::Prefix(p) => format!("{}*", quoted(p)),
        }
    }
}

/// Whether FTS5's tokenizer will find at least one word in `s` (unicode61 keeps letters,
/// digits and other word characters; a term of only punctuation would match nothing).
fn has_word(s: &str) -> bool {
    s.chars().any(char::is_alphanumeric)
}

impl TextQuery {
    /// Parses a search as a person or an LLM writes it: words (all must appear, in any
    /// order), `"a phrase"`, `prefix*`, `OR` between two terms (either), `-word` to exclude.
    /// Case and accents do not matter. Errors say what to change.
    pub fn parse(q: &str) -> Result<TextQuery, String> {
        if q.len() > MAX_QUERY_BYTES {
            return Err(format!(
                "q is too long ({} bytes; at most {MAX_QUERY_BYTES})",
                q.len()
            ));
        }
        // Positive clauses (each a list of alternatives joined by OR) and exclusions.
        let mut clauses: Vec<Vec<Term>> = Vec::new();
        let mut excluded: Vec<Term> = Vec::new();
        let mut pending_or = false;
        let mut terms = 0usize;
        let mut rest = q.trim_start();
        while !rest.is_empty() {
            let negated = rest.starts_with('-') && rest.len() > 1;
            if negated {
                rest = &rest[1..];
            }
            let (term, after) = if let Some(body) = rest.strip_prefix('"') {
                let end = body
                    .find('"')
                    .ok_or("q has a quote that is not closed: end the phrase with \"")?;
                (
                    Some(Term::Phrase(body[..end].trim().to_owned())),
                    &body[end + 1..],
                )
            } else {
                let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                let token = &rest[..end];
                if token == "OR" && !negated {
                    if clauses.is_empty() || pending_or {
                        return Err(
                            "OR goes between two terms, as in: invoice OR receipt".to_owned()
                        );
                    }
                    pending_or = true;
                    (None, &rest[end..])
                } else if let Some(prefix) = token.strip_suffix('*') {
                    (Some(Term::Prefix(prefix.to_owned())), &rest[end..])
                } else {
                    (Some(Term::Word(token.to_owned())), &rest[end..])
                }
            };
            rest = after.trim_start();
            let Some(term) = term else { continue };
            let text = match &term {
                Term::Word(s) | Term::Prefix(s) | Term::Phrase(s) => s,
            };
            if !has_word(text) {
                if matches!(term, Term::Prefix(_)) {
                    return Err(
                        "a prefix needs letters or digits before the *, as in: deploy*".to_owned(),
                    );
                }
                // A lone `-` or `&` is no search term: skipped, like a search engine does.
                continue;
            }
            terms += 1;
            if terms > MAX_TERMS {
                return Err(format!("q has too many terms (at most {MAX_TERMS})"));
            }
            if negated {
                if pending_or {
                    return Err("OR cannot join an excluded -term".to_owned());
                }
                excluded.push(term);
            } else if pending_or {
                pending_or = false;
                if let Some(last) = clauses.last_mut() {
                    last.push(term);
                }
            } else {
                clauses.push(vec![term]);
            }
        }
        if pending_or {
            return Err("OR goes between two terms, as in: invoice OR receipt".to_owned());
        }
        if clauses.is_empty() {
            return Err(if excluded.is_empty() {
                "q has no word to search for".to_owned()
            } else {
                "q has only excluded -terms: add a word to search for".to_owned()
            });
        }
        let mut expr = String::new();
        for (i, clause) in clauses.iter().enumerate() {
            if i > 0 {
                expr.push_str(" AND ");
            }
            let alternatives: Vec<String> = clause.iter().map(Term::fts).collect();
            let _ = write!(expr, "({})", alternatives.join(" OR "));
        }
        if !excluded.is_empty() {
            let alternatives: Vec<String> = excluded.iter().map(Term::fts).collect();
            expr = format!("({expr}) NOT ({})", alternatives.join(" OR "));
        }
        Ok(TextQuery { expr })
    }

    /// The FTS5 `MATCH` expression (bound as a parameter, never spliced into SQL).
    pub fn match_expr(&self) -> &str {
        &self.expr
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rusqlite::Connection;

    /// A store-shaped table with the index, and rows whose frames hold these texts.
    fn db(texts: &[&str]) -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE messages(rowid_seq INTEGER PRIMARY KEY AUTOINCREMENT, frame TEXT NOT NULL);",
        )
        .unwrap();
        conn.execute_batch(&migration()).unwrap();
        for t in texts {
            let frame = serde_json::json!({"parts": [{"type": "text", "content": t}]});
            conn.execute(
                "INSERT INTO messages(frame) VALUES (?1)",
                [frame.to_string()],
            )
            .unwrap();
        }
        conn
    }

    fn hits(conn: &Connection, q: &str) -> Vec<i64> {
        let q = TextQuery::parse(q).unwrap();
        let mut stmt = conn
            .prepare("SELECT rowid FROM messages_fts WHERE messages_fts MATCH ?1 ORDER BY rowid")
            .unwrap();
        stmt.query_map([q.match_expr()], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<Vec<i64>>>()
            .unwrap()
    }

    #[test]
    fn words_prefixes_phrases_or_and_exclusions() {
        let conn = db(&[
            "Deploy the invoice service to staging",    // 1
            "the staging deploy failed: disk full",     // 2
            "Café receipts are ready",                  // 3
            "invoice 42 paid; don't send a reminder",   // 4
            "deployment notes for the receipt printer", // 5
        ]);
        assert_eq!(hits(&conn, "deploy staging"), vec![1, 2]);
        assert_eq!(hits(&conn, "DEPLOY"), vec![1, 2], "case does not matter");
        assert_eq!(hits(&conn, "deploy*"), vec![1, 2, 5]);
        assert_eq!(
            hits(&conn, "\"staging deploy\""),
            vec![2],
            "a phrase keeps its order"
        );
        assert_eq!(hits(&conn, "invoice OR receipt*"), vec![1, 3, 4, 5]);
        assert_eq!(hits(&conn, "deploy -failed"), vec![1]);
        assert_eq!(hits(&conn, "cafe"), vec![3], "accents do not matter");
        assert_eq!(hits(&conn, "don't"), vec![4], "punctuation is not syntax");
        assert_eq!(hits(&conn, "a-b & 42"), Vec::<i64>::new());
        assert_eq!(hits(&conn, "42 & paid"), vec![4], "a lone & is skipped");
    }

    #[test]
    fn the_index_follows_inserts_and_deletes_in_the_same_transaction() {
        let conn = db(&["alpha beta", "beta gamma"]);
        assert_eq!(hits(&conn, "beta"), vec![1, 2]);
        conn.execute("DELETE FROM messages WHERE rowid_seq = 1", [])
            .unwrap();
        assert_eq!(hits(&conn, "beta"), vec![2]);
        assert_eq!(hits(&conn, "alpha"), Vec::<i64>::new());
        // Frames without text parts, with odd parts, or not JSON at all index as nothing.
        for frame in [
            r#"{"parts":[{"type":"data","content":{"beta":1}}]}"#,
            r#"{"parts":[{"type":"text","content":7}]}"#,
            r#"{"parts":"beta"}"#,
            r#"{"text":"beta"}"#,
            "not json beta",
        ] {
            conn.execute("INSERT INTO messages(frame) VALUES (?1)", [frame])
                .unwrap();
        }
        assert_eq!(hits(&conn, "beta"), vec![2]);
        conn.execute(
            "INSERT INTO messages(frame) VALUES (?1)",
            [r#"{"parts":[{"type":"text","text":"beta from an sdk"},{"type":"text","content":"second part"}]}"#],
        )
        .unwrap();
        assert_eq!(hits(&conn, "beta"), vec![2, 8]);
        assert_eq!(hits(&conn, "second part"), vec![8]);
    }

    #[test]
    fn the_migration_indexes_messages_already_stored() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE messages(rowid_seq INTEGER PRIMARY KEY AUTOINCREMENT, frame TEXT NOT NULL);
             INSERT INTO messages(frame) VALUES ('{\"parts\":[{\"type\":\"text\",\"content\":\"old news\"}]}');",
        )
        .unwrap();
        conn.execute_batch(&migration()).unwrap();
        assert_eq!(hits(&conn, "news"), vec![1]);
    }

    #[test]
    fn queries_that_cannot_mean_a_search_are_refused_with_a_reason() {
        for (q, says) in [
            ("", "no word"),
            ("   ", "no word"),
            ("- & !", "no word"),
            ("-secret", "only excluded"),
            ("OR invoice", "between two terms"),
            ("invoice OR", "between two terms"),
            ("a OR OR b", "between two terms"),
            ("a OR -b", "cannot join"),
            ("\"open phrase", "not closed"),
            ("*", "prefix needs"),
            ("-*", "prefix needs"),
        ] {
            let err = TextQuery::parse(q).unwrap_err();
            assert!(err.contains(says), "{q:?}: {err}");
        }
        assert!(TextQuery::parse(&"x".repeat(MAX_QUERY_BYTES + 1)).is_err());
        let many = vec!["w"; MAX_TERMS + 1].join(" ");
        assert!(TextQuery::parse(&many).unwrap_err().contains("too many"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Whatever the input, a query is either refused with a message or valid FTS5.
        #[test]
        fn prop_any_input_is_refused_or_valid_fts5(q in "(\\PC|[\"*()^:+-]| OR | NOT | AND | NEAR){0,40}") {
            let conn = db(&["some text to search (with) \"quotes\" and: colons"]);
            if let Ok(parsed) = TextQuery::parse(&q) {
                let r: rusqlite::Result<i64> = conn.query_row(
                    "SELECT count(*) FROM messages_fts WHERE messages_fts MATCH ?1",
                    [parsed.match_expr()],
                    |r| r.get(0),
                );
                prop_assert!(r.is_ok(), "{q:?} -> {:?}: {r:?}", parsed.match_expr());
            }
        }
    }
}

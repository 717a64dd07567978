//! `acp-relay export`: a node's messages and tasks as JSON lines or a Markdown transcript.
//!
//! Reads the store file directly, read-only, inside one read transaction (one consistent
//! snapshot, which never blocks the running node's writer), so it works whether the node
//! runs or not. The JSON shapes are the HTTP API's: a message is a `GET /messages` entry
//! (without `delivery`, which only a running node knows), a task is a `GET /tasks/{id}` body.
//! Each line is one object: `{"kind":"message","message":{…}}` or
//! `{"kind":"task","task":{…}}`; messages come first, oldest first, then tasks by creation.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use rusqlite::Connection;
use serde_json::{Value, json};

use super::{StoreLocation, ToolError};
use crate::node::message::MessageRow;
use crate::node::store::{MESSAGE_COLUMNS, message_from_row};
use crate::node::task::Task;

/// What `export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One JSON object per line (messages, then tasks).
    Jsonl,
    /// A readable transcript, one section per conversation, then the tasks.
    Md,
}

/// Flags of `acp-relay export`.
#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// Output format.
    #[arg(long, value_enum)]
    pub format: Format,

    /// Only messages received (or sent) at or after this time, and tasks updated since:
    /// Unix seconds, an RFC 3339 time (2026-12-02T10:00:00Z) or a UTC date (2026-12-02).
    #[arg(long, value_parser = parse_since)]
    pub since: Option<f64>,

    /// Only this conversation (context id): its messages and its tasks.
    #[arg(long)]
    pub context: Option<String>,

    /// Write to this file instead of stdout (a new file; see --force).
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,

    /// Replace the output file if it exists.
    #[arg(long)]
    pub force: bool,

    #[command(flatten)]
    pub store: StoreLocation,
}

/// Parses `--since`: Unix seconds, an RFC 3339 time, `YYYY-MM-DDTHH:MM:SS` (UTC) or a UTC
/// date; returns Unix seconds.
pub fn parse_since(text: &str) -> Result<f64, String> {
    let t = text.trim();
    if let Ok(secs) = t.parse::<f64>() {
        return if secs.is_finite() && secs >= 0.0 {
            Ok(secs)
        } else {
            Err(format!(
                "--since {t:?}: Unix seconds must be a finite number ≥ 0"
            ))
        };
    }
    let to_secs = |dt: chrono::DateTime<chrono::Utc>| {
        dt.timestamp() as f64 + f64::from(dt.timestamp_subsec_micros()) / 1e6
    };
    if let Ok(dt) = chrono::DateTime::parse_from_rfc3339(t) {
        return Ok(to_secs(dt.with_timezone(&chrono::Utc)));
    }
    if let Ok(naive) = chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S") {
        return Ok(to_secs(naive.and_utc()));
    }
    if let Ok(date) = chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d")
        && let Some(midnight) = date.and_hms_opt(0, 0, 0)
    {
        return Ok(to_secs(midnight.and_utc()));
    }
    Err(format!(
        "--since {t:?}: expected Unix seconds, an RFC 3339 time (2026-12-02T10:00:00Z) or a \
         date (2026-12-02)"
    ))
}

/// `acp-relay export`: writes the export and a one-line summary on stderr.
pub fn run(args: &ExportArgs) -> std::process::ExitCode {
    super::exit_code(export(args).map(|summary| eprintln!("acp-relay: {summary}")))
}

/// Writes the export `args` asks for; returns the summary line.
pub fn export(args: &ExportArgs) -> Result<String, ToolError> {
    let source = args.store.store_file()?;
    let conn = super::open_read_only(&source)?;
    super::check_store(&source, &conn)?;
    let read_err = |e: rusqlite::Error| ToolError(format!("cannot read {}: {e}", source.display()));
    conn.execute_batch("BEGIN").map_err(read_err)?;
    let filter = Filter {
        since: args.since,
        context: args.context.clone(),
    };
    match &args.output {
        None => {
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            let n = write_export(&conn, &filter, args.format, &mut out)?;
            out.flush().map_err(out_err("stdout"))?;
            Ok(n.summary("stdout"))
        }
        Some(path) => {
            super::refuse_inside(path, &args.store.dir()?)?;
            if path.exists() && !args.force {
                return Err(ToolError(format!(
                    "{} exists: pass --force to replace it, or choose another file",
                    path.display()
                )));
            }
            let partial = super::temp_beside(path);
            let shown = path.display().to_string();
            let written = (|| {
                let file = super::create_private_file(&partial)?;
                let mut out = std::io::BufWriter::new(file);
                let n = write_export(&conn, &filter, args.format, &mut out)?;
                let file = out
                    .into_inner()
                    .map_err(|e| out_err(&shown)(e.into_error()))?;
                file.sync_all().map_err(out_err(&shown))?;
                Ok(n)
            })();
            let n = match written {
                Ok(n) => n,
                Err(e) => {
                    let _ = std::fs::remove_file(&partial);
                    return Err(e);
                }
            };
            std::fs::rename(&partial, path).map_err(|e| {
                let _ = std::fs::remove_file(&partial);
                out_err(&shown)(e)
            })?;
            Ok(n.summary(&shown))
        }
    }
}

fn out_err(target: &str) -> impl Fn(std::io::Error) -> ToolError + '_ {
    move |e| ToolError(format!("cannot write {target}: {e}"))
}

/// Which rows an export holds.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Messages with `received_at` at or after this, tasks updated at or after it.
    pub since: Option<f64>,
    /// Only this conversation.
    pub context: Option<String>,
}

/// How much an export wrote.
#[derive(Debug, Clone, Copy, Default)]
pub struct Written {
    /// Messages written.
    pub messages: u64,
    /// Tasks written.
    pub tasks: u64,
}

impl Written {
    fn summary(&self, target: &str) -> String {
        format!(
            "exported {} messages and {} tasks to {target}",
            self.messages, self.tasks
        )
    }
}

/// Writes the export of `conn` (inside the caller's read transaction) to `out`.
pub fn write_export(
    conn: &Connection,
    filter: &Filter,
    format: Format,
    out: &mut dyn Write,
) -> Result<Written, ToolError> {
    let tasks = tasks(conn, filter).map_err(read_err)?;
    match format {
        Format::Jsonl => write_jsonl(conn, filter, &tasks, out),
        Format::Md => write_markdown(conn, filter, &tasks, out),
    }
}

fn read_err(e: rusqlite::Error) -> ToolError {
    ToolError(format!("cannot read the store: {e}"))
}

fn write_err(e: std::io::Error) -> ToolError {
    ToolError(format!("cannot write the export: {e}"))
}

/// The `WHERE` clause and arguments of the message filter (plus one more condition).
fn message_where(filter: &Filter, extra: Option<&str>) -> (String, Vec<rusqlite::types::Value>) {
    let mut clauses = Vec::new();
    let mut args: Vec<rusqlite::types::Value> = Vec::new();
    if let Some(since) = filter.since {
        clauses.push("received_at >= ?".to_owned());
        args.push(since.into());
    }
    if let Some(c) = &filter.context {
        clauses.push("context_id = ?".to_owned());
        args.push(c.clone().into());
    }
    if let Some(e) = extra {
        clauses.push(e.to_owned());
    }
    let sql = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    (sql, args)
}

/// Calls `each` for every message matching `filter` and `extra`, oldest first.
fn for_each_message(
    conn: &Connection,
    filter: &Filter,
    extra: Option<(&str, rusqlite::types::Value)>,
    mut each: impl FnMut(MessageRow) -> Result<(), ToolError>,
) -> Result<(), ToolError> {
    let (clause, mut args) = message_where(filter, extra.as_ref().map(|(c, _)| *c));
    if let Some((_, v)) = extra {
        args.push(v);
    }
    let sql =
        format!("SELECT {MESSAGE_COLUMNS} FROM messages {clause} ORDER BY received_at, rowid_seq");
    let mut stmt = conn.prepare(&sql).map_err(read_err)?;
    let rows = stmt
        .query_map(rusqlite::params_from_iter(args.iter()), message_from_row)
        .map_err(read_err)?;
    for row in rows {
        each(row.map_err(read_err)?)?;
    }
    Ok(())
}

/// The tasks matching `filter`, in creation order, as the API shows them.
fn tasks(conn: &Connection, filter: &Filter) -> rusqlite::Result<Vec<Value>> {
    let mut stmt = conn.prepare("SELECT id, body FROM tasks ORDER BY id")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    let mut list: Vec<(String, String, Value)> = Vec::new();
    for row in rows {
        let (id, body) = row?;
        // The API's shape is the `Task` document; a body this version cannot read is kept
        // as stored rather than dropped.
        let value = match serde_json::from_str::<Task>(&body) {
            Ok(task) => serde_json::to_value(&task).unwrap_or(Value::Null),
            Err(_) => {
                serde_json::from_str(&body).unwrap_or_else(|_| json!({"id": id, "body": body}))
            }
        };
        let text = |k: &str| value.get(k).and_then(Value::as_str).map(str::to_owned);
        if let Some(c) = &filter.context
            && text("context_id").as_deref() != Some(c.as_str())
        {
            continue;
        }
        if let Some(since) = filter.since {
            let updated = text("updated_at")
                .and_then(|t| parse_since(&t).ok())
                .unwrap_or(f64::INFINITY);
            if updated < since {
                continue;
            }
        }
        list.push((text("created_at").unwrap_or_default(), id, value));
    }
    list.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    Ok(list.into_iter().map(|(_, _, v)| v).collect())
}

fn write_jsonl(
    conn: &Connection,
    filter: &Filter,
    tasks: &[Value],
    out: &mut dyn Write,
) -> Result<Written, ToolError> {
    let mut n = Written::default();
    for_each_message(conn, filter, None, |row| {
        let line = json!({"kind": "message", "message": row.history_entry()});
        writeln!(out, "{line}").map_err(write_err)?;
        n.messages += 1;
        Ok(())
    })?;
    for task in tasks {
        writeln!(out, "{}", json!({"kind": "task", "task": task})).map_err(write_err)?;
        n.tasks += 1;
    }
    Ok(n)
}

fn write_markdown(
    conn: &Connection,
    filter: &Filter,
    tasks: &[Value],
    out: &mut dyn Write,
) -> Result<Written, ToolError> {
    let mut n = Written::default();
    writeln!(out, "# acp-relay export").map_err(write_err)?;
    let mut scope = Vec::new();
    if let Some(s) = filter.since {
        scope.push(format!("since {}", crate::node::ids::unix_to_iso(s)));
    }
    if let Some(c) = &filter.context {
        scope.push(format!("conversation {}", code(c)));
    }
    if !scope.is_empty() {
        writeln!(out, "\n{}", scope.join(", ")).map_err(write_err)?;
    }
    // Conversations in the order they began; messages without one last.
    let (clause, args) = message_where(filter, Some("context_id IS NOT NULL"));
    let sql = format!(
        "SELECT context_id, MIN(received_at) AS first FROM messages {clause}
         GROUP BY context_id ORDER BY first, context_id"
    );
    let contexts: Vec<String> = conn
        .prepare(&sql)
        .and_then(|mut stmt| {
            stmt.query_map(rusqlite::params_from_iter(args.iter()), |r| r.get(0))?
                .collect()
        })
        .map_err(read_err)?;
    for context in &contexts {
        writeln!(out, "\n## Conversation {}", code(context)).map_err(write_err)?;
        for_each_message(
            conn,
            filter,
            Some(("context_id = ?", context.clone().into())),
            |row| {
                n.messages += 1;
                write_message(out, &row)
            },
        )?;
    }
    if filter.context.is_none() {
        let mut heading = false;
        for_each_message(
            conn,
            filter,
            Some(("context_id IS ?", rusqlite::types::Value::Null)),
            |row| {
                if !heading {
                    heading = true;
                    writeln!(out, "\n## Messages without a conversation").map_err(write_err)?;
                }
                n.messages += 1;
                write_message(out, &row)
            },
        )?;
    }
    if !tasks.is_empty() {
        writeln!(out, "\n## Tasks\n").map_err(write_err)?;
    }
    for task in tasks {
        let text = |k: &str| task.get(k).and_then(Value::as_str).unwrap_or("");
        let mut line = format!("- {} · {}", code(text("id")), text("status"));
        if !text("context_id").is_empty() {
            line.push_str(&format!(" · conversation {}", code(text("context_id"))));
        }
        if !text("peer_id").is_empty() {
            line.push_str(&format!(" · peer {}", text("peer_id")));
        }
        line.push_str(&format!(
            " · created {} · updated {}",
            text("created_at"),
            text("updated_at")
        ));
        writeln!(out, "{line}").map_err(write_err)?;
        n.tasks += 1;
    }
    Ok(n)
}

/// One message of the transcript: who, when, which way, then its parts as a quote.
fn write_message(out: &mut dyn Write, row: &MessageRow) -> Result<(), ToolError> {
    let who = row.sender.as_deref().unwrap_or("?");
    let way = match (row.direction, row.peer_id.as_deref()) {
        ("outbound", Some(p)) => format!("to {p}"),
        ("outbound", None) => "sent".to_owned(),
        (_, Some(p)) => format!("from {p}"),
        (_, None) => "received".to_owned(),
    };
    writeln!(
        out,
        "\n**{}** ({}, {way}) · {} · {}\n",
        who.replace('*', "\\*"),
        row.role,
        row.ts,
        code(&row.message_id)
    )
    .map_err(write_err)?;
    let parts = row
        .frame
        .get("parts")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut body = Vec::new();
    for part in &parts {
        match part.get("type").and_then(Value::as_str) {
            Some("text") => {
                let t = part
                    .get("content")
                    .or_else(|| part.get("text"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                body.push(t.to_owned());
            }
            Some("file") => body.push(format!(
                "[file: {}]",
                part.get("url").and_then(Value::as_str).unwrap_or("")
            )),
            Some("data") => body.push(format!(
                "[data: {}]",
                part.get("content").cloned().unwrap_or(Value::Null)
            )),
            _ => body.push(format!("[part: {part}]")),
        }
    }
    if body.is_empty() {
        body.push("(no parts)".to_owned());
    }
    for line in body.join("\n").lines() {
        writeln!(out, "> {line}").map_err(write_err)?;
    }
    Ok(())
}

/// An id as inline code (backticks in it would end the span early, so they are dropped).
fn code(text: &str) -> String {
    format!("`{}`", text.replace('`', ""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn since_takes_seconds_rfc3339_and_dates() {
        assert_eq!(parse_since("1700000000").unwrap(), 1_700_000_000.0);
        assert_eq!(parse_since("1700000000.5").unwrap(), 1_700_000_000.5);
        assert_eq!(parse_since("1970-01-02").unwrap(), 86_400.0);
        assert_eq!(parse_since("1970-01-01T01:00:00Z").unwrap(), 3_600.0);
        assert_eq!(parse_since("1970-01-01T02:00:00+01:00").unwrap(), 3_600.0);
        assert_eq!(parse_since("1970-01-01T00:00:10").unwrap(), 10.0);
        for bad in [
            "",
            "yesterday",
            "-5",
            "NaN",
            "inf",
            "2026-13-01",
            "12/02/2026",
        ] {
            let e = parse_since(bad).unwrap_err();
            assert!(e.starts_with("--since"), "{bad}: {e}");
        }
    }

    proptest! {
        /// Any text: a clear error or a finite non-negative time, never a panic.
        #[test]
        fn prop_since_never_panics(text in ".{0,40}") {
            if let Ok(t) = parse_since(&text) {
                prop_assert!(t.is_finite());
            }
        }

        /// A time written the way the store writes `updated_at` parses back to itself.
        #[test]
        fn prop_since_reads_the_stores_times(secs in 0i64..4_000_000_000, micros in 0u32..1_000_000) {
            let dt = chrono::DateTime::from_timestamp(secs, micros * 1000).unwrap();
            let text = dt.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
            let back = parse_since(&text).unwrap();
            prop_assert!((back - (secs as f64 + f64::from(micros) / 1e6)).abs() < 1e-5);
            prop_assert_eq!(parse_since(&secs.to_string()).unwrap(), secs as f64);
        }
    }
}

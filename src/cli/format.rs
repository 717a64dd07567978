//! Output for a person: aligned columns, times in local time, colour only on a terminal.
//! Every renderer takes the API's JSON and the time zone, so the tests pin both.

use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;

/// Whether to colour: stdout is a terminal and `NO_COLOR` is unset or empty.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    /// Emit ANSI colours.
    pub colour: bool,
}

impl Style {
    /// The style for this process's stdout.
    pub fn detect() -> Style {
        use std::io::IsTerminal;
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Style {
            colour: !no_color && std::io::stdout().is_terminal(),
        }
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.colour && !text.is_empty() {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    /// Headers and labels.
    pub fn bold(&self, t: &str) -> String {
        self.paint("1", t)
    }
    /// Good states (connected, completed).
    pub fn green(&self, t: &str) -> String {
        self.paint("32", t)
    }
    /// Bad states (offline, failed).
    pub fn red(&self, t: &str) -> String {
        self.paint("31", t)
    }
    /// Secondary text (ids, times).
    pub fn dim(&self, t: &str) -> String {
        self.paint("2", t)
    }
}

/// Visible width of a cell: characters, not counting colour escapes.
fn width(s: &str) -> usize {
    let mut n = 0;
    let mut in_escape = false;
    for c in s.chars() {
        match (in_escape, c) {
            (false, '\x1b') => in_escape = true,
            (true, 'm') => in_escape = false,
            (true, _) => {}
            (false, _) => n += 1,
        }
    }
    n
}

/// Columns padded to their widest cell, two spaces apart; the last column is not padded.
pub fn table(headers: &[&str], rows: &[Vec<String>], style: Style) -> String {
    let cols = headers.len();
    let mut widths: Vec<usize> = headers.iter().map(|h| width(h)).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(cols) {
            widths[i] = widths[i].max(width(cell));
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<String>| {
        let mut l = String::new();
        for (i, cell) in cells.iter().enumerate().take(cols) {
            l.push_str(cell);
            if i + 1 < cols {
                l.push_str(&" ".repeat(widths[i] - width(cell) + 2));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(headers.iter().map(|h| style.bold(h)).collect());
    for row in rows {
        line(row.clone());
    }
    out
}

/// `label: value` lines with the values aligned.
pub fn fields(pairs: &[(&str, String)], style: Style) -> String {
    let w = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (k, v) in pairs {
        out.push_str(&style.bold(&format!("{k}:")));
        out.push_str(&" ".repeat(w - k.len() + 1));
        out.push_str(v);
        out.push('\n');
    }
    out
}

/// A time from the API (ISO-8601 text or Unix seconds) as `YYYY-MM-DD HH:MM:SS` in `tz`;
/// `-` when absent, the input itself when it is not a time.
pub fn time_in<Tz: TimeZone>(v: &Value, tz: &Tz) -> String
where
    Tz::Offset: std::fmt::Display,
{
    let utc: Option<DateTime<Utc>> = match v {
        Value::String(s) => DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|d| d.with_timezone(&Utc)),
        Value::Number(n) => n.as_f64().and_then(|f| {
            let secs = f.floor();
            let nanos = ((f - secs) * 1e9) as u32;
            DateTime::from_timestamp(secs as i64, nanos.min(999_999_999))
        }),
        _ => None,
    };
    match (utc, v) {
        (Some(t), _) => t.with_timezone(tz).format("%Y-%m-%d %H:%M:%S").to_string(),
        (None, Value::Null) => "-".into(),
        (None, Value::String(s)) => s.clone(),
        (None, other) => other.to_string(),
    }
}

/// Parts as one line: text as is, data as compact JSON, files as their URL.
pub fn parts_line(parts: &Value) -> String {
    let Some(list) = parts.as_array() else {
        return String::new();
    };
    list.iter()
        .map(|p| match p["type"].as_str() {
            Some("text") => p["content"]
                .as_str()
                .unwrap_or("")
                .replace(['\n', '\r'], " "),
            Some("file") => format!("[file {}]", p["url"].as_str().unwrap_or("?")),
            Some("data") => format!("[data {}]", p["content"]),
            _ => p.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) if s.is_empty() => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `GET /peers` as a table.
pub fn peers<Tz: TimeZone>(body: &Value, tz: &Tz, style: Style) -> String
where
    Tz::Offset: std::fmt::Display,
{
    let list = body["peers"].as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        return "no peers yet: connect with `acp-relay connect LINK`, or give yours (`acp-relay link`)\n".into();
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|p| {
            let connected = p["connected"].as_bool() == Some(true);
            let state = if connected {
                style.green("connected")
            } else {
                style.red("offline")
            };
            let since = if connected {
                time_in(&p["connected_at"], tz)
            } else {
                time_in(&p["disconnected_at"], tz)
            };
            let verified = match p["verified"].as_bool() {
                Some(true) => "yes",
                _ => "no",
            };
            vec![
                s(&p["id"]),
                s(&p["agent_name"]
                    .as_str()
                    .map_or(p["name"].clone(), Value::from)),
                state,
                s(&p["connection_type"]),
                verified.into(),
                since,
                p["offline_queue_depth"].as_u64().unwrap_or(0).to_string(),
            ]
        })
        .collect();
    table(
        &["ID", "NAME", "STATE", "VIA", "VERIFIED", "SINCE", "QUEUED"],
        &rows,
        style,
    )
}

/// `GET /status` as labelled lines.
pub fn status<Tz: TimeZone>(b: &Value, tz: &Tz, style: Style) -> String
where
    Tz::Offset: std::fmt::Display,
{
    let store = if b["store"]["full"].as_bool() == Some(true) {
        style.red("full (sends get 507)")
    } else {
        "ok".into()
    };
    fields(
        &[
            ("name", s(&b["agent_name"])),
            (
                "version",
                format!("{} (commit {})", s(&b["version"]), s(&b["commit"])),
            ),
            ("link", s(&b["link"])),
            (
                "peers",
                format!(
                    "{} connected, {} known",
                    b["peer_count"].as_u64().unwrap_or(0),
                    b["known_peers"].as_u64().unwrap_or(0)
                ),
            ),
            (
                "messages",
                format!(
                    "{} sent, {} received",
                    b["messages_sent"].as_u64().unwrap_or(0),
                    b["messages_received"].as_u64().unwrap_or(0)
                ),
            ),
            ("tasks", b["tasks"].as_u64().unwrap_or(0).to_string()),
            ("started", time_in(&b["started_at_iso"], tz)),
            ("data dir", s(&b["data_dir"])),
            ("store", store),
        ],
        style,
    )
}

fn task_state(state: &str, style: Style) -> String {
    match state {
        "completed" => style.green(state),
        "failed" | "canceled" => style.red(state),
        _ => state.to_owned(),
    }
}

/// `GET /tasks` as a table, newest first as the node lists them.
pub fn tasks<Tz: TimeZone>(body: &Value, tz: &Tz, style: Style) -> String
where
    Tz::Offset: std::fmt::Display,
{
    let list = body["tasks"].as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        return "no tasks\n".into();
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|t| {
            vec![
                s(&t["id"]),
                task_state(t["status"].as_str().unwrap_or("?"), style),
                s(&t["context_id"]),
                s(&t["peer_id"]),
                time_in(&t["updated_at"], tz),
                parts_line(&t["payload"]["parts"]),
            ]
        })
        .collect();
    let mut out = table(
        &["ID", "STATUS", "CONTEXT", "PEER", "UPDATED", "ASKS"],
        &rows,
        style,
    );
    if body["has_more"].as_bool() == Some(true) {
        out.push_str(&format!(
            "… {} in all; more with --limit\n",
            body["total"].as_u64().unwrap_or(0)
        ));
    }
    out
}

/// One task (`GET /tasks/{id}`, or the `task` of an update/cancel answer).
pub fn task<Tz: TimeZone>(t: &Value, tz: &Tz, style: Style) -> String
where
    Tz::Offset: std::fmt::Display,
{
    let mut pairs = vec![
        ("id", s(&t["id"])),
        (
            "status",
            task_state(t["status"].as_str().unwrap_or("?"), style),
        ),
        ("context", s(&t["context_id"])),
        ("peer", s(&t["peer_id"])),
        ("created", time_in(&t["created_at"], tz)),
        ("updated", time_in(&t["updated_at"], tz)),
        ("asks", parts_line(&t["payload"]["parts"])),
    ];
    if !t["error"].is_null() {
        pairs.push(("error", s(&t["error"])));
    }
    let artifacts = t["artifacts"].as_array().cloned().unwrap_or_default();
    let lines: Vec<String> = artifacts.iter().map(|a| parts_line(&a["parts"])).collect();
    let mut out = fields(&pairs, style);
    for (i, line) in lines.iter().enumerate() {
        out.push_str(&format!(
            "{} {line}\n",
            style.bold(&format!("artifact {}:", i + 1))
        ));
    }
    out
}

/// `GET /recv` messages as a table (oldest first, as handed out).
pub fn messages<Tz: TimeZone>(body: &Value, tz: &Tz, style: Style) -> String
where
    Tz::Offset: std::fmt::Display,
{
    let list = body["messages"].as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        return "no new messages\n".into();
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|m| {
            vec![
                time_in(&m["received_at"], tz),
                s(&m["raw"]["from"]),
                s(&m["context_id"]),
                parts_line(&m["parts"]),
            ]
        })
        .collect();
    let mut out = table(&["TIME", "FROM", "CONTEXT", "MESSAGE"], &rows, style);
    if let Some(n) = body["remaining"].as_u64().filter(|n| *n > 0) {
        out.push_str(&format!("{n} more unread: run recv again\n"));
    }
    out
}

/// One `/stream` event as one line: local time, kind, and what happened.
pub fn event<Tz: TimeZone>(ev: &Value, tz: &Tz, style: Style) -> String
where
    Tz::Offset: std::fmt::Display,
{
    let time = style.dim(&time_in(&ev["ts"], tz));
    let ctx = match ev["context_id"].as_str() {
        Some(c) if !c.is_empty() => format!(" [{c}]"),
        _ => String::new(),
    };
    let what = match ev["type"].as_str().unwrap_or("?") {
        "message" => {
            let arrow = if ev["direction"] == "outbound" {
                format!("→ {}", s(&ev["peer_id"]))
            } else {
                format!("← {}", s(&ev["from"]))
            };
            format!("message  {arrow}{ctx}  {}", parts_line(&ev["parts"]))
        }
        "status" => format!(
            "task     {} {}{ctx}",
            s(&ev["task_id"]),
            task_state(ev["state"].as_str().unwrap_or("?"), style)
        ),
        "artifact" => format!(
            "artifact {}{ctx}  {}",
            s(&ev["task_id"]),
            parts_line(&ev["artifact"]["parts"])
        ),
        "delivered" => format!(
            "delivered {} message(s) to {}",
            ev["message_ids"].as_array().map_or(0, Vec::len),
            s(&ev["peer_id"])
        ),
        "peer" => {
            let e = ev["event"].as_str().unwrap_or("?");
            let shown = match e {
                "connected" => style.green(e),
                "disconnected" => style.red(e),
                other => other.to_owned(),
            };
            format!("peer     {} {shown}", s(&ev["peer_id"]))
        }
        "card" => format!("card     {}", s(&ev["event"])),
        other => format!("{other} {ev}"),
    };
    format!("{time}  {what}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::FixedOffset;
    use serde_json::json;

    const PLAIN: Style = Style { colour: false };

    #[test]
    fn columns_align_to_the_widest_cell() {
        let out = table(
            &["ID", "NAME"],
            &[
                vec!["peer_001".into(), "B".into()],
                vec!["p2".into(), "a longer name".into()],
            ],
            PLAIN,
        );
        assert_eq!(
            out,
            "ID        NAME\npeer_001  B\np2        a longer name\n"
        );
    }

    #[test]
    fn colour_does_not_break_alignment() {
        let style = Style { colour: true };
        let out = table(
            &["A", "B"],
            &[
                vec![style.green("connected"), "x".into()],
                vec!["no".into(), "y".into()],
            ],
            style,
        );
        let rows: Vec<&str> = out.lines().collect();
        assert!(rows[1].contains("\x1b[32mconnected\x1b[0m  x"), "{out:?}");
        assert!(rows[2].starts_with("no         y"), "{out:?}");
    }

    #[test]
    fn times_are_shown_in_the_given_zone() {
        let paris = FixedOffset::east_opt(3600).unwrap();
        let iso = json!("2026-11-25T11:58:37.538177Z");
        assert_eq!(time_in(&iso, &paris), "2026-11-25 12:58:37");
        assert_eq!(time_in(&iso, &Utc), "2026-11-25 11:58:37");
        // Unix seconds (the reference's `received_at`).
        assert_eq!(
            time_in(&json!(1795607896.578568), &Utc),
            "2026-11-25 11:58:16"
        );
        assert_eq!(
            time_in(
                &json!(1795607896.578568),
                &FixedOffset::west_opt(5 * 3600).unwrap()
            ),
            "2026-11-25 06:58:16"
        );
        assert_eq!(time_in(&Value::Null, &Utc), "-");
        assert_eq!(time_in(&json!("not a time"), &Utc), "not a time");
    }

    #[test]
    fn local_time_is_the_local_zones_offset() {
        let t = DateTime::from_timestamp(1_795_607_896, 0).unwrap();
        let offset = *t.with_timezone(&chrono::Local).offset();
        assert_eq!(
            time_in(&json!(1_795_607_896), &chrono::Local),
            time_in(&json!(1_795_607_896), &offset)
        );
    }

    #[test]
    fn a_peer_table() {
        let body = json!({"peers": [
            {"id":"peer_001","name":"bob","agent_name":"B","connected":true,"connection_type":"p2p_direct",
             "verified":true,"connected_at":"2026-11-25T11:58:13Z","offline_queue_depth":0},
            {"id":"peer_002","name":"peer_002","agent_name":null,"connected":false,"connection_type":null,
             "verified":false,"disconnected_at":null,"offline_queue_depth":3}
        ]});
        let out = peers(&body, &Utc, PLAIN);
        assert_eq!(
            out,
            "ID        NAME      STATE      VIA         VERIFIED  SINCE                QUEUED\n\
             peer_001  B         connected  p2p_direct  yes       2026-11-25 11:58:13  0\n\
             peer_002  peer_002  offline    -           no        -                    3\n"
        );
    }

    #[test]
    fn events_are_one_line_each() {
        let msg = json!({"type":"message","ts":"2026-11-25T11:58:37Z","direction":"inbound","from":"B",
            "context_id":"c1","parts":[{"type":"text","content":"hi\nthere"},{"type":"data","content":{"k":1}}]});
        assert_eq!(
            event(&msg, &Utc, PLAIN),
            "2026-11-25 11:58:37  message  ← B [c1]  hi there [data {\"k\":1}]"
        );
        let st =
            json!({"type":"status","ts":"2026-11-25T11:58:37Z","task_id":"t1","state":"completed"});
        assert_eq!(
            event(&st, &Utc, PLAIN),
            "2026-11-25 11:58:37  task     t1 completed"
        );
        let p = json!({"type":"peer","ts":"2026-11-25T11:58:37Z","event":"connected","peer_id":"peer_001"});
        assert!(!event(&p, &Utc, PLAIN).contains('\n'));
    }

    #[test]
    fn messages_and_tasks() {
        let body = json!({"messages":[{"received_at":1795607896.5,"context_id":"c1","raw":{"from":"B"},
            "parts":[{"type":"text","content":"hi alice"},{"type":"file","url":"https://x/y"}]}],"remaining":2});
        assert_eq!(
            messages(&body, &Utc, PLAIN),
            "TIME                 FROM  CONTEXT  MESSAGE\n\
             2026-11-25 11:58:16  B     c1       hi alice [file https://x/y]\n\
             2 more unread: run recv again\n"
        );
        assert_eq!(
            messages(&json!({"messages":[]}), &Utc, PLAIN),
            "no new messages\n"
        );
        let t = json!({"id":"task_1","status":"completed","updated_at":"2026-11-25T11:58:37Z",
            "created_at":"2026-11-25T11:58:30Z","payload":{"parts":[{"type":"text","content":"sum"}]},
            "artifacts":[{"parts":[{"type":"text","content":"done"}]}]});
        let out = tasks(&json!({"tasks":[t.clone()]}), &Utc, PLAIN);
        assert_eq!(
            out,
            "ID      STATUS     CONTEXT  PEER  UPDATED              ASKS\n\
             task_1  completed  -        -     2026-11-25 11:58:37  sum\n"
        );
        let one = task(&t, &Utc, PLAIN);
        assert!(one.contains("status:  completed\n"), "{one}");
        assert!(one.ends_with("artifact 1: done\n"), "{one}");
    }
}

//! One function per client subcommand: build the request, call the node, print the answer
//! for a person (or as is with `--json`).

use std::io::Write;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::Method;
use serde_json::{Map, Value, json};

use super::client::Client;
use super::error::{CliError, EXIT_UNREACHABLE};
use super::format::{self, Style};
use super::locate;
use super::sse::SseParser;
use super::token::{self, TokenSources};
use super::{ClientCommand, NodeOpts, TaskAction};

/// How many times `watch` reconnects after losing the stream before it gives up.
const WATCH_RETRIES: u32 = 5;

struct Ctx {
    client: Client,
    json: bool,
    style: Style,
}

impl Ctx {
    /// Prints `text` (a person's view) or the JSON `body`; a closed stdout (`| head`) is
    /// not an error.
    fn show(&self, body: &Value, text: impl FnOnce() -> String) {
        let out = if self.json {
            format!("{body}\n")
        } else {
            text()
        };
        let _ = std::io::stdout().lock().write_all(out.as_bytes());
    }
}

/// Runs `cmd` against the node `opts` names.
pub async fn run(cmd: &ClientCommand, opts: &NodeOpts) -> Result<(), CliError> {
    let root = crate::config::data_root();
    let located = locate::locate(&locate::Wanted {
        node: opts.node.as_deref(),
        name: opts.name.as_deref(),
        data_dir: opts.data_dir.as_deref(),
        data_root: root.as_deref(),
    })?;
    let sources = TokenSources {
        token: opts.token.clone(),
        token_file: opts.token_file.clone(),
        data_dir: located.data_dir.clone(),
    };
    let token = token::find(&sources, &located.url)?;
    let ctx = Ctx {
        client: Client::new(located.url, token, located.hint),
        json: opts.json,
        style: Style::detect(),
    };
    let tz = chrono::Local;
    match cmd {
        ClientCommand::Link { .. } => {
            let body = ctx.client.get("/link").await?;
            ctx.show(&body, || {
                format!("{}\n", body["link"].as_str().unwrap_or(""))
            });
        }
        ClientCommand::Connect {
            link,
            peer_name,
            wait,
            ..
        } => connect(&ctx, link, peer_name.as_deref(), *wait).await?,
        ClientCommand::Send {
            text,
            peer,
            context,
            data,
            file,
            task,
            role,
            ..
        } => {
            let mut body = Map::new();
            body.insert("role".into(), json!(role));
            body.insert(
                "parts".into(),
                parts(text.as_deref(), data, file, "--data")?,
            );
            put(&mut body, "peer_id", peer);
            put(&mut body, "context_id", context);
            put(&mut body, "task_id", task);
            send(&ctx, &Value::Object(body)).await?;
        }
        ClientCommand::Recv { wait, limit, .. } => {
            if !wait.is_finite() || *wait < 0.0 {
                return Err(CliError::usage("--wait must be a number of seconds ≥ 0"));
            }
            let path = format!("/recv?limit={limit}&wait={wait}");
            let poll = Duration::from_secs_f64(wait.min(60.0));
            let body = ctx
                .client
                .call(Method::GET, &path, None, poll, &[])
                .await?
                .body;
            ctx.show(&body, || format::messages(&body, &tz, ctx.style));
        }
        ClientCommand::Watch { since, .. } => watch(&ctx, *since).await?,
        ClientCommand::Peers { .. } => {
            let body = ctx.client.get("/peers").await?;
            ctx.show(&body, || format::peers(&body, &tz, ctx.style));
        }
        ClientCommand::Status { .. } => {
            let body = ctx.client.get("/status").await?;
            ctx.show(&body, || format::status(&body, &tz, ctx.style));
        }
        ClientCommand::Tasks {
            status,
            peer,
            context,
            limit,
            ..
        } => {
            let mut query = Vec::new();
            for (k, v) in [
                ("status", status.clone()),
                ("peer_id", peer.clone()),
                ("context_id", context.clone()),
                ("limit", limit.map(|l| l.to_string())),
            ] {
                if let Some(v) = v {
                    query.push(format!("{k}={}", encode(&v)));
                }
            }
            let path = if query.is_empty() {
                "/tasks".to_owned()
            } else {
                format!("/tasks?{}", query.join("&"))
            };
            let body = ctx.client.get(&path).await?;
            ctx.show(&body, || format::tasks(&body, &tz, ctx.style));
        }
        ClientCommand::Task { action } => task(&ctx, action).await?,
    }
    Ok(())
}

fn put(body: &mut Map<String, Value>, key: &str, v: &Option<String>) {
    if let Some(v) = v {
        body.insert(key.into(), json!(v));
    }
}

/// Parts from the text, `--data` JSON values and `--file` URLs; bad JSON names its flag.
fn parts(
    text: Option<&str>,
    data: &[String],
    files: &[String],
    data_flag: &str,
) -> Result<Value, CliError> {
    let mut parts = Vec::new();
    if let Some(t) = text.filter(|t| !t.is_empty()) {
        parts.push(json!({"type": "text", "content": t}));
    }
    for d in data {
        let v: Value = serde_json::from_str(d)
            .map_err(|e| CliError::usage(format!("{data_flag} is not valid JSON: {e}")))?;
        parts.push(json!({"type": "data", "content": v}));
    }
    for f in files {
        if f.trim().is_empty() {
            return Err(CliError::usage("--file needs a URL"));
        }
        parts.push(json!({"type": "file", "url": f}));
    }
    if parts.is_empty() {
        return Err(CliError::usage(format!(
            "nothing to send: give a TEXT, {data_flag} JSON or --file URL"
        )));
    }
    Ok(Value::Array(parts))
}

/// Percent-encodes a path segment or query value (everything but unreserved characters).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

async fn connect(ctx: &Ctx, link: &str, name: Option<&str>, wait: f64) -> Result<(), CliError> {
    if !wait.is_finite() || wait < 0.0 {
        return Err(CliError::usage("--wait must be a number of seconds ≥ 0"));
    }
    let mut req = json!({"link": link});
    if let Some(n) = name {
        req["name"] = json!(n);
    }
    let body = ctx.client.post("/peers/connect", &req).await?;
    let id = body["peer_id"].as_str().unwrap_or("").to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(wait.min(3600.0));
    let mut peer = Value::Null;
    let mut connected = body["connected"].as_bool() == Some(true);
    while !connected && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        peer = ctx.client.get(&format!("/peers/{}", encode(&id))).await?;
        connected = peer["connected"].as_bool() == Some(true);
    }
    ctx.show(&body, || {
        if connected {
            let who = peer["agent_name"]
                .as_str()
                .or_else(|| body["name"].as_str())
                .unwrap_or(&id);
            format!(
                "{} to {who} ({id}{})\n",
                ctx.style.green("connected"),
                peer["connection_type"]
                    .as_str()
                    .map(|t| format!(", {t}"))
                    .unwrap_or_default()
            )
        } else {
            let why = peer["last_error"]
                .as_str()
                .map(|e| format!(" (last error: {e})"))
                .unwrap_or_default();
            format!(
                "{id}: connecting to {link}{why}; the node keeps dialling it (see acp-relay peers)\n"
            )
        }
    });
    Ok(())
}

async fn send(ctx: &Ctx, req: &Value) -> Result<(), CliError> {
    let answer = ctx
        .client
        .call(
            Method::POST,
            "/message:send",
            Some(req),
            Duration::ZERO,
            &[503],
        )
        .await?;
    let body = answer.body;
    let queued = body["queued"].as_bool() == Some(true);
    if answer.status == 503 && !queued {
        return Err(ctx
            .client
            .refusal(hyper::StatusCode::SERVICE_UNAVAILABLE, &body));
    }
    ctx.show(&body, || {
        let id = body["message_id"].as_str().unwrap_or("?");
        let peer = body["peer_id"].as_str().unwrap_or("?");
        if queued {
            format!(
                "queued {id} for {peer}: it is offline; the message goes out when it is back ({} waiting)\n",
                body["queue_depth"].as_u64().unwrap_or(1)
            )
        } else if body["delivery"] == "duplicate" {
            format!("{id} was already sent (seq {}); not sent again\n", body["server_seq"])
        } else {
            format!("sent {id} to {peer} (seq {})\n", body["server_seq"])
        }
    });
    Ok(())
}

async fn task(ctx: &Ctx, action: &TaskAction) -> Result<(), CliError> {
    let tz = chrono::Local;
    match action {
        TaskAction::Get { id, .. } => {
            let body = ctx.client.get(&format!("/tasks/{}", encode(id))).await?;
            ctx.show(&body, || format::task(&body, &tz, ctx.style));
        }
        TaskAction::Create {
            text,
            data,
            id,
            context,
            peer,
            delegate,
            ..
        } => {
            let mut body = Map::new();
            body.insert("role".into(), json!("user"));
            body.insert("parts".into(), parts(text.as_deref(), data, &[], "--data")?);
            put(&mut body, "task_id", id);
            put(&mut body, "context_id", context);
            put(&mut body, "peer_id", peer);
            if *delegate {
                body.insert("delegate".into(), json!(true));
            }
            let answer = ctx.client.post("/tasks", &Value::Object(body)).await?;
            ctx.show(&answer, || format::task(&answer["task"], &tz, ctx.style));
        }
        TaskAction::Update {
            id,
            status,
            artifact,
            artifact_data,
            error,
            ..
        } => {
            let mut body = Map::new();
            put(&mut body, "status", status);
            if artifact.is_some() || !artifact_data.is_empty() {
                let p = parts(artifact.as_deref(), artifact_data, &[], "--artifact-data")?;
                body.insert("artifact".into(), json!({"parts": p}));
            }
            put(&mut body, "error", error);
            let answer = ctx
                .client
                .post(
                    &format!("/tasks/{}/update", encode(id)),
                    &Value::Object(body),
                )
                .await?;
            ctx.show(&answer, || format::task(&answer["task"], &tz, ctx.style));
        }
        TaskAction::Cancel { id, .. } => {
            let answer = ctx
                .client
                .post(&format!("/tasks/{}/cancel", encode(id)), &json!({}))
                .await?;
            ctx.show(&answer, || {
                let mut out = format::task(&answer["task"], &tz, ctx.style);
                if let Some(note) = answer["note"].as_str() {
                    out.push_str(&format!("note: {note}\n"));
                }
                out
            });
        }
    }
    Ok(())
}

/// `watch`: `/stream`, one line per event; after a lost stream it reconnects with
/// `Last-Event-ID` (so nothing is missed or repeated), at most [`WATCH_RETRIES`] times in
/// a row. No node at the first attempt is the usual one-line error.
async fn watch(ctx: &Ctx, since: Option<u64>) -> Result<(), CliError> {
    let tz = chrono::Local;
    let mut last: Option<String> = since.map(|s| s.to_string());
    let mut failures = 0u32;
    let mut ever_connected = false;
    loop {
        let extra: Vec<(&str, String)> = match &last {
            Some(id) => vec![("last-event-id", id.clone())],
            None => vec![],
        };
        let lost_why = match ctx.client.open(Method::GET, "/stream", None, &extra).await {
            Ok(resp) if resp.status().is_success() => {
                ever_connected = true;
                failures = 0;
                let mut body = resp.into_body();
                let mut parser = SseParser::default();
                loop {
                    match body.frame().await {
                        Some(Ok(frame)) => {
                            let Some(chunk) = frame.data_ref() else {
                                continue;
                            };
                            let events = parser.feed(chunk).map_err(CliError::node)?;
                            let mut out = std::io::stdout().lock();
                            for ev in events {
                                if let Some(id) = ev.id.clone() {
                                    last = Some(id);
                                }
                                let line = if ctx.json {
                                    ev.data.replace('\n', " ")
                                } else {
                                    match serde_json::from_str::<Value>(&ev.data) {
                                        Ok(v) => format::event(&v, &tz, ctx.style),
                                        Err(_) => ev.data.replace('\n', " "),
                                    }
                                };
                                if writeln!(out, "{line}").and_then(|_| out.flush()).is_err() {
                                    return Ok(()); // stdout closed: the reader is done
                                }
                            }
                        }
                        Some(Err(e)) => break e.to_string(),
                        None => break "the node closed the stream".to_owned(),
                    }
                }
            }
            Ok(resp) => {
                let status = resp.status();
                let bytes = resp
                    .into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                return Err(ctx.client.refusal(status, &body));
            }
            Err(e) if e.exit == EXIT_UNREACHABLE && ever_connected => e.message,
            Err(e) => return Err(e),
        };
        failures += 1;
        if failures > WATCH_RETRIES {
            return Err(CliError::unreachable(format!(
                "lost the node at {} ({lost_why}); gave up after {WATCH_RETRIES} reconnects",
                ctx.client.node.shown
            )));
        }
        eprintln!("acp-relay: {lost_why}; reconnecting ({failures}/{WATCH_RETRIES})");
        tokio::time::sleep(Duration::from_secs(u64::from(failures))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_from_flags() {
        let p = parts(
            Some("hi"),
            &["{\"k\":1}".into()],
            &["https://x/y".into()],
            "--data",
        )
        .unwrap();
        assert_eq!(
            p,
            json!([{"type":"text","content":"hi"},{"type":"data","content":{"k":1}},{"type":"file","url":"https://x/y"}])
        );
        let e = parts(None, &["{oops".into()], &[], "--data").unwrap_err();
        assert!(e.message.starts_with("--data is not valid JSON"), "{e:?}");
        assert!(parts(None, &[], &[], "--data").is_err());
    }

    #[test]
    fn encoding_keeps_ids_in_one_segment() {
        assert_eq!(encode("task_1-a.b~"), "task_1-a.b~");
        assert_eq!(encode("a/b c:d"), "a%2Fb%20c%3Ad");
        assert_eq!(encode("é"), "%C3%A9");
    }
}

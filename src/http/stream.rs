//! Server-Sent Events. Every event carries its `seq` as the SSE `id`; a client that comes
//! back with `Last-Event-ID` (or `?since=`) first gets what it missed, from the store, then
//! live events (the [`Cursor`] shared with the WebSocket stream does the bookkeeping).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::Stream;
use futures_util::stream;

use super::ApiResult;
use super::cursor::{Cursor, Filter, resume_point};
use super::extract::Params;
use crate::node::Node;
use crate::node::events::Event;

fn to_sse(ev: &Event) -> SseEvent {
    let out = SseEvent::default().id(ev.seq.to_string()).data(&*ev.json);
    match ev.sse_name() {
        Some(name) => out.event(name),
        None => out,
    }
}

fn sse_stream(cursor: Cursor) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    // The first item is a `: keepalive` comment, so a client sees the stream is open at once.
    let events = stream::unfold((cursor, false), |(mut c, greeted)| async move {
        if !greeted {
            return Some((Ok(SseEvent::default().comment("keepalive")), (c, true)));
        }
        let ev = c.next().await?;
        if c.ends_stream(&ev) {
            c.finished = true;
        }
        Some((Ok(to_sse(&ev)), (c, true)))
    });
    Sse::new(events).keep_alive(
        KeepAlive::new()
            .interval(Duration::from_secs(15))
            .text("keepalive"),
    )
}

/// `GET /stream?since=N` (or `Last-Event-ID: N`): all events.
pub async fn stream(
    State(node): State<Node>,
    headers: HeaderMap,
    params: Params,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    let since = resume_point(&params, &headers)?;
    Ok(sse_stream(Cursor::new(node, since, Filter::All)))
}

/// `GET /tasks/{id}:subscribe`: one task's events until it is terminal.
pub fn task_stream(
    node: Node,
    task_id: String,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    // Subscribe first, then look: a task that finishes in between still ends the stream.
    let mut cursor = Cursor::new(node.clone(), None, Filter::Task(task_id.clone()));
    cursor.finished = node
        .task(&task_id)
        .map(|t| t.status.is_terminal())
        .unwrap_or(false);
    sse_stream(cursor)
}

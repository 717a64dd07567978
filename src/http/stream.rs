//! Server-Sent Events. Every event carries its `seq` as the SSE `id`; a client that comes
//! back with `Last-Event-ID` (or `?since=`) first gets what it missed, from the store, then
//! live events from the broadcast channel. A client too slow for the live channel is not
//! dropped and does not stall the node: it falls back to reading from the store until it has
//! caught up.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::Stream;
use futures_util::stream;
use tokio::sync::broadcast::{self, error::RecvError};

use super::ApiResult;
use super::extract::Params;
use crate::node::Node;
use crate::node::error::NodeError;
use crate::node::events::Event;
use crate::node::task::TaskState;

/// Events read from the store per catch-up page.
const REPLAY_PAGE: usize = 500;

/// Which events a stream forwards.
#[derive(Clone)]
enum Filter {
    All,
    /// One task's events (plus peer events); ends after the task's terminal status.
    Task(String),
}

struct Cursor {
    node: Node,
    live: broadcast::Receiver<Arc<Event>>,
    last: u64,
    backlog: VecDeque<Arc<Event>>,
    catching_up: bool,
    filter: Filter,
    finished: bool,
    greeted: bool,
}

impl Cursor {
    fn new(node: Node, since: Option<u64>, filter: Filter) -> Cursor {
        let live = node.events().subscribe();
        let last = since.unwrap_or_else(|| node.events().last_seq());
        Cursor {
            node,
            live,
            last,
            backlog: VecDeque::new(),
            catching_up: since.is_some(),
            filter,
            finished: false,
            greeted: false,
        }
    }

    fn wanted(&self, ev: &Event) -> bool {
        match &self.filter {
            Filter::All => true,
            Filter::Task(id) => {
                ev.kind == "peer"
                    || ev.body.get("task_id").and_then(|t| t.as_str()) == Some(id.as_str())
            }
        }
    }

    fn ends_stream(&self, ev: &Event) -> bool {
        match &self.filter {
            Filter::All => false,
            Filter::Task(id) => {
                ev.kind == "status"
                    && ev.body.get("task_id").and_then(|t| t.as_str()) == Some(id.as_str())
                    && ev
                        .body
                        .get("state")
                        .and_then(|s| s.as_str())
                        .and_then(TaskState::parse)
                        .is_some_and(TaskState::is_terminal)
            }
        }
    }

    async fn next(&mut self) -> Option<Arc<Event>> {
        let shutdown = self.node.shutdown_token();
        loop {
            if self.finished {
                return None;
            }
            if let Some(ev) = self.backlog.pop_front() {
                if ev.seq <= self.last {
                    continue;
                }
                self.last = ev.seq;
                if self.wanted(&ev) {
                    return Some(ev);
                }
                continue;
            }
            if self.catching_up {
                let page = self.node.events().replay(self.last, REPLAY_PAGE).await;
                if page.len() < REPLAY_PAGE {
                    self.catching_up = false;
                }
                self.backlog.extend(page);
                continue;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return None,
                received = self.live.recv() => match received {
                    Ok(ev) => self.backlog.push_back(ev),
                    Err(RecvError::Lagged(skipped)) => {
                        tracing::debug!(skipped, "SSE client fell behind; catching up from the store");
                        self.catching_up = true;
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        }
    }
}

fn to_sse(ev: &Event) -> SseEvent {
    let out = SseEvent::default().id(ev.seq.to_string()).data(&*ev.json);
    match ev.sse_name() {
        Some(name) => out.event(name),
        None => out,
    }
}

fn sse_stream(cursor: Cursor) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let events = stream::unfold(cursor, |mut c| async move {
        if !c.greeted {
            c.greeted = true;
            return Some((Ok(SseEvent::default().comment("keepalive")), c));
        }
        let ev = c.next().await?;
        if c.ends_stream(&ev) {
            c.finished = true;
        }
        Some((Ok(to_sse(&ev)), c))
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
    let since = match params.str("since") {
        Some(v) => Some(v.trim().parse::<u64>().map_err(|_| {
            NodeError::invalid("since must be a non-negative integer (an event seq)")
        })?),
        None => match headers.get("last-event-id").and_then(|v| v.to_str().ok()) {
            Some(v) if !v.trim().is_empty() => Some(v.trim().parse::<u64>().map_err(|_| {
                NodeError::invalid("Last-Event-ID must be a non-negative integer (an event seq)")
            })?),
            _ => None,
        },
    };
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

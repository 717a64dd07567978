//! A reader's position in the node's event log, shared by every event stream of the HTTP
//! port (SSE `/stream` and `/tasks/{id}:subscribe`, WebSocket `/ws/stream`). It subscribes to
//! the live channel before reading anything, replays what the client missed from the store
//! (`?since=N`), then forwards live events, skipping any `seq` already sent, so the hand-over
//! has neither a gap nor a duplicate. A reader too slow for the live channel is not dropped
//! and does not stall the node: it goes back to reading the store from its last `seq` until
//! it has caught up. What it holds is bounded (one replay page) however far behind it is.

use std::collections::VecDeque;
use std::sync::Arc;

use axum::http::HeaderMap;
use tokio::sync::broadcast::{self, error::RecvError};

use super::extract::Params;
use crate::node::Node;
use crate::node::error::NodeError;
use crate::node::events::Event;
use crate::node::task::TaskState;

/// Events read from the store per catch-up page.
const REPLAY_PAGE: usize = 500;

/// Which events a stream forwards.
#[derive(Clone)]
pub(super) enum Filter {
    /// Every event.
    All,
    /// One task's events (plus peer events); ends after the task's terminal status.
    Task(String),
}

/// See the module docs.
pub(super) struct Cursor {
    node: Node,
    live: broadcast::Receiver<Arc<Event>>,
    last: u64,
    backlog: VecDeque<Arc<Event>>,
    catching_up: bool,
    filter: Filter,
    /// Set once the stream has sent its last event (a task stream after the terminal status).
    pub(super) finished: bool,
}

impl Cursor {
    /// A cursor after `since` (replaying from the store first), or at the next live event.
    /// It is subscribed when this returns: nothing emitted afterwards can be missed.
    pub(super) fn new(node: Node, since: Option<u64>, filter: Filter) -> Cursor {
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

    /// Whether `ev` is the last event of this stream (a task stream's terminal status).
    pub(super) fn ends_stream(&self, ev: &Event) -> bool {
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

    /// Whether an event may be at hand without waiting: a writer that batches frames flushes
    /// only when this is false.
    pub(super) fn has_ready(&self) -> bool {
        !self.backlog.is_empty() || self.catching_up || !self.live.is_empty()
    }

    /// The next event for this stream; `None` once it is finished or the node shuts down.
    /// Cancelling it loses nothing (a replay page read again, at worst).
    pub(super) async fn next(&mut self) -> Option<Arc<Event>> {
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
                        tracing::debug!(skipped, "event stream client fell behind; catching up from the store");
                        self.catching_up = true;
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        }
    }
}

/// Where a client asks to resume: `?since=N`, else the `Last-Event-ID: N` header (SSE's own
/// resumption), else nowhere (live events only). A value that is not a seq is a 400.
pub(super) fn resume_point(params: &Params, headers: &HeaderMap) -> Result<Option<u64>, NodeError> {
    match params.str("since") {
        Some(v) => Ok(Some(v.trim().parse::<u64>().map_err(|_| {
            NodeError::invalid("since must be a non-negative integer (an event seq)")
        })?)),
        None => match headers.get("last-event-id").and_then(|v| v.to_str().ok()) {
            Some(v) if !v.trim().is_empty() => Ok(Some(v.trim().parse::<u64>().map_err(|_| {
                NodeError::invalid("Last-Event-ID must be a non-negative integer (an event seq)")
            })?)),
            _ => Ok(None),
        },
    }
}

//! Request bodies bounded so that a client always sees the 413. A server that answers "too
//! large" and closes the connection with the rest of the body unread makes the kernel reset
//! the connection, and a client that writes its whole body before reading (Python's urllib,
//! which the reference's SDK uses) then sees only "connection reset". So a body over the limit
//! is read on and thrown away, up to a bound in bytes and in time, before the 413 goes out;
//! a client that asked `Expect: 100-continue` is answered at once without being asked for the
//! body at all.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;

use super::ApiError;
use crate::node::error::{ErrorCode, NodeError};

/// The largest body accepted, and how much of a larger one is read and discarded.
#[derive(Clone, Copy, Debug)]
pub struct BodyLimit {
    /// Largest body accepted, in bytes.
    pub max: usize,
    /// Bytes of an over-limit body read and thrown away before answering 413.
    pub drain_max: usize,
    /// Time allowed for that.
    pub drain_time: Duration,
    /// One path with a larger limit (the streaming inlet's NDJSON bodies, many requests in
    /// one body).
    pub larger: Option<(&'static str, usize)>,
}

impl BodyLimit {
    /// The limit for bodies of `max` bytes: a too-large body is drained up to four times the
    /// limit (at least 16 MiB) within 10 s; past that the connection is closed.
    pub fn new(max: usize) -> BodyLimit {
        BodyLimit {
            max,
            drain_max: max.saturating_mul(4).max(16 * 1024 * 1024),
            drain_time: Duration::from_secs(10),
            larger: None,
        }
    }

    /// The same limits, with `max` bytes (and as much drained) for bodies sent to `path`.
    pub fn with_larger(mut self, path: &'static str, max: usize) -> BodyLimit {
        self.larger = Some((path, max));
        self.drain_max = self.drain_max.max(max);
        self
    }

    /// The largest body accepted on `path`.
    pub fn max_for(&self, path: &str) -> usize {
        match self.larger {
            Some((p, max)) if p == path => max,
            _ => self.max,
        }
    }
}

/// The middleware: reads the body within the limit and hands it on, or answers 413.
pub async fn check(State(limit): State<BodyLimit>, req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared == Some(0) || (declared.is_none() && req_has_no_body(&req)) {
        return next.run(req).await;
    }
    let max = limit.max_for(req.uri().path());
    let too_large = || {
        let mut resp = ApiError(NodeError::new(
            ErrorCode::MsgTooLarge,
            format!("request body too large (limit {max} bytes)"),
        ))
        .into_response();
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        resp
    };
    let expects_continue = req
        .headers()
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if declared.is_some_and(|n| n > max as u64) && expects_continue {
        // Not polling the body means hyper never sends "100 Continue": the client learns the
        // answer without uploading anything.
        return too_large();
    }
    let (parts, mut body) = req.into_parts();
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut len = 0usize;
    let over = loop {
        match body.frame().await {
            None => break false,
            Some(Err(e)) => {
                return ApiError(NodeError::invalid(format!("cannot read request body: {e}")))
                    .into_response();
            }
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    len += data.len();
                    if len > max {
                        break true;
                    }
                    chunks.push(data);
                }
            }
        }
    };
    if over {
        drop(chunks);
        drain(body, limit, len).await;
        return too_large();
    }
    let bytes = match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.pop().unwrap_or_default(),
        _ => {
            let mut all = Vec::with_capacity(len);
            for c in &chunks {
                all.extend_from_slice(c);
            }
            Bytes::from(all)
        }
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// A request that declares no length and no chunked body has none (HTTP/1.1).
fn req_has_no_body(req: &Request) -> bool {
    !req.headers().contains_key(header::TRANSFER_ENCODING)
        && req.version() <= axum::http::Version::HTTP_11
}

/// Reads and discards the rest of `body`, up to the drain bounds.
async fn drain(mut body: Body, limit: BodyLimit, mut seen: usize) {
    let deadline = tokio::time::Instant::now() + limit.drain_time;
    while seen <= limit.drain_max {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    seen += data.len();
                }
            }
            _ => return,
        }
    }
}

//! `/messages:stream`, the streaming send inlet: many `/message:send` requests on one
//! connection, each answered in order with exactly what `/message:send` would have answered
//! (an error body also carries `status`, the HTTP status it would have had).
//!
//! - `GET` upgrades to a WebSocket: one text frame per request, one text frame per answer.
//!   A bad frame (not JSON, not an object, binary, over the body limit) is answered with its
//!   error and the connection goes on; only a frame the WebSocket layer cannot read (over four
//!   times the limit, text that is not UTF-8, a protocol error) ends it, after its error
//!   frame, with a close code saying why.
//! - `POST` with an NDJSON body (`application/x-ndjson`): one request per line (empty lines
//!   skipped), answered with NDJSON, one line per request.
//!
//! Both go through the node's one send path ([`Node::begin_sends`]): the requests that are at
//! hand are submitted together, in order, and one commit covers them, so a pipelining client
//! pays one commit wait per batch instead of one per message; nothing is answered before it
//! is durable. While a batch waits for its commit the next one is read and submitted, up to
//! [`IN_FLIGHT`] batches; past that the inlet stops reading, and the client's writes wait.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::{FutureExt, Sink, SinkExt, Stream, StreamExt, future, stream};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_util::sync::CancellationToken;

use super::extract::parse_json;
use super::messages::send_answer;
use super::ws_upgrade::{ApiSocket, WsUpgrade, close_politely};
use super::{ApiError, ApiResult, request_body_limit};
use crate::node::error::{ErrorCode, NodeError, NodeResult};
use crate::node::message::SendRequest;
use crate::node::{Node, SendOutcome};

/// The path of the inlet (the guard lets NDJSON bodies through here only).
pub const PATH: &str = "/messages:stream";
/// Requests submitted together at most.
const BATCH_MAX: usize = 256;
/// A batch stops taking requests once it holds this many bytes of them.
const BATCH_BYTES: usize = 1024 * 1024;
/// Batches submitted and waiting for their commit (or their answers to be written) at most.
const IN_FLIGHT: usize = 4;
/// Requests in one NDJSON body at most.
pub const NDJSON_LINES_MAX: usize = 10_000;
/// An NDJSON body may be this many times the limit of one request body.
const NDJSON_BODIES: usize = 16;

/// The largest NDJSON body, for a node whose request body limit is `single`: room for many
/// requests, but bounded.
pub fn ndjson_limit(single: usize) -> usize {
    single.saturating_mul(NDJSON_BODIES)
}

/// One request as read: a send for the node, or the error it already is.
type Request = NodeResult<SendRequest>;

/// Reads one request exactly as `/message:send` reads its body.
fn parse(bytes: &[u8], limit: usize) -> Request {
    if bytes.len() > limit {
        return Err(NodeError::new(
            ErrorCode::MsgTooLarge,
            format!("request too large (limit {limit} bytes)"),
        ));
    }
    SendRequest::from_json(&parse_json(bytes)?, None)
}

/// The answer to one request: the `/message:send` body, plus `status` on an error.
fn answer(result: NodeResult<SendOutcome>) -> Value {
    let (status, mut body) = send_answer(result, false);
    if status.as_u16() >= 400 {
        body["status"] = json!(status.as_u16());
    }
    body
}

/// Submits each batch of `input` in order and writes the answers to `out` in the same
/// order. Submitting is never cancelled half-way; reading stops as soon as `out` fails.
async fn pipeline<In, Out>(node: Node, input: In, out: &mut Out) -> Result<(), Out::Error>
where
    In: Stream<Item = Vec<Request>>,
    Out: Sink<Value> + Unpin,
{
    let (tx, mut rx) = mpsc::channel(IN_FLIGHT);
    let writer_failed = CancellationToken::new();
    let produce = async {
        let mut input = std::pin::pin!(input);
        loop {
            let batch = tokio::select! {
                _ = writer_failed.cancelled() => break,
                batch = input.next() => match batch {
                    Some(b) => b,
                    None => break,
                },
            };
            let submitted = node.begin_sends(batch).await;
            if tx.send(submitted).await.is_err() {
                break;
            }
        }
        drop(tx);
    };
    let consume = async {
        while let Some(batch) = rx.recv().await {
            for result in batch.finish().await {
                if let Err(e) = out.feed(answer(result)).await {
                    writer_failed.cancel();
                    return Err(e);
                }
            }
            if let Err(e) = out.flush().await {
                writer_failed.cancel();
                return Err(e);
            }
        }
        Ok(())
    };
    let ((), written) = future::join(produce, consume).await;
    written
}

/// `GET /messages:stream`: the WebSocket inlet.
pub async fn ws(State(node): State<Node>, upgrade: WsUpgrade) -> Response {
    let limit = request_body_limit(node.config());
    // Frames up to four times the limit are read (and answered 413) so the connection goes
    // on; larger ones cannot be skipped and end it.
    let cap = limit.saturating_mul(4);
    let config = WebSocketConfig::default()
        .read_buffer_size(64 * 1024)
        .write_buffer_size(64 * 1024)
        .max_message_size(Some(cap))
        .max_frame_size(Some(cap));
    let serving = node.clone();
    upgrade.serve(&node, config, move |socket| {
        ws_session(serving, socket, limit)
    })
}

async fn ws_session(node: Node, socket: ApiSocket, limit: usize) {
    let (sink, stream) = socket.split();
    let mut reader = FrameReader {
        stream,
        node: node.clone(),
        limit,
        close: None,
        done: false,
    };
    let input = stream::unfold(&mut reader, |r| async move {
        let batch = r.next_batch().await?;
        Some((batch, r))
    });
    let mut out = sink.with(|answer: Value| {
        future::ready(Ok::<_, tungstenite::Error>(Message::text(
            answer.to_string(),
        )))
    });
    let written = pipeline(node, input, &mut out).await;
    let Ok(mut socket) = reader.stream.reunite(out.into_inner()) else {
        return;
    };
    if written.is_err() {
        return;
    }
    match reader.close.take() {
        Some(frame) => close_politely(socket, frame, limit.saturating_mul(8)).await,
        // The client closed; tungstenite has answered its close frame.
        None => {
            let _ = socket.close(None).await;
        }
    }
}

/// The reading side of a WebSocket inlet: frames into batches of requests.
struct FrameReader {
    stream: futures_util::stream::SplitStream<ApiSocket>,
    node: Node,
    limit: usize,
    /// The close frame to end with, when the reading side ended the connection.
    close: Option<CloseFrame>,
    done: bool,
}

/// Whether to read on after a frame.
enum Flow {
    Go,
    Stop,
}

impl FrameReader {
    /// Waits for the next request, then takes every further one already at hand (up to
    /// [`BATCH_MAX`] requests or [`BATCH_BYTES`]). `None` when the connection is over.
    async fn next_batch(&mut self) -> Option<Vec<Request>> {
        let mut batch = Vec::new();
        let mut bytes = 0;
        let shutdown = self.node.shutdown_token();
        while batch.is_empty() && !self.done {
            let msg = tokio::select! {
                _ = shutdown.cancelled() => {
                    self.end(CloseCode::Away, "node shutting down");
                    break;
                }
                msg = self.stream.next() => msg,
            };
            if let Flow::Stop = self.take(msg, &mut batch, &mut bytes) {
                self.done = true;
            }
        }
        while !self.done && batch.len() < BATCH_MAX && bytes < BATCH_BYTES {
            let Some(msg) = self.stream.next().now_or_never() else {
                break;
            };
            if let Flow::Stop = self.take(msg, &mut batch, &mut bytes) {
                self.done = true;
            }
        }
        (!batch.is_empty()).then_some(batch)
    }

    fn end(&mut self, code: CloseCode, reason: &str) {
        self.done = true;
        self.close = Some(CloseFrame {
            code,
            reason: reason.to_owned().into(),
        });
    }

    /// Adds what one frame means to `batch`.
    fn take(
        &mut self,
        msg: Option<Result<Message, tungstenite::Error>>,
        batch: &mut Vec<Request>,
        bytes: &mut usize,
    ) -> Flow {
        use tungstenite::error::{CapacityError, Error};
        match msg {
            Some(Ok(Message::Text(text))) => {
                *bytes += text.len();
                batch.push(parse(text.as_bytes(), self.limit));
                Flow::Go
            }
            Some(Ok(Message::Binary(_))) => {
                batch.push(Err(NodeError::new(
                    ErrorCode::UnsupportedMediaType,
                    "binary frames are not requests: send each /message:send body as a text frame",
                )));
                Flow::Go
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => Flow::Go,
            Some(Ok(Message::Close(_))) | None => Flow::Stop,
            Some(Err(Error::Capacity(CapacityError::MessageTooLong { size, max_size }))) => {
                batch.push(Err(NodeError::new(
                    ErrorCode::MsgTooLarge,
                    format!(
                        "frame of {size} bytes is over {max_size}, the most this connection reads; closing"
                    ),
                )));
                self.end(CloseCode::Size, "frame too large");
                Flow::Stop
            }
            Some(Err(Error::Utf8(_))) => {
                batch.push(Err(NodeError::invalid("text frame is not UTF-8; closing")));
                self.end(CloseCode::Invalid, "text frame is not UTF-8");
                Flow::Stop
            }
            Some(Err(Error::Protocol(e))) => {
                batch.push(Err(NodeError::invalid(format!(
                    "WebSocket protocol error: {e}; closing"
                ))));
                self.end(CloseCode::Protocol, "protocol error");
                Flow::Stop
            }
            Some(Err(e)) => {
                batch.push(Err(NodeError::invalid(format!(
                    "unreadable frame: {e}; closing"
                ))));
                self.end(CloseCode::Protocol, "unreadable frame");
                Flow::Stop
            }
        }
    }
}

/// `POST /messages:stream`: an NDJSON body of `/message:send` requests, answered with one
/// NDJSON line per request, in order.
pub async fn ndjson(State(node): State<Node>, body: Body) -> ApiResult<Response> {
    let single = request_body_limit(node.config());
    let limit = ndjson_limit(single);
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError(NodeError::new(
            ErrorCode::MsgTooLarge,
            format!("request body too large (limit {limit} bytes)"),
        ))
    })?;
    let lines: Vec<&[u8]> = bytes
        .split(|b| *b == b'\n')
        .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
        .collect();
    if lines.len() > NDJSON_LINES_MAX {
        return Err(ApiError(NodeError::new(
            ErrorCode::MsgTooLarge,
            format!(
                "{} requests in one body; at most {NDJSON_LINES_MAX} (nothing was sent)",
                lines.len()
            ),
        )));
    }
    let batches: Vec<Vec<Request>> = lines
        .chunks(BATCH_MAX)
        .map(|chunk| chunk.iter().map(|line| parse(line, single)).collect())
        .collect();
    // The sends run as a task of their own: a client that hangs up does not cut a batch off
    // half-submitted.
    let sender = node.clone();
    let running = node.background().spawn(async move {
        let mut answers: Vec<Value> = Vec::new();
        let _ = pipeline(sender, stream::iter(batches), &mut answers).await;
        answers
    });
    let answers = running.await.map_err(|e| {
        ApiError(NodeError::internal(format!(
            "the inlet's sends stopped: {e}"
        )))
    })?;
    let mut text = String::new();
    for a in &answers {
        text.push_str(&a.to_string());
        text.push('\n');
    }
    let mut resp = (StatusCode::OK, text).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_read_as_bodies_are() {
        let limit = 1024;
        assert!(parse(br#"{"role":"user","text":"hi"}"#, limit).is_ok());
        let e = parse(b"{nope", limit).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        assert!(e.message.contains("Invalid JSON"), "{}", e.message);
        let e = parse(b"[1]", limit).unwrap_err();
        assert!(e.message.contains("JSON object"), "{}", e.message);
        let e = parse(&vec![b' '; limit + 1], limit).unwrap_err();
        assert_eq!(e.code, ErrorCode::MsgTooLarge);
        // A blank request reads as {} (then fails for want of a role), as an empty body does.
        let e = parse(b"  ", limit).unwrap_err();
        assert!(e.message.contains("role"), "{}", e.message);
    }

    #[test]
    fn errors_carry_their_status() {
        let v = answer(Err(NodeError::invalid("bad")));
        assert_eq!(v["status"], 400);
        assert_eq!(v["error_code"], "ERR_INVALID_REQUEST");
        assert_eq!(v["ok"], false);
    }
}

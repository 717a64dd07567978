//! The bridge's HTTP requests: one request per connection on hyper's HTTP/1.1 client, over
//! the webhooks' connector (TLS with rustls and the webpki roots for `https`), with a time
//! limit on the whole exchange and a size limit on the answer. No redirect is followed and
//! no proxy is read: only the URL given is contacted.

use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::{Method, Request, header};

use crate::node::webhooks::post::Connector;
use crate::node::webhooks::url::WebhookUrl;

/// Most bytes of an agent's answer read (a card, a task with its artifacts).
pub const MAX_ANSWER_BYTES: usize = 8 * 1024 * 1024;

/// What an agent answered.
#[derive(Debug)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// `Content-Type`, lower case, without parameters.
    pub content_type: String,
    /// The body.
    pub body: Bytes,
}

/// Why a request got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The agent could not be reached (connection refused, DNS, TLS, time limit): worth
    /// trying again later.
    Unreachable(String),
    /// The URL cannot be requested at all.
    BadUrl(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Unreachable(why) | Failure::BadUrl(why) => f.write_str(why),
        }
    }
}

/// Sends one request to `url` and reads the whole answer, within `limit`.
pub async fn request(
    connector: &Connector,
    method: Method,
    url: &url::Url,
    headers: &[(String, String)],
    body: Option<Bytes>,
    limit: Duration,
) -> Result<Answer, Failure> {
    match tokio::time::timeout(limit, exchange(connector, method, url, headers, body)).await {
        Ok(result) => result,
        Err(_) => Err(no_answer(url, limit)),
    }
}

/// What a request that ran out of time reports.
fn no_answer(url: &url::Url, limit: Duration) -> Failure {
    Failure::Unreachable(format!(
        "no answer from {} within {} s",
        origin(url),
        limit.as_secs()
    ))
}

/// `scheme://host:port` of a URL, for messages (never its path or query, which may hold a
/// key).
pub fn origin(url: &url::Url) -> String {
    url.origin().ascii_serialization()
}

/// An answer whose body is read as it comes: Server-Sent Events.
pub struct Stream {
    /// HTTP status.
    pub status: u16,
    /// `Content-Type`, lower case, without parameters.
    pub content_type: String,
    body: hyper::body::Incoming,
    buf: Vec<u8>,
    origin: String,
}

/// Sends one request and returns once the answer's head is there (within `limit`); the
/// body is read with [`Stream::next_event`].
pub async fn open(
    connector: &Connector,
    method: Method,
    url: &url::Url,
    headers: &[(String, String)],
    body: Option<Bytes>,
    limit: Duration,
) -> Result<Stream, Failure> {
    let head = tokio::time::timeout(limit, start(connector, method, url, headers, body)).await;
    let resp = head.map_err(|_| no_answer(url, limit))??;
    let (status, content_type) = head_of(&resp);
    Ok(Stream {
        status,
        content_type,
        body: resp.into_body(),
        buf: Vec::new(),
        origin: origin(url),
    })
}

impl Stream {
    /// The data of the next event (its `data:` lines joined), `None` at the end of the
    /// stream. An event must begin within `idle`; events are at most [`MAX_ANSWER_BYTES`].
    pub async fn next_event(&mut self, idle: Duration) -> Result<Option<String>, Failure> {
        loop {
            if let Some(data) = self.take_event() {
                if data.is_empty() {
                    continue;
                }
                return Ok(Some(data));
            }
            let frame = tokio::time::timeout(idle, self.body.frame())
                .await
                .map_err(|_| {
                    Failure::Unreachable(format!(
                        "{}: no event within {} s",
                        self.origin,
                        idle.as_secs()
                    ))
                })?;
            match frame {
                None => return Ok(None),
                Some(Err(e)) => {
                    return Err(Failure::Unreachable(format!(
                        "{}: stream cut: {e}",
                        self.origin
                    )));
                }
                Some(Ok(f)) => {
                    if let Ok(data) = f.into_data() {
                        self.buf.extend(data.iter().filter(|b| **b != b'\r'));
                    }
                    if self.buf.len() > MAX_ANSWER_BYTES {
                        return Err(Failure::Unreachable(format!(
                            "{}: an event over {MAX_ANSWER_BYTES} bytes",
                            self.origin
                        )));
                    }
                }
            }
        }
    }

    /// Takes one complete event out of the buffer: its data, empty for an event without
    /// data (a comment, a keep-alive).
    fn take_event(&mut self) -> Option<String> {
        let end = self.buf.windows(2).position(|w| w == b"\n\n")?;
        let block: Vec<u8> = self.buf.drain(..end + 2).collect();
        let text = String::from_utf8_lossy(&block);
        let data: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(|d| d.strip_prefix(' ').unwrap_or(d))
            .collect();
        Some(data.join("\n"))
    }

    /// The whole body (an answer that is not a stream: an error), within `limit`.
    pub async fn rest(self, limit: Duration) -> Bytes {
        let read = Limited::new(self.body, MAX_ANSWER_BYTES).collect();
        match tokio::time::timeout(limit, read).await {
            Ok(Ok(b)) => b.to_bytes(),
            _ => Bytes::new(),
        }
    }
}

fn head_of(resp: &hyper::Response<hyper::body::Incoming>) -> (u16, String) {
    let content_type = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    (resp.status().as_u16(), content_type)
}

async fn exchange(
    connector: &Connector,
    method: Method,
    url: &url::Url,
    headers: &[(String, String)],
    body: Option<Bytes>,
) -> Result<Answer, Failure> {
    let resp = start(connector, method, url, headers, body).await?;
    let (status, content_type) = head_of(&resp);
    let body = Limited::new(resp.into_body(), MAX_ANSWER_BYTES)
        .collect()
        .await
        .map_err(|e| {
            Failure::Unreachable(format!(
                "{}: answer not read (over {MAX_ANSWER_BYTES} bytes, or cut): {e}",
                origin(url)
            ))
        })?
        .to_bytes();
    Ok(Answer {
        status,
        content_type,
        body,
    })
}

async fn start(
    connector: &Connector,
    method: Method,
    url: &url::Url,
    headers: &[(String, String)],
    body: Option<Bytes>,
) -> Result<hyper::Response<hyper::body::Incoming>, Failure> {
    let target = WebhookUrl::parse(url.as_str()).map_err(Failure::BadUrl)?;
    let mut conn = connector
        .connect(&target)
        .await
        .map_err(|e| Failure::Unreachable(format!("{}: {e}", origin(url))))?;
    conn.ready()
        .await
        .map_err(|e| Failure::Unreachable(format!("{}: connection lost: {e}", origin(url))))?;
    let mut req = Request::builder()
        .method(method)
        .uri(target.path_and_query())
        .header(header::HOST, target.authority())
        .header(header::ACCEPT, "application/json, text/event-stream")
        .header(
            header::USER_AGENT,
            concat!("acp-relay/", env!("CARGO_PKG_VERSION")),
        );
    if body.is_some() {
        req = req.header(header::CONTENT_TYPE, "application/json");
    }
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let req = req
        .body(Full::new(body.unwrap_or_default()))
        .map_err(|e| Failure::BadUrl(format!("cannot build the request: {e}")))?;
    conn.send_request(req)
        .await
        .map_err(|e| Failure::Unreachable(format!("{}: request failed: {e}", origin(url))))
}

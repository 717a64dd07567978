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
        Err(_) => Err(Failure::Unreachable(format!(
            "no answer from {} within {} s",
            origin(url),
            limit.as_secs()
        ))),
    }
}

/// `scheme://host:port` of a URL, for messages (never its path or query, which may hold a
/// key).
pub fn origin(url: &url::Url) -> String {
    url.origin().ascii_serialization()
}

async fn exchange(
    connector: &Connector,
    method: Method,
    url: &url::Url,
    headers: &[(String, String)],
    body: Option<Bytes>,
) -> Result<Answer, Failure> {
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
    let resp = conn
        .send_request(req)
        .await
        .map_err(|e| Failure::Unreachable(format!("{}: request failed: {e}", origin(url))))?;
    let status = resp.status().as_u16();
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

//! A small HTTP/1.1 client for a node's REST API: one connection per request on hyper's
//! client connection (already compiled in for iroh), so the CLI adds no HTTP stack to the
//! binary. Turns every failure into one [`CliError`] line: no node, a 4xx/5xx with its
//! `error_code`, a 401 with how to give the token.

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;

use super::error::{CliError, EXIT_UNAUTHORIZED};
use super::node_url::NodeUrl;

/// How long a connection attempt may take: a loopback or LAN node answers in milliseconds.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Extra time over a request's own long-poll (`recv --wait`) before giving up on the node.
const ANSWER_SLACK: Duration = Duration::from_secs(30);

/// A node's API as the CLI sees it.
#[derive(Debug, Clone)]
pub struct Client {
    /// Where the node is.
    pub node: NodeUrl,
    token: Option<String>,
    /// Where the token came from, for the 401 hint (`--token`, a file, …).
    token_source: Option<String>,
    /// What to do when nothing answers at `node`.
    unreachable_hint: String,
}

/// A JSON answer.
#[derive(Debug)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// The body (JSON; a non-JSON body is an error before this).
    pub body: Value,
}

impl Client {
    /// A client for `node`, sending `token` (from `token_source`) as a bearer token; when
    /// nothing answers there, the error ends with `unreachable_hint`.
    pub fn new(node: NodeUrl, token: Option<(String, String)>, unreachable_hint: String) -> Client {
        let (token, token_source) = match token {
            Some((t, s)) => (Some(t), Some(s)),
            None => (None, None),
        };
        Client {
            node,
            token,
            token_source,
            unreachable_hint,
        }
    }

    async fn connect(&self) -> Result<TcpStream, CliError> {
        let addr = (self.node.host.as_str(), self.node.port);
        let start = || format!("no node at {}", self.node.shown);
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Err(_) => Err(CliError::unreachable(format!(
                "{} (no answer in {} s)",
                start(),
                CONNECT_TIMEOUT.as_secs()
            ))),
            Ok(Err(e)) => {
                let why = match e.kind() {
                    std::io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
                    _ => e.to_string(),
                };
                Err(CliError::unreachable(format!(
                    "{} ({why}); {}",
                    start(),
                    self.unreachable_hint
                )))
            }
            Ok(Ok(s)) => Ok(s),
        }
    }

    /// Sends one request and returns the response head with its body still to read.
    pub async fn open(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        extra: &[(&str, String)],
    ) -> Result<Response<Incoming>, CliError> {
        let stream = self.connect().await?;
        let lost = |e: hyper::Error| {
            CliError::unreachable(format!(
                "the node at {} closed the connection ({e})",
                self.node.shown
            ))
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(lost)?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.node.prefix))
            .header(header::HOST, &self.node.authority)
            .header(
                header::USER_AGENT,
                concat!("acp-relay/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(t) = &self.token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        for (k, v) in extra {
            req = req.header(*k, v);
        }
        let payload = match body {
            Some(v) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Bytes::from(serde_json::to_vec(v).unwrap_or_default())
            }
            None => Bytes::new(),
        };
        let req = req
            .body(Full::new(payload))
            .map_err(|e| CliError::usage(format!("cannot build the request: {e}")))?;
        sender.send_request(req).await.map_err(lost)
    }

    /// A request whose answer is JSON; a 4xx/5xx becomes the error, unless `accept` lists
    /// its status (a queued send's 503 is a success for the person).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        long_poll: Duration,
        accept: &[u16],
    ) -> Result<Answer, CliError> {
        let work = async {
            let resp = self.open(method, path, body, &[]).await?;
            let status = resp.status();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| {
                    CliError::unreachable(format!(
                        "the node at {} broke off its answer ({e})",
                        self.node.shown
                    ))
                })?
                .to_bytes();
            let parsed: Option<Value> = serde_json::from_slice(&bytes).ok();
            let Some(body) = parsed else {
                return Err(CliError::unreachable(format!(
                    "{} answered HTTP {} without JSON: is it an acp-relay node?",
                    self.node.shown,
                    status.as_u16()
                )));
            };
            if status.is_success() || accept.contains(&status.as_u16()) {
                return Ok(Answer {
                    status: status.as_u16(),
                    body,
                });
            }
            Err(self.refusal(status, &body))
        };
        match tokio::time::timeout(long_poll + ANSWER_SLACK, work).await {
            Ok(r) => r,
            Err(_) => Err(CliError::unreachable(format!(
                "the node at {} did not answer in {} s",
                self.node.shown,
                (long_poll + ANSWER_SLACK).as_secs()
            ))),
        }
    }

    /// GET returning JSON.
    pub async fn get(&self, path: &str) -> Result<Value, CliError> {
        Ok(self
            .call(Method::GET, path, None, Duration::ZERO, &[])
            .await?
            .body)
    }

    /// POST a JSON body, returning JSON.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, CliError> {
        Ok(self
            .call(Method::POST, path, Some(body), Duration::ZERO, &[])
            .await?
            .body)
    }

    /// The one line for an error answer: `ERR_CODE: message`, and for a 401 how to give the
    /// token.
    pub fn refusal(&self, status: StatusCode, body: &Value) -> CliError {
        let code = body["error_code"].as_str().unwrap_or("ERR_HTTP");
        let text = body["error"]
            .as_str()
            .or_else(|| body["message"].as_str())
            .unwrap_or("");
        let mut message = format!("{code}: {text} (HTTP {})", status.as_u16());
        if status == StatusCode::UNAUTHORIZED {
            message = match &self.token_source {
                None => format!(
                    "{code}: the node at {} needs its API token: pass --token TOKEN, set ACP_API_TOKEN, use --token-file FILE, or --data-dir DIR of that node (its api_token file)",
                    self.node.shown
                ),
                Some(source) => format!(
                    "{code}: the node at {} refused the API token from {source} (wrong token)",
                    self.node.shown
                ),
            };
            return CliError {
                exit: EXIT_UNAUTHORIZED,
                message,
            };
        }
        CliError::node(message)
    }
}

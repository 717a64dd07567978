//! The WebSocket upgrade of an HTTP request on the API port (`/ws/stream`, `/messages:stream`).
//! The request has passed the one guard (Host, Origin, token) like any other before it gets
//! here. The connection is then taken over with the tokio-tungstenite the peer port already
//! uses (axum's own `ws` feature would build a second version of it).

use std::future::Future;
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};

use super::ApiError;
use crate::node::Node;
use crate::node::error::{ErrorCode, NodeError};

/// The server side of an upgraded API connection.
pub type ApiSocket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// A request asking for a WebSocket: `GET` with `Upgrade: websocket`, `Connection: upgrade`,
/// `Sec-WebSocket-Version: 13` and a key. Anything else on a WebSocket path is
/// `426 ERR_UPGRADE_REQUIRED` (what the reference answers a plain GET of `/ws/stream`).
pub struct WsUpgrade {
    on_upgrade: OnUpgrade,
    accept: HeaderValue,
}

impl<S: Send + Sync> FromRequestParts<S> for WsUpgrade {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let refuse = |why: &str| {
            ApiError(NodeError::new(
                ErrorCode::UpgradeRequired,
                format!(
                    "{} is a WebSocket endpoint: {why} (connect with a WebSocket client, e.g. ws://HOST:PORT{})",
                    parts.uri.path(),
                    parts.uri.path()
                ),
            ))
        };
        if parts.method != Method::GET {
            return Err(refuse("the upgrade must be a GET"));
        }
        if !header_has_token(&parts.headers, header::UPGRADE, "websocket") {
            return Err(refuse("send Upgrade: websocket"));
        }
        if !header_has_token(&parts.headers, header::CONNECTION, "upgrade") {
            return Err(refuse("send Connection: Upgrade"));
        }
        if parts
            .headers
            .get(header::SEC_WEBSOCKET_VERSION)
            .is_none_or(|v| v.as_bytes() != b"13")
        {
            return Err(refuse("only WebSocket version 13 is spoken"));
        }
        let Some(key) = parts.headers.get(header::SEC_WEBSOCKET_KEY) else {
            return Err(refuse("Sec-WebSocket-Key is missing"));
        };
        let accept = HeaderValue::from_str(&derive_accept_key(key.as_bytes()))
            .map_err(|_| refuse("Sec-WebSocket-Key is malformed"))?;
        let Some(on_upgrade) = parts.extensions.remove::<OnUpgrade>() else {
            return Err(refuse("this connection cannot be upgraded (HTTP/1.1 only)"));
        };
        Ok(WsUpgrade { on_upgrade, accept })
    }
}

impl WsUpgrade {
    /// Answers `101 Switching Protocols` and runs `serve` on the socket once the client has
    /// it, as a background task of the node (shutdown waits for it, briefly).
    pub fn serve<F, Fut>(self, node: &Node, config: WebSocketConfig, serve: F) -> Response
    where
        F: FnOnce(ApiSocket) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let WsUpgrade { on_upgrade, accept } = self;
        node.background().spawn(async move {
            match on_upgrade.await {
                Ok(upgraded) => {
                    let socket = WebSocketStream::from_raw_socket(
                        TokioIo::new(upgraded),
                        Role::Server,
                        Some(config),
                    )
                    .await;
                    serve(socket).await;
                }
                Err(e) => tracing::debug!("WebSocket upgrade failed: {e}"),
            }
        });
        let mut resp = StatusCode::SWITCHING_PROTOCOLS.into_response();
        let h = resp.headers_mut();
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
        resp
    }
}

/// Ends a connection the node decided to end: sends `frame`, half-closes the socket, then
/// reads and discards what the client still sends until it closes its side (at most
/// `max_bytes`, for at most 5 s). Closing with bytes unread would make the kernel reset the
/// connection, and the client could lose the last answers and the close frame before
/// reading them.
pub async fn close_politely(mut socket: ApiSocket, frame: CloseFrame, max_bytes: usize) {
    use futures_util::SinkExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    if !matches!(
        tokio::time::timeout_at(deadline, socket.send(Message::Close(Some(frame)))).await,
        Ok(Ok(()))
    ) {
        return;
    }
    let raw = socket.get_mut();
    let _ = tokio::time::timeout_at(deadline, raw.shutdown()).await;
    let mut buf = vec![0u8; 16 * 1024];
    let mut left = max_bytes;
    while left > 0 {
        match tokio::time::timeout_at(deadline, raw.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => left = left.saturating_sub(n),
            _ => break,
        }
    }
}

/// Whether a comma-separated header (any of its values) holds `token`, case-insensitively.
fn header_has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',')
                .any(|part| part.trim().eq_ignore_ascii_case(token))
        })
    })
}

//! The REST/SSE API: an axum router with one file per resource. Handlers parse input, call
//! one node method and map the result; every error is `{"ok":false,"error_code","error"}`
//! with a 4xx status for bad input, never a bare 404 or a panic.
//!
//! The web inbox (`inbox`: the page at `/` and its two assets) is part of this router.
//! The HTTP port also serves other front-ends (MCP at `/mcp`); the server puts them beside
//! this router and [`protect`] puts the one guard ([`guard`]) and body limit ([`body_limit`])
//! around all of them.

pub mod address_file;
pub mod body_limit;
mod card;
mod cursor;
mod discover;
mod extract;
pub mod guard;
mod identity;
mod inbox;
pub mod inlet;
mod messages;
pub mod origin;
mod peers;
mod retention;
mod stream;
mod tasks;
pub mod token_file;
mod webhooks;
mod ws_stream;
mod ws_upgrade;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;
use tokio::net::TcpListener;

use crate::node::Node;
use crate::node::error::{ErrorCode, NodeError};

pub use extract::{ApiError, ApiResult};

/// A JSON response with a status.
pub(crate) fn json_response(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

/// The REST/SSE routes of a node (with the JSON 404 and 405 fallbacks for the whole port).
pub fn router(node: Node) -> Router {
    Router::new()
        .route(
            "/.well-known/acp.json",
            get(card::get_card).patch(card::patch_card),
        )
        .route("/card", get(card::get_card).patch(card::patch_card))
        .route("/status", get(card::status))
        .route("/retention", get(retention::get).patch(retention::patch))
        .route("/link", get(card::link))
        .route("/skills", get(card::skills))
        .route("/skills/query", post(card::query_skills))
        .route("/availability", get(card::availability))
        .route("/availability/heartbeat", post(card::heartbeat))
        .route("/extensions", get(card::extensions))
        .route("/extensions/register", post(card::register_extension))
        .route("/extensions/unregister", post(card::unregister_extension))
        .route("/peers", get(peers::list))
        .route("/peers/connect", post(peers::connect))
        .route("/discover", get(discover::discover))
        .route("/peers/discover", get(discover::peers_discover))
        .route("/connect", post(peers::connect))
        .route("/peers/{id}", get(peers::one).delete(peers::remove))
        // The reference SDKs' `peer()` reads this path; `/peer/verify` (below) wins over it.
        .route("/peer/{id}", get(peers::one))
        .route("/peers/{id}/accept-key", post(identity::accept_key))
        .route("/.well-known/did.json", get(identity::did_document))
        .route("/.well-known/jwks.json", get(identity::jwks))
        .route(
            "/verify/card",
            get(identity::self_verification).post(identity::verify_card),
        )
        .route("/peer/verify", get(identity::peer_verify))
        .route("/identity/delegate", post(identity::delegate))
        .route("/identity/delegation", get(identity::delegation))
        .route(
            "/identity/delegation/verify",
            post(identity::verify_delegation),
        )
        .route("/message:send", post(messages::send))
        .route("/send", post(messages::legacy_send))
        .route("/peer/{id}/send", post(messages::peer_send))
        .route("/reply", post(messages::reply))
        .route("/recv", get(messages::recv))
        .route("/messages", get(messages::list))
        .route("/history", get(messages::history))
        .route("/context/{id}/messages", get(messages::context))
        .route("/wait/{id}", get(messages::wait_reply))
        .route("/offline-queue", get(messages::offline_queue))
        .route("/stream", get(stream::stream))
        .route("/ws/stream", get(ws_stream::ws_stream))
        .route(inlet::PATH, get(inlet::ws).post(inlet::ndjson))
        .route("/tasks", get(tasks::list).post(tasks::create))
        .route("/tasks/create", post(tasks::create))
        .route(
            "/tasks/{spec}",
            get(tasks::get_spec)
                .post(tasks::post_spec)
                .delete(tasks::delete),
        )
        .route(
            "/tasks/{id}/{action}",
            get(tasks::get_action).post(tasks::post_action),
        )
        .route("/webhooks", get(webhooks::list))
        .route("/webhooks/register", post(webhooks::register))
        .route("/webhooks/deregister", post(webhooks::deregister))
        .merge(inbox::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(node)
}

/// Wraps every route of the HTTP port (`app`: REST, SSE, MCP, pages) in, from the outside:
/// panic to JSON 500, the Host/Origin/token guard, and the body limit. Nothing reaches a
/// handler without passing the guard, and the guard runs before any body is read.
pub fn protect(app: Router, node: &Node) -> Router {
    let config = node.config();
    let single = request_body_limit(config);
    let limit =
        body_limit::BodyLimit::new(single).with_larger(inlet::PATH, inlet::ndjson_limit(single));
    app.layer(DefaultBodyLimit::max(limit.max))
        .layer(axum::middleware::from_fn_with_state(
            limit,
            body_limit::check,
        ))
        .layer(axum::middleware::from_fn_with_state(
            guard::Guard::new(config, node.http_port()),
            guard::check,
        ))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_response,
        ))
}

/// The largest request body (and streaming-inlet request): one message at `--max-msg-size`
/// plus room for the rest of a send request.
pub fn request_body_limit(config: &crate::config::Config) -> usize {
    config.max_msg_size.saturating_add(64 * 1024)
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError(NodeError::not_found(format!(
        "no such endpoint: {}",
        uri.path()
    )))
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError(NodeError::new(
        ErrorCode::MethodNotAllowed,
        format!("method {method} is not allowed on {}", uri.path()),
    ))
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    ApiError(NodeError::internal(
        "internal error (handler panicked); the node is still running",
    ))
    .into_response()
}

/// Binds the HTTP listener on the configured host and `port` (0 = any free port).
pub async fn bind(node: &Node, port: u16) -> std::io::Result<TcpListener> {
    let cfg = node.config();
    let listener = TcpListener::bind((cfg.http_host.as_str(), port)).await?;
    node.set_http_port(listener.local_addr()?.port());
    Ok(listener)
}

/// Serves `app` (already [`protect`]ed) until the node shuts down.
pub async fn serve(node: Node, listener: TcpListener, app: Router) -> std::io::Result<()> {
    let shutdown = node.shutdown_token();
    // The peer address reaches the guard (`--a2a-open-loopback` admits loopback callers).
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

//! Endpoints of the protocol that later releases will implement. They answer a clear
//! `ERR_NOT_SUPPORTED` (501) instead of a 404 with no body, so clients can tell "not yet"
//! from "no such thing".

use axum::Router;
use axum::routing::any;

use super::ApiError;
use crate::node::Node;
use crate::node::error::{ErrorCode, NodeError};

/// Paths of the reference that are not implemented yet.
pub const NOT_YET: &[&str] = &[
    "/extensions",
    "/extensions/register",
    "/webhooks/register",
    "/webhooks/deregister",
    "/discover",
    "/peers/discover",
    "/availability/heartbeat",
];

/// The router of not-yet-supported endpoints.
pub fn routes() -> Router<Node> {
    NOT_YET.iter().fold(Router::new(), |router, path| {
        let path_owned = (*path).to_owned();
        router.route(
            path,
            any(move || {
                let p = path_owned.clone();
                async move {
                    ApiError(NodeError::new(
                        ErrorCode::NotSupported,
                        format!(
                            "{p} is not supported yet by acp-relay (planned; see docs/http-api.md)"
                        ),
                    ))
                }
            }),
        )
    })
}

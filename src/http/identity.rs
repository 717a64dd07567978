//! Identity: the DID document, the JWK Set, card verification (this node's, a peer's, any
//! card), delegation entries, and accepting a peer's new key. Thin over the node.

use axum::Json;
use axum::extract::State;
use serde_json::Value;

use super::ApiResult;
use super::extract::{ApiPath, JsonBody, JsonObject, JsonText, Params};
use crate::node::Node;
use crate::node::error::NodeError;

/// `GET /.well-known/did.json`: the W3C DID document of this node.
pub async fn did_document(State(node): State<Node>) -> Json<Value> {
    Json(node.did_document())
}

/// `GET /.well-known/jwks.json`: this node's public key as a JWK Set.
pub async fn jwks(State(node): State<Node>) -> Json<Value> {
    Json(node.jwks())
}

/// `GET /verify/card`: this node's card, signed and checked by itself.
pub async fn self_verification(State(node): State<Node>) -> Json<Value> {
    Json(node.self_verification())
}

/// `POST /verify/card`: checks any card's self-signature (the card, or `{"self": card}`).
pub async fn verify_card(
    State(node): State<Node>,
    JsonText(body): JsonText,
) -> ApiResult<Json<Value>> {
    Ok(Json(node.verify_card_text(&body)?))
}

/// `GET /peer/verify[?peer=…]`: the check of a connected peer's card made at connect.
pub async fn peer_verify(State(node): State<Node>, params: Params) -> ApiResult<Json<Value>> {
    Ok(Json(node.peer_verification(params.str("peer"))?))
}

/// `POST /identity/delegate` `{"delegator_did", "scope"?, "expires_at"?}`.
pub async fn delegate(
    State(node): State<Node>,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<Value>> {
    Ok(Json(node.delegate(&body)?))
}

/// `GET /identity/delegation`: the delegation entries this node holds.
pub async fn delegation(State(node): State<Node>) -> Json<Value> {
    Json(node.delegation_status())
}

/// `POST /identity/delegation/verify` `{"entry": …}`.
pub async fn verify_delegation(
    State(node): State<Node>,
    JsonText(body): JsonText,
) -> ApiResult<Json<Value>> {
    Ok(Json(node.verify_delegation_text(&body)?))
}

/// `POST /peers/{id}/accept-key` `{"did"? | "public_key"? | "jwk"?}`: accept the key a peer
/// presented in place of its pinned one (optionally naming the key checked).
pub async fn accept_key(
    State(node): State<Node>,
    ApiPath(id): ApiPath<String>,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Value>> {
    let Some(obj) = body.as_object() else {
        return Err(NodeError::invalid("request body must be a JSON object").into());
    };
    let named: Vec<&Value> = ["did", "public_key", "jwk"]
        .iter()
        .filter_map(|k| obj.get(*k).filter(|v| !v.is_null()))
        .collect();
    if named.len() > 1 {
        return Err(
            NodeError::invalid("name the expected key once: did, public_key or jwk").into(),
        );
    }
    Ok(Json(node.accept_peer_key(&id, named.first().copied())?))
}

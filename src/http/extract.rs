//! Request parsing that turns every malformed input into a JSON 4xx: bodies (bad JSON, wrong
//! top-level type, too large) and query strings (bad encodings, non-integers).

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::node::error::{ErrorCode, NodeError};

/// A node error as an HTTP response.
#[derive(Debug)]
pub struct ApiError(pub NodeError);

/// Result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;

impl From<NodeError> for ApiError {
    fn from(e: NodeError) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, axum::Json(self.0.to_json())).into_response()
    }
}

/// A JSON request body. Empty bodies read as `{}` (as in the reference).
pub struct JsonBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                NodeError::new(ErrorCode::MsgTooLarge, "request body too large")
            } else {
                NodeError::invalid(format!("cannot read request body: {rejection}"))
            }
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(JsonBody(Value::Object(Default::default())));
        }
        let value: Value = serde_json::from_slice(&bytes)
            .map_err(|e| NodeError::invalid(format!("Invalid JSON in request body: {e}")))?;
        Ok(JsonBody(value))
    }
}

/// A JSON object body: anything else is a 400.
pub struct JsonObject(pub Value);

impl<S: Send + Sync> FromRequest<S> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let JsonBody(value) = JsonBody::from_request(req, state).await?;
        if !value.is_object() {
            return Err(ApiError(NodeError::invalid(format!(
                "request body must be a JSON object, got {}",
                crate::node::message::type_name(&value)
            ))));
        }
        Ok(JsonObject(value))
    }
}

/// Query parameters, decoded; a malformed query string is a 400.
pub struct Params(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        let mut map = HashMap::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            map.insert(decode_component(k)?, decode_component(v)?);
        }
        Ok(Params(map))
    }
}

/// Strict `application/x-www-form-urlencoded` decoding: `+` is a space, `%XX` a byte, and the
/// result must be UTF-8 — a malformed escape or invalid UTF-8 is a 400, not a silent `?`.
fn decode_component(raw: &str) -> Result<String, ApiError> {
    let bad = || {
        ApiError(NodeError::invalid(format!(
            "malformed query string near {raw:?}: bad percent-encoding or not UTF-8"
        )))
    };
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).ok_or_else(bad)?;
                let hex = std::str::from_utf8(hex).map_err(|_| bad())?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| bad())
}

/// A path parameter; a segment that is not valid UTF-8 (or does not fit) is a JSON 400.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(ApiPath(v)),
            Err(rejection) => Err(ApiError(NodeError::invalid(format!(
                "invalid path: {}",
                rejection.body_text()
            )))),
        }
    }
}

impl Params {
    /// A string parameter (empty counts as absent).
    pub fn str(&self, key: &str) -> Option<&str> {
        self.0
            .get(key)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    /// A non-negative integer parameter; `err` is the reference's message for bad values.
    pub fn uint(&self, key: &str, err: &str) -> Result<Option<usize>, ApiError> {
        match self.str(key) {
            None => Ok(None),
            Some(v) => v
                .trim()
                .parse::<usize>()
                .map(Some)
                .map_err(|_| ApiError(NodeError::invalid(err.to_owned()))),
        }
    }

    /// A number of seconds (float), bounded.
    pub fn seconds(&self, key: &str, default: f64, max: f64) -> Result<f64, ApiError> {
        match self.str(key) {
            None => Ok(default),
            Some(v) => match v.trim().parse::<f64>() {
                Ok(s) if s.is_finite() && s >= 0.0 => Ok(s.min(max)),
                _ => Err(ApiError(NodeError::invalid(format!(
                    "{key} must be a non-negative number of seconds"
                )))),
            },
        }
    }
}

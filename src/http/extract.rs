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

/// Reads a whole request body; over the limit is 413 `ERR_MSG_TOO_LARGE`, else a 400.
async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|rejection| {
        ApiError(if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            NodeError::new(ErrorCode::MsgTooLarge, "request body too large")
        } else {
            NodeError::invalid(format!("cannot read request body: {rejection}"))
        })
    })
}

/// A JSON request body. Empty bodies read as `{}` (as in the reference).
pub struct JsonBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = read_body(req, state).await?;
        Ok(JsonBody(parse_json(&bytes)?))
    }
}

/// A request body's JSON: empty (or all-whitespace) text reads as `{}` (as in the reference),
/// anything that is not JSON is a 400. Also what each request of the streaming inlet goes
/// through, so a frame or a line is read exactly as a body would be.
pub(crate) fn parse_json(bytes: &[u8]) -> Result<Value, NodeError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Default::default()));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| NodeError::invalid(format!("Invalid JSON in request body: {e}")))
}

/// A JSON body as its text, for endpoints that check signatures over exactly what was sent
/// (numbers as written). Empty bodies read as `{}`; text that is not UTF-8 is a 400.
pub struct JsonText(pub String);

impl<S: Send + Sync> FromRequest<S> for JsonText {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = read_body(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(JsonText("{}".into()));
        }
        String::from_utf8(bytes.to_vec())
            .map(JsonText)
            .map_err(|_| ApiError(NodeError::invalid("request body is not UTF-8 text")))
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use futures_util::FutureExt;
    use proptest::prelude::*;

    use super::*;
    use crate::test_support::config;

    /// Form-encodes `s` the ways clients do: unreserved bytes literal or escaped, space as
    /// `+` or `%20`, everything else `%XX` in upper or lower case (`style` picks per byte).
    fn encode(s: &str, style: &[bool]) -> String {
        let mut out = String::new();
        for (i, b) in s.bytes().enumerate() {
            let alt = style.get(i % style.len().max(1)).copied().unwrap_or(false);
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' if alt => {
                    out.push(char::from(b));
                }
                b' ' if alt => out.push('+'),
                _ if alt => out.push_str(&format!("%{b:02x}")),
                _ => out.push_str(&format!("%{b:02X}")),
            }
        }
        out
    }

    /// Runs the extractor on `/x?{query}`; `None` when the text is not a valid request URI.
    /// The extractor never awaits anything, so it completes on its first poll.
    fn params(query: &str) -> Option<Result<Params, ApiError>> {
        let req = axum::http::Request::builder()
            .uri(format!("/x?{query}"))
            .body(())
            .ok()?;
        let (mut parts, ()) = req.into_parts();
        Some(
            Params::from_request_parts(&mut parts, &())
                .now_or_never()
                .expect("the query extractor does not wait"),
        )
    }

    proptest! {
        #![proptest_config(config(256))]

        /// Any UTF-8 text, however it is encoded, decodes back to itself.
        #[test]
        fn prop_query_encoded_text_round_trips(
            text in any::<String>(),
            style in proptest::collection::vec(any::<bool>(), 0..8),
        ) {
            let decoded = decode_component(&encode(&text, &style)).map_err(|e| TestCaseError::fail(e.0.message))?;
            prop_assert_eq!(decoded, text);
        }

        /// Arbitrary text never panics; errors are 400s; text with no escapes is kept as is
        /// (`+` aside), and escapes of bytes that are not UTF-8 are refused.
        #[test]
        fn prop_query_arbitrary_text_never_panics(
            raw in prop_oneof![any::<String>(), "[%+a-fA-F0-9gG\u{e9}]{0,16}"],
            bytes in proptest::collection::vec(any::<u8>(), 1..6),
        ) {
            match decode_component(&raw) {
                Ok(s) if !raw.contains('%') => prop_assert_eq!(s, raw.replace('+', " ")),
                Ok(_) => {}
                Err(ApiError(e)) => prop_assert_eq!(e.code, ErrorCode::InvalidRequest),
            }
            let escaped: String = bytes.iter().map(|b| format!("%{b:02X}")).collect();
            let want = String::from_utf8(bytes).ok();
            prop_assert_eq!(decode_component(&escaped).ok(), want);
        }

        /// A query string of encoded pairs decodes to exactly those pairs.
        #[test]
        fn prop_query_params_round_trip(
            pairs in proptest::collection::btree_map(".{0,8}", ".{0,8}", 0..6),
            style in proptest::collection::vec(any::<bool>(), 0..8),
        ) {
            let query = pairs
                .iter()
                .map(|(k, v)| format!("{}={}", encode(k, &style), encode(v, &style)))
                .collect::<Vec<_>>()
                .join("&");
            let Params(map) = params(&query)
                .expect("encoded pairs make a valid URI")
                .map_err(|e| TestCaseError::fail(e.0.message))?;
            prop_assert_eq!(map.into_iter().collect::<BTreeMap<_, _>>(), pairs);
        }

        /// Arbitrary query strings (any characters a URI allows) never panic, fail only with
        /// a 400, and the typed getters never panic on whatever was decoded.
        #[test]
        fn prop_query_arbitrary_query_never_panics(
            query in "[A-Za-z0-9%&=+._~!$'()*,;:@/?-]{0,48}",
            max in 0.0f64..1e6,
        ) {
            match params(&query) {
                None => {}
                Some(Err(ApiError(e))) => prop_assert_eq!(e.code.http_status(), 400),
                Some(Ok(p)) => {
                    for key in p.0.keys() {
                        let _ = p.str(key);
                        if let Err(ApiError(e)) = p.uint(key, "bad") {
                            prop_assert_eq!(e.code.http_status(), 400);
                        }
                        match p.seconds(key, 1.0, max) {
                            Ok(s) => prop_assert!(s.is_finite() && s >= 0.0 && (s <= max || s == 1.0)),
                            Err(ApiError(e)) => prop_assert_eq!(e.code.http_status(), 400),
                        }
                    }
                }
            }
        }
    }
}

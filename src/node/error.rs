//! One error type for every node operation. Each variant has a stable `ERR_*` code (the
//! reference's codes where it has one) and an HTTP status, so the REST API and the MCP tools
//! report the same failure the same way.

use serde_json::Value;

/// A failed node operation: a stable code, a message a human (or an LLM) can act on, and
/// optional extra fields merged into the JSON error body.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code}: {message}")]
pub struct NodeError {
    /// Stable machine-readable code, e.g. `ERR_INVALID_REQUEST`.
    pub code: ErrorCode,
    /// Human-readable explanation with the next step where there is one.
    pub message: String,
    /// The client's `message_id` when the failed request carried one (reference field).
    pub failed_message_id: Option<String>,
    /// Extra fields for the error body (e.g. `connected_peers` for an ambiguous send).
    pub extra: Vec<(String, Value)>,
}

/// Every error code the node reports. The string forms are the wire contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// Malformed or semantically invalid input.
    InvalidRequest,
    /// Unknown task, peer, message or route.
    NotFound,
    /// No peer to send to (REST also answers it for a known offline peer, with `queued: true`:
    /// the reference's contract).
    NotConnected,
    /// Several peers connected and the request did not say which one.
    AmbiguousPeer,
    /// Body or message above the configured size limit.
    MsgTooLarge,
    /// A synchronous wait ran out of time.
    Timeout,
    /// The peer is still being dialled.
    PeerConnecting,
    /// HMAC or identity signature check failed.
    InvalidSignature,
    /// A timestamp outside the replay window.
    ReplayDetected,
    /// A task transition the state machine does not allow.
    InvalidTransition,
    /// The offline queue for this peer is full.
    QueueFull,
    /// This node already holds `--max-peers` connections. A code of its own rather than
    /// `ERR_QUEUE_FULL` (same status, but a client reading that code would conclude a message
    /// was not queued, and the MCP hint for it speaks of an absent peer); 429 because the
    /// request is fine and may succeed later, once a peer leaves or the cap is raised.
    TooManyPeers,
    /// A peer presented another key than the one pinned for it (or than its link names);
    /// refused until the user accepts the new key. 409: the request is well-formed, but it
    /// conflicts with what this node knows about the peer.
    KeyMismatch,
    /// The endpoint exists in the protocol but this node does not implement it yet.
    NotSupported,
    /// The HTTP method is not allowed on this path.
    MethodNotAllowed,
    /// The node is shutting down.
    ShuttingDown,
    /// The HTTP API token is missing or wrong.
    Unauthorized,
    /// The `Host` header names a host this node does not answer for (DNS rebinding).
    HostNotAllowed,
    /// The request comes from a web page whose origin is not allowed (cross-site request).
    OriginNotAllowed,
    /// A JSON endpoint got a body that does not say it is JSON.
    UnsupportedMediaType,
    /// A WebSocket endpoint got a request that is not a WebSocket upgrade. 426, as the
    /// reference answers a plain GET of `/ws/stream`.
    UpgradeRequired,
    /// The store cannot take the write: the disk holding the data dir is full, or the store
    /// is at `--max-store-mb`. 507 (Insufficient Storage) rather than 500: the node is not
    /// broken and the request may succeed later, once space returns (it resumes by itself).
    StorageFull,
    /// A bug or an I/O failure inside the node.
    Internal,
}

impl ErrorCode {
    /// The wire string of the code.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "ERR_INVALID_REQUEST",
            ErrorCode::NotFound => "ERR_NOT_FOUND",
            ErrorCode::NotConnected => "ERR_NOT_CONNECTED",
            ErrorCode::AmbiguousPeer => "ERR_AMBIGUOUS_PEER",
            ErrorCode::MsgTooLarge => "ERR_MSG_TOO_LARGE",
            ErrorCode::Timeout => "ERR_TIMEOUT",
            ErrorCode::PeerConnecting => "ERR_PEER_CONNECTING",
            ErrorCode::InvalidSignature => "ERR_INVALID_SIGNATURE",
            ErrorCode::ReplayDetected => "ERR_REPLAY_DETECTED",
            // The reference (and its spec) report illegal transitions as invalid requests.
            ErrorCode::InvalidTransition => "ERR_INVALID_REQUEST",
            ErrorCode::QueueFull => "ERR_QUEUE_FULL",
            ErrorCode::TooManyPeers => "ERR_TOO_MANY_PEERS",
            ErrorCode::KeyMismatch => "ERR_KEY_MISMATCH",
            ErrorCode::NotSupported => "ERR_NOT_SUPPORTED",
            ErrorCode::MethodNotAllowed => "ERR_METHOD_NOT_ALLOWED",
            ErrorCode::ShuttingDown => "ERR_SHUTTING_DOWN",
            ErrorCode::Unauthorized => "ERR_UNAUTHORIZED",
            ErrorCode::HostNotAllowed => "ERR_HOST_NOT_ALLOWED",
            ErrorCode::OriginNotAllowed => "ERR_ORIGIN_NOT_ALLOWED",
            ErrorCode::UnsupportedMediaType => "ERR_UNSUPPORTED_MEDIA_TYPE",
            ErrorCode::UpgradeRequired => "ERR_UPGRADE_REQUIRED",
            ErrorCode::StorageFull => "ERR_STORAGE_FULL",
            ErrorCode::Internal => "ERR_INTERNAL",
        }
    }

    /// The HTTP status the REST API answers with.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::InvalidRequest
            | ErrorCode::AmbiguousPeer
            | ErrorCode::InvalidSignature
            | ErrorCode::ReplayDetected => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::HostNotAllowed | ErrorCode::OriginNotAllowed => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::Timeout => 408,
            ErrorCode::InvalidTransition | ErrorCode::KeyMismatch => 409,
            ErrorCode::MsgTooLarge => 413,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::UpgradeRequired => 426,
            ErrorCode::QueueFull | ErrorCode::TooManyPeers => 429,
            ErrorCode::NotSupported => 501,
            ErrorCode::NotConnected | ErrorCode::PeerConnecting | ErrorCode::ShuttingDown => 503,
            ErrorCode::StorageFull => 507,
            ErrorCode::Internal => 500,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl NodeError {
    /// An error with a code and message and no extra fields.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        NodeError {
            code,
            message: message.into(),
            failed_message_id: None,
            extra: Vec::new(),
        }
    }

    /// Shorthand for the most common error: bad input.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message)
    }

    /// Shorthand for an unknown resource.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    /// Shorthand for an internal failure (store I/O, a closed channel).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }

    /// Attaches the request's message id, echoed as `failed_message_id`.
    pub fn with_message_id(mut self, id: Option<&str>) -> Self {
        self.failed_message_id = id.map(str::to_owned);
        self
    }

    /// Adds one extra field to the error body.
    pub fn with_field(mut self, key: &str, value: Value) -> Self {
        self.extra.retain(|(k, _)| k != key);
        self.extra.push((key.to_owned(), value));
        self
    }

    /// The JSON error body of the reference: `{"ok":false,"error_code","error",…}`.
    pub fn to_json(&self) -> Value {
        let mut body = serde_json::Map::new();
        body.insert("ok".into(), Value::Bool(false));
        body.insert("error_code".into(), Value::from(self.code.as_str()));
        body.insert("error".into(), Value::from(self.message.clone()));
        // `message` duplicates `error` for clients that follow the compat suite's naming.
        body.insert("message".into(), Value::from(self.message.clone()));
        if let Some(id) = &self.failed_message_id {
            body.insert("failed_message_id".into(), Value::from(id.clone()));
        }
        for (k, v) in &self.extra {
            body.insert(k.clone(), v.clone());
        }
        Value::Object(body)
    }
}

impl From<rusqlite::Error> for NodeError {
    fn from(err: rusqlite::Error) -> Self {
        NodeError::internal(format!("store: {err}"))
    }
}

/// Result of a node operation.
pub type NodeResult<T> = Result<T, NodeError>;

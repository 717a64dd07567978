//! The peer protocol: links, frames, HMAC signing and the WebSocket connections themselves.

pub mod canonical;
pub mod frame;
pub mod link;
pub mod peer;
pub mod sign;

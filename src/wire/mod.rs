//! The peer protocol: links, frames, signing (HMAC and Ed25519) and the WebSocket
//! connections themselves.

pub mod canonical;
pub mod did;
pub mod frame;
pub mod identity;
pub mod link;
pub mod peer;
pub mod quic;
pub mod relay_url;
pub mod sign;
pub mod ws;

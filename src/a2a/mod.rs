//! The A2A bridge: acp-relay speaks Google's Agent2Agent protocol (A2A 1.0, and the 0.3
//! wire forms that LangGraph and other older agents still serve) on the side, so an MCP
//! host reaches A2A agents and A2A clients reach the user's agent.
//!
//! - [`types`] — the wire types, written from `specification/a2a.proto` (v1.0.1) and the
//!   0.3 JSON schema. Not the official Rust crates: they pull gRPC, a second reqwest and a
//!   C-built TLS library for a 1.0-only API; a few hundred lines of serde read both
//!   versions.
//! - [`server`] — the A2A server: the card, `/a2a/jsonrpc`, `/a2a/rest`; each caller a peer.
//!
//! The node stays unaware of A2A beyond a peer kind ([`crate::node::peers::PeerKind::A2a`]):
//! an A2A peer is a peer whose "connection" is a bridge task attached with
//! `Node::attach_connection(…, ConnectionType::A2a)`. It turns the ACP frames the node
//! writes to that peer into A2A calls or answers, and turns A2A input into ACP frames fed to
//! `Node::on_frame`, the path every wire session uses. docs/a2a.md has the mapping.

pub mod server;
pub mod types;

//! # acp-relay
//!
//! One binary that gives any MCP-capable LLM host agent-to-agent messaging: an ACP relay
//! node, wire-compatible with the Python reference relay, with two thin front-ends over it:
//! MCP tools (stdio and Streamable HTTP) and the reference's REST/SSE API.
//!
//! Layout:
//! - [`node`] — the relay node: the [`node::Node`] handle owns every rule and all state
//!   (messages, tasks, peers, offline queue, event log) and persists it in SQLite; its
//!   `identity` file holds the rules of who is who (peer verification, key pinning,
//!   delegation).
//!   Its `session` runs one peer connection (re-send, attach, read, write, confirm, ping),
//!   whatever transport carries it.
//! - [`wire`] — the peer protocol: `acp://` links, frames, HMAC, the transports (`peer`:
//!   TCP accept and dial, levels 1 → 2 → 3; `ws`: the WebSocket framing every transport
//!   uses; `quic`: iroh, for peers behind NAT; `relay_url`), and Ed25519 identity: `identity` (keys and every signature), `canonical` (the JSON text
//!   signatures cover, as Python's `json.dumps` prints it), `did` (did:acp, did:key, JWK).
//! - [`http`] — the axum REST/SSE API, one file per resource (`identity` for did.json,
//!   jwks.json, card and delegation checks; `inbox` for the web page at `/`, whose three
//!   files are embedded from `assets/inbox/`; `ws_stream` and `inlet` for the two WebSockets,
//!   the event stream and the streaming send inlet); thin over the node. Its
//!   `guard` (Host, Origin, API token, content type) and `body_limit` wrap every route of
//!   the HTTP port, MCP's included.
//! - [`a2a`] — the A2A bridge: wire types (1.0 and 0.3), the A2A server routes
//!   (`/.well-known/agent-card.json`, `/a2a/jsonrpc`, `/a2a/rest`) and the client.
//! - [`mcp`] — the rmcp server: 14 tools, resources, notifications, MCP tasks (delegated
//!   work as task handles the client polls) and input requests; on stdio and at `/mcp`.
//! - [`server`] — a node with its listeners, as started by the CLI and the tests.
//! - [`cli`] — the client subcommands (`link`, `send`, `recv`, `watch`, `peers`, `tasks`, …)
//!   that talk to a running node's REST API.
//! - [`config`] — flags, `ACP_*` environment variables and defaults.
//! - [`lan`] — LAN discovery over mDNS (`--lan-discovery`, off by default): announces the
//!   node, lists the nodes that announce themselves (`/discover`, `acp_peers`).
//! - [`relay`] — `acp-relay relay`, the relay server for nodes behind NAT (iroh-relay).
//! - [`ports`] — the ports a node that had to move remembers, so its link stays the same.
//! - [`private_file`] — how files only their owner may read are written (token, key,
//!   credentials, backups).
//! - [`store_tools`] — `acp-relay backup | export | restore`: a consistent copy of a running
//!   node's store, its messages and tasks as JSON lines or Markdown, a backup put back into
//!   an empty data dir with every id kept.
//! - [`install`] — `acp-relay install|uninstall --host …`: the entry in each MCP host's
//!   config file (host table and paths, JSON edit, TOML edit, the command).

#![recursion_limit = "256"]

pub mod a2a;
pub mod cli;
pub mod config;
pub mod http;
pub mod install;
pub mod lan;
pub mod mcp;
pub mod node;
pub mod ports;
pub mod private_file;
pub mod relay;
pub mod server;
pub mod store_tools;
pub mod wire;

#[cfg(test)]
mod test_support;

/// The crate version (Cargo.toml), as `/status`, the card and `--version` report it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The commit this binary was built from (12 hex digits, or `unknown` for a build outside a
/// git checkout without `ACP_RELAY_COMMIT`; see `build.rs`), so a report names the exact code.
pub const COMMIT: &str = env!("ACP_RELAY_COMMIT");

/// `--version`'s text after the program name: `0.1.0 (commit 0123456789ab)`.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("ACP_RELAY_COMMIT"),
    ")"
);

pub use config::Config;
pub use node::Node;
pub use server::Server;

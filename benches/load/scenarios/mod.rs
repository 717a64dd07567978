//! The measured phases besides the send levels (those are in `generator` and `run`).

pub mod e2e;
pub mod inlet;
pub mod mcp;
pub mod peers;
pub mod store;

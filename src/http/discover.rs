//! LAN discovery: `GET /discover` (the reference's mDNS list) and `GET /peers/discover` (the
//! reference port-scans the LAN there; acp-relay never scans a network and answers from
//! mDNS alone). Both list what `--lan-discovery` found (`crate::lan`).

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::node::Node;

/// What a node without `--lan-discovery` says about it.
const OFF_NOTE: &str = "LAN discovery is off: start the node with --lan-discovery (it announces this node's link to the whole LAN over mDNS, and lists the nodes that do the same)";
/// Why `/peers/discover` does not do what the reference's does.
const NO_SCAN_NOTE: &str = "acp-relay never scans a network: these are the nodes that announced themselves over mDNS (--lan-discovery); subnet, ports and workers are ignored";

/// `GET /discover`: `{"lan_peers": […], "count", "mdns_active", "note"}`.
pub async fn discover(State(node): State<Node>) -> Json<Value> {
    let peers = node.lan_peers();
    let active = peers.is_some();
    let peers = peers.unwrap_or_default();
    Json(json!({
        "lan_peers": peers,
        "count": peers.len(),
        "mdns_active": active,
        "note": if active { Value::Null } else { json!(OFF_NOTE) },
    }))
}

/// `GET /peers/discover`: the reference's scan result shape, filled from mDNS.
pub async fn peers_discover(State(node): State<Node>) -> Json<Value> {
    let peers = node.lan_peers();
    let active = peers.is_some();
    let peers = peers.unwrap_or_default();
    let found: Vec<Value> = peers
        .iter()
        .map(|p| {
            json!({
                "host": p.ip,
                "ws_port": p.ws_port,
                "http_port": null,
                "name": p.name,
                "did": p.did,
                "link": p.link,
                "agent_card": null,
                "latency_ms": null,
                "source": "mdns",
            })
        })
        .collect();
    Json(json!({
        "found": found,
        "total_found": found.len(),
        "mdns_peers": peers,
        "mdns_active": active,
        "scanned_hosts": 0,
        "scanned_ports": 0,
        "subnet": null,
        "duration_ms": 0,
        "error": null,
        "note": if active { NO_SCAN_NOTE } else { OFF_NOTE },
    }))
}

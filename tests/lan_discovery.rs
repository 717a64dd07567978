//! LAN discovery over mDNS (`--lan-discovery`) between real nodes on one LAN: two network
//! namespaces on one bridge (203.0.113.0/24, built and deleted by the test; nothing is
//! connected to the machine's own network, so no multicast leaves it). Needs root (CI runs
//! as root and must run it); elsewhere it says "skipped: needs root".
//!
//! - two nodes with `--lan-discovery` find each other (`GET /discover`, `/peers/discover`),
//!   and the link found is one that connects: a message goes through it;
//! - a node without the flag neither announces itself nor lists anyone, and says how to
//!   turn it on; it is never found;
//! - a node that stops gracefully says goodbye and drops off the other's list.

#[path = "nat/net.rs"]
mod net;
#[path = "nat/node.rs"]
mod node;

use net::Net;
use node::{HTTP_PORT, Node, PEER_PORT, Proc};
use serde_json::{Value, json};

/// A node named `name` at 203.0.113.`host` on the LAN, with `extra` flags.
fn start(net: &mut Net, dir: &std::path::Path, name: &str, host: u8, extra: &[&str]) -> Node {
    let ns = net.internet_host(name, host);
    let data = dir.join(name);
    let log = dir.join(format!("{name}.log"));
    let (port, http_port) = (PEER_PORT.to_string(), HTTP_PORT.to_string());
    let advertise = format!("{}.{host}", net::WAN_PREFIX);
    let mut args = vec![
        "serve",
        "--name",
        name,
        "--port",
        &port,
        "--http-port",
        &http_port,
        "--advertise-host",
        &advertise,
        "--data-dir",
        data.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let node = Node {
        ns,
        name: name.to_owned(),
        proc: Some(Proc::start(&net.ns(name), &args, log)),
    };
    node.wait(30, "node up", |n| n.get("/status").0 == 200);
    node
}

/// `/discover`'s entries.
fn found(node: &Node) -> Vec<Value> {
    let (status, body) = node.get("/discover");
    assert_eq!(status, 200, "{body}");
    body["lan_peers"].as_array().cloned().unwrap_or_default()
}

fn named<'a>(list: &'a [Value], name: &str) -> Option<&'a Value> {
    list.iter().find(|p| p["name"] == name)
}

#[test]
fn nodes_on_one_lan_find_each_other_and_connect_by_what_they_found() {
    if !net::available("lan_discovery") {
        return;
    }
    let mut net = Net::new("lan");
    let dir = tempfile::tempdir().unwrap();
    let alice = start(&mut net, dir.path(), "alice", 1, &["--lan-discovery"]);
    let mut bob = start(&mut net, dir.path(), "bob", 2, &["--lan-discovery"]);
    let carol = start(&mut net, dir.path(), "carol", 3, &[]);

    // Each finds the other, at the address it announced from, with its did in the link.
    let mut bob_seen = Value::Null;
    alice.wait(30, "bob on the LAN", |n| {
        named(&found(n), "bob")
            .map(|b| bob_seen = b.clone())
            .is_some()
    });
    bob.wait(30, "alice on the LAN", |n| {
        named(&found(n), "alice").is_some()
    });
    let bob_did = bob.get("/status").1["did"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert_eq!(bob_seen["ip"], "203.0.113.2", "{bob_seen}");
    assert_eq!(bob_seen["ws_port"], PEER_PORT, "{bob_seen}");
    assert_eq!(bob_seen["source"], "mdns");
    let link = bob_seen["link"].as_str().unwrap().to_owned();
    assert!(link.starts_with("acp://203.0.113.2:7801/tok_"), "{link}");
    if !bob_did.is_empty() {
        assert_eq!(bob_seen["did"], bob_did.as_str(), "{bob_seen}");
    }
    // Nobody lists itself, and carol (no flag) is never announced.
    assert!(named(&found(&alice), "alice").is_none());
    assert!(named(&found(&alice), "carol").is_none());

    // The same through the reference's scan path, which says it never scans.
    let (status, scan) = alice.get("/peers/discover");
    assert_eq!(status, 200, "{scan}");
    assert_eq!(scan["scanned_hosts"], 0);
    assert!(
        scan["note"].as_str().unwrap().contains("never scans"),
        "{scan}"
    );
    assert!(
        scan["found"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["link"] == link.as_str()),
        "{scan}"
    );

    // Carol lists nothing and says how to turn it on.
    let (status, off) = carol.get("/discover");
    assert_eq!(status, 200);
    assert_eq!(off["mdns_active"], false, "{off}");
    assert_eq!(off["count"], 0);
    assert!(
        off["note"].as_str().unwrap().contains("--lan-discovery"),
        "{off}"
    );

    // The link found connects, and a message goes through.
    let peer = alice.connect(&link, 30);
    let (status, r) = alice.post(
        "/message:send",
        json!({"peer_id": peer, "role": "user", "text": "found you on the LAN", "context_id": "ctx_lan"}),
    );
    assert_eq!(status, 200, "{r}");
    bob.wait(30, "alice's message", |n| {
        n.has_message("ctx_lan", "found you on the LAN")
    });

    // Bob leaves gracefully: his goodbye takes him off alice's list.
    bob.stop();
    alice.wait(30, "bob's goodbye", |n| named(&found(n), "bob").is_none());
}

//! Levels 2 and 3 behind real NATs: nodes in Linux network namespaces behind nftables NAT
//! routers that, like home routers, drop unsolicited inbound traffic, with an `acp-relay
//! relay` on a simulated internet (see `nat/net.rs`). Each test builds its own network,
//! runs real `acp-relay` processes in it, talks to their REST APIs from inside, and deletes
//! it all. Needs root (CI runs as root and must run these); elsewhere they say
//! "skipped: needs root".
//!
//! - cone NATs on both sides: the nodes connect hole punched (`dcutr_direct`);
//! - one side symmetric: the connection stays on the relay (`relay`);
//! - a node on the internet: reached directly (`p2p_direct`);
//! - the relay down: a clear error, and the connection comes up when it returns;
//! - in each: messages and a task both ways, and the offline queue across a restart.

#[path = "nat/net.rs"]
mod net;
#[path = "nat/node.rs"]
mod node;

use std::path::PathBuf;

use net::{Nat, Net};
use node::{HTTP_PORT, Node, PEER_PORT, Proc, wait_for_log};
use serde_json::json;

/// The relay's place on the simulated internet.
const RELAY_IP: &str = "203.0.113.10";
const RELAY_HTTPS: u16 = 8443;

/// One test's network, relay certificate and processes.
struct Lab {
    net: Net,
    dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
}

impl Lab {
    /// The internet with the relay's host on it (the relay itself is started separately).
    fn new(tag: &str) -> Lab {
        let mut net = Net::new(tag);
        net.internet_host("relay", 10);
        let dir = tempfile::tempdir().unwrap();
        let made = rcgen::generate_simple_self_signed(vec![RELAY_IP.to_owned()]).unwrap();
        let cert = dir.path().join("relay.pem");
        let key = dir.path().join("relay.key");
        std::fs::write(&cert, made.cert.pem()).unwrap();
        std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
        Lab {
            net,
            dir,
            cert,
            key,
        }
    }

    fn relay(&mut self) -> Proc {
        let ns = self.net.ns("relay");
        let https = format!("{RELAY_IP}:{RELAY_HTTPS}");
        let quic = format!("{RELAY_IP}:7842");
        let http = format!("{RELAY_IP}:8080");
        let log = self.dir.path().join("relay.log");
        let p = Proc::start(
            &ns,
            &[
                "relay",
                "--https-bind",
                &https,
                "--quic-bind",
                &quic,
                "--http-bind",
                &http,
                "--tls-cert",
                self.cert.to_str().unwrap(),
                "--tls-key",
                self.key.to_str().unwrap(),
            ],
            log,
        );
        wait_for_log(&p.log, "relay up", 30);
        p
    }

    /// A node named `name` in namespace `ns`, advertising `host`, using the relay.
    fn node(&self, ns: &str, name: &str, host: &str) -> Node {
        let data = self.dir.path().join(name);
        let relay = format!("https://{RELAY_IP}:{RELAY_HTTPS}");
        let log = self.dir.path().join(format!("{name}.log"));
        let port = PEER_PORT.to_string();
        let http_port = HTTP_PORT.to_string();
        let proc = Proc::start(
            ns,
            &[
                "serve",
                "--name",
                name,
                "--port",
                &port,
                "--http-port",
                &http_port,
                "--advertise-host",
                host,
                "--data-dir",
                data.to_str().unwrap(),
                "--relay",
                &relay,
                "--relay-ca",
                self.cert.to_str().unwrap(),
            ],
            log,
        );
        let node = Node {
            ns: ns.to_owned(),
            name: name.to_owned(),
            proc: Some(proc),
        };
        node.wait(30, "node up", |n| n.get("/status").0 == 200);
        node
    }
}

impl Node {
    /// Its link, once it carries the relay hint (the endpoint joined the relay).
    fn link(&self) -> String {
        let mut link = String::new();
        self.wait(30, "a link with a relay hint", |n| {
            link = n.get("/link").1["link"].as_str().unwrap_or("").to_owned();
            link.contains("relay=")
        });
        link
    }
}

/// Messages and a task both ways between two connected nodes.
fn exchange(a: &Node, b: &Node, context: &str) {
    a.send(&format!("hello from {}", a.name), context);
    b.wait(30, "the message from a", |n| {
        n.has_message(context, &format!("hello from {}", a.name))
    });
    b.send(&format!("hello from {}", b.name), context);
    a.wait(30, "the reply from b", |n| {
        n.has_message(context, &format!("hello from {}", b.name))
    });
    for (from, to) in [(a, b), (b, a)] {
        let (status, task) = from.post(
            "/tasks",
            json!({"role": "user", "text": format!("task from {}", from.name), "delegate": true}),
        );
        assert_eq!(status, 201, "{task}");
        let id = task["id"].as_str().unwrap().to_owned();
        to.wait(30, "the delegated task", |n| {
            n.get(&format!("/tasks/{id}")).0 == 200
        });
        let (status, r) = to.post(
            &format!("/tasks/{id}:update"),
            json!({"status": "completed", "artifact": {"parts": [{"type": "text", "content": "done"}]}}),
        );
        assert_eq!(status, 200, "{r}");
        from.wait(30, "the completed task", |n| {
            n.get(&format!("/tasks/{id}")).1["status"] == "completed"
        });
    }
}

/// The offline queue across a restart: `a` stops, `b` queues a message for it, `a` comes
/// back (new UDP port, same key and data) and gets it.
fn offline_queue_across_restart(lab: &Lab, a: &mut Node, host: &str, b: &Node, b_peer: &str) {
    a.stop();
    b.wait(90, "a seen as gone", |n| {
        n.peer(b_peer)["connected"] == false
    });
    let (status, r) = b.post(
        "/message:send",
        json!({"role": "user", "text": "kept for you", "context_id": "offline"}),
    );
    // The reference's answer for an offline peer: 503, and the message kept in the queue.
    assert_eq!((status, &r["queued"]), (503, &json!(true)), "{r}");
    let ns = a.ns.clone();
    let name = a.name.clone();
    *a = lab.node(&ns, &name, host);
    a.wait(90, "the queued message after the restart", |n| {
        n.has_message("offline", "kept for you")
    });
}

/// Two home networks (A always behind a cone NAT, B behind `b_nat`), each with a node.
fn two_homes(lab: &mut Lab, b_nat: Nat) -> (Node, Node) {
    let a_ns = lab.net.home("a", 1, 1, Nat::Cone);
    let b_ns = lab.net.home("b", 2, 2, b_nat);
    let a = lab.node(&a_ns, "alice", A_HOST);
    let b = lab.node(&b_ns, "bob", "100.64.2.2");
    (a, b)
}

/// Alice's address on her LAN.
const A_HOST: &str = "100.64.1.2";

fn connection_type(node: &Node, peer: &str) -> String {
    node.peer(peer)["connection_type"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

#[test]
fn behind_two_cone_nats_the_nodes_punch_a_hole() {
    if !net::available("behind_two_cone_nats_the_nodes_punch_a_hole") {
        return;
    }
    let mut lab = Lab::new("c");
    let _relay = lab.relay();
    let (mut a, b) = two_homes(&mut lab, Nat::Cone);
    let peer = b.connect(&a.link(), 60);
    b.wait(60, "a hole-punched path", |n| {
        connection_type(n, &peer) == "dcutr_direct"
    });
    let (_, status) = b.get("/status");
    assert_eq!(status["connection_type"], "dcutr_direct", "{status}");
    exchange(&a, &b, "cone");
    offline_queue_across_restart(&lab, &mut a, A_HOST, &b, &peer);
}

#[test]
fn behind_a_symmetric_nat_the_connection_stays_relayed() {
    if !net::available("behind_a_symmetric_nat_the_connection_stays_relayed") {
        return;
    }
    let mut lab = Lab::new("s");
    let _relay = lab.relay();
    let (mut a, b) = two_homes(&mut lab, Nat::Symmetric);
    let peer = b.connect(&a.link(), 60);
    assert_eq!(connection_type(&b, &peer), "relay", "{}", b.peer(&peer));
    exchange(&a, &b, "symmetric");
    // Punching had every chance meanwhile; a symmetric NAT defeats it.
    assert_eq!(connection_type(&b, &peer), "relay", "{}", b.peer(&peer));
    offline_queue_across_restart(&lab, &mut a, A_HOST, &b, &peer);
}

#[test]
fn a_node_on_the_internet_is_reached_directly() {
    if !net::available("a_node_on_the_internet_is_reached_directly") {
        return;
    }
    let mut lab = Lab::new("p");
    let _relay = lab.relay();
    let public_ns = lab.net.internet_host("pub", 20);
    let home_ns = lab.net.home("a", 1, 1, Nat::Cone);
    let mut public = lab.node(&public_ns, "server", "203.0.113.20");
    let home = lab.node(&home_ns, "laptop", "100.64.1.2");
    let peer = home.connect(&public.link(), 30);
    assert_eq!(
        connection_type(&home, &peer),
        "p2p_direct",
        "{}",
        home.peer(&peer)
    );
    exchange(&home, &public, "public");
    offline_queue_across_restart(&lab, &mut public, "203.0.113.20", &home, &peer);
}

#[test]
fn with_the_relay_down_the_error_is_clear_and_the_connection_comes_up_when_it_returns() {
    if !net::available("with_the_relay_down_the_error_is_clear_and_the_connection_comes_up") {
        return;
    }
    let mut lab = Lab::new("d");
    let relay = lab.relay();
    let (a, b) = two_homes(&mut lab, Nat::Cone);
    let link = a.link();
    relay.stop();
    let (status, r) = b.post("/peers/connect", json!({"link": link}));
    assert_eq!(status, 200, "{r}");
    let peer = r["peer_id"].as_str().unwrap().to_owned();
    b.wait(60, "a dial error naming both routes", |n| {
        let e = n.peer(&peer)["last_error"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        e.contains("not reachable directly") && e.contains(RELAY_IP)
    });
    assert_eq!(b.peer(&peer)["connected"], false);
    let _relay = lab.relay();
    b.wait(120, "the connection once the relay is back", |n| {
        n.peer(&peer)["connected"] == true
    });
    exchange(&a, &b, "relay-back");
}

//! A simulated internet in Linux network namespaces, made and removed by the test: a bridge
//! holding the "internet" (203.0.113.0/24, a documentation range), home routers that NAT a
//! LAN (100.64.0.0/10, shared address space) onto it and drop unsolicited inbound traffic,
//! and hosts on those LANs or directly on the internet. Nothing is connected to the
//! machine's own network namespace, so no packet can leave.

#![allow(dead_code)] // the LAN discovery test uses only part of it

use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

/// How a router maps its LAN onto the internet.
#[derive(Clone, Copy, Debug)]
pub enum Nat {
    /// Linux `masquerade`: one public port per LAN socket, whatever the destination
    /// (endpoint-independent mapping), which hole punching can use.
    Cone,
    /// `masquerade random`: a new public port per destination, which defeats punching.
    Symmetric,
}

/// Runs a command, panicking with its output when it fails.
pub fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether this machine can build the network (root, `ip`, `nft`). In CI (`CI=true`, run
/// as root) it must: there a missing piece fails the test instead of skipping it.
pub fn available(test: &str) -> bool {
    let root = unsafe { libc::geteuid() } == 0;
    let tools = ["ip", "nft"].iter().all(|t| {
        Command::new(t)
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if root && tools {
        return true;
    }
    let why = if root {
        "needs the ip and nft commands (iproute2, nftables)"
    } else {
        "needs root"
    };
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: {why}, and CI must run it");
    }
    eprintln!("{test}: skipped: {why}");
    false
}

/// The namespaces of one test, deleted (with everything in them) on drop.
pub struct Net {
    prefix: String,
    namespaces: Vec<String>,
    links: u32,
}

/// The "internet" side of the lab.
pub const WAN_PREFIX: &str = "203.0.113";

impl Net {
    /// An empty internet: a namespace holding the bridge. `tag` keeps the names of tests
    /// running at once apart.
    pub fn new(tag: &str) -> Net {
        let prefix = format!("acp{}{tag}", std::process::id() % 100_000);
        let mut net = Net {
            prefix,
            namespaces: Vec::new(),
            links: 0,
        };
        let wan = net.ns("wan");
        run(&["ip", "-n", &wan, "link", "add", "br0", "type", "bridge"]);
        run(&["ip", "-n", &wan, "link", "set", "br0", "up"]);
        net
    }

    /// The full name of namespace `name`, created (with loopback up) on first use.
    pub fn ns(&mut self, name: &str) -> String {
        let full = format!("{}{name}", self.prefix);
        if !self.namespaces.contains(&full) {
            // A leftover of an earlier, killed run goes first.
            let _ = Command::new("ip").args(["netns", "del", &full]).output();
            run(&["ip", "netns", "add", &full]);
            self.namespaces.push(full.clone());
            run(&["ip", "-n", &full, "link", "set", "lo", "up"]);
        }
        full
    }

    /// Connects `ns` (interface `name`) to `peer_ns` with a veth pair; returns the name of
    /// the interface in `peer_ns`.
    fn veth(&mut self, ns: &str, name: &str, peer_ns: &str) -> String {
        self.links += 1;
        let peer = format!("p{}", self.links);
        run(&[
            "ip", "-n", ns, "link", "add", name, "type", "veth", "peer", "name", &peer, "netns",
            peer_ns,
        ]);
        run(&["ip", "-n", ns, "link", "set", name, "up"]);
        run(&["ip", "-n", peer_ns, "link", "set", &peer, "up"]);
        peer
    }

    /// Plugs namespace `name` into the internet at 203.0.113.`host` (interface `wan0`);
    /// returns its namespace.
    pub fn internet_host(&mut self, name: &str, host: u8) -> String {
        let ns = self.ns(name);
        let wan = self.ns("wan");
        let port = self.veth(&ns, "wan0", &wan);
        run(&["ip", "-n", &wan, "link", "set", &port, "master", "br0"]);
        let addr = format!("{WAN_PREFIX}.{host}/24");
        run(&["ip", "-n", &ns, "addr", "add", &addr, "dev", "wan0"]);
        ns
    }

    /// A home network: a router at 203.0.113.`public` doing `nat` for LAN 100.64.`lan`.0/24,
    /// with one host at 100.64.`lan`.2. Returns the host's namespace.
    pub fn home(&mut self, name: &str, public: u8, lan: u8, nat: Nat) -> String {
        let router = self.internet_host(&format!("{name}gw"), public);
        let host = self.ns(name);
        let h_side = self.veth(&router, "lan0", &host);
        run(&[
            "ip",
            "-n",
            &router,
            "addr",
            "add",
            &format!("100.64.{lan}.1/24"),
            "dev",
            "lan0",
        ]);
        run(&[
            "ip",
            "-n",
            &host,
            "addr",
            "add",
            &format!("100.64.{lan}.2/24"),
            "dev",
            &h_side,
        ]);
        run(&[
            "ip",
            "-n",
            &host,
            "route",
            "add",
            "default",
            "via",
            &format!("100.64.{lan}.1"),
        ]);
        run(&[
            "ip",
            "netns",
            "exec",
            &router,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ]);
        let masquerade = match nat {
            Nat::Cone => "masquerade",
            Nat::Symmetric => "masquerade random",
        };
        // Like a home router: NAT out, and nothing new in, not even to the router itself
        // (without the input rule, conntrack would keep an entry for the peer's first punch
        // packet, which then takes the mapping's port and makes punching fail).
        let rules = format!(
            "table ip nat {{\n\
               chain post {{\n\
                 type nat hook postrouting priority srcnat;\n\
                 oifname \"wan0\" {masquerade}\n\
               }}\n\
             }}\n\
             table inet filter {{\n\
               chain input {{\n\
                 type filter hook input priority 0;\n\
                 iifname \"wan0\" ct state new drop\n\
               }}\n\
               chain forward {{\n\
                 type filter hook forward priority 0;\n\
                 iifname \"wan0\" ct state new drop\n\
               }}\n\
             }}\n"
        );
        let file = std::env::temp_dir().join(format!("{}{name}.nft", self.prefix));
        std::fs::write(&file, rules).unwrap();
        run(&[
            "ip",
            "netns",
            "exec",
            &router,
            "nft",
            "-f",
            file.to_str().unwrap(),
        ]);
        let _ = std::fs::remove_file(file);
        host
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// One HTTP request to `127.0.0.1:port` inside namespace `ns` (from a thread that enters
/// it), answered as status and JSON.
pub fn http(ns: &str, method: &str, port: u16, path: &str, body: Option<&Value>) -> (u16, Value) {
    let ns = ns.to_owned();
    let path = path.to_owned();
    let method = method.to_owned();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    std::thread::spawn(move || {
        let netns = File::open(format!("/var/run/netns/{ns}")).expect("namespace exists");
        // SAFETY: setns on this thread only, with a namespace file we hold open.
        let entered = unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(entered, 0, "setns {ns}: {}", std::io::Error::last_os_error());
        let Ok(mut conn) = TcpStream::connect(("127.0.0.1", port)) else {
            return (0, Value::Null);
        };
        conn.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        if conn.write_all(request.as_bytes()).is_err() {
            return (0, Value::Null);
        }
        let mut raw = Vec::new();
        let _ = conn.read_to_end(&mut raw);
        parse_response(&raw)
    })
    .join()
    .expect("request thread")
}

/// Status and JSON body of an HTTP/1.1 response (content-length or chunked).
fn parse_response(raw: &[u8]) -> (u16, Value) {
    let text = String::from_utf8_lossy(raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return (0, Value::Null);
    };
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, after)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 || after.len() < n {
                break;
            }
            out.push_str(&after[..n]);
            rest = after[n..].trim_start_matches("\r\n");
        }
        out
    } else {
        body.to_owned()
    };
    (
        status,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    )
}

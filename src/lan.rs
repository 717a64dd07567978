//! LAN discovery over mDNS (DNS-SD, `_acp._tcp.local.`), off unless `--lan-discovery`.
//!
//! With it on, the node announces itself on every interface (its name, did, link token and
//! peer port, in the TXT record) and browses for other nodes doing the same; `GET /discover`,
//! `/peers/discover` and `acp_peers` list what it found, each with a link built from the
//! address the announcement came from, ready for `POST /peers/connect`.
//!
//! Off by default because it multicasts to the whole LAN, and what it announces is the
//! node's link, which is all anyone needs to talk to it: turning it on shares the link with
//! everyone on the network (docs/security.md). Nothing else ever probes the network: there
//! is no port scan (the reference's `/peers/discover` scans the /24; ours answers from mDNS).
//!
//! Announcements are outside input: [`LanPeer::from_record`] checks every field (token,
//! name, did, address) before anything reaches the table, which is bounded ([`MAX_FOUND`]).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mdns_sd::{ServiceDaemon, ServiceEvent, ServiceInfo};
use serde::Serialize;

use crate::node::Node;
use crate::wire::link::Link;

/// The DNS-SD service type acp-relay nodes announce and browse.
pub const SERVICE_TYPE: &str = "_acp._tcp.local.";
/// Nodes remembered at most; past it the one heard from longest ago goes.
pub const MAX_FOUND: usize = 256;
/// Longest agent name taken from an announcement (the API's own limit on names).
const MAX_NAME: usize = 128;
/// The announcement format's version (`v=` in the TXT record).
const FORMAT: &str = "1";
/// How long a graceful stop waits for the goodbye packets to go out.
const GOODBYE_WAIT: Duration = Duration::from_secs(1);

/// A node found on the LAN.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LanPeer {
    /// Its agent name, as announced.
    pub name: String,
    /// Its key (`did:acp:…`), when announced; the link carries it too, so dialling checks it.
    pub did: Option<String>,
    /// What to pass to `POST /peers/connect`: its address as seen on this LAN, its peer port
    /// and token (and did).
    pub link: String,
    /// The address the link uses.
    pub ip: String,
    /// Its peer WebSocket port.
    pub ws_port: u16,
    /// Every address it announced.
    pub addresses: Vec<String>,
    /// Its DNS-SD instance name (what a goodbye names).
    pub instance: String,
    /// When it was last heard (RFC 3339, UTC).
    pub seen_at: String,
    /// Always `"mdns"`: where this entry came from.
    pub source: &'static str,
}

/// One resolved announcement, as read off the wire.
#[derive(Debug, Clone, Default)]
pub struct Record {
    /// DNS-SD full name (`instance._acp._tcp.local.`).
    pub fullname: String,
    /// SRV port.
    pub port: u16,
    /// A and AAAA records.
    pub addresses: Vec<IpAddr>,
    /// TXT properties.
    pub txt: BTreeMap<String, String>,
}

impl LanPeer {
    /// The peer an announcement describes, or why it is not one (ours, or malformed).
    pub fn from_record(record: &Record, own_token: &str, now: &str) -> Result<LanPeer, String> {
        let field = |k: &str| record.txt.get(k).map(String::as_str);
        if field("v") != Some(FORMAT) {
            return Err(format!("unknown announcement format {:?}", field("v")));
        }
        let token = field("tok").ok_or("no token")?;
        if token == own_token {
            return Err("our own announcement".into());
        }
        // A token's characters, as links have them: anything else ('?', '#', '/') would make
        // a link that names another token than the one announced.
        if token.is_empty()
            || token.len() > 128
            || !token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(format!("bad token {token:?}"));
        }
        let name = field("name").unwrap_or("").trim();
        if name.is_empty() || name.len() > MAX_NAME || name.chars().any(char::is_control) {
            return Err(format!("bad name {name:?}"));
        }
        if record.port == 0 {
            return Err("port 0".into());
        }
        let ip = best_address(&record.addresses).ok_or("no usable address")?;
        let did = field("did").map(str::to_owned);
        let link = Link {
            did: did.clone(),
            ..Link::plain(&ip.to_string(), record.port, token)
        }
        .to_string();
        // The link parser is the one judge of tokens and dids: a link it refuses is not
        // offered to anyone.
        let parsed = Link::parse(&link).map_err(|e| format!("bad announcement: {e}"))?;
        Ok(LanPeer {
            name: name.to_owned(),
            did: parsed.did,
            link,
            ip: ip.to_string(),
            ws_port: record.port,
            addresses: record.addresses.iter().map(IpAddr::to_string).collect(),
            instance: record.fullname.clone(),
            seen_at: now.to_owned(),
            source: "mdns",
        })
    }
}

/// The address a link should use: IPv4 first, then a global IPv6; never loopback,
/// unspecified, multicast or link-local (a link-local address needs a zone a link cannot
/// carry).
fn best_address(addresses: &[IpAddr]) -> Option<IpAddr> {
    // What a link hint may carry, and never a group or broadcast address (an announcement
    // can claim anything).
    let usable = |ip: &&IpAddr| {
        crate::wire::quic::usable_elsewhere(**ip)
            && !ip.is_multicast()
            && !matches!(ip, IpAddr::V4(v4) if v4.is_broadcast())
    };
    let mut candidates: Vec<&IpAddr> = addresses.iter().filter(usable).collect();
    // Deterministic: v4 before v6, then by address.
    candidates.sort_by_key(|ip| (ip.is_ipv6(), **ip));
    candidates.first().map(|ip| **ip)
}

/// The `.local.` host name the announcement's address records go under: a DNS label made
/// of the agent's name and the did's tail (letters, digits and inner hyphens only), so an
/// agent called "🤖" or "my_agent" still gets a valid one.
fn host_name(agent: &str, tail: &str) -> String {
    // At most 40 characters of the name, so the tail (what keeps two agents of one name
    // apart) always fits in the 63 bytes of a label.
    let agent: String = agent.chars().take(40).collect();
    let raw: String = format!("{agent}-{tail}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let words: Vec<&str> = raw.split('-').filter(|w| !w.is_empty()).collect();
    let mut label = words.join("-");
    label.truncate(63);
    let label = label.trim_end_matches('-');
    format!(
        "{}.local.",
        if label.is_empty() { "acp-node" } else { label }
    )
}

/// The running discovery: the mDNS daemon and what it found.
pub struct Discovery {
    daemon: ServiceDaemon,
    fullname: String,
    found: Mutex<HashMap<String, LanPeer>>,
}

impl Discovery {
    /// Announces `node` and starts browsing; the browse loop runs until the node shuts
    /// down, then says goodbye so other nodes drop it at once.
    pub fn start(node: &Node) -> Result<Arc<Discovery>, String> {
        let daemon = ServiceDaemon::new().map_err(|e| format!("cannot start mDNS: {e}"))?;
        let did = node.identity().did_acp().to_owned();
        // Two agents may share a name; the did's tail keeps their instances apart.
        let tail: String = did
            .chars()
            .rev()
            .take(8)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        let instance = format!(
            "{}-{tail}",
            node.name().chars().take(40).collect::<String>()
        );
        let host = host_name(node.name(), &tail);
        let name: String = node.name().chars().take(MAX_NAME).collect();
        let props = [
            ("v", FORMAT),
            ("name", name.as_str()),
            ("tok", node.token()),
            ("did", did.as_str()),
        ];
        let info = ServiceInfo::new(
            SERVICE_TYPE,
            &instance,
            &host,
            "",
            node.ws_port(),
            &props[..],
        )
        .map_err(|e| format!("cannot announce this node: {e}"))?
        .enable_addr_auto();
        let fullname = info.get_fullname().to_owned();
        daemon
            .register(info)
            .map_err(|e| format!("cannot announce this node: {e}"))?;
        let events = daemon
            .browse(SERVICE_TYPE)
            .map_err(|e| format!("cannot browse the LAN: {e}"))?;
        let discovery = Arc::new(Discovery {
            daemon,
            fullname,
            found: Mutex::new(HashMap::new()),
        });
        let d = discovery.clone();
        let own_token = node.token().to_owned();
        let stop = node.shutdown_token();
        node.background().spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    event = events.recv_async() => match event {
                        Ok(event) => d.handle(event, &own_token),
                        Err(_) => break,
                    },
                }
            }
            d.goodbye().await;
        });
        tracing::info!(
            instance = %discovery.fullname,
            "LAN discovery on: announcing this node's link over mDNS ({SERVICE_TYPE})"
        );
        Ok(discovery)
    }

    /// What was found, most recently heard first.
    pub fn peers(&self) -> Vec<LanPeer> {
        let mut peers: Vec<LanPeer> = self.lock().values().cloned().collect();
        peers.sort_by(|a, b| b.seen_at.cmp(&a.seen_at).then(a.instance.cmp(&b.instance)));
        peers
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, LanPeer>> {
        self.found.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn handle(&self, event: ServiceEvent, own_token: &str) {
        match event {
            ServiceEvent::ServiceResolved(service) => {
                let record = Record {
                    fullname: service.fullname.clone(),
                    port: service.port,
                    addresses: service.addresses.iter().map(|a| a.to_ip_addr()).collect(),
                    txt: service
                        .txt_properties
                        .iter()
                        .map(|p| (p.key().to_ascii_lowercase(), p.val_str().to_owned()))
                        .collect(),
                };
                let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
                match LanPeer::from_record(&record, own_token, &now) {
                    Ok(peer) => self.remember(peer),
                    Err(why) => {
                        tracing::debug!(instance = %record.fullname, "mDNS announcement ignored: {why}")
                    }
                }
            }
            ServiceEvent::ServiceRemoved(_, fullname)
                if self.lock().remove(&fullname).is_some() =>
            {
                tracing::info!(instance = %fullname, "LAN peer gone");
            }
            _ => {}
        }
    }

    fn remember(&self, peer: LanPeer) {
        let mut found = self.lock();
        if !found.contains_key(&peer.instance) {
            if found.len() >= MAX_FOUND {
                let oldest = found
                    .values()
                    .min_by(|a, b| a.seen_at.cmp(&b.seen_at))
                    .map(|p| p.instance.clone());
                if let Some(oldest) = oldest {
                    found.remove(&oldest);
                }
            }
            tracing::info!(name = %peer.name, link = %peer.link, "LAN peer found");
        }
        found.insert(peer.instance.clone(), peer);
    }

    /// Withdraws the announcement (goodbye packets) and stops the daemon.
    async fn goodbye(&self) {
        if let Ok(status) = self.daemon.unregister(&self.fullname) {
            let _ = tokio::time::timeout(GOODBYE_WAIT, status.recv_async()).await;
        }
        if let Ok(status) = self.daemon.shutdown() {
            let _ = tokio::time::timeout(GOODBYE_WAIT, status.recv_async()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DID: &str = "did:acp:A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg";

    fn record(txt: &[(&str, &str)], addresses: &[&str]) -> Record {
        Record {
            fullname: "bob-1234._acp._tcp.local.".into(),
            port: 7801,
            addresses: addresses.iter().map(|a| a.parse().unwrap()).collect(),
            txt: txt
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
        }
    }

    fn good() -> Vec<(&'static str, &'static str)> {
        vec![("v", "1"), ("name", "bob"), ("tok", "tok_0123456789abcdef")]
    }

    #[test]
    fn an_announcement_becomes_a_link_on_the_address_it_came_from() {
        let r = record(&good(), &["fe80::1", "198.51.100.7", "2001:db8::7"]);
        let peer = LanPeer::from_record(&r, "tok_mine", "now").unwrap();
        assert_eq!(peer.link, "acp://198.51.100.7:7801/tok_0123456789abcdef");
        assert_eq!(peer.ip, "198.51.100.7");
        assert_eq!(peer.name, "bob");
        assert_eq!(peer.addresses.len(), 3);
        // Only IPv6: the global one, bracketed; never the link-local one.
        let r = record(&good(), &["fe80::1", "2001:db8::7"]);
        let peer = LanPeer::from_record(&r, "tok_mine", "now").unwrap();
        assert_eq!(peer.link, "acp://[2001:db8::7]:7801/tok_0123456789abcdef");
    }

    #[test]
    fn the_did_rides_in_the_link() {
        let mut txt = good();
        txt.push(("did", DID));
        let peer = LanPeer::from_record(&record(&txt, &["198.51.100.7"]), "x", "now").unwrap();
        let link = Link::parse(&peer.link).unwrap();
        assert_eq!(link.did.as_deref(), Some(DID));
        assert_eq!(peer.did.as_deref(), Some(DID));
    }

    #[test]
    fn ours_and_malformed_announcements_are_refused() {
        let ok = ["198.51.100.7"];
        let with = |k: &'static str, v: &'static str| {
            let mut txt = good();
            txt.retain(|(key, _)| *key != k);
            if !v.is_empty() {
                txt.push((k, v));
            }
            txt
        };
        let cases: Vec<(Record, &str)> = vec![
            (record(&good(), &ok), "tok_0123456789abcdef"),
            (record(&with("v", "2"), &ok), "x"),
            (record(&with("tok", ""), &ok), "x"),
            (record(&with("tok", "tok/../x"), &ok), "x"),
            (record(&with("tok", "tok_a?did=x"), &ok), "x"),
            (record(&with("tok", "tok#a"), &ok), "x"),
            (record(&with("name", ""), &ok), "x"),
            (record(&with("name", "a\nb"), &ok), "x"),
            (record(&with("did", "did:web:evil"), &ok), "x"),
            (
                record(&good(), &["127.0.0.1", "::1", "fe80::1", "224.0.0.251"]),
                "x",
            ),
            (record(&good(), &[]), "x"),
        ];
        for (r, own) in cases {
            assert!(LanPeer::from_record(&r, own, "now").is_err(), "{r:?}");
        }
        let mut zero = record(&good(), &ok);
        zero.port = 0;
        assert!(LanPeer::from_record(&zero, "x", "now").is_err());
    }

    #[test]
    fn host_names_are_dns_labels_whatever_the_agent_is_called() {
        assert_eq!(host_name("Alice", "Ab_c-9"), "alice-ab-c-9.local.");
        assert_eq!(host_name("🤖", "__"), "acp-node.local.");
        assert_eq!(host_name("my agent.v2", "XyZ"), "my-agent-v2-xyz.local.");
        let long = host_name(&"a".repeat(200), "tail");
        assert_eq!(long, format!("{}-tail.local.", "a".repeat(40)));
    }

    proptest! {
        /// Any TXT content, port and addresses: refused, or a peer whose link parses back
        /// to the same token, port and address.
        #[test]
        fn prop_any_announcement_is_refused_or_a_valid_link(
            txt in proptest::collection::btree_map("[a-z]{1,4}", ".{0,80}", 0..6),
            tok in proptest::option::of("[ -~]{0,40}"),
            name in proptest::option::of(".{0,140}"),
            port in any::<u16>(),
            addrs in proptest::collection::vec(any::<IpAddr>(), 0..4),
        ) {
            let mut txt = txt;
            txt.insert("v".into(), "1".into());
            if let Some(t) = tok { txt.insert("tok".into(), t); }
            if let Some(n) = name { txt.insert("name".into(), n); }
            let r = Record { fullname: "x._acp._tcp.local.".into(), port, addresses: addrs, txt };
            if let Ok(peer) = LanPeer::from_record(&r, "tok_mine", "now") {
                let link = Link::parse(&peer.link).expect("a link it made parses");
                prop_assert_eq!(&link.token, r.txt.get("tok").unwrap());
                prop_assert_eq!(link.port, port);
                prop_assert_eq!(link.host, peer.ip);
            }
        }
    }
}

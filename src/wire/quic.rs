//! Levels 2 and 3 of NAT traversal: an iroh (QUIC) endpoint, keyed by the node's Ed25519
//! identity, that reaches a peer no direct TCP connection reaches. iroh dials by public key,
//! through the relays named with `--relay`; it punches a hole through both NATs when it can
//! (`dcutr_direct`) and keeps the traffic on the relay when it cannot (`relay`), end-to-end
//! encrypted either way. Every default that would contact a third party is off: no public
//! relays, no DNS or pkarr discovery, no port mapping; a dialler learns what it needs from
//! the link (`did`, `relay`, `addr`).
//!
//! Over the QUIC connection runs one bidirectional stream carrying the same WebSocket
//! framing, token check, handshake and ACP frames as a TCP connection, so the session, the
//! acknowledgements and every guarantee are the same on every path.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use iroh::endpoint::{Connection, PathList, RecvStream, SendStream, presets};
use iroh::{
    Endpoint, EndpointAddr, RelayConfig, RelayMap, RelayMode, RelayUrl, SecretKey, TransportAddr,
    Watcher,
};
use iroh_relay::RelayQuicConfig;
use iroh_relay::tls::CaTlsConfig;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio::sync::watch;
use tokio_tungstenite::WebSocketStream;

use super::link::{Link, MAX_ADDR_HINTS};
use super::peer::{Gate, Origin, Route, Source};
use crate::node::peers::ConnectionType;
use crate::node::session::PathWatch;
use crate::node::{Node, RouteHints};

/// The ALPN of ACP over iroh: one bidirectional stream of WebSocket-framed ACP frames.
pub const ALPN: &[u8] = b"acp/1";
/// Time a dial over iroh allows for finding a path (through the relay or a punched hole),
/// the QUIC handshake and the WebSocket upgrade on the stream.
const DIAL_TIMEOUT: Duration = Duration::from_secs(15);
/// Time an incoming iroh connection has to finish QUIC and open its stream.
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(10);

/// A QUIC stream as one duplex byte stream, for the WebSocket framing.
pub type QuicStream = tokio::io::Join<RecvStream, SendStream>;

/// The node's iroh endpoint, when it has relays.
#[derive(Clone, Debug)]
pub struct Quic {
    endpoint: Endpoint,
}

/// Makes ring the process's TLS provider, once. iroh and the relay use ring; the HTTP client
/// inside iroh (and any other rustls user built without a provider of its own) takes the
/// process default, and with more than one provider compiled in there is none unless one is
/// installed.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Opens the iroh endpoint when the node has relays (`--relay`); none otherwise, and then
/// nothing but direct TCP is ever used.
pub async fn bind(node: &Node) -> Result<Option<Quic>, String> {
    let cfg = node.config();
    if cfg.relays.is_empty() {
        return Ok(None);
    }
    let map = RelayMap::empty();
    for relay in &cfg.relays {
        let url: RelayUrl = relay
            .url
            .parse()
            .map_err(|e| format!("--relay {}: {e}", relay.url))?;
        let quic = relay.quic_port.map(RelayQuicConfig::new);
        map.insert(url.clone(), Arc::new(RelayConfig::new(url, quic)));
    }
    let mut ca = CaTlsConfig::embedded();
    if let Some(path) = &cfg.relay_ca {
        ca = ca.with_extra_roots(load_certs(path)?);
    }
    let mut builder = Endpoint::builder(presets::Minimal)
        .secret_key(SecretKey::from_bytes(&node.identity().secret_bytes()))
        .alpns(vec![ALPN.to_vec()])
        .relay_mode(RelayMode::Custom(map))
        .ca_tls_config(ca);
    if cfg.quic_port != 0 {
        builder = builder
            .bind_addr(SocketAddr::from((Ipv4Addr::UNSPECIFIED, cfg.quic_port)))
            .map_err(|e| format!("--quic-port {}: {e}", cfg.quic_port))?
            .bind_addr(SocketAddr::from((Ipv6Addr::UNSPECIFIED, cfg.quic_port)))
            .map_err(|e| format!("--quic-port {}: {e}", cfg.quic_port))?;
    }
    let endpoint = builder
        .bind()
        .await
        .map_err(|e| format!("cannot open the QUIC (iroh) endpoint: {e}"))?;
    tracing::info!(
        relays = ?cfg.relays.iter().map(|r| r.url.as_str()).collect::<Vec<_>>(),
        sockets = ?endpoint.bound_sockets(),
        "QUIC endpoint up: peers behind NAT are reached through the relays"
    );
    Ok(Some(Quic { endpoint }))
}

/// Reads PEM certificates (a `--relay-ca` file).
fn load_certs(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("--relay-ca {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "--relay-ca {}: no PEM certificate in the file",
            path.display()
        ));
    }
    Ok(certs)
}

impl Quic {
    /// Keeps the node's link hints (relay, UDP addresses) current as the endpoint learns its
    /// addresses, until shutdown.
    pub async fn publish_hints(self, node: Node) {
        let fallback = node.config().relays.first().map(|r| r.url.clone());
        let mut addrs = self.endpoint.watch_addr().stream();
        let shutdown = node.shutdown_token();
        loop {
            let addr = tokio::select! {
                _ = shutdown.cancelled() => return,
                a = addrs.next() => match a { Some(a) => a, None => return },
            };
            let relay = addr
                .relay_urls()
                .next()
                .map(|u| u.to_string())
                .or_else(|| fallback.clone());
            // Public (discovered) addresses are what a dialler behind another NAT can use;
            // they sort before the LAN ones because iroh lists them as it learns them.
            let hints = RouteHints {
                relay,
                addrs: addr
                    .ip_addrs()
                    .filter(|a| usable_elsewhere(a.ip()))
                    .take(MAX_ADDR_HINTS)
                    .copied()
                    .collect(),
            };
            tracing::debug!(?hints, "link hints updated");
            node.set_route_hints(hints);
        }
    }

    /// Accepts iroh connections until shutdown; each goes through the same gate, token check
    /// and handshake as a TCP connection.
    pub async fn serve(self, node: Node) {
        let shutdown = node.shutdown_token();
        let gate = Arc::new(Gate::default());
        loop {
            let incoming = tokio::select! {
                _ = shutdown.cancelled() => break,
                i = self.endpoint.accept() => match i { Some(i) => i, None => break },
            };
            let node2 = node.clone();
            let gate2 = gate.clone();
            node.background().spawn(async move {
                let accepted = tokio::time::timeout(ACCEPT_TIMEOUT, async {
                    let conn = incoming
                        .accept()
                        .map_err(|e| e.to_string())?
                        .await
                        .map_err(|e| e.to_string())?;
                    let (send, recv) = conn.accept_bi().await.map_err(|e| e.to_string())?;
                    Ok::<_, String>((conn, tokio::io::join(recv, send)))
                })
                .await;
                let (conn, stream) = match accepted {
                    Ok(Ok(c)) => c,
                    Ok(Err(e)) => {
                        tracing::debug!("iroh connection not accepted: {e}");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!("iroh connection did not open its stream in time");
                        return;
                    }
                };
                let source = Source::Key(*conn.remote_id().as_bytes());
                if gate2.make_room(std::time::Instant::now()).is_some() {
                    // Every handshake place is taken by recent handshakes: the peer redials.
                    conn.close(1u32.into(), b"busy");
                    return;
                }
                let ticket = gate2.enter(source, std::time::Instant::now());
                let origin = Origin {
                    label: describe(&conn),
                    source,
                    path: watch_path(&conn),
                    proven_key: Some(*conn.remote_id().as_bytes()),
                };
                super::peer::accept_one(node2, gate2, ticket, stream, origin).await;
                close_gracefully(&conn).await;
            });
        }
        self.endpoint.close().await;
    }

    /// Dials the node a link names, by its key, through its relay and addresses. Returns
    /// the upgraded WebSocket on the QUIC stream, the route and the connection (to close
    /// once the session is over).
    pub(crate) async fn dial(
        &self,
        node: &Node,
        link: &Link,
    ) -> Result<(WebSocketStream<QuicStream>, Route, Connection), String> {
        let key = link
            .did
            .as_deref()
            .ok_or("the link names no key (did) to dial over iroh")?;
        let key = super::did::parse_did(key)?;
        let id = iroh::PublicKey::from_bytes(key.as_bytes()).map_err(|e| e.to_string())?;
        let mut addr = EndpointAddr::new(id);
        if let Some(relay) = &link.relay {
            let url: RelayUrl = relay.parse().map_err(|e| format!("relay {relay}: {e}"))?;
            addr = addr.with_relay_url(url);
        }
        for a in &link.addrs {
            addr = addr.with_ip_addr(*a);
        }
        let attempt = async {
            let conn = self
                .endpoint
                .connect(addr, ALPN)
                .await
                .map_err(|e| e.to_string())?;
            let (send, recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
            let stream = tokio::io::join(recv, send);
            let (ws, _) = tokio_tungstenite::client_async_with_config(
                link.ws_url(),
                stream,
                Some(super::ws::config(node)),
            )
            .await
            .map_err(|e| format!("WebSocket upgrade over QUIC failed: {e}"))?;
            Ok::<_, String>((ws, conn))
        };
        let (ws, conn) = tokio::time::timeout(DIAL_TIMEOUT, attempt)
            .await
            .map_err(|_| format!("no path found within {} s", DIAL_TIMEOUT.as_secs()))??;
        let route = Route {
            remote: describe(&conn),
            path: watch_path(&conn),
        };
        Ok((ws, route, conn))
    }
}

/// How long a finished connection waits for the peer to close it, so that what was written
/// last (a refusal, a close frame) reaches it: closing a QUIC connection drops unsent data.
const LINGER: Duration = Duration::from_secs(1);

/// Closes a connection once the peer has closed it, or after [`LINGER`].
pub(crate) async fn close_gracefully(conn: &Connection) {
    let _ = tokio::time::timeout(LINGER, conn.closed()).await;
    conn.close(0u32.into(), b"done");
}

/// Whether another machine could reach this address: not loopback, not unspecified, not an
/// IPv6 link-local address (meaningless off its link, and it would need a zone).
pub(crate) fn usable_elsewhere(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => !v4.is_loopback() && !v4.is_unspecified(),
        std::net::IpAddr::V6(v6) => {
            !v6.is_loopback() && !v6.is_unspecified() && !v6.is_unicast_link_local()
        }
    }
}

/// The path a connection uses now: a punched hole (direct UDP) or the relay.
fn kind_of(paths: &PathList<'_>) -> ConnectionType {
    match paths.iter().find(|p| p.is_selected()) {
        Some(p) if p.is_ip() => ConnectionType::DcutrDirect,
        _ => ConnectionType::Relay,
    }
}

/// A connection's remote end for `/peers`: the selected path's address.
fn describe(conn: &Connection) -> String {
    let paths = conn.paths();
    match paths
        .iter()
        .find(|p| p.is_selected())
        .map(|p| p.remote_addr().clone())
    {
        Some(TransportAddr::Ip(addr)) => addr.to_string(),
        Some(TransportAddr::Relay(url)) => format!("relay {url}"),
        _ => format!("iroh {}", conn.remote_id().fmt_short()),
    }
}

/// Watches a connection's selected path, so the session can report when iroh moves it from
/// the relay to a punched hole (or back).
fn watch_path(conn: &Connection) -> PathWatch {
    let (tx, rx) = watch::channel(kind_of(&conn.paths()));
    let conn = conn.clone();
    tokio::spawn(async move {
        let mut lists = conn.paths_stream();
        loop {
            tokio::select! {
                _ = tx.closed() => return,
                list = lists.next() => match list {
                    Some(list) => {
                        let kind = kind_of(&list);
                        tx.send_if_modified(|k| std::mem::replace(k, kind) != kind);
                    }
                    None => return,
                },
            }
        }
    });
    rx
}

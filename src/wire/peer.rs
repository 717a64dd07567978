//! Peer WebSocket connections: the listener that accepts dialling peers (token checked on the
//! path), the dialler that keeps a connection to every peer we were asked to join (with
//! backoff, also after a restart), and the session loop both share: card exchange, offline
//! queue flush, frame reading, writing, and keep-alive pings.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::sync::CancellationToken;

use super::frame;
use super::identity as ed25519;
use super::link::{Link, token_matches};
use super::quic::Quic;
use crate::node::error::ErrorCode;
use crate::node::identity::HandshakeIdentity;
use crate::node::log_limit::{LOG_EVERY, LogLimit};
use crate::node::peers::ConnectionType;
use crate::node::session::{self, Established, PathWatch};
use crate::node::{InboundAdmission, Node};

/// Time a dial allows for the TCP connect plus WebSocket handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The same when the link also offers iroh (its host may be unreachable behind a NAT): a
/// reachable host answers within a few round trips, so the other levels need not wait long.
const DIRECT_TIMEOUT_WITH_HINTS: Duration = Duration::from_secs(3);
/// How long a dialled peer may take to send its first frame (its card or a refusal).
const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(10);
/// Everything an accepted connection does before it is a peer — WebSocket upgrade, token
/// check, first frame — must fit in this one deadline (it used to be 10 s for the upgrade
/// plus 10 s for the first frame). A real peer needs a few round trips; the deadline bounds
/// how long a silent stranger keeps a handshake place when nobody else wants it (when
/// somebody does, [`MAX_PENDING_HANDSHAKES`] evicts it sooner).
const ACCEPT_DEADLINE: Duration = Duration::from_secs(10);
/// Most accepted connections that may be in their pre-authentication phase at once. Each
/// holds a socket, a task and a small buffer, so this bounds what strangers can make the
/// node hold before they prove they have the token. When every place is taken the node
/// accepts nothing more (new connections wait in the kernel's listen backlog) until a place
/// frees or the oldest pending handshake of the source (IPv4 host or IPv6 /64) holding the
/// most places is [`EVICTABLE_AFTER`] old; that one is then closed to make room. So a
/// burst of real peers only slows down, and silent strangers are displaced one by one: a
/// good peer waits about one [`EVICTABLE_AFTER`] period per 64 strangers queued ahead of it
/// in the backlog, and a source's handshakes are closed only while it holds more places than
/// any other (a flood mostly displaces itself).
const MAX_PENDING_HANDSHAKES: usize = 64;
/// Age from which a pending handshake may be evicted to make room for a new connection. A
/// real peer completes its handshake in a few round trips; evicting only older handshakes
/// keeps a burst of real peers (all young) from evicting each other.
const EVICTABLE_AFTER: Duration = Duration::from_secs(2);
/// Longest wait between redials.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Binds the peer listener on `port` (0 = any free port).
pub async fn bind(node: &Node, port: u16) -> std::io::Result<TcpListener> {
    let cfg = node.config();
    let listener = TcpListener::bind((cfg.ws_host.as_str(), port)).await?;
    node.set_ws_port(listener.local_addr()?.port());
    Ok(listener)
}

/// Accepts peers until shutdown.
pub async fn serve(node: Node, listener: TcpListener) {
    let shutdown = node.shutdown_token();
    let gate = Arc::new(Gate::default());
    loop {
        // A place first, then the connection: a full gate leaves new connections in the
        // listen backlog instead of taking them in.
        let freed = gate.freed.notified();
        if let Some(wait) = gate.make_room(Instant::now()) {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = freed => {}
                _ = tokio::time::sleep(wait) => {}
            }
            continue;
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    let origin = Origin {
                        label: addr.to_string(),
                        source: source_of(addr.ip()),
                        path: session::fixed_path(ConnectionType::P2pDirect),
                        proven_key: None,
                    };
                    let ticket = gate.enter(origin.source, Instant::now());
                    let node2 = node.clone();
                    let gate2 = gate.clone();
                    node.background().spawn(async move {
                        accept_one(node2, gate2, ticket, stream, origin).await
                    });
                }
                Err(e) => {
                    tracing::warn!("peer accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

/// One pending handshake: where it comes from, since when, and how to end it early.
struct Pending {
    source: Source,
    since: Instant,
    evict: CancellationToken,
}

/// The accept loop's bounds on strangers: the places for pending handshakes
/// ([`MAX_PENDING_HANDSHAKES`]) and the rate limits of the refusal log lines.
#[derive(Default)]
pub(crate) struct Gate {
    /// Pending handshakes by arrival number (the first entry is the oldest), and the last
    /// arrival number given out.
    pending: Mutex<(BTreeMap<u64, Pending>, u64)>,
    /// Signalled when a place frees (the accept loop may be waiting for one).
    freed: tokio::sync::Notify,
    evicted: LogLimit,
    paused: LogLimit,
    bad_token: LogLimit,
    bad_identity: LogLimit,
    over_cap: LogLimit,
}

/// A pending handshake's place; dropping it frees the place.
pub(crate) struct Ticket {
    gate: Arc<Gate>,
    id: u64,
    evict: CancellationToken,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut pending = self.gate.pending.lock().unwrap_or_else(|p| p.into_inner());
        if pending.0.remove(&self.id).is_some() {
            self.gate.freed.notify_one();
        }
    }
}

/// The unit handshake places are shared by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Source {
    /// An IPv4 address, or the /64 an IPv6 address is in (one host typically holds a whole
    /// /64): a TCP peer.
    Ip(IpAddr),
    /// An iroh peer's key (the QUIC handshake proved it; anyone can make new keys, so this
    /// only stops one key from holding every place).
    Key([u8; 32]),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Ip(ip) => write!(f, "{ip}"),
            Source::Key(k) => write!(f, "key {}", hex::encode(&k[..8])),
        }
    }
}

/// The [`Source`] of a TCP peer at `ip`.
fn source_of(ip: IpAddr) -> Source {
    Source::Ip(match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let mut seg = v6.segments();
            seg[4..].fill(0);
            IpAddr::V6(seg.into())
        }
        v4 => v4,
    })
}

impl Gate {
    /// Makes sure a place is free for the next connection. None if one is (after evicting,
    /// if needed, the oldest pending handshake of the source holding the most places, when
    /// it is old enough); else how long to wait at most before trying again (a freed place
    /// is signalled on [`Gate::freed`] sooner).
    pub(crate) fn make_room(&self, now: Instant) -> Option<Duration> {
        let (victim, wait) = {
            let mut guard = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            let pending = &mut guard.0;
            if pending.len() < MAX_PENDING_HANDSHAKES {
                return None;
            }
            // Places per source, and each source's oldest entry (iteration is oldest first).
            let mut sources: BTreeMap<Source, (usize, u64, Instant)> = BTreeMap::new();
            for (id, p) in pending.iter() {
                sources.entry(p.source).or_insert((0, *id, p.since)).0 += 1;
            }
            // The busiest source; among equally busy ones, the one with the oldest entry.
            let (oldest_id, since) = sources
                .values()
                .max_by(|a, b| a.0.cmp(&b.0).then(b.2.cmp(&a.2)).then(b.1.cmp(&a.1)))
                .map(|&(_, id, since)| (id, since))?;
            let age = now.saturating_duration_since(since);
            if age < EVICTABLE_AFTER {
                (None, Some(EVICTABLE_AFTER - age))
            } else {
                let p = pending.remove(&oldest_id);
                if let Some(p) = &p {
                    p.evict.cancel();
                }
                (p.map(|p| p.source), None)
            }
        };
        match victim {
            Some(source) => {
                if let Some(n) = self.evicted.hit() {
                    tracing::warn!(
                        evicted = n,
                        from = %source,
                        "peer port: all {MAX_PENDING_HANDSHAKES} handshake places taken; closed \
                         the oldest pending handshake of the busiest source ({n} such evictions \
                         since the previous report; reported at most every {} s)",
                        LOG_EVERY.as_secs()
                    );
                }
            }
            None => {
                if let Some(n) = self.paused.hit() {
                    tracing::info!(
                        paused = n,
                        "peer port: all {MAX_PENDING_HANDSHAKES} handshake places taken by recent \
                         handshakes; new connections wait ({n} such pauses since the previous \
                         report; reported at most every {} s)",
                        LOG_EVERY.as_secs()
                    );
                }
            }
        }
        wait
    }

    /// Takes a place for a new connection from `ip` (after [`Gate::make_room`]).
    pub(crate) fn enter(self: &Arc<Self>, source: Source, now: Instant) -> Ticket {
        let evict = CancellationToken::new();
        let mut guard = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let (pending, last) = &mut *guard;
        *last += 1;
        let entry = Pending {
            source,
            since: now,
            evict: evict.clone(),
        };
        pending.insert(*last, entry);
        Ticket {
            gate: self.clone(),
            id: *last,
            evict,
        }
    }
}

/// A connection that passed the token check and was admitted under `--max-peers`.
struct Admitted<S> {
    ws: WebSocketStream<S>,
    /// Its first frame (normally its card).
    first: String,
    card: Option<serde_json::Value>,
    name: Option<String>,
    admission: InboundAdmission,
    /// Who its card says it is, checked against its pin.
    identity: HandshakeIdentity,
}

/// Where an accepted connection comes from.
pub(crate) struct Origin {
    /// Shown in logs and as the peer's `remote_address`.
    pub label: String,
    /// What its handshake place counts against.
    pub source: Source,
    /// How it reaches us.
    pub path: PathWatch,
    /// The key the transport proved (iroh's QUIC handshake); none over TCP.
    pub proven_key: Option<[u8; 32]>,
}

/// Takes one accepted connection through its handshake (under the gate's deadline and
/// eviction) and, once it is an admitted peer, runs its session.
pub(crate) async fn accept_one<S>(
    node: Node,
    gate: Arc<Gate>,
    ticket: Ticket,
    stream: S,
    origin: Origin,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let addr = origin.label.as_str();
    let shutdown = node.shutdown_token();
    let evict = ticket.evict.clone();
    let admitted = tokio::select! {
        _ = shutdown.cancelled() => return,
        _ = evict.cancelled() => {
            tracing::debug!(%addr, "pending peer handshake evicted");
            return;
        }
        r = tokio::time::timeout(ACCEPT_DEADLINE, pre_auth(&node, &gate, stream, addr, origin.proven_key)) => match r {
            Ok(Some(a)) => a,
            Ok(None) => return,
            Err(_) => {
                tracing::debug!(%addr, "peer handshake not done within the deadline");
                return;
            }
        },
    };
    // Authenticated and admitted: no longer a stranger, so it frees its handshake place.
    drop(ticket);
    let Admitted {
        ws,
        first,
        card,
        name,
        admission,
        identity,
    } = admitted;
    let (peer_id, slot, pending_first) = match admission {
        InboundAdmission::New(slot) => {
            let id = node.register_inbound(name.as_deref(), card.clone());
            let pending = if card.is_some() { None } else { Some(first) };
            (id, Some(slot), pending)
        }
        // The card is recorded like any card frame once the session runs.
        InboundAdmission::Replaces(id) => {
            tracing::info!(peer = %id, %addr, "peer reconnected at --max-peers; its new connection replaces the old one");
            (id, None, Some(first))
        }
    };
    node.bind_identity(&peer_id, &identity, origin.proven_key.is_some());
    tracing::info!(peer = %peer_id, %addr, name = name.as_deref().unwrap_or("?"),
        did = identity.check.key.as_ref().map(super::did::did_acp).as_deref().unwrap_or("none"),
        "peer connected (inbound)");
    let (reader, writer) = super::ws::split(ws);
    session::run(
        node,
        Established {
            peer_id,
            reader,
            writer,
            remote: Some(origin.label),
            path: origin.path,
            pending_first,
            slot,
        },
    )
    .await;
}

/// The pre-authentication phase of an accepted connection: the WebSocket upgrade, the
/// token check, the card exchange and the `--max-peers` admission. Returns none when the
/// connection was refused or failed (and has been dealt with).
// The handshake callback's error type is tungstenite's HTTP response; its size is not ours.
#[allow(clippy::result_large_err)]
async fn pre_auth<S>(
    node: &Node,
    gate: &Gate,
    stream: S,
    addr: &str,
    proven_key: Option<[u8; 32]>,
) -> Option<Admitted<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut path = String::new();
    let callback = |req: &Request, resp: Response| {
        path = req.uri().path().to_owned();
        Ok(resp)
    };
    let handshake = tokio_tungstenite::accept_hdr_async_with_config(
        stream,
        callback,
        Some(super::ws::config(node)),
    );
    let mut ws = match handshake.await {
        Ok(ws) => ws,
        Err(e) => {
            tracing::debug!(%addr, "peer handshake failed: {e}");
            return None;
        }
    };
    if !token_matches(&path, node.token()) {
        if let Some(n) = gate.bad_token.hit() {
            tracing::warn!(%addr, refused = n, "peer refused: invalid token ({n} such refusals since the previous report; reported at most every {} s)", LOG_EVERY.as_secs());
        }
        refuse(
            &mut ws,
            frame::invalid_token(),
            CloseCode::Normal,
            "invalid_token",
        )
        .await;
        return None;
    }
    // Normally the card goes first (some clients wait for it). At the cap, the peer's card
    // is read first: whether it gets in depends on its name (a peer replacing its own old
    // connection does), and a refused peer then gets the refusal as its first frame, which
    // our dialler (and the reference's) treat as a failed connect and back off.
    let full = node.peer_has_room(None).is_err();
    if !full && !send_card(node, &mut ws).await {
        return None;
    }
    // The reference sends its card first thing; wait for it so the peer can be recognised
    // (and its offline queue re-attached) by agent name.
    let Some(first) = next_text(&mut ws).await else {
        tracing::debug!(%addr, "peer sent nothing after the handshake");
        return None;
    };
    let card = match frame::parse(&first, node.config().max_msg_size) {
        Ok(frame::Inbound::AgentCard(card)) => Some(card),
        _ => None,
    };
    let name = card
        .as_ref()
        .and_then(|c| c.get("name"))
        .and_then(|n| n.as_str())
        .map(str::to_owned);
    // Its card's signature and its key against the pin, before it takes a place.
    // Over iroh the QUIC handshake already proved a key: the card must be signed by that one
    // (else it is somebody else's card, replayed).
    let checked = node
        .inbound_identity(name.as_deref(), &first, card.is_some())
        .and_then(|id| match proven_key {
            Some(k) if id.check.key.map(|v| v.to_bytes()) != Some(k) => {
                Err(crate::node::error::NodeError::invalid(
                    "its card is not signed by the key its QUIC connection proved",
                ))
            }
            _ => Ok(id),
        });
    let identity = match checked {
        Ok(id) => id,
        Err(e) => {
            let code = if e.code == ErrorCode::KeyMismatch {
                "key_mismatch"
            } else {
                "invalid_card_signature"
            };
            if e.code != ErrorCode::KeyMismatch
                && let Some(n) = gate.bad_identity.hit()
            {
                tracing::warn!(%addr, name = name.as_deref().unwrap_or("?"), refused = n,
                    "peer refused: {} ({n} such refusals since the previous report; reported at most every {} s)", e.message, LOG_EVERY.as_secs());
            }
            let told = if code == "key_mismatch" {
                format!(
                    "this node has pinned another key for agent {:?}; its user must accept the new key",
                    name.as_deref().unwrap_or("?")
                )
            } else {
                e.message.clone()
            };
            refuse(
                &mut ws,
                serde_json::json!({"type": "error", "code": code, "message": told}),
                CloseCode::Policy,
                code,
            )
            .await;
            return None;
        }
    };
    let admission = match node.admit_inbound(name.as_deref()) {
        Ok(a) => a,
        Err(e) => {
            if let Some(n) = gate.over_cap.hit() {
                tracing::warn!(%addr, name = name.as_deref().unwrap_or("?"), refused = n,
                    "peer refused: {} ({n} such refusals since the previous report; reported at most every {} s)", e.message, LOG_EVERY.as_secs());
            }
            refuse(
                &mut ws,
                frame::too_many_peers(),
                CloseCode::Again,
                "too_many_peers: try again later",
            )
            .await;
            return None;
        }
    };
    if full && !send_card(node, &mut ws).await {
        return None;
    }
    // A dialler that holds our key (from our link, or a pin) asked us to prove we hold it.
    if let Some(nonce) = &identity.challenge {
        let answer = node.identity().answer_challenge(nonce);
        if ws.send(Message::text(answer.to_string())).await.is_err() {
            return None;
        }
    }
    Some(Admitted {
        ws,
        first,
        card,
        name,
        admission,
        identity,
    })
}

/// Sends our card; false if the connection is gone.
async fn send_card<S>(node: &Node, ws: &mut WebSocketStream<S>) -> bool
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    ws.send(Message::text(frame::agent_card(&node.card()).to_string()))
        .await
        .is_ok()
}

/// Refuses a connection: the error frame, then a close frame with `code` and `reason`.
async fn refuse<S>(
    ws: &mut WebSocketStream<S>,
    error: serde_json::Value,
    code: CloseCode,
    reason: &str,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let _ = ws.send(Message::text(error.to_string())).await;
    let _ = ws
        .close(Some(CloseFrame {
            code,
            reason: reason.to_owned().into(),
        }))
        .await;
}

async fn next_text<S>(ws: &mut WebSocketStream<S>) -> Option<String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    while let Some(msg) = ws.next().await {
        match msg {
            Ok(Message::Text(t)) => return Some(t.to_string()),
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            _ => return None,
        }
    }
    None
}

/// Starts the dial loop of a peer (the node's dialer hook); `quic` is the node's iroh
/// endpoint when it has relays.
pub fn spawn_dialer(node: Node, peer_id: String, quic: Option<Quic>) {
    let n = node.clone();
    node.background()
        .spawn(async move { dial_loop(n, peer_id, quic).await });
}

async fn dial_loop(node: Node, peer_id: String, quic: Option<Quic>) {
    let shutdown = node.shutdown_token();
    let mut backoff = Duration::from_millis(250);
    while let Some(link_text) = node.should_dial(&peer_id) {
        if node.peer_is_connected(&peer_id) {
            // Another dial loop (a repeated connect) already holds the connection.
            return;
        }
        let link = match Link::parse(&link_text) {
            Ok(l) => l,
            Err(e) => {
                node.note_dial_failure(&peer_id, &e);
                return;
            }
        };
        match node.peer_has_room(Some(&peer_id)) {
            Ok(()) => {
                if dial_once(&node, &peer_id, &link_text, &link, quic.as_ref()).await {
                    backoff = Duration::from_millis(250);
                }
            }
            // At --max-peers: try again later (shown in `/peers` as the last error).
            Err(e) => {
                let n = node.note_dial_failure(&peer_id, &e.message);
                tracing::debug!(peer = %peer_id, attempt = n, "not dialling: {}", e.message);
            }
        }
        if shutdown.is_cancelled() {
            return;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// How a dialled connection reaches the peer.
pub(crate) struct Route {
    /// Shown as the peer's `remote_address`.
    pub remote: String,
    /// The path, and its changes.
    pub path: PathWatch,
}

/// One dial attempt, and the session if it connects: level 1 (a direct TCP connection to the
/// link's host), then, when the link carries route hints and this node has relays, levels 2
/// and 3 over iroh (hole punched, else relayed). True if a session ran (the backoff starts
/// over).
async fn dial_once(
    node: &Node,
    peer_id: &str,
    link_text: &str,
    link: &Link,
    quic: Option<&Quic>,
) -> bool {
    let shutdown = node.shutdown_token();
    let by_key = link.has_route_hints();
    // A link with hints names a host that may sit behind a NAT, where a TCP connect can hang
    // until its timeout: give level 1 a short one before the other levels get their turn.
    let limit = if by_key && quic.is_some() {
        DIRECT_TIMEOUT_WITH_HINTS
    } else {
        HANDSHAKE_TIMEOUT
    };
    let attempt = tokio::time::timeout(
        limit,
        tokio_tungstenite::connect_async_with_config(
            link.ws_url(),
            Some(super::ws::config(node)),
            true,
        ),
    );
    let result = tokio::select! {
        _ = shutdown.cancelled() => return false,
        r = attempt => r,
    };
    let direct_error = match result {
        Ok(Ok((ws, _))) => {
            let route = Route {
                remote: format!("{}:{}", link.host, link.port),
                path: session::fixed_path(ConnectionType::P2pDirect),
            };
            return run_dialled(node, peer_id, link_text, link, ws, route).await;
        }
        Ok(Err(e)) => e.to_string(),
        Err(_) => "connect timed out".to_owned(),
    };
    let direct = format!(
        "not reachable directly at {}:{} ({direct_error})",
        link.host, link.port
    );
    let why = match (quic, by_key) {
        (Some(quic), true) => {
            let dialled = tokio::select! {
                _ = shutdown.cancelled() => return false,
                r = quic.dial(node, link) => r,
            };
            match dialled {
                Ok((ws, route, conn)) => {
                    let ran = run_dialled(node, peer_id, link_text, link, ws, route).await;
                    super::quic::close_gracefully(&conn).await;
                    return ran;
                }
                Err(e) => format!(
                    "{direct}, and not over iroh through {} ({e}); is the relay up, and is the \
                     other node running with --relay?",
                    link.relay.as_deref().unwrap_or("its addresses")
                ),
            }
        }
        (None, true) => format!(
            "{direct}; the link also offers hole punching and relay {}, but this node has no \
             --relay, so it did not try them (start it with --relay URL)",
            link.relay.as_deref().unwrap_or("hints")
        ),
        (_, false) => direct,
    };
    let n = node.note_dial_failure(peer_id, &why);
    tracing::debug!(peer = %peer_id, attempt = n, "dial failed: {why}");
    false
}

/// The handshake of a dialled connection and, once the peer is admitted, its session. True
/// if a session ran.
pub(crate) async fn run_dialled<S>(
    node: &Node,
    peer_id: &str,
    link_text: &str,
    link: &Link,
    mut ws: WebSocketStream<S>,
    route: Route,
) -> bool
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // The host answers a wrong token only after the upgrade (an `error` frame), so the
    // connection counts as up — and the offline queue is handed over — only once the peer's
    // first frame is not a refusal.
    let (first, identity, proven) = match handshake_dialled(node, &mut ws, peer_id, link).await {
        Ok(done) => done,
        Err(why) => {
            let n = node.note_dial_failure(peer_id, &why);
            tracing::warn!(peer = %peer_id, attempt = n, link = %link_text, "dial refused: {why}");
            let _ = ws.close(None).await;
            return false;
        }
    };
    // Checked before dialling too; this is the authoritative check (inbound peers may have
    // taken the last place meanwhile).
    let slot = match node.admit_dialled(peer_id) {
        Ok(slot) => slot,
        Err(e) => {
            let n = node.note_dial_failure(peer_id, &e.message);
            tracing::debug!(peer = %peer_id, attempt = n, "dialled peer not attached: {}", e.message);
            let _ = ws.close(None).await;
            return false;
        }
    };
    node.bind_identity(peer_id, &identity, proven);
    tracing::info!(peer = %peer_id, link = %link_text,
        did = identity.check.key.as_ref().map(super::did::did_acp).as_deref().unwrap_or("none"),
        proven, "peer connected (dialled)");
    let (reader, writer) = super::ws::split(ws);
    session::run(
        node.clone(),
        Established {
            peer_id: peer_id.to_owned(),
            reader,
            writer,
            remote: Some(route.remote),
            path: route.path,
            pending_first: first,
            slot: Some(slot),
        },
    )
    .await;
    true
}

/// Sends our card (with a fresh challenge nonce) on a freshly dialled connection and waits
/// for the peer's first frame; checks the identity it presents (card signature, the key the
/// link names, the pinned key), and when the host must prove it holds its key, waits for
/// its signature over the nonce. Returns the first frame (to be processed once the session
/// runs), the identity and whether it was proven; or why the connection is refused.
async fn handshake_dialled<S>(
    node: &Node,
    ws: &mut WebSocketStream<S>,
    peer_id: &str,
    link: &Link,
) -> Result<(Option<String>, HandshakeIdentity, bool), String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let nonce = ed25519::new_nonce();
    let hello = frame::agent_card_with_challenge(&node.card(), &nonce);
    ws.send(Message::text(hello.to_string()))
        .await
        .map_err(|e| format!("cannot send our card: {e}"))?;
    let first = tokio::time::timeout(FIRST_FRAME_TIMEOUT, next_text(ws))
        .await
        .map_err(|_| "the peer sent nothing after the handshake".to_owned())?
        .ok_or_else(|| "the peer closed the connection after the handshake".to_owned())?;
    let parsed = frame::parse(&first, node.config().max_msg_size);
    if let Ok(frame::Inbound::Error(map)) = &parsed {
        let code = map.get("code").and_then(|c| c.as_str()).unwrap_or("error");
        let hint = match code {
            "invalid_token" => " (is the link current? a restarted reference node has a new token)",
            "too_many_peers" => " (the peer is at its --max-peers; retrying with backoff)",
            "key_mismatch" => {
                " (that node has pinned another key for this one; its user must accept this node's key there)"
            }
            "invalid_card_signature" => " (that node could not verify this node's card)",
            _ => "",
        };
        return Err(format!("peer error: {code}{hint}"));
    }
    let is_card = matches!(&parsed, Ok(frame::Inbound::AgentCard(c)) if c.is_object());
    let identity = node
        .dialled_identity(peer_id, link.did.as_deref(), &first, is_card)
        .map_err(|e| e.message)?;
    let link_did = node.link_key_in_force(peer_id, link.did.as_deref());
    let mut proven = false;
    if identity.wants_proof
        && let Some(key) = identity.check.key
    {
        let who = super::did::did_acp(&key);
        let answer = tokio::time::timeout(FIRST_FRAME_TIMEOUT, next_text(ws))
            .await
            .ok()
            .flatten()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .unwrap_or_default();
        ed25519::check_challenge(&answer, &nonce, &key).map_err(|e| {
            let msg = format!(
                "the host did not prove it holds {who} ({e}); it may be an impostor replaying \
                 that node's card, or a node that cannot answer identity challenges"
            );
            match link_did {
                Some(named) if named == who => {
                    let msg = format!("{msg}; {}", crate::node::link_key::WAIVE_HINT);
                    let refusal = crate::node::link_key::LinkKeyRefusal {
                        named_did: who.clone(),
                        presented_did: Some(who.clone()),
                        unproven: true,
                    };
                    node.note_link_key_refusal(peer_id, refusal, &msg);
                    msg
                }
                _ => msg,
            }
        })?;
        proven = true;
    }
    node.clear_link_key_refusal(peer_id);
    Ok((Some(first), identity, proven))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> Source {
        source_of(addr(s))
    }

    #[test]
    fn a_full_gate_waits_for_young_handshakes_and_evicts_old_ones_of_the_busiest_source() {
        let gate = Arc::new(Gate::default());
        let t0 = Instant::now();
        let good = gate.enter(ip("10.0.0.1"), t0);
        let flood: Vec<Ticket> = (0..MAX_PENDING_HANDSHAKES - 1)
            .map(|_| gate.enter(ip("10.0.0.66"), t0))
            .collect();
        // Full of young handshakes: wait (a burst of real peers only slows down).
        let wait = gate.make_room(t0).expect("full");
        assert!(wait <= EVICTABLE_AFTER && wait > Duration::ZERO);
        assert!(flood.iter().all(|t| !t.evict.is_cancelled()));
        // Once old enough, each new connection evicts the flooder's oldest, never the good
        // peer's handshake, although it is the oldest of all.
        let later = t0 + EVICTABLE_AFTER;
        let mut more = Vec::new();
        for _ in 0..10 {
            assert_eq!(gate.make_room(later), None);
            more.push(gate.enter(ip("10.0.0.66"), later));
        }
        assert!(!good.evict.is_cancelled());
        assert!(flood[..10].iter().all(|t| t.evict.is_cancelled()));
        assert!(flood[10..].iter().all(|t| !t.evict.is_cancelled()));
        assert!(more.iter().all(|t| !t.evict.is_cancelled()));
        assert_eq!(gate.pending.lock().unwrap().0.len(), MAX_PENDING_HANDSHAKES);
        // Dropping tickets (evicted or not) frees places.
        drop(flood);
        drop(more);
        assert_eq!(gate.pending.lock().unwrap().0.len(), 1);
        assert_eq!(gate.make_room(later), None);
        drop(good);
        assert!(gate.pending.lock().unwrap().0.is_empty());
    }

    #[test]
    fn equally_busy_sources_lose_their_oldest_first() {
        let gate = Arc::new(Gate::default());
        let t0 = Instant::now();
        let half = MAX_PENDING_HANDSHAKES / 2;
        let late = t0 + Duration::from_millis(10);
        let b: Vec<Ticket> = (0..half)
            .map(|_| gate.enter(ip("10.0.0.2"), late))
            .collect();
        let a: Vec<Ticket> = (0..half).map(|_| gate.enter(ip("10.0.0.1"), t0)).collect();
        assert_eq!(gate.make_room(t0 + EVICTABLE_AFTER * 2), None);
        assert!(a[0].evict.is_cancelled());
        assert!(b.iter().all(|t| !t.evict.is_cancelled()));
    }

    #[test]
    fn one_ipv6_host_is_one_source() {
        assert_eq!(
            source_of(addr("2001:db8:1:2:aaaa::1")),
            source_of(addr("2001:db8:1:2:bbbb::2"))
        );
        assert_ne!(
            source_of(addr("2001:db8:1:2::1")),
            source_of(addr("2001:db8:1:3::1"))
        );
        assert_eq!(
            source_of(addr("::ffff:10.1.2.3")),
            Source::Ip(addr("10.1.2.3"))
        );
    }
}

//! Peer WebSocket connections: the listener that accepts dialling peers (token checked on the
//! path), the dialler that keeps a connection to every peer we were asked to join (with
//! backoff, also after a restart), and the session loop both share: card exchange, offline
//! queue flush, frame reading, writing, and keep-alive pings.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_util::sync::CancellationToken;

use super::frame;
use super::identity as ed25519;
use super::link::{Link, token_matches};
use crate::node::capacity::HOLD_RETRY_MS;
use crate::node::error::ErrorCode;
use crate::node::identity::HandshakeIdentity;
use crate::node::peers::Outbound;
use crate::node::{FrameOutcome, InboundAdmission, Node, PeerSlot};

/// Interval between keep-alive pings (the reference's 20 s).
const PING_INTERVAL: Duration = Duration::from_secs(20);
/// A connection silent for this long (no frame, no pong to our pings) is considered dead;
/// checked at each ping, so a dead peer is dropped 45–65 s after its last sign of life.
const IDLE_TIMEOUT: Duration = Duration::from_secs(45);
/// Time a dial allows for the TCP connect plus WebSocket handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
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
/// Shortest interval between two log lines about the same kind of refusal; the refusals in
/// between are counted and the count is reported in the next line.
const LOG_EVERY: Duration = Duration::from_secs(5);
/// Longest wait between redials.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Inbound frames between durability barriers, bounding the unflushed backlog per connection.
const FLUSH_EVERY: u32 = 256;

fn ws_config(node: &Node) -> WebSocketConfig {
    // Frames above --max-msg-size are refused by the node with a log line; the transport cap
    // is looser so that such a frame does not tear the connection down.
    let cap = node
        .config()
        .max_msg_size
        .saturating_mul(4)
        .max(16 * 1024 * 1024);
    // tungstenite's default buffers are 128 KiB each, and the read buffer is zero-filled up
    // to its capacity before every read, so every connection kept them resident: 154 kB of
    // RSS per idle peer. 8 KiB holds a typical frame in one read; larger frames grow the
    // buffer as needed. Writes are batched by the session loop and flushed explicitly, so the
    // write buffer only needs to hold one batch before it goes out in one syscall.
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_message_size(Some(cap))
        .max_frame_size(Some(cap))
}

/// Initial read buffer per connection (grows for bigger frames).
const READ_BUFFER: usize = 8 * 1024;
/// Bytes buffered before tungstenite writes to the socket even without a flush.
const WRITE_BUFFER: usize = 64 * 1024;
/// Most frames written between two flushes: a burst of sends leaves in one syscall.
const WRITE_BATCH: usize = 64;
/// How long message frames wait to be confirmed (`acp.ack`) after the first of them was read,
/// so that one commit wait and one ack frame cover many messages also at a low rate: an ack
/// per message cost 11 % of one-connection throughput. Nobody waits on a confirmation; it
/// only bounds what the peer re-sends after a crash.
const CONFIRM_DELAY: Duration = Duration::from_millis(5);

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
                    let ticket = gate.enter(addr.ip(), Instant::now());
                    let node2 = node.clone();
                    let gate2 = gate.clone();
                    node.background().spawn(async move {
                        accept_one(node2, gate2, ticket, stream, addr).await
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

/// Counts one kind of event and lets a log line about it through at most once per
/// [`LOG_EVERY`], so a flood of refusals cannot flood the log.
#[derive(Default)]
struct LogLimit {
    /// When the last line was let through, and the events counted since.
    state: Mutex<(Option<Instant>, u64)>,
}

impl LogLimit {
    /// Counts one event. Returns how many events the line written now should report (this
    /// one and those suppressed since the last line), or none if a line was written lately.
    fn hit(&self) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.1 += 1;
        let now = Instant::now();
        if state
            .0
            .is_some_and(|last| now.duration_since(last) < LOG_EVERY)
        {
            return None;
        }
        state.0 = Some(now);
        Some(std::mem::take(&mut state.1))
    }
}

/// One pending handshake: where it comes from, since when, and how to end it early.
struct Pending {
    source: IpAddr,
    since: Instant,
    evict: CancellationToken,
}

/// The accept loop's bounds on strangers: the places for pending handshakes
/// ([`MAX_PENDING_HANDSHAKES`]) and the rate limits of the refusal log lines.
#[derive(Default)]
struct Gate {
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
struct Ticket {
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

/// The unit handshake places are shared by: an IPv4 address, or the /64 an IPv6 address is
/// in (one host typically holds a whole /64).
fn source_of(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let mut seg = v6.segments();
            seg[4..].fill(0);
            IpAddr::V6(seg.into())
        }
        v4 => v4,
    }
}

impl Gate {
    /// Makes sure a place is free for the next connection. None if one is (after evicting,
    /// if needed, the oldest pending handshake of the source holding the most places, when
    /// it is old enough); else how long to wait at most before trying again (a freed place
    /// is signalled on [`Gate::freed`] sooner).
    fn make_room(&self, now: Instant) -> Option<Duration> {
        let (victim, wait) = {
            let mut guard = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            let pending = &mut guard.0;
            if pending.len() < MAX_PENDING_HANDSHAKES {
                return None;
            }
            // Places per source, and each source's oldest entry (iteration is oldest first).
            let mut sources: BTreeMap<IpAddr, (usize, u64, Instant)> = BTreeMap::new();
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
    fn enter(self: &Arc<Self>, ip: IpAddr, now: Instant) -> Ticket {
        let evict = CancellationToken::new();
        let mut guard = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let (pending, last) = &mut *guard;
        *last += 1;
        let entry = Pending {
            source: source_of(ip),
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
struct Admitted {
    ws: WebSocketStream<TcpStream>,
    /// Its first frame (normally its card).
    first: String,
    card: Option<serde_json::Value>,
    name: Option<String>,
    admission: InboundAdmission,
    /// Who its card says it is, checked against its pin.
    identity: HandshakeIdentity,
}

async fn accept_one(
    node: Node,
    gate: Arc<Gate>,
    ticket: Ticket,
    stream: TcpStream,
    addr: SocketAddr,
) {
    let shutdown = node.shutdown_token();
    let evict = ticket.evict.clone();
    let admitted = tokio::select! {
        _ = shutdown.cancelled() => return,
        _ = evict.cancelled() => {
            tracing::debug!(%addr, "pending peer handshake evicted");
            return;
        }
        r = tokio::time::timeout(ACCEPT_DEADLINE, pre_auth(&node, &gate, stream, addr)) => match r {
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
    node.bind_identity(&peer_id, &identity, false);
    tracing::info!(peer = %peer_id, %addr, name = name.as_deref().unwrap_or("?"),
        did = identity.check.key.as_ref().map(super::did::did_acp).as_deref().unwrap_or("none"),
        "peer connected (inbound)");
    run_session(
        node,
        peer_id,
        ws,
        Some(addr.to_string()),
        pending_first,
        slot,
    )
    .await;
}

/// The pre-authentication phase of an accepted connection: the WebSocket upgrade, the
/// token check, the card exchange and the `--max-peers` admission. Returns none when the
/// connection was refused or failed (and has been dealt with).
// The handshake callback's error type is tungstenite's HTTP response; its size is not ours.
#[allow(clippy::result_large_err)]
async fn pre_auth(
    node: &Node,
    gate: &Gate,
    stream: TcpStream,
    addr: SocketAddr,
) -> Option<Admitted> {
    let _ = stream.set_nodelay(true);
    let mut path = String::new();
    let callback = |req: &Request, resp: Response| {
        path = req.uri().path().to_owned();
        Ok(resp)
    };
    let handshake =
        tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(ws_config(node)));
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
    let identity = match node.inbound_identity(name.as_deref(), &first, card.is_some()) {
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

/// Starts the dial loop of a peer (the node's dialer hook).
pub fn spawn_dialer(node: Node, peer_id: String) {
    let n = node.clone();
    node.background()
        .spawn(async move { dial_loop(n, peer_id).await });
}

async fn dial_loop(node: Node, peer_id: String) {
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
                if dial_once(&node, &peer_id, &link_text, &link).await {
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

/// One dial attempt, and the session if it connects. True if a session ran (the backoff
/// starts over).
async fn dial_once(node: &Node, peer_id: &str, link_text: &str, link: &Link) -> bool {
    let shutdown = node.shutdown_token();
    let attempt = tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        tokio_tungstenite::connect_async_with_config(link.ws_url(), Some(ws_config(node)), true),
    );
    let result = tokio::select! {
        _ = shutdown.cancelled() => return false,
        r = attempt => r,
    };
    let mut ws = match result {
        Ok(Ok((ws, _))) => ws,
        Ok(Err(e)) => {
            let n = node.note_dial_failure(peer_id, &e.to_string());
            tracing::debug!(peer = %peer_id, attempt = n, "dial failed: {e}");
            return false;
        }
        Err(_) => {
            node.note_dial_failure(peer_id, "connect timed out");
            return false;
        }
    };
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
    let remote = Some(format!("{}:{}", link.host, link.port));
    run_session(
        node.clone(),
        peer_id.to_owned(),
        ws,
        remote,
        first,
        Some(slot),
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
            format!(
                "the host did not prove it holds {who} ({e}); it may be an impostor replaying \
                 that node's card, or a node that cannot answer identity challenges (the Python \
                 reference cannot: dial it with a link without ?did=)"
            )
        })?;
        proven = true;
    }
    Ok((Some(first), identity, proven))
}

/// Runs one established connection until it ends, then detaches it from the node. `slot`
/// is its `--max-peers` place, given back once the connection is attached.
async fn run_session<S>(
    node: Node,
    peer_id: String,
    ws: WebSocketStream<S>,
    remote: Option<String>,
    pending_first: Option<String>,
    slot: Option<PeerSlot>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // What the peer did not confirm before the last connection ended goes out first, oldest
    // first, then the offline queue (which attaching hands over), then new sends.
    let resend = node.unconfirmed_frames(&peer_id).await.unwrap_or_else(|e| {
        tracing::warn!(peer = %peer_id, "cannot read unconfirmed messages: {e}");
        Vec::new()
    });
    let capacity = node.config().offline_queue_limit + 1024 + resend.len();
    let (tx, mut rx) = mpsc::channel::<Outbound>(capacity);
    if !resend.is_empty() {
        tracing::info!(peer = %peer_id, count = resend.len(), "re-sending messages the peer did not confirm");
    }
    for out in resend {
        let _ = tx.try_send(out);
    }
    // The first frame (normally the card, verified in the handshake) is recorded before the
    // peer shows as connected, so whoever sees it connected also sees its name and card.
    if let Some(first) = pending_first {
        node.on_frame(&peer_id, &first);
    }
    let generation = node.attach_connection(&peer_id, tx, remote);
    // Attached: the connected flag now holds the place the slot reserved.
    drop(slot);
    let (mut sink, mut stream) = ws.split();
    let shutdown = node.shutdown_token();
    let mut ping = tokio::time::interval(PING_INTERVAL);
    ping.tick().await;
    let mut last_heard = tokio::time::Instant::now();
    let mut since_flush = 0u32;
    let mut leftovers: Vec<Outbound> = Vec::new();
    // Message frames read but not yet confirmed to the peer (see `confirm`), and those this
    // node could not store (its store is full), for which the peer is told to hold them.
    let mut to_confirm: Vec<String> = Vec::new();
    let mut to_hold: Vec<String> = Vec::new();
    // When the oldest of them was read: they are confirmed at most CONFIRM_DELAY later.
    let mut confirm_by: Option<tokio::time::Instant> = None;

    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => {
                let _ = sink.send(Message::Close(None)).await;
                break;
            }
            out = rx.recv() => {
                let Some(out) = out else { break };
                // Take whatever else is already waiting, feed it all, flush once.
                let mut batch = vec![out];
                while batch.len() < WRITE_BATCH {
                    match rx.try_recv() {
                        Ok(more) => batch.push(more),
                        Err(_) => break,
                    }
                }
                if let Err(e) = write_batch(&node, &mut sink, &batch).await {
                    tracing::info!(peer = %peer_id, "write failed: {e}");
                    // Nothing in the batch is known to have arrived: all of it goes back to
                    // the queue. A message that did arrive is dropped as a duplicate when it
                    // comes again (the peer deduplicates message ids).
                    leftovers.extend(batch);
                    break;
                }
                for out in &batch {
                    if let Outbound::Queued(row) = out {
                        node.queued_frame_sent(&peer_id, row.id);
                    }
                }
            }
            msg = stream.next() => {
                last_heard = tokio::time::Instant::now();
                match msg {
                    Some(Ok(Message::Text(text))) => {
                        match node.on_frame(&peer_id, text.as_str()) {
                            FrameOutcome::Message(id) => to_confirm.push(id),
                            FrameOutcome::Held(id) => to_hold.push(id),
                            _ => {}
                        }
                        if !to_confirm.is_empty() || !to_hold.is_empty() {
                            confirm_by.get_or_insert_with(|| {
                                tokio::time::Instant::now() + CONFIRM_DELAY
                            });
                        }
                        since_flush += 1;
                        if to_confirm.len() + to_hold.len() >= FLUSH_EVERY as usize {
                            since_flush = 0;
                            confirm_by = None;
                            if confirm(&node, &peer_id, &mut sink, &mut to_confirm, &mut to_hold).await.is_err() {
                                break;
                            }
                        } else if since_flush >= FLUSH_EVERY {
                            since_flush = 0;
                            let _ = node.store().flush().await;
                        }
                    }
                    Some(Ok(Message::Binary(b))) => {
                        node.reject_binary(&peer_id, b.len());
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                    Some(Ok(Message::Close(_))) | None => break,
                    Some(Err(e)) => {
                        tracing::info!(peer = %peer_id, "connection error: {e}");
                        break;
                    }
                }
            }
            _ = ping.tick() => {
                node.pump_queue(&peer_id);
                if last_heard.elapsed() > IDLE_TIMEOUT {
                    tracing::info!(peer = %peer_id, "peer silent too long; dropping connection");
                    break;
                }
                if sink.send(Message::Ping(Vec::new().into())).await.is_err() {
                    break;
                }
            }
            _ = tokio::time::sleep_until(confirm_by.unwrap_or_else(tokio::time::Instant::now)),
                if confirm_by.is_some() =>
            {
                confirm_by = None;
                if confirm(&node, &peer_id, &mut sink, &mut to_confirm, &mut to_hold).await.is_err() {
                    break;
                }
            }
        }
    }
    rx.close();
    while let Ok(out) = rx.try_recv() {
        leftovers.push(out);
    }
    let _ = node.store().flush().await;
    node.detach_connection(&peer_id, generation, leftovers);
    tracing::info!(peer = %peer_id, "peer disconnected");
}

/// Tells a peer that confirms delivery that the message frames in `ids` are committed to the
/// store: waits for the store to commit everything written so far, then sends one `acp.ack`.
/// Until then the peer keeps them and re-sends them after a reconnect, so a crash of this
/// node between reading a frame and committing it loses nothing. Peers that do not confirm
/// delivery (the Python reference) get nothing and cost no wait.
///
/// When the store is full (the commit failed for lack of space, or `held` names frames the
/// node did not even take), the peer gets a `storage_full` error frame naming them instead:
/// it keeps them unconfirmed and sends them again in [`HOLD_RETRY_MS`]; what this node had
/// taken stays with its writer and is committed once space returns, so the repeat is then
/// confirmed. A peer that does not confirm delivery gets the same frame (it logs it).
async fn confirm<K>(
    node: &Node,
    peer_id: &str,
    sink: &mut K,
    ids: &mut Vec<String>,
    held: &mut Vec<String>,
) -> Result<(), tokio_tungstenite::tungstenite::Error>
where
    K: futures_util::Sink<Message, Error = tokio_tungstenite::tungstenite::Error> + Unpin,
{
    if !node.peer_confirms_delivery(peer_id) {
        ids.clear();
    } else if !ids.is_empty() {
        match node.store().flush().await {
            Ok(()) => {
                let frame = frame::ack(ids);
                ids.clear();
                sink.feed(Message::text(frame.to_string())).await?;
            }
            Err(e) if e.code == ErrorCode::StorageFull => held.append(ids),
            Err(_) => {
                // Not committed: say nothing, the peer re-sends after the next reconnect.
                ids.clear();
            }
        }
    }
    if !held.is_empty() {
        let message = node.store().capacity().error().message;
        let frame = frame::hold("storage_full", held, HOLD_RETRY_MS, &message);
        held.clear();
        sink.feed(Message::text(frame.to_string())).await?;
    }
    sink.flush().await
}

/// Writes `batch` and flushes once, so a burst of frames costs one write syscall.
async fn write_batch<K>(
    node: &Node,
    sink: &mut K,
    batch: &[Outbound],
) -> Result<(), tokio_tungstenite::tungstenite::Error>
where
    K: futures_util::Sink<Message, Error = tokio_tungstenite::tungstenite::Error> + Unpin,
{
    for out in batch {
        let text = match out {
            Outbound::Frame { json, .. } => json.to_string(),
            Outbound::Queued(row) => node.queued_frame_text(row),
        };
        sink.feed(Message::text(text)).await?;
    }
    sink.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
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
            source_of(ip("2001:db8:1:2:aaaa::1")),
            source_of(ip("2001:db8:1:2:bbbb::2"))
        );
        assert_ne!(
            source_of(ip("2001:db8:1:2::1")),
            source_of(ip("2001:db8:1:3::1"))
        );
        assert_eq!(source_of(ip("::ffff:10.1.2.3")), ip("10.1.2.3"));
    }

    #[test]
    fn log_limit_reports_the_first_event_then_aggregates() {
        let limit = LogLimit::default();
        assert_eq!(limit.hit(), Some(1));
        for _ in 0..1000 {
            assert_eq!(limit.hit(), None);
        }
        // Pretend the last line is old: the next line carries the suppressed count.
        limit.state.lock().unwrap().0 = Instant::now().checked_sub(LOG_EVERY);
        assert_eq!(limit.hit(), Some(1001));
        assert_eq!(limit.hit(), None);
    }
}

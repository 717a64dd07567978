//! Peer WebSocket connections: the listener that accepts dialling peers (token checked on the
//! path), the dialler that keeps a connection to every peer we were asked to join (with
//! backoff, also after a restart), and the session loop both share: card exchange, offline
//! queue flush, frame reading, writing, and keep-alive pings.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::frame;
use super::link::{Link, token_matches};
use crate::node::Node;
use crate::node::peers::Outbound;

/// Interval between keep-alive pings (the reference's 20 s).
const PING_INTERVAL: Duration = Duration::from_secs(20);
/// A connection silent for this long (no frame, no pong to our pings) is considered dead;
/// checked at each ping, so a dead peer is dropped 45–65 s after its last sign of life.
const IDLE_TIMEOUT: Duration = Duration::from_secs(45);
/// Time allowed for the TCP connect plus WebSocket handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an accepted connection may take to send its first frame (its card).
const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(10);
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
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, addr)) => {
                    let node2 = node.clone();
                    node.background().spawn(async move { accept_one(node2, stream, addr).await });
                }
                Err(e) => {
                    tracing::warn!("peer accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

// The handshake callback's error type is tungstenite's HTTP response; its size is not ours.
#[allow(clippy::result_large_err)]
async fn accept_one(node: Node, stream: TcpStream, addr: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let mut path = String::new();
    let callback = |req: &Request, resp: Response| {
        path = req.uri().path().to_owned();
        Ok(resp)
    };
    let handshake =
        tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(ws_config(&node)));
    let mut ws = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            tracing::debug!(%addr, "peer handshake failed: {e}");
            return;
        }
        Err(_) => {
            tracing::debug!(%addr, "peer handshake timed out");
            return;
        }
    };
    if !token_matches(&path, node.token()) {
        tracing::warn!(%addr, "peer refused: invalid token");
        let _ = ws
            .send(Message::text(frame::invalid_token().to_string()))
            .await;
        let _ = ws
            .close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
                code: tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Normal,
                reason: "invalid_token".into(),
            }))
            .await;
        return;
    }
    if ws
        .send(Message::text(frame::agent_card(&node.card()).to_string()))
        .await
        .is_err()
    {
        return;
    }
    // The reference sends its card first thing; wait for it so the peer can be recognised
    // (and its offline queue re-attached) by agent name.
    let first = match tokio::time::timeout(FIRST_FRAME_TIMEOUT, next_text(&mut ws)).await {
        Ok(Some(text)) => text,
        _ => {
            tracing::debug!(%addr, "peer sent nothing after the handshake");
            return;
        }
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
    let peer_id = node.register_inbound(name.as_deref(), card.clone());
    tracing::info!(peer = %peer_id, %addr, name = name.as_deref().unwrap_or("?"), "peer connected (inbound)");
    let pending_first = if card.is_some() { None } else { Some(first) };
    run_session(node, peer_id, ws, Some(addr.to_string()), pending_first).await;
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
        let attempt = tokio::time::timeout(
            HANDSHAKE_TIMEOUT,
            tokio_tungstenite::connect_async_with_config(
                link.ws_url(),
                Some(ws_config(&node)),
                true,
            ),
        );
        let result = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = attempt => r,
        };
        match result {
            Ok(Ok((mut ws, _))) => {
                // The host answers a wrong token only after the upgrade (an `error` frame),
                // so the connection counts as up — and the offline queue is handed over —
                // only once the peer's first frame is not a refusal.
                match handshake_dialled(&node, &mut ws).await {
                    Ok(first) => {
                        tracing::info!(peer = %peer_id, link = %link_text, "peer connected (dialled)");
                        backoff = Duration::from_millis(250);
                        let remote = Some(format!("{}:{}", link.host, link.port));
                        run_session(node.clone(), peer_id.clone(), ws, remote, first).await;
                    }
                    Err(why) => {
                        let n = node.note_dial_failure(&peer_id, &why);
                        tracing::warn!(peer = %peer_id, attempt = n, link = %link_text, "dial refused: {why}");
                        let _ = ws.close(None).await;
                    }
                }
            }
            Ok(Err(e)) => {
                let n = node.note_dial_failure(&peer_id, &e.to_string());
                tracing::debug!(peer = %peer_id, attempt = n, "dial failed: {e}");
            }
            Err(_) => {
                node.note_dial_failure(&peer_id, "connect timed out");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Sends our card on a freshly dialled connection and waits for the peer's first frame.
/// Returns that frame (to be processed once the session runs) or why the peer refused us.
async fn handshake_dialled<S>(
    node: &Node,
    ws: &mut WebSocketStream<S>,
) -> Result<Option<String>, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    ws.send(Message::text(frame::agent_card(&node.card()).to_string()))
        .await
        .map_err(|e| format!("cannot send our card: {e}"))?;
    let first = tokio::time::timeout(FIRST_FRAME_TIMEOUT, next_text(ws))
        .await
        .map_err(|_| "the peer sent nothing after the handshake".to_owned())?
        .ok_or_else(|| "the peer closed the connection after the handshake".to_owned())?;
    if let Ok(frame::Inbound::Error(map)) = frame::parse(&first, node.config().max_msg_size) {
        let code = map.get("code").and_then(|c| c.as_str()).unwrap_or("error");
        return Err(format!(
            "peer error: {code} (is the link current? a restarted reference node has a new token)"
        ));
    }
    Ok(Some(first))
}

/// Runs one established connection until it ends, then detaches it from the node.
async fn run_session<S>(
    node: Node,
    peer_id: String,
    ws: WebSocketStream<S>,
    remote: Option<String>,
    pending_first: Option<String>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let capacity = node.config().offline_queue_limit + 1024;
    let (tx, mut rx) = mpsc::channel::<Outbound>(capacity);
    let generation = node.attach_connection(&peer_id, tx, remote);
    let (mut sink, mut stream) = ws.split();
    let shutdown = node.shutdown_token();
    let mut ping = tokio::time::interval(PING_INTERVAL);
    ping.tick().await;
    let mut last_heard = tokio::time::Instant::now();
    let mut since_flush = 0u32;
    let mut leftovers: Vec<Outbound> = Vec::new();

    if let Some(first) = pending_first {
        node.on_frame(&peer_id, &first);
    }
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
                        node.on_frame(&peer_id, text.as_str());
                        since_flush += 1;
                        if since_flush >= FLUSH_EVERY {
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

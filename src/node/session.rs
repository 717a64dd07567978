//! The session of one established peer connection, whatever carries it: re-send what the
//! peer did not confirm, attach (which hands over the offline queue), then read frames,
//! write batches, confirm committed messages (`acp.ack`) and ping until the connection ends,
//! and detach with whatever was not written. The transport (a WebSocket over TCP, or the
//! same WebSocket framing over an iroh QUIC stream) only has to move text frames: it
//! implements [`FrameReader`] and [`FrameWriter`] (see `wire::ws`).

use std::future::Future;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::capacity::HOLD_RETRY_MS;
use super::error::ErrorCode;
use super::peers::{ConnectionType, Outbound};
use super::quota::{self, QUOTA_RETRY_MS, Refusal};
use super::{FrameOutcome, Node, PeerSlot};
use crate::wire::frame;

/// Interval between keep-alive pings (the reference's 20 s).
const PING_INTERVAL: Duration = Duration::from_secs(20);
/// A connection silent for this long (no frame, no pong to our pings) is considered dead;
/// checked at each ping, so a dead peer is dropped 45–65 s after its last sign of life.
const IDLE_TIMEOUT: Duration = Duration::from_secs(45);
/// Inbound frames between durability barriers, bounding the unflushed backlog per connection.
const FLUSH_EVERY: u32 = 256;
/// Most frames written between two flushes: a burst of sends leaves in one syscall.
const WRITE_BATCH: usize = 64;
/// How long message frames wait to be confirmed (`acp.ack`) after the first of them was read,
/// so that one commit wait and one ack frame cover many messages also at a low rate: an ack
/// per message cost 11 % of one-connection throughput. Nobody waits on a confirmation; it
/// only bounds what the peer re-sends after a crash.
const CONFIRM_DELAY: Duration = Duration::from_millis(5);

/// What a transport read from the peer; `T` is the transport's own text buffer, so a frame
/// is not copied on its way in.
#[derive(Debug)]
pub enum Incoming<T> {
    /// A text frame: an ACP frame (JSON).
    Text(T),
    /// A binary frame of this many bytes (the protocol has none; refused with a log line).
    Binary(usize),
    /// A ping, pong or other control frame: a sign of life, nothing to process.
    Control,
    /// The peer closed the connection.
    Closed,
    /// The connection failed.
    Failed(String),
}

/// The reading half of a connection. `next_frame` must be cancel-safe: the session polls it
/// in a `select!` next to its writes and timers.
pub trait FrameReader: Send {
    /// The text of a frame as the transport holds it.
    type Text: AsRef<str> + Send;
    /// The next thing the peer sent.
    fn next_frame(&mut self) -> impl Future<Output = Incoming<Self::Text>> + Send;
}

/// The writing half of a connection.
pub trait FrameWriter: Send {
    /// Queues a text frame without flushing (a batch leaves in one write).
    fn feed(&mut self, text: String) -> impl Future<Output = Result<(), String>> + Send;
    /// Writes out everything fed.
    fn flush(&mut self) -> impl Future<Output = Result<(), String>> + Send;
    /// Sends one text frame now.
    fn send(&mut self, text: String) -> impl Future<Output = Result<(), String>> + Send {
        async move {
            self.feed(text).await?;
            self.flush().await
        }
    }
    /// Sends a keep-alive ping.
    fn ping(&mut self) -> impl Future<Output = Result<(), String>> + Send;
    /// Closes the connection politely.
    fn close(&mut self) -> impl Future<Output = ()> + Send;
}

/// How a connection reaches the peer, as it is now and as it changes (iroh upgrades a
/// relayed connection to a hole-punched one while the session runs).
pub type PathWatch = watch::Receiver<ConnectionType>;

/// A path that never changes (a TCP connection).
pub fn fixed_path(kind: ConnectionType) -> PathWatch {
    watch::channel(kind).1
}

/// An established connection, ready for its session.
pub struct Established<R, W> {
    /// The peer's id in the peer table.
    pub peer_id: String,
    /// Reading half.
    pub reader: R,
    /// Writing half.
    pub writer: W,
    /// The remote address shown in `/peers` (a socket address, or the iroh path).
    pub remote: Option<String>,
    /// How the connection reaches the peer.
    pub path: PathWatch,
    /// The peer's first frame when the handshake read it (normally its card), processed
    /// before the peer shows as connected.
    pub pending_first: Option<String>,
    /// Its `--max-peers` place, given back once the connection is attached.
    pub slot: Option<PeerSlot>,
}

/// Runs one established connection until it ends, then detaches it from the node.
pub async fn run<R: FrameReader, W: FrameWriter>(node: Node, conn: Established<R, W>) {
    let Established {
        peer_id,
        mut reader,
        mut writer,
        remote,
        mut path,
        pending_first,
        slot,
    } = conn;
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
    let kind = *path.borrow_and_update();
    let generation = node.attach_connection(&peer_id, tx, remote, kind);
    // Attached: the connected flag now holds the place the slot reserved.
    drop(slot);
    let shutdown = node.shutdown_token();
    let mut ping = tokio::time::interval(PING_INTERVAL);
    ping.tick().await;
    let mut last_heard = tokio::time::Instant::now();
    let mut since_flush = 0u32;
    let mut leftovers: Vec<Outbound> = Vec::new();
    // Message frames read but not yet confirmed to the peer (see `confirm`), and those this
    // node could not store (its store is full), for which the peer is told to hold them.
    let mut to_confirm: Vec<String> = Vec::new();
    let mut to_hold = Holds::default();
    // When the oldest of them was read: they are confirmed at most CONFIRM_DELAY later.
    let mut confirm_by: Option<tokio::time::Instant> = None;
    // Whether the path can still change (its sender is alive).
    let mut path_open = true;

    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => {
                writer.close().await;
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
                if let Err(e) = write_batch(&node, &mut writer, &batch).await {
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
            incoming = reader.next_frame() => {
                last_heard = tokio::time::Instant::now();
                match incoming {
                    Incoming::Text(text) => {
                        match node.on_frame(&peer_id, text.as_ref()) {
                            FrameOutcome::Message(id) => to_confirm.push(id),
                            FrameOutcome::Held(id) => to_hold.full.push(id),
                            FrameOutcome::Limited { id, refusal, size } => {
                                to_hold.limited(id, refusal, size)
                            }
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
                            if confirm(&node, &peer_id, &mut writer, &mut to_confirm, &mut to_hold).await.is_err() {
                                break;
                            }
                        } else if since_flush >= FLUSH_EVERY {
                            since_flush = 0;
                            let _ = node.store().flush().await;
                        }
                    }
                    Incoming::Binary(len) => node.reject_binary(&peer_id, len),
                    Incoming::Control => {}
                    Incoming::Closed => break,
                    Incoming::Failed(e) => {
                        tracing::info!(peer = %peer_id, "connection error: {e}");
                        break;
                    }
                }
            }
            changed = path.changed(), if path_open => {
                match changed {
                    Ok(()) => {
                        let kind = *path.borrow_and_update();
                        node.set_connection_type(&peer_id, generation, kind);
                    }
                    Err(_) => path_open = false,
                }
            }
            _ = ping.tick() => {
                node.pump_queue(&peer_id);
                if last_heard.elapsed() > IDLE_TIMEOUT {
                    tracing::info!(peer = %peer_id, "peer silent too long; dropping connection");
                    break;
                }
                if writer.ping().await.is_err() {
                    break;
                }
            }
            _ = tokio::time::sleep_until(confirm_by.unwrap_or_else(tokio::time::Instant::now)),
                if confirm_by.is_some() =>
            {
                confirm_by = None;
                if confirm(&node, &peer_id, &mut writer, &mut to_confirm, &mut to_hold).await.is_err() {
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

/// Message frames this node did not take, by why; the peer is told to send them again.
#[derive(Debug, Default)]
struct Holds {
    /// The store is full (`storage_full`).
    full: Vec<String>,
    /// Over the peer's rates (`rate_limited`), their bytes, and the longest wait asked.
    rate: Vec<String>,
    rate_bytes: u64,
    rate_wait_ms: u64,
    /// Over the peer's stored bytes (`quota_exceeded`).
    quota: Vec<String>,
}

impl Holds {
    fn limited(&mut self, id: String, refusal: Refusal, size: u64) {
        match refusal {
            Refusal::RateLimited(ms) => {
                self.rate.push(id);
                self.rate_bytes += size;
                self.rate_wait_ms = self.rate_wait_ms.max(ms);
            }
            Refusal::QuotaExceeded => self.quota.push(id),
        }
    }

    fn len(&self) -> usize {
        self.full.len() + self.rate.len() + self.quota.len()
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
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
///
/// Frames over the peer's limits get the same kind of frame with the code `rate_limited`
/// (and a wait long enough for the buckets to take them all) or `quota_exceeded`.
async fn confirm<W: FrameWriter>(
    node: &Node,
    peer_id: &str,
    writer: &mut W,
    ids: &mut Vec<String>,
    held: &mut Holds,
) -> Result<(), String> {
    if !node.peer_confirms_delivery(peer_id) {
        ids.clear();
    } else if !ids.is_empty() {
        match node.store().flush().await {
            Ok(()) => {
                let frame = frame::ack(ids);
                ids.clear();
                writer.feed(frame.to_string()).await?;
            }
            Err(e) if e.code == ErrorCode::StorageFull => held.full.append(ids),
            Err(_) => {
                // Not committed: say nothing, the peer re-sends after the next reconnect.
                ids.clear();
            }
        }
    }
    if !held.full.is_empty() {
        let message = node.store().capacity().error().message;
        let frame = frame::hold("storage_full", &held.full, HOLD_RETRY_MS, &message);
        writer.feed(frame.to_string()).await?;
    }
    let quotas = node.quotas();
    if !held.rate.is_empty() {
        let ms = quotas.rate_retry_ms(held.rate.len() as u64, held.rate_bytes, held.rate_wait_ms);
        let refusal = Refusal::RateLimited(ms);
        let message = quota::refusal_message(refusal, &quotas.limits(), 0);
        let frame = frame::hold(refusal.code(), &held.rate, ms, &message);
        writer.feed(frame.to_string()).await?;
    }
    if !held.quota.is_empty() {
        let stored = node.store().stored_bytes().get(peer_id);
        let refusal = Refusal::QuotaExceeded;
        let message = quota::refusal_message(refusal, &quotas.limits(), stored);
        let frame = frame::hold(refusal.code(), &held.quota, QUOTA_RETRY_MS, &message);
        writer.feed(frame.to_string()).await?;
    }
    *held = Holds::default();
    writer.flush().await
}

/// Writes `batch` and flushes once, so a burst of frames costs one write syscall.
async fn write_batch<W: FrameWriter>(
    node: &Node,
    writer: &mut W,
    batch: &[Outbound],
) -> Result<(), String> {
    for out in batch {
        let text = match out {
            Outbound::Frame { json, .. } => json.to_string(),
            Outbound::Queued(row) => node.queued_frame_text(row),
        };
        writer.feed(text).await?;
    }
    writer.flush().await
}

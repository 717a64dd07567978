//! The relay node: one handle ([`Node`]) that owns all state and every rule. The HTTP API, the
//! MCP tools and the peer WebSocket all call into it, so they can never disagree.
//!
//! Files: `message`/`task`/`card` (models), `peers`/`queue` (peer table, offline queue),
//! `unconfirmed` (what a peer has not confirmed storing: re-sent after a reconnect),
//! `events` (event log), `store` (SQLite), `wal_vfs` (one write per commit's WAL frames),
//! `error` (codes), and the operations split by concern: `deliver` (sending), `inbound`
//! (frames from peers), `tasks` (task operations), `history` (reading messages back),
//! `identity` (this node's key and dids, peers' verified keys and their pins, delegation).

pub mod bridged;
pub mod bucket;
pub mod capacity;
pub mod card;
pub mod cron;
mod deliver;
pub mod error;
pub mod events;
mod extensions;
pub mod handles;
mod held;
mod history;
pub mod identity;
pub mod ids;
mod inbound;
pub mod link_key;
pub(crate) mod log_limit;
pub mod message;
pub mod peers;
pub mod queue;
pub mod quota;
pub mod retention;
pub mod search;
mod search_plan;
mod send_batch;
pub mod session;
pub mod store;
pub mod task;
mod tasks;
pub mod unconfirmed;
mod wal_vfs;
pub mod webhooks;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use serde_json::{Value, json};
use tokio::sync::{Notify, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use deliver::{Delivery, SendOutcome};
pub use history::{MessagePage, MessageQuery, ReceiveFilter};
pub use inbound::FrameOutcome;
pub use send_batch::SendBatch;
pub use tasks::TaskQuery;

use crate::config::Config;
use crate::wire::identity::Identity;
use crate::wire::link::Link;
use crate::wire::sign::Signer;
use card::{Card, CardEdits};
use error::{ErrorCode, NodeError, NodeResult};
use events::EventLog;
use peers::{Peer, PeerRecord, PeerTable};
use store::{QueuedRow, Store, WriteOp};
use task::Task;

/// How many recent message ids are remembered for dedup (inbound) and idempotency (outbound).
const RECENT_IDS: usize = 20_000;

/// A bounded set of recently seen ids, oldest evicted first.
#[derive(Default)]
pub(crate) struct RecentIds {
    order: VecDeque<String>,
    seen: HashMap<String, i64>,
}

impl RecentIds {
    /// Remembers `id` with a value; returns false if it was already there.
    pub(crate) fn insert(&mut self, id: &str, value: i64) -> bool {
        if self.seen.contains_key(id) {
            return false;
        }
        self.seen.insert(id.to_owned(), value);
        self.order.push_back(id.to_owned());
        if self.order.len() > RECENT_IDS
            && let Some(old) = self.order.pop_front()
        {
            self.seen.remove(&old);
        }
        true
    }

    /// Forgets `id` (a reservation that was not used).
    pub(crate) fn forget(&mut self, id: &str) {
        if self.seen.remove(id).is_some() {
            self.order.retain(|o| o != id);
        }
    }

    /// The value stored for `id`.
    pub(crate) fn get(&self, id: &str) -> Option<i64> {
        self.seen.get(id).copied()
    }
}

/// Counters reported by `/status`.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) messages_sent: AtomicU64,
    pub(crate) messages_received: AtomicU64,
    pub(crate) messages_deduped: AtomicU64,
    pub(crate) frames_rejected: AtomicU64,
    pub(crate) reconnect_count: AtomicU64,
    pub(crate) tasks_created: AtomicU64,
}

pub(crate) struct Inner {
    pub(crate) config: Config,
    pub(crate) token: String,
    pub(crate) session_id: String,
    pub(crate) started_at: f64,
    pub(crate) started_iso: String,
    pub(crate) store: Store,
    /// What the store keeps, and what pruning removed.
    pub(crate) retention: retention::Retention,
    /// What each peer may send in (rates, stored bytes), and what was refused.
    pub(crate) quotas: quota::Quotas,
    pub(crate) events: EventLog,
    pub(crate) card: RwLock<Card>,
    pub(crate) peers: Mutex<PeerTable>,
    pub(crate) tasks: Mutex<HashMap<String, Task>>,
    /// Inbound messages `/recv` has not handed out yet (they live in the store).
    pub(crate) unread: std::sync::atomic::AtomicI64,
    /// Serializes `/recv` so two callers never get the same message.
    pub(crate) recv_lock: tokio::sync::Mutex<()>,
    pub(crate) inbox_notify: Notify,
    pub(crate) seen_inbound: Mutex<RecentIds>,
    pub(crate) sent_ids: Mutex<RecentIds>,
    pub(crate) server_seq: AtomicU64,
    pub(crate) queue_seq: AtomicU64,
    pub(crate) sync_pending: Mutex<HashMap<String, oneshot::Sender<Value>>>,
    pub(crate) signer: Option<Signer>,
    /// This node's Ed25519 keypair (its did).
    pub(crate) identity: Identity,
    /// Signed delegation entries this node holds (persisted in `meta`).
    pub(crate) delegation: Mutex<Vec<Value>>,
    pub(crate) counters: Counters,
    /// Registered push webhooks and their delivery.
    pub(crate) webhooks: webhooks::Webhooks,
    pub(crate) shutdown: CancellationToken,
    pub(crate) background: TaskTracker,
    pub(crate) ws_port: OnceLock<u16>,
    pub(crate) http_port: OnceLock<u16>,
    pub(crate) link_host: String,
    /// What the link tells a dialler about reaching this node over iroh (set by the wire
    /// layer as the endpoint learns its addresses; empty without --relay).
    route_hints: RwLock<RouteHints>,
    /// Hook the wire layer installs so the node can start dialling a peer.
    pub(crate) dialer: OnceLock<Box<dyn Fn(Node, String) + Send + Sync>>,
    /// LAN discovery, when `--lan-discovery` started it.
    lan: OnceLock<Arc<crate::lan::Discovery>>,
    /// Exclusive lock on the data dir, held while the node lives.
    _lock: std::fs::File,
}

/// How a dialler reaches this node when no direct connection does: the link's `relay=` and
/// `addr=` hints.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteHints {
    /// The relay this node is reachable through.
    pub relay: Option<String>,
    /// UDP addresses of its iroh endpoint.
    pub addrs: Vec<std::net::SocketAddr>,
}

/// Handle to a running relay node. Cheap to clone; every front-end holds one.
#[derive(Clone)]
pub struct Node {
    pub(crate) inner: Arc<Inner>,
}

impl Node {
    /// Opens the store, restores tokens, peers, tasks, the unread count and the offline queue, and
    /// returns a node that is not yet listening (the wire layer binds and attaches).
    pub fn open(mut config: Config) -> NodeResult<Node> {
        let lock = lock_data_dir(&mut config)?;
        let store = Store::open(&config.data_dir.join("node.db"))?;
        let restored = store.read_now(restore)?;
        let retention_start = retention::starting(
            config.retention,
            config.retention_named,
            restored.retention_saved,
        );
        store
            .capacity()
            .set_max_bytes(retention_start.0.max_store_bytes());
        let token = match restored.token.clone() {
            Some(t) => t,
            None => {
                let t = ids::make_token();
                store.write(WriteOp::SetMeta {
                    key: "token".into(),
                    value: t.clone(),
                });
                t
            }
        };
        let mut table = PeerTable {
            counter: restored.peer_counter,
            ..Default::default()
        };
        for record in restored.peers {
            table.peers.insert(record.id.clone(), Peer::new(record));
        }
        for row in restored.queued {
            if let Some(p) = table.peers.get_mut(&row.peer_id) {
                p.queue.push(row);
            }
        }
        for (peer_id, seq, message_id) in restored.unconfirmed {
            if let Some(p) = table.peers.get_mut(&peer_id) {
                p.unconfirmed.add(seq, &message_id);
            }
        }
        let mut seen = RecentIds::default();
        for id in &restored.recent_inbound {
            seen.insert(id, 0);
        }
        let mut sent = RecentIds::default();
        for (id, seq) in &restored.recent_outbound {
            sent.insert(id, *seq);
        }
        let identity_path = config
            .identity_file
            .clone()
            .unwrap_or_else(|| config.data_dir.join("identity.json"));
        let (identity, created) =
            Identity::load_or_create(&identity_path).map_err(NodeError::internal)?;
        tracing::info!(
            did = identity.did_acp(),
            file = %identity_path.display(),
            "{} Ed25519 identity",
            if created { "created" } else { "loaded" }
        );
        let card = Card {
            identity: identity.card_block(&restored.delegation),
            sign_frames: config.sign_frames,
            hmac_window: config.hmac_window,
            name: config.name.clone(),
            http_port: config.http_port,
            max_msg_bytes: config.max_msg_size,
            hmac: config.secret.is_some(),
            bearer_auth: config.api_token.is_some(),
            base_skills: config.skills.clone(),
            edits: restored.card_edits,
            started_at: cron::format_utc(chrono::Utc::now()),
        };
        let signer = config
            .secret
            .as_deref()
            .map(|s| Signer::new(s, config.hmac_window, config.hmac_lenient));
        let link_host = config
            .advertise_host
            .clone()
            .unwrap_or_else(default_link_host);
        let inner = Inner {
            token,
            session_id: ids::make_id("sess"),
            started_at: ids::now_unix(),
            started_iso: ids::now_iso(),
            events: EventLog::new(store.clone(), restored.last_event_seq),
            retention: retention::Retention::new(retention_start, restored.retention_saved),
            quotas: quota::Quotas::new(config.peer_limits),
            store,
            card: RwLock::new(card),
            peers: Mutex::new(table),
            tasks: Mutex::new(
                restored
                    .tasks
                    .into_iter()
                    .map(|t| (t.id.clone(), t))
                    .collect(),
            ),
            unread: std::sync::atomic::AtomicI64::new(restored.unread),
            recv_lock: tokio::sync::Mutex::new(()),
            inbox_notify: Notify::new(),
            seen_inbound: Mutex::new(seen),
            sent_ids: Mutex::new(sent),
            server_seq: AtomicU64::new(restored.server_seq),
            queue_seq: AtomicU64::new(restored.queue_seq),
            sync_pending: Mutex::new(HashMap::new()),
            signer,
            identity,
            delegation: Mutex::new(restored.delegation),
            counters: Counters::default(),
            webhooks: webhooks::Webhooks::restore(restored.webhooks, config.webhooks),
            shutdown: CancellationToken::new(),
            background: TaskTracker::new(),
            ws_port: OnceLock::new(),
            http_port: OnceLock::new(),
            link_host,
            route_hints: RwLock::default(),
            dialer: OnceLock::new(),
            lan: OnceLock::new(),
            _lock: lock,
            config,
        };
        Ok(Node {
            inner: Arc::new(inner),
        })
    }

    /// The resolved configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Agent name.
    pub fn name(&self) -> &str {
        &self.inner.config.name
    }

    /// This node's link token.
    pub fn token(&self) -> &str {
        &self.inner.token
    }

    /// The store (for the wire layer's durability barriers and for tests).
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The event log (SSE and MCP subscribe here).
    pub fn events(&self) -> &EventLog {
        &self.inner.events
    }

    /// Fires when the node shuts down.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.inner.shutdown.clone()
    }

    /// Tracks background tasks so shutdown can wait for them.
    pub fn background(&self) -> &TaskTracker {
        &self.inner.background
    }

    /// Records the bound peer port (called once by the wire layer).
    pub fn set_ws_port(&self, port: u16) {
        let _ = self.inner.ws_port.set(port);
    }

    /// Records the bound HTTP port (called once by the HTTP layer).
    pub fn set_http_port(&self, port: u16) {
        let _ = self.inner.http_port.set(port);
        if let Ok(mut card) = self.inner.card.write() {
            card.http_port = port;
        }
    }

    /// Installs the function that starts dialling a peer (the wire layer's).
    pub fn set_dialer(&self, dial: Box<dyn Fn(Node, String) + Send + Sync>) {
        let _ = self.inner.dialer.set(dial);
    }

    /// Bound peer port (0 before binding).
    pub fn ws_port(&self) -> u16 {
        self.inner.ws_port.get().copied().unwrap_or(0)
    }

    /// Bound HTTP port (0 before binding).
    pub fn http_port(&self) -> u16 {
        self.inner.http_port.get().copied().unwrap_or(0)
    }

    /// This node's `acp://` link.
    pub fn link(&self) -> String {
        let hints = self
            .inner
            .route_hints
            .read()
            .map(|h| h.clone())
            .unwrap_or_default();
        Link {
            did: Some(self.identity().did_acp().to_owned()),
            relay: hints.relay,
            addrs: hints.addrs,
            ..Link::plain(&self.inner.link_host, self.ws_port(), &self.inner.token)
        }
        .to_string()
    }

    /// Records how a dialler can reach this node over iroh (its relay and UDP addresses),
    /// for the link.
    pub fn set_route_hints(&self, hints: RouteHints) {
        if let Ok(mut h) = self.inner.route_hints.write() {
            *h = hints;
        }
    }

    /// Keeps the LAN discovery that the server started (`--lan-discovery`).
    pub fn set_lan_discovery(&self, discovery: Arc<crate::lan::Discovery>) {
        let _ = self.inner.lan.set(discovery);
    }

    /// The nodes found on the LAN over mDNS; `None` when LAN discovery is off.
    pub fn lan_peers(&self) -> Option<Vec<crate::lan::LanPeer>> {
        self.inner.lan.get().map(|d| d.peers())
    }

    /// HMAC signer, when a secret is configured.
    pub fn signer(&self) -> Option<&Signer> {
        self.inner.signer.as_ref()
    }

    /// The AgentCard JSON, signed (`identity.card_sig`).
    pub fn card(&self) -> Value {
        let mut card = self
            .inner
            .card
            .read()
            .map(|c| c.to_json())
            .unwrap_or(Value::Null);
        self.inner.identity.sign_card(&mut card);
        card
    }

    /// `/.well-known/acp.json`: our card and the card of the (first connected) peer.
    pub fn card_document(&self) -> Value {
        let peer_card = {
            let peers = self.lock_peers();
            let connected = peers
                .peers
                .values()
                .find(|p| p.connected && p.record.agent_card.is_some());
            connected
                .or_else(|| peers.active().find(|p| p.record.agent_card.is_some()))
                .and_then(|p| p.record.agent_card.clone())
        };
        json!({
            "self": self.card(),
            "peer": peer_card,
            "did": self.inner.identity.did_acp(),
            "peer_identity": self.peer_identity_summary(),
        })
    }

    /// Applies a card PATCH and persists it; returns the new card.
    pub fn patch_card(&self, body: &Value) -> NodeResult<Value> {
        self.change_card(|card| card.apply_patch(body))
    }

    /// `POST /availability/heartbeat`: stamps `last_active_at`, merges the body's fields,
    /// recomputes `next_active_at` from a schedule; persisted and announced like a PATCH.
    pub fn heartbeat(&self, body: &Value) -> NodeResult<Value> {
        let card = self.change_card(|card| card.heartbeat(body))?;
        let avail = card
            .get("availability")
            .cloned()
            .unwrap_or_else(|| json!({}));
        Ok(json!({
            "ok": true,
            "last_active_at": avail.get("last_active_at").cloned().unwrap_or(Value::Null),
            "next_active_at": avail.get("next_active_at").cloned().unwrap_or(Value::Null),
            "availability": avail,
        }))
    }

    /// Applies `change` to the card (nothing changes when it fails), persists the edits,
    /// sends the new card to connected peers and emits a `card` event; returns the new card.
    pub(crate) fn change_card(
        &self,
        change: impl FnOnce(&mut Card) -> NodeResult<()>,
    ) -> NodeResult<Value> {
        let edits = {
            let mut card = self
                .inner
                .card
                .write()
                .map_err(|_| NodeError::internal("card lock poisoned"))?;
            let mut changed = card.clone();
            change(&mut changed)?;
            *card = changed;
            card.edits.clone()
        };
        let card = self.card();
        self.inner.store.write(WriteOp::SetMeta {
            key: "card_edits".into(),
            value: serde_json::to_string(&edits).unwrap_or_default(),
        });
        // Connected peers get the new card right away (as on connect), and watchers an event.
        let frame = crate::wire::frame::agent_card(&card).to_string();
        let outboxes: Vec<_> = self
            .lock_peers()
            .peers
            .values()
            .filter(|p| p.connected)
            .filter_map(|p| p.outbox.clone())
            .collect();
        for tx in outboxes {
            let _ = tx.try_send(peers::Outbound::Frame {
                message_id: String::new(),
                json: frame.as_str().into(),
            });
        }
        let mut ev = serde_json::Map::new();
        ev.insert("event".into(), json!("updated"));
        self.inner.events.emit("card", ev);
        Ok(card)
    }

    /// The structured skills.
    pub fn skills(&self) -> Vec<Value> {
        self.inner
            .card
            .read()
            .map(|c| c.skills())
            .unwrap_or_default()
    }

    /// The availability block (empty object = always available).
    pub fn availability(&self) -> Value {
        self.inner
            .card
            .read()
            .ok()
            .and_then(|c| c.availability())
            .unwrap_or_else(|| json!({}))
    }

    /// `/status`.
    pub fn status(&self) -> Value {
        let c = &self.inner.counters;
        let (peer_count, known, peer_card, path) = {
            let peers = self.lock_peers();
            let connected: Vec<&Peer> = peers.peers.values().filter(|p| p.connected).collect();
            let card = connected.first().and_then(|p| p.record.agent_card.clone());
            // The reference reports its one connection's path, "host" when there is none.
            let path = connected
                .first()
                .map_or("host", |p| p.connection_type.as_str());
            (connected.len(), peers.active().count(), card, path)
        };
        let tasks = self.lock_tasks().len();
        json!({
            "acp_version": card::ACP_VERSION,
            "version": crate::VERSION,
            "commit": crate::COMMIT,
            "implementation": "acp-relay",
            "connected": peer_count > 0,
            "role": "host",
            "link": self.link(),
            "session_id": self.inner.session_id,
            "agent_name": self.name(),
            "agent_card": self.card(),
            "peer_card": peer_card,
            "ws_port": self.ws_port(),
            "http_port": self.http_port(),
            "http_host": self.inner.config.http_host,
            "messages_sent": c.messages_sent.load(Ordering::Relaxed),
            "messages_received": c.messages_received.load(Ordering::Relaxed),
            "messages_deduped": c.messages_deduped.load(Ordering::Relaxed),
            "frames_rejected": c.frames_rejected.load(Ordering::Relaxed),
            "reconnect_count": c.reconnect_count.load(Ordering::Relaxed),
            "tasks_created": c.tasks_created.load(Ordering::Relaxed),
            "tasks": tasks,
            "started_at": self.inner.started_at,
            "started_at_iso": self.inner.started_iso,
            "max_msg_bytes": self.inner.config.max_msg_size,
            "server_seq": self.inner.server_seq.load(Ordering::Relaxed),
            "event_seq": self.inner.events.last_seq(),
            "peer_count": peer_count,
            "known_peers": known,
            "p2p_enabled": true,
            "limitations": [],
            "connection_type": path,
            "hmac_enabled": self.inner.signer.is_some(),
            "did": self.inner.identity.did_acp(),
            "identity": self.identity_status(),
            "data_dir": self.inner.config.data_dir,
            "offline_queue_limit": self.inner.config.offline_queue_limit,
            "store": self.inner.store.capacity().to_json(),
            "retention": self.retention(),
            "peer_limits": self.inner.quotas.to_json(),
            "webhooks": self.inner.webhooks.summary(),
        })
    }

    /// Per-peer limits: what each peer may send in, and what was refused.
    pub fn quotas(&self) -> &quota::Quotas {
        &self.inner.quotas
    }

    /// A `/peers` entry: the peer's fields plus what its limits refused and what it stores.
    fn peer_json(&self, p: &Peer) -> Value {
        let mut v = p.to_json();
        let (rate, quota) = self.inner.quotas.refused(&p.record.id);
        if let Some(obj) = v.as_object_mut() {
            obj.insert(
                "limits".into(),
                json!({
                    "refused_rate": rate,
                    "refused_quota": quota,
                    "stored_bytes": self.inner.store.stored_bytes().get(&p.record.id),
                    "max_store_bytes": self.inner.quotas.limits().max_store_bytes,
                }),
            );
        }
        v
    }

    /// `/peers`.
    pub fn peers(&self) -> Value {
        let peers = self.lock_peers();
        let list: Vec<Value> = peers.active().map(|p| self.peer_json(p)).collect();
        let active = peers.active().filter(|p| p.connected).count();
        json!({"peers": list, "count": list.len(), "active": active})
    }

    /// `/peers/{id}` (id, display name or agent name).
    pub fn peer(&self, key: &str) -> NodeResult<Value> {
        let peers = self.lock_peers();
        peers
            .resolve(key)
            .filter(|p| !p.record.removed)
            .map(|p| self.peer_json(p))
            .ok_or_else(|| NodeError::not_found(format!("peer '{key}' not found")))
    }

    /// Starts dialling `link` (idempotent for a link already known). Returns the peer entry.
    pub fn connect(&self, link_text: &str, name: Option<&str>) -> NodeResult<Value> {
        let link = Link::parse(link_text).map_err(NodeError::invalid)?;
        if link.token == self.inner.token
            && (link.port == self.ws_port())
            && is_local_host(&link.host, &self.inner.link_host)
        {
            return Err(NodeError::invalid(
                "that is this node's own link: give it to the other agent, and connect to theirs",
            ));
        }
        let canonical = link.to_string();
        let (peer_id, display, fresh) = {
            let mut peers = self.lock_peers();
            // At the cap a new dial could only be refused when it connects; say so now. A
            // link that is already connected is not a new place (the call is idempotent).
            let held = peers.held();
            let already = peers
                .peers
                .values()
                .any(|p| p.connected && p.record.link.as_deref() == Some(canonical.as_str()));
            if !already && held >= self.inner.config.max_peers {
                return Err(self.peer_cap_error(held));
            }
            if let Some(existing) = peers
                .peers
                .values_mut()
                .find(|p| p.record.link.as_deref() == Some(canonical.as_str()))
            {
                let revived = existing.record.removed || !existing.record.dialed;
                existing.record.removed = false;
                existing.record.dialed = true;
                if let Some(n) = name {
                    existing.record.name = n.to_owned();
                }
                (
                    existing.record.id.clone(),
                    existing.record.name.clone(),
                    revived && !existing.connected,
                )
            } else {
                let id = peers.next_id();
                let record = PeerRecord {
                    id: id.clone(),
                    name: name.map_or_else(|| id.clone(), str::to_owned),
                    link: Some(canonical.clone()),
                    dialed: true,
                    ..Default::default()
                };
                let display = record.name.clone();
                peers.peers.insert(id.clone(), Peer::new(record));
                (id, display, true)
            }
        };
        self.persist_peer(&peer_id);
        if fresh {
            self.start_dialing(&peer_id);
        }
        let connected = self
            .lock_peers()
            .peers
            .get(&peer_id)
            .is_some_and(|p| p.connected);
        Ok(json!({
            "ok": true,
            "peer_id": peer_id,
            "connecting_to": canonical,
            "name": display,
            "connected": connected,
        }))
    }

    /// Forgets a peer: it is no longer dialled, its connection is closed and its offline
    /// queue is dropped. Its messages stay in the history.
    pub fn remove_peer(&self, key: &str) -> NodeResult<Value> {
        let (id, dropped) = {
            let mut peers = self.lock_peers();
            let peer = peers
                .resolve_mut(key)
                .filter(|p| !p.record.removed)
                .ok_or_else(|| NodeError::not_found(format!("peer '{key}' not found")))?;
            peer.record.removed = true;
            peer.record.dialed = false;
            peer.outbox = None;
            let dropped: Vec<i64> = peer.queue.take_all().into_iter().map(|r| r.id).collect();
            (peer.record.id.clone(), dropped)
        };
        let n = dropped.len();
        if !dropped.is_empty() {
            self.inner.store.write(WriteOp::Dequeue(dropped));
        }
        self.persist_peer(&id);
        Ok(json!({"ok": true, "peer_id": id, "removed": true, "dropped_queued": n}))
    }

    /// Peers to dial at start-up: every stored dialled peer, plus `--join`.
    pub fn start_saved_dials(&self) -> NodeResult<()> {
        let ids: Vec<String> = self
            .lock_peers()
            .active()
            .filter(|p| p.record.dialed)
            .map(|p| p.record.id.clone())
            .collect();
        for id in ids {
            self.start_dialing(&id);
        }
        if let Some(join) = self.inner.config.join.clone() {
            self.connect(&join, None)?;
        }
        Ok(())
    }

    pub(crate) fn start_dialing(&self, peer_id: &str) {
        if let Some(dial) = self.inner.dialer.get() {
            dial(self.clone(), peer_id.to_owned());
        }
    }

    /// Writes the durable part of a peer entry.
    pub(crate) fn persist_peer(&self, peer_id: &str) {
        let body = self
            .lock_peers()
            .peers
            .get(peer_id)
            .and_then(|p| serde_json::to_string(&p.record).ok());
        if let Some(body) = body {
            self.inner.store.write(WriteOp::UpsertPeer {
                id: peer_id.to_owned(),
                body,
            });
        }
    }

    /// Stops the node: background tasks end, connections close, the store is flushed.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        self.inner.background.close();
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            self.inner.background.wait(),
        )
        .await;
        self.persist_all_peers();
        self.inner.store.close().await;
    }

    fn persist_all_peers(&self) {
        let ids: Vec<String> = self.lock_peers().peers.keys().cloned().collect();
        for id in ids {
            self.persist_peer(&id);
        }
    }

    /// Whether shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutdown.is_cancelled()
    }

    pub(crate) fn lock_peers(&self) -> std::sync::MutexGuard<'_, PeerTable> {
        self.inner.peers.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn lock_tasks(&self) -> std::sync::MutexGuard<'_, HashMap<String, Task>> {
        self.inner.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn next_queue_id(&self) -> i64 {
        self.inner.queue_seq.fetch_add(1, Ordering::Relaxed) as i64 + 1
    }
}

/// Takes the data dir's lock file so two processes never share one store. With
/// `instance_fallback`, a taken dir moves the node to the first free sibling
/// (`<dir>-2`, `<dir>-3`, …) instead of failing.
fn lock_data_dir(config: &mut Config) -> NodeResult<std::fs::File> {
    let base = config.data_dir.clone();
    for n in 1..=16 {
        let dir = if n == 1 {
            base.clone()
        } else {
            let mut name = base
                .file_name()
                .map(|f| f.to_os_string())
                .unwrap_or_default();
            name.push(format!("-{n}"));
            base.with_file_name(name)
        };
        store::create_private_dir(&dir)?;
        let path = dir.join("lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .read(true)
            .open(&path)
            .map_err(|e| NodeError::internal(format!("cannot open {}: {e}", path.display())))?;
        match file.try_lock() {
            Ok(()) => {
                use std::io::Write;
                let _ = file.set_len(0);
                let _ = writeln!(&file, "{}", std::process::id());
                if n > 1 {
                    tracing::warn!(
                        taken = %base.display(),
                        using = %dir.display(),
                        "data dir in use by another acp-relay; this instance uses its own"
                    );
                }
                config.data_dir = dir;
                return Ok(file);
            }
            Err(std::fs::TryLockError::WouldBlock) if config.instance_fallback => continue,
            Err(std::fs::TryLockError::WouldBlock) => {
                let pid = std::fs::read_to_string(&path).unwrap_or_default();
                return Err(NodeError::internal(format!(
                    "data dir {} is in use by another acp-relay (pid {}); stop it or pass another --data-dir / --name",
                    dir.display(),
                    pid.trim()
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(NodeError::internal(format!(
                    "cannot lock {}: {e}",
                    path.display()
                )));
            }
        }
    }
    Err(NodeError::internal(format!(
        "too many acp-relay instances share {}",
        base.display()
    )))
}

fn is_local_host(host: &str, link_host: &str) -> bool {
    host == link_host || matches!(host, "127.0.0.1" | "localhost" | "::1" | "0.0.0.0")
}

/// The LAN address of the default route, found by "connecting" a UDP socket (which sends no
/// packet), else loopback. Never asks an outside service.
fn default_link_host() -> String {
    std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| {
            s.connect("10.255.255.255:1")?;
            s.local_addr()
        })
        .map(|a| a.ip())
        .ok()
        .filter(|ip| !ip.is_unspecified())
        .map_or_else(|| "127.0.0.1".to_owned(), |ip| ip.to_string())
}

/// Everything loaded from the store at start-up.
struct Restored {
    token: Option<String>,
    delegation: Vec<Value>,
    card_edits: CardEdits,
    peers: Vec<PeerRecord>,
    peer_counter: u64,
    tasks: Vec<Task>,
    unread: i64,
    queued: Vec<QueuedRow>,
    /// (peer, server_seq, message_id) of messages above each peer's confirmed watermark.
    unconfirmed: Vec<(String, i64, String)>,
    recent_inbound: Vec<String>,
    recent_outbound: Vec<(String, i64)>,
    server_seq: u64,
    queue_seq: u64,
    last_event_seq: u64,
    /// Registered webhooks: (url, record), in registration order.
    webhooks: Vec<(String, String)>,
    /// Retention settings saved by `PATCH /retention`.
    retention_saved: retention::Overrides,
}

fn restore(conn: &rusqlite::Connection) -> rusqlite::Result<Restored> {
    let token = store::get_meta(conn, "token")?;
    let delegation = store::get_meta(conn, "delegation_chain")?
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default();
    let retention_saved = store::get_meta(conn, retention::SAVED_KEY)?
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default();
    let card_edits = store::get_meta(conn, "card_edits")?
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default();
    let peers: Vec<PeerRecord> = conn
        .prepare("SELECT body FROM peers ORDER BY id")?
        .query_map([], |r| r.get::<_, String>(0))?
        .filter_map(|b| b.ok().and_then(|b| serde_json::from_str(&b).ok()))
        .collect();
    let peer_counter = peers
        .iter()
        .filter_map(|p| {
            p.id.strip_prefix("peer_")
                .and_then(|n| n.parse::<u64>().ok())
        })
        .max()
        .unwrap_or(0);
    let tasks = conn
        .prepare("SELECT body FROM tasks")?
        .query_map([], |r| r.get::<_, String>(0))?
        .filter_map(|b| b.ok().and_then(|b| serde_json::from_str(&b).ok()))
        .collect();
    // The partial index holds exactly the unread rows; left alone, the planner counts them
    // through `messages_by_id (direction)` and reads every inbound row (0.3–0.5 s at 1M).
    let unread: i64 = conn.query_row(
        "SELECT COUNT(*) FROM messages INDEXED BY messages_unconsumed
         WHERE consumed = 0 AND direction = 'inbound'",
        [],
        |r| r.get(0),
    )?;
    let queued = conn
        .prepare("SELECT id, peer_id, message_id, frame, queued_at FROM offline_queue ORDER BY id")?
        .query_map([], |r| {
            let frame: String = r.get(3)?;
            Ok(QueuedRow {
                id: r.get(0)?,
                peer_id: r.get(1)?,
                message_id: r.get(2)?,
                frame: serde_json::from_str(&frame).unwrap_or(Value::Null),
                queued_at: r.get(4)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    // Messages to peers that confirm delivery, above what they confirmed: they are re-sent.
    let mut unconfirmed = Vec::new();
    for p in peers.iter().filter(|p| p.ack_since > 0 && !p.removed) {
        let mut stmt = conn.prepare_cached(
            "SELECT server_seq, message_id FROM messages INDEXED BY messages_outbound_seq
             WHERE direction = 'outbound' AND server_seq > ?1 AND peer_id = ?2
             ORDER BY server_seq LIMIT ?3",
        )?;
        let rows = stmt.query_map(
            rusqlite::params![
                p.acked_seq.max(p.ack_since - 1),
                p.id,
                // What may be unconfirmed, plus what the stored watermark may lag behind.
                unconfirmed::MAX_UNCONFIRMED as i64 + 2 * unconfirmed::PERSIST_LAG
            ],
            |r| Ok((p.id.clone(), r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
        )?;
        for row in rows {
            unconfirmed.push(row?);
        }
    }
    // `+direction`: walk the rowid backwards from the newest row (about 2 × RECENT_IDS rows)
    // instead of half the table through `messages_by_id (direction)` and a sort.
    let recent = |direction: &str| -> rusqlite::Result<Vec<(String, i64)>> {
        let mut stmt = conn.prepare(
            "SELECT message_id, COALESCE(server_seq, 0) FROM messages WHERE +direction = ?1
             ORDER BY rowid_seq DESC LIMIT ?2",
        )?;
        let mut rows: Vec<(String, i64)> = stmt
            .query_map(rusqlite::params![direction, RECENT_IDS as i64], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect::<rusqlite::Result<_>>()?;
        rows.reverse();
        Ok(rows)
    };
    let recent_inbound = recent("inbound")?.into_iter().map(|(id, _)| id).collect();
    let recent_outbound = recent("outbound")?;
    // The partial index (migration v2) exists for this; without the hint the planner reads
    // every outbound row through `messages_by_id (direction)` instead.
    let server_seq: i64 = conn.query_row(
        "SELECT COALESCE(MAX(server_seq), 0) FROM messages INDEXED BY messages_outbound_seq
         WHERE direction = 'outbound'",
        [],
        |r| r.get(0),
    )?;
    let queue_seq: i64 =
        conn.query_row("SELECT COALESCE(MAX(id), 0) FROM offline_queue", [], |r| {
            r.get(0)
        })?;
    let last_event_seq: i64 =
        conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))?;
    let webhooks = conn
        .prepare("SELECT url, body FROM webhooks ORDER BY rowid")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Restored {
        token,
        delegation,
        card_edits,
        peers,
        peer_counter,
        tasks,
        unread,
        queued,
        unconfirmed,
        recent_inbound,
        recent_outbound,
        server_seq: server_seq.max(0) as u64,
        queue_seq: queue_seq.max(0) as u64,
        last_event_seq: last_event_seq.max(0) as u64,
        webhooks,
        retention_saved,
    })
}

/// Rejects a request when the node is shutting down.
pub(crate) fn ensure_running(node: &Node) -> NodeResult<()> {
    if node.is_shutting_down() {
        return Err(NodeError::new(
            ErrorCode::ShuttingDown,
            "node is shutting down",
        ));
    }
    Ok(())
}

/// [`ensure_running`], and the store takes writes: sends and task writes are refused with
/// `507 ERR_STORAGE_FULL` while the disk is full or the store is at `--max-store-mb`, before
/// anything is numbered, sent or queued (so a refused send leaves no trace anywhere).
pub(crate) fn ensure_writable(node: &Node) -> NodeResult<()> {
    ensure_running(node)?;
    node.inner.store.capacity().check()
}

/// A place under `--max-peers`, held by a connection from its admission until it is attached
/// (then the peer's `connected` flag counts it). Dropping it unattached gives the place back,
/// so a connection that fails between admission and attach cannot leak a place.
#[must_use = "the place is given back when the slot is dropped"]
pub struct PeerSlot {
    /// The node whose reserved count this slot holds; none for a connection that takes over
    /// a peer's existing place.
    node: Option<Node>,
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        if let Some(node) = self.node.take() {
            let mut peers = node.lock_peers();
            peers.reserved = peers.reserved.saturating_sub(1);
        }
    }
}

/// How an authenticated inbound connection is let in under `--max-peers`.
pub enum InboundAdmission {
    /// There is room: register the peer as usual, holding this place until it is attached.
    New(PeerSlot),
    /// The node is full, but a connected peer that dialled us has the same agent name: the
    /// new connection is that peer coming back before its old connection was noticed dead,
    /// so it takes over that entry (attaching it closes the old connection) instead of
    /// being refused. Two different agents sharing one name at the cap take turns.
    Replaces(String),
}

impl Node {
    /// The error for a connection past `--max-peers`.
    fn peer_cap_error(&self, held: usize) -> NodeError {
        NodeError::new(
            ErrorCode::TooManyPeers,
            format!(
                "this node is at --max-peers ({held} of {} connections in use); remove a peer \
                 (DELETE /peers/{{id}}) or restart the node with a higher --max-peers",
                self.inner.config.max_peers
            ),
        )
    }

    /// Admits a peer that dialled us and passed the token check, before it is registered (a
    /// refused connection leaves no peer entry behind). `agent_name` is from its card.
    pub fn admit_inbound(&self, agent_name: Option<&str>) -> NodeResult<InboundAdmission> {
        let mut peers = self.lock_peers();
        let held = peers.held();
        if held < self.inner.config.max_peers {
            peers.reserved += 1;
            return Ok(InboundAdmission::New(PeerSlot {
                node: Some(self.clone()),
            }));
        }
        if let Some(p) = agent_name.and_then(|n| peers.connected_inbound(n)) {
            return Ok(InboundAdmission::Replaces(p.record.id.clone()));
        }
        Err(self.peer_cap_error(held))
    }

    /// Admits a connection this node dialled, once the peer accepted it. A peer that is
    /// still marked connected is being replaced and keeps its place.
    pub fn admit_dialled(&self, peer_id: &str) -> NodeResult<PeerSlot> {
        let mut peers = self.lock_peers();
        if peers.peers.get(peer_id).is_some_and(|p| p.connected) {
            return Ok(PeerSlot { node: None });
        }
        let held = peers.held();
        if held >= self.inner.config.max_peers {
            return Err(self.peer_cap_error(held));
        }
        peers.reserved += 1;
        Ok(PeerSlot {
            node: Some(self.clone()),
        })
    }

    /// Whether a new connection (to `peer_id`, if known) would find a place now. The
    /// dialler checks before each attempt, so a full node does not dial only to hang up
    /// after the handshake; the listener checks to decide whether to read the peer's card
    /// before sending its own.
    pub fn peer_has_room(&self, peer_id: Option<&str>) -> NodeResult<()> {
        let peers = self.lock_peers();
        let held = peers.held();
        if held < self.inner.config.max_peers
            || peer_id
                .and_then(|id| peers.peers.get(id))
                .is_some_and(|p| p.connected)
        {
            return Ok(());
        }
        Err(self.peer_cap_error(held))
    }

    /// Whether a peer currently has a live connection.
    pub fn peer_is_connected(&self, peer_id: &str) -> bool {
        self.lock_peers()
            .peers
            .get(peer_id)
            .is_some_and(|p| p.connected)
    }

    /// Whether a peer confirms what it stores (`delivery_ack` in its card), so it is owed an
    /// `acp.ack` for the message frames it sends.
    pub fn peer_confirms_delivery(&self, peer_id: &str) -> bool {
        self.lock_peers()
            .peers
            .get(peer_id)
            .is_some_and(|p| p.confirms_delivery())
    }

    /// Counts a binary frame from a peer (the protocol is text-only) and carries on.
    pub fn reject_binary(&self, peer_id: &str, len: usize) {
        self.inner
            .counters
            .frames_rejected
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            peer = peer_id,
            len,
            "binary frame rejected: the peer protocol is JSON text"
        );
    }

    /// Waits until an unread inbound message exists or `timeout` passes; true if one exists.
    pub async fn wait_for_inbox(&self, timeout: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.inner.inbox_notify.notified();
            if self.unread() > 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.unread() > 0;
            }
        }
    }
}

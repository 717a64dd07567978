//! Push webhooks: URLs the user registered (`POST /webhooks/register`) that the node POSTs
//! every event to, as JSON, in the shape `/stream` carries it. The registry is persisted
//! (table `webhooks`), so a restart keeps delivering.
//!
//! Delivery never slows messaging: one dispatcher reads the event broadcast and only offers
//! each event to every webhook's bounded queue (`try_send`); a worker per webhook posts
//! from its queue in order, with a timeout, retries with backoff, and counters. A queue
//! that is full (a receiver slow or down) drops the new event, counted and logged at most
//! once per 5 s. Events are not kept for a receiver across a restart; every event carries
//! its `seq`, so a receiver that missed some reads them back from `GET /stream?since=N`.
//!
//! The same queue and worker deliver A2A push notifications ([`PushTarget`], one per
//! config, fed by the A2A server with its task's updates rather than by the dispatcher).
//!
//! Files: `url` (which URLs are accepted; which addresses are public), `post` (one HTTP
//! POST, TLS), `worker` (a webhook's queue, retries and counters).

pub mod post;
pub mod url;
mod worker;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use super::error::{NodeError, NodeResult};
use super::events::Event;
use super::log_limit::{LOG_EVERY, LogLimit};
use super::store::WriteOp;
use super::{Node, ensure_running, ids};
use post::Connector;
use url::WebhookUrl;

/// Most webhooks a node takes: each one gets every event, so each is a worker, a queue and
/// a copy of all traffic; a handful covers every real set-up.
pub const MAX_WEBHOOKS: usize = 16;

/// How webhooks are delivered. Not flags: the defaults suit every receiver; tests shorten
/// them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Events waiting per webhook before new ones are dropped (about a minute of a busy
    /// conversation, or a receiver's restart).
    pub queue: usize,
    /// Bytes of events waiting per webhook before new ones are dropped (one event is always
    /// taken): what bounds the memory a dead receiver holds when messages are large.
    pub queue_bytes: usize,
    /// Longest one attempt may take, connection included (the reference's 5 s).
    pub timeout: Duration,
    /// Attempts after the first for one event (on no answer, a connection failure, 408,
    /// 425, 429 or 5xx).
    pub retries: u32,
    /// Wait before the first retry; doubled for each next one.
    pub backoff: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            queue: 1024,
            queue_bytes: 64 * 1024 * 1024,
            timeout: Duration::from_secs(5),
            retries: 3,
            backoff: Duration::from_secs(1),
        }
    }
}

/// What happened to one webhook's events since the node started.
#[derive(Default)]
pub(crate) struct Stats {
    delivered: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    retries: AtomicU64,
    /// When and why the last attempt failed.
    last_error: Mutex<Option<(String, String)>>,
    last_delivered_at: Mutex<Option<String>>,
    drop_log: LogLimit,
    fail_log: LogLimit,
}

/// One registered webhook.
pub(crate) struct Hook {
    url: WebhookUrl,
    registered_at: String,
    queue: mpsc::Sender<Arc<Event>>,
    /// The queue's receiving end until its worker starts.
    pending: Mutex<Option<mpsc::Receiver<Arc<Event>>>>,
    capacity: usize,
    /// Bytes of the events in the queue (kept by the dispatcher and the worker).
    queued_bytes: AtomicUsize,
    max_bytes: usize,
    stats: Stats,
    /// Cancelled when the webhook is deregistered (a child of the node's shutdown).
    stop: CancellationToken,
    /// Headers sent with every delivery besides the node's own (an A2A push config's
    /// token and `Authorization`).
    extra_headers: Vec<(&'static str, String)>,
    /// Whether this target may only be reached on public addresses.
    public_only: bool,
}

impl Hook {
    fn new(url: WebhookUrl, registered_at: String, settings: &Settings) -> Hook {
        let capacity = settings.queue.max(1);
        let (tx, rx) = mpsc::channel(capacity);
        Hook {
            url,
            registered_at,
            queue: tx,
            pending: Mutex::new(Some(rx)),
            capacity,
            queued_bytes: AtomicUsize::new(0),
            max_bytes: settings.queue_bytes,
            stats: Stats::default(),
            stop: CancellationToken::new(),
            extra_headers: Vec::new(),
            public_only: false,
        }
    }

    /// Offers `n` copies' worth of loss: counts dropped events and logs, rate-limited.
    fn dropped(&self, n: u64, why: &str) {
        self.stats.dropped.fetch_add(n, Ordering::Relaxed);
        if let Some(count) = self.stats.drop_log.hit_n(n) {
            tracing::warn!(
                webhook = %self.url,
                dropped = count,
                "webhook events dropped: {why} ({count} since the previous report; reported at most every {} s)",
                LOG_EVERY.as_secs()
            );
        }
    }

    /// Hands an event to the worker without waiting; a full queue (in events or bytes)
    /// drops it. Only the dispatcher offers, so the byte check and its update cannot race
    /// with another offer.
    fn offer(&self, event: &Arc<Event>) {
        let len = event.json.len();
        let held = self.queued_bytes.load(Ordering::Relaxed);
        if held > 0 && held + len > self.max_bytes {
            self.dropped(1, "its queue is full (the receiver is slow or unreachable)");
            return;
        }
        match self.queue.try_send(event.clone()) {
            Ok(()) => {
                self.queued_bytes.fetch_add(len, Ordering::Relaxed);
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.dropped(1, "its queue is full (the receiver is slow or unreachable)")
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// The worker took `event` off the queue.
    pub(super) fn taken(&self, event: &Event) {
        self.queued_bytes
            .fetch_sub(event.json.len(), Ordering::Relaxed);
    }

    fn to_json(&self) -> Value {
        let s = &self.stats;
        let last_error = s
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .map(|(at, error)| json!({"at": at, "error": error}));
        json!({
            "url": self.url.as_str(),
            "registered_at": self.registered_at,
            "delivered": s.delivered.load(Ordering::Relaxed),
            "failed": s.failed.load(Ordering::Relaxed),
            "dropped": s.dropped.load(Ordering::Relaxed),
            "retries": s.retries.load(Ordering::Relaxed),
            "queued": self.capacity - self.queue.capacity(),
            "queued_bytes": self.queued_bytes.load(Ordering::Relaxed),
            "last_delivered_at": s.last_delivered_at.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            "last_error": last_error,
        })
    }

    /// The durable part (table `webhooks`).
    fn record(&self) -> String {
        json!({"url": self.url.as_str(), "registered_at": self.registered_at}).to_string()
    }
}

/// The registered webhooks and what delivers to them.
pub struct Webhooks {
    hooks: Mutex<Vec<Arc<Hook>>>,
    /// Stops the running dispatcher; none while no webhook is registered (then no task
    /// reads the event broadcast for webhooks at all).
    dispatcher: Mutex<Option<CancellationToken>>,
    connector: Arc<Connector>,
    /// The connector of targets a remote caller named (public addresses only).
    public_connector: Arc<Connector>,
    settings: Settings,
}

/// A delivery target outside the registry: an A2A push-notification config. It has its
/// own bounded queue and worker and the same timeout, retries, backoff, signing and
/// counters as a registered webhook (one worker serves both), but gets only what its owner
/// offers it, not the event broadcast. Stopped with [`PushTarget::stop`] (or when the node
/// stops).
pub struct PushTarget {
    hook: Arc<Hook>,
}

impl PushTarget {
    /// Queues one JSON body for delivery (dropped, and counted, when the queue is full).
    pub fn offer(&self, kind: &str, json: String) {
        self.hook.offer(&Arc::new(Event {
            seq: 0,
            kind: kind.to_owned(),
            body: Value::Null,
            json: json.into(),
        }));
    }

    /// Stops delivering; what is still queued is dropped.
    pub fn stop(&self) {
        self.hook.stop.cancel();
    }
}

impl Webhooks {
    /// The registry as stored: `(url, body)` rows in registration order. A row whose URL
    /// this version no longer accepts is skipped with a warning (and stays in the store).
    pub(crate) fn restore(rows: Vec<(String, String)>, settings: Settings) -> Webhooks {
        let mut hooks = Vec::new();
        for (raw, body) in rows {
            match WebhookUrl::parse(&raw) {
                Ok(url) => {
                    let registered_at = serde_json::from_str::<Value>(&body)
                        .ok()
                        .and_then(|b| b["registered_at"].as_str().map(str::to_owned))
                        .unwrap_or_default();
                    hooks.push(Arc::new(Hook::new(url, registered_at, &settings)));
                }
                Err(e) => tracing::warn!(webhook = raw, "stored webhook skipped: {e}"),
            }
        }
        Webhooks {
            hooks: Mutex::new(hooks),
            dispatcher: Mutex::new(None),
            connector: Arc::new(Connector::default()),
            public_connector: Arc::new(Connector::public_only()),
            settings,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Hook>>> {
        self.hooks.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn offer(&self, event: &Arc<Event>) {
        for hook in self.lock().iter() {
            hook.offer(event);
        }
    }

    fn dropped_everywhere(&self, n: u64) {
        for hook in self.lock().iter() {
            hook.dropped(
                n,
                "the node's event broadcast ran ahead of the webhook dispatcher",
            );
        }
    }

    /// Totals over the registered webhooks, for `/status`.
    pub fn summary(&self) -> Value {
        let hooks = self.lock();
        let sum = |f: fn(&Stats) -> &AtomicU64| -> u64 {
            hooks
                .iter()
                .map(|h| f(&h.stats).load(Ordering::Relaxed))
                .sum()
        };
        json!({
            "count": hooks.len(),
            "delivered": sum(|s| &s.delivered),
            "failed": sum(|s| &s.failed),
            "dropped": sum(|s| &s.dropped),
        })
    }
}

/// The one field a register or deregister body has, checked.
fn url_from_body(body: &Value) -> NodeResult<WebhookUrl> {
    let Some(obj) = body.as_object() else {
        return Err(NodeError::invalid("request body must be a JSON object"));
    };
    if let Some(bad) = obj.keys().find(|k| k.as_str() != "url") {
        return Err(NodeError::invalid(format!(
            "unknown field '{bad}': the body is {{\"url\": \"https://…\"}}"
        )));
    }
    match obj.get("url") {
        None | Some(Value::Null) => Err(NodeError::invalid(
            "'url' is required: the http:// or https:// address to POST events to",
        )),
        Some(Value::String(s)) => WebhookUrl::parse(s).map_err(NodeError::invalid),
        Some(other) => Err(NodeError::invalid(format!(
            "'url' must be a string, got {}",
            super::message::type_name(other)
        ))),
    }
}

impl Node {
    /// Starts delivering: a worker for every stored webhook and, if there is one, the
    /// dispatcher. Called once the node serves (`Server::start`).
    pub fn start_webhooks(&self) {
        let hooks: Vec<Arc<Hook>> = self.inner.webhooks.lock().clone();
        for hook in hooks {
            self.spawn_webhook_worker(&hook);
        }
        self.sync_webhook_dispatcher();
    }

    /// Runs the dispatcher while at least one webhook is registered, and only then: a node
    /// without webhooks pays nothing per event. Called after every change of the list.
    fn sync_webhook_dispatcher(&self) {
        let webhooks = &self.inner.webhooks;
        let mut running = webhooks
            .dispatcher
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let wanted = !webhooks.lock().is_empty();
        match (wanted, running.is_some()) {
            (true, false) => *running = Some(self.spawn_webhook_dispatcher()),
            (false, true) => {
                if let Some(stop) = running.take() {
                    stop.cancel();
                }
            }
            _ => {}
        }
    }

    /// The task that offers every event to every webhook's queue; returns what stops it.
    fn spawn_webhook_dispatcher(&self) -> CancellationToken {
        let node = self.clone();
        let mut events = self.events().subscribe();
        let stop = self.shutdown_token().child_token();
        let token = stop.clone();
        self.background().spawn(async move {
            loop {
                let next = tokio::select! {
                    _ = stop.cancelled() => break,
                    next = events.recv() => next,
                };
                match next {
                    Ok(event) => node.inner.webhooks.offer(&event),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        node.inner.webhooks.dropped_everywhere(n)
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        token
    }

    fn spawn_webhook_worker(&self, hook: &Arc<Hook>) {
        let Some(rx) = hook
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        else {
            return;
        };
        let webhooks = &self.inner.webhooks;
        let job = worker::Worker {
            hook: hook.clone(),
            connector: if hook.public_only {
                webhooks.public_connector.clone()
            } else {
                webhooks.connector.clone()
            },
            signer: self.signer().cloned(),
            settings: webhooks.settings,
            shutdown: self.shutdown_token(),
        };
        self.background().spawn(job.run(rx));
    }

    /// A push target delivering to `url` with `headers` added to the node's own; with
    /// `public_only`, only public addresses are connected to (checked at each connection).
    /// Its worker runs until [`PushTarget::stop`] or the node stops.
    pub fn push_target(
        &self,
        url: WebhookUrl,
        headers: Vec<(&'static str, String)>,
        public_only: bool,
    ) -> PushTarget {
        let mut hook = Hook::new(url, ids::now_iso(), &self.inner.webhooks.settings);
        hook.extra_headers = headers;
        hook.public_only = public_only;
        let hook = Arc::new(hook);
        self.spawn_webhook_worker(&hook);
        PushTarget { hook }
    }

    /// `POST /webhooks/register`: adds `url` (idempotent), persisted before the answer.
    pub async fn register_webhook(&self, body: &Value) -> NodeResult<Value> {
        ensure_running(self)?;
        let url = url_from_body(body)?;
        let webhooks = &self.inner.webhooks;
        let (hook, total) = {
            let mut hooks = webhooks.lock();
            if let Some(h) = hooks.iter().find(|h| h.url == url) {
                return Ok(json!({
                    "ok": true, "registered": url.as_str(), "total": hooks.len(),
                    "created": false, "webhook": h.to_json(),
                }));
            }
            if hooks.len() >= MAX_WEBHOOKS {
                return Err(NodeError::invalid(format!(
                    "this node already has {MAX_WEBHOOKS} webhooks, the most it takes; \
                     deregister one first (POST /webhooks/deregister)"
                )));
            }
            let hook = Arc::new(Hook::new(url.clone(), ids::now_iso(), &webhooks.settings));
            hooks.push(hook.clone());
            (hook, hooks.len())
        };
        self.sync_webhook_dispatcher();
        let stored = self
            .inner
            .store
            .write_wait(WriteOp::UpsertWebhook {
                url: url.as_str().to_owned(),
                body: hook.record(),
            })
            .await;
        if let Err(e) = stored {
            webhooks.lock().retain(|h| !Arc::ptr_eq(h, &hook));
            self.sync_webhook_dispatcher();
            // A write held back by a full disk commits later: take it back the same way.
            self.inner.store.write(WriteOp::DeleteWebhook {
                url: url.as_str().to_owned(),
            });
            return Err(e);
        }
        self.spawn_webhook_worker(&hook);
        if url.is_https() || url.is_loopback() {
            tracing::info!(webhook = %url, "webhook registered");
        } else {
            tracing::warn!(
                webhook = %url,
                "webhook registered with plain http to another machine: every event, message \
                 text included, crosses the network unencrypted (use https)"
            );
        }
        Ok(json!({
            "ok": true, "registered": url.as_str(), "total": total,
            "created": true, "webhook": hook.to_json(),
        }))
    }

    /// `POST /webhooks/deregister`: removes `url`; events still queued for it are dropped.
    pub async fn deregister_webhook(&self, body: &Value) -> NodeResult<Value> {
        ensure_running(self)?;
        let url = url_from_body(body)?;
        let (removed, remaining) = {
            let mut hooks = self.inner.webhooks.lock();
            let removed = hooks
                .iter()
                .position(|h| h.url == url)
                .map(|i| hooks.remove(i));
            (removed, hooks.len())
        };
        if let Some(hook) = &removed {
            hook.stop.cancel();
            self.sync_webhook_dispatcher();
            self.inner
                .store
                .write_wait(WriteOp::DeleteWebhook {
                    url: url.as_str().to_owned(),
                })
                .await?;
            tracing::info!(webhook = %url, "webhook deregistered");
        }
        Ok(json!({
            "ok": true, "remaining": remaining, "removed": removed.is_some(), "url": url.as_str(),
        }))
    }

    /// `GET /webhooks`: each webhook with its counters.
    pub fn webhooks(&self) -> Value {
        let list: Vec<Value> = self
            .inner
            .webhooks
            .lock()
            .iter()
            .map(|h| h.to_json())
            .collect();
        json!({
            "webhooks": list,
            "count": list.len(),
            "max": MAX_WEBHOOKS,
            "signed": self.signer().is_some(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(crate::test_support::config(256))]

        /// Any register or deregister body gives a URL the node accepts (the body's `url`,
        /// normalized) or an invalid-request error; never a panic, never a 5xx.
        #[test]
        fn prop_register_bodies_give_a_url_or_a_400(
            body in prop_oneof![
                3 => crate::test_support::arb_object().prop_map(Value::Object),
                1 => crate::test_support::arb_json(),
            ],
            url in prop_oneof![
                ".{0,40}",
                "(https?|ftp|HTTP)://([a-z]{1,5}(:[a-z]{0,3})?@)?[a-z0-9.]{1,12}(:[0-9]{1,5})?/[a-z#?=]{0,8}",
            ],
            with_url in any::<bool>(),
        ) {
            let mut body = body;
            if with_url && let Some(o) = body.as_object_mut() {
                o.insert("url".into(), json!(url));
            }
            match url_from_body(&body) {
                Ok(u) => {
                    let raw = body["url"].as_str().unwrap();
                    prop_assert_eq!(WebhookUrl::parse(raw).unwrap(), u.clone());
                    prop_assert_eq!(body.as_object().unwrap().len(), 1);
                    prop_assert!(u.as_str().starts_with("http"));
                    prop_assert!(!u.authority().contains('@'));
                }
                Err(e) => prop_assert_eq!(e.code.http_status(), 400, "{}", e),
            }
        }
    }

    fn event(seq: u64, bytes: usize) -> Arc<Event> {
        let body = json!({"type": "message", "seq": seq, "pad": "x".repeat(bytes)});
        Arc::new(Event::from_json(seq, body.to_string()))
    }

    #[test]
    fn a_queue_is_bounded_in_events_and_in_bytes_and_always_takes_one() {
        let url = WebhookUrl::parse("http://127.0.0.1:9/").unwrap();
        let settings = Settings {
            queue: 3,
            queue_bytes: 1000,
            ..Settings::default()
        };
        let hook = Hook::new(url.clone(), String::new(), &settings);
        let mut rx = hook.pending.lock().unwrap().take().unwrap();
        for seq in 1..=5 {
            hook.offer(&event(seq, 400));
        }
        // Two fit in 1000 bytes; the other three are dropped and counted.
        assert_eq!(hook.stats.dropped.load(Ordering::Relaxed), 3);
        let first = rx.try_recv().unwrap();
        hook.taken(&first);
        hook.offer(&event(6, 400));
        assert_eq!(hook.stats.dropped.load(Ordering::Relaxed), 3);
        let seqs: Vec<u64> = std::iter::from_fn(|| rx.try_recv().ok())
            .inspect(|e| hook.taken(e))
            .map(|e| e.seq)
            .collect();
        assert_eq!(seqs, [2, 6]);
        assert_eq!(hook.queued_bytes.load(Ordering::Relaxed), 0);
        // An event larger than the whole budget still goes when the queue is empty.
        hook.offer(&event(7, 5000));
        assert_eq!(rx.try_recv().unwrap().seq, 7);

        // The count bound: small events, three at most.
        let hook = Hook::new(url, String::new(), &settings);
        for seq in 1..=5 {
            hook.offer(&event(seq, 1));
        }
        assert_eq!(hook.stats.dropped.load(Ordering::Relaxed), 2);
        assert_eq!(hook.to_json()["queued"], 3);
    }
}

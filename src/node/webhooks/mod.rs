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
//! Files: `url` (which URLs are accepted), `post` (one HTTP POST, TLS), `worker` (a
//! webhook's queue, retries and counters).

pub mod post;
pub mod url;
mod worker;

use std::sync::atomic::{AtomicU64, Ordering};
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
    stats: Stats,
    /// Cancelled when the webhook is deregistered (a child of the node's shutdown).
    stop: CancellationToken,
}

impl Hook {
    fn new(url: WebhookUrl, registered_at: String, queue: usize, stop: CancellationToken) -> Hook {
        let capacity = queue.max(1);
        let (tx, rx) = mpsc::channel(capacity);
        Hook {
            url,
            registered_at,
            queue: tx,
            pending: Mutex::new(Some(rx)),
            capacity,
            stats: Stats::default(),
            stop,
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

    /// Hands an event to the worker without waiting; a full queue drops it.
    fn offer(&self, event: &Arc<Event>) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.queue.try_send(event.clone()) {
            self.dropped(1, "its queue is full (the receiver is slow or unreachable)");
        }
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
    connector: Arc<Connector>,
    settings: Settings,
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
                    // Shutdown tokens are attached when the workers start.
                    hooks.push(Arc::new(Hook::new(
                        url,
                        registered_at,
                        settings.queue,
                        CancellationToken::new(),
                    )));
                }
                Err(e) => tracing::warn!(webhook = raw, "stored webhook skipped: {e}"),
            }
        }
        Webhooks {
            hooks: Mutex::new(hooks),
            connector: Arc::new(Connector::default()),
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
    /// Starts delivering: the dispatcher, and a worker for every stored webhook. Called once
    /// the node serves (`Server::start`).
    pub fn start_webhooks(&self) {
        let hooks: Vec<Arc<Hook>> = self.inner.webhooks.lock().clone();
        for hook in hooks {
            self.spawn_webhook_worker(&hook);
        }
        let node = self.clone();
        let mut events = self.events().subscribe();
        let stop = self.shutdown_token();
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
            connector: webhooks.connector.clone(),
            signer: self.signer().cloned(),
            settings: webhooks.settings,
            shutdown: self.shutdown_token(),
        };
        self.background().spawn(job.run(rx));
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
            let hook = Arc::new(Hook::new(
                url.clone(),
                ids::now_iso(),
                webhooks.settings.queue,
                CancellationToken::new(),
            ));
            hooks.push(hook.clone());
            (hook, hooks.len())
        };
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

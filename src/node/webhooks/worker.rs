//! A webhook's worker: takes its queue's events in order and POSTs each one, with a timeout
//! per attempt and retries with doubling waits; counts what was delivered, what failed and
//! the retries. Nothing here is on the messaging path: the worker only ever waits for its
//! own receiver.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hyper::body::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::post::{Connection, Connector};
use super::{Hook, Settings};
use crate::node::events::Event;
use crate::node::ids;
use crate::node::log_limit::LOG_EVERY;
use crate::wire::sign::Signer;

/// Longest wait between two attempts, however many retries are configured.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Everything one webhook's delivery loop needs.
pub(super) struct Worker {
    pub(super) hook: Arc<Hook>,
    pub(super) connector: Arc<Connector>,
    pub(super) signer: Option<Signer>,
    pub(super) settings: Settings,
    pub(super) shutdown: CancellationToken,
}

/// Whether a status is worth another attempt: the receiver is overloaded, restarting or
/// broken for now. Any other 4xx (and a 3xx: redirects are not followed) is its answer.
fn retryable(status: u16) -> bool {
    matches!(status, 408 | 425 | 429) || status >= 500
}

impl Worker {
    /// Delivers until the webhook is deregistered or the node stops.
    pub(super) async fn run(self, mut queue: mpsc::Receiver<Arc<Event>>) {
        let mut conn: Option<Connection> = None;
        loop {
            let event = tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = self.hook.stop.cancelled() => return,
                event = queue.recv() => match event {
                    Some(e) => e,
                    None => return,
                },
            };
            self.hook.taken(&event);
            if !self.deliver(&event, &mut conn).await {
                return;
            }
        }
    }

    /// The headers of one delivery: what it is, which delivery (the same on every retry, so
    /// a receiver can drop repeats), and with `--secret` the body's HMAC.
    fn headers(&self, event: &Event, body: &[u8]) -> Vec<(&'static str, String)> {
        let mut headers = vec![
            ("x-acp-event", event.kind.clone()),
            ("x-acp-delivery", ids::make_id("dlv")),
        ];
        headers.extend(self.hook.extra_headers.iter().cloned());
        if let Some(signer) = &self.signer {
            headers.push((
                "x-acp-signature",
                format!("sha256={}", signer.sign_body(body)),
            ));
        }
        headers
    }

    /// One event, with its retries. False when the worker must stop.
    async fn deliver(&self, event: &Event, conn: &mut Option<Connection>) -> bool {
        let body = Bytes::copy_from_slice(event.json.as_bytes());
        let headers = self.headers(event, &body);
        let stats = &self.hook.stats;
        let mut attempt = 0u32;
        loop {
            let attempt_once = tokio::time::timeout(
                self.settings.timeout,
                self.connector
                    .post(conn, &self.hook.url, &headers, body.clone()),
            );
            let result = tokio::select! {
                _ = self.shutdown.cancelled() => return false,
                _ = self.hook.stop.cancelled() => return false,
                result = attempt_once => result,
            };
            let failure = match result {
                Ok(Ok(answer)) if (200..300).contains(&answer.status) => {
                    stats.delivered.fetch_add(1, Ordering::Relaxed);
                    *stats
                        .last_delivered_at
                        .lock()
                        .unwrap_or_else(|p| p.into_inner()) = Some(ids::now_iso());
                    return true;
                }
                Ok(Ok(answer)) if retryable(answer.status) => {
                    format!("the receiver answered {}", answer.status)
                }
                Ok(Ok(answer)) => {
                    self.failed(
                        event,
                        format!("the receiver answered {} (not retried)", answer.status),
                    );
                    return true;
                }
                Ok(Err(e)) => e,
                Err(_) => format!("no answer within {} ms", self.settings.timeout.as_millis()),
            };
            if attempt >= self.settings.retries {
                self.failed(event, format!("{failure} (after {} attempts)", attempt + 1));
                return true;
            }
            self.note_error(&failure);
            stats.retries.fetch_add(1, Ordering::Relaxed);
            let wait = self
                .settings
                .backoff
                .saturating_mul(1u32 << attempt.min(16))
                .min(MAX_BACKOFF);
            attempt += 1;
            tokio::select! {
                _ = self.shutdown.cancelled() => return false,
                _ = self.hook.stop.cancelled() => return false,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    fn note_error(&self, error: &str) {
        *self
            .hook
            .stats
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some((ids::now_iso(), error.to_owned()));
    }

    /// Counts an event given up on, and logs it (rate-limited).
    fn failed(&self, event: &Event, error: String) {
        let stats = &self.hook.stats;
        stats.failed.fetch_add(1, Ordering::Relaxed);
        if let Some(count) = stats.fail_log.hit() {
            tracing::warn!(
                webhook = %self.hook.url,
                seq = event.seq,
                failed = count,
                "webhook delivery failed: {error} ({count} failed since the previous report; \
                 reported at most every {} s)",
                LOG_EVERY.as_secs()
            );
        }
        self.note_error(&error);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_overload_and_server_errors_are_retried() {
        for s in [408, 425, 429, 500, 502, 503, 504, 599] {
            assert!(retryable(s), "{s}");
        }
        for s in [200, 301, 302, 400, 401, 403, 404, 410, 413, 422] {
            assert!(!retryable(s), "{s}");
        }
    }
}

//! Per-peer limits on what peers send in: messages per second and bytes per second (each a
//! [`TokenBucket`] with a burst), and the bytes of messages stored from one peer. Anyone
//! holding the link (it is meant to be pasted into chats) could otherwise send as fast as the
//! node can store and keep every byte.
//!
//! A message frame over a limit is not stored and not confirmed: the peer is told with the
//! same `error` frame a full store sends (`message_ids`, `retry_after_ms`), with the code
//! `rate_limited` (the wait is what the buckets need to take the frame) or `quota_exceeded`
//! (the peer's stored messages are at `--peer-max-store-mb`; retention frees room). An
//! acp-relay sender keeps those messages unconfirmed and sends them again after the wait, so
//! nothing is lost; the Python reference logs the error as it logs a full store's. A refused
//! frame takes no tokens, so a flooding peer gets exactly the rate, and a repeat of a message
//! already stored is confirmed without being charged.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};

use super::bucket::TokenBucket;

/// What one peer may send in; 0 means no limit for each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Limits {
    /// Message frames per second, sustained.
    pub msgs_per_sec: u64,
    /// Message frames that may arrive at once (the bucket's size).
    pub msgs_burst: u64,
    /// Bytes of message frames per second, sustained.
    pub bytes_per_sec: u64,
    /// Bytes that may arrive at once.
    pub bytes_burst: u64,
    /// Bytes of messages from one peer the store keeps before refusing more from it.
    pub max_store_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        use crate::config as c;
        Limits {
            msgs_per_sec: c::DEFAULT_PEER_MSGS_PER_SEC,
            msgs_burst: c::DEFAULT_PEER_MSGS_BURST,
            bytes_per_sec: c::DEFAULT_PEER_MB_PER_SEC * MIB,
            bytes_burst: c::DEFAULT_PEER_MB_BURST * MIB,
            max_store_bytes: c::DEFAULT_PEER_MAX_STORE_MB * MIB,
        }
    }
}

/// Bytes per MiB.
pub const MIB: u64 = 1024 * 1024;

/// Shortest and longest wait a refusal asks for (what a sender accepts: see
/// `frame::retry_after`).
const MIN_RETRY: Duration = Duration::from_millis(250);
const MAX_RETRY: Duration = Duration::from_secs(60);

/// The wait a `quota_exceeded` refusal asks for: retention looks at every peer's stored
/// bytes four times a second and prunes one past 90 % of its cap at once, so room usually
/// comes back within this; trying much more often only costs traffic.
pub const QUOTA_RETRY_MS: u64 = 2_000;

/// Shortest interval between two log lines about the same peer being refused.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Why a message frame was not taken (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Over the message or byte rate: sent again after this many milliseconds it passes
    /// (if nothing else from the peer takes the tokens first).
    RateLimited(u64),
    /// The peer's stored messages are at `--peer-max-store-mb`.
    QuotaExceeded,
}

impl Refusal {
    /// The code of the hold frame.
    pub fn code(self) -> &'static str {
        match self {
            Refusal::RateLimited(_) => "rate_limited",
            Refusal::QuotaExceeded => "quota_exceeded",
        }
    }
}

/// One peer's buckets and refusal counters.
#[derive(Debug)]
struct PeerQuota {
    msgs: Option<TokenBucket>,
    bytes: Option<TokenBucket>,
    refused_rate: u64,
    refused_quota: u64,
    last_log: Option<Instant>,
}

/// Every peer's limits state. Its lock is a leaf (nothing else is locked while it is held).
#[derive(Debug)]
pub struct Quotas {
    limits: Limits,
    peers: Mutex<HashMap<String, PeerQuota>>,
}

impl Quotas {
    /// Limits as configured.
    pub fn new(limits: Limits) -> Quotas {
        Quotas {
            limits,
            peers: Mutex::new(HashMap::new()),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Whether a new message frame of `size` bytes from `peer_id`, which already has
    /// `stored` bytes of messages in the store, may be taken now; takes its tokens if so.
    pub fn admit(
        &self,
        peer_id: &str,
        size: u64,
        stored: u64,
        now: Instant,
    ) -> Result<(), Refusal> {
        let l = self.limits;
        if l.msgs_per_sec == 0 && l.bytes_per_sec == 0 && l.max_store_bytes == 0 {
            return Ok(());
        }
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        // Looked up before inserting: the hot path allocates no key.
        if !peers.contains_key(peer_id) {
            peers.insert(
                peer_id.to_owned(),
                PeerQuota {
                    msgs: (l.msgs_per_sec > 0)
                        .then(|| TokenBucket::new(l.msgs_per_sec, l.msgs_burst, now)),
                    bytes: (l.bytes_per_sec > 0)
                        .then(|| TokenBucket::new(l.bytes_per_sec, l.bytes_burst, now)),
                    refused_rate: 0,
                    refused_quota: 0,
                    last_log: None,
                },
            );
        }
        let Some(q) = peers.get_mut(peer_id) else {
            return Ok(());
        };
        let refusal = if l.max_store_bytes > 0 && stored.saturating_add(size) > l.max_store_bytes {
            q.refused_quota += 1;
            Refusal::QuotaExceeded
        } else {
            let wait = q
                .msgs
                .as_mut()
                .map_or(Duration::ZERO, |b| b.wait_for(1, now))
                .max(
                    q.bytes
                        .as_mut()
                        .map_or(Duration::ZERO, |b| b.wait_for(size, now)),
                );
            if wait.is_zero() {
                if let Some(b) = q.msgs.as_mut() {
                    b.take(1, now);
                }
                if let Some(b) = q.bytes.as_mut() {
                    b.take(size, now);
                }
                return Ok(());
            }
            q.refused_rate += 1;
            Refusal::RateLimited(wait.clamp(MIN_RETRY, MAX_RETRY).as_millis() as u64)
        };
        if q.last_log
            .is_none_or(|t| now.duration_since(t) >= LOG_EVERY)
        {
            q.last_log = Some(now);
            tracing::warn!(
                peer = peer_id,
                code = refusal.code(),
                refused_rate = q.refused_rate,
                refused_quota = q.refused_quota,
                stored_bytes = stored,
                "peer over its limits: its messages are refused and it is asked to send them \
                 again later (reported at most every {} s)",
                LOG_EVERY.as_secs()
            );
        }
        Err(refusal)
    }

    /// The wait to ask of a peer whose `count` message frames of `bytes` bytes in all were
    /// refused for rate, the longest single wait being `wait_ms`: long enough for the
    /// buckets to take all of them, or to fill up when they hold less than that (waiting
    /// longer would leave capacity unused), so a sender holding thousands does not re-send
    /// them all every quarter second only to have most refused again.
    pub fn rate_retry_ms(&self, count: u64, bytes: u64, wait_ms: u64) -> u64 {
        let l = self.limits;
        let per = |n: u64, burst: u64, rate: u64| {
            n.min(burst)
                .saturating_mul(1000)
                .checked_div(rate)
                .unwrap_or(0)
        };
        wait_ms
            .max(per(count, l.msgs_burst, l.msgs_per_sec))
            .max(per(bytes, l.bytes_burst, l.bytes_per_sec))
            .clamp(MIN_RETRY.as_millis() as u64, MAX_RETRY.as_millis() as u64)
    }

    /// Frames refused for rate and for quota from `peer_id` since the node started.
    pub fn refused(&self, peer_id: &str) -> (u64, u64) {
        let peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        peers
            .get(peer_id)
            .map_or((0, 0), |q| (q.refused_rate, q.refused_quota))
    }

    /// Refusals of every peer: (rate, quota).
    pub fn refused_total(&self) -> (u64, u64) {
        let peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        peers.values().fold((0, 0), |(r, q), p| {
            (r + p.refused_rate, q + p.refused_quota)
        })
    }

    /// The `/status` view: the limits and the refusals of all peers.
    pub fn to_json(&self) -> Value {
        let (rate, quota) = self.refused_total();
        let mut v = json!(self.limits);
        if let Some(obj) = v.as_object_mut() {
            obj.insert("refused_rate".into(), json!(rate));
            obj.insert("refused_quota".into(), json!(quota));
        }
        v
    }
}

/// The words a refused sender (and its log) gets.
pub fn refusal_message(refusal: Refusal, limits: &Limits, stored: u64) -> String {
    match refusal {
        Refusal::RateLimited(ms) => format!(
            "rate limited: this node takes at most {} messages/s (burst {}) and {}/s (burst {}) \
             from one peer (--peer-msgs-per-sec, --peer-msgs-burst, --peer-mb-per-sec, \
             --peer-mb-burst); these messages were not stored: keep them and send them again \
             in {ms} ms",
            shown(limits.msgs_per_sec),
            limits.msgs_burst,
            bytes_shown(limits.bytes_per_sec),
            bytes_shown(limits.bytes_burst),
        ),
        Refusal::QuotaExceeded => format!(
            "quota exceeded: this node stores at most {} of messages from one peer \
             (--peer-max-store-mb) and holds {} from this one; these messages were not stored: \
             keep them and send them again later. Room comes back as retention removes old \
             messages (--retain-days, --retain-messages) or when the receiving node's user \
             raises the limit",
            bytes_shown(limits.max_store_bytes),
            super::capacity::human(stored),
        ),
    }
}

fn shown(n: u64) -> String {
    if n == 0 {
        "unlimited".into()
    } else {
        n.to_string()
    }
}

fn bytes_shown(n: u64) -> String {
    if n == 0 {
        "unlimited".into()
    } else {
        super::capacity::human(n)
    }
}

/// Bytes of inbound messages in the store, per peer: kept by the store writer in step with
/// what it commits and what retention deletes (and persisted in the `peer_stored` table, so
/// a restart reads it without scanning messages). Its lock is a leaf.
#[derive(Debug, Default)]
pub struct StoredBytes {
    by_peer: Mutex<HashMap<String, u64>>,
}

impl StoredBytes {
    /// Bytes stored from `peer_id`.
    pub fn get(&self, peer_id: &str) -> u64 {
        let map = self.by_peer.lock().unwrap_or_else(|p| p.into_inner());
        map.get(peer_id).copied().unwrap_or(0)
    }

    /// The peers with more than `bytes` stored, and how much each has.
    pub fn above(&self, bytes: u64) -> Vec<(String, u64)> {
        let map = self.by_peer.lock().unwrap_or_else(|p| p.into_inner());
        map.iter()
            .filter(|(_, n)| **n > bytes)
            .map(|(p, n)| (p.clone(), *n))
            .collect()
    }

    /// Replaces everything (at start-up, from the `peer_stored` table).
    pub(crate) fn load(&self, rows: impl IntoIterator<Item = (String, u64)>) {
        let mut map = self.by_peer.lock().unwrap_or_else(|p| p.into_inner());
        map.clear();
        map.extend(rows);
    }

    /// Applies committed changes: `added` bytes inserted, `removed` deleted, per peer.
    pub(crate) fn apply(&self, added: &HashMap<String, u64>, removed: &HashMap<String, u64>) {
        if added.is_empty() && removed.is_empty() {
            return;
        }
        let mut map = self.by_peer.lock().unwrap_or_else(|p| p.into_inner());
        for (peer, n) in added {
            *map.entry(peer.clone()).or_insert(0) += n;
        }
        for (peer, n) in removed {
            if let Some(v) = map.get_mut(peer) {
                *v = v.saturating_sub(*n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(msgs: u64, burst: u64, store: u64) -> Limits {
        Limits {
            msgs_per_sec: msgs,
            msgs_burst: burst,
            bytes_per_sec: 0,
            bytes_burst: 0,
            max_store_bytes: store,
        }
    }

    #[test]
    fn one_flooding_peer_does_not_use_up_another_peers_rate() {
        let q = Quotas::new(limits(10, 3, 0));
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(q.admit("flood", 100, 0, t0), Ok(()));
        }
        let Err(Refusal::RateLimited(ms)) = q.admit("flood", 100, 0, t0) else {
            panic!("the fourth frame passes")
        };
        assert!((250..=60_000).contains(&ms), "{ms}");
        // Refused frames take no tokens: after 100 ms exactly one more passes.
        assert!(q.admit("flood", 100, 0, t0).is_err());
        let later = t0 + Duration::from_millis(100);
        assert_eq!(q.admit("flood", 100, 0, later), Ok(()));
        assert!(q.admit("flood", 100, 0, later).is_err());
        // Another peer has its own bucket.
        for _ in 0..3 {
            assert_eq!(q.admit("calm", 100, 0, later), Ok(()));
        }
        assert_eq!(q.refused("flood"), (3, 0));
        assert_eq!(q.refused("calm"), (0, 0));
    }

    #[test]
    fn the_store_cap_refuses_until_room_comes_back() {
        let q = Quotas::new(limits(0, 0, 1000));
        let t0 = Instant::now();
        assert_eq!(q.admit("p", 400, 600, t0), Ok(()));
        assert_eq!(q.admit("p", 401, 600, t0), Err(Refusal::QuotaExceeded));
        assert_eq!(q.admit("p", 401, 100, t0), Ok(()));
        assert_eq!(q.refused("p"), (0, 1));
        let text = refusal_message(Refusal::QuotaExceeded, &q.limits(), 600);
        assert!(text.contains("--peer-max-store-mb"), "{text}");
    }

    #[test]
    fn byte_rate_counts_frame_sizes() {
        let q = Quotas::new(Limits {
            msgs_per_sec: 0,
            msgs_burst: 0,
            bytes_per_sec: 1000,
            bytes_burst: 1500,
            max_store_bytes: 0,
        });
        let t0 = Instant::now();
        assert_eq!(q.admit("p", 1000, 0, t0), Ok(()));
        assert_eq!(q.admit("p", 1000, 0, t0), Err(Refusal::RateLimited(500)));
        assert_eq!(
            q.admit("p", 1000, 0, t0 + Duration::from_millis(500)),
            Ok(())
        );
    }

    #[test]
    fn the_asked_wait_covers_everything_refused() {
        let q = Quotas::new(limits(200, 1000, 0));
        assert_eq!(q.rate_retry_ms(1, 10, 5), 250);
        assert_eq!(q.rate_retry_ms(800, 10, 300), 4000);
        // Never longer than the bucket takes to fill up.
        assert_eq!(q.rate_retry_ms(1_000_000, 10, 300), 5000);
        let slow = Quotas::new(limits(1, 1000, 0));
        assert_eq!(slow.rate_retry_ms(1_000_000, 10, 300), 60_000);
    }

    #[test]
    fn no_limits_admit_everything() {
        let q = Quotas::new(limits(0, 0, 0));
        let t0 = Instant::now();
        for _ in 0..10_000 {
            assert_eq!(q.admit("p", 1 << 20, u64::MAX / 2, t0), Ok(()));
        }
    }

    #[test]
    fn stored_bytes_follow_commits_and_deletes() {
        let s = StoredBytes::default();
        s.load([("a".to_owned(), 10)]);
        let added = HashMap::from([("a".to_owned(), 5), ("b".to_owned(), 7)]);
        let removed = HashMap::from([("a".to_owned(), 100)]);
        s.apply(&added, &HashMap::new());
        assert_eq!((s.get("a"), s.get("b"), s.get("c")), (15, 7, 0));
        s.apply(&HashMap::new(), &removed);
        assert_eq!(s.get("a"), 0);
    }
}

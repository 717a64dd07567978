//! A log line that repeats at most once per [`LOG_EVERY`], carrying the count of what
//! happened since the previous one: refusals of strangers' connections, events a slow
//! webhook could not take. A flood of the same failure must not flood the log (or fill the
//! disk the store needs).

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Shortest interval between two log lines about the same kind of event; the events in
/// between are counted and the count is reported in the next line.
pub(crate) const LOG_EVERY: Duration = Duration::from_secs(5);

/// Counts one kind of event and lets a log line about it through at most once per
/// [`LOG_EVERY`], so a flood of refusals cannot flood the log.
#[derive(Default)]
pub(crate) struct LogLimit {
    /// When the last line was let through, and the events counted since.
    state: Mutex<(Option<Instant>, u64)>,
}

impl LogLimit {
    /// Counts one event. Returns how many events the line written now should report (this
    /// one and those suppressed since the last line), or none if a line was written lately.
    pub(crate) fn hit(&self) -> Option<u64> {
        self.hit_n(1)
    }

    /// Counts `n` events at once (a burst noticed together), as [`LogLimit::hit`].
    pub(crate) fn hit_n(&self, n: u64) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.1 += n;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_limit_reports_the_first_event_then_aggregates() {
        let limit = LogLimit::default();
        assert_eq!(limit.hit(), Some(1));
        for _ in 0..1000 {
            assert_eq!(limit.hit(), None);
        }
        // Pretend the last line is old: the next line carries the suppressed count.
        limit.state.lock().unwrap().0 = Instant::now().checked_sub(LOG_EVERY);
        assert_eq!(limit.hit_n(9), Some(1009));
        assert_eq!(limit.hit(), None);
    }
}

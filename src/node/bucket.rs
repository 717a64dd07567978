//! A token bucket: the rate limit of what one peer may send (messages per second, bytes per
//! second), with a burst. Pure arithmetic on an injected clock (`now` is passed in), so it is
//! tested without sleeping.
//!
//! The bucket holds up to `burst` tokens and refills at `rate` tokens per second; a frame
//! costing `n` tokens passes when `n` are there and takes them. Tokens are counted in
//! billionths (one per nanosecond at a rate of one per second) in 128-bit integers, so the
//! refill is exact: over any interval `t`, what passes is at most `burst + rate × t`.

use std::time::{Duration, Instant};

/// Billionths of a token per token.
const SCALE: u128 = 1_000_000_000;

/// One rate limit with a burst.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    /// Tokens added per second.
    rate: u64,
    /// Most tokens held (also the largest cost that can ever pass).
    burst: u64,
    /// Tokens held, in billionths.
    level: u128,
    /// When `level` was last brought up to date.
    at: Instant,
}

impl TokenBucket {
    /// A full bucket refilling at `rate` tokens per second up to `burst` (both at least 1).
    pub fn new(rate: u64, burst: u64, now: Instant) -> TokenBucket {
        let burst = burst.max(1);
        TokenBucket {
            rate: rate.max(1),
            burst,
            level: u128::from(burst) * SCALE,
            at: now,
        }
    }

    /// Brings the level up to `now` (a clock that went backwards adds nothing).
    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at);
        if elapsed.is_zero() {
            return;
        }
        let full = u128::from(self.burst) * SCALE;
        // `rate` tokens per second is `rate` billionths per nanosecond.
        let added = u128::from(self.rate).saturating_mul(elapsed.as_nanos());
        self.level = self.level.saturating_add(added).min(full);
        self.at = now;
    }

    /// A cost the bucket can ever pay: more than a burst is charged as a whole burst (so one
    /// frame larger than the burst passes when the bucket is full, instead of never).
    fn cost(&self, n: u64) -> u128 {
        u128::from(n.min(self.burst)) * SCALE
    }

    /// How long until `n` tokens are there (zero if they are now). Takes nothing.
    pub fn wait_for(&mut self, n: u64, now: Instant) -> Duration {
        self.refill(now);
        let cost = self.cost(n);
        if self.level >= cost {
            return Duration::ZERO;
        }
        let missing = cost - self.level;
        let nanos = missing.div_ceil(u128::from(self.rate));
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// Takes `n` tokens if they are there: `Ok`, or how long until they would be.
    pub fn try_take(&mut self, n: u64, now: Instant) -> Result<(), Duration> {
        let wait = self.wait_for(n, now);
        if wait.is_zero() {
            self.level -= self.cost(n);
            Ok(())
        } else {
            Err(wait)
        }
    }

    /// Takes `n` tokens that [`TokenBucket::wait_for`] just said are there.
    pub fn take(&mut self, n: u64, now: Instant) {
        self.refill(now);
        self.level = self.level.saturating_sub(self.cost(n));
    }

    /// Whole tokens held at `now`.
    pub fn available(&mut self, now: Instant) -> u64 {
        self.refill(now);
        u64::try_from(self.level / SCALE).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_burst_passes_then_the_rate_holds() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, 5, t0);
        for _ in 0..5 {
            assert_eq!(b.try_take(1, t0), Ok(()));
        }
        // Empty: one token comes every 100 ms.
        assert_eq!(b.try_take(1, t0), Err(ms(100)));
        assert_eq!(b.try_take(1, t0 + ms(99)), Err(ms(1)));
        assert_eq!(b.try_take(1, t0 + ms(100)), Ok(()));
        // Idle long enough, it is full again, never fuller.
        assert_eq!(b.available(t0 + Duration::from_secs(3600)), 5);
    }

    #[test]
    fn a_cost_above_the_burst_passes_on_a_full_bucket() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(100, 1000, t0);
        assert_eq!(b.try_take(5000, t0), Ok(()));
        assert_eq!(b.available(t0), 0);
        assert_eq!(b.wait_for(5000, t0), Duration::from_secs(10));
    }

    #[test]
    fn wait_for_takes_nothing_and_a_clock_going_back_adds_nothing() {
        let t1 = Instant::now() + Duration::from_secs(10);
        let mut b = TokenBucket::new(1, 2, t1);
        assert_eq!(b.wait_for(2, t1), Duration::ZERO);
        assert_eq!(b.wait_for(2, t1), Duration::ZERO);
        b.take(2, t1);
        assert_eq!(b.available(t1 - Duration::from_secs(5)), 0);
        assert_eq!(b.wait_for(1, t1), Duration::from_secs(1));
    }

    proptest! {
        /// Over any run of requests, what passed by time `t` is at most the burst plus
        /// `rate × t`; and a refused request passes after the wait it was told (when nothing
        /// else took tokens meanwhile).
        #[test]
        fn never_more_than_burst_plus_rate_and_the_told_wait_is_enough(
            rate in 1u64..10_000,
            burst in 1u64..10_000,
            steps in proptest::collection::vec((0u64..50_000_000, 1u64..2_000), 1..200),
        ) {
            let t0 = Instant::now();
            let mut b = TokenBucket::new(rate, burst, t0);
            let mut now = t0;
            let mut passed: u128 = 0;
            for (advance_ns, cost) in steps {
                now += Duration::from_nanos(advance_ns);
                let charged = u128::from(cost.min(burst));
                match b.try_take(cost, now) {
                    Ok(()) => passed += charged,
                    Err(wait) => {
                        prop_assert!(!wait.is_zero());
                        let mut probe = b.clone();
                        prop_assert!(probe.try_take(cost, now + wait).is_ok());
                        if let Some(earlier) = wait.checked_sub(Duration::from_nanos(1))
                            && !earlier.is_zero()
                        {
                            let mut probe = b.clone();
                            prop_assert!(probe.try_take(cost, now + earlier).is_err());
                        }
                    }
                }
                let elapsed = now.duration_since(t0).as_nanos();
                let bound = u128::from(burst) * SCALE + u128::from(rate) * elapsed;
                prop_assert!(passed * SCALE <= bound, "passed {passed} by {elapsed} ns");
            }
        }

        /// An idle bucket is full: a burst of single tokens passes whole, and no more.
        #[test]
        fn an_idle_bucket_gives_exactly_its_burst(rate in 1u64..1_000_000, burst in 1u64..5_000) {
            let t0 = Instant::now();
            let mut b = TokenBucket::new(rate, burst, t0);
            b.take(burst, t0);
            let later = t0 + Duration::from_secs(burst.div_ceil(rate) + 1);
            for _ in 0..burst {
                prop_assert!(b.try_take(1, later).is_ok());
            }
            prop_assert!(b.try_take(1, later).is_err());
        }
    }
}

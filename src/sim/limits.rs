//! Omnium's rate limits, enforced when asked ([`super::Simulator::set_limits`]): a concurrency cap
//! per API user and a token bucket, both answered with 429 and `Retry-After`; the token endpoint is
//! exempt. Every /api request is also counted per till, a till being identified by the bearer
//! token it sends (each till takes its own token; a renewed token counts as a new till).

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

/// The limits to enforce. Omnium's are 20 concurrent requests per API user and a bucket of 12,000
/// refilled 1,000 per 10 s; [`Limits::scaled`] keeps those ratios at a tenth of the size.
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    /// Most /api requests of the (single) API user handled at once; one more is answered 429.
    pub concurrency: u64,
    /// Bucket size (requests).
    pub bucket: f64,
    /// Requests added to the bucket per second.
    pub refill_per_sec: f64,
}

impl Limits {
    /// Omnium's limits scaled down 10x with the ratios kept: 20 concurrent, bucket 1,200, 10/s.
    pub fn scaled() -> Limits {
        Limits {
            concurrency: 20,
            bucket: 1200.0,
            refill_per_sec: 10.0,
        }
    }
}

/// What one till (one bearer token) did against the limited simulator.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct TillStats {
    /// /api requests other than the token endpoint.
    pub requests: u64,
    /// Of those, answered 429 by the limits.
    pub throttled: u64,
    /// Of those, sent while a `Retry-After` this simulator had given this till was still
    /// running: the request's first byte arrived after the 429 had been written to the
    /// till's socket (so the till could have read it) and before its `Retry-After` ran out.
    /// One sent just before the till read the 429 but arriving after it was written is
    /// counted (the count errs on the side of the simulator).
    pub inside_retry_after: u64,
    /// Of those, arrived within 10 ms of the last 429's write: most likely already on their
    /// way (let go by another thread of the till before its code had read the 429).
    pub inside_retry_after_within_10ms: u64,
    /// Handled while a `Retry-After` of this till ran but arrived (first byte read) before
    /// the 429 that started it was written: sent before the till could have known of it, so
    /// not counted above.
    pub sent_before_the_429: u64,
}

#[derive(Default)]
struct Till {
    label: String,
    stats: TillStats,
    retry_until: Option<Instant>,
    /// When the 429 that started the running pause was written.
    pause_from: Option<Instant>,
    /// When the last 429 to this till was written.
    throttled_at: Option<Instant>,
}

pub(crate) struct Limiter {
    pub limits: Option<Limits>,
    level: f64,
    refilled_at: Instant,
    tills: HashMap<String, Till>,
}

/// The limiter's verdict on one request.
pub(crate) enum Verdict {
    Pass,
    /// Answer 429 with this `Retry-After` (seconds); call [`Limiter::written`] with the
    /// token once the answer is written.
    Throttle(u64),
}

impl Limiter {
    pub fn new() -> Limiter {
        Limiter {
            limits: None,
            level: 0.0,
            refilled_at: Instant::now(),
            tills: HashMap::new(),
        }
    }

    /// Turns the limits on (a full bucket) or off; per-till counters are kept.
    pub fn set(&mut self, limits: Option<Limits>) {
        self.level = limits.as_ref().map_or(0.0, |l| l.bucket);
        self.refilled_at = Instant::now();
        self.limits = limits;
    }

    pub fn reset_stats(&mut self) {
        for t in self.tills.values_mut() {
            t.stats = TillStats::default();
        }
    }

    /// Counters per till label (`till-1`, `till-2`, … in order of first request).
    pub fn till_stats(&self) -> BTreeMap<String, TillStats> {
        self.tills
            .values()
            .map(|t| (t.label.clone(), t.stats.clone()))
            .collect()
    }

    /// Decides on an /api request (not the token endpoint) from the till holding `token`, with
    /// `in_flight` limited requests running (this one included), whose first byte arrived at
    /// `arrived`.
    pub fn admit(
        &mut self,
        token: &str,
        in_flight: u64,
        arrived: Instant,
        now: Instant,
    ) -> Verdict {
        if !self.tills.contains_key(token) {
            let label = format!("till-{}", self.tills.len() + 1);
            self.tills.insert(
                token.to_string(),
                Till {
                    label,
                    ..Till::default()
                },
            );
        }
        let Some(till) = self.tills.get_mut(token) else {
            return Verdict::Pass;
        };
        till.stats.requests += 1;
        if till.retry_until.is_some_and(|t| arrived < t) {
            if till.pause_from.is_some_and(|f| arrived >= f) {
                till.stats.inside_retry_after += 1;
                if till
                    .throttled_at
                    .is_some_and(|w| arrived.saturating_duration_since(w).as_millis() <= 10)
                {
                    till.stats.inside_retry_after_within_10ms += 1;
                }
            } else {
                till.stats.sent_before_the_429 += 1;
            }
        }
        let Some(l) = &self.limits else {
            return Verdict::Pass;
        };
        let elapsed = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64();
        self.level = (self.level + elapsed * l.refill_per_sec).min(l.bucket);
        self.refilled_at = now;
        let wait_secs = if in_flight > l.concurrency {
            1
        } else if self.level >= 1.0 {
            self.level -= 1.0;
            return Verdict::Pass;
        } else {
            // Whole seconds until the bucket holds one request again (at least 1).
            (((1.0 - self.level) / l.refill_per_sec.max(1e-9)).ceil() as u64).max(1)
        };
        till.stats.throttled += 1;
        Verdict::Throttle(wait_secs)
    }

    /// A 429 with `Retry-After: secs` has been written to the till holding `token` at `now`:
    /// its requests arriving from now until the pause ends are inside the Retry-After.
    pub fn written(&mut self, token: &str, secs: u64, now: Instant) {
        if let Some(till) = self.tills.get_mut(token) {
            let until = now + std::time::Duration::from_secs(secs);
            if till.retry_until.is_none_or(|t| t <= now) {
                till.pause_from = Some(now);
            }
            till.retry_until = Some(till.retry_until.map_or(until, |t| t.max(until)));
            till.throttled_at = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A request judged after a 429 was written but whose first byte had arrived before it
    /// was sent before the till could know of the 429: counted apart, not as sent inside
    /// the Retry-After. One arriving after the write is counted, whenever it is judged.
    #[test]
    fn inside_retry_after_is_judged_by_arrival_not_by_handling() {
        let mut l = Limiter::new();
        l.set(Some(Limits {
            concurrency: 20,
            bucket: 1.0,
            refill_per_sec: 0.001,
        }));
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        assert!(matches!(l.admit("tok", 1, ms(0), ms(0)), Verdict::Pass));
        assert!(matches!(
            l.admit("tok", 1, ms(1), ms(1)),
            Verdict::Throttle(_)
        ));
        l.written("tok", 2, ms(2));
        // Arrived before the write, handled after it.
        l.admit("tok", 1, ms(1), ms(5));
        // Arrived after the write.
        l.admit("tok", 1, ms(3), ms(3));
        l.admit("tok", 1, ms(50), ms(50));
        // After the Retry-After.
        l.admit("tok", 1, ms(2_100), ms(2_100));
        let s = &l.till_stats()["till-1"];
        assert_eq!(s.sent_before_the_429, 1);
        assert_eq!(s.inside_retry_after, 2);
        assert_eq!(s.inside_retry_after_within_10ms, 1);
    }
}

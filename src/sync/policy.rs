//! The worker's decisions as plain functions of the stored job, the time and the answer:
//! how long to back off, whether a failure uses up an attempt, when a job dies.

use crate::omnium::Failure;
use crate::store::{JobFate, OutboxJob};

#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    pub initial_ms: u64,
    pub max_ms: u64,
    pub max_attempts: u32,
}

/// Delay before try number `tries + 1`: `initial × 2^(tries−1)`, plus up to 25 % jitter so
/// that terminals coming back together do not retry in step, never above `max`.
pub fn backoff_ms(p: &RetryPolicy, tries: u32, jitter: f64) -> u64 {
    let exp = tries.saturating_sub(1).min(40);
    let base = p.initial_ms.saturating_mul(1u64 << exp).min(p.max_ms);
    let jittered = base as f64 * (1.0 + 0.25 * jitter);
    if jittered >= p.max_ms as f64 {
        // At the cap, spread below it instead.
        (p.max_ms as f64 * (0.8 + 0.2 * jitter)) as u64
    } else {
        jittered as u64
    }
    .max(1)
}

/// Offline probes back off like jobs, but never beyond this many times
/// `retry_initial_ms` (5 minutes by default): after a long outage of the whole chain, a till
/// finds Omnium back within minutes, not at a probe an hour away (issue 13's catch-up).
pub const PROBE_CAP_FACTOR: u64 = 5;

/// Delay before the next probe of an Omnium found unreachable `tries` times in a row: the
/// job back-off, capped at [`PROBE_CAP_FACTOR`] × `initial_ms` (and at `max_ms`).
pub fn probe_backoff_ms(p: &RetryPolicy, tries: u32, jitter: f64) -> u64 {
    let capped = RetryPolicy {
        max_ms: p
            .max_ms
            .min(p.initial_ms.saturating_mul(PROBE_CAP_FACTOR))
            .max(p.initial_ms),
        ..*p
    };
    backoff_ms(&capped, tries, jitter)
}

/// What a failure tells the worker about Omnium as a whole.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Signal {
    None,
    /// Nothing could be sent: stop the batch, probe again after the offline back-off.
    Unreachable,
    /// 429: every request waits this long (ms, on the monotonic clock).
    PauseFor(u64),
    /// No 429 to this till's request, but its API user is paused (another till or thread
    /// got the 429) or its window is full: wait this long, without counting a 429.
    HeldFor(u64),
    /// Credentials refused even after renewing the token.
    AuthFailed,
}

/// The fate of a job the worker tried. `took_write_since_try` says whether Omnium gave an
/// answer that was not 5xx or 429 to a request that changes something since this job's
/// previous try (judged on the monotonic clock by the worker): a failure counts as an
/// attempt only then, so an outage (a write-only one too, with reads answered) never uses
/// up attempts.
pub fn decide(
    job: &OutboxJob,
    result: &Result<(), Failure>,
    now_ms: i64,
    took_write_since_try: bool,
    policy: &RetryPolicy,
    jitter: f64,
) -> (JobFate, Signal) {
    let failure = match result {
        Ok(()) => return (JobFate::Delivered { accepted_ms: None }, Signal::None),
        Err(f) => f,
    };
    let retry = |counted: bool, uncertain: bool| {
        let error = failure.to_string();
        if counted && job.attempts + 1 >= policy.max_attempts {
            JobFate::Dead {
                error: format!("gave up after {} attempts: {error}", job.attempts + 1),
            }
        } else {
            JobFate::Retry {
                at: now_ms + backoff_ms(policy, job.tries + 1, jitter) as i64,
                counted,
                uncertain,
                error,
            }
        }
    };
    match failure {
        Failure::Unreachable(_) => (JobFate::Released, Signal::Unreachable),
        // Like unreachable (no attempt used), but the write may have got through whatever
        // redirected it: check Omnium before sending it again.
        Failure::Redirected(_) => (retry(false, true), Signal::Unreachable),
        Failure::Throttled {
            retry_after_ms,
            held: false,
        } => (JobFate::Released, Signal::PauseFor(*retry_after_ms)),
        Failure::Throttled {
            retry_after_ms,
            held: true,
        } => (JobFate::Released, Signal::HeldFor(*retry_after_ms)),
        Failure::Unauthorized(_) => (JobFate::Released, Signal::AuthFailed),
        Failure::Uncertain(_) => (retry(took_write_since_try, true), Signal::None),
        Failure::Unconfirmed(_) => (retry(false, true), Signal::None),
        // Not tried at all: looked at again after its back-off, but never more than
        // `WAITING_MAX_MS` later (the job it waits for may settle any time), never counted.
        Failure::Waiting(_) => (
            JobFate::Retry {
                at: now_ms + backoff_ms(policy, job.tries + 1, jitter).min(WAITING_MAX_MS) as i64,
                counted: false,
                uncertain: false,
                error: failure.to_string(),
            },
            Signal::None,
        ),
        Failure::Busy(_) => (retry(true, false), Signal::None),
        // A 4xx on a job that has sent before is no proof of rejection: an earlier try may
        // have landed, the read-back may have been stale, and the refusal may be Omnium's
        // duplicate check in other words. Read back again after the settle time and a
        // back-off; each such answer counts (Omnium took the write), so a job Omnium
        // really refuses still dies after `max_attempts`, hours later. Status 0 is the
        // library's own verdict on what it read back (another till's order): final.
        Failure::Rejected { status, .. } if *status != 0 && job.uncertain => {
            (retry(true, true), Signal::None)
        }
        Failure::Rejected { .. } => (
            JobFate::Dead {
                error: failure.to_string(),
            },
            Signal::None,
        ),
    }
}

/// Longest a job waiting for another job's outcome waits before it looks again.
pub const WAITING_MAX_MS: u64 = 300_000;

/// Longest a till holds every request after repeated 429s.
pub const THROTTLE_CAP_MS: u64 = 60_000;

/// How long a till holds every request after its `streak`-th 429 in a row (no good answer
/// between): never less than Omnium's Retry-After; from the second 429 on the pause doubles
/// each time up to `THROTTLE_CAP_MS` (a till that keeps being throttled lowers its own rate),
/// and it is spread by up to +50 % so tills throttled together do not come back together,
/// but never past the 2-hour cap on a Retry-After (a 2-hour Retry-After is not stretched).
pub fn throttle_hold_ms(retry_after_ms: u64, streak: u32, jitter: f64) -> u64 {
    let cap = crate::omnium::MAX_RETRY_AFTER_MS;
    let retry_after_ms = retry_after_ms.min(cap);
    let doubled = retry_after_ms
        .max(1)
        .saturating_mul(1u64 << streak.saturating_sub(1).min(16));
    let grown = doubled.min(THROTTLE_CAP_MS.max(retry_after_ms));
    ((grown as f64 * (1.0 + 0.5 * jitter)) as u64)
        .min(cap)
        .max(retry_after_ms)
}

/// Time from the end of a pull run to the start of the next: spread over the last fifth of
/// the interval (never later than configured) so tills started together drift apart, and
/// doubled per recent 429 (up to 8×): pulls slow down before sales do.
pub fn next_pull_in_ms(interval_ms: u64, streak: u32, jitter: f64) -> u64 {
    let slowed = interval_ms.saturating_mul(1u64 << streak.min(3));
    ((slowed as f64 * (0.8 + 0.2 * jitter)) as u64).max(1)
}

/// Delay of the first pull run after start for a till that has pulled before (a new till
/// needs its catalog at once): up to a quarter of the interval, at most a minute, so a
/// chain's tills opening at the same minute do not all pull at once.
pub fn first_pull_delay_ms(interval_ms: u64, jitter: f64) -> u64 {
    ((interval_ms / 4).min(60_000) as f64 * jitter) as u64
}

/// A small, fast generator for jitter (splitmix64); not for anything secret.
pub struct Jitter(u64);

impl Jitter {
    pub fn seeded() -> Jitter {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9E37_79B9);
        // Tills in one process started in the same instant still get different sequences.
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Jitter(t ^ (std::process::id() as u64) << 32 ^ n.wrapping_mul(0xD1B5_4A32_D192_ED03))
    }

    /// A generator replaying the same sequence for the same seed (the simulation).
    pub fn from_seed(seed: u64) -> Jitter {
        Jitter(seed)
    }

    /// A number in [0, 1).
    pub fn next_unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_pause_grows_with_repeated_429s_and_never_undercuts_retry_after() {
        for j in [0.0, 0.5, 0.999] {
            assert!(throttle_hold_ms(1000, 1, j) >= 1000);
            assert!(throttle_hold_ms(1000, 1, j) <= 1500);
            assert!(throttle_hold_ms(1000, 2, j) >= 2000);
            assert!(throttle_hold_ms(1000, 4, j) >= 8000);
            assert!(throttle_hold_ms(1000, 30, j) <= THROTTLE_CAP_MS * 3 / 2);
            assert!(throttle_hold_ms(1000, 30, j) >= THROTTLE_CAP_MS);
            // A Retry-After above the cap is still honoured.
            assert!(throttle_hold_ms(120_000, 3, j) >= 120_000);
            // Jitter never stretches a pause past the 2-hour cap on Retry-After.
            let cap = crate::omnium::MAX_RETRY_AFTER_MS;
            assert_eq!(throttle_hold_ms(cap, 1, j), cap);
            assert!(throttle_hold_ms(cap - 1_000, 5, j) <= cap);
            assert!(throttle_hold_ms(cap - 1_000, 5, j) >= cap - 1_000);
        }
        // Spread: two tills with different jitter come back at different times.
        assert_ne!(
            throttle_hold_ms(1000, 1, 0.1),
            throttle_hold_ms(1000, 1, 0.9)
        );
    }

    #[test]
    fn pulls_are_spread_and_slow_down_while_throttled() {
        assert_eq!(next_pull_in_ms(300_000, 0, 0.0), 240_000);
        assert_eq!(next_pull_in_ms(300_000, 0, 0.999_999), 299_999);
        assert_eq!(next_pull_in_ms(300_000, 2, 0.5), 1_080_000);
        assert_eq!(next_pull_in_ms(300_000, 9, 0.5), 2_160_000);
        assert_eq!(first_pull_delay_ms(300_000, 0.5), 30_000);
        assert_eq!(first_pull_delay_ms(60_000, 0.5), 7_500);
        let mut a = Jitter::seeded();
        let mut b = Jitter::seeded();
        assert_ne!(
            a.next_unit(),
            b.next_unit(),
            "seeded twice in a row, same sequence"
        );
    }

    const P: RetryPolicy = RetryPolicy {
        initial_ms: 60_000,
        max_ms: 7_200_000,
        max_attempts: 3,
    };

    fn job(attempts: u32, tries: u32, last_attempt_at: Option<i64>) -> OutboxJob {
        OutboxJob {
            id: 1,
            kind: "sale".into(),
            event_id: "S-1".into(),
            entity_id: "S-1".into(),
            content: "{}".into(),
            attempts,
            tries,
            uncertain: false,
            last_attempt_at,
            created_at: 0,
            step: 0,
            extra: None,
            claim: 1,
        }
    }

    #[test]
    fn backoff_grows_from_one_minute_to_two_hours_with_bounded_jitter() {
        assert_eq!(backoff_ms(&P, 1, 0.0), 60_000);
        assert_eq!(backoff_ms(&P, 2, 0.0), 120_000);
        assert_eq!(backoff_ms(&P, 3, 0.999), 299_940);
        for tries in 0..100 {
            for j in [0.0, 0.5, 0.9999] {
                let d = backoff_ms(&P, tries, j);
                assert!((60_000..=7_200_000).contains(&d), "tries {tries}: {d}");
            }
        }
        assert!(backoff_ms(&P, 30, 0.0) >= 5_760_000);
    }

    #[test]
    fn offline_probes_back_off_to_five_minutes_at_most() {
        assert_eq!(probe_backoff_ms(&P, 1, 0.0), 60_000);
        assert_eq!(probe_backoff_ms(&P, 2, 0.0), 120_000);
        for tries in 0..100 {
            for j in [0.0, 0.5, 0.9999] {
                let d = probe_backoff_ms(&P, tries, j);
                assert!((60_000..=300_000).contains(&d), "tries {tries}: {d}");
            }
        }
        // After a 2-hour outage the next probe is at most 5 minutes away.
        assert!(probe_backoff_ms(&P, 8, 0.0) >= 240_000);
        // A policy whose cap is below that keeps its own cap.
        let short = RetryPolicy {
            max_ms: 90_000,
            ..P
        };
        assert!(probe_backoff_ms(&short, 10, 0.9) <= 90_000);
    }

    #[test]
    fn an_outage_never_uses_up_attempts() {
        let j = job(2, 9, Some(100));
        let (fate, signal) = decide(
            &j,
            &Err(Failure::Unreachable("refused".into())),
            200,
            false,
            &P,
            0.5,
        );
        assert_eq!((fate, signal), (JobFate::Released, Signal::Unreachable));
        // 5xx while nothing else succeeded since this job's last try: not counted.
        let (fate, _) = decide(
            &j,
            &Err(Failure::Uncertain("HTTP 500".into())),
            200,
            false,
            &P,
            0.5,
        );
        assert!(
            matches!(
                fate,
                JobFate::Retry {
                    counted: false,
                    uncertain: true,
                    ..
                }
            ),
            "{fate:?}"
        );
        let (fate, signal) = decide(
            &j,
            &Err(Failure::Throttled {
                retry_after_ms: 2000,
                held: false,
            }),
            200,
            true,
            &P,
            0.5,
        );
        assert_eq!((fate, signal), (JobFate::Released, Signal::PauseFor(2000)));
        // Held back by this process (another till's 429): released, no 429 counted.
        let (fate, signal) = decide(
            &j,
            &Err(Failure::Throttled {
                retry_after_ms: 700,
                held: true,
            }),
            200,
            true,
            &P,
            0.5,
        );
        assert_eq!((fate, signal), (JobFate::Released, Signal::HeldFor(700)));
    }

    #[test]
    fn a_job_dies_on_a_permanent_rejection_or_after_counted_failures() {
        let rejected = Err(Failure::Rejected {
            status: 400,
            message: "bad".into(),
        });
        assert!(matches!(
            decide(&job(0, 0, None), &rejected, 1, false, &P, 0.0).0,
            JobFate::Dead { .. }
        ));
        // 5xx for this job while Omnium answered others: counted, and the third one kills it.
        let err = Err(Failure::Uncertain("HTTP 500".into()));
        assert!(matches!(
            decide(&job(1, 1, Some(10)), &err, 20, true, &P, 0.0).0,
            JobFate::Retry { counted: true, .. }
        ));
        assert!(matches!(
            decide(&job(2, 2, Some(10)), &err, 20, true, &P, 0.0).0,
            JobFate::Dead { .. }
        ));
    }

    #[test]
    fn a_4xx_on_a_job_that_sent_before_is_read_back_not_final() {
        let rejected = Err(Failure::Rejected {
            status: 400,
            message: "One or more validation errors occurred".into(),
        });
        let mut j = job(0, 1, Some(10));
        j.uncertain = true;
        let (fate, _) = decide(&j, &rejected, 20, true, &P, 0.0);
        assert!(
            matches!(
                fate,
                JobFate::Retry {
                    counted: true,
                    uncertain: true,
                    ..
                }
            ),
            "{fate:?}"
        );
        // Still bounded: at its last attempt it dies.
        let mut j = job(2, 5, Some(10));
        j.uncertain = true;
        assert!(matches!(
            decide(&j, &rejected, 20, true, &P, 0.0).0,
            JobFate::Dead { .. }
        ));
        // The library's own verdict on what it read back (status 0) stays final.
        let mut j = job(0, 1, Some(10));
        j.uncertain = true;
        let conflict = Err(Failure::Rejected {
            status: 0,
            message: "another till's order".into(),
        });
        assert!(matches!(
            decide(&j, &conflict, 20, true, &P, 0.0).0,
            JobFate::Dead { .. }
        ));
    }

    #[test]
    fn a_redirected_write_waits_uncounted_and_is_checked_first() {
        // Even at its last attempt, and with Omnium answering others meanwhile.
        let (fate, signal) = decide(
            &job(2, 9, Some(10)),
            &Err(Failure::Redirected("HTTP 302".into())),
            20,
            true,
            &P,
            0.0,
        );
        assert!(
            matches!(
                fate,
                JobFate::Retry {
                    counted: false,
                    uncertain: true,
                    ..
                }
            ),
            "{fate:?}"
        );
        assert_eq!(signal, Signal::Unreachable);
    }

    #[test]
    fn jitter_stays_in_range() {
        let mut j = Jitter(42);
        for _ in 0..10_000 {
            let x = j.next_unit();
            assert!((0.0..1.0).contains(&x));
        }
    }
}

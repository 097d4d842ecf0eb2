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

/// What a failure tells the worker about Omnium as a whole.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Signal {
    None,
    /// Nothing could be sent: stop the batch, probe again after the offline back-off.
    Unreachable,
    /// 429: every request waits this long (ms, on the monotonic clock).
    PauseFor(u64),
    /// Credentials refused even after renewing the token.
    AuthFailed,
}

/// The fate of a job the worker tried. `last_healthy_write_at` is when Omnium last gave an
/// answer that was not 5xx or 429 to a request that changes something: a failure counts as
/// an attempt only if Omnium took a write well since this job's previous try, so an outage
/// (a write-only one too, with reads answered) never uses up attempts.
pub fn decide(
    job: &OutboxJob,
    result: &Result<(), Failure>,
    now_ms: i64,
    last_healthy_write_at: i64,
    policy: &RetryPolicy,
    jitter: f64,
) -> (JobFate, Signal) {
    let failure = match result {
        Ok(()) => return (JobFate::Delivered { accepted_ms: None }, Signal::None),
        Err(f) => f,
    };
    let since = job.last_attempt_at.unwrap_or(job.created_at);
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
        Failure::Throttled { retry_after_ms } => {
            (JobFate::Released, Signal::PauseFor(*retry_after_ms))
        }
        Failure::Unauthorized(_) => (JobFate::Released, Signal::AuthFailed),
        Failure::Uncertain(_) => (retry(last_healthy_write_at > since, true), Signal::None),
        Failure::Unconfirmed(_) => (retry(false, true), Signal::None),
        Failure::Busy(_) => (retry(true, false), Signal::None),
        Failure::Rejected { .. } => (
            JobFate::Dead {
                error: failure.to_string(),
            },
            Signal::None,
        ),
    }
}

/// A small, fast generator for jitter (splitmix64); not for anything secret.
pub struct Jitter(u64);

impl Jitter {
    pub fn seeded() -> Jitter {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9E37_79B9);
        Jitter(t ^ (std::process::id() as u64) << 32)
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
    fn an_outage_never_uses_up_attempts() {
        let j = job(2, 9, Some(100));
        let (fate, signal) = decide(
            &j,
            &Err(Failure::Unreachable("refused".into())),
            200,
            0,
            &P,
            0.5,
        );
        assert_eq!((fate, signal), (JobFate::Released, Signal::Unreachable));
        // 5xx while nothing else succeeded since this job's last try: not counted.
        let (fate, _) = decide(
            &j,
            &Err(Failure::Uncertain("HTTP 500".into())),
            200,
            50,
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
            }),
            200,
            150,
            &P,
            0.5,
        );
        assert_eq!((fate, signal), (JobFate::Released, Signal::PauseFor(2000)));
    }

    #[test]
    fn a_job_dies_on_a_permanent_rejection_or_after_counted_failures() {
        let rejected = Err(Failure::Rejected {
            status: 400,
            message: "bad".into(),
        });
        assert!(matches!(
            decide(&job(0, 0, None), &rejected, 1, 0, &P, 0.0).0,
            JobFate::Dead { .. }
        ));
        // 5xx for this job while Omnium answered others: counted, and the third one kills it.
        let err = Err(Failure::Uncertain("HTTP 500".into()));
        assert!(matches!(
            decide(&job(1, 1, Some(10)), &err, 20, 15, &P, 0.0).0,
            JobFate::Retry { counted: true, .. }
        ));
        assert!(matches!(
            decide(&job(2, 2, Some(10)), &err, 20, 15, &P, 0.0).0,
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
            15,
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

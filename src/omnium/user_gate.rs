//! What the clients of one process that use the same API user share (issue 13): Omnium limits
//! requests per API user, not per till, so a chain running many tills in one process must
//! throttle them together.
//!
//! - **The pause.** After a 429 no request of any till of the API user leaves before the
//!   pause ends (monotonic time), whichever till received it.
//! - **The window.** At most [`USER_CONCURRENCY`] requests of the API user are in flight at
//!   once (Omnium's limit per user), fewer after 429s: the window halves on a 429 (once per
//!   round of requests) and grows back by one per window's worth of answers times
//!   [`GROWTH_ROUNDS`] (additive increase, multiplicative decrease), so tills coming back
//!   from a pause do not all fire at once and the requests already in flight when the bucket
//!   runs dry stay few.
//! - **Recovery.** The first client to get an answer after an outage wakes the others, so
//!   tills backing off after an outage come back together with it, not each at its own
//!   next probe.
//!
//! Clients share a gate only when it is keyed by their base URL and client id and they run
//! on the process's clock ([`UserGate::shared`]); a client with its own transport or clock
//! (tests, the deterministic simulation) has a private one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

/// Omnium's concurrency limit per API user (omnium-api.md, rate limits).
pub const USER_CONCURRENCY: usize = 20;
/// After a decrease the window regains one slot per this many windows' worth of answers.
pub const GROWTH_ROUNDS: f64 = 4.0;

/// Something to call when the API user's requests are answered again after an outage.
pub type Waker = dyn Fn() + Send + Sync;

#[derive(Debug)]
struct Window {
    /// Requests allowed in flight (at least 1).
    limit: f64,
    in_flight: usize,
    /// Bumped at each decrease: a 429 to a request sent before the last decrease does not
    /// decrease again (the window halves at most once per round of requests).
    epoch: u64,
}

pub struct UserGate {
    /// No request before this (monotonic ms of the clients' clock).
    paused_until: AtomicI64,
    window: Mutex<Window>,
    freed: Condvar,
    /// Set when a client found Omnium unreachable; the next answer clears it and wakes all.
    down: AtomicBool,
    /// The last answer to any client of this user that was neither 5xx, 429 nor a redirect
    /// (monotonic ms); `i64::MIN` = none yet.
    healthy_at: AtomicI64,
    wakers: Mutex<Vec<Weak<Waker>>>,
}

/// One request's place in the window, given back when dropped.
pub struct Permit<'a> {
    gate: &'a UserGate,
    epoch: u64,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let mut w = self.gate.lock();
        w.in_flight = w.in_flight.saturating_sub(1);
        drop(w);
        self.gate.freed.notify_one();
    }
}

impl Permit<'_> {
    /// Omnium answered this request 429: halve the window, once per round of requests.
    pub fn throttled(&self) {
        let mut w = self.gate.lock();
        if w.epoch == self.epoch {
            w.limit = (w.limit / 2.0).max(1.0);
            w.epoch += 1;
        }
    }

    /// Omnium answered this request (not 429): the window grows back slowly.
    pub fn answered(&self) {
        let mut w = self.gate.lock();
        if w.limit < USER_CONCURRENCY as f64 {
            w.limit = (w.limit + 1.0 / (GROWTH_ROUNDS * w.limit)).min(USER_CONCURRENCY as f64);
        }
    }
}

impl UserGate {
    pub fn private() -> Arc<UserGate> {
        Arc::new(UserGate {
            paused_until: AtomicI64::new(i64::MIN),
            window: Mutex::new(Window {
                limit: USER_CONCURRENCY as f64,
                in_flight: 0,
                epoch: 0,
            }),
            freed: Condvar::new(),
            down: AtomicBool::new(false),
            healthy_at: AtomicI64::new(i64::MIN),
            wakers: Mutex::new(Vec::new()),
        })
    }

    /// The gate of every client of this process using `client_id` at `base_url`.
    pub fn shared(base_url: &str, client_id: &str) -> Arc<UserGate> {
        // Held strongly while a client uses it or its pause lasts: a POS that closes and
        // reopens its client inside Omnium's Retry-After must find the pause (shared gates
        // run on the process's clock, `SystemClock`).
        type Registry = Mutex<HashMap<(String, String), Arc<UserGate>>>;
        static REGISTRY: OnceLock<Registry> = OnceLock::new();
        use crate::clock::Clock;
        let now = crate::clock::SystemClock.mono_ms();
        let mut reg = REGISTRY
            .get_or_init(Registry::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        reg.retain(|_, g| Arc::strong_count(g) > 1 || g.pause_left(now) > 0);
        let key = (
            base_url.trim_end_matches('/').to_string(),
            client_id.to_string(),
        );
        reg.entry(key).or_insert_with(UserGate::private).clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Window> {
        self.window.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Milliseconds left of the pause at monotonic time `now` (≤ 0: none).
    pub fn pause_left(&self, now: i64) -> i64 {
        self.paused_until.load(Ordering::SeqCst).saturating_sub(now)
    }

    /// No request of this API user leaves before `until` (monotonic ms).
    pub fn hold_until(&self, until: i64) {
        self.paused_until.fetch_max(until, Ordering::SeqCst);
    }

    /// Waits up to `wait` for a place in the window. `None`: every place stayed taken.
    pub fn acquire(&self, wait: Duration) -> Option<Permit<'_>> {
        let deadline = Instant::now() + wait;
        let mut w = self.lock();
        loop {
            if (w.in_flight as f64) < w.limit.floor().max(1.0) {
                w.in_flight += 1;
                return Some(Permit {
                    gate: self,
                    epoch: w.epoch,
                });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            w = self
                .freed
                .wait_timeout(w, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Requests allowed in flight now.
    pub fn window(&self) -> usize {
        self.lock().limit.floor().max(1.0) as usize
    }

    /// A client found Omnium unreachable.
    pub fn note_down(&self) {
        self.down.store(true, Ordering::SeqCst);
    }

    /// Omnium gave a client of this user a real answer at monotonic `now`; after an outage
    /// every registered waker is called (outside any lock of this gate).
    pub fn note_healthy(&self, now: i64) {
        self.healthy_at.fetch_max(now, Ordering::SeqCst);
        if self.down.swap(false, Ordering::SeqCst) {
            let wakers: Vec<Arc<Waker>> = {
                let mut ws = self.wakers.lock().unwrap_or_else(|p| p.into_inner());
                ws.retain(|w| w.strong_count() > 0);
                ws.iter().filter_map(Weak::upgrade).collect()
            };
            for w in wakers {
                w();
            }
        }
    }

    /// When a client of this user last had a real answer (monotonic ms; `i64::MIN`: never).
    pub fn healthy_at(&self) -> i64 {
        self.healthy_at.load(Ordering::SeqCst)
    }

    /// Calls `waker` when Omnium answers again after an outage (held weakly: dropping the
    /// `Arc` unregisters it).
    pub fn on_recovery(&self, waker: &Arc<Waker>) {
        let mut ws = self.wakers.lock().unwrap_or_else(|p| p.into_inner());
        ws.retain(|w| w.strong_count() > 0);
        ws.push(Arc::downgrade(waker));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_of_one_api_user_share_one_gate_and_others_do_not() {
        let a = UserGate::shared("http://127.0.0.1:9/", "gate-test-user");
        let b = UserGate::shared("http://127.0.0.1:9", "gate-test-user");
        let c = UserGate::shared("http://127.0.0.1:9", "gate-test-other");
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
        a.hold_until(5_000);
        assert_eq!(b.pause_left(1_000), 4_000);
        assert!(c.pause_left(1_000) <= 0);
    }

    /// A client closed and opened again inside a Retry-After (same process) is still held:
    /// before, the gate went with its last client and the new one sent at once.
    #[test]
    fn a_pause_outlives_the_clients_that_received_it() {
        use crate::clock::{Clock, SystemClock};
        let a = UserGate::shared("http://127.0.0.1:9", "gate-reopen-user");
        a.hold_until(SystemClock.mono_ms() + 60_000);
        drop(a);
        let b = UserGate::shared("http://127.0.0.1:9", "gate-reopen-user");
        assert!(
            b.pause_left(SystemClock.mono_ms()) > 0,
            "the reopened client is inside the pause"
        );
    }

    #[test]
    fn the_window_halves_once_per_round_and_grows_back_slowly() {
        let g = UserGate::private();
        assert_eq!(g.window(), USER_CONCURRENCY);
        let permits: Vec<_> = (0..USER_CONCURRENCY)
            .map(|_| g.acquire(Duration::ZERO).expect("a place"))
            .collect();
        assert!(
            g.acquire(Duration::from_millis(10)).is_none(),
            "window full"
        );
        // Every request of the round is answered 429: one halving, not twenty.
        for p in &permits {
            p.throttled();
        }
        assert_eq!(g.window(), USER_CONCURRENCY / 2);
        drop(permits);
        // A request sent after the decrease that is throttled halves again.
        g.acquire(Duration::ZERO).unwrap().throttled();
        assert_eq!(g.window(), USER_CONCURRENCY / 4);
        // Growth: about GROWTH_ROUNDS windows of answers per slot (a little more, as the
        // window grows on the way).
        for _ in 0..(GROWTH_ROUNDS as usize * (USER_CONCURRENCY / 4 + 1)) {
            g.acquire(Duration::ZERO).unwrap().answered();
        }
        assert_eq!(g.window(), USER_CONCURRENCY / 4 + 1);
        for _ in 0..100_000 {
            g.acquire(Duration::ZERO).unwrap().answered();
        }
        assert_eq!(g.window(), USER_CONCURRENCY, "never above Omnium's limit");
    }

    #[test]
    fn a_full_window_waits_for_a_place() {
        let g = UserGate::private();
        g.lock().limit = 1.0;
        let first = g.acquire(Duration::ZERO).unwrap();
        std::thread::scope(|s| {
            let waiter = s.spawn(|| g.acquire(Duration::from_secs(30)).is_some());
            std::thread::sleep(Duration::from_millis(50));
            drop(first);
            assert!(waiter.join().unwrap());
        });
    }

    #[test]
    fn recovery_wakes_every_registered_client_once() {
        let g = UserGate::private();
        let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let h = hits.clone();
        let waker: Arc<Waker> = Arc::new(move || {
            h.fetch_add(1, Ordering::SeqCst);
        });
        g.on_recovery(&waker);
        g.note_healthy(10);
        assert_eq!(hits.load(Ordering::SeqCst), 0, "no outage, nothing to wake");
        g.note_down();
        g.note_healthy(20);
        g.note_healthy(30);
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        assert_eq!(g.healthy_at(), 30);
        drop(waker);
        g.note_down();
        g.note_healthy(40);
        assert_eq!(
            hits.load(Ordering::SeqCst),
            1,
            "a dropped waker is not called"
        );
    }
}

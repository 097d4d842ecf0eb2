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
//! - **Order.** Places are handed out in the order callers asked for them, a pull's or a
//!   fetch's only after every sale (push) waiting before or beside it ([`Class`]): a till
//!   waiting longest is served first, and pending sales go before pulls across the fleet.
//! - **Recovery.** The first client to get an answer after an outage wakes the others, so
//!   tills backing off after an outage come back together with it, not each at its own
//!   next probe.
//!
//! Clients share a gate only when it is keyed by their base URL and client id and they run
//! on the process's clock ([`UserGate::shared`]); a client with its own transport or clock
//! (tests, the deterministic simulation) has a private one.

use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

/// Omnium's concurrency limit per API user (omnium-api.md, rate limits).
pub const USER_CONCURRENCY: usize = 20;
/// After a decrease the window regains one slot per this many windows' worth of answers.
pub const GROWTH_ROUNDS: f64 = 4.0;

/// Something to call when the API user's requests are answered again after an outage.
pub type Waker = dyn Fn() + Send + Sync;

/// Which queue a caller waits in for a place in the window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Delivering what the till recorded (sales, returns, customers, …): served first.
    Push,
    /// Reading from Omnium (pulls, fetches of announced orders): served once no push waits.
    Pull,
}

thread_local! {
    static CLASS: Cell<Class> = const { Cell::new(Class::Push) };
}

/// While the returned guard lives, requests this thread sends wait as [`Class::Pull`].
pub fn pulling() -> ClassGuard {
    ClassGuard(CLASS.with(|c| c.replace(Class::Pull)))
}

/// Restores the thread's previous class when dropped.
pub struct ClassGuard(Class);

impl Drop for ClassGuard {
    fn drop(&mut self) {
        CLASS.with(|c| c.set(self.0));
    }
}

/// The class of requests sent by this thread now.
pub fn current_class() -> Class {
    CLASS.with(|c| c.get())
}

#[derive(Debug)]
struct Window {
    /// Requests allowed in flight (at least 1).
    limit: f64,
    in_flight: usize,
    /// Bumped at each decrease: a 429 to a request sent before the last decrease does not
    /// decrease again (the window halves at most once per round of requests).
    epoch: u64,
    /// Tickets of callers waiting for a place, in arrival order, per class.
    push_waiting: VecDeque<u64>,
    pull_waiting: VecDeque<u64>,
    next_ticket: u64,
}

impl Window {
    fn places(&self) -> usize {
        self.limit.floor().max(1.0) as usize
    }

    fn free(&self) -> usize {
        self.places().saturating_sub(self.in_flight)
    }

    /// Callers served before the holder of `ticket` of `class`: the pushes before it (all
    /// of them, for a pull) and the pulls before it.
    fn ahead(&self, class: Class, ticket: u64) -> usize {
        let before = |q: &VecDeque<u64>| q.iter().take_while(|t| **t != ticket).count();
        match class {
            Class::Push => before(&self.push_waiting),
            Class::Pull => self.push_waiting.len() + before(&self.pull_waiting),
        }
    }

    fn queue(&mut self, class: Class) -> &mut VecDeque<u64> {
        match class {
            Class::Push => &mut self.push_waiting,
            Class::Pull => &mut self.pull_waiting,
        }
    }

    fn leave(&mut self, class: Class, ticket: u64) {
        let q = self.queue(class);
        if let Some(i) = q.iter().position(|t| *t == ticket) {
            q.remove(i);
        }
    }
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
        // Every waiter looks: only the one whose turn it is takes the place.
        self.gate.freed.notify_all();
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
                push_waiting: VecDeque::new(),
                pull_waiting: VecDeque::new(),
                next_ticket: 0,
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

    /// Waits up to `wait` for a place in the window, in the class of this thread's requests
    /// ([`pulling`]). `None`: every place stayed taken.
    pub fn acquire(&self, wait: Duration) -> Option<Permit<'_>> {
        self.acquire_as(current_class(), wait)
    }

    /// Waits up to `wait` for a place in the window, after every caller that asked before
    /// in the same class and, for a pull, after every push waiting. `None`: no place came.
    pub fn acquire_as(&self, class: Class, wait: Duration) -> Option<Permit<'_>> {
        let deadline = Instant::now() + wait;
        let mut w = self.lock();
        let ticket = w.next_ticket;
        w.next_ticket += 1;
        w.queue(class).push_back(ticket);
        loop {
            if w.ahead(class, ticket) < w.free() {
                w.leave(class, ticket);
                w.in_flight += 1;
                let epoch = w.epoch;
                let more =
                    w.free() > 0 && !(w.push_waiting.is_empty() && w.pull_waiting.is_empty());
                drop(w);
                if more {
                    // A place is still free (the window grew): the next in line may take it.
                    self.freed.notify_all();
                }
                return Some(Permit { gate: self, epoch });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                w.leave(class, ticket);
                drop(w);
                // Those behind this caller may now be first in line.
                self.freed.notify_all();
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
        self.lock().places()
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

    /// Waits until `n` callers are queued for a place.
    fn queued(g: &UserGate, n: usize) {
        let until = Instant::now() + Duration::from_secs(30);
        while {
            let w = g.lock();
            w.push_waiting.len() + w.pull_waiting.len() < n
        } {
            assert!(Instant::now() < until, "callers never queued");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Review: places were taken by whichever waiter woke first (one `notify_one`, and a
    /// newcomer could take a place freed before the waiters woke), so a till could wait
    /// through many rounds and a pull take the place a sale had waited for. Now: in order of
    /// asking, every waiting push before any pull, and a newcomer queues behind the waiters.
    #[test]
    fn places_go_in_order_of_asking_and_pushes_before_pulls() {
        let g = UserGate::private();
        g.lock().limit = 1.0;
        let first = g.acquire(Duration::ZERO).unwrap();
        let order = Mutex::new(Vec::new());
        std::thread::scope(|s| {
            let wait_as = |name: &'static str, class: Class| {
                let (g, order) = (&g, &order);
                move || {
                    let p = g
                        .acquire_as(class, Duration::from_secs(60))
                        .expect("a place");
                    order.lock().unwrap().push(name);
                    // Held a moment: whoever is next must wait for it, not race past.
                    std::thread::sleep(Duration::from_millis(5));
                    drop(p);
                }
            };
            let mut n = 0;
            for (name, class) in [
                ("pull-1", Class::Pull),
                ("push-1", Class::Push),
                ("pull-2", Class::Pull),
                ("push-2", Class::Push),
                ("push-3", Class::Push),
            ] {
                s.spawn(wait_as(name, class));
                n += 1;
                queued(&g, n);
            }
            drop(first);
        });
        assert_eq!(
            order.into_inner().unwrap(),
            ["push-1", "push-2", "push-3", "pull-1", "pull-2"]
        );
        // Nobody is left queued, and a caller that gave up left the line.
        let held = g.acquire(Duration::ZERO).unwrap();
        assert!(g
            .acquire_as(Class::Push, Duration::from_millis(20))
            .is_none());
        assert_eq!(g.lock().push_waiting.len(), 0);
        drop(held);
        assert!(g.acquire_as(Class::Pull, Duration::ZERO).is_some());
    }

    /// A caller asking while others wait does not jump the line even if a place is free at
    /// that instant; with more places free than waiters ahead it takes one at once.
    #[test]
    fn a_newcomer_queues_behind_waiters_but_not_behind_free_places() {
        let g = UserGate::private();
        g.lock().limit = 2.0;
        {
            let mut w = g.lock();
            // One push waits (its wake-up not yet seen) and one place is free.
            w.push_waiting.push_back(1_000);
            w.in_flight = 1;
        }
        assert!(
            g.acquire_as(Class::Push, Duration::from_millis(20))
                .is_none(),
            "the waiting push goes first"
        );
        g.lock().in_flight = 0;
        let p = g.acquire_as(Class::Push, Duration::ZERO);
        assert!(p.is_some(), "two free places, one waiter ahead");
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

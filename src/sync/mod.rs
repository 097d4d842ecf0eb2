//! The worker: one background thread that drains the outbox to Omnium. It is the only
//! place that joins store/ and omnium/; its decisions live in [`policy`] as plain functions.

pub mod events;
pub mod inbound;
pub mod policy;
pub mod pull;
pub mod push;

use crate::clock::Clock;
use crate::model::JobKind;
use crate::omnium::{Failure, OmniumApi};
use crate::store::{JobUpdate, OutboxJob, Store};
use events::EventQueue;
use policy::{Jitter, RetryPolicy, Signal};
use push::{Delivery, SyncContext};
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Jobs claimed per round trip to the database (two commits per batch, not per job).
const BATCH: usize = 256;
/// This many 5xx/reset answers in one batch, and nothing else, mean Omnium is down.
const OUTAGE_FAILURES: usize = 3;
/// After a storage error the worker waits this long before trying again.
const STORAGE_RETRY_MS: u64 = 1_000;

/// Test hook (feature `sim` only): with `FO_TEST_KILL_AT=<point>[:<n>]` in the environment,
/// the process SIGKILLs itself the `n`-th time (default 1st) the worker reaches `point`:
/// `after_claim` (jobs committed in flight, nothing sent), `after_send` (requests sent,
/// outcomes not recorded), `mid_pipeline` (a batch's requests leaving while the previous
/// batch's outcomes are about to commit), `between_invoice_and_file` (a receipt's invoice landed, its PDF
/// not sent), `mid_scroll` (a catalog page applied, the scroll not finished),
/// `mid_expansion` (a job's recorded stock movements written as rows, not yet removed).
/// `tests/kill_points.rs` kills a delivering process at each, many times.
pub fn kill_point(point: &str) {
    #[cfg(feature = "sim")]
    {
        use std::sync::atomic::AtomicU32;
        use std::sync::OnceLock;
        static AT: OnceLock<Option<(String, u32)>> = OnceLock::new();
        static HITS: AtomicU32 = AtomicU32::new(0);
        let at = AT.get_or_init(|| {
            let v = std::env::var("FO_TEST_KILL_AT").ok()?;
            let (name, n) = v.split_once(':').unwrap_or((v.as_str(), "1"));
            Some((name.to_string(), n.parse().unwrap_or(1)))
        });
        if let Some((name, n)) = at {
            if name == point && HITS.fetch_add(1, Ordering::SeqCst) + 1 == *n {
                // SAFETY: kill(2) on our own pid with a valid signal has no memory effects.
                unsafe {
                    libc::kill(libc::getpid(), libc::SIGKILL);
                }
            }
        }
    }
    #[cfg(not(feature = "sim"))]
    let _ = point;
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[derive(Default)]
struct Control {
    wake: bool,
    sync_now: bool,
    shutdown: bool,
}

/// Why the worker is holding back every request.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Gate {
    Open,
    Offline,
    Throttled,
    AuthFailed,
}

/// What `fo_status` reports about the link to Omnium.
#[derive(Clone, Debug, Default)]
pub struct LinkState {
    pub online: bool,
    /// False until the first answer (or failure) at start-up: its outcome is always an event.
    pub known: bool,
    /// No request before this time (offline back-off or Retry-After), unix ms.
    pub hold_until: Option<i64>,
    /// A pull run is in progress.
    pub pulling: bool,
}

pub struct Sync {
    pub store: Arc<Store>,
    pub api: OmniumApi,
    pub events: EventQueue,
    pub ctx: SyncContext,
    pub policy: RetryPolicy,
    pub concurrency: usize,
    pub pull_interval_ms: u64,
    pub retention_ms: u64,
    /// Wall clock for stamps, monotonic clock for every schedule (CONTRACT §9 rule 9).
    pub clock: Arc<dyn Clock>,
    /// Driven by the deterministic simulation: never sleeps (the simulation moves time).
    simulated: bool,
    control: Mutex<Control>,
    signal: Condvar,
    link: Mutex<LinkState>,
    /// Batches finished; flush waiters watch it.
    progress: Mutex<u64>,
    progressed: Condvar,
    /// Odd while a batch's outcomes are being committed and its `job.dead` events are not
    /// queued yet: `fo_flush` sees the jobs settled as soon as the commit lands, and waits for
    /// this to turn even so that the events of what it waited for are there when it returns.
    reporting: AtomicU64,
    /// The worker thread's pthread id once it runs (0 before): `wait_reported` must not wait
    /// for the worker on the worker's own thread.
    worker_thread: AtomicU64,
}

impl Sync {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<Store>,
        api: OmniumApi,
        ctx: SyncContext,
        policy: RetryPolicy,
        concurrency: usize,
        pull_interval_ms: u64,
        retention_ms: u64,
        clock: Arc<dyn Clock>,
    ) -> Sync {
        Sync {
            store,
            api,
            events: EventQueue::default(),
            ctx,
            policy,
            concurrency,
            pull_interval_ms,
            retention_ms,
            clock,
            simulated: false,
            control: Mutex::default(),
            signal: Condvar::new(),
            link: Mutex::default(),
            progress: Mutex::new(0),
            progressed: Condvar::new(),
            reporting: AtomicU64::new(0),
            worker_thread: AtomicU64::new(0),
        }
    }

    /// Runs the worker on another clock (tests, the deterministic simulation).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Sync {
        self.api = self.api.with_clock(clock.clone());
        self.clock = clock;
        self
    }

    /// Driven step by step (the deterministic simulation): the worker never sleeps.
    pub fn simulated(mut self) -> Sync {
        self.simulated = true;
        self
    }

    pub fn wall_ms(&self) -> i64 {
        self.clock.wall_ms()
    }

    pub fn mono_ms(&self) -> i64 {
        self.clock.mono_ms()
    }

    /// A monotonic deadline for a persisted wall-clock time: how far ahead it is now,
    /// never less than 0 nor more than the cap (a wall clock that jumped cannot stall it).
    pub fn mono_deadline(&self, wall_at: i64) -> i64 {
        let ahead = wall_at.saturating_sub(self.wall_ms());
        self.mono_ms() + ahead.clamp(0, crate::store::MAX_WAIT_MS)
    }

    fn control(&self) -> std::sync::MutexGuard<'_, Control> {
        self.control.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Something was recorded: look at the outbox now.
    pub fn nudge(&self) {
        self.control().wake = true;
        self.signal.notify_all();
    }

    /// Push now, even if the worker is backing off after an outage (not past a Retry-After).
    pub fn sync_now(&self) {
        let mut c = self.control();
        c.wake = true;
        c.sync_now = true;
        drop(c);
        self.signal.notify_all();
    }

    pub fn shutdown(&self) {
        self.control().shutdown = true;
        self.signal.notify_all();
        self.progressed.notify_all();
    }

    pub fn is_shutting_down(&self) -> bool {
        self.control().shutdown
    }

    pub fn link(&self) -> LinkState {
        self.link.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether the caller runs on this client's worker thread, or on a thread sending one
    /// of its batches (a log callback the worker's own line called): nothing there may wait
    /// for the worker, which is stopped in it (the batch being sent, and with it the round,
    /// waits for that thread).
    pub fn on_worker_thread(&self) -> bool {
        // pthread_self, not std::thread::current(): that panics on a thread whose
        // thread-locals are gone (a call from a pthread_key destructor).
        // SAFETY: pthread_self only reads the calling thread's id.
        let me = unsafe { libc::pthread_self() } as usize as u64;
        self.worker_thread.load(Ordering::SeqCst) == me
            || SENDING_FOR
                .try_with(|s| s.get() == self as *const Sync as usize)
                .unwrap_or(false)
    }

    /// Waits, at most until `deadline`, until the batch whose outcomes are being committed
    /// now (if any: see `reporting`) has its events queued. Only that batch: one started
    /// after it is not waited for (under a steady drain the counter is odd much of the
    /// time). Returns at once on the worker's own thread (a log callback calling
    /// `fo_flush` while the worker reports) and when the client is closing.
    pub fn wait_reported(&self, deadline: Instant) {
        if self.on_worker_thread() {
            return;
        }
        let seen = self.reporting.load(Ordering::SeqCst);
        if seen % 2 == 0 {
            return;
        }
        while self.reporting.load(Ordering::SeqCst) == seen && !self.is_shutting_down() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            self.wait_progress(left.min(Duration::from_millis(5)));
        }
    }

    /// Wakes whoever waits for the worker's next batch (`fo_flush`).
    fn note_progress(&self) {
        *self.progress.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.progressed.notify_all();
    }

    /// Waits until the worker finishes another batch, or `timeout`.
    pub fn wait_progress(&self, timeout: Duration) {
        let guard = self.progress.lock().unwrap_or_else(|p| p.into_inner());
        let _ = self.progressed.wait_timeout(guard, timeout);
    }

    /// `hold_until` is monotonic; `fo_status` reports it as a wall-clock time.
    fn set_link(&self, online: bool, hold_until: Option<i64>, reason: &str) {
        let hold_until = hold_until.map(|m| self.wall_ms() + (m - self.mono_ms()).max(0));
        let mut link = self.link.lock().unwrap_or_else(|p| p.into_inner());
        let changed = !link.known || link.online != online;
        link.known = true;
        link.online = online;
        link.hold_until = hold_until;
        drop(link);
        if changed {
            let kind = if online {
                "sync.online"
            } else {
                "sync.offline"
            };
            if online {
                log::info!("Omnium is reachable again");
            } else {
                log::warn!("Omnium is unreachable: {reason}");
            }
            let mut event = json!({"type": kind, "at": rfc3339(self.wall_ms())});
            if !online {
                event["reason"] = reason.into();
            }
            self.events.push(event);
        }
    }

    /// Sleeps until the monotonic `until_ms` (or a nudge), returning early on shutdown.
    fn sleep_until(&self, until_ms: i64) {
        if self.simulated {
            return;
        }
        let mut c = self.control();
        while !c.wake && !c.shutdown {
            let left = until_ms - self.mono_ms();
            if left <= 0 {
                break;
            }
            c = self
                .signal
                .wait_timeout(c, Duration::from_millis(left as u64))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// The worker thread's body.
    pub fn run(self: Arc<Self>) {
        // SAFETY: pthread_self only reads the calling thread's id.
        let me = unsafe { libc::pthread_self() } as usize as u64;
        self.worker_thread.store(me, Ordering::SeqCst);
        let mut worker = Worker::new(self.clone(), Jitter::seeded());
        log::info!("sync worker started");
        // Another till of this API user finding Omnium back ends this one's outage back-off.
        let me = Arc::downgrade(&self);
        let waker: Arc<crate::omnium::user_gate::Waker> = Arc::new(move || {
            if let Some(sync) = me.upgrade() {
                sync.nudge();
            }
        });
        self.api.on_recovery(&waker);
        // A till that has pulled before starts its first run after a random part of the
        // interval: a chain's tills opening at the same minute must not pull all at once.
        // A new till (no catalog yet) pulls at once.
        if matches!(self.store.cursor("products"), Ok((Some(_), _))) {
            // A search index left to build (a crash at the end of a first sync, or a
            // re-fold set aside at open) is built now, on the builder's thread, rather
            // than after that delay: searches read the tables until then
            // (store/deferred.rs).
            if let Err(e) = self.store.kick_catalog_build() {
                log::error!("cannot build the catalog's search index: {e}");
            }
            let delay =
                policy::first_pull_delay_ms(self.pull_interval_ms, worker.jitter.next_unit());
            worker
                .puller
                .schedule(self.mono_ms().saturating_add(delay as i64));
        }
        worker.probe();
        loop {
            let sync_now = {
                let mut c = self.control();
                if c.shutdown {
                    break;
                }
                c.wake = false;
                std::mem::take(&mut c.sync_now)
            };
            if !worker.step(sync_now) {
                self.sleep_until(self.mono_ms() + STORAGE_RETRY_MS as i64);
            }
        }
        log::info!("sync worker stopped");
        // A thread made later may get this id: it is not the worker.
        self.worker_thread.store(0, Ordering::SeqCst);
    }
}

/// Outcomes of a batch not yet recorded (the database refused them): recorded first in
/// the next round, before anything else is claimed.
struct Unrecorded {
    updates: Vec<JobUpdate>,
    finished: i64,
    dead: Vec<(OutboxJob, String)>,
}

/// What a sent batch said about Omnium, acted on once its outcomes are decided.
struct BatchSignal {
    only_waited: bool,
    answered: bool,
    failed: usize,
    strongest: (Signal, String),
}

/// Claims the next batch: up to [`BATCH`] due jobs while Omnium is reachable, one (the
/// probe) otherwise. Customers travel 100 a call: when one is due, its calls are filled with
/// the others that are, though sales recorded between them come first in the queue.
fn claim_batch(sync: &Sync, now: i64, open: bool) -> crate::error::Result<Vec<OutboxJob>> {
    let limit = if open { BATCH } else { 1 };
    let mut jobs = sync.store.claim_due(now, limit)?;
    if open && jobs.iter().any(|j| j.kind == JobKind::Customer.as_str()) {
        jobs.extend(sync.store.claim_due_of_kind(
            now,
            2 * CUSTOMER_BATCH,
            JobKind::Customer.as_str(),
        )?);
    }
    Ok(jobs)
}

/// Commits a batch's outcomes, then reports its dead jobs. The outcomes the database
/// refused are given back with the error.
#[allow(clippy::result_large_err)]
fn commit_outcomes(
    sync: &Sync,
    batch: Unrecorded,
) -> Result<(), (Unrecorded, crate::error::Error)> {
    /// Marks the outcomes reported when dropped, whatever happens in between (a panic).
    struct Reporting<'a>(&'a AtomicU64);
    impl Drop for Reporting<'_> {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    sync.reporting.fetch_add(1, Ordering::SeqCst);
    let reporting = Reporting(&sync.reporting);
    if let Err(e) = sync.store.finish(&batch.updates, batch.finished) {
        return Err((batch, e));
    }
    for (job, error) in batch.dead {
        log::error!(
            "job {} ({} {:?}) is dead: {error}",
            job.id,
            job.kind,
            job.event_id
        );
        sync.events.push(json!({
            "type": "job.dead", "job_id": job.id.to_string(), "kind": job.kind,
            "entity_id": job.entity_id, "event_id": job.event_id, "error": error,
            "at": rfc3339(batch.finished),
        }));
    }
    drop(reporting);
    sync.note_progress();
    Ok(())
}

/// The worker's state between rounds. The thread in [`Sync::run`] is a thin loop around
/// [`Worker::step`]; the deterministic simulation drives the same steps itself.
pub struct Worker {
    sync: Arc<Sync>,
    jitter: Jitter,
    gate: Gate,
    /// No request before this (monotonic ms).
    hold_until: i64,
    offline_tries: u32,
    /// Monotonic ms at which this worker last found Omnium unreachable: an answer to any
    /// client of the same API user after it ends the outage for this one too.
    offline_since: i64,
    /// Monotonic ms of the last purge; `None` before the first.
    last_purge: Option<i64>,
    puller: pull::Puller,
    unrecorded: Option<Unrecorded>,
    /// A round failed after claiming: jobs may be left in flight with nobody sending them.
    stranded: bool,
    /// 429s recently answered to this till (one more per 429, one less per good answer):
    /// the pause after a 429 and the pull interval grow with it.
    throttle_streak: u32,
    /// Monotonic ms at which this worker last finished trying each job still pending: a
    /// failure counts as an attempt only if Omnium took a write after it
    /// ([`Worker::tried_since`]).
    tried_mono: HashMap<i64, i64>,
}

impl Worker {
    pub fn new(sync: Arc<Sync>, jitter: Jitter) -> Worker {
        Worker {
            sync,
            jitter,
            gate: Gate::Open,
            hold_until: 0,
            offline_tries: 0,
            offline_since: crate::omnium::NEVER,
            last_purge: None,
            puller: pull::Puller::default(),
            unrecorded: None,
            stranded: false,
            throttle_streak: 0,
            tried_mono: HashMap::new(),
        }
    }

    /// The monotonic time of `job`'s previous try, to compare with Omnium's health stamps
    /// (monotonic too; a wall clock that ran fast and was stepped back must not make every
    /// later failure look like Omnium answered others since). A try this worker made is
    /// remembered; one made before (another process) is before any stamp this client made;
    /// a job never tried is dated from its creation, no later than now.
    fn tried_since(&self, job: &OutboxJob, mono: i64, wall: i64) -> i64 {
        if let Some(&at) = self.tried_mono.get(&job.id) {
            return at;
        }
        if job.last_attempt_at.is_some() {
            return crate::omnium::NEVER;
        }
        mono.saturating_sub(wall.saturating_sub(job.created_at).max(0))
    }

    /// One round, with its failures contained: a storage error or a bug in one round must
    /// not end syncing, nor leave claimed jobs in flight until the next open (issue 8
    /// defect 6). Outcomes the database refused are kept and recorded first next round;
    /// other claimed jobs go back to pending as uncertain. Returns false after a failure
    /// (the caller pauses before the next round).
    pub fn step(&mut self, sync_now: bool) -> bool {
        let round = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.round(sync_now)));
        let panicked = match round {
            Ok(Ok(())) => return true,
            Ok(Err(e)) => {
                log::error!("sync round failed: {e}");
                false
            }
            Err(_) => {
                log::error!("a bug was caught in the sync worker; it goes on after a pause");
                // What the panic interrupted cannot be trusted: its outcomes are dropped and
                // the jobs are read back.
                self.unrecorded = None;
                true
            }
        };
        if panicked || self.unrecorded.is_none() {
            self.stranded = true;
            self.recover_stranded();
        }
        false
    }

    /// Jobs left in flight by a failed round go back to pending, to be read back first.
    fn recover_stranded(&mut self) {
        if !self.stranded || self.unrecorded.is_some() {
            return;
        }
        match self.sync.store.recover_in_flight(self.sync.wall_ms()) {
            Ok(n) => {
                self.stranded = false;
                if n > 0 {
                    log::warn!("{n} job(s) left in flight by a failed round were put back; each is read back before it is sent again");
                }
            }
            Err(e) => log::error!("jobs left in flight cannot be put back yet: {e}"),
        }
    }

    /// Records a batch's outcomes, then reports its dead jobs; outcomes the database
    /// refused are kept, to be recorded first next round.
    fn record(&mut self, batch: Unrecorded) -> crate::error::Result<()> {
        commit_outcomes(&self.sync, batch).map_err(|(batch, e)| {
            self.keep_unrecorded(batch);
            e
        })
    }

    /// Keeps outcomes the database refused (with any already kept: two batches of one
    /// pipelined round can both be refused).
    fn keep_unrecorded(&mut self, batch: Unrecorded) {
        match &mut self.unrecorded {
            Some(kept) => {
                kept.updates.extend(batch.updates);
                kept.dead.extend(batch.dead);
                kept.finished = kept.finished.max(batch.finished);
            }
            None => self.unrecorded = Some(batch),
        }
    }

    /// Learns whether Omnium is reachable at start-up by fetching a token (not rate-limited).
    fn probe(&mut self) {
        match self.sync.api.probe() {
            Ok(()) => self.open_gate(),
            Err(f) => self.signal(signal_of(&f), &f.to_string()),
        }
    }

    fn round(&mut self, sync_now: bool) -> crate::error::Result<()> {
        let sync = self.sync.clone();
        let sync = &*sync;
        if let Some(batch) = self.unrecorded.take() {
            self.record(batch)?;
        }
        self.recover_stranded();
        let now = sync.wall_ms();
        let mono = sync.mono_ms();
        // Schedules of another epoch are armed by the claim below, in its transaction (a
        // separate pass here cost a second scan of every pending job per round); nothing
        // before it reads them.
        if sync_now {
            // Only an outage's back-off may be cut short. A Retry-After is Omnium's word, and
            // refused credentials stay refused until their back-off passes (each retry sends
            // the secret): a POS calling fo_sync_now in a loop must not turn either into a
            // stream of requests.
            if self.gate == Gate::Offline {
                self.hold_until = 0;
            }
            sync.store.make_all_due(now)?;
        }
        if self.gate == Gate::Offline && sync.api.user_healthy_at() > self.offline_since {
            // Omnium answered another till (or thread) of this API user since this one
            // found it down: the outage is over for every till, not at each one's next probe.
            log::info!("Omnium answered another client of this API user: the outage is over");
            self.open_gate();
        }
        if mono < self.hold_until {
            // Nothing is claimed while held (an outage, a pause): sales recorded meanwhile
            // have their stock movements expanded here, so a stock read does not expand
            // hours of them on the fly. Only a help to readers: a failure waits for the claim.
            if let Err(e) = sync.store.expand_movements_aside() {
                log::warn!("stock movements not expanded yet: {e}");
            }
            sync.sleep_until(self.hold_until);
            return Ok(());
        }
        self.puller.maybe_start(sync_now, sync);
        sync.link.lock().unwrap_or_else(|p| p.into_inner()).pulling = self.puller.is_running();
        // While Omnium is down, one job at a time probes it; the rest wait untouched.
        let jobs = claim_batch(sync, now, self.gate == Gate::Open)?;
        if jobs.is_empty() {
            if self.gate == Gate::Throttled {
                // The pause is over. A 429 is an answer: Omnium was reachable and the token
                // good, so nothing needs checking now; the next real request does that.
                self.gate = Gate::Open;
            } else if self.gate != Gate::Open {
                self.probe();
                if self.gate != Gate::Open {
                    return Ok(());
                }
            }
            if self.fetch_step() > 0 {
                return Ok(());
            }
            if self.puller.is_running() {
                self.pull_step();
                return Ok(());
            }
            self.purge(mono)?;
            let next = sync.store.next_due_at()?.unwrap_or(i64::MAX);
            let fetch = sync.store.next_fetch_at()?.unwrap_or(i64::MAX);
            // The pull schedule runs on the monotonic clock: a wall clock set back does not
            // stop pulls, one set forward does not hurry them.
            let pull_at = mono.saturating_add(self.puller.due_in_ms(sync));
            let wake = sync.mono_deadline(next.min(fetch));
            sync.sleep_until(wake.min(pull_at));
            return Ok(());
        }
        kill_point("after_claim");
        // Batches are pipelined (issue 10 target 5): while a batch's requests leave (on
        // other threads), this thread commits the previous batch's outcomes and claims the
        // next batch. What keeps it exactly once (CONTRACT §9 rule 8):
        // - the next batch's claim is committed (its jobs durably in flight) before any of
        //   its requests leaves: it is sent only after this step's database work is over;
        // - no job is in two batches: a claim takes pending jobs only, and a sent batch's
        //   jobs stay in flight until its outcomes commit; a job behind one of them (the same
        //   order) is not due until that one is delivered, so it waits for a later claim;
        // - a batch's outcomes commit while the next batch is sent, i.e. later than before.
        //   A crash before they commit leaves its jobs in flight, which the next open
        //   puts back as uncertain: each is read back (GET) before anything is sent again,
        //   so the crash costs a read-back, never a duplicate (`tests/kill_points.rs`,
        //   `mid_pipeline`). A failed commit keeps them (`unrecorded`), recorded first.
        let mut batch = jobs;
        // The previous batch's outcomes, not committed yet.
        let mut outcomes: Option<Unrecorded> = None;
        let mut failure = None;
        loop {
            let claim_next = self.gate == Gate::Open && !sync.is_shutting_down();
            let previous = outcomes.take();
            let beside = (previous.is_some() || claim_next).then_some(|| {
                let committed = match previous {
                    Some(b) => {
                        kill_point("mid_pipeline");
                        commit_outcomes(sync, b)
                    }
                    None => Ok(()),
                };
                // Nothing new is claimed after a refused commit: the round stops.
                let next = if claim_next && committed.is_ok() {
                    claim_batch(sync, sync.wall_ms(), true).inspect(|next| {
                        if !next.is_empty() {
                            kill_point("after_claim");
                        }
                    })
                } else {
                    Ok(Vec::new())
                };
                (committed, next)
            });
            let (results, db) = self.send_batch(&batch, beside);
            kill_point("after_send");
            let (committed, next) = db.unwrap_or((Ok(()), Ok(Vec::new())));
            if let Err((refused, e)) = committed {
                self.keep_unrecorded(refused);
                failure = Some(e);
            }
            let mut next = match next {
                Ok(next) => next,
                Err(e) => {
                    failure.get_or_insert(e);
                    Vec::new()
                }
            };
            let (mut done, said) = self.outcomes(&batch, results);
            self.after_batch(said);
            if failure.is_none() && self.gate == Gate::Open && !next.is_empty() {
                // A few fetches between push batches: none starves another.
                self.fetch_step();
            }
            if failure.is_some() || self.gate != Gate::Open || sync.is_shutting_down() {
                // Claimed beside this batch and not sent (Omnium stopped answering, a
                // commit was refused, the client closes): back to pending as they were.
                for job in next.drain(..) {
                    done.updates
                        .push(JobUpdate::new(&job, crate::store::JobFate::Released));
                }
            }
            outcomes = Some(done);
            if next.is_empty() {
                break;
            }
            batch = next;
        }
        if let Some(done) = outcomes {
            self.record(done)?;
        }
        if let Some(e) = failure {
            return Err(e);
        }
        // One pull page (and a few fetches) between push batches: none starves another.
        if self.gate == Gate::Open {
            self.fetch_step();
        }
        // Pending sales go before pulls: a pull page only once no job is due.
        if self.gate == Gate::Open && self.puller.is_running() && !sync.store.any_due()? {
            self.pull_step();
        }
        sync.note_progress();
        Ok(())
    }

    /// The fates of a sent batch's jobs (nothing committed yet).
    fn outcomes(
        &mut self,
        jobs: &[OutboxJob],
        results: Vec<Option<Delivery>>,
    ) -> (Unrecorded, BatchSignal) {
        let sync = self.sync.clone();
        let sync = &*sync;
        // Jobs that only waited for others sent nothing: they say nothing about Omnium, and
        // must not stand in for the outage probe.
        let only_waited = results.iter().all(|r| {
            matches!(
                r,
                Some(Delivery {
                    result: Err(Failure::Waiting(_)),
                    ..
                })
            )
        });
        let healthy = sync.api.last_healthy_write_at();
        let finished = sync.wall_ms();
        let finished_mono = sync.mono_ms();
        let mut updates = Vec::with_capacity(jobs.len());
        let mut dead = Vec::new();
        let mut strongest = (Signal::None, String::new());
        let mut answered = false;
        let mut failed = 0;
        for (job, outcome) in jobs.iter().zip(results) {
            let Some(Delivery { result, step, sent }) = outcome else {
                updates.push(JobUpdate::new(job, crate::store::JobFate::Released));
                continue;
            };
            answered |= !matches!(
                &result,
                Err(Failure::Unreachable(_)
                    | Failure::Redirected(_)
                    | Failure::Uncertain(_)
                    | Failure::Waiting(_)
                    | Failure::Throttled { held: true, .. })
            );
            failed += usize::from(matches!(&result, Err(Failure::Uncertain(_))));
            let accepted_ms = result.as_ref().ok().copied().flatten();
            let result = result.map(|_| ());
            // Claimed before this batch was sent: its try is dated from the claim's clock.
            let since = self.tried_since(job, finished_mono, finished);
            let (mut fate, signal) = policy::decide(
                job,
                &result,
                finished,
                healthy > since,
                &sync.policy,
                self.jitter.next_unit(),
            );
            if let Err(f) = &result {
                log::debug!("job {} ({} {:?}): {f}", job.id, job.kind, job.event_id);
                if signal != Signal::None && strongest.0 == Signal::None {
                    strongest = (signal, f.to_string());
                }
            }
            if let crate::store::JobFate::Delivered { accepted_ms: at } = &mut fate {
                *at = accepted_ms;
            }
            if let crate::store::JobFate::Dead { error } = &fate {
                dead.push((job.clone(), error.clone()));
            }
            match &fate {
                crate::store::JobFate::Retry { .. } => {
                    self.tried_mono.insert(job.id, finished_mono);
                }
                crate::store::JobFate::Released => {}
                _ => {
                    self.tried_mono.remove(&job.id);
                }
            }
            updates.push(JobUpdate {
                step,
                sent,
                ..JobUpdate::new(job, fate)
            });
        }
        (
            Unrecorded {
                updates,
                finished,
                dead,
            },
            BatchSignal {
                only_waited,
                answered,
                failed,
                strongest,
            },
        )
    }

    /// Acts on what a sent batch said about Omnium (the gate, the throttle streak).
    fn after_batch(&mut self, said: BatchSignal) {
        let BatchSignal {
            only_waited,
            answered,
            failed,
            strongest,
        } = said;
        let sync = self.sync.clone();
        let mono = sync.mono_ms();
        if answered && strongest.0 == Signal::None {
            self.throttle_streak = self.throttle_streak.saturating_sub(1);
        }
        match strongest.0 {
            Signal::None if only_waited => {
                if !matches!(self.gate, Gate::Open | Gate::Throttled) {
                    self.probe();
                }
            }
            Signal::None if answered || sync.api.last_healthy_at() >= mono => self.open_gate(),
            // While online, one or two failures are those jobs' own (each backs off).
            Signal::None if self.gate == Gate::Open && failed < OUTAGE_FAILURES => {}
            // Every answer was a 5xx or a reset: Omnium is down, not each job bad.
            Signal::None => self.signal(
                Signal::Unreachable,
                "Omnium answered only with 5xx or resets",
            ),
            s => self.signal(s, &strongest.1),
        }
    }

    /// Fetches orders announced by events, and customers they name. Returns how many.
    fn fetch_step(&mut self) -> usize {
        // Reads wait behind every sale of the API user waiting for a place (user_gate).
        let _reading = crate::omnium::user_gate::pulling();
        match inbound::fetch_due(&self.sync) {
            Ok(n) => n,
            Err(f) => {
                let reason = f.to_string();
                self.signal(signal_of(&f), &reason);
                0
            }
        }
    }

    fn pull_step(&mut self) {
        let _reading = crate::omnium::user_gate::pulling();
        let result = self.puller.step(&self.sync);
        self.sync
            .link
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pulling = self.puller.is_running();
        match result {
            Ok(_) => {
                self.throttle_streak = self.throttle_streak.saturating_sub(1);
                if !self.puller.is_running() {
                    // The run is over: the next one after the interval, spread, and later
                    // while Omnium has been throttling this till.
                    let next = policy::next_pull_in_ms(
                        self.sync.pull_interval_ms,
                        self.throttle_streak,
                        self.jitter.next_unit(),
                    );
                    let mono = self.sync.mono_ms();
                    self.puller.schedule(mono.saturating_add(next as i64));
                }
            }
            Err(f) => {
                log::warn!("pull stopped: {f}");
                let throttled = matches!(f, Failure::Throttled { .. });
                match &f {
                    Failure::Rejected { .. } | Failure::Busy(_) => {}
                    Failure::Uncertain(_) => {}
                    other => {
                        let reason = other.to_string();
                        self.signal(signal_of(other), &reason);
                    }
                }
                // A throttled pull waits out the pause and then a back-off that grows with
                // repeated 429s, so sales waiting behind the pause go first.
                let (pause_left, tries) = if throttled {
                    (
                        (self.hold_until - self.sync.mono_ms()).max(0),
                        self.throttle_streak.max(1),
                    )
                } else {
                    (0, 1)
                };
                let retry = policy::backoff_ms(&self.sync.policy, tries, self.jitter.next_unit());
                let mono = self.sync.mono_ms();
                self.puller
                    .abort(mono.saturating_add(pause_left + retry as i64));
            }
        }
        self.sync.note_progress();
    }

    fn open_gate(&mut self) {
        self.gate = Gate::Open;
        self.hold_until = 0;
        self.offline_tries = 0;
        self.sync.set_link(true, None, "");
    }

    fn signal(&mut self, signal: Signal, reason: &str) {
        let now = self.sync.mono_ms();
        match signal {
            Signal::None => {}
            Signal::PauseFor(ms) => {
                // Never before Omnium's Retry-After; longer (and spread) after repeated 429s.
                self.throttle_streak = self.throttle_streak.saturating_add(1);
                let hold = policy::throttle_hold_ms(
                    ms.min(crate::omnium::MAX_RETRY_AFTER_MS),
                    self.throttle_streak,
                    self.jitter.next_unit(),
                );
                let until = now + hold as i64;
                log::warn!("Omnium asked to slow down; every request waits {hold} ms");
                // Omnium's Retry-After already holds every till of this API user (the
                // request path registered it as the 429 arrived); the growth and the jitter
                // slow this till only: shared, one unlucky till's grown pause would stop the
                // whole fleet while the bucket refills past full.
                self.gate = Gate::Throttled;
                self.hold_until = self.hold_until.max(until);
                self.sync.set_link(true, Some(self.hold_until), reason);
            }
            Signal::HeldFor(ms) => {
                // Another till or thread got the 429 (and grew the pause): wait it out
                // without counting a 429 of this till's own.
                let until = now.saturating_add(ms.min(crate::omnium::MAX_RETRY_AFTER_MS) as i64);
                log::debug!("held back {ms} ms: this API user is being rate limited");
                self.gate = Gate::Throttled;
                self.hold_until = self.hold_until.max(until);
                self.sync.set_link(true, Some(self.hold_until), reason);
            }
            Signal::Unreachable | Signal::AuthFailed => {
                self.offline_tries += 1;
                let delay = if signal == Signal::Unreachable {
                    policy::probe_backoff_ms(
                        &self.sync.policy,
                        self.offline_tries,
                        self.jitter.next_unit(),
                    )
                } else {
                    policy::backoff_ms(
                        &self.sync.policy,
                        self.offline_tries,
                        self.jitter.next_unit(),
                    )
                };
                if signal == Signal::Unreachable {
                    self.offline_since = now;
                }
                self.hold_until = now + delay as i64;
                if signal == Signal::AuthFailed && self.gate != Gate::AuthFailed {
                    log::error!("Omnium refuses the API user: {reason}");
                    self.sync.events.push(json!({
                        "type": "sync.auth_failed", "reason": reason,
                        "at": rfc3339(self.sync.wall_ms()),
                    }));
                }
                self.gate = if signal == Signal::AuthFailed {
                    Gate::AuthFailed
                } else {
                    Gate::Offline
                };
                self.sync.set_link(false, Some(self.hold_until), reason);
            }
        }
    }

    /// Sends the batch on up to `concurrency` threads. Customers of one type travel
    /// together (up to 100 a call). A job is left untried (`None`) when an earlier answer in
    /// the batch said to stop: unreachable, 429 or refused credentials.
    ///
    /// `beside` (the database work of a pipelined round) runs on this thread while the
    /// requests leave from others, and its result is returned with the batch's. Driven step
    /// by step (the deterministic simulation), it runs first and the batch after it, on this
    /// thread: the same order of effects, without a race.
    fn send_batch<R>(
        &self,
        jobs: &[OutboxJob],
        beside: Option<impl FnOnce() -> R>,
    ) -> (Vec<Option<Delivery>>, Option<R>) {
        let sync = &*self.sync;
        let groups = group_jobs(jobs);
        let next = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let slots: Vec<Mutex<Option<Delivery>>> = jobs.iter().map(|_| Mutex::new(None)).collect();
        let work = || loop {
            if stop.load(Ordering::Relaxed) || sync.is_shutting_down() {
                break;
            }
            let g = next.fetch_add(1, Ordering::Relaxed);
            let Some(group) = groups.get(g) else { break };
            let outcomes = if group.len() == 1 {
                vec![push::deliver(&jobs[group[0]], sync)]
            } else {
                let members: Vec<&OutboxJob> = group.iter().map(|&i| &jobs[i]).collect();
                push::deliver_customers(&members, sync)
            };
            for (&i, outcome) in group.iter().zip(outcomes) {
                if matches!(
                    outcome.result,
                    Err(Failure::Unreachable(_)
                        | Failure::Redirected(_)
                        | Failure::Throttled { .. }
                        | Failure::Unauthorized(_))
                ) {
                    stop.store(true, Ordering::Relaxed);
                }
                *slots[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(outcome);
            }
        };
        let threads = sync.concurrency.min(groups.len()).max(1);
        let mut beside_result = None;
        match beside {
            Some(beside) if sync.simulated => {
                beside_result = Some(beside());
                work();
            }
            None if threads <= 1 => work(),
            beside => std::thread::scope(|s| {
                for _ in 0..threads {
                    s.spawn(|| sending_thread(sync, &work));
                }
                beside_result = beside.map(|f| f());
            }),
        }
        let results = slots
            .into_iter()
            .map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner()))
            .collect();
        (results, beside_result)
    }

    /// The "now" retention is judged from: the wall clock, but never ahead of Omnium's
    /// clock (its last `Date` plus the time since) nor, when no answer carried a `Date`, of
    /// the newest delivery stamp. A till clock a year fast must not purge young rows (nor
    /// the record of delivered ids that keeps a replayed sale from being sent again); a
    /// clock behind only keeps rows longer.
    fn purge_clock(&self) -> crate::error::Result<i64> {
        let wall = self.sync.wall_ms();
        let bound = match self.sync.api.omnium_now_ms() {
            // A minute of slack for the Date header's whole seconds and the answer's travel.
            Some(omnium) => {
                let bound = omnium.saturating_add(60_000);
                if bound < wall {
                    log::warn!(
                        "the till's clock is {} s ahead of Omnium's; retention is judged on Omnium's",
                        (wall - bound) / 1000
                    );
                }
                bound
            }
            None => self.sync.store.newest_delivered_at()?.unwrap_or(wall),
        };
        Ok(wall.min(bound))
    }

    /// Hourly by the monotonic clock; the cut-offs are wall-clock, as the stamps are.
    fn purge(&mut self, mono: i64) -> crate::error::Result<()> {
        if self.last_purge.is_some_and(|last| mono - last < 3_600_000) {
            return Ok(());
        }
        self.last_purge = Some(mono);
        let wall = self.purge_clock()?;
        let n = self
            .sync
            .store
            .purge_delivered(wall - self.sync.retention_ms as i64)?;
        if n > 0 {
            log::info!("purged {n} delivered job(s) past their retention");
        }
        // Personal data past its retention leaves the tables, free pages and the WAL. Its
        // stamps are wall-clock times, so the cut-off is too.
        self.sync.store.erase_expired(wall)?;
        Ok(())
    }
}

thread_local! {
    /// The address of the [`Sync`] whose batch this thread is sending; 0 elsewhere.
    static SENDING_FOR: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The body of a thread sending a batch's requests: marked as the worker's own while it
/// runs ([`Sync::on_worker_thread`]). A function of its own, so a profile can select it
/// (`--toggle-collect='*sending_thread*'`).
#[inline(never)]
pub(crate) fn sending_thread(sync: &Sync, work: &(impl Fn() + std::marker::Sync)) {
    SENDING_FOR.with(|s| s.set(sync as *const Sync as usize));
    work();
    SENDING_FOR.with(|s| s.set(0));
}

/// Runs `f` on a thread the worker waits for (the pull's next page fetched ahead) marked as
/// the worker's own, as a sending thread is ([`Sync::on_worker_thread`]): a log callback
/// there calling `fo_flush` checks once instead of waiting for the worker that waits for it.
pub(crate) fn joined_by_worker<T>(sync: &Sync, f: impl FnOnce() -> T) -> T {
    struct Unmark(usize);
    impl Drop for Unmark {
        fn drop(&mut self) {
            let _ = SENDING_FOR.try_with(|s| s.set(self.0));
        }
    }
    let _unmark = Unmark(
        SENDING_FOR
            .try_with(|s| s.replace(sync as *const Sync as usize))
            .unwrap_or(0),
    );
    f()
}

/// Customers per `AddOrUpdateMany` call (Omnium's limit).
const CUSTOMER_BATCH: usize = 100;

/// Splits a batch into what travels together: one group per job, except customers of one
/// type, up to [`CUSTOMER_BATCH`] a group.
fn group_jobs(jobs: &[OutboxJob]) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut customers: [Vec<usize>; 2] = [Vec::new(), Vec::new()];
    for (i, job) in jobs.iter().enumerate() {
        if job.kind == JobKind::Customer.as_str() {
            let business = job.content.contains(r#""type":"company""#);
            let group = &mut customers[usize::from(business)];
            group.push(i);
            if group.len() == CUSTOMER_BATCH {
                groups.push(std::mem::take(group));
            }
        } else {
            groups.push(vec![i]);
        }
    }
    groups.extend(customers.into_iter().filter(|g| !g.is_empty()));
    groups
}

fn signal_of(f: &Failure) -> Signal {
    match f {
        Failure::Unauthorized(_) => Signal::AuthFailed,
        Failure::Throttled {
            retry_after_ms,
            held: false,
        } => Signal::PauseFor(*retry_after_ms),
        Failure::Throttled {
            retry_after_ms,
            held: true,
        } => Signal::HeldFor(*retry_after_ms),
        _ => Signal::Unreachable,
    }
}

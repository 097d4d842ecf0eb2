//! The outbox: one row per recorded event, drained by the worker.
//!
//! States: `pending` → `in_flight` (claimed by the worker, committed before any request is
//! sent) → `delivered`, or back to `pending` with a later `next_attempt_at`, or `dead`.
//! A job is due only when every earlier job of the same entity (the order it concerns) is
//! delivered, which keeps per-order order without holding up other orders.

use super::{StockEffects, Store};
use crate::error::{Error, Result};
use rusqlite::{params, OptionalExtension, Row, Transaction, TransactionBehavior};
use std::collections::HashMap;

pub struct NewJob<'a> {
    pub kind: &'a str,
    pub event_id: &'a str,
    /// The order the event belongs to: jobs of one entity are sent in recording order.
    pub entity_id: &'a str,
    /// Canonical JSON of the recorded event: compared on a repeated id, sent by the worker.
    pub content: &'a str,
    /// A receipt's PDF, stored beside the job.
    pub blob: Option<&'a [u8]>,
}

/// What a recording check adds to the event: its stock effect and worked-out extras.
#[derive(Debug, Default)]
pub struct Extras {
    pub effects: StockEffects,
    pub extra: Option<String>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Recorded {
    New(i64),
    AlreadyRecorded(i64),
}

/// Access to what is already recorded, inside the recording transaction (reads, and the
/// writes that must commit with the event).
pub struct Lookup<'t> {
    pub(crate) tx: &'t rusqlite::Connection,
}

impl Lookup<'_> {
    pub fn content(&self, kind: &str, event_id: &str) -> Result<Option<String>> {
        Ok(self
            .tx
            .prepare_cached("SELECT content FROM outbox_job WHERE kind = ?1 AND event_id = ?2")?
            .query_row([kind, event_id], |r| r.get(0))
            .optional()?)
    }

    pub fn contents_for_entity(&self, kind: &str, entity_id: &str) -> Result<Vec<String>> {
        let mut stmt = self.tx.prepare_cached(
            "SELECT content FROM outbox_job WHERE kind = ?1 AND entity_id = ?2 ORDER BY id",
        )?;
        let rows = stmt.query_map([kind, entity_id], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
    }
}

#[derive(Clone, Debug)]
pub struct OutboxJob {
    pub id: i64,
    pub kind: String,
    pub event_id: String,
    pub entity_id: String,
    pub content: String,
    pub attempts: u32,
    pub tries: u32,
    /// The last try may have landed: check Omnium before sending again.
    pub uncertain: bool,
    pub last_attempt_at: Option<i64>,
    pub created_at: i64,
    /// How far a multi-step job (a receipt) got: its steps that landed.
    pub step: i64,
    pub extra: Option<String>,
    /// The token of the claim that put this job in flight: its outcome is recorded only
    /// under it (a late result of another claim changes nothing).
    pub claim: i64,
}

impl OutboxJob {
    /// A row of `SELECT {JOB_COLUMNS}`, by position (a lookup by name compares the names of
    /// every column, for each field of each row).
    fn from_row(r: &Row) -> rusqlite::Result<OutboxJob> {
        Ok(OutboxJob {
            id: r.get(0)?,
            kind: r.get(1)?,
            event_id: r.get(2)?,
            entity_id: r.get(3)?,
            content: r.get(4)?,
            attempts: r.get(5)?,
            tries: r.get(6)?,
            uncertain: r.get(7)?,
            last_attempt_at: r.get(8)?,
            created_at: r.get(9)?,
            step: r.get(10)?,
            extra: r.get(11)?,
            claim: r.get::<_, Option<i64>>(12)?.unwrap_or(0),
        })
    }
}

/// What becomes of a claimed job after the worker's try.
#[derive(Clone, Debug, PartialEq)]
pub enum JobFate {
    /// Landed; `accepted_ms` is when Omnium accepted it, by Omnium's clock, if it said.
    Delivered {
        accepted_ms: Option<i64>,
    },
    /// Not tried after all (the batch stopped early): back to pending as it was.
    Released,
    Retry {
        at: i64,
        counted: bool,
        uncertain: bool,
        error: String,
    },
    Dead {
        error: String,
    },
}

#[derive(Clone, Debug)]
pub struct JobUpdate {
    pub job_id: i64,
    /// The claim the try ran under ([`OutboxJob::claim`]): the update applies only while
    /// the job is still in flight under it.
    pub claim: i64,
    pub fate: JobFate,
    /// Steps that landed during this try, kept whatever the fate.
    pub step: Option<i64>,
    /// A request that may change Omnium left during this try: unless delivered, the job is
    /// read back before anything is sent again, whatever the fate (CONTRACT §9 rule 8).
    pub sent: bool,
}

impl JobUpdate {
    pub fn new(job: &OutboxJob, fate: JobFate) -> JobUpdate {
        JobUpdate {
            job_id: job.id,
            claim: job.claim,
            fate,
            step: None,
            sent: false,
        }
    }
}

/// A job as the deterministic simulation checks it.
#[derive(Clone, Debug)]
pub struct OutboxRow {
    pub id: i64,
    pub kind: String,
    pub event_id: String,
    pub entity_id: String,
    pub state: String,
    pub uncertain: bool,
    pub next_attempt_at: i64,
    /// How long until it is due (ms, the monotonic schedule once armed; settle included).
    pub due_in_ms: i64,
    pub last_error: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutboxCounts {
    pub pending: u64,
    pub blocked: u64,
    pub dead: u64,
    pub oldest_pending_at: Option<i64>,
}

#[derive(Clone, Debug)]
pub struct DeadJob {
    pub id: i64,
    pub kind: String,
    pub entity_id: String,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub dead_at: Option<i64>,
}

/// The columns [`OutboxJob::from_row`] reads, in its order.
const JOB_COLUMNS: &str =
    "id, kind, event_id, entity_id, content, attempts, tries, uncertain, last_attempt_at, created_at, step, extra, claim";

/// Due (every pending row being of this epoch, see [`Store::claim`]): its time has come on
/// the monotonic clock, and an uncertain job (whose last request may still be working its
/// way through Omnium) only a settle time after that request could have left.
/// `?5` is the monotonic now, `?4` the settle time (ms).
const DUE: &str = "state = 'pending' AND next_mono <= ?5
     AND (NOT uncertain OR settle_from <= ?5 - ?4)";

/// When a pending job `j` falls due, as a wall-clock time (unix ms): a job armed in this
/// process's epoch by its monotonic schedule (and, while uncertain, not before its read-back
/// settles), one of an earlier epoch by its stored wall time. Parameters: ?1 the settle
/// margin, ?2 this epoch, ?3 the wall clock now, ?4 the monotonic clock now. The one
/// definition of "due" for [`Store::next_due_at`] and [`Store::any_due`] (`<= ?3`).
const DUE_AT: &str = "CASE WHEN sched_epoch = ?2
       THEN ?3 - ?4 + MAX(next_mono, CASE WHEN uncertain THEN settle_from + ?1 ELSE next_mono END)
       ELSE next_attempt_at END";

/// How long the compact record of a delivered event outlives its job: far longer than any
/// till replays an event (a year; about 100 bytes an event).
pub const DELIVERED_ID_RETENTION_MS: i64 = 365 * 24 * 3_600_000;

/// Appended to a dead customer version's `last_error` when the newer version that
/// supersedes it leaves the outbox (see [`Store::purge_delivered`]).
pub const SUPERSEDED_NOTE: &str =
    "a newer version of this customer was delivered, so this one cannot be retried";

/// The longest any job waits, whatever the wall clock did (CONTRACT §9 rule 9).
pub const MAX_WAIT_MS: i64 = 2 * 3_600_000;

/// The wall-clock now of the store's clock.
fn now_wall_ms(store: &Store) -> i64 {
    store
        .claims
        .clock
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .wall_ms()
}

/// Job ids as a JSON array, for `IN (SELECT value FROM json_each(?))` (one statement for a
/// whole batch).
fn id_list(ids: impl Iterator<Item = i64>) -> String {
    let mut s = String::from("[");
    for (i, id) in ids.enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&id.to_string());
    }
    s.push(']');
    s
}

/// The content hash kept in `delivered_id`: FNV-1a, 128 bits, hex. It tells "the same
/// event again" from "another event under a used id" once the full job is purged.
pub(crate) fn content_hash(content: &str) -> String {
    let mut h: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    for b in content.as_bytes() {
        h ^= u128::from(*b);
        h = h.wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013b);
    }
    format!("{h:032x}")
}

/// How far a recording caller got in the batch's transaction, for undoing its part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// Looking up what is recorded: nothing written.
    Reading,
    /// Running `check`, which may write (in a savepoint when the batch has other members).
    Checking,
    /// Writing the event's rows: undone only by rolling the whole batch back.
    Writing,
}

/// What undoing a caller's part at `stage` takes.
fn undo_for(stage: Stage, alone: bool) -> super::group::Undo {
    use super::group::Undo;
    match stage {
        Stage::Reading => Undo::Nothing,
        Stage::Checking if !alone => Undo::Savepoint,
        Stage::Checking | Stage::Writing => Undo::Batch,
    }
}

/// Ends a recording caller's part in its batch if it panics: its part is undone and the
/// batch committed for the others (or, past its checks, failed for all).
struct UndoOnUnwind<'a> {
    group: &'a super::group::Group,
    conn: &'a rusqlite::Connection,
    alone: bool,
    stage: &'a std::cell::Cell<Stage>,
    armed: bool,
}

impl Drop for UndoOnUnwind<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.group.undo_member(
                self.conn,
                &Error::Internal("a recording panicked".into()),
                undo_for(self.stage.get(), self.alone),
            );
            self.group.finish(self.conn);
        }
    }
}

/// One event's rows, inside the recording batch's transaction (see [`Store::record`]).
///
/// Every rule that can refuse the event (a conflict, `check`) runs before its rows are
/// written, so refusing it undoes nothing or only `check`'s own writes (its savepoint,
/// opened only when `savepoint`: other members' rows are in the batch). The rows
/// themselves are written outside any savepoint: a savepoint, like a statement journal,
/// copies every page it changes first, and a page split made the copies as costly as the
/// rows. A failure while writing them fails the batch, as a failed commit does.
fn record_in<F>(
    tx: &rusqlite::Connection,
    job: &NewJob,
    now_ms: i64,
    check: F,
    savepoint: bool,
    stage: &std::cell::Cell<Stage>,
) -> Result<Recorded>
where
    F: FnOnce(&Lookup) -> Result<Extras>,
{
    let existing: Option<(i64, String)> = tx
        .prepare_cached("SELECT id, content FROM outbox_job WHERE kind = ?1 AND event_id = ?2")?
        .query_row([job.kind, job.event_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    if let Some((id, content)) = existing {
        return if content == job.content {
            Ok(Recorded::AlreadyRecorded(id))
        } else {
            Err(Error::Conflict(format!(
                "{} {:?} is already recorded with different content",
                job.kind, job.event_id
            )))
        };
    }
    // Delivered and purged since: the compact record still knows it, so a till that
    // replays an old event never has it stored and sent again.
    let delivered: Option<String> = tx
        .prepare_cached("SELECT content_hash FROM delivered_id WHERE kind = ?1 AND event_id = ?2")?
        .query_row([job.kind, job.event_id], |r| r.get(0))
        .optional()?;
    if let Some(hash) = delivered {
        return if hash == content_hash(job.content) {
            Ok(Recorded::AlreadyRecorded(0))
        } else {
            Err(Error::Conflict(format!(
                "{} {:?} was recorded and delivered earlier with different content",
                job.kind, job.event_id
            )))
        };
    }
    stage.set(Stage::Checking);
    if savepoint {
        tx.prepare_cached("SAVEPOINT rec")?.execute([])?;
    }
    let Extras { effects, extra } = check(&Lookup { tx })?;
    if savepoint {
        tx.prepare_cached("RELEASE rec")?.execute([])?;
    }
    stage.set(Stage::Writing);
    // OR ROLLBACK (here and for the movements): a statement that may stop half-way with
    // ABORT makes SQLite copy every page it changes into a statement journal first, so it
    // can undo just that statement. Nothing here can break a constraint (the id was looked
    // up just above, no value is NULL); were it to, the whole batch fails, as a failed
    // commit does.
    tx.prepare_cached(
        "INSERT OR ROLLBACK INTO outbox_job (kind, event_id, entity_id, content, extra, next_attempt_at, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
    )?
    .execute(params![job.kind, job.event_id, job.entity_id, job.content, extra, now_ms])?;
    let id = tx.last_insert_rowid();
    Store::insert_movements(tx, id, &effects)?;
    if let Some(blob) = job.blob {
        tx.prepare_cached("INSERT INTO receipt_pdf (job_id, pdf) VALUES (?1, ?2)")?
            .execute(params![id, blob])?;
    }
    Ok(Recorded::New(id))
}

/// An earlier job of the same entity that is not delivered yet. A customer or a stock
/// push is state, not an event: a newer one supersedes a dead older one of its kind (which
/// stays dead and visible), so only a live older one holds it.
const HELD_BEHIND_EARLIER: &str = "EXISTS (SELECT 1 FROM outbox_job e
     WHERE e.entity_id = j.entity_id AND e.id < j.id AND e.state <> 'delivered'
       AND NOT (e.state = 'dead' AND e.kind = j.kind AND j.kind IN ('customer', 'stock_push')))";

/// `BLOCKED_BY_DEAD` for a job `j`: an earlier dead job of its entity holds it (see
/// [`HELD_BEHIND_EARLIER`] for the kinds a newer job supersedes).
const BLOCKED_BY_DEAD: &str = "EXISTS (SELECT 1 FROM outbox_job d
     WHERE d.entity_id = j.entity_id AND d.id < j.id AND d.state = 'dead'
       AND NOT (d.kind = j.kind AND j.kind IN ('customer', 'stock_push')))";

impl Store {
    /// Records an event in one durable transaction. The same id with the same content is
    /// `AlreadyRecorded`; with other content it is `Error::Conflict`. `check` runs inside
    /// the transaction for rules that depend on what is already recorded, and returns the
    /// event's effect on local stock, stored with it.
    ///
    /// Calls on several threads at once share one transaction and one commit (see
    /// `store::group`); each returns only after the commit holding its rows.
    pub fn record<F>(&self, job: &NewJob, now_ms: i64, check: F) -> Result<Recorded>
    where
        F: FnOnce(&Lookup) -> Result<Extras>,
    {
        self.record_announced(job, now_ms, check, None)
    }

    /// [`Store::record`] for a caller announced earlier ([`Store::coming`]).
    pub fn record_announced<F>(
        &self,
        job: &NewJob,
        now_ms: i64,
        check: F,
        coming: Option<super::group::Coming<'_>>,
    ) -> Result<Recorded>
    where
        F: FnOnce(&Lookup) -> Result<Extras>,
    {
        use std::sync::atomic::Ordering;
        let group = &self.group;
        group.waiting.fetch_add(1, Ordering::AcqRel);
        // Counted as waiting before it stops being on its way: a holder of the writer never
        // sees it in neither count while it is still coming.
        if let Some(c) = coming {
            c.arrived();
        }
        let conn = self.conn_raw();
        group.waiting.fetch_sub(1, Ordering::AcqRel);
        let batch = group.join(&conn)?;
        // The batch's first member needs no savepoint even for `check`: undoing its part
        // is rolling the transaction back.
        let alone = group.is_empty();
        let stage = std::cell::Cell::new(Stage::Reading);
        // Should it panic, the guard undoes this caller's part and commits the others'
        // (or fails them) before the writer is unlocked.
        let mut guard = UndoOnUnwind {
            group,
            conn: &conn,
            alone,
            stage: &stage,
            armed: true,
        };
        let own = record_in(&conn, job, now_ms, check, !alone, &stage);
        guard.armed = false;
        drop(guard);
        match &own {
            Ok(_) => group.add_member(),
            Err(e) => group.undo_member(&conn, e, undo_for(stage.get(), alone)),
        }
        if group.leave_to_next() {
            // Another recording caller is about to take the writer: it (or the next one)
            // commits this batch.
            drop(conn);
            group.log_deferred();
            let recorded = own?;
            self.wait_for_batch(batch)?;
            return Ok(recorded);
        }
        let finished = group.finish(&conn);
        drop(conn);
        group.log_deferred();
        let recorded = own?;
        match finished {
            Some((id, result)) if id == batch => {
                group.collect_own(id);
                result?;
                Ok(recorded)
            }
            _ => Err(Error::Internal(
                "a recording's commit batch ended without it".into(),
            )),
        }
    }

    /// Records state (a customer): a pending job of the same entity that is not in flight
    /// gets the new content instead of a second job, so only the newest version is sent.
    pub fn record_state<F>(&self, job: &NewJob, now_ms: i64, also: F) -> Result<Recorded>
    where
        F: FnOnce(&Lookup) -> Result<()>,
    {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let pending: Option<(i64, String)> = tx
            .prepare_cached(
                "SELECT id, content FROM outbox_job WHERE kind = ?1 AND entity_id = ?2 AND state = 'pending'
                 ORDER BY id DESC LIMIT 1",
            )?
            .query_row([job.kind, job.entity_id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let outcome = match pending {
            Some((id, content)) if content == job.content => Recorded::AlreadyRecorded(id),
            Some((id, _)) => {
                tx.prepare_cached(
                    "UPDATE outbox_job SET content = ?2, next_attempt_at = MIN(next_attempt_at, ?3),
                     sched_epoch = NULL WHERE id = ?1",
                )?
                .execute(params![id, job.content, now_ms])?;
                Recorded::New(id)
            }
            None => {
                // Each version of the state is its own job: number it after the earlier ones.
                tx.prepare_cached(
                    "INSERT INTO outbox_job (kind, event_id, entity_id, content, next_attempt_at, created_at)
                     VALUES (?1, ?2 || '#' || (SELECT COALESCE(MAX(id), 0) + 1 FROM outbox_job),
                             ?3, ?4, ?5, ?5)",
                )?
                .execute(params![job.kind, job.event_id, job.entity_id, job.content, now_ms])?;
                Recorded::New(tx.last_insert_rowid())
            }
        };
        also(&Lookup { tx: &tx })?;
        tx.commit()?;
        Ok(outcome)
    }

    /// Runs `f` in one write transaction (for state that is not an outbox event).
    #[track_caller]
    pub fn write<T>(&self, f: impl FnOnce(&Lookup) -> Result<T>) -> Result<T> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&Lookup { tx: &tx })?;
        tx.commit()?;
        Ok(out)
    }

    /// Claims up to `limit` due jobs, at most one per entity, and marks them in flight in
    /// one commit, so a crash while they are sent leaves them marked for checking.
    pub fn claim_due(&self, now_ms: i64, limit: usize) -> Result<Vec<OutboxJob>> {
        self.claim(now_ms, limit, None)
    }

    /// As [`Store::claim_due`], of one kind only (to fill a batched call, customers).
    pub fn claim_due_of_kind(
        &self,
        now_ms: i64,
        limit: usize,
        kind: &str,
    ) -> Result<Vec<OutboxJob>> {
        self.claim(now_ms, limit, Some(kind))
    }

    fn claim(&self, now_ms: i64, limit: usize, kind: Option<&str>) -> Result<Vec<OutboxJob>> {
        self.fail_point(super::WriteOp::Claim)?;
        let settle = self.settle_ms();
        let token = self.next_claim_token();
        let mono = self.mono_ms();
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        self.arm_in(&tx, now_ms, mono)?;
        let mut jobs = {
            let mut stmt = tx.prepare_cached(&format!(
                "SELECT {JOB_COLUMNS} FROM outbox_job j
                 WHERE {DUE} AND (?3 IS NULL OR kind = ?3)
                   AND NOT {HELD_BEHIND_EARLIER}
                 ORDER BY next_attempt_at, id LIMIT ?2"
            ))?;
            let rows = stmt.query_map(
                params![now_ms, limit as i64, kind, settle, mono],
                OutboxJob::from_row,
            )?;
            rows.collect::<rusqlite::Result<Vec<_>>>()?
        };
        // A job leaves `pending` only with its stock movements expanded: whatever counts or
        // reads them by job from here on (delivery, read-back, stock floor) finds rows. The
        // oldest others go with them, so readers have few left to expand on the fly.
        Store::expand_movements_batch(&tx)?;
        // One statement for the whole batch: each statement that changes `state` (under
        // its CHECK and triggers) journals every page it touches first, so one per job cost
        // the index's pages once per job.
        if !jobs.is_empty() {
            let ids = id_list(jobs.iter().map(|j| j.id));
            tx.prepare_cached(
                "UPDATE outbox_job SET state = 'in_flight', claim = ?2
                 WHERE id IN (SELECT value FROM json_each(?1))",
            )?
            .execute(params![ids, token])?;
            Store::expand_movements_of_ids(&tx, &ids)?;
            for job in &mut jobs {
                job.claim = token;
            }
        }
        tx.commit()?;
        Ok(jobs)
    }

    /// Arms rows of another epoch (new, recovered, revived, from an earlier process) on this
    /// process's monotonic clock: due in what their wall-clock schedule says, never more than
    /// the cap (a wall clock that was a year fast or has been stepped back), never less than
    /// 0; an uncertain one is read back a settle time from now (its request, if any, left
    /// before this moment). Each claim does it first, in its transaction (the worker claims
    /// every round); it writes nothing when every row is armed.
    fn arm_in(&self, tx: &Transaction, now_ms: i64, mono: i64) -> Result<()> {
        tx.prepare_cached(
            "UPDATE outbox_job SET sched_epoch = ?1, settle_from = ?2,
               next_mono = ?2 + MIN(MAX(next_attempt_at - ?3, 0), ?4)
             WHERE state = 'pending' AND sched_epoch IS NOT ?1",
        )?
        .execute(params![self.epoch(), mono, now_ms, MAX_WAIT_MS])?;
        Ok(())
    }

    /// Records that a multi-step job got this far, between its steps, so a crash before
    /// its outcome is recorded does not repeat a step that landed. Only under its claim.
    pub fn save_step(&self, job: &OutboxJob, step: i64) -> Result<bool> {
        self.fail_point(super::WriteOp::Step)?;
        Ok(self.conn().execute(
            "UPDATE outbox_job SET step = MAX(step, ?3) WHERE id = ?1 AND state = 'in_flight' AND claim = ?2",
            params![job.id, job.claim, step],
        )? == 1)
    }

    /// Replaces a job's worked-out extras (what a try computed and must send the same way
    /// if it is tried again), before the request that uses them leaves. Only under its claim.
    pub fn save_extra(&self, job: &OutboxJob, extra: &str) -> Result<bool> {
        self.fail_point(super::WriteOp::Step)?;
        Ok(self.conn().execute(
            "UPDATE outbox_job SET extra = ?3 WHERE id = ?1 AND state = 'in_flight' AND claim = ?2",
            params![job.id, job.claim, extra],
        )? == 1)
    }

    /// Another job moving stock of `sku` in `warehouse_id` whose effect at Omnium is not
    /// known yet (in flight, or pending after a try that may have landed): a goods reception
    /// that sends absolute levels waits for it. Receptions wait only for earlier receptions,
    /// so two never wait for each other.
    pub fn unsettled_stock_job(
        &self,
        job_id: i64,
        sku: &str,
        warehouse_id: &str,
    ) -> Result<Option<String>> {
        Ok(self
            .conn()
            .prepare_cached(
                "SELECT j.kind || ' ' || j.event_id FROM stock_movement_all m JOIN outbox_job j ON j.id = m.job_id
                 WHERE m.sku = ?2 AND m.warehouse_id = ?3 AND m.job_id != ?1
                   AND (j.state = 'in_flight' OR (j.state = 'pending' AND j.uncertain))
                   AND (j.kind != 'goods_reception' OR j.id < ?1)
                 LIMIT 1",
            )?
            .query_row(params![job_id, sku, warehouse_id], |r| r.get(0))
            .optional()?)
    }

    /// Where the outbox stood when a goods reception worked out its levels: the newest job
    /// id, and the jobs moving `skus` in `warehouse_id` not delivered then (the reception
    /// excluded). [`Store::delivered_stock_since`] takes it back.
    pub fn stock_baseline(
        &self,
        job_id: i64,
        skus: &[String],
        warehouse_id: &str,
    ) -> Result<(i64, Vec<i64>)> {
        let conn = self.conn();
        let newest: i64 =
            conn.query_row("SELECT COALESCE(MAX(id), 0) FROM outbox_job", [], |r| {
                r.get(0)
            })?;
        let mut open = Vec::new();
        let mut stmt = conn.prepare_cached(
            "SELECT DISTINCT m.job_id FROM stock_movement_all m JOIN outbox_job j ON j.id = m.job_id
             WHERE m.sku = ?2 AND m.warehouse_id = ?3 AND m.job_id != ?1 AND j.state <> 'delivered'",
        )?;
        for sku in skus {
            let ids = stmt.query_map(params![job_id, sku, warehouse_id], |r| r.get::<_, i64>(0))?;
            for id in ids {
                let id = id?;
                if !open.contains(&id) {
                    open.push(id);
                }
            }
        }
        Ok((newest, open))
    }

    /// The stock effect of other jobs on `sku` in `warehouse_id` delivered since a
    /// [`Store::stock_baseline`] (`newest`, `open`): recorded after it, or open then and
    /// delivered now. Counted movements are kept while such a reception is unsettled.
    pub fn delivered_stock_since(
        &self,
        job_id: i64,
        sku: &str,
        warehouse_id: &str,
        newest: i64,
        open: &[i64],
    ) -> Result<f64> {
        let open = serde_json::to_string(open).unwrap_or_else(|_| "[]".into());
        Ok(self
            .conn()
            .prepare_cached(
                "SELECT COALESCE(SUM(m.quantity), 0) FROM stock_movement_all m JOIN outbox_job j ON j.id = m.job_id
                 WHERE m.sku = ?2 AND m.warehouse_id = ?3 AND m.job_id != ?1 AND j.state = 'delivered'
                   AND (j.id > ?4 OR j.id IN (SELECT value FROM json_each(?5)))",
            )?
            .query_row(params![job_id, sku, warehouse_id, newest, open], |r| r.get(0))?)
    }

    /// Puts every job in flight back to pending, to be read back before anything is sent
    /// again (its request may have landed): at open after a crash, and when a round of the
    /// worker failed after claiming (the database refused the outcome, a bug). Only the
    /// client holding the database lock calls it, so no other worker's claim is touched.
    /// Their schedule is re-armed at the next claim (a settle time from then).
    pub fn recover_in_flight(&self, now_ms: i64) -> Result<usize> {
        let n = self.conn().execute(
            "UPDATE outbox_job SET state = 'pending', uncertain = 1, claim = NULL,
             sched_epoch = NULL, next_attempt_at = MIN(next_attempt_at, ?1)
             WHERE state = 'in_flight'",
            [now_ms],
        )?;
        Ok(n)
    }

    /// Applies the outcome of a batch in one commit.
    ///
    /// Each update applies only while its job is still in flight under the update's claim:
    /// a late result from a try whose claim was since given up (recovered as uncertain, and
    /// perhaps claimed and delivered again) changes nothing. Returns how many applied.
    ///
    /// The delivered jobs (nearly every job of a drain) are applied together, a few
    /// statements for the whole batch; each statement that changes `state` (under its CHECK
    /// and triggers) first journals every page it touches, so one per job cost most of the
    /// commit. Other fates are one statement per job.
    pub fn finish(&self, updates: &[JobUpdate], now_ms: i64) -> Result<usize> {
        self.fail_point(super::WriteOp::Finish)?;
        let mono = self.mono_ms();
        let epoch = self.epoch();
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Where each job stands now, and its content (for the delivered record's hash).
        let mut held: HashMap<i64, (bool, Option<i64>, String)> = HashMap::new();
        {
            let mut stmt = tx.prepare_cached(
                "SELECT id, state = 'in_flight', claim, content FROM outbox_job
                 WHERE id IN (SELECT value FROM json_each(?1))",
            )?;
            let rows = stmt.query_map([id_list(updates.iter().map(|u| u.job_id))], |r| {
                Ok((r.get::<_, i64>(0)?, (r.get(1)?, r.get(2)?, r.get(3)?)))
            })?;
            for row in rows {
                let (id, at) = row?;
                held.insert(id, at);
            }
        }
        let mut applied = 0;
        // Logged after the commit, with the connection free: a log callback may call back
        // into the library on this thread (fo_record_*), which would wait for this lock.
        let mut dropped = Vec::new();
        // (job id, content hash, accepted) of the delivered jobs.
        let mut delivered: Vec<(i64, String, i64)> = Vec::new();
        for u in updates {
            // Taken out once applied: a second update of the same job in one call finds it
            // no longer held, as it would after the first was applied.
            let ours = match held.remove(&u.job_id) {
                Some((true, Some(claim), content)) if claim == u.claim => Some(content),
                Some(other) => {
                    held.insert(u.job_id, other);
                    None
                }
                None => None,
            };
            let Some(content) = ours else {
                dropped.push(format!(
                    "job {}: an outcome of a claim no longer held was dropped ({:?})",
                    u.job_id, u.fate
                ));
                continue;
            };
            held.insert(u.job_id, (false, None, String::new()));
            applied += 1;
            if let Some(step) = u.step {
                tx.prepare_cached("UPDATE outbox_job SET step = MAX(step, ?2) WHERE id = ?1")?
                    .execute(params![u.job_id, step])?;
            }
            // Whatever the fate, no request of this try leaves after now (monotonic): each
            // statement below sets `settle_from` (?2) and the schedule's epoch (?3), and gives
            // the claim up. A try that let a request leave keeps the job uncertain unless it
            // was delivered (`sent`, ?4).
            match &u.fate {
                JobFate::Delivered { accepted_ms } => {
                    delivered.push((
                        u.job_id,
                        content_hash(&content),
                        accepted_ms.unwrap_or(now_ms),
                    ));
                }
                JobFate::Released => {
                    tx.prepare_cached(
                        "UPDATE outbox_job SET state = 'pending', uncertain = (uncertain OR ?4),
                         settle_from = ?2, sched_epoch = ?3, claim = NULL WHERE id = ?1",
                    )?
                    .execute(params![u.job_id, mono, epoch, u.sent])?;
                }
                JobFate::Retry {
                    at,
                    counted,
                    uncertain,
                    error,
                } => {
                    // The wall-clock time is for people and a later process; this one waits
                    // on the monotonic clock.
                    tx.prepare_cached(
                        "UPDATE outbox_job SET state = 'pending', tries = tries + 1,
                         attempts = attempts + ?5, uncertain = (uncertain OR ?4 OR ?6),
                         next_attempt_at = ?7, last_attempt_at = ?8, last_error = ?9,
                         next_mono = ?10, settle_from = ?2, sched_epoch = ?3, claim = NULL
                         WHERE id = ?1",
                    )?
                    .execute(params![
                        u.job_id,
                        mono,
                        epoch,
                        u.sent,
                        *counted as i64,
                        uncertain,
                        at,
                        now_ms,
                        error,
                        mono + (at - now_ms).max(0)
                    ])?;
                }
                JobFate::Dead { error } => {
                    tx.prepare_cached(
                        "UPDATE outbox_job SET state = 'dead', attempts = attempts + 1, tries = tries + 1,
                         uncertain = (uncertain OR ?4), last_attempt_at = ?5, dead_at = ?5,
                         last_error = ?6, settle_from = ?2, sched_epoch = ?3, claim = NULL
                         WHERE id = ?1",
                    )?
                    .execute(params![u.job_id, mono, epoch, u.sent, now_ms, error])?;
                }
            }
        }
        if !delivered.is_empty() {
            let ids = id_list(delivered.iter().map(|d| d.0));
            // Before the state changes (a trigger may erase a forgotten customer's content
            // then); customers and stock pushes are state, not events.
            // [[job id, content hash, accepted], …]
            let rows = serde_json::to_string(&delivered)
                .map_err(|e| Error::Internal(format!("delivered ids: {e}")))?;
            tx.prepare_cached(
                "INSERT OR REPLACE INTO delivered_id (kind, event_id, content_hash, delivered_at)
                 SELECT j.kind, j.event_id, d.value ->> 1, ?2
                 FROM json_each(?1) d JOIN outbox_job j ON j.id = d.value ->> 0
                 WHERE j.kind NOT IN ('customer', 'stock_push')",
            )?
            .execute(params![rows, now_ms])?;
            // Each delivered job's stock movements are stamped with when Omnium took it. The
            // claim expanded them already; any left recorded as one row are expanded first,
            // for the whole batch, in this transaction (a movement waiting to be expanded is
            // never counted, so the purge of counted ones never needs to look at them). Then
            // one statement per job (an expansion and an update per job cost 19,000
            // instructions a job; one `UPDATE … FROM json_each` for the batch, more).
            Store::expand_movements_of_ids(&tx, &ids)?;
            let mut stamp = tx.prepare_cached(
                "UPDATE stock_movement SET counted_after_ms = ?2 WHERE job_id = ?1",
            )?;
            for (id, _, accepted) in &delivered {
                stamp.execute(params![id, accepted])?;
            }
            drop(stamp);
            // The PDF now lives in Omnium; only the job row stays for the retention.
            tx.prepare_cached(
                "DELETE FROM receipt_pdf WHERE job_id IN (SELECT value FROM json_each(?1))",
            )?
            .execute([&ids])?;
            tx.prepare_cached(
                "UPDATE outbox_job SET state = 'delivered', uncertain = 0, delivered_at = ?2,
                 last_attempt_at = ?2, settle_from = ?3, sched_epoch = ?4, claim = NULL
                 WHERE id IN (SELECT value FROM json_each(?1))",
            )?
            .execute(params![ids, now_ms, mono, epoch])?;
            tx.prepare_cached(
                "INSERT INTO sync_state (key, value) VALUES ('last_push_at', ?1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )?
            .execute([now_ms.to_string()])?;
        }
        tx.commit()?;
        drop(conn);
        for m in dropped {
            log::warn!("{m}");
        }
        Ok(applied)
    }

    /// When the next pending job that is not held behind another falls due (wall-clock
    /// unix ms, [`DUE_AT`]). Read on a reader (a walk of every pending job:
    /// on the writer it held record calls up during a drain; see [`Store::counts`]).
    pub fn next_due_at(&self) -> Result<Option<i64>> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached(&format!(
                    "SELECT MIN({DUE_AT}) FROM outbox_job j
                     WHERE state = 'pending' AND NOT {HELD_BEHIND_EARLIER}"
                ))?
                .query_row(
                    params![
                        self.settle_ms(),
                        self.epoch(),
                        now_wall_ms(self),
                        self.mono_ms()
                    ],
                    |r| r.get(0),
                )?)
        })
    }

    /// Whether a pending job that is not held behind another is due now: what
    /// `next_due_at() <= now` says, without reading every pending job (it stops at the first
    /// due one).
    pub fn any_due(&self) -> Result<bool> {
        Ok(self
            .conn()
            .prepare_cached(&format!(
                "SELECT EXISTS (SELECT 1 FROM outbox_job j WHERE state = 'pending'
                   AND {DUE_AT} <= ?3 AND NOT {HELD_BEHIND_EARLIER})"
            ))?
            .query_row(
                params![
                    self.settle_ms(),
                    self.epoch(),
                    now_wall_ms(self),
                    self.mono_ms()
                ],
                |r| r.get(0),
            )?)
    }

    /// Makes every waiting job due now (the POS asked to sync now).
    pub fn make_all_due(&self, now_ms: i64) -> Result<usize> {
        let mono = self.mono_ms();
        Ok(self.conn().execute(
            "UPDATE outbox_job SET next_attempt_at = MIN(next_attempt_at, ?1),
               next_mono = MIN(COALESCE(next_mono, ?2), ?2)
             WHERE state = 'pending' AND (next_attempt_at > ?1 OR next_mono > ?2)",
            params![now_ms, mono],
        )?)
    }

    /// Jobs by state for `fo_status`, the CLI and `fo_flush`. Read on a reader connection,
    /// not the writer: it walks every job not yet delivered (with the dead-job check for
    /// each), which took up to 117 ms with 10,000 jobs pending, and on the writer every
    /// record call arriving meanwhile waited for it (issue 10 target 4: a status poll
    /// during a drain). A reader sees every acknowledged record (a record call returns only
    /// after its commit).
    pub fn counts(&self) -> Result<OutboxCounts> {
        self.read(|conn| self.counts_on(conn))
    }

    fn counts_on(&self, conn: &rusqlite::Connection) -> Result<OutboxCounts> {
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT
               COALESCE(SUM(state <> 'dead' AND NOT blocked), 0),
               COALESCE(SUM(state <> 'dead' AND blocked), 0),
               COALESCE(SUM(state = 'dead'), 0),
               MIN(CASE WHEN state <> 'dead' AND NOT blocked THEN created_at END)
             FROM (SELECT state, created_at, {BLOCKED_BY_DEAD} AS blocked
                   FROM outbox_job j WHERE state <> 'delivered')"
        ))?;
        Ok(stmt.query_row([], |r| {
            Ok(OutboxCounts {
                pending: r.get::<_, i64>(0)? as u64,
                blocked: r.get::<_, i64>(1)? as u64,
                dead: r.get::<_, i64>(2)? as u64,
                oldest_pending_at: r.get(3)?,
            })
        })?)
    }

    pub fn dead_jobs(&self) -> Result<Vec<DeadJob>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT id, kind, entity_id, attempts, last_error, dead_at FROM outbox_job
             WHERE state = 'dead' ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(DeadJob {
                id: r.get(0)?,
                kind: r.get(1)?,
                entity_id: r.get(2)?,
                attempts: r.get(3)?,
                last_error: r.get(4)?,
                dead_at: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Gives dead jobs (one, or all with `None`) a fresh set of attempts, due now.
    /// Returns how many were revived.
    pub fn retry_dead(&self, job_id: Option<i64>, now_ms: i64) -> Result<usize> {
        let sql = "UPDATE outbox_job SET state = 'pending', attempts = 0, tries = 0, next_attempt_at = ?1,
                   dead_at = NULL, sched_epoch = NULL WHERE state = 'dead' AND (?2 IS NULL OR id = ?2)";
        Ok(self.conn().execute(sql, params![now_ms, job_id])?)
    }

    /// Deletes delivered jobs older than the retention, with their stock movements.
    /// Returns how many went.
    ///
    /// What must outlive the retention stays (CONTRACT §9 rule 17): each event's id and
    /// content hash go to `delivered_id` (kept [`DELIVERED_ID_RETENTION_MS`]), and stock
    /// movements stay until a pulled level counts them (`apply_stock` removes them then).
    pub fn purge_delivered(&self, older_than_ms: i64) -> Result<usize> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Jobs delivered before the record existed (an older schema) are added to it now.
        let unrecorded: Vec<(String, String, String, i64)> = {
            let mut stmt = tx.prepare_cached(
                "SELECT kind, event_id, content, delivered_at FROM outbox_job j
                 WHERE state = 'delivered' AND delivered_at < ?1
                   AND kind NOT IN ('customer', 'stock_push')
                   AND NOT EXISTS (SELECT 1 FROM delivered_id d WHERE d.kind = j.kind AND d.event_id = j.event_id)",
            )?;
            let rows = stmt.query_map([older_than_ms], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()?
        };
        for (kind, event_id, content, at) in &unrecorded {
            tx.prepare_cached(
                "INSERT OR IGNORE INTO delivered_id (kind, event_id, content_hash, delivered_at)
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![kind, event_id, content_hash(content), at])?;
        }
        tx.execute(
            "DELETE FROM delivered_id WHERE delivered_at < ?1",
            [older_than_ms.saturating_sub(DELIVERED_ID_RETENTION_MS)],
        )?;
        // A dead customer version older than a delivered one about to go is superseded for
        // good: once the newer row is purged, [`Store::superseded`] could no longer see it,
        // and the old version retried by hand would overwrite the newer one at Omnium. Its
        // payload (personal data with nothing left to do) is erased, which keeps it dead
        // (`erased_dead_job_stays_dead`), and its error says why.
        tx.prepare_cached(
            "UPDATE outbox_job SET content = ?2,
               last_error = CASE WHEN last_error IS NULL OR last_error = '' THEN ?3
                 WHEN instr(last_error, ?3) > 0 THEN last_error ELSE last_error || '; ' || ?3 END
             WHERE state = 'dead' AND kind = 'customer' AND EXISTS (SELECT 1 FROM outbox_job n
               WHERE n.entity_id = outbox_job.entity_id AND n.kind = 'customer'
                 AND n.id > outbox_job.id AND n.state = 'delivered' AND n.delivered_at < ?1)",
        )?
        .execute(params![
            older_than_ms,
            r#"{"erased":true}"#,
            SUPERSEDED_NOTE
        ])?;
        let n = tx.execute(
            "DELETE FROM outbox_job WHERE state = 'delivered' AND delivered_at < ?1",
            [older_than_ms],
        )?;
        tx.execute(
            "DELETE FROM receipt_pdf WHERE job_id NOT IN (SELECT id FROM outbox_job)",
            [],
        )?;
        tx.commit()?;
        Ok(n)
    }

    /// Whether a newer job of the same kind and entity that is not dead exists: for a
    /// customer (state, not an event) that newer version supersedes this one, which then
    /// has nothing left to send (a dead old version retried after a newer one landed must
    /// not overwrite it).
    pub fn superseded(&self, job: &OutboxJob) -> Result<bool> {
        Ok(self
            .conn()
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM outbox_job WHERE entity_id = ?1 AND kind = ?2 AND id > ?3 AND state <> 'dead')",
            )?
            .query_row(params![job.entity_id, job.kind, job.id], |r| r.get(0))?)
    }

    /// The newest `modified` (Omnium's inventory clock) of the stored levels a job's stock
    /// movements touch: Omnium applies the job after that, so a level stamped later than it
    /// and pulled after the job was sent has the job's effect.
    pub fn stock_floor(&self, job_id: i64) -> Result<Option<i64>> {
        Ok(self
            .conn()
            .prepare_cached(
                "SELECT MAX(l.modified_ms) FROM stock_movement_all m
                 JOIN stock_level l ON l.sku = m.sku AND l.warehouse_id = m.warehouse_id
                 WHERE m.job_id = ?1",
            )?
            .query_row([job_id], |r| r.get(0))?)
    }

    /// The (SKU, warehouse) items a job's stock movements touch.
    pub fn movement_items(&self, job_id: i64) -> Result<Vec<(String, String)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT DISTINCT sku, warehouse_id FROM stock_movement_all WHERE job_id = ?1 ORDER BY warehouse_id, sku",
        )?;
        let rows = stmt.query_map([job_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// The newest delivery stamp this database holds (a job's or a compact record's),
    /// wall-clock ms.
    pub fn newest_delivered_at(&self) -> Result<Option<i64>> {
        Ok(self.conn().query_row(
            "SELECT MAX(m) FROM (SELECT MAX(delivered_at) AS m FROM outbox_job WHERE state = 'delivered'
                                 UNION ALL SELECT MAX(delivered_at) FROM delivered_id)",
            [],
            |r| r.get(0),
        )?)
    }

    /// Every job, in id order (the deterministic simulation's checks).
    #[doc(hidden)]
    pub fn outbox_rows(&self) -> Result<Vec<OutboxRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT id, kind, event_id, entity_id, state, uncertain, next_attempt_at, last_error,
               CASE WHEN sched_epoch = ?1 THEN MAX(next_mono,
                      CASE WHEN uncertain THEN settle_from + ?2 ELSE next_mono END) - ?3
                    ELSE MIN(MAX(next_attempt_at - ?4, 0), ?5) END
             FROM outbox_job ORDER BY id",
        )?;
        let p = params![
            self.epoch(),
            self.settle_ms(),
            self.mono_ms(),
            now_wall_ms(self),
            MAX_WAIT_MS
        ];
        let rows = stmt.query_map(p, |r| {
            Ok(OutboxRow {
                id: r.get(0)?,
                kind: r.get(1)?,
                event_id: r.get(2)?,
                entity_id: r.get(3)?,
                state: r.get(4)?,
                uncertain: r.get(5)?,
                next_attempt_at: r.get(6)?,
                last_error: r.get(7)?,
                due_in_ms: r.get(8)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Whether the compact record knows this event as delivered.
    pub fn delivered_id(&self, kind: &str, event_id: &str) -> Result<bool> {
        Ok(self
            .conn()
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM delivered_id WHERE kind = ?1 AND event_id = ?2)",
            )?
            .query_row([kind, event_id], |r| r.get(0))?)
    }

    /// Whether any job is pending (not delivered, not dead, not held behind a dead job).
    pub fn has_pending(&self) -> Result<bool> {
        Ok(self
            .conn()
            .prepare_cached(&format!(
                "SELECT EXISTS (SELECT 1 FROM outbox_job j WHERE state IN ('pending', 'in_flight')
                   AND NOT {BLOCKED_BY_DEAD})"
            ))?
            .query_row([], |r| r.get(0))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("o.db")).unwrap();
        (dir, s)
    }

    fn job<'a>(id: &'a str, entity: &'a str, content: &'a str) -> NewJob<'a> {
        NewJob {
            kind: "sale",
            event_id: id,
            entity_id: entity,
            content,
            blob: None,
        }
    }

    /// Issue 10 target 4: the status counts never take the writer, so a status poll during
    /// a drain (a walk of every undelivered job) never makes a record call wait. Before,
    /// `counts` read on the writer and waited here for the held lock.
    #[test]
    fn counting_jobs_for_the_status_never_takes_the_writer() {
        let (_d, s) = store();
        s.record(&job("S-1", "S-1", "{}"), 0, |_| Ok(Extras::default()))
            .unwrap();
        let s = std::sync::Arc::new(s);
        let held = s.conn();
        let (tx, rx) = std::sync::mpsc::channel();
        let counter = {
            let s = s.clone();
            std::thread::spawn(move || {
                let _ = tx.send(s.counts().unwrap().pending);
            })
        };
        let pending = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("counts waited for the writer");
        assert_eq!(pending, 1);
        drop(held);
        counter.join().unwrap();
    }

    #[test]
    fn same_id_same_content_is_stored_once_other_content_conflicts() {
        let (_d, s) = store();
        let first = s
            .record(&job("S-1", "S-1", "{}"), 0, |_| Ok(Extras::default()))
            .unwrap();
        assert!(matches!(first, Recorded::New(_)));
        let again = s
            .record(&job("S-1", "S-1", "{}"), 1, |_| Ok(Extras::default()))
            .unwrap();
        assert!(matches!(again, Recorded::AlreadyRecorded(_)));
        let err = s
            .record(&job("S-1", "S-1", r#"{"a":1}"#), 2, |_| {
                Ok(Extras::default())
            })
            .unwrap_err();
        assert!(matches!(err, Error::Conflict(_)));
        assert_eq!(s.counts().unwrap().pending, 1);
    }

    #[test]
    fn only_the_first_undelivered_job_of_an_entity_is_due() {
        let (_d, s) = store();
        s.record(&job("S-1", "S-1", "{}"), 0, |_| Ok(Extras::default()))
            .unwrap();
        s.record(
            &NewJob {
                kind: "return",
                ..job("R-1", "S-1", "{}")
            },
            0,
            |_| Ok(Extras::default()),
        )
        .unwrap();
        s.record(&job("S-2", "S-2", "{}"), 0, |_| Ok(Extras::default()))
            .unwrap();
        let claimed = s.claim_due(10, 10).unwrap();
        let ids: Vec<_> = claimed.iter().map(|j| j.event_id.as_str()).collect();
        assert_eq!(ids, ["S-1", "S-2"]);
        s.finish(
            &[
                JobUpdate::new(
                    &claimed[0],
                    JobFate::Dead {
                        error: "400".into(),
                    },
                ),
                JobUpdate::new(&claimed[1], JobFate::Delivered { accepted_ms: None }),
            ],
            11,
        )
        .unwrap();
        assert!(
            s.claim_due(20, 10).unwrap().is_empty(),
            "the return waits behind its dead sale"
        );
        let c = s.counts().unwrap();
        assert_eq!((c.pending, c.blocked, c.dead), (0, 1, 1));
        assert_eq!(s.retry_dead(None, 30).unwrap(), 1);
        assert_eq!(s.claim_due(30, 10).unwrap()[0].event_id, "S-1");
    }

    /// Issue 8 defect 12: a newer customer version (state, not an event) supersedes a dead
    /// older one instead of waiting behind it; the dead one stays dead and, retried after
    /// the newer landed, is superseded. A sale's return still waits behind its dead sale.
    #[test]
    fn a_newer_customer_version_is_not_held_behind_a_dead_older_one() {
        let (_d, s) = store();
        let customer = |event: &'static str| NewJob {
            kind: "customer",
            ..job(event, "C-1", "{}")
        };
        s.record(&customer("C-1-v1"), 0, |_| Ok(Extras::default()))
            .unwrap();
        let claimed = s.claim_due(10, 10).unwrap();
        s.finish(
            &[JobUpdate::new(
                &claimed[0],
                JobFate::Dead {
                    error: "400".into(),
                },
            )],
            11,
        )
        .unwrap();
        s.record(&customer("C-1-v2"), 12, |_| Ok(Extras::default()))
            .unwrap();
        let c = s.counts().unwrap();
        assert_eq!((c.pending, c.blocked, c.dead), (1, 0, 1));
        let claimed = s.claim_due(20, 10).unwrap();
        let ids: Vec<_> = claimed.iter().map(|j| j.event_id.as_str()).collect();
        assert_eq!(ids, ["C-1-v2"]);
        assert!(!s.superseded(&claimed[0]).unwrap());
        s.finish(
            &[JobUpdate::new(
                &claimed[0],
                JobFate::Delivered { accepted_ms: None },
            )],
            21,
        )
        .unwrap();
        assert_eq!(s.counts().unwrap().dead, 1, "the old version stays dead");
        assert_eq!(s.retry_dead(None, 30).unwrap(), 1);
        let old = s.claim_due(30, 10).unwrap();
        assert_eq!(old[0].event_id, "C-1-v1");
        assert!(s.superseded(&old[0]).unwrap(), "retried after v2 landed");
    }

    /// Issue 8 leftover: a dead customer version retried by hand after the newer version
    /// that supersedes it was purged (delivered retention) was sent, overwriting the newer
    /// one at Omnium. It now stays dead, its payload erased, and its error says why.
    #[test]
    fn a_dead_customer_version_stays_dead_once_its_newer_version_is_purged() {
        let (_d, s) = store();
        let customer = |event: &'static str, entity: &'static str| NewJob {
            kind: "customer",
            ..job(event, entity, r#"{"name":"Kari"}"#)
        };
        for (v1, entity) in [("C-1-v1", "C-1"), ("C-2-v1", "C-2")] {
            s.record(&customer(v1, entity), 0, |_| Ok(Extras::default()))
                .unwrap();
        }
        let claimed = s.claim_due(10, 10).unwrap();
        let dead: Vec<_> = claimed
            .iter()
            .map(|j| {
                JobUpdate::new(
                    j,
                    JobFate::Dead {
                        error: "400".into(),
                    },
                )
            })
            .collect();
        s.finish(&dead, 11).unwrap();
        // C-1 gets a newer version, delivered; C-2 does not.
        s.record(&customer("C-1-v2", "C-1"), 12, |_| Ok(Extras::default()))
            .unwrap();
        let claimed = s.claim_due(20, 10).unwrap();
        s.finish(
            &[JobUpdate::new(
                &claimed[0],
                JobFate::Delivered { accepted_ms: None },
            )],
            21,
        )
        .unwrap();
        // The retention passes: v2's row goes.
        assert_eq!(s.purge_delivered(100).unwrap(), 1);
        assert_eq!(s.retry_dead(None, 200).unwrap(), 1, "only C-2's revives");
        let claimed = s.claim_due(200, 10).unwrap();
        let ids: Vec<_> = claimed.iter().map(|j| j.event_id.as_str()).collect();
        assert_eq!(ids, ["C-2-v1"], "C-1's old version is not sent");
        let dead = s.dead_jobs().unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(state_of(&s, dead[0].id).0, "dead");
        let (content, error): (String, String) = s
            .conn()
            .query_row(
                "SELECT content, last_error FROM outbox_job WHERE id = ?1",
                [dead[0].id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(content, r#"{"erased":true}"#, "its personal data goes");
        assert!(
            error.starts_with("400; ") && error.ends_with(SUPERSEDED_NOTE),
            "{error}"
        );
    }

    #[test]
    fn a_receipt_pdf_is_kept_until_its_job_is_delivered() {
        let (_d, s) = store();
        let job = NewJob {
            kind: "receipt",
            blob: Some(b"%PDF-1.4 test"),
            ..job("RC-1", "S-1", "{}")
        };
        s.record(&job, 0, |_| Ok(Extras::default())).unwrap();
        let claimed = s.claim_due(1, 10).unwrap().remove(0);
        let id = claimed.id;
        let read = |s: &Store| {
            s.with_receipt_pdf(id, |r, _| {
                let mut v = Vec::new();
                std::io::Read::read_to_end(r, &mut v).map(|_| v).unwrap()
            })
        };
        assert_eq!(read(&s).unwrap().as_deref(), Some(&b"%PDF-1.4 test"[..]));
        let fate = JobFate::Delivered { accepted_ms: None };
        s.finish(
            &[JobUpdate {
                step: Some(2),
                ..JobUpdate::new(&claimed, fate)
            }],
            5,
        )
        .unwrap();
        assert_eq!(read(&s).unwrap(), None, "the PDF is in Omnium now");
    }

    fn state_of(s: &Store, id: i64) -> (String, bool) {
        s.conn()
            .query_row(
                "SELECT state, uncertain FROM outbox_job WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap()
    }

    /// Review: the warning about a dropped outcome used to be logged inside finish()'s
    /// transaction, with the connection locked; a log callback calling back into the library
    /// on that thread (fo_record_*) then waited for that lock forever.
    #[test]
    fn a_dropped_outcome_is_logged_with_the_connection_free() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static SEEN: AtomicUsize = AtomicUsize::new(0);
        static LOCKED: AtomicUsize = AtomicUsize::new(0);
        unsafe extern "C" fn cb(ud: *mut std::ffi::c_void, _l: i32, m: *const std::ffi::c_char) {
            let m = unsafe { std::ffi::CStr::from_ptr(m) }.to_string_lossy();
            if !m.contains("no longer held") || !m.contains("HTTP 409 probe") {
                return;
            }
            let s = unsafe { &*(ud as *const Store) };
            SEEN.fetch_add(1, Ordering::SeqCst);
            if s.conn.try_lock().is_err() {
                LOCKED.fetch_add(1, Ordering::SeqCst);
            }
        }
        let (_d, s) = store();
        s.record(&job("S-1", "S-1", "{}"), 0, |_| Ok(Extras::default()))
            .unwrap();
        let old = s.claim_due(1, 10).unwrap().remove(0);
        assert_eq!(s.recover_in_flight(2).unwrap(), 1);
        let late = JobUpdate::new(
            &old,
            JobFate::Dead {
                error: "HTTP 409 probe".into(),
            },
        );
        unsafe { crate::ffi::fo_set_log_callback(Some(cb), &s as *const Store as *mut _, 2) };
        let applied = s.finish(std::slice::from_ref(&late), 5);
        unsafe { crate::ffi::fo_set_log_callback(None, std::ptr::null_mut(), 0) };
        assert_eq!(applied.unwrap(), 0);
        assert_eq!(
            SEEN.load(Ordering::SeqCst),
            1,
            "the warning reached the callback"
        );
        assert_eq!(
            LOCKED.load(Ordering::SeqCst),
            0,
            "the connection was free then"
        );
    }

    /// Issue 8 defect 1: a late result of a claim that was given up (the jobs recovered as
    /// uncertain, claimed again and delivered) changes nothing.
    #[test]
    fn an_outcome_is_recorded_only_under_the_claim_that_is_still_held() {
        let (_d, s) = store();
        s.record(&job("S-1", "S-1", "{}"), 0, |_| Ok(Extras::default()))
            .unwrap();
        let old = s.claim_due(1, 10).unwrap().remove(0);
        assert_eq!(s.recover_in_flight(2).unwrap(), 1);
        let new = s.claim_due(3, 10).unwrap().remove(0);
        assert_ne!(old.claim, new.claim);
        assert!(new.uncertain);
        let delivered = JobUpdate::new(&new, JobFate::Delivered { accepted_ms: None });
        assert_eq!(s.finish(&[delivered], 4).unwrap(), 1);
        let late = JobUpdate::new(
            &old,
            JobFate::Dead {
                error: "HTTP 400".into(),
            },
        );
        assert_eq!(s.finish(std::slice::from_ref(&late), 5).unwrap(), 0);
        assert_eq!(state_of(&s, old.id), ("delivered".into(), false));
        assert!(!s.save_step(&old, 2).unwrap(), "nor does a late step");
    }

    /// Issue 10 target 5: the delivered jobs' stock movements are stamped in one statement
    /// for the batch, each with its own job's acceptance; a job not delivered keeps its
    /// movements unstamped, and movements still recorded as one row are expanded first.
    #[test]
    fn each_delivered_jobs_movements_are_stamped_with_its_own_acceptance() {
        let (_d, s) = store();
        for (i, id) in ["S-1", "S-2", "S-3"].iter().enumerate() {
            s.record(&job(id, id, &format!(r#"{{"id":"{id}"}}"#)), 0, |_| {
                let mut effects = StockEffects::with_capacity(2);
                effects.push(&format!("SKU-{i}"), "oslo-1", -1.0);
                effects.push("SKU-X", "oslo-1", -2.0);
                Ok(Extras {
                    effects,
                    extra: None,
                })
            })
            .unwrap();
        }
        let jobs = s.claim_due(1, 10).unwrap();
        assert_eq!(jobs.len(), 3);
        // As if the claim had left the third job's movements recorded as one row.
        s.conn()
            .execute_batch(&format!(
                "DELETE FROM stock_movement WHERE job_id = {id};
                 INSERT INTO stock_movement_todo (job_id, effects)
                 VALUES ({id}, '[[\"SKU-2\",\"oslo-1\",-1],[\"SKU-X\",\"oslo-1\",-2]]');",
                id = jobs[2].id
            ))
            .unwrap();
        let delivered = |j: &OutboxJob, at: i64| {
            JobUpdate::new(
                j,
                JobFate::Delivered {
                    accepted_ms: Some(at),
                },
            )
        };
        let retry = JobUpdate::new(
            &jobs[1],
            JobFate::Retry {
                at: 100,
                counted: false,
                uncertain: false,
                error: "HTTP 503".into(),
            },
        );
        let updates = [delivered(&jobs[0], 700), retry, delivered(&jobs[2], 900)];
        assert_eq!(s.finish(&updates, 5).unwrap(), 3);
        let stamps = |id: i64| -> Vec<(i64, Option<i64>)> {
            let conn = s.conn();
            let mut stmt = conn
                .prepare("SELECT line, counted_after_ms FROM stock_movement WHERE job_id = ?1 ORDER BY line")
                .unwrap();
            let rows = stmt
                .query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap();
            rows.map(Result::unwrap).collect()
        };
        assert_eq!(stamps(jobs[0].id), [(0, Some(700)), (1, Some(700))]);
        assert_eq!(stamps(jobs[1].id), [(0, None), (1, None)]);
        assert_eq!(stamps(jobs[2].id), [(0, Some(900)), (1, Some(900))]);
        let left: i64 = s
            .conn()
            .query_row("SELECT COUNT(*) FROM stock_movement_todo", [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, 0);
    }

    /// Issue 10 target 5: a batch's outcomes are applied a few statements for the whole
    /// batch; each fate still lands on its own job, only under its claim, once.
    #[test]
    fn a_batch_of_mixed_outcomes_lands_each_on_its_job() {
        let (_d, s) = store();
        for id in ["S-1", "S-2", "S-3", "S-4", "S-5"] {
            s.record(&job(id, id, &format!(r#"{{"id":"{id}"}}"#)), 0, |_| {
                Ok(Extras::default())
            })
            .unwrap();
        }
        let jobs = s.claim_due(1, 10).unwrap();
        assert_eq!(jobs.len(), 5);
        assert!(jobs.iter().all(|j| j.claim == jobs[0].claim));
        let delivered = |j: &OutboxJob| {
            JobUpdate::new(
                j,
                JobFate::Delivered {
                    accepted_ms: Some(7),
                },
            )
        };
        let mut stale = jobs[4].clone();
        stale.claim += 1_000;
        let updates = [
            delivered(&jobs[0]),
            JobUpdate {
                sent: true,
                ..JobUpdate::new(
                    &jobs[1],
                    JobFate::Retry {
                        at: 100,
                        counted: true,
                        uncertain: false,
                        error: "HTTP 503".into(),
                    },
                )
            },
            JobUpdate::new(
                &jobs[2],
                JobFate::Dead {
                    error: "HTTP 400".into(),
                },
            ),
            delivered(&jobs[3]),
            // Applied once: a second outcome of the same job in the call is dropped.
            JobUpdate::new(&jobs[3], JobFate::Released),
            // Not under the claim that holds it.
            delivered(&stale),
        ];
        assert_eq!(s.finish(&updates, 5).unwrap(), 4);
        assert_eq!(state_of(&s, jobs[0].id), ("delivered".into(), false));
        assert_eq!(state_of(&s, jobs[1].id), ("pending".into(), true));
        assert_eq!(state_of(&s, jobs[2].id), ("dead".into(), false));
        assert_eq!(state_of(&s, jobs[3].id), ("delivered".into(), false));
        assert_eq!(state_of(&s, jobs[4].id), ("in_flight".into(), false));
        let (attempts, claim): (u32, Option<i64>) = s
            .conn()
            .query_row(
                "SELECT attempts, claim FROM outbox_job WHERE id = ?1",
                [jobs[1].id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((attempts, claim), (1, None));
        // The compact record of each delivered event, with its own content's hash.
        for j in [&jobs[0], &jobs[3]] {
            let hash: String = s
                .conn()
                .query_row(
                    "SELECT content_hash FROM delivered_id WHERE kind = 'sale' AND event_id = ?1",
                    [&j.event_id],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(hash, content_hash(&j.content));
        }
        let records: i64 = s
            .conn()
            .query_row("SELECT COUNT(*) FROM delivered_id", [], |r| r.get(0))
            .unwrap();
        assert_eq!(records, 2);
    }

    /// `any_due` says what `next_due_at() <= now` says.
    #[test]
    fn any_due_agrees_with_the_next_due_time() {
        use crate::clock::Clock;
        let (_d, s) = store();
        let clock = manual(&s, 1_000);
        let agree = |s: &Store, wall: i64| {
            let due = s.next_due_at().unwrap().is_some_and(|t| t <= wall);
            assert_eq!(s.any_due().unwrap(), due);
            due
        };
        assert!(!agree(&s, clock.wall_ms()), "nothing pending");
        s.record(&job("S-1", "S-1", "{}"), 1_000, |_| Ok(Extras::default()))
            .unwrap();
        // Behind S-1 (same entity): never due while S-1 is not delivered.
        s.record(&job("R-1", "S-1", "{}"), 1_000, |_| Ok(Extras::default()))
            .unwrap();
        assert!(agree(&s, clock.wall_ms()), "recorded, not armed yet");
        let claimed = s.claim_due(1_000, 1).unwrap().remove(0);
        assert!(!agree(&s, clock.wall_ms()), "the other waits behind it");
        let retry = JobFate::Retry {
            at: 61_000,
            counted: false,
            uncertain: false,
            error: "HTTP 503".into(),
        };
        s.finish(&[JobUpdate::new(&claimed, retry)], 1_000).unwrap();
        assert!(!agree(&s, clock.wall_ms()), "armed, a minute ahead");
        clock.advance(59_999);
        assert!(!agree(&s, clock.wall_ms()));
        clock.advance(1);
        assert!(agree(&s, clock.wall_ms()), "its minute has passed");
    }

    /// Issue 8 defect 2: a try that sent a request keeps the job "check first", whatever
    /// its fate (released after a 429 on the read-back, say).
    #[test]
    fn a_job_that_sent_a_request_stays_uncertain_until_delivered() {
        let (_d, s) = store();
        s.record(&job("S-1", "S-1", "{}"), 0, |_| Ok(Extras::default()))
            .unwrap();
        let claimed = s.claim_due(1, 10).unwrap().remove(0);
        let released = JobUpdate {
            sent: true,
            ..JobUpdate::new(&claimed, JobFate::Released)
        };
        s.finish(&[released], 2).unwrap();
        assert_eq!(state_of(&s, claimed.id), ("pending".into(), true));
        // Not sent: a released job keeps what it had.
        s.record(&job("S-2", "S-2", "{}"), 0, |_| Ok(Extras::default()))
            .unwrap();
        let other = s
            .claim_due(3, 10)
            .unwrap()
            .into_iter()
            .find(|j| j.event_id == "S-2")
            .unwrap();
        s.finish(&[JobUpdate::new(&other, JobFate::Released)], 4)
            .unwrap();
        assert_eq!(state_of(&s, other.id), ("pending".into(), false));
    }

    fn manual(s: &Store, wall: i64) -> std::sync::Arc<crate::clock::ManualClock> {
        let clock = std::sync::Arc::new(crate::clock::ManualClock::new(wall));
        s.set_clock(clock.clone());
        clock
    }

    /// Issue 8 defect 9: an uncertain job is read back only a settle time after its last
    /// request could have left (after a restart or a failed round: from the moment it was
    /// put back), on the monotonic clock.
    #[test]
    fn an_uncertain_job_waits_the_settle_time_before_its_read_back() {
        use crate::clock::Clock;
        let (_d, s) = store();
        let clock = manual(&s, 0);
        s.set_settle_ms(1_000);
        s.record(&job("S-1", "S-1", "{}"), 0, |_| Ok(Extras::default()))
            .unwrap();
        assert_eq!(s.claim_due(0, 10).unwrap().len(), 1);
        s.recover_in_flight(0).unwrap();
        assert!(s.claim_due(0, 10).unwrap().is_empty());
        assert_eq!(s.next_due_at().unwrap(), Some(1_000));
        // A wall clock jumping a year ahead does not make it due.
        clock.jump_wall(365 * 86_400_000);
        assert!(s.claim_due(clock.wall_ms(), 10).unwrap().is_empty());
        clock.advance(999);
        assert!(s.claim_due(clock.wall_ms(), 10).unwrap().is_empty());
        clock.advance(1);
        assert_eq!(s.claim_due(clock.wall_ms(), 10).unwrap().len(), 1);
    }

    /// Rule 9.9: a back-off runs on the monotonic clock (a wall clock stepped a year ahead
    /// does not make it due early, one stepped back does not hold it), and a schedule an
    /// earlier process left a year ahead (its clock was a year fast) is due within the cap.
    #[test]
    fn schedules_run_on_the_monotonic_clock_and_never_past_the_cap() {
        use crate::clock::Clock;
        let (_d, s) = store();
        let clock = manual(&s, 1_000);
        s.record(&job("S-1", "S-1", "{}"), 1_000, |_| Ok(Extras::default()))
            .unwrap();
        let claimed = s.claim_due(1_000, 10).unwrap().remove(0);
        let retry = JobFate::Retry {
            at: 61_000,
            counted: false,
            uncertain: false,
            error: "HTTP 503".into(),
        };
        s.finish(&[JobUpdate::new(&claimed, retry)], 1_000).unwrap();
        clock.jump_wall(365 * 86_400_000);
        assert!(s.claim_due(clock.wall_ms(), 10).unwrap().is_empty());
        clock.jump_wall(-2 * 365 * 86_400_000);
        clock.advance(60_000);
        assert_eq!(s.claim_due(clock.wall_ms(), 10).unwrap().len(), 1);

        // An earlier process's schedule, a year ahead by its fast clock.
        let (_d, s) = store();
        let clock = manual(&s, 1_000);
        s.record(&job("S-2", "S-2", "{}"), 0, |_| Ok(Extras::default()))
            .unwrap();
        let year: i64 = 365 * 24 * 3_600_000;
        s.conn()
            .execute("UPDATE outbox_job SET next_attempt_at = ?1", [year])
            .unwrap();
        assert!(s.claim_due(1_000, 10).unwrap().is_empty());
        assert_eq!(s.next_due_at().unwrap(), Some(1_000 + MAX_WAIT_MS));
        clock.advance(MAX_WAIT_MS);
        assert_eq!(s.claim_due(clock.wall_ms(), 10).unwrap().len(), 1);
    }

    /// Issue 8 defect 11: after the purge, the same event recorded again is recognised (and
    /// not stored or sent again); other content under its id is a conflict; stock movements
    /// no level has counted stay.
    #[test]
    fn a_purged_event_recorded_again_is_not_stored_again() {
        let (_d, s) = store();
        let content = r#"{"id":"S-1","lines":[1]}"#;
        s.record(&job("S-1", "S-1", content), 0, |_| {
            Ok(Extras {
                effects: vec![crate::store::StockEffect {
                    sku: "SKU-1".into(),
                    warehouse_id: "oslo-1".into(),
                    quantity: -1.0,
                }]
                .into(),
                extra: None,
            })
        })
        .unwrap();
        let claimed = s.claim_due(1, 10).unwrap().remove(0);
        s.finish(
            &[JobUpdate::new(
                &claimed,
                JobFate::Delivered {
                    accepted_ms: Some(5),
                },
            )],
            10,
        )
        .unwrap();
        assert_eq!(s.purge_delivered(1_000).unwrap(), 1);
        let again = s
            .record(
                &job("S-1", "S-1", content),
                2_000,
                |_| Ok(Extras::default()),
            )
            .unwrap();
        assert_eq!(again, Recorded::AlreadyRecorded(0));
        let other = s.record(&job("S-1", "S-1", "{}"), 2_000, |_| Ok(Extras::default()));
        assert!(matches!(other, Err(Error::Conflict(_))), "{other:?}");
        assert!(s.claim_due(3_000, 10).unwrap().is_empty());
        let movements: i64 = s
            .conn()
            .query_row("SELECT COUNT(*) FROM stock_movement", [], |r| r.get(0))
            .unwrap();
        assert_eq!(movements, 1, "no level has counted the sale yet");
        // Kept a year past the job's own retention, then dropped.
        s.purge_delivered(5 + DELIVERED_ID_RETENTION_MS).unwrap();
        let kept: i64 = s
            .conn()
            .query_row("SELECT COUNT(*) FROM delivered_id", [], |r| r.get(0))
            .unwrap();
        assert_eq!(kept, 1);
        s.purge_delivered(11 + DELIVERED_ID_RETENTION_MS).unwrap();
        let kept: i64 = s
            .conn()
            .query_row("SELECT COUNT(*) FROM delivered_id", [], |r| r.get(0))
            .unwrap();
        assert_eq!(kept, 0);
    }

    #[test]
    fn jobs_in_flight_at_a_crash_come_back_marked_uncertain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.db");
        {
            let s = Store::open(&path).unwrap();
            s.record(&job("S-1", "S-1", "{}"), 0, |_| Ok(Extras::default()))
                .unwrap();
            assert_eq!(s.claim_due(1, 10).unwrap().len(), 1);
        }
        let s = Store::open(&path).unwrap();
        let again = s.claim_due(1, 10).unwrap();
        assert_eq!(again.len(), 1);
        assert!(again[0].uncertain);
    }
}

//! The outbox: one row per recorded event, drained by the worker.
//!
//! States: `pending` → `in_flight` (claimed by the worker, committed before any request is
//! sent) → `delivered`, or back to `pending` with a later `next_attempt_at`, or `dead`.
//! A job is due only when every earlier job of the same entity (the order it concerns) is
//! delivered, which keeps per-order order without holding up other orders.

use super::{StockEffect, Store};
use crate::error::{Error, Result};
use rusqlite::{params, OptionalExtension, Row, Transaction, TransactionBehavior};

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
    pub effects: Vec<StockEffect>,
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
    pub(crate) tx: &'t Transaction<'t>,
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
}

impl OutboxJob {
    fn from_row(r: &Row) -> rusqlite::Result<OutboxJob> {
        Ok(OutboxJob {
            id: r.get("id")?,
            kind: r.get("kind")?,
            event_id: r.get("event_id")?,
            entity_id: r.get("entity_id")?,
            content: r.get("content")?,
            attempts: r.get("attempts")?,
            tries: r.get("tries")?,
            uncertain: r.get("uncertain")?,
            last_attempt_at: r.get("last_attempt_at")?,
            created_at: r.get("created_at")?,
            step: r.get("step")?,
            extra: r.get("extra")?,
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
    pub fate: JobFate,
    /// Steps that landed during this try, kept whatever the fate.
    pub step: Option<i64>,
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

const JOB_COLUMNS: &str =
    "id, kind, event_id, entity_id, content, attempts, tries, uncertain, last_attempt_at, created_at, step, extra";

/// An earlier job of the same entity that is not delivered yet.
const HELD_BEHIND_EARLIER: &str = "EXISTS (SELECT 1 FROM outbox_job e
     WHERE e.entity_id = j.entity_id AND e.id < j.id AND e.state <> 'delivered')";

impl Store {
    /// Records an event in one durable transaction. The same id with the same content is
    /// `AlreadyRecorded`; with other content it is `Error::Conflict`. `check` runs inside
    /// the transaction for rules that depend on what is already recorded, and returns the
    /// event's effect on local stock, stored with it.
    pub fn record<F>(&self, job: &NewJob, now_ms: i64, check: F) -> Result<Recorded>
    where
        F: FnOnce(&Lookup) -> Result<Extras>,
    {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
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
        let Extras { effects, extra } = check(&Lookup { tx: &tx })?;
        tx.prepare_cached(
            "INSERT INTO outbox_job (kind, event_id, entity_id, content, extra, next_attempt_at, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
        )?
        .execute(params![job.kind, job.event_id, job.entity_id, job.content, extra, now_ms])?;
        let id = tx.last_insert_rowid();
        Store::insert_movements(&tx, id, &effects)?;
        if let Some(blob) = job.blob {
            tx.prepare_cached("INSERT INTO receipt_pdf (job_id, pdf) VALUES (?1, ?2)")?
                .execute(params![id, blob])?;
        }
        tx.commit()?;
        Ok(Recorded::New(id))
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
                    "UPDATE outbox_job SET content = ?2, next_attempt_at = MIN(next_attempt_at, ?3) WHERE id = ?1",
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
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let jobs = {
            let mut stmt = tx.prepare_cached(&format!(
                "SELECT {JOB_COLUMNS} FROM outbox_job j
                 WHERE state = 'pending' AND next_attempt_at <= ?1 AND (?3 IS NULL OR kind = ?3)
                   AND NOT {HELD_BEHIND_EARLIER}
                 ORDER BY next_attempt_at, id LIMIT ?2"
            ))?;
            let rows = stmt.query_map(params![now_ms, limit as i64, kind], OutboxJob::from_row)?;
            rows.collect::<rusqlite::Result<Vec<_>>>()?
        };
        {
            let mut mark =
                tx.prepare_cached("UPDATE outbox_job SET state = 'in_flight' WHERE id = ?1")?;
            for job in &jobs {
                mark.execute([job.id])?;
            }
        }
        tx.commit()?;
        Ok(jobs)
    }

    /// Applies the outcome of a batch in one commit.
    pub fn finish(&self, updates: &[JobUpdate], now_ms: i64) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut delivered_any = false;
        for u in updates {
            if let Some(step) = u.step {
                tx.prepare_cached("UPDATE outbox_job SET step = ?2 WHERE id = ?1")?
                    .execute(params![u.job_id, step])?;
            }
            match &u.fate {
                JobFate::Delivered { accepted_ms } => {
                    delivered_any = true;
                    Store::mark_movements_delivered(&tx, u.job_id, accepted_ms.unwrap_or(now_ms))?;
                    // The PDF now lives in Omnium; only the job row stays for the retention.
                    tx.prepare_cached("DELETE FROM receipt_pdf WHERE job_id = ?1")?
                        .execute([u.job_id])?;
                    tx.prepare_cached(
                        "UPDATE outbox_job SET state = 'delivered', uncertain = 0, delivered_at = ?2,
                         last_attempt_at = ?2 WHERE id = ?1",
                    )?
                    .execute(params![u.job_id, now_ms])?;
                }
                JobFate::Released => {
                    tx.prepare_cached("UPDATE outbox_job SET state = 'pending' WHERE id = ?1")?
                        .execute([u.job_id])?;
                }
                JobFate::Retry {
                    at,
                    counted,
                    uncertain,
                    error,
                } => {
                    tx.prepare_cached(
                        "UPDATE outbox_job SET state = 'pending', tries = tries + 1,
                         attempts = attempts + ?2, uncertain = (uncertain OR ?3),
                         next_attempt_at = ?4, last_attempt_at = ?5, last_error = ?6 WHERE id = ?1",
                    )?
                    .execute(params![
                        u.job_id,
                        *counted as i64,
                        uncertain,
                        at,
                        now_ms,
                        error
                    ])?;
                }
                JobFate::Dead { error } => {
                    tx.prepare_cached(
                        "UPDATE outbox_job SET state = 'dead', attempts = attempts + 1, tries = tries + 1,
                         last_attempt_at = ?2, dead_at = ?2, last_error = ?3 WHERE id = ?1",
                    )?
                    .execute(params![u.job_id, now_ms, error])?;
                }
            }
        }
        if delivered_any {
            tx.prepare_cached(
                "INSERT INTO sync_state (key, value) VALUES ('last_push_at', ?1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )?
            .execute([now_ms.to_string()])?;
        }
        tx.commit()?;
        Ok(())
    }

    /// When the next pending job that is not held behind another falls due.
    pub fn next_due_at(&self) -> Result<Option<i64>> {
        Ok(self
            .conn()
            .prepare_cached(&format!(
                "SELECT MIN(next_attempt_at) FROM outbox_job j
                 WHERE state = 'pending' AND NOT {HELD_BEHIND_EARLIER}"
            ))?
            .query_row([], |r| r.get(0))?)
    }

    /// Makes every waiting job due now (the POS asked to sync now).
    pub fn make_all_due(&self, now_ms: i64) -> Result<usize> {
        Ok(self.conn().execute(
            "UPDATE outbox_job SET next_attempt_at = ?1 WHERE state = 'pending' AND next_attempt_at > ?1",
            [now_ms],
        )?)
    }

    pub fn counts(&self) -> Result<OutboxCounts> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT
               COALESCE(SUM(state <> 'dead' AND NOT blocked), 0),
               COALESCE(SUM(state <> 'dead' AND blocked), 0),
               COALESCE(SUM(state = 'dead'), 0),
               MIN(CASE WHEN state <> 'dead' AND NOT blocked THEN created_at END)
             FROM (SELECT state, created_at, EXISTS (SELECT 1 FROM outbox_job d
                     WHERE d.entity_id = j.entity_id AND d.id < j.id AND d.state = 'dead') AS blocked
                   FROM outbox_job j WHERE state <> 'delivered')",
        )?;
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
                   dead_at = NULL WHERE state = 'dead' AND (?2 IS NULL OR id = ?2)";
        Ok(self.conn().execute(sql, params![now_ms, job_id])?)
    }

    /// Deletes delivered jobs older than the retention, with their stock movements.
    /// Returns how many went.
    pub fn purge_delivered(&self, older_than_ms: i64) -> Result<usize> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "DELETE FROM stock_movement WHERE job_id IN
               (SELECT id FROM outbox_job WHERE state = 'delivered' AND delivered_at < ?1)",
            [older_than_ms],
        )?;
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

    /// Whether any job is pending (not delivered, not dead, not held behind a dead job).
    pub fn has_pending(&self) -> Result<bool> {
        Ok(self
            .conn()
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM outbox_job j WHERE state IN ('pending', 'in_flight')
                   AND NOT EXISTS (SELECT 1 FROM outbox_job d
                     WHERE d.entity_id = j.entity_id AND d.id < j.id AND d.state = 'dead'))",
            )?
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
                JobUpdate {
                    job_id: claimed[0].id,
                    fate: JobFate::Dead {
                        error: "400".into(),
                    },
                    step: None,
                },
                JobUpdate {
                    job_id: claimed[1].id,
                    fate: JobFate::Delivered { accepted_ms: None },
                    step: None,
                },
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

    #[test]
    fn a_receipt_pdf_is_kept_until_its_job_is_delivered() {
        let (_d, s) = store();
        let job = NewJob {
            kind: "receipt",
            blob: Some(b"%PDF-1.4 test"),
            ..job("RC-1", "S-1", "{}")
        };
        s.record(&job, 0, |_| Ok(Extras::default())).unwrap();
        let id = s.claim_due(1, 10).unwrap()[0].id;
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
                job_id: id,
                fate,
                step: Some(2),
            }],
            5,
        )
        .unwrap();
        assert_eq!(read(&s).unwrap(), None, "the PDF is in Omnium now");
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

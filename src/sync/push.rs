//! Delivering one outbox job to Omnium, exactly once in effect: whenever the previous try's
//! outcome is unknown, or Omnium answers "already exists", read the order back first.

use crate::model::{Cancellation, JobKind, Return, Sale};
use crate::omnium::catalog::time_ms;
use crate::omnium::orders::{self, OrderContext};
use crate::omnium::{Created, Failure, OmniumApi};
use crate::store::OutboxJob;
use serde_json::Value;

/// What the worker needs from the configuration.
pub struct SyncContext {
    pub market_id: String,
    pub store_id: String,
    pub currency: String,
    pub terminal_id: Option<String>,
    pub warehouse_ids: Vec<String>,
    /// Omnium is the stock master: pull its levels.
    pub pull_stock: bool,
    /// How far before a cursor each delta re-reads.
    pub pull_overlap_ms: i64,
}

/// Delivers a job. `Ok` carries the instant Omnium accepted it, by Omnium's clock, when
/// its answer says (the order's or return's `modified`).
///
/// That instant decides when a sale leaves the stock overlay (`fo_stock_get`'s `pending`):
/// Omnium applies a POS order's stock change when it accepts the order, so an inventory
/// level whose `modified` is at or after it already counts the sale, and one stamped before
/// it does not. Both stamps come from Omnium's clock, so the terminal's clock plays no part.
/// Until a level that new is pulled, the sale stays pending: `available` never jumps while
/// the sale travels, and never counts it twice.
pub fn deliver(
    job: &OutboxJob,
    api: &OmniumApi,
    ctx: &SyncContext,
) -> Result<Option<i64>, Failure> {
    let unreadable = |e: String| Failure::Rejected {
        status: 0,
        message: format!(
            "job {} ({} {:?}) cannot be read back: {e}",
            job.id, job.kind, job.event_id
        ),
    };
    let content: Value =
        serde_json::from_str(&job.content).map_err(|e| unreadable(e.to_string()))?;
    match JobKind::parse(&job.kind) {
        Some(JobKind::Sale) => {
            let sale = Sale::parse(&content).map_err(|e| unreadable(e.to_string()))?;
            deliver_sale(&sale, job.uncertain, api, ctx)
        }
        Some(JobKind::Return) => {
            let ret = Return::parse(&content).map_err(|e| unreadable(e.to_string()))?;
            deliver_return(&ret, job.uncertain, api, ctx)
        }
        Some(JobKind::Cancellation) => {
            let c = Cancellation::parse(&content).map_err(|e| unreadable(e.to_string()))?;
            deliver_cancellation(&c, job.uncertain, api).map(|()| None)
        }
        None => Err(unreadable(format!("unknown job kind {:?}", job.kind))),
    }
}

/// A read-back order that is not ours is a permanent problem for this job.
fn confirm(order: &Value, check: Result<(), String>) -> Result<Option<i64>, Failure> {
    check.map_err(|message| Failure::Rejected {
        status: 400,
        message,
    })?;
    Ok(accepted_at(order))
}

fn accepted_at(v: &Value) -> Option<i64> {
    time_ms(&v["modified"]).or_else(|| time_ms(&v["created"]))
}

fn deliver_sale(
    sale: &Sale,
    uncertain: bool,
    api: &OmniumApi,
    ctx: &SyncContext,
) -> Result<Option<i64>, Failure> {
    if uncertain {
        if let Some(order) = api.get_order(&sale.id)? {
            log::info!(
                "sale {:?} had already landed in Omnium; not sending it again",
                sale.id
            );
            return confirm(&order, orders::matches_sale(&order, sale));
        }
    }
    let body = orders::pos_order_json(
        sale,
        &OrderContext {
            market_id: &ctx.market_id,
            terminal_id: ctx.terminal_id.as_deref(),
        },
    );
    match api.create_pos_order(&sale.id, &body)? {
        Created::New(order) => Ok(accepted_at(&order)),
        Created::AlreadyExists(message) => match api.get_order(&sale.id)? {
            Some(order) => confirm(&order, orders::matches_sale(&order, sale)),
            None => Err(Failure::Uncertain(format!(
                "Omnium said order {:?} exists ({message}) but GET /api/Orders finds nothing",
                sale.id
            ))),
        },
    }
}

fn deliver_return(
    ret: &Return,
    uncertain: bool,
    api: &OmniumApi,
    ctx: &SyncContext,
) -> Result<Option<i64>, Failure> {
    if uncertain {
        if let Some(order) = api.get_order(&ret.sale_id)? {
            if orders::has_return(&order, &ret.id) {
                return Ok(accepted_at(&order));
            }
        }
    }
    let body = orders::return_json(ret, &ctx.store_id, &ctx.currency);
    match api.create_return(&ret.sale_id, &body)? {
        Created::New(form) => Ok(accepted_at(&form)),
        Created::AlreadyExists(message) => match api.get_order(&ret.sale_id)? {
            Some(order) if orders::has_return(&order, &ret.id) => Ok(accepted_at(&order)),
            _ => Err(Failure::Rejected {
                status: 400,
                message,
            }),
        },
    }
}

fn deliver_cancellation(c: &Cancellation, uncertain: bool, api: &OmniumApi) -> Result<(), Failure> {
    match &c.lines {
        None => {
            if uncertain {
                if let Some(order) = api.get_order(&c.order_id)? {
                    if orders::is_canceled(&order) {
                        return Ok(());
                    }
                }
            }
            api.update_order_status(&c.order_id, orders::CANCELED_STATUS)
        }
        Some(lines) => {
            // With several lines a failure can fall between two of them: read the order
            // first so that no line is cancelled twice.
            let order = if uncertain || lines.len() > 1 {
                api.get_order(&c.order_id)?
            } else {
                None
            };
            for line in lines {
                if order
                    .as_ref()
                    .is_some_and(|o| orders::line_is_canceled(o, &line.line_id))
                {
                    continue;
                }
                api.cancel_order_line(&c.order_id, &line.line_id)?;
            }
            Ok(())
        }
    }
}

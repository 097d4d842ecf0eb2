//! Delivering one outbox job to Omnium, exactly once in effect: whenever the previous try's
//! outcome is unknown, or Omnium answers "already exists", read the order back first.

use super::Sync;
use crate::model::store_events::{
    Customer, CustomerType, GoodsReception, Pickup, PickupStatus, Receipt,
};
use crate::model::{Cancellation, JobKind, Return, Sale};
use crate::omnium::back_office;
use crate::omnium::orders::{self, OrderContext};
use crate::omnium::{Created, Failure, OmniumApi};
use crate::store::{OutboxJob, PushLevel};
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
    /// The store's time zone (price bounds without an offset).
    pub time_zone: chrono_tz::Tz,
    /// How often a full pull removes what Omnium no longer returns; 0 = never.
    pub full_resync_ms: i64,
}

/// The outcome of one try of a job: `Ok` carries the instant Omnium accepted it, by
/// Omnium's clock, when its answer says (the order's or return's `modified`); `step` is how
/// far a multi-step job got, kept even when a later step failed.
pub struct Delivery {
    pub result: Result<Option<i64>, Failure>,
    pub step: Option<i64>,
    /// A request that may change Omnium left during this try (CONTRACT §9 rule 8).
    pub sent: bool,
}

impl From<Result<Option<i64>, Failure>> for Delivery {
    fn from(result: Result<Option<i64>, Failure>) -> Delivery {
        Delivery {
            result,
            step: None,
            sent: false,
        }
    }
}

/// Omnium's index lags its writes: right after a sale lands, a return, cancellation or
/// pickup on it may be answered 404. Nothing was applied, so the job waits and tries again
/// (each try counted) instead of dying at once.
fn lagging(f: Failure, what: &str) -> Failure {
    match f {
        Failure::Rejected {
            status: 404,
            message,
        } => Failure::Busy(format!(
            "{what}: the order is not found yet (Omnium may not have indexed it): {message}"
        )),
        other => other,
    }
}

/// The recorded event without the library's own `_` fields (fingerprints), which are
/// moved out (no copy of the event is made).
fn split_private(mut content: Value) -> (Value, serde_json::Map<String, Value>) {
    let mut private = serde_json::Map::new();
    if let Value::Object(map) = &mut content {
        let keys: Vec<String> = map.keys().filter(|k| k.starts_with('_')).cloned().collect();
        for k in keys {
            if let Some(v) = map.remove(&k) {
                private.insert(k, v);
            }
        }
    }
    (content, private)
}

/// Delivers a job.
///
/// A delivered sale's or return's `Ok` carries the mark that takes it out of the stock
/// overlay (`fo_stock_get`'s `pending`): a pulled level stamped at or after it has the
/// sale (see [`stock_floor`] and [`stock_read_back`]). Both are stamps of Omnium's
/// inventory clock, so neither the terminal's clock nor the order's stamps play a part.
/// Until a level that new is pulled, the sale stays pending: `available` never jumps while
/// the sale travels, and never counts it twice.
pub fn deliver(job: &OutboxJob, sync: &Sync) -> Delivery {
    let (before, refused_before) = (OmniumApi::writes_sent(), OmniumApi::writes_refused());
    let throttled_before = OmniumApi::writes_throttled();
    let mut delivery = deliver_once(job, sync);
    let writes = OmniumApi::writes_sent() - before;
    let refused = OmniumApi::writes_refused() - refused_before;
    let throttled = OmniumApi::writes_throttled() - throttled_before;
    // A job that never sent before, whose every write of this try was refused with a 4xx,
    // changed nothing: it dies as a rejection and, retried by hand, is sent as new. On a job
    // that sent before, a 4xx proves nothing (the policy reads it back again).
    let refused_first = !job.uncertain
        && refused == writes
        && matches!(
            delivery.result,
            Err(Failure::Rejected {
                status: 400..=499,
                ..
            })
        );
    // A 429 is Omnium's rate limiter turning the request away before it is handled: a job
    // that never sent before, whose every write of this try was answered 429, changed
    // nothing and is sent again after the pause without a read-back (issue 13: each
    // throttled sale waited its timeout and settle margin, then cost a GET, which made the
    // fleet's catch-up tail). A 429 on a job that sent before proves nothing of the earlier
    // send: it is still read back.
    let throttled_first = !job.uncertain
        && throttled == writes
        && matches!(delivery.result, Err(Failure::Throttled { .. }));
    delivery.sent = writes > 0 && !refused_first && !throttled_first;
    delivery
}

fn deliver_once(job: &OutboxJob, sync: &Sync) -> Delivery {
    let (api, ctx) = (&sync.api, &sync.ctx);
    let unreadable = |e: String| Failure::Rejected {
        status: 0,
        message: format!(
            "job {} ({} {:?}) cannot be read back: {e}",
            job.id, job.kind, job.event_id
        ),
    };
    // A sale (most jobs) is read from its stored text in one pass, without a tree of maps;
    // stored sales carry no private fields. Anything that reader refuses takes the general
    // path below, which gives the error.
    if job.kind == JobKind::Sale.as_str() {
        if let Ok(sale) = Sale::parse_stored(&job.content) {
            return deliver_sale(job, &sale, sync).into();
        }
    }
    let content: Value = match serde_json::from_str(&job.content) {
        Ok(v) => v,
        Err(e) => return Err(unreadable(e.to_string())).into(),
    };
    let (public, mut private) = split_private(content);
    if let Some(Value::Object(extra)) = job
        .extra
        .as_deref()
        .and_then(|e| serde_json::from_str(e).ok())
    {
        private.extend(extra);
    }
    match JobKind::parse(&job.kind) {
        Some(JobKind::Sale) => match Sale::parse(&public) {
            Ok(sale) => deliver_sale(job, &sale, sync).into(),
            Err(e) => Err(unreadable(e.to_string())).into(),
        },
        Some(JobKind::Return) => match Return::parse(&public) {
            Ok(ret) => deliver_return(job, &ret, sync).into(),
            Err(e) => Err(unreadable(e.to_string())).into(),
        },
        Some(JobKind::Cancellation) => match Cancellation::parse(&public) {
            Ok(c) => deliver_cancellation(&c, job.uncertain, api)
                .map(|()| None)
                .map_err(|f| lagging(f, "cancellation"))
                .into(),
            Err(e) => Err(unreadable(e.to_string())).into(),
        },
        Some(JobKind::Receipt) => match Receipt::parse(&public) {
            Ok(r) => deliver_receipt(job, &r, sync),
            Err(e) => Err(unreadable(e.to_string())).into(),
        },
        Some(JobKind::Customer) => match Customer::parse(&public) {
            // A newer version of the customer (delivered or on its way) supersedes this one.
            Ok(c) => match superseded(job, sync) {
                Ok(true) => {
                    log::info!(
                        "customer {:?}: job {} is superseded by a newer version; not sent",
                        job.entity_id,
                        job.id
                    );
                    Ok(None).into()
                }
                Err(f) => Err(f).into(),
                Ok(false) => {
                    let business = c.kind == CustomerType::Company;
                    api.put_customers(business, &[back_office::customer_json(&c, &ctx.market_id)])
                        .map(|()| None)
                        .into()
                }
            },
            Err(e) => Err(unreadable(e.to_string())).into(),
        },
        Some(JobKind::GoodsReception) => match GoodsReception::parse(&public) {
            Ok(r) => deliver_goods_reception(job, &r, &private, sync).into(),
            Err(e) => Err(unreadable(e.to_string())).into(),
        },
        Some(JobKind::StockPush) => deliver_stock_push(sync).into(),
        Some(JobKind::Pickup) => match Pickup::parse(&public) {
            Ok(p) => deliver_pickup(&p, &private, sync)
                .map_err(|f| lagging(f, "pickup"))
                .into(),
            Err(e) => Err(unreadable(e.to_string())).into(),
        },
        None => Err(unreadable(format!("unknown job kind {:?}", job.kind))).into(),
    }
}

/// Whether a newer live job of the same customer exists.
fn superseded(job: &OutboxJob, sync: &Sync) -> Result<bool, Failure> {
    if job.kind != JobKind::Customer.as_str() {
        return Ok(false);
    }
    sync.store
        .superseded(job)
        .map_err(|e| Failure::Uncertain(format!("local database: {e}")))
}

/// Customers go to Omnium up to 100 a call: the jobs of one batch that share a type are
/// sent together, and share the outcome.
pub fn deliver_customers(jobs: &[&OutboxJob], sync: &Sync) -> Vec<Delivery> {
    if jobs.len() > 1
        && jobs
            .iter()
            .any(|j| !matches!(superseded(j, sync), Ok(false)))
    {
        // Rare (an old version retried by hand): each on its own, the old one skipped.
        return jobs.iter().map(|j| deliver(j, sync)).collect();
    }
    let mut bodies = Vec::new();
    let mut business = false;
    for job in jobs {
        let parsed = serde_json::from_str::<Value>(&job.content)
            .ok()
            .and_then(|v| Customer::parse(&split_private(v).0).ok());
        match parsed {
            Some(c) => {
                business = c.kind == CustomerType::Company;
                bodies.push(back_office::customer_json(&c, &sync.ctx.market_id));
            }
            None => return jobs.iter().map(|j| deliver(j, sync)).collect(),
        }
    }
    let before = OmniumApi::writes_sent();
    let result = sync.api.put_customers(business, &bodies).map(|()| None);
    let sent = OmniumApi::writes_sent() != before;
    if matches!(result, Err(Failure::Rejected { .. })) && jobs.len() > 1 {
        // Omnium refused the batch: send each alone, so only the bad one dies.
        return jobs.iter().map(|j| deliver(j, sync)).collect();
    }
    jobs.iter()
        .map(|_| Delivery {
            result: result.clone(),
            step: None,
            sent,
        })
        .collect()
}

/// A receipt is two steps: the invoice, then its PDF. Progress is saved between them (a
/// crash after the invoice does not send it again), and whenever an earlier try may have
/// landed (uncertain, whatever step was saved) the invoice's files are read before the PDF
/// is uploaded again: a file attached twice is a duplicate nobody can undo.
fn deliver_receipt(job: &OutboxJob, r: &Receipt, sync: &Sync) -> Delivery {
    let api = &sync.api;
    let mut step = job.step;
    let done = |result: Result<Option<i64>, Failure>, step: i64| Delivery {
        result,
        step: Some(step),
        sent: false,
    };
    if job.uncertain {
        match api.invoice_has_file(&r.id, &r.file_name) {
            Ok(Some(true)) => return done(Ok(None), 2),
            // The invoice exists without the file: the invoice step landed.
            Ok(Some(false)) => step = step.max(1),
            Ok(None) => {}
            Err(f) => return done(Err(f), step),
        }
    }
    // Step 1: the invoice (an upsert by id, so a repeat never makes a second one).
    if step < 1 {
        let invoice = back_office::invoice_json(r, &sync.ctx.store_id, &sync.ctx.market_id);
        if let Err(f) = api.put_invoice(&invoice) {
            return Err(f).into();
        }
        step = 1;
        super::kill_point("between_invoice_and_file");
        match sync.store.save_step(job, step) {
            Ok(true) => {}
            // The job is no longer ours (recovered and claimed again): whoever holds it now
            // sends the file, after checking what landed; uploading it here too would send
            // it twice. The outcome is not recorded either (it applies only under our claim).
            Ok(false) => {
                return done(
                    Err(Failure::Unconfirmed(format!(
                        "receipt {:?}: the job was claimed again after its invoice step",
                        r.id
                    ))),
                    step,
                )
            }
            Err(e) => {
                return done(
                    Err(Failure::Uncertain(format!("local database: {e}"))),
                    step,
                )
            }
        }
    }
    let uploaded = sync.store.with_receipt_pdf(job.id, |pdf, _len| {
        api.add_invoice_file(&r.id, &r.file_name, pdf)
    });
    let result = match uploaded {
        Ok(Some(Ok(()))) => {
            step = 2;
            Ok(None)
        }
        Ok(Some(Err(f))) => Err(f),
        Ok(None) => Err(Failure::Rejected {
            status: 0,
            message: format!("receipt {:?}: its PDF is missing from the database", r.id),
        }),
        Err(e) => Err(Failure::Uncertain(format!("local database: {e}"))),
    };
    done(result, step)
}

fn deliver_goods_reception(
    job: &OutboxJob,
    r: &GoodsReception,
    private: &serde_json::Map<String, Value>,
    sync: &Sync,
) -> Result<Option<i64>, Failure> {
    let api = &sync.api;
    match (&r.purchase_order_id, &r.delivery_id) {
        (Some(_), Some(delivery)) => {
            let lines = back_office::goods_reception_json(r);
            if let Created::AlreadyExists(m) =
                api.process_goods_reception(delivery, &r.id, &lines)?
            {
                log::info!("goods reception {:?} had already landed: {m}", r.id);
            }
        }
        _ => {
            let levels = reception_levels(job, r, private, sync)?;
            for chunk in levels.chunks(UPDATE_MANY_MAX) {
                api.update_inventory(chunk)?;
            }
        }
    }
    counted_levels(r, sync)
}

/// Each SKU of a reception once, in line order, with the total received (two lines of one
/// SKU are one level at Omnium).
fn received_per_sku(r: &GoodsReception) -> Vec<(String, f64)> {
    let mut totals: Vec<(String, f64)> = Vec::new();
    for l in &r.lines {
        match totals.iter_mut().find(|(sku, _)| *sku == l.sku) {
            Some((_, q)) => *q += l.quantity,
            None => totals.push((l.sku.clone(), l.quantity)),
        }
    }
    totals
}

/// The absolute levels a reception without a purchase order sends (Omnium's `UpdateMany`
/// takes nothing else), worked out when it is sent, never when it was recorded: a sale of
/// the same SKU delivered in between would otherwise be overwritten.
///
/// The first time, the level is Omnium's own current level (read now; it has every sale it
/// accepted, from any till) plus what came. It is saved with the job before it is sent.
/// Once a try may have landed (uncertain), the saved level is sent again plus the stock
/// effect of this till's jobs delivered since it was worked out (jobs recorded after it, or
/// not delivered then; by job id, not by clock; their counted movements are kept while the
/// reception is unsettled): right whether the first try landed (they were applied before
/// it and overwritten, or after it) or not (they are in Omnium's level). While another job moving the same stock has an unknown outcome
/// (in flight, or uncertain), the reception waits: its effect cannot be placed yet.
/// Not covered: another till's change of the same level between the read and the write,
/// and, on a resend, since the first read (absolute levels cannot merge them).
fn reception_levels(
    job: &OutboxJob,
    r: &GoodsReception,
    private: &serde_json::Map<String, Value>,
    sync: &Sync,
) -> Result<Vec<PushLevel>, Failure> {
    let storage = |e: crate::error::Error| Failure::Uncertain(format!("local database: {e}"));
    let totals = received_per_sku(r);
    let wh = &r.warehouse_id;
    for (sku, _) in &totals {
        if let Some(other) = sync
            .store
            .unsettled_stock_job(job.id, sku, wh)
            .map_err(storage)?
        {
            return Err(Failure::Waiting(format!(
                "goods reception {:?} waits until Omnium's answer to {other} (same SKU {sku:?}) is known",
                r.id
            )));
        }
    }
    let level = |sku: &str, quantity: f64| PushLevel {
        sku: sku.to_string(),
        warehouse_id: wh.clone(),
        quantity,
        counted_at_ms: 0,
    };
    let saved = &private.get("_sent");
    if let (true, Some(saved)) = (job.uncertain, saved) {
        let newest = saved["newest"].as_i64().unwrap_or(i64::MAX);
        let open: Vec<i64> = saved["open"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_i64)
            .collect();
        let mut levels = Vec::new();
        for (sku, _) in &totals {
            let sent = saved["levels"][sku.as_str()].as_f64().ok_or_else(|| {
                Failure::Uncertain(format!(
                    "goods reception {:?}: the level saved for {sku:?} is missing",
                    r.id
                ))
            })?;
            let since_then = sync
                .store
                .delivered_stock_since(job.id, sku, wh, newest, &open)
                .map_err(storage)?;
            levels.push(level(sku, sent + since_then));
        }
        return Ok(levels);
    }
    let skus: Vec<String> = totals.iter().map(|(s, _)| s.clone()).collect();
    let (newest, open) = sync
        .store
        .stock_baseline(job.id, &skus, wh)
        .map_err(storage)?;
    let current = current_levels(&skus, wh, sync)?;
    let levels: Vec<PushLevel> = totals
        .iter()
        .map(|(sku, received)| {
            let now = current
                .iter()
                .find(|l| l.sku == *sku && l.warehouse_id == *wh)
                .map_or(0.0, |l| l.quantity);
            level(sku, now + received)
        })
        .collect();
    let mut extra = serde_json::Map::new();
    extra.insert(
        "_sent".into(),
        serde_json::json!({
            "newest": newest,
            "open": open,
            "levels": levels.iter().map(|l| (l.sku.clone(), Value::from(l.quantity))).collect::<serde_json::Map<_, _>>(),
        }),
    );
    match sync
        .store
        .save_extra(job, &Value::Object(extra).to_string())
    {
        Ok(true) => Ok(levels),
        Ok(false) => Err(Failure::Unconfirmed(format!(
            "goods reception {:?}: the job was claimed again before its levels were sent",
            r.id
        ))),
        Err(e) => Err(storage(e)),
    }
}

/// Omnium's current levels of `skus` in `wh`, each read by id (`GET /api/Inventory/{sku}`),
/// never through the search index: a level the index shows late can predate a sale Omnium
/// already took, and the absolute level sent would then overwrite that sale. A SKU whose
/// read by id answers 404 (no item, or an Omnium or a fake without the route) is read
/// through the search instead, all such SKUs in one search (a few hundred at a time);
/// after any other refusal of that read (405 from an API without the route, 400 from a
/// front end refusing the SKU in the path), every SKU left goes to the search: a read
/// refused must not make the reception, a write, dead.
fn current_levels(
    skus: &[String],
    wh: &str,
    sync: &Sync,
) -> Result<Vec<crate::model::catalog::StockLevel>, Failure> {
    let whs = [wh.to_string()];
    let mut levels = Vec::new();
    let mut searched: Vec<String> = Vec::new();
    let mut by_id = true;
    for sku in skus {
        if !by_id {
            searched.push(sku.clone());
            continue;
        }
        match sync.api.inventory_item_levels(sku, &whs) {
            Ok(Some(found)) => levels.extend(found),
            Ok(None) => searched.push(sku.clone()),
            // classify() leaves 401, 408, 409 and 429 to their own failures.
            Err(Failure::Rejected { status, message }) if (400..500).contains(&status) => {
                log::warn!("Omnium refuses the read of a level by id ({message}); its search is used instead");
                by_id = false;
                searched.push(sku.clone());
            }
            Err(f) => return Err(f),
        }
    }
    for chunk in searched.chunks(LEVELS_SEARCH_MAX) {
        levels.extend(sync.api.inventory_levels(chunk, &whs)?);
    }
    Ok(levels)
}

/// SKUs per search in [`current_levels`]: one warehouse, so at most this many items, well
/// inside the first page (Omnium's inventory search serves up to 1,000 before a scroll).
const LEVELS_SEARCH_MAX: usize = 500;

/// Omnium's answer to a goods reception carries no time, so the levels it produced are
/// read back by id (a search could still show the level before the goods): they include
/// the goods (they were read after Omnium took them), they become
/// the till's levels at once, and the oldest of their `modified` stamps is when Omnium
/// counted the reception, which takes it out of `pending` exactly when a level has it.
/// If they cannot be read, the job is tried again (the resend is recognised as landed).
fn counted_levels(r: &GoodsReception, sync: &Sync) -> Result<Option<i64>, Failure> {
    // One level per SKU, however many lines name it (two PO lines of one SKU).
    let skus: Vec<String> = received_per_sku(r).into_iter().map(|(s, _)| s).collect();
    let levels = current_levels(&skus, &r.warehouse_id, sync)?;
    if levels.len() < skus.len() {
        return Err(Failure::Uncertain(format!(
            "goods reception {:?} landed, but Omnium shows {} of its {} stock levels yet",
            r.id,
            levels.len(),
            skus.len()
        )));
    }
    sync.store
        .apply_stock(&levels, None)
        .map_err(|e| Failure::Uncertain(format!("local database: {e}")))?;
    Ok(levels.iter().map(|l| l.modified_ms).min())
}

/// Omnium takes at most this many inventory items per `UpdateMany`.
pub const UPDATE_MANY_MAX: usize = 1000;

/// Sends every level waiting in `stock_push`, 1000 a call, newest per SKU and warehouse.
fn deliver_stock_push(sync: &Sync) -> Result<Option<i64>, Failure> {
    let storage = |e: crate::error::Error| Failure::Uncertain(format!("local database: {e}"));
    loop {
        let levels = sync.store.unsent_levels(UPDATE_MANY_MAX).map_err(storage)?;
        if levels.is_empty() {
            return Ok(None);
        }
        sync.api.update_inventory(&levels)?;
        sync.store.mark_levels_sent(&levels).map_err(storage)?;
    }
}

fn deliver_pickup(
    p: &Pickup,
    private: &serde_json::Map<String, Value>,
    sync: &Sync,
) -> Result<Option<i64>, Failure> {
    let api = &sync.api;
    let order = api.get_order(&p.order_id)?.ok_or_else(|| {
        Failure::Busy(format!(
            "order {:?} is not found in Omnium (yet); pickup {:?} was not sent",
            p.order_id, p.id
        ))
    })?;
    let status = order.status.as_deref().unwrap_or("");
    // Already there (an earlier try landed, its answer lost): nothing to send.
    let reached = match p.status {
        PickupStatus::PickedUp if p.lines.is_none() => {
            matches!(status, "PickedUp" | "Completed" | "PickedUpAndPaid")
        }
        PickupStatus::NotCollected => status == "NotCollected",
        PickupStatus::ReadyForPickup if p.lines.is_none() => status == "ReadyForPickup",
        _ => false,
    };
    if reached {
        return Ok(None);
    }
    if back_office::is_cancel_status(status) {
        if p.status == PickupStatus::Cancelled {
            return Ok(None);
        }
        // Omnium cancelled it (an expired click & collect, say): never resurrect it.
        super::inbound::apply_order(sync, &order);
        return Err(Failure::Rejected {
            status: 0,
            message: format!(
                "order {:?} was cancelled in Omnium (status {status}); pickup {:?} ({:?}) was not sent",
                p.order_id, p.id, p.status
            ),
        });
    }
    let targets = private.get("_targets").cloned().unwrap_or(Value::Null);
    match (p.status, &p.lines) {
        (PickupStatus::Cancelled, Some(lines)) => {
            for (line, _) in lines {
                if !orders::line_is_canceled(&order, line) {
                    api.cancel_order_line(&p.order_id, line)?;
                }
            }
        }
        (PickupStatus::ReadyForPickup | PickupStatus::PickedUp, Some(lines)) => {
            let field = if p.status == PickupStatus::PickedUp {
                "deliveredQuantity"
            } else {
                "readyForPickupQuantity"
            };
            let updates: Vec<Value> = lines
                .iter()
                .map(|(line, q)| {
                    let target = targets[line].as_f64().unwrap_or(*q);
                    serde_json::json!({"lineItemId": line, field: target})
                })
                .collect();
            api.order_lines_update(
                &p.order_id,
                &serde_json::json!({"lineItemUpdates": updates}),
            )?;
        }
        (status, _) => {
            if order.status.as_deref() != Some(status.omnium_status()) {
                api.update_order_status(&p.order_id, status.omnium_status())?;
            }
        }
    }
    Ok(None)
}

/// A read-back order that is not ours is a permanent problem for this job.
fn confirm(check: Result<(), String>) -> Result<(), Failure> {
    check.map_err(|message| Failure::Rejected { status: 0, message })
}

/// When a sale or return sent in this try leaves the stock overlay (`fo_stock_get`'s
/// `pending`): a pulled level of its SKUs stamped after every level the till held when
/// it was sent. Omnium applied it after those, on the same inventory clock, and a pull
/// reads the current level, so such a level has it. This rests on one assumption about
/// Omnium: its inventory `modified` stamps come from one clock that does not run
/// backwards. It does not compare inventory stamps with order stamps (Omnium documents no
/// ordering between the two; the simulator can stamp them apart, `stock_stamp_offset_ms`).
/// With no level held yet, the first level pulled counts it.
fn stock_floor(job: &OutboxJob, sync: &Sync) -> Result<i64, Failure> {
    sync.store
        .stock_floor(job.id)
        .map(|m| m.map_or(0, |m| m.saturating_add(1)))
        .map_err(|e| Failure::Uncertain(format!("local database: {e}")))
}

/// The same for a sale or return found at Omnium by a read-back (an earlier try landed,
/// when is unknown, and a level the till pulled since may already have it): its SKUs'
/// levels are read now by id (they have it; a search could still show a level from before
/// it) and stored, and the oldest of their stamps is the
/// mark. If they cannot be read, any level counts it (the mark is 0): the till may then
/// show the sale's stock as back until the next pull brings the level that has it, never
/// the sale twice.
fn stock_read_back(job: &OutboxJob, sync: &Sync) -> i64 {
    let items = match sync.store.movement_items(job.id) {
        Ok(items) => items,
        Err(e) => {
            log::warn!("job {}: its stock items cannot be read: {e}", job.id);
            return 0;
        }
    };
    let mut oldest = i64::MAX;
    let mut i = 0;
    while i < items.len() {
        let wh = items[i].1.clone();
        let skus: Vec<String> = items[i..]
            .iter()
            .take_while(|(_, w)| *w == wh)
            .map(|(s, _)| s.clone())
            .collect();
        i += skus.len();
        let levels = match current_levels(&skus, &wh, sync) {
            Ok(levels) => levels,
            Err(f) => {
                log::info!("job {}: its stock levels cannot be read back ({f}); the next pull settles them", job.id);
                return 0;
            }
        };
        let found: std::collections::HashSet<&str> = levels
            .iter()
            .filter(|l| l.warehouse_id == wh)
            .map(|l| l.sku.as_str())
            .collect();
        if skus.iter().any(|s| !found.contains(s.as_str())) {
            return 0;
        }
        if let Err(e) = sync.store.apply_stock(&levels, None) {
            log::warn!("job {}: stock levels read back not stored: {e}", job.id);
            return 0;
        }
        for l in levels.iter().filter(|l| l.warehouse_id == wh) {
            oldest = oldest.min(l.modified_ms);
        }
    }
    if oldest == i64::MAX {
        0
    } else {
        oldest
    }
}

fn deliver_sale(job: &OutboxJob, sale: &Sale, sync: &Sync) -> Result<Option<i64>, Failure> {
    let (api, ctx) = (&sync.api, &sync.ctx);
    if job.uncertain {
        if let Some(order) = api.get_order(&sale.id)? {
            log::info!(
                "sale {:?} had already landed in Omnium; not sending it again",
                sale.id
            );
            confirm(orders::matches_sale(
                &order,
                sale,
                ctx.terminal_id.as_deref(),
            ))?;
            return Ok(Some(stock_read_back(job, sync)));
        }
    }
    let floor = stock_floor(job, sync)?;
    let body = orders::pos_order_json(
        sale,
        &OrderContext {
            market_id: &ctx.market_id,
            terminal_id: ctx.terminal_id.as_deref(),
        },
    );
    match api.create_pos_order(&sale.id, &body)? {
        Created::New => Ok(Some(floor)),
        Created::AlreadyExists(message) => match api.get_order(&sale.id)? {
            Some(order) => {
                confirm(orders::matches_sale(
                    &order,
                    sale,
                    ctx.terminal_id.as_deref(),
                ))?;
                Ok(Some(stock_read_back(job, sync)))
            }
            None => Err(Failure::Unconfirmed(format!(
                "Omnium said order {:?} exists ({message}) but GET /api/Orders finds nothing",
                sale.id
            ))),
        },
    }
}

fn deliver_return(job: &OutboxJob, ret: &Return, sync: &Sync) -> Result<Option<i64>, Failure> {
    let (api, ctx) = (&sync.api, &sync.ctx);
    if job.uncertain {
        if let Some(order) = api.get_order(&ret.sale_id)? {
            if orders::has_return(&order, &ret.id) {
                return Ok(Some(stock_read_back(job, sync)));
            }
        }
    }
    let floor = stock_floor(job, sync)?;
    let body = orders::return_json(ret, &ctx.store_id, &ctx.currency);
    let created = api
        .create_return(&ret.sale_id, &body)
        .map_err(|f| lagging(f, "return"))?;
    match created {
        Created::New => Ok(Some(floor)),
        // Omnium says it has it but the read-back cannot see it yet (its index lags):
        // tried again later as uncertain, never killed (CONTRACT §9 rule 8).
        Created::AlreadyExists(message) => match api.get_order(&ret.sale_id)? {
            Some(order) if orders::has_return(&order, &ret.id) => {
                Ok(Some(stock_read_back(job, sync)))
            }
            _ => Err(Failure::Unconfirmed(format!(
                "Omnium said return {:?} exists ({message}) but order {:?} does not show it yet",
                ret.id, ret.sale_id
            ))),
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

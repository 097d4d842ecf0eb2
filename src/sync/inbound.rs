//! Orders placed online for this store (click & collect and web orders), announced by
//! Omnium's events with delta polling as the safety net, and the customers they name.

use super::{now_ms, policy, rfc3339, Sync};
use crate::omnium::back_office::{self, is_cancel_status, local_customer, local_order};
use crate::omnium::orders::OmniumOrder;
use crate::omnium::Failure;
use crate::store::{FetchQueue, OrderChange};
use serde_json::json;

/// Fetches done per worker round, so a burst of events never starves the outbox.
const FETCHES_PER_ROUND: usize = 20;
/// An order announced again while it was being fetched is fetched once more this long
/// after (the answer may predate the change the event announced); a burst of events meanwhile
/// costs that one fetch.
const REFETCH_AFTER_MS: i64 = 500;

/// Stores an order read from Omnium and tells the POS what changed. POS orders are
/// skipped. An order that is not this store's (sold or picked up here, CONTRACT §9 rule 16)
/// is skipped too, and leaves the till if it was here: it moved to another store.
pub fn apply_order(sync: &Sync, order: &OmniumOrder) {
    let Some(id) = order.id.as_deref() else {
        return;
    };
    let order_type = order.order_type.as_deref().unwrap_or("");
    if order_type.eq_ignore_ascii_case("Pos") {
        return;
    }
    if !back_office::is_for_store(order, &sync.ctx.store_id, &sync.ctx.warehouse_ids) {
        match sync.store.remove_inbound_order(id) {
            Ok(Some(_)) => {
                log::info!(
                    "order {id:?} moved to store {:?}: it leaves this till",
                    order.store_id.as_deref().unwrap_or("")
                );
                sync.events.push(json!({
                    "type": "order.updated", "order_id": id, "order_type": order_type,
                    "status": order.status, "removed": true, "reason": "moved",
                    "store_id": order.store_id, "at": rfc3339(now_ms()),
                }));
            }
            Ok(None) => {}
            Err(e) => log::error!("cannot remove order {id:?} that moved away: {e}"),
        }
        return;
    }
    let status = order.status.as_deref().unwrap_or("");
    let local = local_order(order, &sync.ctx.currency);
    let cancelled = is_cancel_status(status);
    let change = sync.store.put_inbound_order(
        id,
        order_type,
        status,
        &local.to_string(),
        order.modified_ms(),
        cancelled,
    );
    let change = match change {
        Ok(c) => c,
        Err(e) => {
            log::error!("cannot store order {id:?}: {e}");
            return;
        }
    };
    let kind = match &change {
        OrderChange::Unchanged => return,
        OrderChange::New if cancelled => "order.cancelled",
        OrderChange::New => "order.received",
        OrderChange::Changed { previous_status }
            if cancelled && !is_cancel_status(previous_status) =>
        {
            "order.cancelled"
        }
        OrderChange::Changed { .. } => "order.updated",
    };
    sync.events.push(json!({
        "type": kind, "order_id": id, "order_type": order_type, "status": status, "at": rfc3339(now_ms()),
    }));
    if let Some(customer) = order.customer_id.as_deref().filter(|c| !c.is_empty()) {
        if let Err(e) = sync.store.queue_customer_fetch(customer, now_ms()) {
            log::error!("cannot queue customer {customer:?}: {e}");
        }
    }
}

/// Works through due order and customer fetches. `Err` only for failures that concern
/// Omnium as a whole (unreachable, 429, refused credentials).
pub fn fetch_due(sync: &Sync) -> Result<usize, Failure> {
    let now = now_ms();
    let storage = |e: crate::error::Error| Failure::Uncertain(format!("local database: {e}"));
    let mut done = 0;
    // Orders the till changed itself whose pickups have gone (delivered, or refused and
    // dead): read Omnium's version again, so the till shows what Omnium made of them.
    for order_id in sync.store.orders_awaiting_omnium().map_err(storage)? {
        sync.store
            .queue_order_fetch_once(&order_id, now)
            .map_err(storage)?;
    }
    for (order_id, tries, due_at) in sync
        .store
        .due_fetches(FetchQueue::Orders, now, FETCHES_PER_ROUND)
        .map_err(storage)?
    {
        match sync.api.get_order(&order_id) {
            Ok(Some(order)) => {
                apply_order(sync, &order);
                sync.store
                    .settle_awaiting_order(&order_id)
                    .map_err(storage)?;
                sync.store
                    .fetch_done(
                        FetchQueue::Orders,
                        &order_id,
                        due_at,
                        now_ms() + REFETCH_AFTER_MS,
                    )
                    .map_err(storage)?;
            }
            Ok(None)
                if tries == 0
                    && sync
                        .store
                        .inbound_order(&order_id)
                        .map_err(storage)?
                        .is_some() =>
            {
                // An order the till holds answered 404 once (a proxy mid-deploy, a replica
                // behind): asked again after a back-off before it leaves the till.
                log::info!("order {order_id:?} answered 404; asked again before it is removed");
                let delay = policy::backoff_ms(&sync.policy, 1, 0.5) as i64;
                sync.store
                    .fetch_later(FetchQueue::Orders, &order_id, now_ms() + delay)
                    .map_err(storage)?;
            }
            Ok(None) => {
                // Gone from Omnium (deleted for good, two answers a back-off apart): it
                // leaves the till too.
                if let Some((order_type, status)) = sync
                    .store
                    .remove_inbound_order(&order_id)
                    .map_err(storage)?
                {
                    log::info!("order {order_id:?} is no longer in Omnium: it leaves this till");
                    sync.events.push(json!({
                        "type": "order.updated", "order_id": order_id, "order_type": order_type,
                        "status": status, "removed": true, "reason": "deleted",
                        "at": rfc3339(now_ms()),
                    }));
                } else {
                    log::warn!("order {order_id:?} from an event is not in Omnium; dropped");
                }
                sync.store
                    .fetch_done(
                        FetchQueue::Orders,
                        &order_id,
                        due_at,
                        now_ms() + REFETCH_AFTER_MS,
                    )
                    .map_err(storage)?;
            }
            Err(f) => retry_or_stop(sync, FetchQueue::Orders, &order_id, tries, f)?,
        }
        done += 1;
    }
    for (customer_id, tries, due_at) in sync
        .store
        .due_fetches(FetchQueue::Customers, now, FETCHES_PER_ROUND)
        .map_err(storage)?
    {
        match sync.api.get_customer(&customer_id) {
            Ok(Some((business, v))) => {
                let local = local_customer(&v, business);
                sync.store
                    .put_omnium_customer(&customer_id, &local.to_string())
                    .map_err(storage)?;
            }
            Ok(None) => {
                log::info!("customer {customer_id:?} named by an order is not in Omnium");
                sync.store
                    .fetch_done(
                        FetchQueue::Customers,
                        &customer_id,
                        due_at,
                        now_ms() + REFETCH_AFTER_MS,
                    )
                    .map_err(storage)?;
            }
            Err(f) => retry_or_stop(sync, FetchQueue::Customers, &customer_id, tries, f)?,
        }
        done += 1;
    }
    Ok(done)
}

fn retry_or_stop(
    sync: &Sync,
    queue: FetchQueue,
    id: &str,
    tries: u32,
    f: Failure,
) -> Result<(), Failure> {
    match f {
        Failure::Unreachable(_)
        | Failure::Redirected(_)
        | Failure::Throttled { .. }
        | Failure::Unauthorized(_) => Err(f),
        other => {
            log::warn!("fetching {id:?} failed: {other}");
            let delay = policy::backoff_ms(&sync.policy, tries + 1, 0.5) as i64;
            sync.store
                .fetch_later(queue, id, now_ms() + delay)
                .map_err(|e| Failure::Uncertain(e.to_string()))
        }
    }
}

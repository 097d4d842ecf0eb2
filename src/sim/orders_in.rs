//! Orders placed online (`Online`, `ClickAndCollect`) that the POS picks up: the events Omnium
//! emits for them, `POST /api/Orders/Search`, the web side of `UpdateStatus` and
//! `POST /api/Orders/{id}/OrderLinesUpdate`.
//!
//! Traps kept on purpose:
//! - the search also returns the POS orders the client created itself (`orderType: "Pos"`);
//! - a C&C order's pickup store may differ from its `storeId` (`shipments[].pickUpWarehouseCode`),
//!   and `selectedStores` matches `storeId` only: an order sold by another store and picked up
//!   here is found by `GET /api/Orders/GetOrdersForPickUpPoint`, not by the search;
//! - with an index lag set, both searches show an order's write that long after its `modified`
//!   (until then the version before it, or nothing), like products and stock; `GET` by id is
//!   never late;
//! - an order can move to another store (`storeId` and its shipments), with an event that
//!   names the new store;
//! - a cancelled web order refuses every further status change and line update with 400;
//! - `OrderLinesUpdate` quantities are absolute (the line's new totals), not increments.

use std::collections::HashMap;
use std::time::Instant;

use serde_json::{json, Map, Value};

use super::catalog::{
    fmt_ms, in_window, opt_int, opt_string, opt_strings, opt_time, parse_time_ns, DAY_MS,
    DEFAULT_LIST_PAGE_SIZE, MAX_SEARCH_TAKE, MAX_SEARCH_WINDOW,
};
use super::http::{Request, Response};
use super::state::{
    find_line_mut, num_or_zero, order_for_update, parse_object, random_hex, State, StoredOrder,
    QTY_EPS,
};

/// Event operation ids (docs §18).
const OP_ADD_ORDER: u32 = 110_106;
const OP_CANCEL_EXPIRED: u32 = 115_100;
const OP_API_ORDER_PATCH: u32 = 310_100;
const OP_API_UPDATE_STATUS: u32 = 310_101;

/// A Click & Collect customer has this long to pick the order up.
const PICKUP_DAYS: i64 = 3;

const FIRST_NAMES: [&str; 10] = [
    "Kari", "Ola", "Ingrid", "Lars", "Sofie", "Jonas", "Nora", "Emil", "Ida", "Henrik",
];
const LAST_NAMES: [&str; 10] = [
    "Nordmann", "Hansen", "Johansen", "Olsen", "Larsen", "Andersen", "Pedersen", "Nilsen", "Berg",
    "Haugen",
];

/// Generator counters and the events emitted so far.
#[derive(Debug)]
pub(crate) struct WebOrders {
    pub events: Vec<Value>,
    next_order: u64,
    /// The versions of each order the search index has been shown, oldest first, with
    /// their `modified` (ms): a version is searchable once `modified + index lag` has passed.
    index: HashMap<String, Vec<(i64, Value)>>,
}

impl Default for WebOrders {
    fn default() -> Self {
        WebOrders {
            events: Vec::new(),
            next_order: 1001,
            index: HashMap::new(),
        }
    }
}

/// Anything that is not a POS order came in from outside the POS.
pub(crate) fn is_web_order(order: &Value) -> bool {
    order["orderType"].as_str() != Some("Pos")
}

/// Statuses after which an order takes no further status change.
pub(crate) fn is_cancelled_status(s: &str) -> bool {
    s.starts_with("OrderCanceled") || s == "Expired" || s == "NotCollected"
}

/// The line items of a document's form (`orderForm` of an order, `purchaseOrderForm` of a
/// purchase order), mutably.
pub(crate) fn form_lines_mut<'a>(
    doc: &'a mut Value,
    form: &str,
) -> impl Iterator<Item = &'a mut Map<String, Value>> {
    doc.get_mut(form)
        .and_then(|f| f.get_mut("lineItems"))
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
}

/// The line items of a document's form.
pub(crate) fn form_lines<'a>(
    doc: &'a Value,
    form: &str,
) -> impl Iterator<Item = &'a Map<String, Value>> {
    doc[form]["lineItems"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
}

fn lines_mut(order: &mut Value) -> impl Iterator<Item = &mut Map<String, Value>> {
    form_lines_mut(order, "orderForm")
}

fn lines(order: &Value) -> impl Iterator<Item = &Map<String, Value>> {
    form_lines(order, "orderForm")
}

/// A quantity as JSON: whole numbers as integers (as they were sent), others as decimals.
pub(crate) fn qty_json(q: f64) -> Value {
    if q.fract() == 0.0 && q.abs() < 9.0e15 {
        json!(q as i64)
    } else {
        json!(q)
    }
}

/// What a status change does to a web order besides setting `status`.
pub(crate) fn apply_web_status(order: &mut Value, status: &str, stamp: &str) {
    match status {
        "ReadyForPickup" => {
            order["readyForPickup"] = json!(stamp);
            for l in lines_mut(order) {
                let q = num_or_zero(l, "quantity") - num_or_zero(l, "canceledQuantity");
                l.insert("readyForPickupQuantity".into(), qty_json(q));
            }
        }
        "PickedUp" => {
            for l in lines_mut(order) {
                let q = num_or_zero(l, "quantity") - num_or_zero(l, "canceledQuantity");
                l.insert("deliveredQuantity".into(), qty_json(q));
            }
        }
        _ => {}
    }
}

/// 32 hex digits shaped like a GUID.
fn uuid_ish() -> String {
    let h = format!("{}{}", random_hex(), random_hex());
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

fn event(
    order: &Value,
    operation_id: u32,
    message: &str,
    category: &str,
    previous: Option<&str>,
    stamp: &str,
) -> Value {
    let id = order["id"].clone();
    let number = match &order["orderNumber"] {
        Value::String(s) if !s.is_empty() => json!(s),
        _ => id.clone(),
    };
    json!({
        "id": uuid_ish(),
        "operationId": operation_id,
        "timestamp": stamp,
        "message": message,
        "className": "Order",
        "subClassName": order["orderType"],
        "objectId": id,
        "objectNumber": number,
        "category": category,
        "market": order["marketId"],
        "storeId": order["storeId"],
        "status": order["status"],
        "previousStatus": previous,
        "isError": false,
    })
}

/// The parts of `OmniumOrderSearchRequest` the simulator honours.
struct OrderQuery {
    from: Option<i128>,
    to: Option<i128>,
    stores: Vec<String>,
    statuses: Vec<String>,
    excluded_statuses: Vec<String>,
    order_type: Option<String>,
    take: usize,
    page: usize,
    modified_sort: Option<bool>,
}

/// `take` (1..=100, default 20) and 0-based `page` with `take * page` ≤ 10,000.
pub(crate) fn search_paging(b: &Map<String, Value>) -> Result<(usize, usize), String> {
    let take = match opt_int(b, "take")? {
        None | Some(0) => DEFAULT_LIST_PAGE_SIZE,
        Some(t) if (1..=MAX_SEARCH_TAKE).contains(&t) => t,
        Some(t) => {
            return Err(format!(
                "take must be between 1 and {MAX_SEARCH_TAKE}, not {t}"
            ))
        }
    };
    let page = opt_int(b, "page")?.unwrap_or(0);
    if page < 0 {
        return Err("page must not be negative".into());
    }
    if take.saturating_mul(page) > MAX_SEARCH_WINDOW {
        return Err(format!("take * page must not exceed {MAX_SEARCH_WINDOW}"));
    }
    Ok((take as usize, page as usize))
}

impl OrderQuery {
    fn parse(b: &Map<String, Value>) -> Result<OrderQuery, String> {
        let (take, page) = search_paging(b)?;
        let modified_sort = match opt_string(b, "sortOrder")? {
            Some(s) if s.eq_ignore_ascii_case("ModifiedAscending") => Some(true),
            Some(s) if s.eq_ignore_ascii_case("ModifiedDescending") => Some(false),
            _ => None,
        };
        Ok(OrderQuery {
            from: opt_time(b, "modifiedFrom")?,
            to: opt_time(b, "modifiedTo")?,
            stores: opt_strings(b, "selectedStores")?,
            statuses: opt_strings(b, "selectedStatuses")?,
            excluded_statuses: opt_strings(b, "excludedStatuses")?,
            order_type: opt_string(b, "orderType")?,
            take,
            page,
            modified_sort,
        })
    }

    fn matches(&self, o: &Value, modified_ms: i64) -> bool {
        self.matches_lazy(o, || modified_ms)
    }

    /// [`Self::matches`], reading `modified` only for an order the other filters keep.
    fn matches_lazy(&self, o: &Value, modified_ms: impl FnOnce() -> i64) -> bool {
        // `selectedStores` is the selling store only, never the pickup place.
        let store_ok = self.stores.is_empty()
            || o["storeId"]
                .as_str()
                .is_some_and(|s| self.stores.iter().any(|x| x == s));
        let type_ok = self.order_type.as_ref().is_none_or(|t| {
            o["orderType"]
                .as_str()
                .is_some_and(|ot| ot.eq_ignore_ascii_case(t))
        });
        let status_ok = (self.statuses.is_empty()
            || o["status"]
                .as_str()
                .is_some_and(|s| self.statuses.iter().any(|x| x.eq_ignore_ascii_case(s))))
            && !o["status"].as_str().is_some_and(|s| {
                self.excluded_statuses
                    .iter()
                    .any(|x| x.eq_ignore_ascii_case(s))
            });
        store_ok && type_ok && status_ok && in_window(modified_ms(), self.from, self.to)
    }
}

/// Shipments on `orderForm.shipments` (Omnium's place) and, leniently, on the order itself.
fn shipments(o: &Value) -> impl Iterator<Item = &Value> {
    [&o["orderForm"]["shipments"], &o["shipments"]]
        .into_iter()
        .filter_map(Value::as_array)
        .flatten()
}

fn modified_ms(o: &Value) -> i64 {
    o["modified"]
        .as_str()
        .and_then(parse_time_ns)
        .map(|ns| (ns / 1_000_000) as i64)
        .unwrap_or(0)
}

impl State {
    /// Stores an order placed online and returns the "Order added" event it emits.
    pub fn add_web_order(&mut self, order: Value) -> Value {
        let Value::Object(mut m) = order else {
            panic!("add_web_order: the order must be a JSON object");
        };
        let id = match m.get("id") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => panic!("add_web_order: id (a non-empty string) is required"),
        };
        assert!(
            !self.orders.contains_key(&id),
            "add_web_order: order '{id}' already exists"
        );
        let stamp_ms = self.clock.tick();
        let stamp = fmt_ms(stamp_ms);
        if m.get("orderType").is_none_or(Value::is_null) {
            m.insert("orderType".into(), json!("Online"));
        }
        let cc = m["orderType"]
            .as_str()
            .is_some_and(|t| t.eq_ignore_ascii_case("ClickAndCollect"));
        m.insert("status".into(), json!("New"));
        for (k, v) in [("created", json!(stamp)), ("orderNumber", json!(id))] {
            if m.get(k).is_none_or(Value::is_null) {
                m.insert(k.into(), v);
            }
        }
        m.insert("modified".into(), json!(stamp));
        if cc {
            m.insert(
                "customerPickupDeadline".into(),
                json!(fmt_ms(stamp_ms + PICKUP_DAYS * DAY_MS)),
            );
        }
        m.insert("returnOrderForms".into(), json!([]));
        let mut order = Value::Object(m);
        for l in lines_mut(&mut order) {
            for k in [
                "canceledQuantity",
                "deliveredQuantity",
                "readyForPickupQuantity",
                "returnQuantity",
            ] {
                if l.get(k).is_none_or(Value::is_null) {
                    l.insert(k.into(), json!(0));
                }
            }
        }
        let ev = event(&order, OP_ADD_ORDER, "Order added", "Created", None, &stamp);
        self.orders.insert(
            id.clone(),
            StoredOrder {
                order,
                queued_until: None,
                stale: None,
            },
        );
        self.order_ids.push(id);
        self.web.events.push(ev.clone());
        ev
    }

    /// A realistic web order (not stored yet) and its customer (stored as a private customer).
    pub fn new_web_order(&mut self, order_type: &str, store_id: &str, n_lines: usize) -> Value {
        let n = self.web.next_order;
        self.web.next_order += 1;
        let id = format!("WEB-{n}");
        let i = n as usize;
        let (first, last) = (FIRST_NAMES[i % 10], LAST_NAMES[(i / 10 + i * 3) % 10]);
        let customer_id = format!("C-{n}");
        let email = format!(
            "{}.{}{n}@example.no",
            first.to_lowercase(),
            last.to_lowercase()
        );
        let phone = format!("+47{}", 90_000_000 + n);
        let market = self
            .cfg
            .markets
            .first()
            .cloned()
            .unwrap_or_else(|| "NOR".into());
        let currency = self
            .catalog
            .markets
            .iter()
            .find(|m| m["marketId"].as_str() == Some(market.as_str()))
            .and_then(|m| m["currency"].as_str())
            .unwrap_or("NOK")
            .to_string();
        let stamp = self.clock.tick();
        self.office.upsert_customer(
            false,
            json!({
                "customerId": customer_id,
                "firstName": first,
                "lastName": last,
                "email": email,
                "phone": phone,
                "marketId": market,
                "storeIds": [store_id],
            }),
            stamp,
        );
        let skus = self.catalog.sku_ids();
        let start = if skus.is_empty() {
            0
        } else {
            i.wrapping_mul(31) % skus.len()
        };
        let mut total = 0.0;
        let line_items: Vec<Value> = (0..n_lines)
            .map(|k| {
                let (code, details) = if skus.is_empty() {
                    (format!("SKU-{}", k + 1), None)
                } else {
                    let sku = skus[(start + k) % skus.len()].clone();
                    let d = self.catalog.sku_details(&sku);
                    (sku, d)
                };
                let quantity = 1 + (i + k) % 2;
                let price = details
                    .as_ref()
                    .and_then(|d| d.price)
                    .unwrap_or(199.0 + 100.0 * k as f64);
                total += quantity as f64 * price;
                json!({
                    "lineItemId": (k + 1).to_string(),
                    "code": code,
                    "displayName": details.as_ref().map_or_else(|| format!("Vare {}", k + 1), |d| d.name.clone()),
                    "ean": details.as_ref().and_then(|d| d.ean.clone()),
                    "quantity": quantity,
                    "placedPrice": price,
                    "taxRate": 25,
                })
            })
            .collect();
        let cc = order_type.eq_ignore_ascii_case("ClickAndCollect");
        let address = json!({
            "name": format!("{first} {last}"),
            "firstName": first,
            "lastName": last,
            "line1": format!("Storgata {}", 1 + i % 90),
            "postalCode": "0155",
            "city": "Oslo",
            "countryCode": "NO",
            "email": email,
            "phone": phone,
        });
        let (shipment, payments) = if cc {
            (
                json!({
                    "shipmentId": "1",
                    "warehouseCode": store_id,
                    "pickUpWarehouseCode": store_id,
                    "shippingMethodName": "ClickAndCollect",
                    "status": "AwaitingInventory",
                }),
                json!([]),
            )
        } else {
            (
                json!({
                    "shipmentId": "1",
                    "warehouseCode": store_id,
                    "shippingMethodName": "Posten",
                    "status": "AwaitingInventory",
                    "address": address,
                }),
                json!([{
                    "paymentMethodName": "Klarna",
                    "paymentType": "Invoice",
                    "transactionId": format!("KL-{n}"),
                    "transactionType": "Authorization",
                    "status": "Processed",
                    "amount": (total * 100.0).round() / 100.0,
                }]),
            )
        };
        json!({
            "id": id,
            "orderNumber": id,
            "orderType": order_type,
            "storeId": store_id,
            "marketId": market,
            "billingCurrency": currency,
            "customerId": customer_id,
            "customerName": format!("{first} {last}"),
            "customerEmail": email,
            "customerPhone": phone,
            "customerType": "B2C",
            "billingAddress": address,
            "salesChannel": "Web",
            "orderForm": {
                "lineItems": line_items,
                "shipments": [shipment],
                "payments": payments,
            },
        })
    }

    /// Changes an order as Omnium's UI or another system would and emits an "Updated" event.
    pub fn update_web_order(&mut self, id: &str, f: impl FnOnce(&mut Value)) -> Option<Value> {
        let o = self.orders.get_mut(id)?;
        let before = o.order["status"].as_str().map(str::to_string);
        f(&mut o.order);
        let stamp = fmt_ms(self.clock.tick());
        o.order["modified"] = json!(stamp);
        let previous = before.filter(|b| o.order["status"].as_str() != Some(b.as_str()));
        let ev = event(
            &o.order,
            OP_API_ORDER_PATCH,
            "Order updated",
            "Updated",
            previous.as_deref(),
            &stamp,
        );
        self.web.events.push(ev.clone());
        Some(ev)
    }

    /// Cancels an order from Omnium's side (the scheduled C&C expiry when `expired`).
    pub fn cancel_order_remotely(&mut self, id: &str, expired: bool) -> Option<Value> {
        let o = self.orders.get_mut(id)?;
        let previous = o.order["status"].as_str().map(str::to_string);
        let stamp = fmt_ms(self.clock.tick());
        o.order["status"] = json!("OrderCanceled");
        o.order["modified"] = json!(stamp);
        let (op, message) = if expired {
            (
                OP_CANCEL_EXPIRED,
                "Order canceled: the pickup deadline expired",
            )
        } else {
            (OP_API_UPDATE_STATUS, "Order status updated")
        };
        let ev = event(
            &o.order,
            op,
            message,
            "Updated",
            previous.as_deref(),
            &stamp,
        );
        self.web.events.push(ev.clone());
        Some(ev)
    }

    /// `POST /api/Orders/Search`.
    pub fn orders_search(&mut self, req: &Request, now: Instant) -> Response {
        let body = match parse_object(&req.body) {
            Ok(b) => b,
            Err(r) => return r,
        };
        let q = match OrderQuery::parse(&body) {
            Ok(q) => q,
            Err(msg) => return Response::text(400, &msg),
        };
        let mut hits: Vec<(i64, String, Value)> = if self.catalog.index_lag_ms <= 0 {
            // No index lag: the orders themselves, and only the hits copied (a fleet of
            // tills searching every few seconds over tens of thousands of orders).
            self.orders
                .iter()
                .filter_map(|(id, o)| {
                    if o.queued_until.is_some_and(|t| now < t) {
                        let v = o.view(now);
                        let m = modified_ms(&v);
                        return q.matches(&v, m).then(|| (m, id.clone(), v));
                    }
                    q.matches_lazy(&o.order, || modified_ms(&o.order))
                        .then(|| (modified_ms(&o.order), id.clone(), o.order.clone()))
                })
                .collect()
        } else {
            self.indexed_orders(now)
                .into_iter()
                .filter(|(m, _, v)| q.matches(v, *m))
                .collect()
        };
        match q.modified_sort {
            None => hits.sort_by(|a, b| a.1.cmp(&b.1)),
            Some(true) => hits.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1))),
            Some(false) => hits.sort_by(|a, b| (b.0, &a.1).cmp(&(a.0, &b.1))),
        }
        let total = hits.len();
        let result: Vec<Value> = hits
            .into_iter()
            .skip(q.take.saturating_mul(q.page))
            .take(q.take)
            .map(|h| h.2)
            .collect();
        self.stats.orders_served += result.len() as u64;
        self.stats.pos_orders_served += result
            .iter()
            .filter(|o| o["orderType"].as_str() == Some("Pos"))
            .count() as u64;
        Response::json(
            200,
            &json!({"result": result, "totalHits": total, "facets": []}),
        )
    }

    /// Every order as the search index shows it now: `(modified, id, order)`. Without an
    /// index lag, the orders themselves; with one, each order's newest version whose
    /// `modified` is at least the lag old (versions are noted when a search looks, so a
    /// version replaced before any search saw it is never shown: only its successor).
    fn indexed_orders(&mut self, now: Instant) -> Vec<(i64, String, Value)> {
        let lag = self.catalog.index_lag_ms;
        let now_ms = self.clock.now_ms();
        let mut out = Vec::with_capacity(self.orders.len());
        for (id, o) in &self.orders {
            let v = o.view(now);
            let m = modified_ms(&v);
            if lag <= 0 {
                out.push((m, id.clone(), v));
                continue;
            }
            let versions = self.web.index.entry(id.clone()).or_default();
            if versions.last().is_none_or(|(seen, _)| *seen != m) {
                versions.push((m, v));
            }
            if let Some(i) = versions.iter().rposition(|(seen, _)| seen + lag <= now_ms) {
                versions.drain(..i);
                out.push((versions[0].0, id.clone(), versions[0].1.clone()));
            }
        }
        // A hard-deleted order leaves the index at once (as deleted products do here).
        let orders = &self.orders;
        self.web.index.retain(|id, _| orders.contains_key(id));
        out
    }

    /// `GET /api/Orders/GetOrdersForPickUpPoint`: orders whose shipment is picked up at one of
    /// `storeId` (repeatable), changed after `changedSince` (exclusive, like Omnium's GET
    /// lists), oldest change first, `page` from 1, `pageSize` up to 100 (default 20). A bare
    /// JSON array.
    pub fn orders_for_pickup_point(&mut self, req: &Request, now: Instant) -> Response {
        let stores: Vec<&str> = req
            .query
            .iter()
            .filter(|(k, _)| {
                k.eq_ignore_ascii_case("storeId") || k.eq_ignore_ascii_case("storeId[]")
            })
            .map(|(_, v)| v.as_str())
            .collect();
        let since = match req.query("changedSince") {
            None => None,
            Some(t) => match parse_time_ns(t) {
                Some(ns) => Some(ns),
                None => return Response::text(400, &format!("changedSince {t:?} is not a date")),
            },
        };
        let page = match req.query("page").map(str::parse::<usize>) {
            None => 1,
            Some(Ok(p)) if p >= 1 => p,
            _ => return Response::text(400, "page must be a number of at least 1"),
        };
        let size = match req.query("pageSize").map(str::parse::<usize>) {
            None => DEFAULT_LIST_PAGE_SIZE as usize,
            Some(Ok(n)) if (1..=100).contains(&n) => n,
            _ => return Response::text(400, "pageSize must be between 1 and 100"),
        };
        let mut hits: Vec<(i64, String, Value)> = self
            .indexed_orders(now)
            .into_iter()
            .filter(|(m, _, v)| {
                since.is_none_or(|s| i128::from(*m) * 1_000_000 > s)
                    && shipments(v).any(|s| {
                        s["pickUpWarehouseCode"]
                            .as_str()
                            .is_some_and(|p| stores.contains(&p))
                    })
            })
            .collect();
        hits.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        let result: Vec<Value> = hits
            .into_iter()
            .skip((page - 1).saturating_mul(size))
            .take(size)
            .map(|h| h.2)
            .collect();
        self.stats.orders_served += result.len() as u64;
        Response::json(200, &Value::Array(result))
    }

    /// Moves an order to another store, as Omnium's UI does: its `storeId`, and each
    /// shipment's sending and pickup warehouse, become `store_id`; emits (and returns) the
    /// "Updated" event, which names the new store.
    pub fn move_web_order(&mut self, id: &str, store_id: &str) -> Option<Value> {
        self.update_web_order(id, |o| {
            o["storeId"] = json!(store_id);
            for form in ["orderForm", ""] {
                let ships = if form.is_empty() {
                    o.get_mut("shipments")
                } else {
                    o.get_mut(form).and_then(|f| f.get_mut("shipments"))
                };
                for s in ships
                    .and_then(Value::as_array_mut)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_object_mut)
                {
                    s.insert("warehouseCode".into(), json!(store_id));
                    if s.get("pickUpWarehouseCode").is_some_and(|p| !p.is_null()) {
                        s.insert("pickUpWarehouseCode".into(), json!(store_id));
                    }
                }
            }
        })
    }

    /// Deletes an order for good (`DELETE /api/Orders/{id}?deletePermanently=true`): no search
    /// and no `GET` finds it again, and no event says so.
    pub fn delete_order_permanently(&mut self, id: &str) -> bool {
        self.order_ids.retain(|o| o != id);
        self.orders.remove(id).is_some()
    }

    /// `POST /api/Orders/{id}/OrderLinesUpdate`: absolute per-line quantities.
    pub fn order_lines_update(&mut self, id: &str, req: &Request, now: Instant) -> Response {
        let o = match order_for_update(&mut self.orders, id, now) {
            Ok(o) => o,
            Err(r) => return r,
        };
        let body = match parse_object(&req.body) {
            Ok(b) => b,
            Err(r) => return r,
        };
        if o.order["status"].as_str().is_some_and(is_cancelled_status) {
            self.stats.rejected_on_cancelled += 1;
            return Response::text(400, &format!("Order {id} is cancelled"));
        }
        let status = match opt_string(&body, "status") {
            Ok(s) => s,
            Err(msg) => return Response::text(400, &msg),
        };
        let updates = match body.get("lineItemUpdates").and_then(Value::as_array) {
            Some(u) if !u.is_empty() => u,
            _ => return Response::text(400, "lineItemUpdates must be a non-empty array"),
        };
        // Work on a copy so a bad update changes nothing.
        let mut order = o.order.clone();
        for (i, u) in updates.iter().enumerate() {
            let p = format!("lineItemUpdates[{i}]");
            let Some(u) = u.as_object() else {
                return Response::text(400, &format!("{p} must be an object"));
            };
            let Some(line_id) = u.get("lineItemId").and_then(Value::as_str) else {
                return Response::text(400, &format!("{p}.lineItemId is required"));
            };
            let Some(line) = find_line_mut(&mut order, line_id) else {
                return Response::text(
                    400,
                    &format!("{p}.lineItemId '{line_id}' is not a line of order '{id}'"),
                );
            };
            for k in [
                "deliveredQuantity",
                "canceledQuantity",
                "readyForPickupQuantity",
            ] {
                match u.get(k) {
                    None | Some(Value::Null) => {}
                    Some(Value::Number(n)) if n.as_f64().is_some_and(|q| q >= 0.0) => {
                        line.insert(k.into(), qty_json(n.as_f64().unwrap_or(0.0)));
                    }
                    Some(_) => {
                        return Response::text(
                            400,
                            &format!("{p}.{k} of line '{line_id}' must be a number of at least 0"),
                        )
                    }
                }
            }
            let qty = num_or_zero(line, "quantity");
            let done =
                num_or_zero(line, "deliveredQuantity") + num_or_zero(line, "canceledQuantity");
            if done > qty + QTY_EPS {
                return Response::text(
                    400,
                    &format!(
                        "{p}: deliveredQuantity + canceledQuantity ({done}) exceeds the quantity {qty} of line '{line_id}'"
                    ),
                );
            }
        }
        let before = o.order["status"].as_str().unwrap_or_default().to_string();
        let new_status = status.or_else(|| {
            let ls: Vec<&Map<String, Value>> = lines(&order).collect();
            let delivered = |l: &Map<String, Value>| num_or_zero(l, "deliveredQuantity");
            let any_delivered = ls.iter().any(|l| delivered(l) > QTY_EPS);
            let all_done = ls.iter().all(|l| {
                delivered(l) + num_or_zero(l, "canceledQuantity")
                    >= num_or_zero(l, "quantity") - QTY_EPS
            });
            match (any_delivered, all_done) {
                (true, true) => Some("Completed".to_string()),
                (true, false) => Some("PartiallyShipped".to_string()),
                _ => None,
            }
        });
        let stamp = fmt_ms(self.clock.tick());
        if let Some(s) = &new_status {
            order["status"] = json!(s);
            if s == "Completed" && order["completed"].is_null() {
                order["completed"] = json!(stamp);
            }
        }
        order["modified"] = json!(stamp);
        o.order = order;
        let view = o.view(now);
        if new_status
            .as_deref()
            .is_some_and(|s| s != before && s.starts_with("OrderCanceled"))
        {
            self.stats.cancellations += 1;
        }
        self.stats.line_updates += 1;
        Response::json(200, &view)
    }
}

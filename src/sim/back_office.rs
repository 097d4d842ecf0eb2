//! What a POS writes besides orders: invoices (receipts with their PDF), private and business
//! customers, goods reception against purchase-order deliveries and absolute inventory levels.
//!
//! Traps kept on purpose:
//! - uploading the same receipt file twice attaches it twice (Omnium does not deduplicate files);
//! - goods reception quantities are increments: only `goodsReceptionId` makes a replay safe, and a
//!   replayed id refuses the whole request (nothing applied);
//! - over-delivery is accepted;
//! - customer batches and inventory batches have hard size limits (100 and 1000).

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::{json, Map, Value};

use super::catalog::{
    ean_check_digit, fmt_ms, in_window, opt_string, opt_strings, opt_time, DAY_MS,
};
use super::http::{Request, Response};
use super::orders_in::{qty_json, search_paging};
use super::state::{non_empty_str, num_or_zero, parse_object, State, QTY_EPS};

/// `AddOrUpdateMany` for customers takes at most this many per request.
const MAX_CUSTOMER_BATCH: usize = 100;
/// `PUT /api/Inventory/UpdateMany` takes at most this many items per request.
const MAX_INVENTORY_BATCH: usize = 1000;

const SUPPLIERS: [(&str, &str); 4] = [
    ("SUP-10", "Devold of Norway AS"),
    ("SUP-20", "Bergans Fritid AS"),
    ("SUP-30", "Helly Hansen AS"),
    ("SUP-40", "Swix Sport AS"),
];

pub(crate) struct StoredInvoice {
    doc: Value,
    files: Vec<(String, Vec<u8>)>,
}

#[derive(Default)]
pub(crate) struct BackOffice {
    invoices: BTreeMap<String, StoredInvoice>,
    next_asset: u64,
    private: BTreeMap<String, Value>,
    business: BTreeMap<String, Value>,
    pub(crate) purchase_orders: BTreeMap<String, Value>,
    next_po: u64,
    /// Every `goodsReceptionId` processed so far.
    receptions: HashSet<String>,
}

impl BackOffice {
    pub fn invoice(&self, id: &str) -> Option<Value> {
        self.invoices.get(id).map(|i| i.doc.clone())
    }

    pub fn invoice_files(&self, id: &str) -> Vec<(String, Vec<u8>)> {
        self.invoices
            .get(id)
            .map(|i| i.files.clone())
            .unwrap_or_default()
    }

    pub fn customer(&self, id: &str) -> Option<(String, Value)> {
        if let Some(c) = self.private.get(id) {
            return Some(("private".into(), c.clone()));
        }
        self.business
            .get(id)
            .map(|c| ("business".into(), c.clone()))
    }

    /// Merges the sent fields into the stored customer (creating it); returns whether anything
    /// changed. `modified` is stamped only on a change.
    ///
    /// # Panics
    /// If `customer` is not an object with a non-empty string `customerId`.
    pub fn upsert_customer(&mut self, business: bool, customer: Value, stamp: i64) -> bool {
        let Value::Object(sent) = customer else {
            panic!("upsert_customer: the customer must be a JSON object");
        };
        let id = match sent.get("customerId") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => panic!("upsert_customer: customerId (a non-empty string) is required"),
        };
        let map = if business {
            &mut self.business
        } else {
            &mut self.private
        };
        let old = map.get(&id);
        let mut doc = old.and_then(Value::as_object).cloned().unwrap_or_default();
        for (k, v) in &sent {
            if k != "created" && k != "modified" {
                doc.insert(k.clone(), v.clone());
            }
        }
        if !business && !sent.contains_key("fullName") {
            let name = [&doc.get("firstName"), &doc.get("lastName")]
                .iter()
                .filter_map(|v| v.and_then(Value::as_str))
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(" ");
            if !name.is_empty() {
                doc.insert("fullName".into(), json!(name));
            }
        }
        if old.and_then(Value::as_object) == Some(&doc) {
            return false;
        }
        if old.is_none() {
            let created = match sent.get("created") {
                Some(Value::String(s)) if !s.is_empty() => json!(s),
                _ => json!(fmt_ms(stamp)),
            };
            doc.insert("created".into(), created);
        }
        doc.insert("modified".into(), json!(fmt_ms(stamp)));
        map.insert(id, Value::Object(doc));
        true
    }

    pub fn purchase_order(&self, id: &str) -> Option<Value> {
        self.purchase_orders.get(id).cloned()
    }
}

fn po_lines_mut(po: &mut Value) -> impl Iterator<Item = &mut Map<String, Value>> {
    super::orders_in::form_lines_mut(po, "purchaseOrderForm")
}

fn po_lines(po: &Value) -> impl Iterator<Item = &Map<String, Value>> {
    super::orders_in::form_lines(po, "purchaseOrderForm")
}

/// A line's delivery: its own `deliveryId`, else its purchase order's.
fn line_delivery<'a>(po: &'a Value, line: &'a Map<String, Value>) -> Option<&'a str> {
    match line.get("deliveryId").and_then(Value::as_str) {
        Some(d) if !d.is_empty() => Some(d),
        _ => po["deliveryId"].as_str(),
    }
}

fn modified_ms(doc: &Value) -> i64 {
    doc["modified"]
        .as_str()
        .and_then(super::catalog::parse_time_ns)
        .map(|ns| (ns / 1_000_000) as i64)
        .unwrap_or(0)
}

/// A JSON array body, or the 400 to answer.
fn parse_array(body: &[u8]) -> Result<Vec<Value>, Response> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(a)) => Ok(a),
        Ok(_) => Err(Response::text(400, "Request body must be a JSON array")),
        Err(e) => Err(Response::text(400, &format!("Invalid JSON body: {e}"))),
    }
}

/// A required number ≥ 0.
fn non_negative(m: &Map<String, Value>, key: &str, path: &str) -> Result<f64, String> {
    m.get(key)
        .and_then(Value::as_f64)
        .filter(|q| *q >= 0.0)
        .ok_or_else(|| format!("{path}{key} is required (a number of at least 0)"))
}

impl State {
    // -----------------------------------------------------------------------------------------
    // Invoices

    /// `PUT /api/Invoices/UpdateInvoice`: add or replace by `id`; files (`assets`) stay.
    pub fn put_invoice(&mut self, req: &Request) -> Response {
        let mut inv = match parse_object(&req.body) {
            Ok(b) => b,
            Err(r) => return r,
        };
        let id = match non_empty_str(&inv, "id", "") {
            Ok(id) => id,
            Err(msg) => return Response::text(400, &msg),
        };
        let order_id = match non_empty_str(&inv, "orderId", "") {
            Ok(o) => o,
            Err(msg) => return Response::text(400, &msg),
        };
        let order_known = self.orders.contains_key(&order_id)
            || self
                .orders
                .values()
                .any(|o| o.order["orderNumber"].as_str() == Some(order_id.as_str()));
        if !order_known {
            return Response::text(
                400,
                &format!("orderId '{order_id}' is not an existing order"),
            );
        }
        let stamp = fmt_ms(self.clock.tick());
        let (assets, created, files, existed) = match self.office.invoices.get_mut(&id) {
            Some(o) => (
                o.doc["assets"].clone(),
                o.doc["created"].clone(),
                std::mem::take(&mut o.files),
                true,
            ),
            None => (json!([]), json!(stamp), Vec::new(), false),
        };
        inv.insert("assets".into(), assets);
        inv.insert("created".into(), created);
        inv.insert("modified".into(), json!(stamp));
        let doc = Value::Object(inv);
        self.office.invoices.insert(
            id,
            StoredInvoice {
                doc: doc.clone(),
                files,
            },
        );
        if existed {
            self.stats.invoice_updates += 1;
        } else {
            self.stats.invoices_created += 1;
        }
        Response::json(200, &doc)
    }

    /// `GET /api/Invoices/{id}`.
    pub fn get_invoice(&self, id: &str) -> Response {
        match self.office.invoices.get(id) {
            Some(i) => Response::json(200, &i.doc),
            None => Response::text(404, "Invoice not found"),
        }
    }

    /// `POST /api/Invoices/{id}/AddFileToInvoice?fileName=`: the raw body is the file.
    pub fn add_file_to_invoice(&mut self, id: &str, req: &Request) -> Response {
        if !self.office.invoices.contains_key(id) {
            return Response::text(404, "Invoice not found");
        }
        let Some(name) = req.query("fileName").filter(|n| !n.trim().is_empty()) else {
            return Response::text(400, "fileName is required");
        };
        if req.body.is_empty() {
            return Response::text(400, "The file is empty");
        }
        let stamp = fmt_ms(self.clock.tick());
        self.office.next_asset += 1;
        let asset = json!({
            "assetId": self.office.next_asset.to_string(),
            "fileName": name,
            "contentType": "application/pdf",
            "size": req.body.len(),
            "url": format!("https://files.example.no/invoices/{id}/{name}"),
            "created": stamp,
        });
        let Some(inv) = self.office.invoices.get_mut(id) else {
            return Response::text(404, "Invoice not found");
        };
        match inv.doc["assets"].as_array_mut() {
            Some(a) => a.push(asset),
            None => inv.doc["assets"] = json!([asset]),
        }
        inv.doc["modified"] = json!(stamp);
        inv.files.push((name.to_string(), req.body.clone()));
        self.stats.invoice_files_added += 1;
        Response::json(200, &inv.doc)
    }

    // -----------------------------------------------------------------------------------------
    // Customers

    /// `PUT /api/{Private|Business}Customers/AddOrUpdateMany`.
    pub fn customers_upsert(&mut self, business: bool, req: &Request) -> Response {
        let items = match parse_array(&req.body) {
            Ok(a) => a,
            Err(r) => return r,
        };
        if items.len() > MAX_CUSTOMER_BATCH {
            return Response::text(400, "max size in batch is 100");
        }
        for (i, c) in items.iter().enumerate() {
            let Some(m) = c.as_object() else {
                return Response::text(400, &format!("[{i}] must be an object"));
            };
            let mut required = vec!["customerId"];
            if business {
                required.push("name");
            }
            for k in required {
                if let Err(msg) = non_empty_str(m, k, &format!("[{i}].")) {
                    return Response::text(400, &msg);
                }
            }
        }
        let stamp = self.clock.tick();
        let total = items.len();
        let mut updated = 0;
        for c in items {
            if self.office.upsert_customer(business, c, stamp) {
                updated += 1;
            }
        }
        self.stats.customer_batches += 1;
        self.stats.customers_upserted += updated as u64;
        Response::json(
            200,
            &json!({
                "totalCount": total,
                "updatedCount": updated,
                "unchangedCount": total - updated,
                "errorCount": 0,
            }),
        )
    }

    /// `GET /api/{Private|Business}Customers/{id}`.
    pub fn get_customer(&self, business: bool, id: &str) -> Response {
        let map = if business {
            &self.office.business
        } else {
            &self.office.private
        };
        match map.get(id) {
            Some(c) => Response::json(200, c),
            None => Response::text(404, "Customer not found"),
        }
    }

    // -----------------------------------------------------------------------------------------
    // Purchase orders and goods reception

    /// Stores (or replaces) a purchase order; stamps `modified`, keeps or sets `created`.
    ///
    /// # Panics
    /// If `po` is not an object with a non-empty string `id`.
    pub fn add_purchase_order(&mut self, po: Value) {
        let Value::Object(mut m) = po else {
            panic!("add_purchase_order: the purchase order must be a JSON object");
        };
        let id = match m.get("id") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => panic!("add_purchase_order: id (a non-empty string) is required"),
        };
        let stamp = fmt_ms(self.clock.tick());
        let old_created = self
            .office
            .purchase_orders
            .get(&id)
            .map(|p| p["created"].clone());
        if m.get("created").is_none_or(Value::is_null) {
            m.insert("created".into(), old_created.unwrap_or(json!(stamp)));
        }
        if m.get("status").is_none_or(Value::is_null) {
            m.insert("status".into(), json!("New"));
        }
        m.insert("modified".into(), json!(stamp));
        let mut po = Value::Object(m);
        for l in po_lines_mut(&mut po) {
            for k in ["deliveredQuantity", "canceledQuantity"] {
                if l.get(k).is_none_or(Value::is_null) {
                    l.insert(k.into(), json!(0));
                }
            }
        }
        self.office.purchase_orders.insert(id, po);
    }

    /// A confirmed purchase order with a delivery (not stored yet).
    pub fn new_purchase_order(&mut self, store_id: &str, n_lines: usize) -> Value {
        self.office.next_po += 1;
        let n = self.office.next_po;
        let i = n as usize;
        let id = format!("PO-{n}");
        let delivery = format!("D-{n}");
        let (supplier_id, supplier_name) = SUPPLIERS[i % SUPPLIERS.len()];
        let market = self
            .cfg
            .markets
            .first()
            .cloned()
            .unwrap_or_else(|| "NOR".into());
        let skus = self.catalog.sku_ids();
        let start = if skus.is_empty() {
            0
        } else {
            i.wrapping_mul(17) % skus.len()
        };
        let line_items: Vec<Value> = (1..=n_lines)
            .map(|k| {
                let (code, details) = if skus.is_empty() {
                    (format!("SKU-{k}"), None)
                } else {
                    let sku = skus[(start + k - 1) % skus.len()].clone();
                    let d = self.catalog.sku_details(&sku);
                    (sku, d)
                };
                let ean = details
                    .as_ref()
                    .and_then(|d| d.ean.clone())
                    .unwrap_or_else(|| generated_ean(n, k));
                let retail = details
                    .as_ref()
                    .and_then(|d| d.price)
                    .unwrap_or(199.0 + 100.0 * k as f64);
                json!({
                    "lineItemId": format!("{id}-{k}"),
                    "code": code,
                    "displayName": details.as_ref().map_or_else(|| format!("Vare {k}"), |d| d.name.clone()),
                    "ean": ean,
                    "quantity": 5 * (1 + (i + k) % 4),
                    "deliveredQuantity": 0,
                    "canceledQuantity": 0,
                    "placedPrice": (retail * 45.0).round() / 100.0,
                    "currency": "NOK",
                    "warehouseCode": store_id,
                    "deliveryId": delivery,
                })
            })
            .collect();
        json!({
            "id": id,
            "purchaseOrderNumber": id,
            "status": "Confirmed",
            "supplierId": supplier_id,
            "supplierName": supplier_name,
            "storeId": store_id,
            "marketId": market,
            "billingCurrency": "NOK",
            "requestedDeliveryDate": fmt_ms(self.clock.now_ms() + 7 * DAY_MS),
            "isDelivery": true,
            "deliveryId": delivery,
            "purchaseOrderForm": {"lineItems": line_items},
        })
    }

    /// `POST /api/PurchaseOrders/Search`.
    pub fn purchase_orders_search(&mut self, req: &Request) -> Response {
        let body = match parse_object(&req.body) {
            Ok(b) => b,
            Err(r) => return r,
        };
        let parsed = (|| -> Result<_, String> {
            let (take, page) = search_paging(&body)?;
            Ok((
                take,
                page,
                opt_time(&body, "modifiedFrom")?,
                opt_time(&body, "modifiedTo")?,
                opt_strings(&body, "selectedStores")?,
                opt_strings(&body, "selectedStatuses")?,
                opt_string(&body, "sortOrder")?,
            ))
        })();
        let (take, page, from, to, stores, statuses, sort) = match parsed {
            Ok(p) => p,
            Err(msg) => return Response::text(400, &msg),
        };
        let mut hits: Vec<&Value> = self
            .office
            .purchase_orders
            .values()
            .filter(|po| {
                let store_ok = stores.is_empty()
                    || po["storeId"]
                        .as_str()
                        .is_some_and(|s| stores.iter().any(|x| x == s))
                    || po_lines(po).any(|l| {
                        l.get("warehouseCode")
                            .and_then(Value::as_str)
                            .is_some_and(|w| stores.iter().any(|x| x == w))
                    });
                let status_ok = statuses.is_empty()
                    || po["status"]
                        .as_str()
                        .is_some_and(|s| statuses.iter().any(|x| x.eq_ignore_ascii_case(s)));
                store_ok && status_ok && in_window(modified_ms(po), from, to)
            })
            .collect();
        // `ModifiedAscending` (as the client asks); otherwise by id.
        if sort.is_some_and(|s| s.eq_ignore_ascii_case("ModifiedAscending")) {
            hits.sort_by_key(|po| (modified_ms(po), po["id"].as_str().unwrap_or_default()));
        }
        let result: Vec<&Value> = hits
            .iter()
            .skip(take.saturating_mul(page))
            .take(take)
            .copied()
            .collect();
        Response::json(200, &json!({"result": result, "totalHits": hits.len()}))
    }

    /// `POST /api/Deliveries/{deliveryId}/ProcessGoodsReception`.
    pub fn goods_reception(&mut self, delivery_id: &str, req: &Request) -> Response {
        // lineItemId → purchase order id, for the lines on this delivery.
        let on_delivery: HashMap<String, String> = self
            .office
            .purchase_orders
            .iter()
            .flat_map(|(po_id, po)| {
                po_lines(po)
                    .filter(move |l| line_delivery(po, l) == Some(delivery_id))
                    .filter_map(move |l| {
                        Some((l.get("lineItemId")?.as_str()?.to_string(), po_id.clone()))
                    })
            })
            .collect();
        if on_delivery.is_empty() {
            return Response::text(404, "Delivery not found");
        }
        let items = match parse_array(&req.body) {
            Ok(a) if !a.is_empty() => a,
            Ok(_) => return Response::text(400, "Request body must be a non-empty array"),
            Err(r) => return r,
        };
        struct Line {
            line_id: String,
            po_id: String,
            qty: f64,
            warehouse: String,
            reception: Option<String>,
        }
        let mut lines = Vec::with_capacity(items.len());
        for (i, it) in items.iter().enumerate() {
            let p = format!("[{i}].");
            let Some(m) = it.as_object() else {
                return Response::text(400, &format!("[{i}] must be an object"));
            };
            let parsed = (|| -> Result<Line, String> {
                let line_id = non_empty_str(m, "lineItemId", &p)?;
                let qty = non_negative(m, "deliveredQuantity", &p)?;
                let warehouse = non_empty_str(m, "warehouseCode", &p)?;
                if !self.catalog.is_warehouse(&warehouse) {
                    return Err(format!(
                        "{p}warehouseCode '{warehouse}' is not a known warehouse"
                    ));
                }
                let po_id = on_delivery.get(&line_id).cloned().ok_or_else(|| {
                    format!("{p}lineItemId '{line_id}' is not a line of delivery '{delivery_id}'")
                })?;
                let reception = match m.get("goodsReceptionId") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
                    Some(_) => {
                        return Err(format!("{p}goodsReceptionId must be a non-empty string"))
                    }
                };
                Ok(Line {
                    line_id,
                    po_id,
                    qty,
                    warehouse,
                    reception,
                })
            })();
            match parsed {
                Ok(l) => lines.push(l),
                Err(msg) => return Response::text(400, &msg),
            }
        }
        let mut dups: Vec<&str> = lines
            .iter()
            .filter_map(|l| l.reception.as_deref())
            .filter(|r| self.office.receptions.contains(*r))
            .collect();
        if !dups.is_empty() {
            dups.sort_unstable();
            dups.dedup();
            self.stats.duplicate_goods_receptions += 1;
            return Response::text(
                400,
                &format!("Duplicate goodsReceptionId: {}", dups.join(", ")),
            );
        }
        let stamp_ms = self.clock.tick();
        let stamp = fmt_ms(stamp_ms);
        for l in &lines {
            let Some(po) = self.office.purchase_orders.get_mut(&l.po_id) else {
                continue;
            };
            let mut code = None;
            if let Some(line) = po_lines_mut(po)
                .find(|x| x.get("lineItemId").and_then(Value::as_str) == Some(l.line_id.as_str()))
            {
                let q = num_or_zero(line, "deliveredQuantity") + l.qty;
                line.insert("deliveredQuantity".into(), qty_json(q));
                code = line.get("code").and_then(Value::as_str).map(str::to_string);
            }
            let done = po_lines(po).all(|x| {
                num_or_zero(x, "deliveredQuantity") + num_or_zero(x, "canceledQuantity")
                    >= num_or_zero(x, "quantity") - QTY_EPS
            });
            po["status"] = json!(if done { "Completed" } else { "InProgress" });
            po["modified"] = json!(stamp);
            if let Some(code) = code {
                self.catalog
                    .adjust_stock(&code, &l.warehouse, l.qty, stamp_ms);
            }
            if let Some(r) = &l.reception {
                self.office.receptions.insert(r.clone());
            }
        }
        self.stats.goods_receptions += 1;
        Response::json(200, &json!({"processed": lines.len()}))
    }

    // -----------------------------------------------------------------------------------------
    // Inventory

    /// `PUT /api/Inventory/UpdateMany`: absolute levels, unchanged items skipped.
    pub fn inventory_update_many(&mut self, req: &Request) -> Response {
        let items = match parse_array(&req.body) {
            Ok(a) => a,
            Err(r) => return r,
        };
        if items.len() > MAX_INVENTORY_BATCH {
            return Response::text(400, &format!("max size in batch is {MAX_INVENTORY_BATCH}"));
        }
        let mut parsed = Vec::with_capacity(items.len());
        for (i, it) in items.iter().enumerate() {
            let p = format!("[{i}].");
            let Some(m) = it.as_object() else {
                return Response::text(400, &format!("[{i}] must be an object"));
            };
            let one = (|| -> Result<_, String> {
                let sku = non_empty_str(m, "sku", &p)?;
                let wh = non_empty_str(m, "warehouseCode", &p)?;
                let inventory = m
                    .get("inventory")
                    .and_then(Value::as_f64)
                    .ok_or_else(|| format!("{p}inventory is required (a number)"))?;
                let reserved = match m.get("reservedInventory") {
                    None | Some(Value::Null) => None,
                    Some(v) => Some(
                        v.as_f64()
                            .ok_or_else(|| format!("{p}reservedInventory must be a number"))?,
                    ),
                };
                Ok((sku, wh, inventory, reserved))
            })();
            match one {
                Ok(x) => parsed.push(x),
                Err(msg) => return Response::text(400, &msg),
            }
        }
        let stamp = self.clock.tick();
        let mut updated = 0usize;
        for (sku, wh, inventory, reserved) in &parsed {
            if self
                .catalog
                .write_stock(sku, wh, *inventory, *reserved, stamp)
            {
                updated += 1;
            }
        }
        self.stats.inventory_update_calls += 1;
        self.stats.inventory_items_updated += updated as u64;
        Response::json(
            200,
            &json!({
                "totalCount": parsed.len(),
                "updatedCount": updated,
                "unchangedCount": parsed.len() - updated,
            }),
        )
    }
}

/// A valid EAN-13 (Norwegian prefix 70) for generated lines without a catalog product.
fn generated_ean(n: u64, k: usize) -> String {
    let body = format!("70{:05}{:05}", n % 100_000, k % 100_000);
    let mut d: Vec<u8> = body.bytes().map(|b| b - b'0').collect();
    d.push(ean_check_digit(&d));
    d.iter().map(|x| char::from(b'0' + x)).collect()
}

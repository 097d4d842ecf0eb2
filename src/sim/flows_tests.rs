//! End-to-end tests of the simulator's write-side flows: web orders and their events, order search,
//! Click & Collect status changes, line updates, invoices with files, customers, purchase orders
//! with goods reception, and inventory `UpdateMany`.

use std::collections::HashSet;

use chrono::DateTime;
use serde_json::{json, Value};

use super::tests::{agent, call, token};
use super::*;

struct Fx {
    sim: Simulator,
    a: ureq::Agent,
    tok: String,
}

impl Fx {
    fn new() -> Fx {
        let sim = Simulator::start(SimConfig::default()).expect("simulator starts");
        let a = agent();
        let tok = token(&a, &sim);
        Fx { sim, a, tok }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.sim.base_url())
    }

    fn req(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let (status, text) = call(&self.a, method, &self.url(path), Some(&self.tok), body);
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.req("POST", path, Some(body))
    }

    fn put(&self, path: &str, body: &Value) -> (u16, Value) {
        self.req("PUT", path, Some(body))
    }

    fn get(&self, path: &str) -> (u16, Value) {
        self.req("GET", path, None)
    }

    /// POST raw bytes as `application/octet-stream`.
    fn upload(&self, path: &str, bytes: &[u8]) -> (u16, Value) {
        let mut r = self
            .a
            .post(&self.url(path))
            .header("Authorization", &format!("Bearer {}", self.tok))
            .header("Content-Type", "application/octet-stream")
            .send(bytes)
            .expect("upload transport");
        let status = r.status().as_u16();
        let text = r.body_mut().read_to_string().expect("upload body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    fn search(&self, body: Value) -> Vec<String> {
        let (status, v) = self.post("/api/Orders/Search", &body);
        assert_eq!(status, 200, "{v}");
        ids(&v)
    }

    fn web_order(&self, order_type: &str, store: &str, lines: usize) -> String {
        let o = self.sim.new_web_order(order_type, store, lines);
        let id = o["id"].as_str().expect("id").to_string();
        self.sim.add_web_order(o);
        id
    }

    fn status(&self, id: &str, status: &str) -> (u16, Value) {
        self.post(
            &format!("/api/Orders/{id}/UpdateStatus"),
            &json!({ "status": status }),
        )
    }
}

fn ids(v: &Value) -> Vec<String> {
    v["result"]
        .as_array()
        .expect("result")
        .iter()
        .map(|o| o["id"].as_str().expect("id").to_string())
        .collect()
}

fn ms(stamp: &Value) -> i64 {
    DateTime::parse_from_rfc3339(stamp.as_str().expect("time"))
        .expect("rfc3339")
        .timestamp_millis()
}

/// A balanced POS order in `store`.
fn pos_order(id: &str, store: &str) -> Value {
    json!({
        "id": id, "orderNumber": id, "marketId": "NOR", "storeId": store, "billingCurrency": "NOK",
        "orderForm": {
            "lineItems": [{"lineItemId": "1", "code": "SKU-1", "quantity": 1, "placedPrice": 100.0}],
            "payments": [{"paymentMethodName": "Card", "transactionId": "t", "transactionType": "Sale",
                          "status": "Processed", "amount": 100.0}]
        }
    })
}

fn line<'a>(order: &'a Value, line_id: &str) -> &'a Value {
    order["orderForm"]["lineItems"]
        .as_array()
        .expect("lines")
        .iter()
        .find(|l| l["lineItemId"] == json!(line_id))
        .expect("line")
}

#[test]
fn web_order_is_stored_and_emits_an_added_event() {
    let f = Fx::new();
    f.sim.load_catalog(&CatalogSpec {
        products: 20,
        ..CatalogSpec::default()
    });
    let skus: HashSet<String> = f.sim.sku_ids().into_iter().collect();
    let o = f.sim.new_web_order("ClickAndCollect", "oslo-1", 3);
    assert_eq!(o["id"], "WEB-1001");
    assert_eq!(f.sim.new_web_order("Online", "oslo-1", 1)["id"], "WEB-1002");
    let cust = o["customerId"].as_str().expect("customerId");
    assert!(cust.starts_with("C-"));
    let (kind, c) = f.sim.customer(cust).expect("customer created");
    assert_eq!(kind, "private");
    assert_eq!(c["email"], o["customerEmail"]);
    let (status, got) = f.get(&format!("/api/PrivateCustomers/{cust}"));
    assert_eq!((status, &got["customerId"]), (200, &json!(cust)));
    let lines = o["orderForm"]["lineItems"].as_array().expect("lines");
    assert_eq!(lines.len(), 3);
    for l in lines {
        assert!(skus.contains(l["code"].as_str().expect("code")), "{l}");
        assert!(l["placedPrice"].as_f64().expect("price") > 0.0);
        assert!(l["displayName"].as_str().is_some_and(|n| !n.is_empty()));
    }
    assert_eq!(
        o["orderForm"]["shipments"][0]["pickUpWarehouseCode"],
        "oslo-1"
    );

    let ev = f.sim.add_web_order(o);
    let keys: HashSet<&str> = ev
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    let want: HashSet<&str> = [
        "id",
        "operationId",
        "timestamp",
        "message",
        "className",
        "subClassName",
        "objectId",
        "objectNumber",
        "category",
        "market",
        "storeId",
        "status",
        "previousStatus",
        "isError",
    ]
    .into_iter()
    .collect();
    assert_eq!(keys, want);
    assert_eq!(ev["id"].as_str().expect("event id").len(), 36);
    assert_eq!(ev["operationId"], 110106);
    assert_eq!(ev["message"], "Order added");
    assert_eq!(ev["className"], "Order");
    assert_eq!(ev["subClassName"], "ClickAndCollect");
    assert_eq!(
        (&ev["objectId"], &ev["objectNumber"]),
        (&json!("WEB-1001"), &json!("WEB-1001"))
    );
    assert_eq!(ev["category"], "Created");
    assert_eq!(
        (&ev["market"], &ev["storeId"]),
        (&json!("NOR"), &json!("oslo-1"))
    );
    assert_eq!(ev["status"], "New");
    assert_eq!(ev["previousStatus"], Value::Null);
    assert_eq!(ev["isError"], false);

    let stored = f.sim.web_order("WEB-1001").expect("stored");
    assert_eq!(stored["status"], "New");
    assert_eq!(stored["returnOrderForms"], json!([]));
    assert_eq!(stored["modified"], ev["timestamp"]);
    let deadline = ms(&stored["customerPickupDeadline"]) - ms(&stored["created"]);
    assert_eq!(deadline, 3 * 86_400_000);
    for k in [
        "canceledQuantity",
        "deliveredQuantity",
        "readyForPickupQuantity",
    ] {
        assert_eq!(line(&stored, "1")[k], 0, "{k}");
    }
    let (status, got) = f.get("/api/Orders/WEB-1001");
    assert_eq!((status, got), (200, stored));

    // An online order has no pickup deadline.
    let online = f.sim.new_web_order("Online", "bergen-1", 1);
    f.sim.add_web_order(online.clone());
    let id = online["id"].as_str().expect("id");
    assert!(f.sim.order(id).expect("stored")["customerPickupDeadline"].is_null());

    let events = f.sim.take_events();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0], ev);
    assert_eq!(events[1]["subClassName"], "Online");
    assert!(f.sim.take_events().is_empty());
}

#[test]
fn updates_and_remote_cancels_emit_events() {
    let f = Fx::new();
    let id = f.web_order("ClickAndCollect", "oslo-1", 1);
    let before = f.sim.order(&id).expect("order")["modified"].clone();
    let ev = f
        .sim
        .update_web_order(&id, |o| o["customerPhone"] = json!("+4799999999"))
        .expect("known order");
    assert_eq!(
        (&ev["operationId"], &ev["category"]),
        (&json!(310100), &json!("Updated"))
    );
    assert_eq!(ev["previousStatus"], Value::Null);
    let after = f.sim.order(&id).expect("order");
    assert_eq!(after["customerPhone"], "+4799999999");
    assert!(ms(&after["modified"]) > ms(&before));
    assert_eq!(after["modified"], ev["timestamp"]);

    let ev = f
        .sim
        .update_web_order(&id, |o| o["status"] = json!("InProgress"))
        .expect("known");
    assert_eq!(
        (&ev["status"], &ev["previousStatus"]),
        (&json!("InProgress"), &json!("New"))
    );

    let ev = f.sim.cancel_order_remotely(&id, true).expect("known");
    assert_eq!(ev["operationId"], 115100);
    assert_eq!(
        (&ev["status"], &ev["previousStatus"]),
        (&json!("OrderCanceled"), &json!("InProgress"))
    );
    let id2 = f.web_order("Online", "oslo-1", 1);
    let ev = f.sim.cancel_order_remotely(&id2, false).expect("known");
    assert_eq!(
        (&ev["operationId"], &ev["previousStatus"]),
        (&json!(310101), &json!("New"))
    );
    assert_eq!(f.sim.order(&id2).expect("order")["status"], "OrderCanceled");
    assert!(f.sim.update_web_order("NOPE", |_| {}).is_none());
    assert!(f.sim.cancel_order_remotely("NOPE", true).is_none());
    let ops: Vec<u64> = f
        .sim
        .take_events()
        .iter()
        .map(|e| e["operationId"].as_u64().expect("op"))
        .collect();
    assert_eq!(ops, [110106, 310100, 310100, 115100, 110106, 310101]);
}

#[test]
fn order_search_by_store_modified_from_type_and_status() {
    let f = Fx::new();
    assert_eq!(
        f.put("/api/Orders/PosOrders", &pos_order("P-1", "oslo-1"))
            .0,
        201
    );
    let cc_oslo = f.web_order("ClickAndCollect", "oslo-1", 1);
    let online_bergen = f.web_order("Online", "bergen-1", 1);
    // Sold by Bergen, picked up in Oslo.
    let mut o = f.sim.new_web_order("ClickAndCollect", "bergen-1", 1);
    o["orderForm"]["shipments"][0]["pickUpWarehouseCode"] = json!("oslo-1");
    let cc_pickup_oslo = o["id"].as_str().expect("id").to_string();
    f.sim.add_web_order(o);
    let (cc_oslo, online_bergen, cc_pickup_oslo) = (
        cc_oslo.as_str(),
        online_bergen.as_str(),
        cc_pickup_oslo.as_str(),
    );

    let all = f.search(json!({}));
    assert_eq!(all, ["P-1", cc_oslo, online_bergen, cc_pickup_oslo]);
    let (_, v) = f.post("/api/Orders/Search", &json!({}));
    assert_eq!((&v["totalHits"], &v["facets"]), (&json!(4), &json!([])));
    assert_eq!(v["result"][1], f.sim.order(cc_oslo).expect("order"));

    // `selectedStores` is the selling store only: Bergen's order picked up in Oslo is not
    // found by Oslo's search, only by the pickup-point list.
    assert_eq!(
        f.search(json!({"selectedStores": ["oslo-1"]})),
        ["P-1", cc_oslo]
    );
    assert_eq!(
        f.search(json!({"selectedStores": ["oslo-1"], "orderType": "ClickAndCollect"})),
        [cc_oslo]
    );
    assert_eq!(
        f.search(json!({"selectedStores": ["bergen-1"]})),
        [online_bergen, cc_pickup_oslo]
    );
    let (status, v) = f.get("/api/Orders/GetOrdersForPickUpPoint?storeId=oslo-1");
    assert_eq!(status, 200, "{v}");
    let picked: Vec<&str> = v
        .as_array()
        .expect("a bare array")
        .iter()
        .map(|o| o["id"].as_str().expect("id"))
        .collect();
    assert_eq!(picked, [cc_oslo, cc_pickup_oslo], "oldest change first");
    let m = f.sim.order(cc_oslo).expect("order")["modified"].clone();
    let since = m.as_str().expect("modified").replace(':', "%3A");
    let (_, v) = f.get(&format!(
        "/api/Orders/GetOrdersForPickUpPoint?storeId=oslo-1&changedSince={since}"
    ));
    assert_eq!(
        v.as_array().expect("array").len(),
        1,
        "changedSince is exclusive: {v}"
    );
    let (_, v) = f.get("/api/Orders/GetOrdersForPickUpPoint?storeId=bergen-1");
    assert_eq!(v, json!([]), "no pickup in Bergen");
    assert_eq!(f.search(json!({"orderType": "Pos"})), ["P-1"]);
    assert_eq!(f.search(json!({"selectedStatuses": ["New"]})).len(), 3);

    // modifiedFrom is inclusive: the exact stamp of an order finds it.
    let m = f.sim.order(online_bergen).expect("order")["modified"].clone();
    assert_eq!(
        f.search(json!({"modifiedFrom": m})),
        [online_bergen, cc_pickup_oslo]
    );
    assert_eq!(
        f.search(json!({"modifiedFrom": m, "modifiedTo": m})),
        [online_bergen]
    );
    f.sim.update_web_order(cc_oslo, |_| {});
    assert_eq!(
        f.search(json!({"modifiedFrom": m, "sortOrder": "ModifiedAscending"})),
        [online_bergen, cc_pickup_oslo, cc_oslo]
    );

    // Paging and limits.
    let (_, v) = f.post("/api/Orders/Search", &json!({"take": 2, "page": 1}));
    assert_eq!((ids(&v).len(), &v["totalHits"]), (2, &json!(4)));
    assert_eq!(f.post("/api/Orders/Search", &json!({"take": 101})).0, 400);
    assert_eq!(
        f.post("/api/Orders/Search", &json!({"take": 100, "page": 101}))
            .0,
        400
    );
    assert_eq!(
        f.post("/api/Orders/Search", &json!({"take": 100, "page": 100}))
            .0,
        200
    );
    assert_eq!(
        f.post("/api/Orders/Search", &json!({"modifiedFrom": "yesterday"}))
            .0,
        400
    );
}

#[test]
fn click_and_collect_status_changes_and_the_cancelled_refusal() {
    let f = Fx::new();
    let id = f.web_order("ClickAndCollect", "oslo-1", 2);
    // Line 2 partly cancelled before the store picks.
    f.sim.update_web_order(&id, |o| {
        o["orderForm"]["lineItems"][1]["quantity"] = json!(3);
        o["orderForm"]["lineItems"][1]["canceledQuantity"] = json!(1);
    });
    let (status, v) = f.status(&id, "ReadyForPickup");
    assert_eq!(status, 200, "{v}");
    let o = &v["order"];
    assert_eq!(o["status"], "ReadyForPickup");
    assert_eq!(o["readyForPickup"], o["modified"]);
    let q1 = line(o, "1")["quantity"].as_f64();
    assert_eq!(line(o, "1")["readyForPickupQuantity"].as_f64(), q1);
    assert_eq!(line(o, "2")["readyForPickupQuantity"], 2.0);

    let (status, v) = f.status(&id, "PickedUp");
    assert_eq!(status, 200);
    assert_eq!(v["order"]["status"], "PickedUp");
    assert_eq!(line(&v["order"], "1")["deliveredQuantity"].as_f64(), q1);
    assert_eq!(line(&v["order"], "2")["deliveredQuantity"], 2.0);

    // NotCollected is a cancel status: nothing moves afterwards.
    let nc = f.web_order("ClickAndCollect", "oslo-1", 1);
    assert_eq!(f.status(&nc, "NotCollected").0, 200);
    let before = f.sim.order(&nc).expect("order");
    for s in ["ReadyForPickup", "PickedUp", "NotCollected"] {
        let (status, body) = f.status(&nc, s);
        assert_eq!(
            (status, body),
            (400, json!(format!("Order {nc} is cancelled")))
        );
    }
    assert_eq!(f.sim.order(&nc).expect("order"), before);

    let cancelled = f.web_order("ClickAndCollect", "oslo-1", 1);
    f.sim.cancel_order_remotely(&cancelled, true);
    assert_eq!(f.status(&cancelled, "PickedUp").0, 400);
    let canc2 = f.web_order("Online", "oslo-1", 1);
    assert_eq!(f.status(&canc2, "OrderCanceled").0, 200);
    assert_eq!(f.status(&canc2, "Completed").0, 400);
    let s = f.sim.stats();
    assert_eq!(s.rejected_on_cancelled, 5);
    assert_eq!(s.cancellations, 1);

    // POS orders keep their behaviour: a cancelled one still takes a status change.
    assert_eq!(
        f.put("/api/Orders/PosOrders", &pos_order("P-1", "oslo-1"))
            .0,
        201
    );
    assert_eq!(f.status("P-1", "OrderCanceled").0, 200);
    assert_eq!(f.status("P-1", "Completed").0, 200);
    assert!(line(&f.sim.order("P-1").expect("order"), "1")["deliveredQuantity"].is_null());
}

#[test]
fn order_lines_update_partial_then_complete() {
    let f = Fx::new();
    let mut o = f.sim.new_web_order("ClickAndCollect", "oslo-1", 2);
    o["orderForm"]["lineItems"][0]["quantity"] = json!(2);
    o["orderForm"]["lineItems"][1]["quantity"] = json!(3);
    let id = o["id"].as_str().expect("id").to_string();
    f.sim.add_web_order(o);
    let path = format!("/api/Orders/{id}/OrderLinesUpdate");

    let upd = |u: Value| json!({ "lineItemUpdates": u });
    let (status, v) = f.post(
        &path,
        &upd(json!([{"lineItemId": "1", "deliveredQuantity": 1}])),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "PartiallyShipped");
    assert_eq!(line(&v, "1")["deliveredQuantity"], 1);
    assert_eq!(line(&v, "2")["deliveredQuantity"], 0);
    // Absolute, not incremental: sending the same again changes nothing.
    let (_, v2) = f.post(
        &path,
        &upd(json!([{"lineItemId": "1", "deliveredQuantity": 1}])),
    );
    assert_eq!(line(&v2, "1")["deliveredQuantity"], 1);
    assert!(ms(&v2["modified"]) > ms(&v["modified"]));

    // Refusals change nothing.
    let before = f.sim.order(&id).expect("order");
    let (status, msg) = f.post(
        &path,
        &upd(json!([{"lineItemId": "2", "deliveredQuantity": 2, "canceledQuantity": 2}])),
    );
    assert_eq!(status, 400);
    assert!(
        msg.as_str().is_some_and(|m| m.contains("line '2'")),
        "{msg}"
    );
    let (status, msg) = f.post(
        &path,
        &upd(json!([{"lineItemId": "9", "deliveredQuantity": 1}])),
    );
    assert_eq!(status, 400);
    assert!(msg.as_str().is_some_and(|m| m.contains("'9'")), "{msg}");
    let (status, msg) = f.post(
        &path,
        &upd(json!([{"lineItemId": "1", "canceledQuantity": -1}])),
    );
    assert_eq!(status, 400);
    assert!(
        msg.as_str().is_some_and(|m| m.contains("line '1'")),
        "{msg}"
    );
    // A good first update does not slip through when a later one is bad.
    let (status, _) = f.post(
        &path,
        &upd(json!([{"lineItemId": "2", "deliveredQuantity": 3}, {"lineItemId": "1", "deliveredQuantity": 5}])),
    );
    assert_eq!(status, 400);
    assert_eq!(f.post(&path, &json!({"lineItemUpdates": []})).0, 400);
    assert_eq!(f.sim.order(&id).expect("order"), before);

    let (status, v) = f.post(
        &path,
        &upd(json!([
            {"lineItemId": "1", "deliveredQuantity": 2, "readyForPickupQuantity": null},
            {"lineItemId": "2", "deliveredQuantity": 2, "canceledQuantity": 1}
        ])),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "Completed");
    assert_eq!(line(&v, "2")["canceledQuantity"], 1);
    assert_eq!(line(&v, "1")["readyForPickupQuantity"], 0);

    // An explicit status wins.
    let id2 = f.web_order("ClickAndCollect", "oslo-1", 1);
    let p2 = format!("/api/Orders/{id2}/OrderLinesUpdate");
    let (_, v) = f.post(
        &p2,
        &json!({"status": "ReadyForPickup", "lineItemUpdates": [{"lineItemId": "1", "readyForPickupQuantity": 1}]}),
    );
    assert_eq!(v["status"], "ReadyForPickup");
    assert_eq!(line(&v, "1")["readyForPickupQuantity"], 1);
    // Cancelled orders refuse line updates too.
    f.sim.cancel_order_remotely(&id2, false);
    let (status, body) = f.post(
        &p2,
        &upd(json!([{"lineItemId": "1", "deliveredQuantity": 1}])),
    );
    assert_eq!(
        (status, body),
        (400, json!(format!("Order {id2} is cancelled")))
    );
    assert_eq!(
        f.post("/api/Orders/NOPE/OrderLinesUpdate", &upd(json!([])))
            .0,
        404
    );
    let s = f.sim.stats();
    assert_eq!((s.line_updates, s.rejected_on_cancelled), (4, 1));
}

#[test]
fn invoice_upsert_file_and_get() {
    let f = Fx::new();
    assert_eq!(
        f.put("/api/Orders/PosOrders", &pos_order("P-1", "oslo-1"))
            .0,
        201
    );
    let inv = json!({
        "id": "RCPT-1", "orderId": "P-1", "invoiceNumber": "1001", "invoiceDate": "2026-11-28T12:00:00Z",
        "amount": 100.0, "amountExcludingTax": 80.0, "currency": "NOK", "storeId": "oslo-1", "marketId": "NOR"
    });
    let mut bad = inv.clone();
    bad["orderId"] = json!("NOPE");
    let (status, msg) = f.put("/api/Invoices/UpdateInvoice", &bad);
    assert_eq!(status, 400);
    assert!(msg.as_str().is_some_and(|m| m.contains("orderId")), "{msg}");
    assert_eq!(
        f.put("/api/Invoices/UpdateInvoice", &json!({"orderId": "P-1"}))
            .0,
        400
    );

    let (status, v) = f.put("/api/Invoices/UpdateInvoice", &inv);
    assert_eq!(status, 200, "{v}");
    assert_eq!((&v["assets"], &v["amount"]), (&json!([]), &json!(100.0)));

    assert_eq!(
        f.upload(
            "/api/Invoices/NOPE/AddFileToInvoice?fileName=r.pdf",
            b"%PDF"
        )
        .0,
        404
    );
    assert_eq!(
        f.upload("/api/Invoices/RCPT-1/AddFileToInvoice", b"%PDF").0,
        400
    );
    assert_eq!(
        f.upload("/api/Invoices/RCPT-1/AddFileToInvoice?fileName=r.pdf", b"")
            .0,
        400
    );
    let pdf = b"%PDF-1.4 receipt".to_vec();
    let (status, v) = f.upload(
        "/api/Invoices/RCPT-1/AddFileToInvoice?fileName=receipt.pdf",
        &pdf,
    );
    assert_eq!(status, 200, "{v}");
    let a = &v["assets"][0];
    assert_eq!(a["fileName"], "receipt.pdf");
    assert_eq!(a["contentType"], "application/pdf");
    assert_eq!(a["size"], pdf.len());
    assert_eq!(
        a["url"],
        "https://files.example.no/invoices/RCPT-1/receipt.pdf"
    );
    // The same file again is attached again, as Omnium does.
    f.upload(
        "/api/Invoices/RCPT-1/AddFileToInvoice?fileName=receipt.pdf",
        &pdf,
    );

    let mut changed = inv.clone();
    changed["amount"] = json!(120.0);
    let (status, v) = f.put("/api/Invoices/UpdateInvoice", &changed);
    assert_eq!(status, 200);
    assert_eq!(v["amount"], 120.0);
    let assets = v["assets"].as_array().expect("assets");
    assert_eq!(assets.len(), 2);
    assert_ne!(assets[0]["assetId"], assets[1]["assetId"]);

    let (status, got) = f.get("/api/Invoices/RCPT-1");
    assert_eq!((status, &got), (200, &v));
    assert_eq!(f.sim.invoice("RCPT-1"), Some(v));
    assert_eq!(f.get("/api/Invoices/NOPE").0, 404);
    let files = f.sim.invoice_files("RCPT-1");
    assert_eq!(files.len(), 2);
    assert_eq!(files[0], ("receipt.pdf".to_string(), pdf));
    assert!(f.sim.invoice_files("NOPE").is_empty());
    let s = f.sim.stats();
    assert_eq!(
        (s.invoices_created, s.invoice_updates, s.invoice_files_added),
        (1, 1, 2)
    );
}

#[test]
fn a_ten_mib_receipt_is_accepted() {
    let f = Fx::new();
    assert_eq!(
        f.put("/api/Orders/PosOrders", &pos_order("P-1", "oslo-1"))
            .0,
        201
    );
    let inv = json!({"id": "RCPT-9", "orderId": "P-1", "amount": 100.0, "currency": "NOK"});
    assert_eq!(f.put("/api/Invoices/UpdateInvoice", &inv).0, 200);
    let big: Vec<u8> = (0..10 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let (status, v) = f.upload(
        "/api/Invoices/RCPT-9/AddFileToInvoice?fileName=big.pdf",
        &big,
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["assets"][0]["size"], big.len());
    assert_eq!(f.sim.invoice_files("RCPT-9")[0].1, big);
    // The same streamed with Transfer-Encoding: chunked (no Content-Length).
    let mut reader = std::io::Cursor::new(big.clone());
    let mut r =
        f.a.post(&f.url("/api/Invoices/RCPT-9/AddFileToInvoice?fileName=big2.pdf"))
            .header("Authorization", &format!("Bearer {}", f.tok))
            .header("Content-Type", "application/octet-stream")
            .send(ureq::SendBody::from_reader(&mut reader))
            .expect("chunked upload");
    assert_eq!(r.status().as_u16(), 200);
    let v: Value = r.body_mut().read_json().expect("json");
    assert_eq!(v["assets"][1]["size"], big.len());
    assert_eq!(f.sim.invoice_files("RCPT-9")[1].1, big);
}

#[test]
fn customers_batch_limit_upsert_get_and_404() {
    let f = Fx::new();
    let too_many: Vec<Value> = (0..101)
        .map(|i| json!({"customerId": format!("X-{i}")}))
        .collect();
    let (status, msg) = f.put("/api/PrivateCustomers/AddOrUpdateMany", &json!(too_many));
    assert_eq!((status, msg), (400, json!("max size in batch is 100")));
    let (status, msg) = f.put(
        "/api/PrivateCustomers/AddOrUpdateMany",
        &json!([{"customerId": "A"}, {"firstName": "Ola"}]),
    );
    assert_eq!(status, 400);
    assert!(
        msg.as_str().is_some_and(|m| m.contains("[1].customerId")),
        "{msg}"
    );
    let (status, msg) = f.put(
        "/api/BusinessCustomers/AddOrUpdateMany",
        &json!([{"customerId": "B-1"}]),
    );
    assert_eq!(status, 400);
    assert!(
        msg.as_str().is_some_and(|m| m.contains("[0].name")),
        "{msg}"
    );
    assert!(f.sim.customer("A").is_none());

    let batch = json!([
        {"customerId": "P-1", "firstName": "Kari", "lastName": "Nordmann", "email": "kari@example.no"},
        {"customerId": "P-2", "firstName": "Ola", "lastName": "Hansen", "phone": "+4791234567"}
    ]);
    let (status, v) = f.put("/api/PrivateCustomers/AddOrUpdateMany", &batch);
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v,
        json!({"totalCount": 2, "updatedCount": 2, "unchangedCount": 0, "errorCount": 0})
    );
    let (_, first) = f.get("/api/PrivateCustomers/P-1");
    assert_eq!(first["fullName"], "Kari Nordmann");
    let (_, v) = f.put("/api/PrivateCustomers/AddOrUpdateMany", &batch);
    assert_eq!(
        (&v["updatedCount"], &v["unchangedCount"]),
        (&json!(0), &json!(2))
    );
    assert_eq!(
        f.get("/api/PrivateCustomers/P-1").1["modified"],
        first["modified"]
    );

    // Merge: only the fields sent change.
    let (_, v) = f.put(
        "/api/PrivateCustomers/AddOrUpdateMany",
        &json!([{"customerId": "P-1", "email": "kari.n@example.no"}]),
    );
    assert_eq!(v["updatedCount"], 1);
    let (status, c) = f.get("/api/PrivateCustomers/P-1");
    assert_eq!(status, 200);
    assert_eq!(
        (&c["email"], &c["firstName"]),
        (&json!("kari.n@example.no"), &json!("Kari"))
    );
    assert_eq!(c["created"], first["created"]);
    assert!(ms(&c["modified"]) > ms(&first["modified"]));

    let (status, _) = f.put(
        "/api/BusinessCustomers/AddOrUpdateMany",
        &json!([{"customerId": "B-1", "name": "Fjellsport AS", "taxId": "987654321"}]),
    );
    assert_eq!(status, 200);
    let (status, b) = f.get("/api/BusinessCustomers/B-1");
    assert_eq!((status, &b["name"]), (200, &json!("Fjellsport AS")));
    assert_eq!(f.get("/api/BusinessCustomers/P-1").0, 404);
    assert_eq!(f.get("/api/PrivateCustomers/NOPE").0, 404);
    assert_eq!(f.sim.customer("B-1").expect("b").0, "business");
    assert_eq!(f.sim.customer("P-2").expect("p").0, "private");
    f.sim
        .upsert_customer(true, json!({"customerId": "B-2", "name": "Tind AS"}));
    assert_eq!(f.get("/api/BusinessCustomers/B-2").0, 200);
    let s = f.sim.stats();
    assert_eq!((s.customer_batches, s.customers_upserted), (4, 4));
}

#[test]
fn purchase_order_search() {
    let f = Fx::new();
    let a = f.sim.new_purchase_order("oslo-1", 2);
    let b = f.sim.new_purchase_order("oslo-1", 1);
    let c = f.sim.new_purchase_order("bergen-1", 3);
    assert_eq!(
        (&a["id"], &a["deliveryId"]),
        (&json!("PO-1"), &json!("D-1"))
    );
    assert_eq!(a["isDelivery"], true);
    assert_eq!(a["status"], "Confirmed");
    let l = &c["purchaseOrderForm"]["lineItems"];
    assert_eq!(l.as_array().expect("lines").len(), 3);
    assert_eq!(
        (&l[2]["lineItemId"], &l[2]["code"]),
        (&json!("PO-3-3"), &json!("SKU-3"))
    );
    assert_eq!(
        (&l[0]["deliveredQuantity"], &l[0]["warehouseCode"]),
        (&json!(0), &json!("bergen-1"))
    );
    assert!(l[0]["ean"].as_str().is_some_and(|e| e.len() == 13));
    for po in [a, b, c] {
        f.sim.add_purchase_order(po);
    }
    let po3 = f.sim.purchase_order("PO-3").expect("stored");
    assert!(po3["modified"].is_string());
    assert_eq!(f.get("/api/PurchaseOrders/PO-3").1, po3);
    assert_eq!(f.get("/api/PurchaseOrders/NOPE").0, 404);

    let search = |body: Value| {
        let (status, v) = f.post("/api/PurchaseOrders/Search", &body);
        assert_eq!(status, 200, "{v}");
        (ids(&v), v["totalHits"].as_u64().expect("totalHits"))
    };
    assert_eq!(
        search(json!({"selectedStores": ["oslo-1"]})),
        (vec!["PO-1".into(), "PO-2".into()], 2)
    );
    assert_eq!(search(json!({"modifiedFrom": po3["modified"]})).0, ["PO-3"]);
    assert_eq!(
        search(json!({"selectedStatuses": ["Confirmed"], "take": 1, "page": 2})),
        (vec!["PO-3".into()], 3)
    );
    assert_eq!(search(json!({"selectedStatuses": ["Completed"]})).1, 0);
    assert_eq!(
        f.post("/api/PurchaseOrders/Search", &json!({"take": 101}))
            .0,
        400
    );
}

#[test]
fn goods_reception_applies_refuses_duplicates_and_accepts_over_delivery() {
    let f = Fx::new();
    let mut po = f.sim.new_purchase_order("oslo-1", 2);
    po["purchaseOrderForm"]["lineItems"][0]["quantity"] = json!(10);
    po["purchaseOrderForm"]["lineItems"][1]["quantity"] = json!(4);
    f.sim.add_purchase_order(po);
    f.sim
        .add_purchase_order(f.sim.new_purchase_order("oslo-1", 1)); // PO-2 on D-2
    f.sim.set_stock("SKU-1", "oslo-1", 3.0, 1.0);
    let gr = |body: Value| f.post("/api/Deliveries/D-1/ProcessGoodsReception", &body);

    let (status, v) = gr(json!([
        {"lineItemId": "PO-1-1", "deliveredQuantity": 6, "warehouseCode": "oslo-1", "goodsReceptionId": "GR-1"}
    ]));
    assert_eq!((status, v), (200, json!({"processed": 1})));
    let po = f.sim.purchase_order("PO-1").expect("po");
    assert_eq!(
        po["purchaseOrderForm"]["lineItems"][0]["deliveredQuantity"],
        6.0
    );
    assert_eq!(po["status"], "InProgress");
    assert_eq!(f.sim.stock("SKU-1", "oslo-1"), Some((9.0, 1.0)));

    // A replayed goodsReceptionId refuses the whole request.
    let (status, msg) = gr(json!([
        {"lineItemId": "PO-1-2", "deliveredQuantity": 4, "warehouseCode": "oslo-1", "goodsReceptionId": "GR-2"},
        {"lineItemId": "PO-1-1", "deliveredQuantity": 6, "warehouseCode": "oslo-1", "goodsReceptionId": "GR-1"}
    ]));
    assert_eq!(
        (status, msg),
        (400, json!("Duplicate goodsReceptionId: GR-1"))
    );
    assert_eq!(f.sim.purchase_order("PO-1").expect("po"), po);
    assert_eq!(f.sim.stock("SKU-1", "oslo-1"), Some((9.0, 1.0)));
    assert_eq!(f.sim.stock("SKU-2", "oslo-1"), None);

    // Lines of another delivery, unknown warehouses, bad quantities and unknown deliveries.
    let (status, msg) =
        gr(json!([{"lineItemId": "PO-2-1", "deliveredQuantity": 1, "warehouseCode": "oslo-1"}]));
    assert_eq!(status, 400);
    assert!(msg.as_str().is_some_and(|m| m.contains("PO-2-1")), "{msg}");
    let (status, msg) =
        gr(json!([{"lineItemId": "PO-1-1", "deliveredQuantity": 1, "warehouseCode": "tromso-9"}]));
    assert_eq!(status, 400);
    assert!(
        msg.as_str().is_some_and(|m| m.contains("tromso-9")),
        "{msg}"
    );
    assert_eq!(
        gr(json!([{"lineItemId": "PO-1-1", "deliveredQuantity": -1, "warehouseCode": "oslo-1"}])).0,
        400
    );
    assert_eq!(
        gr(json!([{"lineItemId": "PO-1-1", "warehouseCode": "oslo-1"}])).0,
        400
    );
    let (status, _) = f.post(
        "/api/Deliveries/D-99/ProcessGoodsReception",
        &json!([{"lineItemId": "PO-1-1", "deliveredQuantity": 1, "warehouseCode": "oslo-1"}]),
    );
    assert_eq!(status, 404);

    // Over-delivery is accepted and completes the purchase order; the warehouse may differ.
    let (status, v) = gr(json!([
        {"lineItemId": "PO-1-1", "deliveredQuantity": 7, "warehouseCode": "oslo-1", "goodsReceptionId": "GR-3"},
        {"lineItemId": "PO-1-2", "deliveredQuantity": 4, "warehouseCode": "oslo-lager", "goodsReceptionId": "GR-3"}
    ]));
    assert_eq!((status, v), (200, json!({"processed": 2})));
    let po = f.sim.purchase_order("PO-1").expect("po");
    assert_eq!(
        po["purchaseOrderForm"]["lineItems"][0]["deliveredQuantity"],
        13.0
    );
    assert_eq!(po["status"], "Completed");
    assert_eq!(f.sim.stock("SKU-1", "oslo-1"), Some((16.0, 1.0)));
    assert_eq!(f.sim.stock("SKU-2", "oslo-lager"), Some((4.0, 0.0)));
    let s = f.sim.stats();
    assert_eq!((s.goods_receptions, s.duplicate_goods_receptions), (2, 1));
}

#[test]
fn inventory_update_many_is_absolute_and_skips_unchanged() {
    let f = Fx::new();
    f.sim.set_stock("SKU-1", "oslo-1", 5.0, 2.0);
    let body = json!([
        {"sku": "SKU-1", "warehouseCode": "oslo-1", "inventory": 12},
        {"sku": "SKU-2", "warehouseCode": "oslo-1", "inventory": 3, "reservedInventory": 1}
    ]);
    let (status, v) = f.put("/api/Inventory/UpdateMany", &body);
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v,
        json!({"totalCount": 2, "updatedCount": 2, "unchangedCount": 0})
    );
    assert_eq!(f.sim.stock("SKU-1", "oslo-1"), Some((12.0, 2.0)));
    assert_eq!(f.sim.stock("SKU-2", "oslo-1"), Some((3.0, 1.0)));

    let modified = |sku: &str| {
        let (_, v) = f.post(
            "/api/Inventory/Search",
            &json!({"warehouseCodes": ["oslo-1"], "productCodes": [sku]}),
        );
        v["result"][0]["modified"].clone()
    };
    let m1 = modified("SKU-1");
    let (_, v) = f.put(
        "/api/Inventory/UpdateMany",
        &json!([
            {"sku": "SKU-1", "warehouseCode": "oslo-1", "inventory": 12, "reservedInventory": 2},
            {"sku": "SKU-2", "warehouseCode": "oslo-1", "inventory": 4}
        ]),
    );
    assert_eq!(
        v,
        json!({"totalCount": 2, "updatedCount": 1, "unchangedCount": 1})
    );
    assert_eq!(modified("SKU-1"), m1);
    assert_eq!(f.sim.stock("SKU-2", "oslo-1"), Some((4.0, 1.0)));

    let cap: Vec<Value> = (0..1000)
        .map(|i| json!({"sku": format!("S-{i}"), "warehouseCode": "oslo-lager", "inventory": 1}))
        .collect();
    assert_eq!(
        f.put("/api/Inventory/UpdateMany", &json!(cap)).1["updatedCount"],
        1000
    );
    let mut over = cap.clone();
    over.push(json!({"sku": "S-x", "warehouseCode": "oslo-lager", "inventory": 1}));
    assert_eq!(f.put("/api/Inventory/UpdateMany", &json!(over)).0, 400);
    assert_eq!(f.sim.stock("S-x", "oslo-lager"), None);
    let (status, msg) = f.put(
        "/api/Inventory/UpdateMany",
        &json!([{"sku": "S-1", "warehouseCode": "oslo-1"}]),
    );
    assert_eq!(status, 400);
    assert!(
        msg.as_str().is_some_and(|m| m.contains("[0].inventory")),
        "{msg}"
    );
    let s = f.sim.stats();
    assert_eq!(
        (s.inventory_update_calls, s.inventory_items_updated),
        (3, 1003)
    );
}

#[test]
fn new_endpoints_require_the_token() {
    let f = Fx::new();
    let routes = [
        ("POST", "/api/Orders/Search", json!({})),
        ("POST", "/api/Orders/X/OrderLinesUpdate", json!({})),
        ("PUT", "/api/Invoices/UpdateInvoice", json!({})),
        ("GET", "/api/Invoices/X", Value::Null),
        (
            "POST",
            "/api/Invoices/X/AddFileToInvoice?fileName=a.pdf",
            json!({}),
        ),
        ("PUT", "/api/PrivateCustomers/AddOrUpdateMany", json!([])),
        ("PUT", "/api/BusinessCustomers/AddOrUpdateMany", json!([])),
        ("GET", "/api/PrivateCustomers/X", Value::Null),
        ("GET", "/api/BusinessCustomers/X", Value::Null),
        ("POST", "/api/PurchaseOrders/Search", json!({})),
        ("GET", "/api/PurchaseOrders/X", Value::Null),
        (
            "POST",
            "/api/Deliveries/D-1/ProcessGoodsReception",
            json!([]),
        ),
        ("PUT", "/api/Inventory/UpdateMany", json!([])),
    ];
    for (method, path, body) in &routes {
        let b = (!body.is_null()).then_some(body);
        let (status, _) = call(&f.a, method, &f.url(path), None, b);
        assert_eq!(status, 401, "{method} {path}");
    }
    let s = f.sim.stats();
    assert_eq!(s.unauthorized, routes.len() as u64);
    assert_eq!(s.by_route["POST /api/Orders/Search"], 1);
    assert_eq!(s.by_route["PUT /api/Inventory/UpdateMany"], 1);
    assert!(!s.by_route.keys().any(|k| k.contains("no route")));
}

//! CONTRACT §9 rule 11: no redirect is followed. A 3xx (a captive portal on store Wi-Fi, a
//! misconfigured proxy) is "Omnium unreachable": never success, never a rejection, no
//! attempt used, and a write that may have got through is checked before it is sent again.
//! Every job kind is answered with a 302 to a portal page that says 200 to anything; the
//! job must wait, then land exactly once when the portal goes away.

mod common;

use common::*;
use flow_omnium::sim::{CatalogSpec, Fault, FaultKind, Simulator, PORTAL_PATH};
use flow_omnium::Client;
use serde_json::{json, Value};
use std::time::Duration;

fn portal_visits(sim: &Simulator) -> u64 {
    route(sim, PORTAL_PATH)
}

fn redirect(path: &str, count: u32) -> Fault {
    Fault::new(
        FaultKind::Redirect {
            status: 302,
            location: PORTAL_PATH.to_string(),
        },
        count,
    )
    .on_path(path)
}

/// Injects `redirects` 302s on `path`, records with `record`, and checks: while the 302s
/// last nothing lands and nothing is delivered; afterwards it lands exactly once
/// (`landed` counts it in the simulator), no job is dead, and the portal was never visited.
fn through_a_portal(
    sim: &Simulator,
    client: &Client,
    path: &str,
    record: impl FnOnce(&Client),
    landed: impl Fn(&Simulator) -> usize,
) {
    let faults_before = sim.stats().faults_injected;
    sim.inject(redirect(path, 3));
    record(client);
    assert!(
        wait_until(Duration::from_secs(20), || sim.stats().faults_injected
            > faults_before),
        "{path}: the redirect was served"
    );
    assert_eq!(landed(sim), 0, "{path}: nothing landed while redirected");
    assert!(
        status(client)["outbox"]["pending"].as_u64().unwrap_or(0) >= 1,
        "{path}: a redirect is not delivery"
    );
    client
        .flush(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{path}: flush: {e}"));
    assert_eq!(
        sim.stats().faults_injected,
        faults_before + 3,
        "{path}: all three redirects were served"
    );
    assert_eq!(landed(sim), 1, "{path}: landed exactly once afterwards");
    assert_eq!(
        status(client)["outbox"]["dead"],
        0,
        "{path}: a redirect is never a rejection: {}",
        client.dead_jobs_json().unwrap()
    );
    assert_eq!(portal_visits(sim), 0, "{path}: the redirect was followed");
}

fn quick(db: &std::path::Path, sim: &Simulator, extra: Value) -> Client {
    // One attempt allowed: had a redirect used an attempt, the job would die.
    let mut over =
        json!({"sync": {"max_attempts": 1, "retry_initial_ms": 20, "retry_max_ms": 100}});
    if let (Some(o), Value::Object(e)) = (over.as_object_mut(), extra) {
        o.extend(e);
    }
    open(db, sim, over)
}

#[test]
fn sales_returns_cancellations_and_receipts_wait_out_a_redirect() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim();
    let client = quick(&dir.path().join("pos.db"), &sim, json!({}));

    through_a_portal(
        &sim,
        &client,
        "Orders/PosOrders",
        |c| c.record_sale(&sale("S-1", 2)).unwrap(),
        |s| usize::from(s.order("S-1").is_some()),
    );
    // The redirected PUT may have got through: the next try read the order first.
    assert!(route(&sim, "GET /api/Orders/{id}") >= 1, "checked first");

    through_a_portal(
        &sim,
        &client,
        "/Return",
        |c| c.record_return(&return_of("R-1", "S-1", "1")).unwrap(),
        |s| {
            s.order("S-1").unwrap()["returnOrderForms"]
                .as_array()
                .map_or(0, Vec::len)
        },
    );

    client.record_sale(&sale("S-2", 1)).unwrap();
    client.flush(Duration::from_secs(10)).unwrap();
    through_a_portal(
        &sim,
        &client,
        "/Orders/S-2/",
        |c| {
            c.record_cancellation(
                r#"{"id": "X-1", "order_id": "S-2", "created_at": "2026-11-28T12:00:00Z", "reason": "Customer changed mind"}"#,
            )
            .unwrap()
        },
        |s| usize::from(s.order("S-2").unwrap()["status"] == "OrderCanceled"),
    );

    let pdf = b"%PDF-1.7\n% receipt\n%%EOF\n".to_vec();
    let receipt = json!({"id": "RC-1", "sale_id": "S-1", "receipt_number": "12345",
        "issued_at": "2026-11-28T10:15:00+01:00", "total": 20100, "tax_total": 4020,
        "currency": "NOK", "customer_id": null, "file_name": "receipt-12345.pdf"})
    .to_string();
    through_a_portal(
        &sim,
        &client,
        "/Invoices/",
        |c| c.record_receipt(&receipt, &pdf).unwrap(),
        |s| {
            if s.invoice("RC-1").is_none() {
                return 0;
            }
            s.invoice_files("RC-1").len()
        },
    );
}

#[test]
fn customers_stock_and_pickups_wait_out_a_redirect() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim();
    sim.load_catalog(&CatalogSpec {
        products: 5,
        ..Default::default()
    });
    let sku = sim.sku_ids()[0].clone();
    sim.set_stock(&sku, "oslo-1", 4.0, 0.0);
    let client = quick(&dir.path().join("pos.db"), &sim, json!({}));

    through_a_portal(
        &sim,
        &client,
        "PrivateCustomers/AddOrUpdateMany",
        |c| {
            c.record_customer(
                r#"{"id": "C-1", "type": "person", "first_name": "Kari", "last_name": "Nordmann"}"#,
            )
            .unwrap()
        },
        |s| usize::from(s.customer("C-1").is_some()),
    );

    // A reception without a purchase order pushes the new absolute level.
    assert!(wait_until(Duration::from_secs(10), || client
        .stock_json(&sku)
        .map(|s| s.contains("\"quantity\":4.0"))
        .unwrap_or(false)));
    let calls = sim.stats().inventory_update_calls;
    through_a_portal(
        &sim,
        &client,
        "Inventory/UpdateMany",
        |c| {
            c.record_goods_reception(
                &json!({"id": "GR-1", "received_at": "2026-11-28T08:00:00+01:00",
                        "lines": [{"sku": sku, "quantity": 6}]})
                .to_string(),
            )
            .unwrap()
        },
        |s| usize::from(s.stock(&sku, "oslo-1").unwrap().0 == 10.0),
    );
    assert_eq!(sim.stats().inventory_update_calls, calls + 1);

    // A reception against a purchase order.
    let po = place_purchase_order(&sim, "oslo-1", 1);
    let (po_id, delivery) = (po.id.clone(), po.delivery_id.clone());
    let (line_id, po_sku) = (po.lines[0].line_id.clone(), po.lines[0].sku.clone());
    let before = sim.stock(&po_sku, "oslo-1").map(|s| s.0).unwrap_or(0.0);
    client.sync_now().unwrap();
    assert!(purchase_order_listed(&client, &po_id));
    through_a_portal(
        &sim,
        &client,
        "ProcessGoodsReception",
        |c| {
            c.record_goods_reception(
                &json!({"id": "GR-2", "purchase_order_id": po_id, "delivery_id": delivery,
                    "warehouse_id": "oslo-1", "received_at": "2026-11-28T08:00:00+01:00",
                    "lines": [{"line_id": line_id, "sku": po_sku, "quantity": 2}]})
                .to_string(),
            )
            .unwrap()
        },
        |s| usize::from(s.stock(&po_sku, "oslo-1").map(|s| s.0).unwrap_or(0.0) == before + 2.0),
    );

    // A pickup of a click & collect order.
    let (id, event) = web_order(&sim, "ClickAndCollect", 1);
    client.event_notify(&event.to_string()).unwrap();
    assert!(wait_until(Duration::from_secs(10), || client
        .order_json(&id)
        .is_ok()));
    through_a_portal(
        &sim,
        &client,
        &format!("/Orders/{id}/"),
        |c| {
            c.record_pickup(
                &json!({"id": "PU-1", "order_id": id, "status": "ready_for_pickup",
                        "at": "2026-11-28T12:00:00Z"})
                .to_string(),
            )
            .unwrap()
        },
        |s| usize::from(s.order(&id).unwrap()["status"] == "ReadyForPickup"),
    );
}

#[test]
fn stock_counts_of_a_flow_master_store_wait_out_a_redirect() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim();
    let client = quick(
        &dir.path().join("pos.db"),
        &sim,
        json!({"stock_master": "flow"}),
    );
    through_a_portal(
        &sim,
        &client,
        "Inventory/UpdateMany",
        |c| {
            c.record_stock_count(
                r#"{"warehouse_id": "oslo-1", "counted_at": "2026-11-28T08:00:00Z", "items": [{"sku": "A-1", "quantity": 7}]}"#,
            )
            .unwrap()
        },
        |s| usize::from(s.stock("A-1", "oslo-1").map(|s| s.0) == Some(7.0)),
    );
}

#[test]
fn a_redirected_token_request_is_unreachable_not_refused_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim();
    sim.inject(redirect("/api/token", 2));
    let client = quick(&dir.path().join("pos.db"), &sim, json!({}));
    client.record_sale(&sale("S-T", 1)).unwrap();
    client.flush(Duration::from_secs(20)).unwrap();
    assert!(sim.order("S-T").is_some());
    let events = drain_events(&client);
    assert!(
        !events.iter().any(|e| e["type"] == "sync.auth_failed"),
        "{events:?}"
    );
    assert!(
        events.iter().any(|e| e["type"] == "sync.offline"),
        "{events:?}"
    );
    assert_eq!(portal_visits(&sim), 0);
}

//! Issue 11 item 10: a hostile or broken Omnium's pages (over the data set's response cap,
//! a field the till reads with the wrong type, nesting far deeper than any Omnium document)
//! fail that data set with a clear error in `fo_status`, during a full resync, and wipe
//! nothing; the next good page heals it.

mod common;

use common::*;
use flow_omnium::clock::ManualClock;
use flow_omnium::sim::{CatalogSpec, Fault, FaultBody, FaultKind};
use flow_omnium::Client;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// The error of `dataset` (or of one of its passes, `orders.Online`) in `fo_status`.
fn failure(client: &Client, dataset: &str) -> Option<String> {
    status(client)["failing_datasets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| {
            f["dataset"].as_str().is_some_and(|d| {
                d == dataset || d.strip_prefix(dataset).is_some_and(|r| r.starts_with('.'))
            })
        })
        .map(|f| f["last_error"].as_str().unwrap_or_default().to_string())
}

fn json_of(text: String) -> Value {
    serde_json::from_str(&text).unwrap()
}

#[test]
fn hostile_pages_fail_their_data_set_with_a_clear_status_and_wipe_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim();
    let loaded = sim.load_catalog(&CatalogSpec {
        products: 30,
        ..CatalogSpec::default()
    });
    let clock = Arc::new(ManualClock::new(chrono::Utc::now().timestamp_millis()));
    let client = Client::open_with_clock(
        &config(
            &dir.path().join("pos.db"),
            &sim.base_url(),
            json!({"sync": {"full_resync_ms": 3_600_000}}),
        ),
        clock.clone(),
    )
    .expect("client opens");
    for _ in 0..20 {
        if client.store().sku_count().unwrap() as usize == loaded.skus
            && status(&client)["pulling"] == false
        {
            break;
        }
        pull_after(&client, &sim, &clock, 300_000);
    }
    assert_eq!(client.store().sku_count().unwrap() as usize, loaded.skus);
    let skus = sim.sku_ids();
    let stocked = skus
        .iter()
        .find(|s| sim.stock(s, "oslo-1").is_some())
        .unwrap()
        .clone();
    assert!(wait_until(Duration::from_secs(5), || {
        json_of(client.stock_json(&stocked).unwrap())["warehouses"][0]["as_of"].is_string()
    }));
    let products_before: Vec<Value> = skus
        .iter()
        .map(|s| json_of(client.product_json(s).unwrap()))
        .collect();
    let stock_before = client.stock_json(&stocked).unwrap();
    let categories_before = client.categories_json().unwrap();

    let over_cap = format!(
        r#"{{"result": [{{"productId": "P-big", "name": "{}"}}], "scrollId": "s-1"}}"#,
        "x".repeat(33 * 1024 * 1024)
    );
    let wrong_type = r#"{"result": [{"productId": "P-1", "name": "Genser",
        "variants": [{"skuId": "P-1-M", "ean": 7000000000011}]}], "scrollId": "s-1"}"#;
    let deep = format!(
        r#"{{"result": [{{"productId": "P-1", "properties": {}{}}}], "scrollId": "s-1"}}"#,
        "[".repeat(50_000),
        "]".repeat(50_000)
    );
    let stock_wrong =
        r#"{"result": [{"sku": "S-1", "warehouseCode": "oslo-1", "inventory": "many"}]}"#;
    let categories_wrong = r#"[{"categoryId": "C-1", "name": {"no": "Klær"}}]"#;
    let cases: [(&str, &str, String, &str); 5] = [
        (
            "Products/Scroll",
            "products",
            over_cap,
            "products: POST /api/Products/Scroll: the answer is larger than the 32 MiB allowed",
        ),
        (
            "Products/Scroll",
            "products",
            wrong_type.to_string(),
            "products: POST /api/Products/Scroll: result[0].variants[0].ean: wrong type, expected a string",
        ),
        (
            "Products/Scroll",
            "products",
            deep,
            "products: POST /api/Products/Scroll: the answer nests deeper than 64 levels",
        ),
        (
            "Inventory/Search",
            "stock",
            stock_wrong.to_string(),
            "stock: POST /api/Inventory/Search: result[0].inventory: wrong type, expected f64",
        ),
        (
            "ProductCategories",
            "categories",
            categories_wrong.to_string(),
            "categories: GET /api/ProductCategories: [0].name: wrong type, expected a string",
        ),
    ];
    for (path, dataset, body, expected) in cases {
        // A products page over the cap is asked for again in smaller pages (down to 10
        // products): served every time, the data set fails at the smallest.
        let times = if expected.contains("larger than") {
            1_000
        } else {
            1
        };
        sim.inject(
            Fault::new(
                FaultKind::Body(FaultBody(Arc::new(body.into_bytes()))),
                times,
            )
            .on_path(path),
        );
        // A full resync is due: a failure read as an empty page would sweep everything.
        pull_after(&client, &sim, &clock, 3_600_000);
        let error = failure(&client, dataset)
            .unwrap_or_else(|| panic!("{dataset} is failing: {}", status(&client)));
        assert!(error.starts_with(expected), "{dataset}: {error}");
        assert_eq!(status(&client)["online"], true, "{path}");
        assert_eq!(
            client.store().sku_count().unwrap() as usize,
            loaded.skus,
            "{path}: nothing wiped"
        );
        for (sku, before) in skus.iter().zip(&products_before) {
            let now = json_of(client.product_json(sku).unwrap());
            assert_eq!(
                (&now["active"], &now["price"], &now["name"]),
                (&before["active"], &before["price"], &before["name"]),
                "{path}: {sku} unchanged"
            );
        }
        assert_eq!(client.stock_json(&stocked).unwrap(), stock_before, "{path}");
        assert_eq!(
            client.categories_json().unwrap(),
            categories_before,
            "{path}"
        );
        // Omnium serves good pages again: the data set is pulled whole and no longer failing
        // (stores and categories are pulled once an hour).
        sim.clear_faults();
        pull_after(&client, &sim, &clock, 3_600_000);
        assert_eq!(failure(&client, dataset), None, "{dataset} healed");
    }
}

fn listed(client: &Client, orders: bool) -> Value {
    let text = if orders {
        client.orders_json(None).unwrap()
    } else {
        client.purchase_orders_json(None).unwrap()
    };
    json_of(text)
}

/// Issue 11 item 10 (orders): order and purchase-order pages are read typed. A field the
/// till reads with another type (named, its value never quoted: it may be personal data),
/// nesting far deeper than any order, fail the data set with a clear error in `fo_status`
/// during a full resync, and no order or purchase order the till holds is wiped.
#[test]
fn hostile_order_pages_fail_their_data_set_and_wipe_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim();
    sim.load_catalog(&CatalogSpec {
        products: 5,
        ..CatalogSpec::default()
    });
    let (cc, _) = web_order(&sim, "ClickAndCollect", 2);
    let (online, _) = web_order(&sim, "Online", 1);
    let po = place_purchase_order(&sim, "oslo-1", 2);
    let clock = Arc::new(ManualClock::new(chrono::Utc::now().timestamp_millis()));
    let client = Client::open_with_clock(
        &config(
            &dir.path().join("pos.db"),
            &sim.base_url(),
            json!({"sync": {"full_resync_ms": 3_600_000}}),
        ),
        clock.clone(),
    )
    .expect("client opens");
    let holds_all = |client: &Client| {
        client.order_json(&cc).is_ok()
            && client.order_json(&online).is_ok()
            && listed(client, false)["items"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["id"] == po.id)
    };
    for _ in 0..10 {
        if holds_all(&client) && status(&client)["pulling"] == false {
            break;
        }
        pull_after(&client, &sim, &clock, 300_000);
    }
    assert!(holds_all(&client), "{}", status(&client));
    let orders_before = listed(&client, true);
    let pos_before = listed(&client, false);
    // A typed order carries what the till shows exactly as before: quantities as Omnium
    // wrote them, prices in minor units, the customer's contact.
    let order = json_of(client.order_json(&cc).unwrap());
    assert_eq!(order["lines"].as_array().unwrap().len(), 2, "{order}");
    assert!(order["lines"][0]["quantity"].is_number(), "{order}");
    assert!(order["lines"][0]["unit_price"].is_i64(), "{order}");
    assert!(order["customer"]["email"].is_string(), "{order}");

    let phone_as_number = r#"{"result": [{"id": "WEB-X", "orderType": "ClickAndCollect",
        "storeId": "oslo-1", "modified": "2026-12-01T10:00:00Z", "customerPhone": 4791234567}],
        "totalHits": 1}"#;
    let quantity_as_text = r#"{"result": [{"id": "PO-X", "storeId": "oslo-1",
        "purchaseOrderForm": {"lineItems": [{"lineItemId": "1", "code": "S", "quantity": "many"}]}}],
        "totalHits": 1}"#;
    let line_as_text =
        r#"[{"id": "WEB-Y", "storeId": "oslo-1", "orderForm": {"lineItems": ["Kari"]}}]"#;
    let deep = format!(
        r#"{{"result": [{{"id": "WEB-Z", "orderForm": {}{}}}]}}"#,
        "[".repeat(50_000),
        "]".repeat(50_000)
    );
    let over_cap = format!(
        r#"{{"result": [{{"id": "WEB-BIG", "customerName": "{}"}}], "totalHits": 1}}"#,
        "x".repeat(17 * 1024 * 1024)
    );
    let cases: [(&str, &str, String, &str); 5] = [
        (
            "/api/Orders/Search",
            "orders",
            over_cap.clone(),
            "orders: POST /api/Orders/Search: the answer is larger than the 16 MiB allowed",
        ),
        (
            "/api/Orders/Search",
            "orders",
            phone_as_number.to_string(),
            "orders: POST /api/Orders/Search: result[0].customerPhone: wrong type, expected a string",
        ),
        (
            "/api/PurchaseOrders/Search",
            "purchase_orders",
            quantity_as_text.to_string(),
            "purchase_orders: POST /api/PurchaseOrders/Search: \
             result[0].purchaseOrderForm.lineItems[0].quantity: wrong type, expected a JSON number",
        ),
        (
            "GetOrdersForPickUpPoint",
            "orders",
            line_as_text.to_string(),
            "orders: GET /api/Orders/GetOrdersForPickUpPoint: [0].orderForm.lineItems[0]: wrong type",
        ),
        (
            "/api/Orders/Search",
            "orders",
            deep,
            "orders: POST /api/Orders/Search: the answer nests deeper than 64 levels",
        ),
    ];
    for (path, dataset, body, expected) in cases {
        sim.inject(
            Fault::new(
                FaultKind::Body(FaultBody(Arc::new(body.into_bytes()))),
                1_000,
            )
            .on_path(path),
        );
        // A full resync is due: a failure read as an empty page would sweep everything.
        pull_after(&client, &sim, &clock, 3_600_000);
        let error = failure(&client, dataset)
            .unwrap_or_else(|| panic!("{dataset} is failing: {}", status(&client)));
        assert!(error.starts_with(expected), "{dataset}: {error}");
        for personal in ["4791234567", "Kari"] {
            assert!(!error.contains(personal), "{error}");
        }
        assert_eq!(status(&client)["online"], true, "{path}");
        assert_eq!(
            listed(&client, true),
            orders_before,
            "{path}: no order wiped"
        );
        assert_eq!(listed(&client, false), pos_before, "{path}: no PO wiped");
        sim.clear_faults();
        pull_after(&client, &sim, &clock, 3_600_000);
        assert_eq!(failure(&client, dataset), None, "{dataset} healed");
        assert_eq!(listed(&client, true), orders_before, "{path}: healed");
    }

    // Issue 12 leftover: an orders page over its cap is asked for again in smaller pages
    // (100, 50, then 10 a page, as products are): one answer over the cap costs one
    // request more, and the pass completes.
    let web = sim.new_web_order("ClickAndCollect", "oslo-1", 1);
    let late = sim.add_web_order(web)["objectId"]
        .as_str()
        .unwrap()
        .to_string();
    sim.inject(
        Fault::new(
            FaultKind::Body(FaultBody(Arc::new(over_cap.into_bytes()))),
            1,
        )
        .on_path("/api/Orders/Search"),
    );
    pull_after(&client, &sim, &clock, 3_600_000);
    assert_eq!(failure(&client, "orders"), None, "{}", status(&client));
    assert!(
        client.order_json(&late).is_ok(),
        "the order after the big page"
    );
    assert_eq!(listed(&client, true)["items"].as_array().unwrap().len(), 3);
}

/// Issue 12 leftover: a `null` element inside a product's lists (variants, prices,
/// categories, images) is skipped, not a failed page: the rest of the product and of the
/// page applies.
#[test]
fn nulls_inside_a_products_lists_are_skipped_and_the_page_applies() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim();
    let loaded = sim.load_catalog(&CatalogSpec {
        products: 5,
        ..CatalogSpec::default()
    });
    let clock = Arc::new(ManualClock::new(chrono::Utc::now().timestamp_millis()));
    let client = Client::open_with_clock(
        &config(
            &dir.path().join("pos.db"),
            &sim.base_url(),
            json!({"sync": {"full_resync_ms": 86_400_000}}),
        ),
        clock.clone(),
    )
    .expect("client opens");
    for _ in 0..10 {
        if client.store().sku_count().unwrap() as usize == loaded.skus
            && status(&client)["pulling"] == false
        {
            break;
        }
        pull_after(&client, &sim, &clock, 300_000);
    }
    assert_eq!(client.store().sku_count().unwrap() as usize, loaded.skus);
    let modified = chrono::Utc::now().to_rfc3339();
    let page = json!({"result": [
        {"productId": "P-NULL", "name": "Genser", "modified": modified,
         "categories": [null, {"categoryId": "C-1", "isMainCategory": true}],
         "assets": [null, {"url": "https://img.example/genser.jpg", "isMainImage": true}],
         "prices": [null],
         "variants": [null, {"skuId": "P-NULL-M", "name": "Genser M", "ean": "7000000000011",
             "prices": [null, {"unitPrice": 399.0, "currencyCode": "NOK", "marketId": "NOR"}]}]},
        {"productId": "P-PLAIN", "skuId": "P-PLAIN", "name": "Lue", "modified": modified,
         "prices": [{"unitPrice": 99.0, "currencyCode": "NOK", "marketId": "NOR"}]}
    ], "totalHits": 2});
    sim.inject(
        Fault::new(
            FaultKind::Body(FaultBody(Arc::new(page.to_string().into_bytes()))),
            1,
        )
        .on_path("/api/Products/Scroll"),
    );
    pull_after(&client, &sim, &clock, 300_000);
    assert_eq!(failure(&client, "products"), None, "{}", status(&client));
    let m = json_of(client.product_json("P-NULL-M").unwrap());
    assert_eq!(m["name"], "Genser M", "{m}");
    assert_eq!(m["price"]["unit_price"], 39_900, "{m}");
    assert_eq!(m["ean"], "7000000000011", "{m}");
    assert_eq!(m["category_ids"], json!(["C-1"]), "{m}");
    assert_eq!(
        m["image_urls"],
        json!(["https://img.example/genser.jpg"]),
        "{m}"
    );
    let plain = json_of(client.product_json("P-PLAIN").unwrap());
    assert_eq!(plain["price"]["unit_price"], 9_900, "{plain}");
    assert_eq!(
        client.store().sku_count().unwrap() as usize,
        loaded.skus + 2,
        "the rest of the catalog is kept"
    );
}

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

fn failure(client: &Client, dataset: &str) -> Option<String> {
    status(client)["failing_datasets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["dataset"] == dataset)
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

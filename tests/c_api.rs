//! The C API from C: the header compiles with -Wall -Wextra -Werror -pedantic, and the
//! C programs (tests/c/api_test.c, examples/pos.c) pass against the simulator.

mod common;

use common::*;
use std::process::Command;
use std::time::Duration;

#[test]
fn the_c_api_test_program_passes_against_the_simulator() {
    let exe = compile_c(&["tests/c/api_test.c"], "fo_api_test");
    let sim = sim();
    sim.reject_order("S-POISON", 400, "Invalid value for marketId");
    sim.load_catalog(&flow_omnium::sim::CatalogSpec {
        products: 30,
        ..Default::default()
    });
    let sku = sim.sku_ids()[0].clone();
    let event = sim.add_web_order(sim.new_web_order("ClickAndCollect", "oslo-1", 2));
    let order_id = event["objectId"].as_str().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.db");
    let out = Command::new(&exe)
        .arg(sim.base_url())
        .arg(&db)
        .arg(&sku)
        .arg(event.to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "api_test failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
    let order = sim.order("S-1001").expect("the sale reached Omnium");
    assert_eq!(
        order["orderForm"]["lineItems"][0]["placedPrice"].as_f64(),
        Some(199.5)
    );
    let forms = order["returnOrderForms"].as_array().unwrap();
    assert_eq!(forms.len(), 1);
    assert_eq!(forms[0]["rmaNumber"], "R-2001");
    assert_eq!(sim.stats().duplicate_orders_rejected, 0);
    assert_eq!(
        sim.invoice_files("RC-1").len(),
        1,
        "the receipt and its PDF arrived"
    );
    assert_eq!(sim.customer("C-77").unwrap().1["lastName"], "Nordmann");
    assert_eq!(sim.order(&order_id).unwrap()["status"], "PickedUp");
}

#[test]
fn the_pos_example_in_c_runs() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    if !root.join("examples/pos.c").exists() {
        panic!("examples/pos.c is missing");
    }
    let exe = compile_c(&["examples/pos.c"], "fo_pos_example");
    let sim = sim();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(&exe)
        .arg(sim.base_url())
        .arg(dir.path().join("pos.db"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(wait_until(Duration::from_secs(5), || sim
        .order("S-1001")
        .is_some()));
}

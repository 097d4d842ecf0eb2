//! Ids travel in Omnium's URL paths. An id made only of dots would be a path step (`..`)
//! that a server or proxy normalising paths follows to another endpoint, bearer token
//! included: such ids are refused at recording, and dots are sent as `%2E`.

mod common;

use common::*;
use flow_omnium::Error;
use serde_json::json;
use std::time::Duration;

#[test]
fn ids_made_only_of_dots_are_refused_at_recording() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim();
    let client = open(&dir.path().join("pos.db"), &sim, json!({}));
    for id in [".", "..", "..."] {
        let err = client.record_sale(&sale(id, 1)).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidInput(m) if m.contains("sale.id") && m.contains("dots")),
            "{id}: {err}"
        );
    }
    client.record_sale(&sale("S-1", 2)).unwrap();
    let err = client
        .record_cancellation(
            r#"{"id": "X-1", "order_id": "S-1", "created_at": "2026-11-28T12:00:00Z", "lines": [{"line_id": ".."}]}"#,
        )
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidInput(m) if m.contains("line_id")),
        "{err}"
    );
    let err = client
        .record_return(&return_of("..", "S-1", "1"))
        .unwrap_err();
    assert!(matches!(&err, Error::InvalidInput(_)), "{err}");
}

#[test]
fn ids_with_dots_are_sent_encoded_and_arrive_intact() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim();
    let client = open(&dir.path().join("pos.db"), &sim, json!({}));
    client.record_sale(&sale("S..1", 2)).unwrap();
    client
        .record_cancellation(
            r#"{"id": "X.1", "order_id": "S..1", "created_at": "2026-11-28T12:00:00Z", "reason": "Customer changed mind"}"#,
        )
        .unwrap();
    client.flush(Duration::from_secs(10)).unwrap();
    assert_eq!(sim.order("S..1").unwrap()["status"], "OrderCanceled");
    assert_eq!(status(&client)["outbox"]["dead"], 0);
}

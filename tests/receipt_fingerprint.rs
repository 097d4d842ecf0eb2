//! A repeated receipt id is compared by SHA-256 of its PDF (a 64-bit FNV hash could be
//! matched by a second, constructed PDF); a receipt an older version recorded with its FNV
//! fingerprint is still recognised when recorded again.

mod common;

use common::*;
use flow_omnium::model::store_events::{legacy_pdf_fingerprint, pdf_fingerprint};
use flow_omnium::Error;
use serde_json::json;

fn receipt() -> String {
    json!({"id": "RC-1", "sale_id": "S-1", "receipt_number": "12345", "issued_at": "2026-11-28T10:15:00+01:00",
           "total": 10000, "tax_total": 2000, "currency": "NOK", "customer_id": null, "file_name": "r.pdf"})
    .to_string()
}

#[test]
fn receipts_are_fingerprinted_with_sha256_and_old_fingerprints_still_match() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("pos.db");
    let sim = sim();
    let pdf = b"%PDF-1.7\n% receipt one\n%%EOF\n".to_vec();
    let other = b"%PDF-1.7\n% receipt two\n%%EOF\n".to_vec();
    {
        let client = open(&db, &sim, json!({"sync": {"autostart": false}}));
        client.record_sale(&sale("S-1", 1)).unwrap();
        client.record_receipt(&receipt(), &pdf).unwrap();
        client.record_receipt(&receipt(), &pdf).unwrap();
        assert!(matches!(
            client.record_receipt(&receipt(), &other),
            Err(Error::Conflict(_))
        ));
    }
    // The stored fingerprint is SHA-256; make it what an older version stored.
    let c = rusqlite::Connection::open(&db).unwrap();
    let content: String = c
        .query_row(
            "SELECT content FROM outbox_job WHERE kind = 'receipt'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(content.contains(&pdf_fingerprint(&pdf)), "{content}");
    assert!(pdf_fingerprint(&pdf).starts_with("sha256:"));
    c.execute(
        "UPDATE outbox_job SET content = ?1 WHERE kind = 'receipt'",
        [content.replace(&pdf_fingerprint(&pdf), &legacy_pdf_fingerprint(&pdf))],
    )
    .unwrap();
    drop(c);
    let client = open(&db, &sim, json!({"sync": {"autostart": false}}));
    client.record_receipt(&receipt(), &pdf).unwrap();
    assert!(matches!(
        client.record_receipt(&receipt(), &other),
        Err(Error::Conflict(_))
    ));
}

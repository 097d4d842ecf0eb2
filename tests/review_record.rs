//! Adversarial review of recording under group commit (issue 10 target 3): each call is
//! acknowledged only after the commit holding its own rows, whatever the other callers in
//! its batch do (refused before the writer, refused at it, repeated), and while the worker
//! takes the writer between them.

mod common;

use common::*;
use flow_omnium::Error;
use serde_json::json;
use std::sync::mpsc;
use std::time::Duration;

/// Eight threads record at once with the worker delivering: new sales, sales refused before
/// they reach the writer (not JSON, unbalanced), a repeat of an own sale (same content), a
/// conflicting one (other content), returns (not announced) and customers (the worker's kind
/// of writer use, `record_state`). The moment a call returns `FO_OK` for a new sale, a
/// connection of its own sees the sale committed; a refused call left nothing; no call waits
/// for ever (a batch left open for a caller that never comes).
#[test]
fn every_acknowledged_call_is_committed_when_it_returns_whatever_its_batch_mates_do() {
    let sim = sim();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("pos.db");
    let client = std::sync::Arc::new(open(&db, &sim, json!({})));
    let (done_tx, done_rx) = mpsc::channel();
    const THREADS: usize = 8;
    const CALLS: usize = 120;
    for t in 0..THREADS {
        let client = client.clone();
        let db = db.clone();
        let done = done_tx.clone();
        std::thread::spawn(move || {
            let reader = rusqlite::Connection::open_with_flags(
                &db,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                    | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .unwrap();
            let committed = |id: &str| -> bool {
                reader
                    .query_row(
                        "SELECT COUNT(*) FROM outbox_job WHERE kind = 'sale' AND event_id = ?1",
                        [id],
                        |r| r.get::<_, i64>(0),
                    )
                    .unwrap()
                    == 1
            };
            let mut acked = Vec::new();
            for i in 0..CALLS {
                let id = format!("R{t}-{i}");
                match i % 9 {
                    // Refused before the writer: not JSON, and a sale that does not balance.
                    1 => {
                        let r = client.record_sale("{\"id\": ");
                        assert!(matches!(r, Err(Error::InvalidJson(_))), "{r:?}");
                    }
                    2 => {
                        let mut bad: serde_json::Value =
                            serde_json::from_str(&sale(&id, 2)).unwrap();
                        bad["payments"][0]["amount"] = json!(1);
                        let r = client.record_sale(&bad.to_string());
                        assert!(matches!(r, Err(Error::InvalidInput(_))), "{r:?}");
                        assert!(!committed(&id), "a refused sale {id} was stored");
                    }
                    // A repeat of an earlier sale of this thread, and a conflicting one.
                    4 if !acked.is_empty() => {
                        let again: &String = &acked[i % acked.len()];
                        client.record_sale(&sale(again, 3)).unwrap();
                    }
                    5 if !acked.is_empty() => {
                        let again: &String = &acked[i % acked.len()];
                        let r = client.record_sale(&sale(again, 4));
                        assert!(matches!(r, Err(Error::Conflict(_))), "{r:?}");
                    }
                    // Not announced: a return of an own sale; a customer (record_state).
                    6 if !acked.is_empty() => {
                        let of: &String = &acked[i % acked.len()];
                        let _ = client.record_return(&return_of(&format!("RT-{id}"), of, "1"));
                    }
                    7 => {
                        client
                            .record_customer(
                                &json!({"id": format!("C{t}"), "type": "person",
                                        "first_name": format!("N{i}")})
                                .to_string(),
                            )
                            .unwrap();
                    }
                    _ => {
                        client.record_sale(&sale(&id, 3)).unwrap();
                        assert!(committed(&id), "sale {id} acknowledged before its commit");
                        acked.push(id);
                    }
                }
            }
            done.send(acked).unwrap();
        });
    }
    drop(done_tx);
    let mut all = Vec::new();
    for _ in 0..THREADS {
        let acked = done_rx
            .recv_timeout(Duration::from_secs(300))
            .expect("a recording thread never finished (a batch left open for nobody?)");
        all.extend(acked);
    }
    client.flush(Duration::from_secs(120)).unwrap();
    assert_each_once(&sim, &all);
}

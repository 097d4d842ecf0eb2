//! A proxy is taken only from the config (`omnium.proxy`), never from the environment, and
//! the client secret never crosses a proxy in clear text.

mod common;

use common::*;
use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A fake proxy on loopback: records what each connection sends first, answers 502.
fn fake_proxy() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { break };
            let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
            // Up to the end of the request head (a read may return part of it).
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            log.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&head).into_owned());
            let _ = conn.write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n");
        }
    });
    (url, seen)
}

#[test]
fn proxies_in_the_environment_are_ignored() {
    let (proxy, seen) = fake_proxy();
    for var in [
        "ALL_PROXY",
        "all_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
    ] {
        std::env::set_var(var, &proxy);
    }
    std::env::remove_var("NO_PROXY");
    std::env::remove_var("no_proxy");
    let dir = tempfile::tempdir().unwrap();
    let sim = sim();
    let client = open(&dir.path().join("pos.db"), &sim, json!({}));
    client.record_sale(&sale("S-1", 1)).unwrap();
    client.flush(Duration::from_secs(10)).unwrap();
    assert!(sim.order("S-1").is_some());
    assert!(
        seen.lock().unwrap().is_empty(),
        "the environment's proxy saw: {:?}",
        seen.lock().unwrap()
    );
}

#[test]
fn the_configured_proxy_is_used_and_sees_only_a_tunnel() {
    let (proxy, seen) = fake_proxy();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        &dir.path().join("pos.db"),
        "https://omnium.invalid",
        json!({"omnium": {"proxy": proxy, "client_secret": "the-client-secret-42"}}),
    );
    let client = flow_omnium::Client::open(&cfg).unwrap();
    assert!(wait_until(Duration::from_secs(10), || !seen
        .lock()
        .unwrap()
        .is_empty()));
    drop(client);
    for first in seen.lock().unwrap().iter() {
        assert!(
            first.starts_with("CONNECT omnium.invalid:443 "),
            "a tunnel, not a request in clear: {first:?}"
        );
        assert!(!first.contains("the-client-secret-42"), "{first}");
    }
    // Through a proxy the base URL must be https.
    let err = flow_omnium::Client::open(&config(
        &dir.path().join("other.db"),
        "http://127.0.0.1:9",
        json!({"omnium": {"proxy": proxy}}),
    ))
    .err()
    .expect("refused");
    assert!(err.to_string().contains("config.omnium.proxy"), "{err}");
}

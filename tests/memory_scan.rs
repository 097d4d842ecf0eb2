//! After `fo_client_close` the client secret, every token and the name of a customer
//! forgotten with `fo_forget_customer` are gone from the process's memory, not only from
//! logs: tests/c/memscan.c scans its own writable memory through /proc/self/mem, first while
//! the client is open and holds them (the scan must find each: it works), then after close
//! (it must find none; SQLite's freed memory included, src/store/sqlite_heap.rs). The
//! database and WAL are scanned for the name by tests/storage_files.rs.

mod common;

use common::*;
use flow_omnium::sim::{SimConfig, Simulator};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn neither_the_secret_nor_a_token_nor_a_forgotten_name_survives_fo_client_close_in_memory() {
    if !std::path::Path::new("/proc/self/mem").exists() {
        panic!("this test needs /proc/self/mem (Linux)");
    }
    let exe = compile_c(&["tests/c/memscan.c"], "fo_memscan");
    // A secret no other test uses, so a hit can only be this client's copy.
    let secret = format!(
        "memscan-{:016x}-secret",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            ^ std::process::id() as u64
    );
    let sim = Simulator::start(SimConfig {
        client_secret: secret.clone(),
        ..SimConfig::default()
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(&exe)
        .arg(sim.base_url())
        .arg(dir.path().join("pos.db"))
        .arg(hex(secret.as_bytes()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut transcript = String::new();
    loop {
        let mut line = String::new();
        if out.read_line(&mut line).unwrap() == 0 {
            break;
        }
        transcript.push_str(&line);
        if line.trim() == "flushed" {
            let tokens: Vec<String> = sim
                .issued_tokens()
                .iter()
                .map(|t| hex(t.as_bytes()))
                .collect();
            assert!(!tokens.is_empty(), "the client got a token");
            let mut stdin = child.stdin.take().unwrap();
            writeln!(stdin, "{}", tokens.join(" ")).unwrap();
        }
    }
    let status = child.wait().unwrap();
    assert!(sim.order("S-MEM-1").is_some(), "{transcript}");
    assert!(
        status.success() && transcript.contains(" passed, 0 failed"),
        "memscan failed:\n{transcript}"
    );
}

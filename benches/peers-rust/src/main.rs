//! A Rust durable queue fed the same JSON as `fo_record_sale`, for `benches/record.rs`.
//!
//! Usage: `flow-omnium-peers <dir> <payload file (one JSON per line)> <warmup> <blocks> <block>`
//! (the arguments of `benches/peers.py`). For queue-file at its default (every `add` written
//! and `sync_data`-ed before it returns) and with sync writes off (the OS's page cache only):
//! one `add` per payload, timed one by one, the two queues' blocks alternating. Prints one JSON
//! object per line: peer, full (true for the durable one), durability, median_us, p99_us, calls.

use queue_file::QueueFile;
use std::time::Instant;

fn summary(mut samples: Vec<u64>) -> (f64, f64) {
    samples.sort_unstable();
    let n = samples.len();
    let at = |q: f64| {
        let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
        samples[rank - 1] as f64 / 1000.0
    };
    (at(0.5), at(0.99))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 6 {
        eprintln!(
            "usage: {} <dir> <payload file> <warmup> <blocks> <block>",
            args[0]
        );
        std::process::exit(2);
    }
    let dir = std::path::Path::new(&args[1]);
    let payloads: Vec<String> = std::fs::read_to_string(&args[2])
        .unwrap_or_else(|e| panic!("reading {}: {e}", args[2]))
        .lines()
        .map(str::to_owned)
        .collect();
    assert!(!payloads.is_empty(), "no payloads in {}", args[2]);
    let num = |i: usize| -> usize {
        args[i]
            .parse()
            .unwrap_or_else(|e| panic!("{}: {e}", args[i]))
    };
    let (warmup, blocks, block) = (num(3), num(4), num(5));

    // (name, durable, queue, samples)
    let mut queues: Vec<(&str, bool, QueueFile, Vec<u64>)> = Vec::new();
    for durable in [true, false] {
        let path = dir.join(if durable {
            "queue-file-sync.qf"
        } else {
            "queue-file-nosync.qf"
        });
        let mut q = QueueFile::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        q.set_sync_writes(durable);
        assert_eq!(q.sync_writes(), durable);
        queues.push(("queue-file QueueFile", durable, q, Vec::new()));
    }
    for (_, _, q, _) in &mut queues {
        for item in payloads.iter().take(warmup) {
            q.add(item.as_bytes()).expect("add");
        }
    }
    let mut at = warmup;
    for b in 0..blocks {
        let chunk: Vec<&String> = (0..block)
            .map(|i| &payloads[(at + i) % payloads.len()])
            .collect();
        at += block;
        let order: Vec<usize> = if b % 2 == 0 { vec![0, 1] } else { vec![1, 0] };
        for i in order {
            let (_, _, q, samples) = &mut queues[i];
            for item in &chunk {
                let start = Instant::now();
                q.add(item.as_bytes()).expect("add");
                samples.push(start.elapsed().as_nanos() as u64);
            }
        }
    }
    for (name, durable, q, samples) in queues {
        let calls = samples.len();
        let (median, p99) = summary(samples);
        // Every put is still there: the queue held what it was given.
        assert_eq!(q.size(), warmup + blocks * block);
        println!(
            "{}",
            serde_json::json!({
                "peer": name,
                "full": durable,
                "durability": if durable { "sync_data per add" } else { "no fsync" },
                "median_us": median,
                "p99_us": p99,
                "calls": calls,
            })
        );
    }
}

"""Peers of fo_record_sale for benches/record.rs: durable queues on SQLite, fed the same JSON.

Usage: peers.py <dir> <payload file (one JSON per line)> <warmup> <blocks> <block>

For each peer at its default durability and with synchronous=FULL: one put per payload, each
its own committed transaction (both peers commit every put), timed one by one; the peers'
blocks alternate so that disk noise hits them alike. Also a Python floor: sqlite3 INSERT of
the same JSON in its own BEGIN IMMEDIATE ... COMMIT, WAL + FULL. Prints one JSON object per
line: peer, synchronous (as read back), median_us, p99_us, calls.
"""

import json
import os
import sqlite3
import sys
import time


def summary(samples):
    samples = sorted(samples)
    n = len(samples)

    def at(q):
        rank = min(max(int(-(-q * n // 1)), 1), n)
        return samples[rank - 1] / 1000.0

    return at(0.5), at(0.99)


class PythonFloor:
    name = "python sqlite3 INSERT (WAL, FULL)"

    def __init__(self, path, _full):
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA synchronous = FULL")
        self.conn.execute("CREATE TABLE q (id INTEGER PRIMARY KEY AUTOINCREMENT, data TEXT NOT NULL)")

    def synchronous(self):
        return self.conn.execute("PRAGMA synchronous").fetchone()[0]

    def put(self, item):
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.execute("INSERT INTO q (data) VALUES (?)", (item,))
        self.conn.execute("COMMIT")


class PersistQueue:
    name = "persist-queue SQLiteAckQueue"

    def __init__(self, path, full):
        import persistqueue

        self.q = persistqueue.SQLiteAckQueue(path=path, auto_commit=True, multithreading=False)
        if full:
            self.q._putter.execute("PRAGMA synchronous = FULL")

    def synchronous(self):
        return self.q._putter.execute("PRAGMA synchronous").fetchone()[0]

    def put(self, item):
        self.q.put(item)


class LiteQueue:
    name = "litequeue LiteQueue"

    def __init__(self, path, full):
        import litequeue

        self.q = litequeue.LiteQueue(path)
        if full:
            self.q.conn.execute("PRAGMA synchronous = FULL")

    def synchronous(self):
        return self.q.conn.execute("PRAGMA synchronous").fetchone()[0]

    def put(self, item):
        self.q.put(item)


def main():
    out_dir, payload_file = sys.argv[1], sys.argv[2]
    warmup, blocks, block = (int(a) for a in sys.argv[3:6])
    payloads = open(payload_file, encoding="utf-8").read().splitlines()
    peers = []
    for cls in (PythonFloor, PersistQueue, LiteQueue):
        for full in (False, True):
            if cls is PythonFloor and not full:
                continue
            label = f"{cls.__name__}-{'full' if full else 'default'}"
            try:
                peer = cls(os.path.join(out_dir, label), full)
            except Exception as e:  # noqa: BLE001 - a peer that cannot run is reported
                print(json.dumps({"peer": cls.name, "full": full, "error": repr(e)}), flush=True)
                continue
            peers.append((peer, full, []))
    for peer, _, _ in peers:
        for item in payloads[:warmup]:
            peer.put(item)
    at = warmup
    for b in range(blocks):
        chunk = [payloads[(at + i) % len(payloads)] for i in range(block)]
        at += block
        order = peers if b % 2 == 0 else list(reversed(peers))
        for peer, _, samples in order:
            for item in chunk:
                start = time.perf_counter_ns()
                peer.put(item)
                samples.append(time.perf_counter_ns() - start)
    for peer, full, samples in peers:
        median, p99 = summary(samples)
        print(
            json.dumps(
                {
                    "peer": peer.name,
                    "full": full,
                    "synchronous": peer.synchronous(),
                    "median_us": median,
                    "p99_us": p99,
                    "calls": len(samples),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()

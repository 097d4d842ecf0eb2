"""Fixtures: the library built by `cargo build --features sim`, and an omnium-sim process on a
free loopback port with its control endpoints (/__sim/...)."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import urllib.request
from typing import Any, Dict, Iterator, Optional

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]
TARGET = pathlib.Path(os.environ.get("FO_TARGET_DIR", ROOT / "target" / "debug"))
os.environ.setdefault("FLOW_OMNIUM_LIB", str(TARGET / "libflow_omnium.so"))
sys.path.insert(0, str(ROOT / "bindings" / "python"))


class Sim:
    def __init__(self, *args: str) -> None:
        exe = os.environ.get("FO_SIM_BIN", str(TARGET / "omnium-sim"))
        self.proc = subprocess.Popen(
            [exe, "--port", "0", *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        prefix = "omnium-sim listening on "
        assert line.startswith(prefix), f"omnium-sim said {line!r}"
        self.base_url = line[len(prefix):]

    def _request(self, method: str, path: str, body: Optional[Dict[str, Any]] = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base_url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            raise

    def fault(self, **fault: Any) -> None:
        """Queues a fault, e.g. fault(kind="status", status=400, path_contains="PosOrders")."""
        self._request("POST", "/__sim/faults", fault)

    def down(self, ms: int) -> None:
        """Refuses connections for `ms` milliseconds, then listens again."""
        self._request("POST", "/__sim/down", {"ms": ms})

    def order(self, order_id: str) -> Optional[Dict[str, Any]]:
        return self._request("GET", f"/__sim/orders/{order_id}")

    def stats(self) -> Dict[str, Any]:
        result: Dict[str, Any] = self._request("GET", "/__sim/stats")
        return result

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture(scope="session")
def sim() -> Iterator[Sim]:
    s = Sim()
    yield s
    s.stop()


@pytest.fixture(scope="session")
def catalog_sim() -> Iterator[Sim]:
    """A second simulator serving a generated catalog (products with variants, prices,
    categories, brands, stock), so the catalog reads are tested on real data."""
    s = Sim("--catalog", "30", "--seed", "7")
    yield s
    s.stop()


@pytest.fixture
def config(sim: Sim, tmp_path: pathlib.Path) -> Dict[str, Any]:
    db_dir = tmp_path / "db"
    db_dir.mkdir(mode=0o700)
    return {
        "database_path": str(db_dir / "pos.db"),
        "store_id": "oslo-1",
        "market_id": "NOR",
        "currency": "NOK",
        "terminal_id": "t01",
        "omnium": {
            "base_url": sim.base_url,
            "client_id": "sim-client",
            "client_secret": "sim-secret",
            "timeout_ms": 2000,
        },
        "sync": {"retry_initial_ms": 50, "retry_max_ms": 400, "pull_interval_ms": 60000},
    }

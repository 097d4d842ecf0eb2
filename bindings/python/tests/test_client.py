"""The Python binding against omnium-sim: every call, the error classes with their messages,
events, status, dead jobs and retry, and closing while another thread waits."""

from __future__ import annotations

import copy
import json
import threading
import time
from typing import Any, Dict, List

import pytest

import flow_omnium as fo

PDF = b"%PDF-1.4\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF\n"


def sale(sale_id: str, sku: str = "SKU-1", quantity: int = 2) -> Dict[str, Any]:
    return {
        "id": sale_id,
        "created_at": "2026-11-28T10:15:00+01:00",
        "customer_id": "C-77",
        "lines": [
            {"line_id": "1", "sku": sku, "name": "T-shirt", "quantity": quantity,
             "unit_price": 19950, "tax_rate": 25},
            {"line_id": "2", "sku": "SKU-2", "name": "Socks", "quantity": 1,
             "unit_price": 5000, "tax_rate": 25},
        ],
        "payments": [{"id": "P1", "method": "Card", "amount": 19950 * quantity + 5000,
                      "transaction_id": f"tx-{sale_id}"}],
    }


def wait_for(predicate: Any, seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_version_and_result_names() -> None:
    assert fo.version().count(".") == 2
    assert fo.result_name(0) == "FO_OK"
    assert fo.result_name(4) == "FO_CONFLICT"
    assert fo.result_name(12345) == "FO_UNKNOWN"
    # One class per code, each knowing its code and the library's name for it.
    for cls in fo.FlowOmniumError.__subclasses__():
        assert fo.result_name(cls.code).startswith("FO_") and cls.code != 0
        assert cls("message").code_name == fo.result_name(cls.code)
    codes = {cls.code for cls in fo.FlowOmniumError.__subclasses__()}
    assert codes == {c for c in range(1, 100) if fo.result_name(c) != "FO_UNKNOWN"}
    assert issubclass(fo.TimedOutError, TimeoutError)


def test_open_refuses_a_bad_config_with_the_key_named(config: Dict[str, Any]) -> None:
    bad = copy.deepcopy(config)
    del bad["database_path"]
    with pytest.raises(fo.ConfigError) as e:
        fo.Client(bad)
    assert e.value.code == 10 and "database_path" in e.value.message
    bad = copy.deepcopy(config)
    bad["omnium"]["base_url"] = "http://api.omnium.no"
    with pytest.raises(fo.ConfigError) as e:
        fo.Client(bad)
    assert "https" in e.value.message and "sim-secret" not in str(e.value)
    with pytest.raises(TypeError):
        fo.Client(42)  # type: ignore[arg-type]


def test_the_same_database_cannot_be_opened_twice(config: Dict[str, Any]) -> None:
    with fo.Client(config):
        with pytest.raises(fo.StorageError) as e:
            fo.Client(config)
        assert "in use" in e.value.message
    with fo.Client(json.dumps(config)) as again:  # released by close; a str config works too
        assert again.status()["outbox"]["pending"] == 0


def test_every_record_call_and_its_errors(sim: Any, config: Dict[str, Any]) -> None:
    with fo.Client(config) as client:
        client.record_sale(sale("PY-S1"))
        client.record_sale(sale("PY-S1"))  # the same content again: stored once
        client.record_sale(json.dumps(sale("PY-S1"), indent=2))
        changed = sale("PY-S1")
        changed["payments"][0]["transaction_id"] = "tx-other"
        with pytest.raises(fo.ConflictError) as conflict:
            client.record_sale(changed)
        assert "PY-S1" in conflict.value.message and conflict.value.code_name == "FO_CONFLICT"
        unbalanced = sale("PY-S2")
        unbalanced["payments"][0]["amount"] = 1
        with pytest.raises(fo.InvalidInputError) as invalid:
            client.record_sale(unbalanced)
        assert "sale.payments" in invalid.value.message
        with pytest.raises(fo.InvalidJsonError):
            client.record_sale("[1, 2]")
        with pytest.raises(ValueError):
            client.record_sale("{\0}")

        client.record_return({
            "id": "PY-R1", "sale_id": "PY-S1", "created_at": "2026-11-28T11:00:00+01:00",
            "lines": [{"line_id": "1", "quantity": 1, "amount": 19950, "restock": True}],
            "refunds": [{"id": "P2", "method": "Card", "amount": 19950}],
        })
        with pytest.raises(fo.InvalidInputError) as too_many:
            client.record_return({
                "id": "PY-R2", "sale_id": "PY-S1", "created_at": "2026-11-28T11:00:00+01:00",
                "lines": [{"line_id": "1", "quantity": 5, "amount": 99750}],
            })
        assert "return.lines[0].quantity" in too_many.value.message

        client.record_sale(sale("PY-S3"))
        client.record_cancellation({"id": "PY-X1", "order_id": "PY-S3",
                                    "created_at": "2026-11-28T10:20:00+01:00"})
        with pytest.raises(fo.InvalidInputError):
            client.record_cancellation({"id": "PY-X2"})

        receipt = {"id": "PY-RC1", "sale_id": "PY-S1", "receipt_number": "9001",
                   "issued_at": "2026-11-28T10:15:00+01:00", "total": 44900,
                   "tax_total": 8980, "currency": "NOK"}
        client.record_receipt(receipt, PDF)
        with pytest.raises(fo.InvalidInputError) as not_pdf:
            client.record_receipt(receipt, b"<html>")
        assert "%PDF-" in not_pdf.value.message

        client.record_customer({"id": "C-77", "type": "person", "first_name": "Kari",
                                "last_name": "Nordmann", "email": "kari@example.no"})
        with pytest.raises(fo.InvalidInputError) as company:
            client.record_customer({"id": "C-78", "type": "company"})
        assert "company_name" in company.value.message

        client.record_goods_reception({"id": "PY-GR1", "received_at": "2026-11-28T08:00:00+01:00",
                                       "lines": [{"sku": "SKU-1", "quantity": 5}]})
        with pytest.raises(fo.InvalidInputError) as count:
            client.record_stock_count({"warehouse_id": "oslo-1",
                                       "counted_at": "2026-11-28T08:00:00Z",
                                       "items": [{"sku": "SKU-1", "quantity": 12}]})
        assert "stock master" in count.value.message

        client.record_pickup({"id": "PY-PU1", "order_id": "PY-S1", "status": "ready_for_pickup",
                              "at": "2026-11-28T12:00:00Z"})
        with pytest.raises(fo.InvalidInputError):
            client.record_pickup({"id": "PY-PU2", "order_id": "X", "status": "gone",
                                  "at": "2026-11-28T12:00:00Z"})

        client.event_notify({"className": "Product", "objectId": "p-1", "storeId": "oslo-1"})
        with pytest.raises(fo.InvalidInputError):
            client.event_notify({"className": "Order"})

        client.sync_now()
        client.flush(30.0)
        status = client.status()
        assert status["outbox"]["pending"] == 0, status
        assert status["outbox"]["dead"] == 0, client.dead_jobs()
        assert status["online"] is True
        landed = sim.order("PY-S1")
        assert landed is not None
        assert [f["rmaNumber"] for f in landed["returnOrderForms"]] == ["PY-R1"]
        assert sim.order("PY-S3")["status"] == "OrderCanceled"


def test_a_stock_count_at_a_flow_master_store(sim: Any, config: Dict[str, Any]) -> None:
    config["stock_master"] = "flow"
    with fo.Client(config) as client:
        client.record_stock_count({"warehouse_id": "oslo-1", "counted_at": "2026-11-28T08:00:00Z",
                                   "items": [{"sku": "PY-COUNTED", "quantity": 12}]})
        client.flush(30.0)
        assert client.status()["outbox"]["dead"] == 0, client.dead_jobs()


def test_every_read(sim: Any, config: Dict[str, Any]) -> None:
    with fo.Client(config) as client:
        client.record_sale(sale("PY-READ-1", sku="PY-SKU-R", quantity=3))
        client.record_customer({"id": "C-READ", "type": "company", "company_name": "Acme AS"})
        # The simulator started by the bindings has stores but no catalog or web orders.
        assert wait_for(lambda: _store(client) is not None)
        store = _store(client)
        assert "opening_hours" in store and "warehouses" in store
        with pytest.raises(fo.NotFoundError) as missing:
            client.store("atlantis")
        assert missing.value.code == 5
        stock = client.stock("PY-SKU-R")
        assert stock["sku"] == "PY-SKU-R"
        # Pending until Omnium counts the sale, then in Omnium's level: -3 available either way.
        assert sum(w["available"] for w in stock["warehouses"]) == -3, stock
        assert client.customer("C-READ")["company_name"] == "Acme AS"
        with pytest.raises(fo.NotFoundError):
            client.customer("C-NOBODY")
        with pytest.raises(fo.NotFoundError):
            client.product("NO-SUCH-SKU")
        assert client.search_products({"text": "zz", "limit": 5}) == {"items": [], "total": 0}
        with pytest.raises(fo.InvalidInputError):
            client.search_products({"limit": 0})
        assert client.categories() == []
        assert client.brands() == []
        assert client.orders() == [] and client.orders({"status": "New"}) == []
        with pytest.raises(fo.InvalidInputError):
            client.orders({"colour": "red"})
        with pytest.raises(fo.NotFoundError):
            client.order("NO-SUCH-ORDER")
        assert client.purchase_orders() == [] and client.purchase_orders({"status": "New"}) == []

        client.forget_customer("C-READ")
        with pytest.raises(fo.NotFoundError):
            client.customer("C-READ")
        with pytest.raises(fo.NotFoundError):
            client.forget_customer("C-NEVER-HERE")


def test_catalog_reads_on_a_real_catalog(catalog_sim: Any, config: Dict[str, Any]) -> None:
    config["omnium"]["base_url"] = catalog_sim.base_url
    with fo.Client(config) as client:
        # The first pull brings the generated catalog: products, categories, brands.
        assert wait_for(lambda: client.search_products({"limit": 1})["total"] > 0
                        and client.categories() != [])
        assert wait_for(lambda: client.status()["pulling"] is False)
        listed = client.search_products({"limit": 100})
        assert listed["total"] >= 30 and len(listed["items"]) == min(100, listed["total"])
        first = listed["items"][0]
        product = client.product(first["sku"])
        assert product["sku"] == first["sku"] and product["name"] and product["active"] is True
        assert product["price"]["currency"] == "NOK" and product["price"]["unit_price"] > 0
        # A category listing holds the product, and only products of that category.
        category = product["category_ids"][0]
        assert category in {c["id"] for c in client.categories()}
        in_category = client.search_products({"category_id": category, "limit": 100})
        assert product["sku"] in {p["sku"] for p in in_category["items"]}
        assert all(category in p["category_ids"] for p in in_category["items"])
        assert in_category["total"] == len(in_category["items"])
        # A search hit: a word of its name, its SKU (first), its EAN (first).
        word = next(w for w in product["name"].split() if len(w.strip(",")) >= 3).strip(",")
        assert product["sku"] in {p["sku"] for p in
                                  client.search_products({"text": word, "limit": 100})["items"]}
        assert client.search_products({"text": product["sku"]})["items"][0]["sku"] == product["sku"]
        if product["ean"]:
            by_ean = client.search_products({"text": product["ean"]})
            assert by_ean["items"][0]["sku"] == product["sku"]
        assert product["brand"] in client.brands()
        of_brand = client.search_products({"brand": product["brand"], "limit": 100})
        assert all(p["brand"] == product["brand"] for p in of_brand["items"])
        assert product["sku"] in {p["sku"] for p in of_brand["items"]}


def _store(client: fo.Client) -> Any:
    try:
        return client.store("oslo-1")
    except fo.NotFoundError:
        return None


def test_a_dead_job_is_reported_and_retried(sim: Any, config: Dict[str, Any]) -> None:
    sim.fault(kind="status", status=400, path_contains="PosOrders", count=1)
    with fo.Client(config) as client:
        client.record_sale(sale("PY-DEAD"))
        client.flush(30.0)  # a dead job does not count as pending
        assert client.status()["outbox"]["dead"] == 1
        dead = client.dead_jobs()
        assert [(j["kind"], j["entity_id"]) for j in dead] == [("sale", "PY-DEAD")]
        assert dead[0]["last_error"]
        types = [e["type"] for e in client.events(idle_timeout=2.0)]
        assert "job.dead" in types and "sync.online" in types, types

        with pytest.raises(fo.NotFoundError):
            client.retry_job("424242")
        client.retry_job(dead[0]["id"])
        client.flush(30.0)
        assert client.status()["outbox"]["dead"] == 0
        assert client.dead_jobs() == []
        assert sim.order("PY-DEAD") is not None
        client.retry_job()  # every dead job: none left, still fine


def test_next_event_times_out_with_none(config: Dict[str, Any]) -> None:
    with fo.Client(config) as client:
        while client.next_event(0.5) is not None:
            pass
        start = time.monotonic()
        assert client.next_event(0.3) is None
        assert time.monotonic() - start >= 0.25
        assert client.next_event(0) is None
        with pytest.raises(ValueError):
            client.next_event(float("nan"))


def test_flush_times_out_while_omnium_is_down(sim: Any, config: Dict[str, Any]) -> None:
    with fo.Client(config) as client:
        sim.down(2000)
        client.record_sale(sale("PY-SLOW"))
        start = time.monotonic()
        with pytest.raises(fo.TimedOutError) as e:
            client.flush(0.5)
        assert time.monotonic() - start >= 0.45
        assert "pending" in e.value.message and isinstance(e.value, TimeoutError)
        client.flush(30.0)  # Omnium is back
        assert sim.order("PY-SLOW") is not None


def test_closing_while_other_threads_wait(config: Dict[str, Any]) -> None:
    # Omnium unreachable (nothing answers on port 1): the sale stays pending and flush
    # waits, however slow this machine is.
    config["omnium"]["base_url"] = "http://127.0.0.1:1"
    client = fo.Client(config)
    while client.next_event(0.2) is not None:
        pass
    outcomes: Dict[str, Any] = {}

    def run(name: str, call: Any) -> None:
        start = time.monotonic()
        try:
            call()
            outcomes[name] = "returned"
        except fo.FlowOmniumError as e:
            outcomes[name] = e
        outcomes[name + "_s"] = time.monotonic() - start

    client.record_sale(sale("PY-CLOSE"))
    def events_until_closed() -> None:
        while True:  # sync.offline may come first: keep waiting until close interrupts
            client.next_event(None)  # no time limit: only close ends it

    threads = [
        threading.Thread(target=run, args=("event", events_until_closed)),
        threading.Thread(target=run, args=("flush", lambda: client.flush(None))),
    ]
    for t in threads:
        t.start()
    time.sleep(0.3)
    client.close()
    for t in threads:
        t.join(10)
    for name in ("event", "flush"):
        assert isinstance(outcomes[name], fo.ClosedError), outcomes
        assert outcomes[name].code == 9
        assert outcomes[name + "_s"] < 3.0, outcomes
    # Everything after close raises ClosedError without touching the released handle.
    with pytest.raises(fo.ClosedError):
        client.status()
    with pytest.raises(fo.ClosedError):
        client.record_sale(sale("PY-AFTER"))
    assert client.closed
    client.close()  # twice: a no-op
    assert list(client.events()) == []
    # The database was released: it opens again at once.
    with fo.Client(config) as again:
        assert again.status()["outbox"]["pending"] == 1


def test_the_log_callback_never_sees_the_secret(config: Dict[str, Any]) -> None:
    lines: List[str] = []
    lock = threading.Lock()

    def on_log(level: int, message: str) -> None:
        assert 1 <= level <= 5
        with lock:
            lines.append(message)
        if len(lines) == 1:
            raise RuntimeError("swallowed, never unwinds into the library")

    fo.set_log_callback(on_log, 5)
    try:
        with fo.Client(config) as client:
            client.record_sale(sale("PY-LOG"))
            client.flush(30.0)
    finally:
        fo.set_log_callback(None)
    with lock:
        assert lines, "the callback was called"
        assert not any("sim-secret" in line for line in lines)


def test_closing_from_the_log_callback_inside_a_call(config: Dict[str, Any]) -> None:
    # fo_forget_customer logs on the calling thread: the callback closes the client while
    # that call is still inside the library. The close must not wait for it (a deadlock);
    # the handle is released when the call returns.
    client = fo.Client(config)
    client.record_customer({"id": "C-REENTRANT", "type": "person", "first_name": "Ola"})
    closed_in_callback: List[bool] = []

    def on_log(_level: int, message: str) -> None:
        if "forgotten" in message and not closed_in_callback:
            client.close()
            closed_in_callback.append(client.closed)

    fo.set_log_callback(on_log, 3)
    try:
        done = threading.Event()

        def forget() -> None:
            client.forget_customer("C-REENTRANT")
            done.set()

        worker = threading.Thread(target=forget)
        worker.start()
        worker.join(15)
        assert done.is_set(), "forget_customer deadlocked on a close from its own log line"
    finally:
        fo.set_log_callback(None)
    assert closed_in_callback == [True]
    with pytest.raises(fo.ClosedError):
        client.status()
    with fo.Client(config) as again:  # released when the call returned
        with pytest.raises(fo.NotFoundError):
            again.customer("C-REENTRANT")

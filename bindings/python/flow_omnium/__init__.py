"""Python binding for flow-omnium, over its C API with ctypes (no compiler needed).

    import flow_omnium

    with flow_omnium.Client({"database_path": "/var/lib/pos/fo.db", ...}) as client:
        client.record_sale({"id": "S-1001", ...})
        for event in client.events(idle_timeout=1.0):
            print(event["type"])

JSON goes in as a ``dict`` (or an already encoded ``str``) and comes out as ``dict``. Every
result code other than ``FO_OK`` is raised as its own subclass of :class:`FlowOmniumError`,
carrying the library's message. The shared library is found through ``FLOW_OMNIUM_LIB`` (a
path), else the system's search path (``libflow_omnium.so``, ``flow_omnium.dll``).

A :class:`Client` may be used from many threads. :meth:`Client.close` makes every later call
raise :class:`ClosedError` and a thread blocked in :meth:`Client.next_event` or
:meth:`Client.flush` raise it within about 0.1 s: long waits are made of short waits of the
C library, so no call can still be entering the C library when the handle is released.
"""

from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import json
import math
import os
import sys
import threading
import time
import weakref
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Type, Union

__all__ = [
    "Client",
    "FlowOmniumError",
    "NullArgumentError",
    "InvalidJsonError",
    "InvalidInputError",
    "ConflictError",
    "NotFoundError",
    "TimedOutError",
    "StorageFullError",
    "StorageError",
    "ClosedError",
    "ConfigError",
    "PanicError",
    "InternalError",
    "result_name",
    "set_log_callback",
    "version",
]

JsonIn = Union[str, bytes, Mapping[str, Any]]
Json = Dict[str, Any]

# The longest single wait inside the C library; see the module docstring.
_SLICE_MS = 100


class FlowOmniumError(Exception):
    """A result code other than FO_OK, with the library's message (which names the field)."""

    code: int = -1

    def __init__(self, message: str, code: Optional[int] = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.message = message

    @property
    def code_name(self) -> str:
        return result_name(self.code)

    def __str__(self) -> str:
        return f"{self.code_name}: {self.message}"


class NullArgumentError(FlowOmniumError):
    code = 1


class InvalidJsonError(FlowOmniumError):
    code = 2


class InvalidInputError(FlowOmniumError):
    code = 3


class ConflictError(FlowOmniumError):
    code = 4


class NotFoundError(FlowOmniumError):
    code = 5


class TimedOutError(FlowOmniumError, TimeoutError):
    code = 6


class StorageFullError(FlowOmniumError):
    code = 7


class StorageError(FlowOmniumError):
    code = 8


class ClosedError(FlowOmniumError):
    code = 9


class ConfigError(FlowOmniumError):
    code = 10


class PanicError(FlowOmniumError):
    code = 98


class InternalError(FlowOmniumError):
    code = 99


_ERRORS: Dict[int, Type[FlowOmniumError]] = {
    cls.code: cls
    for cls in (
        NullArgumentError,
        InvalidJsonError,
        InvalidInputError,
        ConflictError,
        NotFoundError,
        TimedOutError,
        StorageFullError,
        StorageError,
        ClosedError,
        ConfigError,
        PanicError,
        InternalError,
    )
}


def _load() -> ctypes.CDLL:
    path = os.environ.get("FLOW_OMNIUM_LIB")
    if not path:
        path = ctypes.util.find_library("flow_omnium")
    if not path:
        path = "flow_omnium.dll" if sys.platform == "win32" else "libflow_omnium.so"
    return ctypes.CDLL(path)


_lib = _load()
_c = ctypes.c_void_p  # fo_client *
_s = ctypes.c_char_p  # const char *
_out = ctypes.POINTER(ctypes.c_void_p)  # char ** (kept as a pointer so it can be freed)
_LOG_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p)

for _name, _args, _ret in [
    ("fo_last_error_message", [], ctypes.c_char_p),
    ("fo_result_name", [ctypes.c_int], ctypes.c_char_p),
    ("fo_version", [], ctypes.c_char_p),
    ("fo_string_free", [ctypes.c_void_p], None),
    ("fo_client_open", [_s, ctypes.POINTER(ctypes.c_void_p)], ctypes.c_int),
    ("fo_client_close", [_c], None),
    ("fo_record_sale", [_c, _s], ctypes.c_int),
    ("fo_record_return", [_c, _s], ctypes.c_int),
    ("fo_record_cancellation", [_c, _s], ctypes.c_int),
    ("fo_record_receipt", [_c, _s, ctypes.c_char_p, ctypes.c_size_t], ctypes.c_int),
    ("fo_record_customer", [_c, _s], ctypes.c_int),
    ("fo_record_goods_reception", [_c, _s], ctypes.c_int),
    ("fo_record_stock_count", [_c, _s], ctypes.c_int),
    ("fo_record_pickup", [_c, _s], ctypes.c_int),
    ("fo_event_notify", [_c, _s], ctypes.c_int),
    ("fo_orders_list", [_c, _s, _out], ctypes.c_int),
    ("fo_order_get", [_c, _s, _out], ctypes.c_int),
    ("fo_purchase_orders_list", [_c, _s, _out], ctypes.c_int),
    ("fo_customer_get", [_c, _s, _out], ctypes.c_int),
    ("fo_product_get", [_c, _s, _out], ctypes.c_int),
    ("fo_product_search", [_c, _s, _out], ctypes.c_int),
    ("fo_stock_get", [_c, _s, _out], ctypes.c_int),
    ("fo_store_get", [_c, _s, _out], ctypes.c_int),
    ("fo_categories_list", [_c, _out], ctypes.c_int),
    ("fo_brands_list", [_c, _out], ctypes.c_int),
    ("fo_sync_now", [_c], ctypes.c_int),
    ("fo_flush", [_c, ctypes.c_uint32], ctypes.c_int),
    ("fo_status", [_c, _out], ctypes.c_int),
    ("fo_next_event", [_c, ctypes.c_uint32, _out], ctypes.c_int),
    ("fo_dead_jobs", [_c, _out], ctypes.c_int),
    ("fo_job_retry", [_c, _s], ctypes.c_int),
    ("fo_set_log_callback", [_LOG_FN, ctypes.c_void_p, ctypes.c_int], None),
    ("fo_forget_customer", [_c, _s], ctypes.c_int),
]:
    _fn = getattr(_lib, _name)
    _fn.argtypes = _args
    _fn.restype = _ret


def version() -> str:
    """The library's version (the crate version)."""
    name: bytes = _lib.fo_version()
    return name.decode()


def result_name(code: int) -> str:
    """The name of a result code, e.g. ``"FO_CONFLICT"``; ``"FO_UNKNOWN"`` for other numbers."""
    name: bytes = _lib.fo_result_name(int(code))
    return name.decode()


def _check(code: int) -> None:
    """Raises the exception of ``code`` with this thread's last error message."""
    if code == 0:
        return
    # Same thread as the call that failed, and no fo_ call in between.
    message = _lib.fo_last_error_message().decode("utf-8", "replace")
    cls = _ERRORS.get(code, FlowOmniumError)
    raise cls(message, code)


def _text(value: JsonIn, what: str) -> bytes:
    if isinstance(value, bytes):
        data = value
    elif isinstance(value, str):
        data = value.encode()
    elif isinstance(value, Mapping):
        data = json.dumps(value, ensure_ascii=False).encode()
    else:
        raise TypeError(f"{what} must be a dict, str or bytes, not {type(value).__name__}")
    if b"\0" in data:
        raise ValueError(f"{what} contains a NUL byte")
    return data


def _take(ptr: ctypes.c_void_p) -> str:
    """Copies a string the library returned and frees it."""
    if not ptr.value:
        raise InternalError("the library returned FO_OK without a string", 99)
    try:
        return ctypes.string_at(ptr.value).decode("utf-8")
    finally:
        _lib.fo_string_free(ptr)


def _deadline(timeout: Optional[float]) -> Optional[float]:
    """The monotonic deadline of a wait of ``timeout`` seconds; ``None`` (or infinity): none."""
    if timeout is None or timeout == math.inf:
        return None
    timeout = float(timeout)
    if math.isnan(timeout):
        raise ValueError("timeout is NaN")
    return time.monotonic() + max(0.0, timeout)


def _slice_ms(deadline: Optional[float]) -> int:
    """The next wait inside the C library: what is left of the deadline, at most _SLICE_MS."""
    if deadline is None:
        return _SLICE_MS
    return min(_SLICE_MS, int(max(0.0, deadline - time.monotonic()) * 1000))


# The log callback: one trampoline for the life of the process (the library may still be
# calling an old one while a new one is registered), dispatching to the current function.
_log_target: Optional[Callable[[int, str], None]] = None


def _log_trampoline(_user_data: Any, level: int, message: bytes) -> None:
    target = _log_target
    if target is None:
        return
    try:
        target(level, message.decode("utf-8", "replace"))
    except BaseException:  # an exception must never unwind into the library
        pass


_LOG_TRAMPOLINE = _LOG_FN(_log_trampoline)


def set_log_callback(callback: Optional[Callable[[int, str], None]], max_level: int = 3) -> None:
    """Sends the library's log lines up to ``max_level`` (1 error … 5 trace) to
    ``callback(level, message)``, from the library's threads. ``None`` turns logging off.
    Process-wide. Exceptions raised by the callback are swallowed. Do not close a client
    from the callback."""
    global _log_target
    if callback is None or max_level <= 0:
        _lib.fo_set_log_callback(_LOG_FN(), None, 0)
        _log_target = None
        return
    _log_target = callback
    _lib.fo_set_log_callback(_LOG_TRAMPOLINE, None, int(max_level))


# Clients still open when the interpreter exits are closed then (their sync threads stopped),
# and logging is turned off, so no library thread calls into a finalizing interpreter.
_open_clients: "weakref.WeakSet[Client]" = weakref.WeakSet()


@atexit.register
def _at_exit() -> None:
    for client in list(_open_clients):
        try:
            client.close()
        except Exception:
            pass
    _lib.fo_set_log_callback(_LOG_FN(), None, 0)


class Client:
    """An open flow-omnium client (a database, a configuration and a sync worker).

    Use it as a context manager, or call :meth:`close`. Safe to share between threads.
    """

    def __init__(self, config: JsonIn) -> None:
        handle = ctypes.c_void_p()
        _check(_lib.fo_client_open(_text(config, "config"), ctypes.byref(handle)))
        self._handle: Optional[int] = handle.value
        self._cond = threading.Condition()
        self._in_flight = 0
        self._closed = False
        self._local = threading.local()
        _open_clients.add(self)

    # -- lifecycle ---------------------------------------------------------------------

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *_exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        # A forgotten client still releases its database; never raises.
        try:
            if not getattr(self, "_closed", True):
                self.close()
        except Exception:
            pass

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Stops the sync worker and releases the database (within about 10 s). Threads
        waiting in :meth:`next_event` or :meth:`flush` raise :class:`ClosedError`; later
        calls raise it too. Closing twice is a no-op. Called from inside a call on this
        client (a log callback), the release happens when that call returns."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            mine = getattr(self._local, "depth", 0)
            while self._in_flight > mine:
                self._cond.wait()
            if self._in_flight > 0:
                return  # re-entrant: _leave releases the handle after the last call
            handle, self._handle = self._handle, None
        _lib.fo_client_close(handle)

    def _enter(self) -> int:
        with self._cond:
            if self._closed:
                raise ClosedError("the client is closed", 9)
            self._in_flight += 1
        self._local.depth = getattr(self._local, "depth", 0) + 1
        assert self._handle is not None
        return self._handle

    def _leave(self) -> None:
        self._local.depth -= 1
        handle = None
        with self._cond:
            self._in_flight -= 1
            if self._closed and self._in_flight == 0 and self._handle is not None:
                handle, self._handle = self._handle, None
            self._cond.notify_all()
        if handle is not None:
            _lib.fo_client_close(handle)

    def _call(self, fn: Callable[..., int], *args: Any) -> None:
        handle = self._enter()
        try:
            _check(fn(handle, *args))
        finally:
            self._leave()

    def _read(self, fn: Callable[..., int], *args: Any) -> Json:
        handle = self._enter()
        try:
            out = ctypes.c_void_p()
            _check(fn(handle, *args, ctypes.byref(out)))
            result: Json = json.loads(_take(out))
            return result
        finally:
            self._leave()

    # -- recording ---------------------------------------------------------------------

    def record_sale(self, sale: JsonIn) -> None:
        """Records a sale durably. The same id and content again is a no-op; other
        content raises :class:`ConflictError`; a broken rule :class:`InvalidInputError`."""
        self._call(_lib.fo_record_sale, _text(sale, "sale"))

    def record_return(self, ret: JsonIn) -> None:
        self._call(_lib.fo_record_return, _text(ret, "return"))

    def record_cancellation(self, cancellation: JsonIn) -> None:
        self._call(_lib.fo_record_cancellation, _text(cancellation, "cancellation"))

    def record_receipt(self, receipt: JsonIn, pdf: bytes) -> None:
        """Records a receipt and its PDF (bytes starting with ``%PDF-``)."""
        data = bytes(pdf)
        self._call(_lib.fo_record_receipt, _text(receipt, "receipt"), data, len(data))

    def record_customer(self, customer: JsonIn) -> None:
        self._call(_lib.fo_record_customer, _text(customer, "customer"))

    def record_goods_reception(self, reception: JsonIn) -> None:
        self._call(_lib.fo_record_goods_reception, _text(reception, "goods_reception"))

    def record_stock_count(self, count: JsonIn) -> None:
        self._call(_lib.fo_record_stock_count, _text(count, "stock_count"))

    def record_pickup(self, pickup: JsonIn) -> None:
        self._call(_lib.fo_record_pickup, _text(pickup, "pickup"))

    def event_notify(self, omnium_event: JsonIn) -> None:
        """Hands over an Omnium event-subscription payload as it arrived."""
        self._call(_lib.fo_event_notify, _text(omnium_event, "omnium_event"))

    def forget_customer(self, customer_id: str) -> None:
        """Erases what this till holds about a customer (see the C API)."""
        self._call(_lib.fo_forget_customer, _text(customer_id, "customer_id"))

    # -- reading (local, offline) ------------------------------------------------------

    def orders(self, filter: Optional[JsonIn] = None) -> List[Json]:
        """Inbound orders for this store; ``filter``: ``{"order_type", "status"}``."""
        arg = None if filter is None else _text(filter, "filter")
        return list(self._read(_lib.fo_orders_list, arg)["items"])

    def order(self, order_id: str) -> Json:
        return self._read(_lib.fo_order_get, _text(order_id, "order_id"))

    def purchase_orders(self, filter: Optional[JsonIn] = None) -> List[Json]:
        arg = None if filter is None else _text(filter, "filter")
        return list(self._read(_lib.fo_purchase_orders_list, arg)["items"])

    def customer(self, customer_id: str) -> Json:
        return self._read(_lib.fo_customer_get, _text(customer_id, "customer_id"))

    def product(self, sku: str) -> Json:
        return self._read(_lib.fo_product_get, _text(sku, "sku"))

    def search_products(self, query: JsonIn) -> Json:
        """``{"items": [...], "total": N}`` for ``{"text", "category_id", "brand", "limit", "offset"}``."""
        return self._read(_lib.fo_product_search, _text(query, "query"))

    def stock(self, sku: str) -> Json:
        return self._read(_lib.fo_stock_get, _text(sku, "sku"))

    def store(self, store_id: str) -> Json:
        return self._read(_lib.fo_store_get, _text(store_id, "store_id"))

    def categories(self) -> List[Json]:
        return list(self._read(_lib.fo_categories_list)["items"])

    def brands(self) -> List[str]:
        return list(self._read(_lib.fo_brands_list)["items"])

    # -- sync --------------------------------------------------------------------------

    def sync_now(self) -> None:
        self._call(_lib.fo_sync_now)

    def flush(self, timeout: Optional[float]) -> None:
        """Waits until nothing is pending (dead jobs and jobs behind them do not count).
        Raises :class:`TimedOutError` after ``timeout`` seconds (``None``: no limit),
        :class:`ClosedError` if the client is closed meanwhile."""
        deadline = _deadline(timeout)
        while True:
            slice_ms = _slice_ms(deadline)
            try:
                self._call(_lib.fo_flush, slice_ms)
                return
            except TimedOutError as e:
                if slice_ms < _SLICE_MS or deadline is not None and time.monotonic() >= deadline:
                    raise TimedOutError(f"{e.message} (waited {timeout:g} s in all)", 6) from None

    def status(self) -> Json:
        """``{"online", "outbox": {"pending", "blocked", "dead", "oldest_pending_at"}, ...}``."""
        return self._read(_lib.fo_status)

    def dead_jobs(self) -> List[Json]:
        return list(self._read(_lib.fo_dead_jobs)["items"])

    def retry_job(self, job_id: Optional[str] = None) -> None:
        """Gives a dead job (an ``id`` from :meth:`dead_jobs`) new attempts; ``None``: all."""
        self._call(_lib.fo_job_retry, None if job_id is None else _text(job_id, "job_id"))

    def next_event(self, timeout: Optional[float] = 0.0) -> Optional[Json]:
        """The next event (``{"type": ...}``), waiting up to ``timeout`` seconds (``None``:
        until one comes); ``None`` if none came. Raises :class:`ClosedError` once the client
        is closed."""
        deadline = _deadline(timeout)
        while True:
            slice_ms = _slice_ms(deadline)
            handle = self._enter()
            try:
                out = ctypes.c_void_p()
                code = _lib.fo_next_event(handle, slice_ms, ctypes.byref(out))
                if code == 0:
                    event: Json = json.loads(_take(out))
                    return event
                if code != 6:
                    _check(code)
            finally:
                self._leave()
            if slice_ms < _SLICE_MS or deadline is not None and time.monotonic() >= deadline:
                return None

    def events(self, idle_timeout: Optional[float] = None) -> Iterator[Json]:
        """Iterates over events as they come. Ends when the client is closed, or when
        ``idle_timeout`` seconds pass without an event (``None``: only at close)."""
        while True:
            try:
                event = self.next_event(idle_timeout)
            except ClosedError:
                return
            if event is not None:
                yield event
            elif idle_timeout is not None:
                return

// Package flowomnium is the Go binding of flow-omnium, over its C API with cgo.
//
//	c, err := flowomnium.Open(`{"database_path": "/var/lib/pos/fo.db", ...}`)
//	if err != nil { ... }
//	defer c.Close()
//	if err := c.RecordSale(saleJSON); errors.Is(err, flowomnium.ErrConflict) { ... }
//	ev, err := c.NextEvent(ctx)
//
// JSON goes in as a string and comes out as json.RawMessage (Status, DeadJobs and events
// are typed). Every result code other than FO_OK is an *Error carrying the code and the
// library's message; errors.Is matches it against the sentinel of its code (ErrConflict,
// ErrNotFound, ...). The blocking calls, NextEvent and Flush, take a context.Context.
//
// Build: the header comes from ../../include; link with libflow_omnium (set CGO_LDFLAGS,
// e.g. -L/path/to/target/release, and LD_LIBRARY_PATH, or install the library).
//
// A Client may be used from many goroutines. Close is explicit (there is no finalizer: the
// database must be released when the POS says so, not when the garbage collector runs).
// Close makes later calls fail with ErrClosed, and a goroutine blocked in NextEvent or
// Flush returns ErrClosed within about 100 ms: long waits are made of short waits of the C
// library, so no call can still be entering the C library when the handle is released.
package flowomnium

/*
#cgo CFLAGS: -I${SRCDIR}/../../include
#cgo LDFLAGS: -lflow_omnium
#include <stdlib.h>
#include "flow_omnium.h"
void fo_go_log(void *user_data, int level, const char *message);
*/
import "C"

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// Code is a result code of the C API.
type Code int

// The result codes (fo_result).
const (
	CodeOK           Code = 0
	CodeNullArgument Code = 1
	CodeInvalidJSON  Code = 2
	CodeInvalidInput Code = 3
	CodeConflict     Code = 4
	CodeNotFound     Code = 5
	CodeTimeout      Code = 6
	CodeStorageFull  Code = 7
	CodeStorage      Code = 8
	CodeClosed       Code = 9
	CodeConfig       Code = 10
	CodePanic        Code = 98
	CodeInternal     Code = 99
)

// String is the library's name of the code, e.g. "FO_CONFLICT" ("FO_UNKNOWN" for others).
func (c Code) String() string {
	return C.GoString(C.fo_result_name(C.int(c)))
}

// Error is a failed call: the result code and fo_last_error_message() of that call.
type Error struct {
	Code    Code
	Message string
	// cause is the context's error when a wait ended because its context did.
	cause    error
	sentinel bool
}

func (e *Error) Error() string {
	if e.sentinel {
		return "flowomnium: " + e.Code.String()
	}
	return fmt.Sprintf("flowomnium: %s: %s", e.Code, e.Message)
}

// Is matches the sentinel of the same code: errors.Is(err, ErrConflict).
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.sentinel && t.Code == e.Code
}

// Unwrap gives the context's error (context.DeadlineExceeded, context.Canceled) when a
// NextEvent or Flush ended because its context did.
func (e *Error) Unwrap() error { return e.cause }

func sentinel(c Code) *Error { return &Error{Code: c, sentinel: true} }

// Sentinels, one per result code, for errors.Is.
var (
	ErrNullArgument = sentinel(CodeNullArgument)
	ErrInvalidJSON  = sentinel(CodeInvalidJSON)
	ErrInvalidInput = sentinel(CodeInvalidInput)
	ErrConflict     = sentinel(CodeConflict)
	ErrNotFound     = sentinel(CodeNotFound)
	ErrTimeout      = sentinel(CodeTimeout)
	ErrStorageFull  = sentinel(CodeStorageFull)
	ErrStorage      = sentinel(CodeStorage)
	ErrClosed       = sentinel(CodeClosed)
	ErrConfig       = sentinel(CodeConfig)
	ErrPanic        = sentinel(CodePanic)
	ErrInternal     = sentinel(CodeInternal)
)

// Version is the library's version (the crate version).
func Version() string { return C.GoString(C.fo_version()) }

// sliceMs is the longest single wait inside the C library (see the package comment).
const sliceMs = 100

// cCall runs one C call and, on failure, reads the message on the same OS thread before
// any other fo_ call (the message is per thread; a goroutine may otherwise move).
func cCall(f func() C.enum_fo_result) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	r := f()
	if r == C.FO_OK {
		return nil
	}
	return &Error{Code: Code(r), Message: C.GoString(C.fo_last_error_message())}
}

// cString copies a Go string for C; a NUL inside would cut the JSON short, so it is refused.
func cString(s, what string) (*C.char, error) {
	if strings.IndexByte(s, 0) >= 0 {
		return nil, &Error{Code: CodeInvalidJSON, Message: what + " contains a NUL byte"}
	}
	return C.CString(s), nil
}

// takeString copies a string the library returned and frees it.
func takeString(p *C.char) json.RawMessage {
	defer C.fo_string_free(p)
	return json.RawMessage(C.GoString(p))
}

// Client is an open flow-omnium client: a database, a configuration and a sync worker.
type Client struct {
	mu       sync.Mutex
	idle     *sync.Cond // signalled when inFlight drops
	h        *C.fo_client
	inFlight int
	closed   bool
}

// Open opens (or creates) the database and starts the sync worker. Errors: ErrConfig (the
// message names the key), ErrStorage ("in use" when another client holds the database),
// ErrStorageFull.
func Open(configJSON string) (*Client, error) {
	cfg, err := cString(configJSON, "config")
	if err != nil {
		return nil, err
	}
	defer C.free(unsafe.Pointer(cfg))
	var h *C.fo_client
	if err := cCall(func() C.enum_fo_result { return C.fo_client_open(cfg, &h) }); err != nil {
		return nil, err
	}
	c := &Client{h: h}
	c.idle = sync.NewCond(&c.mu)
	return c, nil
}

// Close stops the sync worker and releases the database (within about 10 s). Blocked
// NextEvent and Flush calls return ErrClosed within about 100 ms; later calls too. Closing
// twice is a no-op.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	for c.inFlight > 0 {
		c.idle.Wait()
	}
	h := c.h
	c.h = nil
	c.mu.Unlock()
	C.fo_client_close(h)
	return nil
}

func (c *Client) enter() (*C.fo_client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, &Error{Code: CodeClosed, Message: "the client is closed"}
	}
	c.inFlight++
	return c.h, nil
}

func (c *Client) leave() {
	c.mu.Lock()
	c.inFlight--
	c.mu.Unlock()
	c.idle.Broadcast()
}

type strFn func(*C.fo_client, *C.char) C.enum_fo_result
type readFn func(*C.fo_client, *C.char, **C.char) C.enum_fo_result

// call runs fn(handle, arg) with the handle held.
func (c *Client) call(fn strFn, arg, what string) error {
	s, err := cString(arg, what)
	if err != nil {
		return err
	}
	defer C.free(unsafe.Pointer(s))
	h, err := c.enter()
	if err != nil {
		return err
	}
	defer c.leave()
	return cCall(func() C.enum_fo_result { return fn(h, s) })
}

// read runs fn(handle, arg, &out) (a nil arg for optional filters) and returns out.
func (c *Client) read(fn readFn, arg *string, what string) (json.RawMessage, error) {
	var s *C.char
	if arg != nil {
		var err error
		if s, err = cString(*arg, what); err != nil {
			return nil, err
		}
		defer C.free(unsafe.Pointer(s))
	}
	h, err := c.enter()
	if err != nil {
		return nil, err
	}
	defer c.leave()
	var out *C.char
	if err := cCall(func() C.enum_fo_result { return fn(h, s, &out) }); err != nil {
		return nil, err
	}
	return takeString(out), nil
}

// read0 runs fn(handle, &out).
func (c *Client) read0(fn func(*C.fo_client, **C.char) C.enum_fo_result) (json.RawMessage, error) {
	h, err := c.enter()
	if err != nil {
		return nil, err
	}
	defer c.leave()
	var out *C.char
	if err := cCall(func() C.enum_fo_result { return fn(h, &out) }); err != nil {
		return nil, err
	}
	return takeString(out), nil
}

// RecordSale records a sale durably (never waits on the network). The same id and content
// again is nil; other content is ErrConflict; a broken rule ErrInvalidInput naming the field.
func (c *Client) RecordSale(saleJSON string) error {
	return c.call(func(h *C.fo_client, s *C.char) C.enum_fo_result { return C.fo_record_sale(h, s) }, saleJSON, "sale")
}

// RecordReturn records a return of a recorded sale or of an Omnium order.
func (c *Client) RecordReturn(returnJSON string) error {
	return c.call(func(h *C.fo_client, s *C.char) C.enum_fo_result { return C.fo_record_return(h, s) }, returnJSON, "return")
}

// RecordCancellation records a cancellation of a whole order or of whole lines.
func (c *Client) RecordCancellation(cancellationJSON string) error {
	return c.call(func(h *C.fo_client, s *C.char) C.enum_fo_result { return C.fo_record_cancellation(h, s) }, cancellationJSON, "cancellation")
}

// RecordReceipt records a receipt and its PDF (bytes starting with "%PDF-").
func (c *Client) RecordReceipt(receiptJSON string, pdf []byte) error {
	s, err := cString(receiptJSON, "receipt")
	if err != nil {
		return err
	}
	defer C.free(unsafe.Pointer(s))
	// A C copy: cgo forbids keeping Go memory in C, and the library reads it only during
	// the call, but an empty slice has no address to give.
	p := C.CBytes(pdf)
	defer C.free(p)
	h, err := c.enter()
	if err != nil {
		return err
	}
	defer c.leave()
	return cCall(func() C.enum_fo_result {
		return C.fo_record_receipt(h, s, (*C.uint8_t)(p), C.size_t(len(pdf)))
	})
}

// RecordCustomer records a customer created or changed at the till.
func (c *Client) RecordCustomer(customerJSON string) error {
	return c.call(func(h *C.fo_client, s *C.char) C.enum_fo_result { return C.fo_record_customer(h, s) }, customerJSON, "customer")
}

// RecordGoodsReception records goods received, with or without a purchase order.
func (c *Client) RecordGoodsReception(receptionJSON string) error {
	return c.call(func(h *C.fo_client, s *C.char) C.enum_fo_result { return C.fo_record_goods_reception(h, s) }, receptionJSON, "goods_reception")
}

// RecordStockCount records absolute counted levels (a "flow" stock-master store only).
func (c *Client) RecordStockCount(stockJSON string) error {
	return c.call(func(h *C.fo_client, s *C.char) C.enum_fo_result { return C.fo_record_stock_count(h, s) }, stockJSON, "stock_count")
}

// RecordPickup records click & collect progress.
func (c *Client) RecordPickup(pickupJSON string) error {
	return c.call(func(h *C.fo_client, s *C.char) C.enum_fo_result { return C.fo_record_pickup(h, s) }, pickupJSON, "pickup")
}

// EventNotify hands over an Omnium event-subscription payload as it arrived.
func (c *Client) EventNotify(omniumEventJSON string) error {
	return c.call(func(h *C.fo_client, s *C.char) C.enum_fo_result { return C.fo_event_notify(h, s) }, omniumEventJSON, "omnium_event")
}

// ForgetCustomer erases what this till holds about a customer.
func (c *Client) ForgetCustomer(customerID string) error {
	return c.call(func(h *C.fo_client, s *C.char) C.enum_fo_result { return C.fo_forget_customer(h, s) }, customerID, "customer_id")
}

// Orders lists inbound orders; filterJSON ({"order_type", "status"}) may be "".
func (c *Client) Orders(filterJSON string) (json.RawMessage, error) {
	return c.read(func(h *C.fo_client, s *C.char, o **C.char) C.enum_fo_result { return C.fo_orders_list(h, s, o) }, optional(filterJSON), "filter")
}

// Order is one inbound order; ErrNotFound if not known locally.
func (c *Client) Order(orderID string) (json.RawMessage, error) {
	return c.read(func(h *C.fo_client, s *C.char, o **C.char) C.enum_fo_result { return C.fo_order_get(h, s, o) }, &orderID, "order_id")
}

// PurchaseOrders lists purchase orders; filterJSON ({"status"}) may be "".
func (c *Client) PurchaseOrders(filterJSON string) (json.RawMessage, error) {
	return c.read(func(h *C.fo_client, s *C.char, o **C.char) C.enum_fo_result {
		return C.fo_purchase_orders_list(h, s, o)
	}, optional(filterJSON), "filter")
}

// Customer is a customer recorded here or fetched for an inbound order.
func (c *Client) Customer(customerID string) (json.RawMessage, error) {
	return c.read(func(h *C.fo_client, s *C.char, o **C.char) C.enum_fo_result { return C.fo_customer_get(h, s, o) }, &customerID, "customer_id")
}

// Product is a product by SKU from the local catalog.
func (c *Client) Product(sku string) (json.RawMessage, error) {
	return c.read(func(h *C.fo_client, s *C.char, o **C.char) C.enum_fo_result { return C.fo_product_get(h, s, o) }, &sku, "sku")
}

// SearchProducts searches sellable products offline: {"items": [...], "total": N}.
func (c *Client) SearchProducts(queryJSON string) (json.RawMessage, error) {
	return c.read(func(h *C.fo_client, s *C.char, o **C.char) C.enum_fo_result { return C.fo_product_search(h, s, o) }, &queryJSON, "query")
}

// Stock is a SKU's stock in this store's warehouses.
func (c *Client) Stock(sku string) (json.RawMessage, error) {
	return c.read(func(h *C.fo_client, s *C.char, o **C.char) C.enum_fo_result { return C.fo_stock_get(h, s, o) }, &sku, "sku")
}

// Store is a store pulled from Omnium.
func (c *Client) Store(storeID string) (json.RawMessage, error) {
	return c.read(func(h *C.fo_client, s *C.char, o **C.char) C.enum_fo_result { return C.fo_store_get(h, s, o) }, &storeID, "store_id")
}

// Categories lists product categories: {"items": [...]}.
func (c *Client) Categories() (json.RawMessage, error) {
	return c.read0(func(h *C.fo_client, o **C.char) C.enum_fo_result { return C.fo_categories_list(h, o) })
}

// Brands lists the brands of sellable products: {"items": [...]}.
func (c *Client) Brands() (json.RawMessage, error) {
	return c.read0(func(h *C.fo_client, o **C.char) C.enum_fo_result { return C.fo_brands_list(h, o) })
}

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// SyncNow wakes the sync worker to push now, even while it backs off after an outage.
func (c *Client) SyncNow() error {
	h, err := c.enter()
	if err != nil {
		return err
	}
	defer c.leave()
	return cCall(func() C.enum_fo_result { return C.fo_sync_now(h) })
}

// sliceOf is the next wait: the time left before ctx's deadline, at most sliceMs.
func sliceOf(ctx context.Context) C.uint32_t {
	if d, ok := ctx.Deadline(); ok {
		left := time.Until(d).Milliseconds()
		if left < 0 {
			left = 0
		}
		if left < sliceMs {
			return C.uint32_t(left)
		}
	}
	return sliceMs
}

// ended is the error of a wait ended by its context: errors.Is it ErrTimeout and the
// context's own error.
func ended(ctx context.Context, what string) error {
	return &Error{Code: CodeTimeout, Message: what + ": " + ctx.Err().Error(), cause: ctx.Err()}
}

// Flush waits until nothing is pending (dead jobs and jobs behind them do not count), or
// ctx ends (an error that errors.Is ErrTimeout and ctx.Err()), or the client is closed.
func (c *Client) Flush(ctx context.Context) error {
	for {
		if ctx.Err() != nil {
			return ended(ctx, "jobs still pending")
		}
		h, err := c.enter()
		if err != nil {
			return err
		}
		slice := sliceOf(ctx)
		err = cCall(func() C.enum_fo_result { return C.fo_flush(h, slice) })
		c.leave()
		if !isTimeout(err) {
			return err
		}
	}
}

func isTimeout(err error) bool {
	e, ok := err.(*Error)
	return ok && e.Code == CodeTimeout
}

// FailingDataset is a data set whose last pull failed: since when, how many pull runs in a
// row, and Omnium's short reason.
type FailingDataset struct {
	Dataset      string `json:"dataset"`
	FailingSince string `json:"failing_since"`
	FailedRuns   int    `json:"failed_runs"`
	LastError    string `json:"last_error"`
}

// Status is the sync status (fo_status).
type Status struct {
	Online bool `json:"online"`
	Outbox struct {
		Pending         int     `json:"pending"`
		Blocked         int     `json:"blocked"`
		Dead            int     `json:"dead"`
		OldestPendingAt *string `json:"oldest_pending_at"`
	} `json:"outbox"`
	NextAttemptAt *string `json:"next_attempt_at"`
	LastPushAt    *string `json:"last_push_at"`
	LastPullAt    *string `json:"last_pull_at"`
	Pulling       bool    `json:"pulling"`
	// FailingDatasets lists each data set whose last pull failed (empty when none).
	FailingDatasets []FailingDataset `json:"failing_datasets"`
	// Raw is the whole JSON, for fields added later.
	Raw json.RawMessage `json:"-"`
}

// Status reads the sync status.
func (c *Client) Status() (Status, error) {
	var s Status
	raw, err := c.read0(func(h *C.fo_client, o **C.char) C.enum_fo_result { return C.fo_status(h, o) })
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return s, &Error{Code: CodeInternal, Message: "status: " + err.Error()}
	}
	s.Raw = raw
	return s, nil
}

// DeadJob is a job given up on.
type DeadJob struct {
	ID        string  `json:"id"`
	Kind      string  `json:"kind"`
	EntityID  string  `json:"entity_id"`
	Attempts  int     `json:"attempts"`
	LastError *string `json:"last_error"`
	DeadAt    *string `json:"dead_at"`
}

// DeadJobs lists the jobs given up on.
func (c *Client) DeadJobs() ([]DeadJob, error) {
	raw, err := c.read0(func(h *C.fo_client, o **C.char) C.enum_fo_result { return C.fo_dead_jobs(h, o) })
	if err != nil {
		return nil, err
	}
	var list struct {
		Items []DeadJob `json:"items"`
	}
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, &Error{Code: CodeInternal, Message: "dead jobs: " + err.Error()}
	}
	return list.Items, nil
}

// RetryJob gives the dead job jobID (a DeadJob.ID) new attempts; "" retries every dead job.
func (c *Client) RetryJob(jobID string) error {
	if jobID == "" {
		h, err := c.enter()
		if err != nil {
			return err
		}
		defer c.leave()
		return cCall(func() C.enum_fo_result { return C.fo_job_retry(h, nil) })
	}
	return c.call(func(h *C.fo_client, s *C.char) C.enum_fo_result { return C.fo_job_retry(h, s) }, jobID, "job_id")
}

// Event is one event: its type ("job.dead", "sync.online", "order.received", ...) and
// the whole JSON.
type Event struct {
	Type string
	Raw  json.RawMessage
}

// NextEvent waits for the next event until ctx ends (an error that errors.Is ErrTimeout
// and ctx.Err()) or the client is closed (ErrClosed).
func (c *Client) NextEvent(ctx context.Context) (Event, error) {
	for {
		if ctx.Err() != nil {
			return Event{}, ended(ctx, "no event")
		}
		h, err := c.enter()
		if err != nil {
			return Event{}, err
		}
		slice := sliceOf(ctx)
		var out *C.char
		err = cCall(func() C.enum_fo_result { return C.fo_next_event(h, slice, &out) })
		c.leave()
		if err == nil {
			raw := takeString(out)
			var head struct {
				Type string `json:"type"`
			}
			if err := json.Unmarshal(raw, &head); err != nil {
				return Event{}, &Error{Code: CodeInternal, Message: "event: " + err.Error()}
			}
			return Event{Type: head.Type, Raw: raw}, nil
		}
		if !isTimeout(err) {
			return Event{}, err
		}
	}
}

// The log callback. The library calls one C trampoline for the life of the process (it may
// still call it after another callback is registered); the trampoline only queues the line,
// and one goroutine hands the lines, in order, to the current function. So the function
// never runs inside a library call: it may call any method, Close included, and a slow
// function never holds up the sync worker (lines beyond a full queue are counted and
// reported as dropped).
var (
	logTarget  atomic.Value // of logFunc
	logLines   = make(chan logLine, 4096)
	logDropped atomic.Uint64
	logPump    sync.Once
)

type logFunc func(level int, message string)

type logLine struct {
	level   int
	message string
}

//export goLogTrampoline
func goLogTrampoline(_ unsafe.Pointer, level C.int, message *C.char) {
	select {
	case logLines <- logLine{int(level), C.GoString(message)}:
	default:
		logDropped.Add(1)
	}
}

func pumpLogs() {
	for line := range logLines {
		f, _ := logTarget.Load().(logFunc)
		if f == nil {
			continue
		}
		if n := logDropped.Swap(0); n > 0 {
			callLog(f, 2, fmt.Sprintf("flowomnium: %d log lines dropped (the log callback was too slow)", n))
		}
		callLog(f, line.level, line.message)
	}
}

func callLog(f logFunc, level int, message string) {
	defer func() { _ = recover() }() // a panic in the callback must not end the pump
	f(level, message)
}

// SetLogCallback sends the library's log lines up to maxLevel (1 error … 5 trace) to fn, in
// order, on a goroutine of this package (never inside a library call, so fn may call any
// method, Close included). A nil fn turns logging off. Process-wide. A panic in fn is
// recovered.
func SetLogCallback(fn func(level int, message string), maxLevel int) {
	if fn == nil || maxLevel <= 0 {
		C.fo_set_log_callback(nil, nil, 0)
		logTarget.Store(logFunc(nil))
		return
	}
	logPump.Do(func() { go pumpLogs() })
	logTarget.Store(logFunc(fn))
	C.fo_set_log_callback(C.fo_log_fn(C.fo_go_log), nil, C.int(maxLevel))
}

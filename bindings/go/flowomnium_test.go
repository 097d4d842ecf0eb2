package flowomnium

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The simulator every test talks to: omnium-sim on a free loopback port; and a second one
// serving a generated catalog, for the catalog reads.
var simURL, catalogURL string

// startSim runs omnium-sim with args and returns its URL and process.
func startSim(exe string, args ...string) (string, *exec.Cmd) {
	cmd := exec.Command(exe, append([]string{"--port", "0"}, args...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		panic(err)
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "cannot start %s (build it with cargo build --features sim): %v\n", exe, err)
		os.Exit(2)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	const prefix = "omnium-sim listening on "
	if err != nil || !strings.HasPrefix(line, prefix) {
		fmt.Fprintf(os.Stderr, "omnium-sim said %q (%v)\n", line, err)
		_ = cmd.Process.Kill()
		os.Exit(2)
	}
	return strings.TrimSpace(strings.TrimPrefix(line, prefix)), cmd
}

func TestMain(m *testing.M) {
	exe := os.Getenv("FO_SIM_BIN")
	if exe == "" {
		exe = filepath.Join("..", "..", "target", "debug", "omnium-sim")
	}
	var sim, catalog *exec.Cmd
	simURL, sim = startSim(exe)
	catalogURL, catalog = startSim(exe, "--catalog", "30", "--seed", "7")
	code := m.Run()
	for _, cmd := range []*exec.Cmd{sim, catalog} {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
	os.Exit(code)
}

func simPost(t *testing.T, path, body string) {
	t.Helper()
	resp, err := http.Post(simURL+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("POST %s: %d", path, resp.StatusCode)
	}
}

// simOrder is the order as Omnium holds it, or nil.
func simOrder(t *testing.T, id string) map[string]any {
	t.Helper()
	resp, err := http.Get(simURL + "/__sim/orders/" + id)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == 404 {
		return nil
	}
	var order map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&order); err != nil {
		t.Fatal(err)
	}
	return order
}

func config(t *testing.T, extra string) string {
	dir := t.TempDir() // mode 0700
	return fmt.Sprintf(`{"database_path": %q, "store_id": "oslo-1", "market_id": "NOR",
		"currency": "NOK", "terminal_id": "t01", %s
		"omnium": {"base_url": %q, "client_id": "sim-client", "client_secret": "sim-secret", "timeout_ms": 2000},
		"sync": {"retry_initial_ms": 50, "retry_max_ms": 400, "pull_interval_ms": 60000}}`,
		filepath.Join(dir, "pos.db"), extra, simURL)
}

func sale(id, tx string) string { return saleOf(id, tx, "GO-SKU") }

func saleOf(id, tx, sku string) string {
	if tx == "" {
		tx = "tx-" + id
	}
	return fmt.Sprintf(`{"id": %q, "created_at": "2026-11-28T10:15:00+01:00",
		"lines": [{"line_id": "1", "sku": %q, "name": "T-shirt", "quantity": 2, "unit_price": 19950, "tax_rate": 25}],
		"payments": [{"id": "P1", "method": "Card", "amount": 39900, "transaction_id": %q}]}`, id, sku, tx)
}

func open(t *testing.T, cfg string) *Client {
	t.Helper()
	c, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// wantErr checks err is the code's sentinel and its message contains part.
func wantErr(t *testing.T, err error, sentinel error, part string) {
	t.Helper()
	if !errors.Is(err, sentinel) {
		t.Fatalf("got %v, want %v", err, sentinel)
	}
	var e *Error
	if !errors.As(err, &e) || !strings.Contains(e.Message, part) {
		t.Fatalf("message %q does not contain %q", err, part)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func flush(t *testing.T, c *Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	must(t, c.Flush(ctx))
}

func TestVersionAndCodes(t *testing.T) {
	if strings.Count(Version(), ".") != 2 {
		t.Fatal(Version())
	}
	if CodeConflict.String() != "FO_CONFLICT" || Code(4242).String() != "FO_UNKNOWN" {
		t.Fatal(CodeConflict.String())
	}
	if errors.Is(&Error{Code: CodeConflict, Message: "x"}, ErrNotFound) || !errors.Is(&Error{Code: CodeNotFound}, ErrNotFound) {
		t.Fatal("errors.Is matches by code")
	}
	if errors.Is(ErrNotFound, &Error{Code: CodeNotFound, Message: "x"}) {
		t.Fatal("only sentinels are targets")
	}
}

func TestOpenErrors(t *testing.T) {
	_, err := Open(`{"store_id": "oslo-1"}`)
	wantErr(t, err, ErrConfig, "omnium")
	bad := strings.Replace(config(t, ""), simURL, "http://api.omnium.no", 1)
	_, err = Open(bad)
	wantErr(t, err, ErrConfig, "https")
	if strings.Contains(err.Error(), "sim-secret") {
		t.Fatal("secret in the message")
	}
	_, err = Open("{\x00}")
	wantErr(t, err, ErrInvalidJSON, "NUL")
	cfg := config(t, "")
	c := open(t, cfg)
	_, err = Open(cfg)
	wantErr(t, err, ErrStorage, "in use")
	must(t, c.Close())
	again := open(t, cfg) // released by Close
	must(t, again.Close())
}

func TestEveryRecordCall(t *testing.T) {
	c := open(t, config(t, ""))
	must(t, c.RecordSale(sale("GO-S1", "")))
	must(t, c.RecordSale(sale("GO-S1", "")))
	wantErr(t, c.RecordSale(sale("GO-S1", "tx-other")), ErrConflict, "GO-S1")
	wantErr(t, c.RecordSale(`{"id": "GO-S2", "created_at": "2026-11-28T10:15:00+01:00",
		"lines": [{"line_id": "1", "sku": "A", "quantity": 1, "unit_price": 100}],
		"payments": [{"method": "Card", "amount": 99}]}`), ErrInvalidInput, "sale.payments")
	wantErr(t, c.RecordSale("[1, 2]"), ErrInvalidJSON, "")
	must(t, c.RecordReturn(`{"id": "GO-R1", "sale_id": "GO-S1", "created_at": "2026-11-28T11:00:00+01:00",
		"lines": [{"line_id": "1", "quantity": 1, "amount": 19950, "restock": true}]}`))
	wantErr(t, c.RecordReturn(`{"id": "GO-R2", "sale_id": "GO-S1", "created_at": "2026-11-28T11:00:00+01:00",
		"lines": [{"line_id": "1", "quantity": 9, "amount": 19950}]}`), ErrInvalidInput, "return.lines[0].quantity")
	must(t, c.RecordSale(sale("GO-S3", "")))
	must(t, c.RecordCancellation(`{"id": "GO-X1", "order_id": "GO-S3", "created_at": "2026-11-28T10:20:00+01:00"}`))
	wantErr(t, c.RecordCancellation(`{"id": "GO-X2"}`), ErrInvalidInput, "")
	receipt := `{"id": "GO-RC1", "sale_id": "GO-S1", "receipt_number": "8001", "issued_at": "2026-11-28T10:15:00+01:00",
		"total": 39900, "tax_total": 7980, "currency": "NOK"}`
	must(t, c.RecordReceipt(receipt, []byte("%PDF-1.4\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF\n")))
	wantErr(t, c.RecordReceipt(receipt, []byte("<html>")), ErrInvalidInput, "%PDF-")
	must(t, c.RecordCustomer(`{"id": "GO-C1", "type": "person", "first_name": "Kari", "last_name": "Nordmann"}`))
	wantErr(t, c.RecordCustomer(`{"id": "GO-C2", "type": "company"}`), ErrInvalidInput, "company_name")
	must(t, c.RecordGoodsReception(`{"id": "GO-GR1", "received_at": "2026-11-28T08:00:00+01:00",
		"lines": [{"sku": "GO-SKU", "quantity": 5}]}`))
	wantErr(t, c.RecordStockCount(`{"warehouse_id": "oslo-1", "counted_at": "2026-11-28T08:00:00Z",
		"items": [{"sku": "GO-SKU", "quantity": 12}]}`), ErrInvalidInput, "stock master")
	must(t, c.RecordPickup(`{"id": "GO-PU1", "order_id": "GO-S1", "status": "ready_for_pickup", "at": "2026-11-28T12:00:00Z"}`))
	wantErr(t, c.RecordPickup(`{"id": "GO-PU2", "order_id": "X", "status": "gone", "at": "2026-11-28T12:00:00Z"}`), ErrInvalidInput, "")
	must(t, c.EventNotify(`{"className": "Product", "objectId": "p-1", "storeId": "oslo-1"}`))
	wantErr(t, c.EventNotify(`{"className": "Order"}`), ErrInvalidInput, "")
	must(t, c.SyncNow())
	flush(t, c)
	st, err := c.Status()
	must(t, err)
	if st.Outbox.Pending != 0 || st.Outbox.Dead != 0 || !st.Online {
		t.Fatalf("status %s", st.Raw)
	}
	order := simOrder(t, "GO-S1")
	if order == nil || !strings.Contains(fmt.Sprint(order["returnOrderForms"]), "GO-R1") {
		t.Fatalf("the sale and its return did not reach Omnium: %v", order)
	}
	if o := simOrder(t, "GO-S3"); o == nil || o["status"] != "OrderCanceled" {
		t.Fatalf("cancellation: %v", o)
	}
}

func TestStockCountAtAFlowMasterStore(t *testing.T) {
	c := open(t, config(t, `"stock_master": "flow",`))
	must(t, c.RecordStockCount(`{"warehouse_id": "oslo-1", "counted_at": "2026-11-28T08:00:00Z",
		"items": [{"sku": "GO-COUNTED", "quantity": 12}]}`))
	flush(t, c)
	jobs, err := c.DeadJobs()
	must(t, err)
	if len(jobs) != 0 {
		t.Fatalf("dead: %+v", jobs)
	}
}

func TestEveryRead(t *testing.T) {
	c := open(t, config(t, ""))
	must(t, c.RecordSale(saleOf("GO-READ", "", "GO-READ-SKU")))
	must(t, c.RecordCustomer(`{"id": "GO-C9", "type": "company", "company_name": "Acme AS"}`))
	// The simulator has stores but no catalog or web orders: the rest answer empty or not found.
	var store json.RawMessage
	for i := 0; i < 200; i++ {
		var err error
		if store, err = c.Store("oslo-1"); err == nil {
			break
		}
		wantErr(t, err, ErrNotFound, "")
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(string(store), `"opening_hours"`) {
		t.Fatalf("store: %s", store)
	}
	_, err := c.Store("atlantis")
	wantErr(t, err, ErrNotFound, "")
	stock, err := c.Stock("GO-READ-SKU")
	must(t, err)
	var level struct {
		Warehouses []struct{ Available float64 } `json:"warehouses"`
	}
	must(t, json.Unmarshal(stock, &level))
	available := 0.0
	for _, w := range level.Warehouses {
		available += w.Available
	}
	// Pending until Omnium counts the sale, then in Omnium's level: -2 either way.
	if available != -2 {
		t.Fatalf("stock after a sale of 2: %s", stock)
	}
	cust, err := c.Customer("GO-C9")
	must(t, err)
	if !strings.Contains(string(cust), "Acme AS") {
		t.Fatal(string(cust))
	}
	_, err = c.Customer("GO-NOBODY")
	wantErr(t, err, ErrNotFound, "")
	_, err = c.Product("NO-SUCH-SKU")
	wantErr(t, err, ErrNotFound, "")
	found, err := c.SearchProducts(`{"text": "zz", "limit": 5}`)
	must(t, err)
	if string(found) != `{"items":[],"total":0}` {
		t.Fatal(string(found))
	}
	_, err = c.SearchProducts(`{"limit": 0}`)
	wantErr(t, err, ErrInvalidInput, "")
	for name, read := range map[string]func() (json.RawMessage, error){
		"categories":      c.Categories,
		"brands":          c.Brands,
		"orders":          func() (json.RawMessage, error) { return c.Orders("") },
		"orders(filter)":  func() (json.RawMessage, error) { return c.Orders(`{"status": "New"}`) },
		"purchase orders": func() (json.RawMessage, error) { return c.PurchaseOrders("") },
		"po(filter)":      func() (json.RawMessage, error) { return c.PurchaseOrders(`{"status": "New"}`) },
	} {
		got, err := read()
		must(t, err)
		if string(got) != `{"items":[]}` {
			t.Fatalf("%s: %s", name, got)
		}
	}
	_, err = c.Orders(`{"colour": "red"}`)
	wantErr(t, err, ErrInvalidInput, "")
	_, err = c.Order("NO-SUCH-ORDER")
	wantErr(t, err, ErrNotFound, "")
	must(t, c.ForgetCustomer("GO-C9"))
	_, err = c.Customer("GO-C9")
	wantErr(t, err, ErrNotFound, "")
	wantErr(t, c.ForgetCustomer("GO-NEVER"), ErrNotFound, "")
}

// A product, a category listing, brands and search hits, on the generated catalog.
func TestCatalogReadsOnARealCatalog(t *testing.T) {
	c := open(t, strings.Replace(config(t, ""), simURL, catalogURL, 1))
	type product struct {
		SKU         string   `json:"sku"`
		Name        string   `json:"name"`
		Brand       string   `json:"brand"`
		EAN         *string  `json:"ean"`
		Active      bool     `json:"active"`
		CategoryIDs []string `json:"category_ids"`
		Price       *struct {
			UnitPrice int64  `json:"unit_price"`
			Currency  string `json:"currency"`
		} `json:"price"`
	}
	type page struct {
		Items []product `json:"items"`
		Total int       `json:"total"`
	}
	search := func(query string) page {
		t.Helper()
		raw, err := c.SearchProducts(query)
		must(t, err)
		var p page
		must(t, json.Unmarshal(raw, &p))
		return p
	}
	skus := func(p page) map[string]bool {
		out := map[string]bool{}
		for _, it := range p.Items {
			out[it.SKU] = true
		}
		return out
	}
	// The first pull brings the catalog: wait until it is all there.
	for i := 0; ; i++ {
		cats, err := c.Categories()
		must(t, err)
		st, err := c.Status()
		must(t, err)
		if search(`{"limit": 1}`).Total > 0 && string(cats) != `{"items":[]}` && !st.Pulling {
			break
		}
		if i == 400 {
			t.Fatal("the catalog never arrived")
		}
		time.Sleep(50 * time.Millisecond)
	}
	listed := search(`{"limit": 100}`)
	if listed.Total < 30 || len(listed.Items) == 0 {
		t.Fatalf("listed %d", listed.Total)
	}
	raw, err := c.Product(listed.Items[0].SKU)
	must(t, err)
	var p product
	must(t, json.Unmarshal(raw, &p))
	if p.SKU != listed.Items[0].SKU || p.Name == "" || !p.Active || p.Price == nil ||
		p.Price.Currency != "NOK" || p.Price.UnitPrice <= 0 || len(p.CategoryIDs) == 0 {
		t.Fatalf("product: %s", raw)
	}
	cats, err := c.Categories()
	must(t, err)
	if !strings.Contains(string(cats), fmt.Sprintf(`"id":%q`, p.CategoryIDs[0])) {
		t.Fatalf("category %s not in %s", p.CategoryIDs[0], cats)
	}
	inCategory := search(fmt.Sprintf(`{"category_id": %q, "limit": 100}`, p.CategoryIDs[0]))
	if !skus(inCategory)[p.SKU] || inCategory.Total != len(inCategory.Items) {
		t.Fatalf("category listing: %+v", inCategory)
	}
	for _, it := range inCategory.Items {
		if !strings.Contains(strings.Join(it.CategoryIDs, ","), p.CategoryIDs[0]) {
			t.Fatalf("%s is not in %s", it.SKU, p.CategoryIDs[0])
		}
	}
	word := ""
	for _, w := range strings.Fields(p.Name) {
		if w = strings.Trim(w, ","); len([]rune(w)) >= 3 {
			word = w
			break
		}
	}
	if !skus(search(fmt.Sprintf(`{"text": %q, "limit": 100}`, word)))[p.SKU] {
		t.Fatalf("searching %q did not find %s", word, p.SKU)
	}
	if got := search(fmt.Sprintf(`{"text": %q}`, p.SKU)); got.Items[0].SKU != p.SKU {
		t.Fatalf("by SKU: %+v", got)
	}
	if p.EAN != nil {
		if got := search(fmt.Sprintf(`{"text": %q}`, *p.EAN)); got.Items[0].SKU != p.SKU {
			t.Fatalf("by EAN: %+v", got)
		}
	}
	brands, err := c.Brands()
	must(t, err)
	if !strings.Contains(string(brands), fmt.Sprintf("%q", p.Brand)) {
		t.Fatalf("brand %q not in %s", p.Brand, brands)
	}
	ofBrand := search(fmt.Sprintf(`{"brand": %q, "limit": 100}`, p.Brand))
	if !skus(ofBrand)[p.SKU] {
		t.Fatalf("brand listing: %+v", ofBrand)
	}
}

func TestDeadJobEventsAndRetry(t *testing.T) {
	simPost(t, "/__sim/faults", `{"kind": "status", "status": 400, "path_contains": "PosOrders", "count": 1}`)
	c := open(t, config(t, ""))
	must(t, c.RecordSale(sale("GO-DEAD", "")))
	flush(t, c)
	st, err := c.Status()
	must(t, err)
	if st.Outbox.Dead != 1 {
		t.Fatalf("status %s", st.Raw)
	}
	jobs, err := c.DeadJobs()
	must(t, err)
	if len(jobs) != 1 || jobs[0].Kind != "sale" || jobs[0].EntityID != "GO-DEAD" || jobs[0].LastError == nil {
		t.Fatalf("dead jobs %+v", jobs)
	}
	seen := map[string]bool{}
	for !seen["job.dead"] || !seen["sync.online"] {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		ev, err := c.NextEvent(ctx)
		cancel()
		must(t, err)
		seen[ev.Type] = true
	}
	wantErr(t, c.RetryJob("424242"), ErrNotFound, "")
	must(t, c.RetryJob(jobs[0].ID))
	flush(t, c)
	if st, _ = c.Status(); st.Outbox.Dead != 0 {
		t.Fatalf("status %s", st.Raw)
	}
	if simOrder(t, "GO-DEAD") == nil {
		t.Fatal("the retried sale did not reach Omnium")
	}
	must(t, c.RetryJob(""))
}

func TestContextsEndTheWaits(t *testing.T) {
	c := open(t, config(t, ""))
	// NextEvent: a deadline, then a cancel from another goroutine.
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		_, err := c.NextEvent(ctx)
		cancel()
		if err != nil {
			if !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("got %v", err)
			}
			break
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(200 * time.Millisecond); cancel() }()
	start := time.Now()
	for {
		_, err := c.NextEvent(ctx)
		if err != nil {
			if !errors.Is(err, context.Canceled) || time.Since(start) > 3*time.Second {
				t.Fatalf("got %v after %v", err, time.Since(start))
			}
			break
		}
	}
	// Flush while Omnium is down: the deadline ends it, then it completes once Omnium is back.
	simPost(t, "/__sim/down", `{"ms": 2000}`)
	must(t, c.RecordSale(sale("GO-SLOW", "")))
	short, cancelShort := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancelShort()
	err := c.Flush(short)
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v", err)
	}
	flush(t, c)
	if simOrder(t, "GO-SLOW") == nil {
		t.Fatal("GO-SLOW did not arrive")
	}
}

func TestCloseWhileWaiting(t *testing.T) {
	// Omnium unreachable (nothing answers on port 1): the sale stays pending and Flush
	// waits, however slow this machine is.
	cfg := strings.Replace(config(t, ""), simURL, "http://127.0.0.1:1", 1)
	c, err := Open(cfg)
	must(t, err)
	must(t, c.RecordSale(sale("GO-CLOSE", "")))
	errs := make(chan error, 2)
	var slowest atomic.Int64
	var wg sync.WaitGroup
	for _, waitFor := range []string{"event", "flush"} {
		wg.Add(1)
		go func(waitFor string) {
			defer wg.Done()
			start := time.Now()
			var err error
			if waitFor == "flush" {
				err = c.Flush(context.Background())
			} else {
				for err == nil { // sync.offline may come first
					_, err = c.NextEvent(context.Background())
				}
			}
			if d := time.Since(start).Milliseconds(); d > slowest.Load() {
				slowest.Store(d)
			}
			errs <- err
		}(waitFor)
	}
	time.Sleep(300 * time.Millisecond)
	must(t, c.Close())
	wg.Wait()
	close(errs)
	for err := range errs {
		wantErr(t, err, ErrClosed, "closed")
	}
	if slowest.Load() > 3300 {
		t.Fatalf("waited %d ms", slowest.Load())
	}
	_, err = c.Status()
	wantErr(t, err, ErrClosed, "")
	wantErr(t, c.RecordSale(sale("GO-AFTER", "")), ErrClosed, "")
	must(t, c.Close()) // twice: a no-op
	again := open(t, cfg)
	st, err := again.Status()
	must(t, err)
	if st.Outbox.Pending != 1 {
		t.Fatalf("status %s", st.Raw)
	}
}

func TestLogCallback(t *testing.T) {
	var mu sync.Mutex
	var lines []string
	SetLogCallback(func(level int, message string) {
		mu.Lock()
		lines = append(lines, message)
		n := len(lines)
		mu.Unlock()
		if n == 1 {
			panic("recovered by the binding")
		}
	}, 5)
	defer SetLogCallback(nil, 0)
	c := open(t, config(t, ""))
	must(t, c.RecordSale(sale("GO-LOG", "")))
	flush(t, c)
	must(t, c.Close())
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(lines)
		mu.Unlock()
		if n > 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(lines) < 2 {
		t.Fatalf("log lines: %q (the pump must survive a panic)", lines)
	}
	for _, l := range lines {
		if strings.Contains(l, "sim-secret") {
			t.Fatalf("secret logged: %s", l)
		}
	}
}

// The log callback closes the client when it sees the line fo_forget_customer logs on the
// calling thread: no deadlock, and the client ends up closed with its database released.
func TestCloseFromTheLogCallback(t *testing.T) {
	cfg := config(t, "")
	c, err := Open(cfg)
	must(t, err)
	must(t, c.RecordCustomer(`{"id": "GO-RE", "type": "person", "first_name": "Ola"}`))
	closed := make(chan error, 1)
	var once sync.Once
	SetLogCallback(func(_ int, message string) {
		if strings.Contains(message, "forgotten") {
			once.Do(func() { closed <- c.Close() })
		}
	}, 3)
	defer SetLogCallback(nil, 0)
	done := make(chan error, 1)
	go func() { done <- c.ForgetCustomer("GO-RE") }()
	select {
	case err := <-done:
		must(t, err)
	case <-time.After(15 * time.Second):
		t.Fatal("ForgetCustomer deadlocked on a Close from its own log line")
	}
	select {
	case err := <-closed:
		must(t, err)
	case <-time.After(15 * time.Second):
		t.Fatal("the callback never closed the client")
	}
	_, err = c.Status()
	wantErr(t, err, ErrClosed, "")
	again := open(t, cfg)
	_, err = again.Customer("GO-RE")
	wantErr(t, err, ErrNotFound, "")
}

// The C++ binding against omnium-sim: every call, the exception types with their messages,
// events, status, dead jobs and retry, closing while other threads wait, and move-only
// ownership. Built with -std=c++17 -Wall -Wextra -Werror.
// Usage: client_test <path to omnium-sim>
#include "flow_omnium.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

namespace fo = flow_omnium;
using namespace std::chrono_literals;

static int passed = 0, failed = 0;

#define CHECK(cond, detail)                                                           \
  do {                                                                                \
    if (cond) {                                                                       \
      ++passed;                                                                       \
    } else {                                                                          \
      ++failed;                                                                       \
      std::cerr << "FAIL " << __FILE__ << ":" << __LINE__ << ": " #cond " -- " << detail \
                << "\n";                                                              \
    }                                                                                 \
  } while (0)

// Runs `body`, expecting exception type E; returns its message ("" if it was not thrown).
template <typename E, typename F>
static std::string expect_throw(F body, const char* what) {
  try {
    body();
  } catch (const E& e) {
    ++passed;
    return e.what();
  } catch (const std::exception& e) {
    ++failed;
    std::cerr << "FAIL " << what << ": threw another exception: " << e.what() << "\n";
    return "";
  }
  ++failed;
  std::cerr << "FAIL " << what << ": did not throw\n";
  return "";
}
#define EXPECT_THROW(E, stmt) expect_throw<E>([&] { stmt; }, #stmt)

static bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

// ---- omnium-sim: a child process and its control endpoints ------------------------------

struct sim {
  pid_t pid = -1;
  int port = 0;
  std::string base_url;

  explicit sim(const char* exe, std::vector<std::string> extra = {}) {
    std::vector<std::string> args{exe, "--port", "0"};
    args.insert(args.end(), extra.begin(), extra.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    int fds[2];
    if (pipe(fds) != 0) std::abort();
    pid = fork();
    if (pid == 0) {
      dup2(fds[1], 1);
      close(fds[0]);
      close(fds[1]);
      execv(exe, argv.data());
      _exit(127);
    }
    close(fds[1]);
    std::string line;
    char ch;
    while (read(fds[0], &ch, 1) == 1 && ch != '\n') line += ch;
    close(fds[0]);
    const std::string prefix = "omnium-sim listening on ";
    if (line.rfind(prefix, 0) != 0) {
      std::cerr << "omnium-sim said: " << line << "\n";
      std::exit(2);
    }
    base_url = line.substr(prefix.size());
    port = std::atoi(base_url.substr(base_url.rfind(':') + 1).c_str());
  }
  ~sim() {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
  }

  // One HTTP/1.1 request on loopback; returns the status line's code and the body.
  std::pair<int, std::string> request(const std::string& method, const std::string& path,
                                      const std::string& body = "") const {
    const int s = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      close(s);
      return {0, ""};
    }
    const std::string req = method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" +
                            "Content-Type: application/json\r\nConnection: close\r\n" +
                            "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
    size_t sent = 0;
    while (sent < req.size()) {
      const ssize_t n = write(s, req.data() + sent, req.size() - sent);
      if (n <= 0) break;
      sent += static_cast<size_t>(n);
    }
    std::string resp;
    char buf[4096];
    ssize_t n;
    while ((n = read(s, buf, sizeof buf)) > 0) resp.append(buf, static_cast<size_t>(n));
    close(s);
    const size_t sp = resp.find(' ');
    const int code = sp == std::string::npos ? 0 : std::atoi(resp.c_str() + sp + 1);
    const size_t head_end = resp.find("\r\n\r\n");
    return {code, head_end == std::string::npos ? "" : resp.substr(head_end + 4)};
  }
  void fault(const std::string& json) const { request("POST", "/__sim/faults", json); }
  void down(int ms) const { request("POST", "/__sim/down", "{\"ms\": " + std::to_string(ms) + "}"); }
  std::string order(const std::string& id) const {
    auto r = request("GET", "/__sim/orders/" + id);
    return r.first == 200 ? r.second : "";
  }
};

static std::string config_for(const sim& s, const std::string& db, const std::string& extra = "") {
  return "{\"database_path\": \"" + db + "\", \"store_id\": \"oslo-1\", \"market_id\": \"NOR\"," +
         " \"currency\": \"NOK\", \"terminal_id\": \"t01\"," + extra +
         " \"omnium\": {\"base_url\": \"" + s.base_url +
         "\", \"client_id\": \"sim-client\", \"client_secret\": \"sim-secret\", \"timeout_ms\": 2000}," +
         " \"sync\": {\"retry_initial_ms\": 50, \"retry_max_ms\": 400, \"pull_interval_ms\": 60000}}";
}

static std::string sale(const std::string& id, const std::string& tx = "") {
  return "{\"id\": \"" + id + "\", \"created_at\": \"2026-11-28T10:15:00+01:00\"," +
         " \"lines\": [{\"line_id\": \"1\", \"sku\": \"CPP-SKU\", \"name\": \"T-shirt\", \"quantity\": 2," +
         " \"unit_price\": 19950, \"tax_rate\": 25}]," +
         " \"payments\": [{\"id\": \"P1\", \"method\": \"Card\", \"amount\": 39900, \"transaction_id\": \"" +
         (tx.empty() ? "tx-" + id : tx) + "\"}]}";
}

// The value of the first "key":"value" string member after `from`.
static std::string string_field(const std::string& json, const std::string& key) {
  const std::string k = "\"" + key + "\":\"";
  const size_t at = json.find(k);
  if (at == std::string::npos) return "";
  const size_t start = at + k.size();
  return json.substr(start, json.find('"', start) - start);
}

static_assert(!std::is_copy_constructible_v<fo::client>, "the client is move-only");
static_assert(!std::is_copy_assignable_v<fo::client>, "the client is move-only");
static_assert(std::is_nothrow_move_constructible_v<fo::client>, "moves never throw");
static_assert(std::is_base_of_v<fo::error, fo::conflict>, "one type per code");

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: " << argv[0] << " <omnium-sim>\n";
    return 2;
  }
  sim s(argv[1]);
  char dir_template[] = "/tmp/fo-cpp-XXXXXX";
  const std::string dir = mkdtemp(dir_template);  // mode 0700
  const std::string cfg = config_for(s, dir + "/pos.db");

  std::atomic<int> log_lines{0};
  std::atomic<bool> secret_logged{false};
  fo::set_log_callback(
      [&](int level, const std::string& message) {
        if (level < 1 || level > 5) secret_logged = true;
        if (contains(message, "sim-secret")) secret_logged = true;
        if (++log_lines == 1) throw std::runtime_error("swallowed by the binding");
      },
      5);

  CHECK(fo::result_name(FO_CONFLICT) == "FO_CONFLICT", fo::result_name(FO_CONFLICT));
  CHECK(fo::result_name(4242) == "FO_UNKNOWN", "unknown code");
  CHECK(!fo::version().empty(), "version");

  // Opening: the exception type and message name the problem.
  {
    const std::string msg = EXPECT_THROW(fo::config, fo::client("{\"store_id\": \"oslo-1\"}"));  // no omnium
    CHECK(contains(msg, "omnium"), msg);
    EXPECT_THROW(std::invalid_argument, fo::client(std::string("{\"a\":\0}", 7)));
  }

  {
    fo::client c(cfg);
    const std::string in_use = EXPECT_THROW(fo::storage, fo::client second(cfg));
    CHECK(contains(in_use, "in use"), in_use);

    // Recording, idempotency, conflicts, validation.
    c.record_sale(sale("CPP-S1"));
    c.record_sale(sale("CPP-S1"));
    std::string msg = EXPECT_THROW(fo::conflict, c.record_sale(sale("CPP-S1", "tx-other")));
    CHECK(contains(msg, "CPP-S1"), msg);
    try {
      c.record_sale(sale("CPP-S1", "tx-other"));
    } catch (const fo::error& e) {
      CHECK(e.code() == FO_CONFLICT && std::string(e.name()) == "FO_CONFLICT", e.name());
    }
    msg = EXPECT_THROW(fo::invalid_input,
                       c.record_sale("{\"id\": \"CPP-S2\", \"created_at\": \"2026-11-28T10:15:00+01:00\","
                                     " \"lines\": [{\"line_id\": \"1\", \"sku\": \"A\", \"quantity\": 1, \"unit_price\": 100}],"
                                     " \"payments\": [{\"method\": \"Card\", \"amount\": 99}]}"));
    CHECK(contains(msg, "sale.payments"), msg);
    EXPECT_THROW(fo::invalid_json, c.record_sale("[1, 2]"));
    c.record_return("{\"id\": \"CPP-R1\", \"sale_id\": \"CPP-S1\", \"created_at\": \"2026-11-28T11:00:00+01:00\","
                    " \"lines\": [{\"line_id\": \"1\", \"quantity\": 1, \"amount\": 19950, \"restock\": true}]}");
    c.record_sale(sale("CPP-S3"));
    c.record_cancellation("{\"id\": \"CPP-X1\", \"order_id\": \"CPP-S3\", \"created_at\": \"2026-11-28T10:20:00+01:00\"}");
    EXPECT_THROW(fo::invalid_input, c.record_cancellation("{\"id\": \"CPP-X2\"}"));
    const std::string pdf_text = "%PDF-1.4\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF\n";
    const std::vector<std::uint8_t> pdf(pdf_text.begin(), pdf_text.end());
    const std::string receipt =
        "{\"id\": \"CPP-RC1\", \"sale_id\": \"CPP-S1\", \"receipt_number\": \"7001\","
        " \"issued_at\": \"2026-11-28T10:15:00+01:00\", \"total\": 39900, \"tax_total\": 7980, \"currency\": \"NOK\"}";
    c.record_receipt(receipt, pdf);
    msg = EXPECT_THROW(fo::invalid_input, c.record_receipt(receipt, std::vector<std::uint8_t>{'<', 'h'}));
    CHECK(contains(msg, "%PDF-"), msg);
    c.record_customer("{\"id\": \"CPP-C1\", \"type\": \"person\", \"first_name\": \"Kari\", \"last_name\": \"Nordmann\"}");
    msg = EXPECT_THROW(fo::invalid_input, c.record_customer("{\"id\": \"CPP-C2\", \"type\": \"company\"}"));
    CHECK(contains(msg, "company_name"), msg);
    c.record_goods_reception("{\"id\": \"CPP-GR1\", \"received_at\": \"2026-11-28T08:00:00+01:00\","
                             " \"lines\": [{\"sku\": \"CPP-SKU\", \"quantity\": 5}]}");
    msg = EXPECT_THROW(fo::invalid_input,
                       c.record_stock_count("{\"warehouse_id\": \"oslo-1\", \"counted_at\": \"2026-11-28T08:00:00Z\","
                                            " \"items\": [{\"sku\": \"CPP-SKU\", \"quantity\": 12}]}"));
    CHECK(contains(msg, "stock master"), msg);
    c.record_pickup("{\"id\": \"CPP-PU1\", \"order_id\": \"CPP-S1\", \"status\": \"ready_for_pickup\","
                    " \"at\": \"2026-11-28T12:00:00Z\"}");
    EXPECT_THROW(fo::invalid_input, c.record_pickup("{\"id\": \"CPP-PU2\", \"order_id\": \"X\", \"status\": \"gone\","
                                                    " \"at\": \"2026-11-28T12:00:00Z\"}"));
    c.event_notify("{\"className\": \"Product\", \"objectId\": \"p-1\", \"storeId\": \"oslo-1\"}");
    EXPECT_THROW(fo::invalid_input, c.event_notify("{\"className\": \"Order\"}"));

    c.sync_now();
    c.flush(30s);
    std::string status = c.status();
    CHECK(contains(status, "\"pending\":0") && contains(status, "\"dead\":0") && contains(status, "\"online\":true"),
          status);
    const std::string landed = s.order("CPP-S1");
    CHECK(contains(landed, "CPP-R1"), "the sale and its return reached Omnium: " << landed);
    CHECK(contains(s.order("CPP-S3"), "OrderCanceled"), s.order("CPP-S3"));

    // Reads (the simulator has stores but no catalog or web orders).
    std::string store;
    for (int i = 0; i < 200 && store.empty(); ++i) {
      try {
        store = c.store("oslo-1");
      } catch (const fo::not_found&) {
        c.next_event(50ms);
      }
    }
    CHECK(contains(store, "\"opening_hours\"") && contains(store, "\"warehouses\""), store);
    EXPECT_THROW(fo::not_found, c.store("atlantis"));
    CHECK(contains(c.stock("CPP-SKU"), "\"available\""), c.stock("CPP-SKU"));
    CHECK(contains(c.customer("CPP-C1"), "Nordmann"), c.customer("CPP-C1"));
    EXPECT_THROW(fo::not_found, c.customer("CPP-NOBODY"));
    msg = EXPECT_THROW(fo::not_found, c.product("NO-SUCH-SKU"));
    CHECK(!msg.empty(), "not_found has a message");
    CHECK(c.search_products("{\"text\": \"zz\", \"limit\": 5}") == "{\"items\":[],\"total\":0}",
          c.search_products("{\"text\": \"zz\", \"limit\": 5}"));
    EXPECT_THROW(fo::invalid_input, c.search_products("{\"limit\": 0}"));
    CHECK(c.categories() == "{\"items\":[]}", c.categories());
    CHECK(c.brands() == "{\"items\":[]}", c.brands());
    CHECK(c.orders() == "{\"items\":[]}" && c.orders(std::string("{\"status\": \"New\"}")) == "{\"items\":[]}",
          c.orders());
    EXPECT_THROW(fo::invalid_input, c.orders(std::string("{\"colour\": \"red\"}")));
    EXPECT_THROW(fo::not_found, c.order("NO-SUCH-ORDER"));
    CHECK(c.purchase_orders() == "{\"items\":[]}", c.purchase_orders());
    CHECK(contains(c.purchase_orders(std::string("{\"status\": \"New\"}")), "\"items\""), "po filter");
    c.forget_customer("CPP-C1");
    EXPECT_THROW(fo::not_found, c.customer("CPP-C1"));
    EXPECT_THROW(fo::not_found, c.forget_customer("CPP-NEVER"));

    // A dead job: reported in status, dead_jobs and as an event, then retried.
    s.fault("{\"kind\": \"status\", \"status\": 400, \"path_contains\": \"PosOrders\", \"count\": 1}");
    c.record_sale(sale("CPP-DEAD"));
    c.flush(30s);
    status = c.status();
    CHECK(contains(status, "\"dead\":1"), status);
    const std::string dead = c.dead_jobs();
    CHECK(contains(dead, "CPP-DEAD") && contains(dead, "\"kind\":\"sale\""), dead);
    bool saw_dead = false;
    while (auto event = c.next_event(2s)) {
      if (contains(*event, "\"type\":\"job.dead\"")) saw_dead = true;
    }
    CHECK(saw_dead, "a job.dead event");
    EXPECT_THROW(fo::not_found, c.retry_job(std::string("424242")));
    c.retry_job(string_field(dead, "id"));
    c.flush(30s);
    CHECK(contains(c.status(), "\"dead\":0"), c.status());
    CHECK(!s.order("CPP-DEAD").empty(), "the retried sale reached Omnium");
    c.retry_job();

    // next_event times out with nullopt; flush times out while Omnium is down.
    int drained = 0;  // events keep coming while the retried job lands; then none within 100 ms
    while (c.next_event(100ms) && drained < 100) ++drained;
    CHECK(drained < 100, "next_event returns nullopt when no event comes");
    s.down(2000);
    c.record_sale(sale("CPP-SLOW"));
    msg = EXPECT_THROW(fo::timed_out, c.flush(500ms));
    CHECK(contains(msg, "pending"), msg);
    c.flush(30s);

    // Move-only: the moved-from client is closed, the moved-to one works.
    fo::client moved(std::move(c));
    CHECK(c.is_closed() && !moved.is_closed(), "moved");
    EXPECT_THROW(fo::closed, c.status());
    CHECK(contains(moved.status(), "\"outbox\""), "moved-to client works");
  }  // the destructor closed it: the database opens again
  {
    fo::client again(cfg);
    CHECK(contains(again.status(), "\"pending\":0"), again.status());
  }

  // Closing while other threads wait in next_event and flush: both throw closed at once.
  // Omnium is unreachable (nothing answers on port 1): the sale stays pending and flush
  // waits, however slow this machine is.
  {
    std::string unreachable = cfg;
    unreachable.replace(unreachable.find(s.base_url), s.base_url.size(), "http://127.0.0.1:1");
    fo::client c(unreachable);
    c.record_sale(sale("CPP-CLOSE"));
    std::atomic<int> closed_seen{0};
    std::atomic<long> slowest_ms{0};
    auto waiter = [&](bool flush) {
      const auto start = std::chrono::steady_clock::now();
      try {
        if (flush) {
          c.flush(std::chrono::milliseconds::max());
        } else {
          for (;;) c.next_event(std::chrono::milliseconds::max());  // until close
        }
      } catch (const fo::closed&) {
        ++closed_seen;
      } catch (const std::exception& e) {
        std::cerr << "waiter: " << e.what() << "\n";
      }
      const long ms = static_cast<long>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                            std::chrono::steady_clock::now() - start)
                                            .count());
      long prev = slowest_ms.load();
      while (ms > prev && !slowest_ms.compare_exchange_weak(prev, ms)) {
      }
    };
    std::thread t1(waiter, false), t2(waiter, true);
    std::this_thread::sleep_for(300ms);
    const auto close_start = std::chrono::steady_clock::now();
    c.close();
    t1.join();
    t2.join();
    const auto close_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - close_start);
    CHECK(closed_seen == 2, "both waiters got closed: " << closed_seen.load());
    CHECK(slowest_ms < 3300, "they waited " << slowest_ms.load() << " ms");
    CHECK(close_ms.count() < 11000, "close took " << close_ms.count() << " ms");
    EXPECT_THROW(fo::closed, c.record_sale(sale("CPP-AFTER")));
    EXPECT_THROW(fo::closed, c.next_event(0ms));
    c.close();  // twice: no-op
    fo::client again(unreachable);  // released
    CHECK(contains(again.status(), "\"pending\":1"), again.status());
  }

  // close() from the log callback while this thread is inside a call on the same client
  // (fo_forget_customer logs on the calling thread): no deadlock; released after the call.
  {
    fo::client c(cfg);
    c.record_customer("{\"id\": \"CPP-RE\", \"type\": \"person\", \"first_name\": \"Ola\"}");
    std::atomic<bool> closed_in_callback{false};
    fo::set_log_callback(
        [&](int, const std::string& message) {
          if (contains(message, "forgotten") && !closed_in_callback) {
            c.close();
            closed_in_callback = c.is_closed();
          }
        },
        3);
    std::atomic<bool> done{false};
    std::thread t([&] {
      c.forget_customer("CPP-RE");
      done = true;
    });
    for (int i = 0; i < 150 && !done; ++i) std::this_thread::sleep_for(100ms);
    CHECK(done, "forget_customer deadlocked on a close from its own log line");
    if (!done) std::_Exit(1);  // cannot join a deadlocked thread
    t.join();
    CHECK(closed_in_callback, "closed from the callback");
    EXPECT_THROW(fo::closed, c.status());
    fo::client again(cfg);  // released when the call returned
    EXPECT_THROW(fo::not_found, again.customer("CPP-RE"));
  }

  // Catalog reads on a real catalog: a second simulator serving generated products.
  {
    sim cat(argv[1], {"--catalog", "30", "--seed", "7"});
    fo::client c(config_for(cat, dir + "/catalog.db"));
    bool arrived = false;
    for (int i = 0; i < 400 && !arrived; ++i) {
      arrived = !contains(c.search_products("{\"limit\": 1}"), "\"total\":0") &&
                c.categories() != "{\"items\":[]}" && contains(c.status(), "\"pulling\":false");
      if (!arrived) std::this_thread::sleep_for(50ms);
    }
    CHECK(arrived, "the generated catalog arrived");
    const std::string listed = c.search_products("{\"limit\": 100}");
    const std::string sku = string_field(listed, "sku");
    CHECK(!sku.empty(), listed);
    const std::string product = c.product(sku);
    CHECK(string_field(product, "sku") == sku && contains(product, "\"active\":true") &&
              contains(product, "\"currency\":\"NOK\""),
          product);
    // Its first category: listed by the library, and its listing holds the product.
    const size_t cats_at = product.find("\"category_ids\":[\"");
    CHECK(cats_at != std::string::npos, product);
    const size_t cat_start = cats_at + std::strlen("\"category_ids\":[\"");
    const std::string category = product.substr(cat_start, product.find('"', cat_start) - cat_start);
    CHECK(contains(c.categories(), "\"id\":\"" + category + "\""), c.categories());
    const std::string in_category =
        c.search_products("{\"category_id\": \"" + category + "\", \"limit\": 100}");
    CHECK(contains(in_category, "\"sku\":\"" + sku + "\""), in_category);
    // Search hits: a word of its name, its SKU first, its EAN first.
    const std::string name = string_field(product, "name");
    std::string word;
    for (size_t at = 0; at <= name.size() && word.empty();) {
      size_t end = name.find(' ', at);
      if (end == std::string::npos) end = name.size();
      std::string w = name.substr(at, end - at);
      if (!w.empty() && w.back() == ',') w.pop_back();
      if (w.size() >= 3) word = w;
      at = end + 1;
    }
    CHECK(contains(c.search_products("{\"text\": \"" + word + "\", \"limit\": 100}"), "\"sku\":\"" + sku + "\""),
          word);
    CHECK(string_field(c.search_products("{\"text\": \"" + sku + "\"}"), "sku") == sku, "by SKU");
    const std::string ean = string_field(product, "ean");
    if (!ean.empty()) {
      CHECK(string_field(c.search_products("{\"text\": \"" + ean + "\"}"), "sku") == sku, "by EAN " << ean);
    }
    const std::string brand = string_field(product, "brand");
    CHECK(contains(c.brands(), "\"" + brand + "\""), c.brands());
    CHECK(contains(c.search_products("{\"brand\": \"" + brand + "\", \"limit\": 100}"), "\"sku\":\"" + sku + "\""),
          brand);
  }

  fo::set_log_callback(nullptr);
  CHECK(log_lines > 0, "the log callback was called");
  CHECK(!secret_logged, "no secret (and only levels 1..5) in the log");
  std::string rm = "rm -rf " + dir;
  if (std::system(rm.c_str()) != 0) std::cerr << "could not remove " << dir << "\n";
  std::cout << passed << " passed, " << failed << " failed\n";
  return failed == 0 ? 0 : 1;
}

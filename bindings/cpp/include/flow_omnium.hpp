// flow_omnium.hpp: header-only C++17 wrapper over the flow-omnium C API (flow_omnium.h).
//
//   flow_omnium::client pos(R"({"database_path": "/var/lib/pos/fo.db", ...})");
//   pos.record_sale(sale_json);                 // throws flow_omnium::conflict, ::invalid_input, ...
//   while (auto event = pos.next_event(std::chrono::seconds(1))) handle(*event);
//
// Errors are exceptions, each result code its own type derived from flow_omnium::error
// (code() and the library's message in what()). Why exceptions and not an expected-style
// result: the client is constructed from its configuration, and a constructor can only
// report failure by throwing (C++17 has no std::expected), so RAII ownership and errors
// fit together only this way; a failed record call (FO_CONFLICT, FO_STORAGE_FULL) must
// never be dropped silently by a caller that forgot to look at a return value; and the
// two outcomes that are not failures are plain values: next_event returns std::nullopt
// when no event came, reads throw not_found only for an unknown id.
//
// JSON goes in and comes out as std::string; returned strings are copied and the
// library's copy freed at once. The client is move-only and closes in its destructor.
//
// Threads: a client may be used from many threads. close() makes later calls throw
// flow_omnium::closed and wakes a thread blocked in next_event() or flush() (it throws
// closed within about 100 ms): long waits are made of short waits of the C library, so no
// call can still be entering the C library when the handle is released. Do not destroy or
// move a client while other threads use it (close() it instead).
#ifndef FLOW_OMNIUM_HPP
#define FLOW_OMNIUM_HPP

#include "flow_omnium.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace flow_omnium {

// A result code other than FO_OK, with fo_last_error_message() of the failed call.
class error : public std::runtime_error {
 public:
  error(fo_result code, const std::string& message)
      : std::runtime_error(message), code_(code) {}
  fo_result code() const noexcept { return code_; }
  // "FO_CONFLICT", ...
  const char* name() const noexcept { return fo_result_name(static_cast<int>(code_)); }

 private:
  fo_result code_;
};

// One exception type per result code, so callers catch exactly what they handle.
template <fo_result Code>
class coded_error : public error {
 public:
  explicit coded_error(const std::string& message) : error(Code, message) {}
};
using null_argument = coded_error<FO_NULL_ARGUMENT>;
using invalid_json = coded_error<FO_INVALID_JSON>;
using invalid_input = coded_error<FO_INVALID_INPUT>;
using conflict = coded_error<FO_CONFLICT>;
using not_found = coded_error<FO_NOT_FOUND>;
using timed_out = coded_error<FO_TIMEOUT>;
using storage_full = coded_error<FO_STORAGE_FULL>;
using storage = coded_error<FO_STORAGE>;
using closed = coded_error<FO_CLOSED>;
using config = coded_error<FO_CONFIG>;
using panic = coded_error<FO_PANIC>;
using internal = coded_error<FO_INTERNAL>;

[[noreturn]] inline void throw_error(fo_result code, const std::string& message) {
  switch (code) {
    case FO_NULL_ARGUMENT: throw null_argument(message);
    case FO_INVALID_JSON: throw invalid_json(message);
    case FO_INVALID_INPUT: throw invalid_input(message);
    case FO_CONFLICT: throw conflict(message);
    case FO_NOT_FOUND: throw not_found(message);
    case FO_TIMEOUT: throw timed_out(message);
    case FO_STORAGE_FULL: throw storage_full(message);
    case FO_STORAGE: throw storage(message);
    case FO_CLOSED: throw closed(message);
    case FO_CONFIG: throw config(message);
    case FO_PANIC: throw panic(message);
    case FO_INTERNAL: throw internal(message);
    default: throw error(code, message);
  }
}

// Throws the exception of `code` (read on the thread of the failed call, before any other
// fo_ call) unless it is FO_OK.
inline void check(fo_result code) {
  if (code != FO_OK) throw_error(code, fo_last_error_message());
}

inline std::string version() { return fo_version(); }
inline std::string result_name(int code) { return fo_result_name(code); }

namespace detail {

// A NUL-terminated copy is not needed: std::string::c_str() is one. An embedded NUL
// would silently cut the JSON short, so it is refused.
inline const char* c_arg(const std::string& s, const char* what) {
  if (s.find('\0') != std::string::npos)
    throw std::invalid_argument(std::string(what) + " contains a NUL byte");
  return s.c_str();
}

// Owns a string the library returned.
class owned_string {
 public:
  owned_string() = default;
  owned_string(const owned_string&) = delete;
  owned_string& operator=(const owned_string&) = delete;
  ~owned_string() { fo_string_free(p_); }
  char** out() noexcept { return &p_; }
  std::string str() const { return p_ != nullptr ? std::string(p_) : std::string(); }

 private:
  char* p_ = nullptr;
};

using log_fn = std::function<void(int level, const std::string& message)>;

inline std::shared_ptr<const log_fn>& log_target() {
  static std::shared_ptr<const log_fn> target;
  return target;
}

// One trampoline for the whole process: the library may still be calling it after a new
// callback is registered, so it never goes away; it calls whatever is current.
extern "C" inline void log_trampoline(void*, int level, const char* message) {
  try {
    std::shared_ptr<const log_fn> target = std::atomic_load(&log_target());
    if (target && *target) (*target)(level, message != nullptr ? message : "");
  } catch (...) {
    // An exception must never unwind into the library.
  }
}

}  // namespace detail

// Sends the library's log lines up to `max_level` (1 error ... 5 trace) to `callback`, from
// the library's threads (so it must be thread-safe). An empty callback turns logging off.
// Exceptions thrown by the callback are swallowed. Process-wide. Do not close a client
// from the callback.
inline void set_log_callback(detail::log_fn callback, int max_level = 3) {
  if (!callback || max_level <= 0) {
    fo_set_log_callback(nullptr, nullptr, 0);
    std::atomic_store(&detail::log_target(), std::shared_ptr<const detail::log_fn>());
    return;
  }
  std::atomic_store(&detail::log_target(),
                    std::shared_ptr<const detail::log_fn>(
                        std::make_shared<detail::log_fn>(std::move(callback))));
  fo_set_log_callback(&detail::log_trampoline, nullptr, max_level);
}

class client {
 public:
  // Opens (or creates) the database and starts the sync worker. Throws flow_omnium::config,
  // ::storage ("in use" when another client holds the database), ::storage_full, ...
  explicit client(const std::string& config_json) : s_(std::make_unique<state>()) {
    check(fo_client_open(detail::c_arg(config_json, "config"), &s_->handle));
  }
  client(const client&) = delete;
  client& operator=(const client&) = delete;
  client(client&& other) noexcept = default;
  client& operator=(client&& other) noexcept {
    if (this != &other) {
      close();
      s_ = std::move(other.s_);
    }
    return *this;
  }
  ~client() { close(); }

  // Stops the sync worker and releases the database (within about 10 s). Threads waiting
  // in next_event() or flush() throw closed; later calls throw closed. Idempotent.
  void close() noexcept {
    if (!s_) return;
    fo_client* handle = nullptr;
    {
      std::unique_lock<std::mutex> lock(s_->m);
      if (s_->closed) return;
      s_->closed = true;
      const unsigned mine = calls_on_this_thread(s_.get());
      s_->cv.wait(lock, [&] { return s_->in_flight <= mine; });
      if (s_->in_flight > 0) return;  // re-entrant: the last call to finish releases it
      handle = std::exchange(s_->handle, nullptr);
    }
    fo_client_close(handle);
  }
  bool is_closed() const {
    if (!s_) return true;
    std::lock_guard<std::mutex> lock(s_->m);
    return s_->closed;
  }

  // Recording: validated and committed durably, never waiting on the network.
  void record_sale(const std::string& json) { call(fo_record_sale, json, "sale"); }
  void record_return(const std::string& json) { call(fo_record_return, json, "return"); }
  void record_cancellation(const std::string& json) {
    call(fo_record_cancellation, json, "cancellation");
  }
  void record_receipt(const std::string& json, const std::vector<std::uint8_t>& pdf) {
    in_call c(*this);
    check(fo_record_receipt(c.handle, detail::c_arg(json, "receipt"), pdf.data(), pdf.size()));
  }
  void record_customer(const std::string& json) { call(fo_record_customer, json, "customer"); }
  void record_goods_reception(const std::string& json) {
    call(fo_record_goods_reception, json, "goods_reception");
  }
  void record_stock_count(const std::string& json) {
    call(fo_record_stock_count, json, "stock_count");
  }
  void record_pickup(const std::string& json) { call(fo_record_pickup, json, "pickup"); }
  // An Omnium event-subscription payload, as it arrived.
  void event_notify(const std::string& json) { call(fo_event_notify, json, "omnium_event"); }
  void forget_customer(const std::string& id) { call(fo_forget_customer, id, "customer_id"); }

  // Reading from the local database (works offline). Unknown ids throw not_found.
  std::string orders(const std::optional<std::string>& filter = std::nullopt) {
    return read_opt(fo_orders_list, filter);
  }
  std::string order(const std::string& id) { return read(fo_order_get, id, "order_id"); }
  std::string purchase_orders(const std::optional<std::string>& filter = std::nullopt) {
    return read_opt(fo_purchase_orders_list, filter);
  }
  std::string customer(const std::string& id) { return read(fo_customer_get, id, "customer_id"); }
  std::string product(const std::string& sku) { return read(fo_product_get, sku, "sku"); }
  std::string search_products(const std::string& query) {
    return read(fo_product_search, query, "query");
  }
  std::string stock(const std::string& sku) { return read(fo_stock_get, sku, "sku"); }
  std::string store(const std::string& id) { return read(fo_store_get, id, "store_id"); }
  std::string categories() { return read0(fo_categories_list); }
  std::string brands() { return read0(fo_brands_list); }

  // Sync.
  void sync_now() {
    in_call c(*this);
    check(fo_sync_now(c.handle));
  }
  // Waits until nothing is pending (dead jobs and jobs behind them do not count); throws
  // timed_out after `timeout` (milliseconds::max(): no limit), closed if the client is
  // closed meanwhile.
  void flush(std::chrono::milliseconds timeout) {
    const auto deadline = deadline_after(timeout);
    for (;;) {
      const std::uint32_t left = left_ms(deadline);
      fo_result r;
      {
        in_call c(*this);
        r = fo_flush(c.handle, std::min(left, slice_ms));
        if (r == FO_TIMEOUT && left <= slice_ms) {
          throw timed_out(std::string(fo_last_error_message()) + " (waited " +
                          std::to_string(timeout.count()) + " ms in all)");
        }
        if (r != FO_TIMEOUT) check(r);
      }
      if (r == FO_OK) return;
    }
  }
  std::string status() { return read0(fo_status); }
  std::string dead_jobs() { return read0(fo_dead_jobs); }
  // Gives a dead job (an "id" from dead_jobs()) new attempts; nullopt retries every one.
  void retry_job(const std::optional<std::string>& job_id = std::nullopt) {
    in_call c(*this);
    check(fo_job_retry(c.handle, job_id ? detail::c_arg(*job_id, "job_id") : nullptr));
  }
  // The next event's JSON, waiting up to `timeout` (milliseconds::max(): until one comes or
  // the client is closed); nullopt when none came.
  std::optional<std::string> next_event(std::chrono::milliseconds timeout) {
    const auto deadline = deadline_after(timeout);
    for (;;) {
      const std::uint32_t left = left_ms(deadline);
      {
        in_call c(*this);
        detail::owned_string out;
        const fo_result r = fo_next_event(c.handle, std::min(left, slice_ms), out.out());
        if (r == FO_OK) return out.str();
        if (r != FO_TIMEOUT) check(r);
      }
      if (left <= slice_ms) return std::nullopt;
    }
  }

 private:
  static constexpr std::uint32_t slice_ms = 100;

  struct state {
    std::mutex m;
    std::condition_variable cv;
    fo_client* handle = nullptr;
    unsigned in_flight = 0;
    bool closed = false;
  };

  // The clients this thread is inside a call of, innermost last (a log callback called
  // during a call may call close(); close() must not wait for that call).
  static std::vector<const state*>& thread_calls() {
    thread_local std::vector<const state*> calls;
    return calls;
  }
  static unsigned calls_on_this_thread(const state* s) {
    const auto& calls = thread_calls();
    return static_cast<unsigned>(std::count(calls.begin(), calls.end(), s));
  }

  // Holds the handle for one C call: refused once closed; close() waits for it to end.
  class in_call {
   public:
    explicit in_call(client& c) : s_(c.s_.get()) {
      if (s_ == nullptr) throw closed("the client was moved from");
      std::lock_guard<std::mutex> lock(s_->m);
      if (s_->closed) throw closed("the client is closed");
      thread_calls().push_back(s_);  // first: if it throws, nothing has changed
      ++s_->in_flight;
      handle = s_->handle;
    }
    in_call(const in_call&) = delete;
    in_call& operator=(const in_call&) = delete;
    ~in_call() {
      fo_client* release = nullptr;
      {
        std::lock_guard<std::mutex> lock(s_->m);
        auto& calls = thread_calls();
        calls.erase(std::find(calls.rbegin(), calls.rend(), s_).base() - 1);
        if (--s_->in_flight == 0 && s_->closed) release = std::exchange(s_->handle, nullptr);
      }
      s_->cv.notify_all();
      if (release != nullptr) fo_client_close(release);
    }
    fo_client* handle;

   private:
    state* s_;
  };

  // now + timeout, saturated (no overflow for milliseconds::max()); negative counts as 0.
  static std::chrono::steady_clock::time_point deadline_after(std::chrono::milliseconds timeout) {
    using namespace std::chrono;
    const auto now = steady_clock::now();
    const auto room = duration_cast<milliseconds>(steady_clock::time_point::max() - now);
    return now + std::clamp(timeout, milliseconds(0), room);
  }

  static std::uint32_t left_ms(std::chrono::steady_clock::time_point deadline) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    return static_cast<std::uint32_t>(
        std::clamp<std::int64_t>(left.count(), 0, INT32_MAX));
  }

  void call(fo_result (*fn)(fo_client*, const char*), const std::string& arg, const char* what) {
    in_call c(*this);
    check(fn(c.handle, detail::c_arg(arg, what)));
  }
  std::string read(fo_result (*fn)(fo_client*, const char*, char**), const std::string& arg,
                   const char* what) {
    in_call c(*this);
    detail::owned_string out;
    check(fn(c.handle, detail::c_arg(arg, what), out.out()));
    return out.str();
  }
  std::string read_opt(fo_result (*fn)(fo_client*, const char*, char**),
                       const std::optional<std::string>& arg) {
    in_call c(*this);
    detail::owned_string out;
    check(fn(c.handle, arg ? detail::c_arg(*arg, "filter") : nullptr, out.out()));
    return out.str();
  }
  std::string read0(fo_result (*fn)(fo_client*, char**)) {
    in_call c(*this);
    detail::owned_string out;
    check(fn(c.handle, out.out()));
    return out.str();
  }

  std::unique_ptr<state> s_;
};

}  // namespace flow_omnium

#endif  // FLOW_OMNIUM_HPP

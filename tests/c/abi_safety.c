/*
 * The C ABI never crashes, hangs or surprises the host (issue 7): one scenario per run, so
 * that an abort or a hang is caught by the harness (tests/c_api.rs) and names its scenario.
 * Every scenario arms alarm(): a deadlock ends the process with SIGALRM instead of hanging.
 *
 * Usage: abi_safety <scenario> <dir>
 *   close_race         calls on many threads while the client is closed; tombstone; double
 *                      close; a pointer that is no handle
 *   log_reentry        a log callback that removes itself, calls back in, and races with
 *                      fo_set_log_callback on other threads
 *   log_replace_waits  fo_set_log_callback returns only when no call of the old callback
 *                      is running on another thread; none starts after it returned
 *   close_in_callback  the log callback closes the client from the sync thread
 *   flush_in_callback  the log callback calls fo_flush on the sync thread with jobs pending:
 *                      it returns at once (FO_TIMEOUT), never holding the sync thread
 *   flush_in_fetch_callback  (with a config naming the simulator, harness-made) the same
 *                      from the thread that fetches the next scroll page while the sync
 *                      thread applies one and then waits for it
 *   tls_destructor     every kind of export from a pthread_key destructor
 *   tls_destructor_autostart  the same with a running sync worker: close from the
 *                      destructor joins it and releases the database (reopen works)
 *   inputs             config result codes, an absurd pdf_len, over-long ids
 */
#define _POSIX_C_SOURCE 200809L
#include "flow_omnium.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int failures = 0;

#define CHECK(cond, ...)                                                  \
  do {                                                                    \
    if (!(cond)) {                                                        \
      failures++;                                                         \
      fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                \
      fprintf(stderr, __VA_ARGS__);                                       \
      fprintf(stderr, "\n");                                              \
    }                                                                     \
  } while (0)

#define EXPECT(call, want)                                                            \
  do {                                                                                \
    fo_result got_ = (call);                                                          \
    CHECK(got_ == (want), "%s gave %s, wanted %s (%s)", #call, fo_result_name(got_),  \
          fo_result_name(want), fo_last_error_message());                             \
  } while (0)

static char db_path[4096];
static char config[8192];

static void make_config(const char *dir, const char *name, int autostart) {
  snprintf(db_path, sizeof db_path, "%s/%s", dir, name);
  snprintf(config, sizeof config,
           "{\"database_path\": \"%s\", \"store_id\": \"oslo-1\", \"market_id\": \"NOR\","
           " \"currency\": \"NOK\", \"omnium\": {\"base_url\": \"http://127.0.0.1:9\","
           " \"client_id\": \"c\", \"client_secret\": \"abi-safety-secret\", \"timeout_ms\": 1000},"
           " \"sync\": {\"autostart\": %s, \"retry_initial_ms\": 50, \"retry_max_ms\": 100}}",
           db_path, autostart ? "true" : "false");
}

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void sleep_ms(long ms) {
  struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&t, NULL);
}

static void sale_json(char *buf, size_t len, const char *prefix, long i) {
  snprintf(buf, len,
           "{\"id\": \"%s-%ld\", \"created_at\": \"2026-11-28T10:15:00+01:00\","
           " \"lines\": [{\"line_id\": \"1\", \"sku\": \"SKU-1\", \"quantity\": 1, \"unit_price\": 10000}],"
           " \"payments\": [{\"method\": \"Card\", \"amount\": 10000}]}",
           prefix, i);
}

/* ---------------------------------------------------------------- close_race */

static fo_client *shared_client = NULL;
static atomic_int racers_done = 0;

static int allowed(fo_result r, fo_result also) {
  return r == FO_OK || r == FO_CLOSED || r == also;
}

static void *racer(void *arg) {
  long id = (long)(intptr_t)arg;
  for (long i = 0;; i++) {
    char sale[1024];
    char prefix[32];
    snprintf(prefix, sizeof prefix, "T%ld", id);
    sale_json(sale, sizeof sale, prefix, i);
    char *json = NULL;
    fo_result r;
    switch ((id + i) % 6) {
      case 0:
        r = fo_record_sale(shared_client, sale);
        CHECK(allowed(r, FO_OK), "record during close: %s", fo_result_name(r));
        break;
      case 1:
        r = fo_status(shared_client, &json);
        CHECK(allowed(r, FO_OK), "status during close: %s", fo_result_name(r));
        break;
      case 2:
        r = fo_next_event(shared_client, 1, &json);
        CHECK(allowed(r, FO_TIMEOUT), "next_event during close: %s", fo_result_name(r));
        break;
      case 3:
        r = fo_product_get(shared_client, "SKU-1", &json);
        CHECK(allowed(r, FO_NOT_FOUND), "product_get during close: %s", fo_result_name(r));
        break;
      case 4:
        r = fo_sync_now(shared_client);
        CHECK(allowed(r, FO_OK), "sync_now during close: %s", fo_result_name(r));
        break;
      default:
        r = fo_flush(shared_client, 0);
        CHECK(allowed(r, FO_TIMEOUT), "flush during close: %s", fo_result_name(r));
        break;
    }
    if (r == FO_OK) fo_string_free(json);
    if (r == FO_CLOSED) break;
  }
  atomic_fetch_add(&racers_done, 1);
  return NULL;
}

static int close_race(const char *dir) {
  for (int round = 0; round < 5; round++) {
    char name[64];
    snprintf(name, sizeof name, "race-%d.db", round);
    make_config(dir, name, round % 2);
    fo_client *c = NULL;
    EXPECT(fo_client_open(config, &c), FO_OK);
    if (c == NULL) return 1;
    shared_client = c;
    atomic_store(&racers_done, 0);
    enum { N = 6 };
    pthread_t t[N];
    for (long i = 0; i < N; i++) pthread_create(&t[i], NULL, racer, (void *)(intptr_t)i);
    sleep_ms(30 + 40 * round);
    fo_client_close(c);
    for (int i = 0; i < N; i++) pthread_join(t[i], NULL);
    CHECK(atomic_load(&racers_done) == N, "every racer saw FO_CLOSED");

    /* The handle is a tombstone: every call says FO_CLOSED, close again is a no-op. */
    char *json = NULL;
    EXPECT(fo_status(c, &json), FO_CLOSED);
    CHECK(strstr(fo_last_error_message(), "closed") != NULL, "message: %s", fo_last_error_message());
    EXPECT(fo_record_sale(c, "{}"), FO_CLOSED);
    EXPECT(fo_next_event(c, 1000, &json), FO_CLOSED);
    EXPECT(fo_flush(c, 1000), FO_CLOSED);
    EXPECT(fo_sync_now(c), FO_CLOSED);
    EXPECT(fo_dead_jobs(c, &json), FO_CLOSED);
    EXPECT(fo_job_retry(c, NULL), FO_CLOSED);
    EXPECT(fo_categories_list(c, &json), FO_CLOSED);
    EXPECT(fo_forget_customer(c, "C-1"), FO_CLOSED);
    CHECK(json == NULL, "no out-pointer written after close");
    fo_client_close(c);
    fo_client_close(c);

    /* The database was released: it opens again. */
    fo_client *again = NULL;
    EXPECT(fo_client_open(config, &again), FO_OK);
    CHECK(again != c, "a new handle is never a closed one's address");
    EXPECT(fo_status(c, &json), FO_CLOSED);
    fo_client_close(again);
  }

  /* A pointer that is no handle is refused, never read. */
  long not_a_client[4] = {0, 0, 0, 0};
  fo_client *bogus = (fo_client *)(void *)not_a_client;
  char *json = NULL;
  EXPECT(fo_status(bogus, &json), FO_INVALID_INPUT);
  EXPECT(fo_record_sale(bogus, "{}"), FO_INVALID_INPUT);
  fo_client_close(bogus);
  CHECK(not_a_client[0] == 0 && not_a_client[3] == 0, "the foreign memory was not written");
  return 0;
}

/* --------------------------------------------------------------- log_reentry */

static atomic_int removed_calls = 0;
static atomic_int reentrant_calls = 0;
static _Thread_local int reentrant_depth = 0;
static atomic_int max_depth = 0;
static atomic_int stop_flag = 0;

static void remove_self(void *user_data, int level, const char *message) {
  (void)user_data;
  (void)level;
  (void)message;
  atomic_fetch_add(&removed_calls, 1);
  fo_set_log_callback(NULL, NULL, 0);
}

static void call_back_in(void *user_data, int level, const char *message) {
  (void)level;
  (void)message;
  fo_client *c = (fo_client *)user_data;
  int depth = ++reentrant_depth;
  if (depth > atomic_load(&max_depth)) atomic_store(&max_depth, depth);
  atomic_fetch_add(&reentrant_calls, 1);
  char *json = NULL;
  if (fo_status(c, &json) == FO_OK) fo_string_free(json);
  /* Logs again (debug) from inside the callback: that line is dropped, not recursed into. */
  fo_event_notify(c, "{\"className\": \"Product\"}");
  /* Replaces itself with itself. */
  fo_set_log_callback(call_back_in, c, 5);
  reentrant_depth--;
}

static void *logger_thread(void *arg) {
  fo_client *c = (fo_client *)arg;
  while (!atomic_load(&stop_flag)) {
    fo_result r = fo_event_notify(c, "{\"className\": \"Product\"}");
    CHECK(r == FO_OK, "event_notify: %s", fo_result_name(r));
  }
  return NULL;
}

static void *setter_thread(void *arg) {
  fo_client *c = (fo_client *)arg;
  for (int i = 0; !atomic_load(&stop_flag); i++) {
    if (i % 3 == 0)
      fo_set_log_callback(NULL, NULL, 0);
    else
      fo_set_log_callback(call_back_in, c, 5);
  }
  return NULL;
}

static int log_reentry(const char *dir) {
  make_config(dir, "log.db", 0);
  /* Removing itself from inside the callback (used to hang for ever). */
  fo_set_log_callback(remove_self, NULL, 5);
  fo_client *c = NULL;
  EXPECT(fo_client_open(config, &c), FO_OK);
  if (c == NULL) return 1;
  CHECK(atomic_load(&removed_calls) == 1, "the callback ran once and removed itself (%d)",
        atomic_load(&removed_calls));
  EXPECT(fo_event_notify(c, "{\"className\": \"Product\"}"), FO_OK);
  CHECK(atomic_load(&removed_calls) == 1, "removed: not called again");

  /* Calling back in: fo_status, a call that logs, and fo_set_log_callback. */
  fo_set_log_callback(call_back_in, c, 5);
  EXPECT(fo_event_notify(c, "{\"className\": \"Product\"}"), FO_OK);
  CHECK(atomic_load(&reentrant_calls) == 1, "one line, one call (%d): the nested line was dropped",
        atomic_load(&reentrant_calls));

  /* Lines logged on several threads while others swap the callback (a writer waiting on a
     lock held across the callback used to deadlock both). */
  enum { LOGGERS = 4, SETTERS = 2 };
  pthread_t t[LOGGERS + SETTERS];
  for (int i = 0; i < LOGGERS; i++) pthread_create(&t[i], NULL, logger_thread, c);
  for (int i = 0; i < SETTERS; i++) pthread_create(&t[LOGGERS + i], NULL, setter_thread, c);
  sleep_ms(1500);
  atomic_store(&stop_flag, 1);
  for (int i = 0; i < LOGGERS + SETTERS; i++) pthread_join(t[i], NULL);
  CHECK(atomic_load(&max_depth) == 1, "the callback never recursed into itself (depth %d)",
        atomic_load(&max_depth));
  CHECK(atomic_load(&reentrant_calls) > 1, "lines reached the callback while it was swapped");
  fo_set_log_callback(NULL, NULL, 0);
  fo_client_close(c);
  return 0;
}

/* --------------------------------------------------------- log_replace_waits */

static atomic_int old_running = 0;   /* calls of slow_old in progress */
static atomic_int old_calls = 0;
static atomic_int retired = 0;       /* set once fo_set_log_callback replaced slow_old */
static atomic_int late_calls = 0;    /* slow_old running or starting after that */

static void slow_old(void *user_data, int level, const char *message) {
  (void)user_data;
  (void)level;
  (void)message;
  atomic_fetch_add(&old_running, 1);
  atomic_fetch_add(&old_calls, 1);
  if (atomic_load(&retired)) atomic_fetch_add(&late_calls, 1);
  /* Long enough that a replacement usually finds calls of it in progress. */
  struct timespec ts = {0, 300 * 1000};
  nanosleep(&ts, NULL);
  if (atomic_load(&retired)) atomic_fetch_add(&late_calls, 1);
  atomic_fetch_sub(&old_running, 1);
}

static void quiet_new(void *user_data, int level, const char *message) {
  (void)user_data;
  (void)level;
  (void)message;
}

static int log_replace_waits(const char *dir) {
  make_config(dir, "replace.db", 0);
  fo_client *c = NULL;
  EXPECT(fo_client_open(config, &c), FO_OK);
  if (c == NULL) return 1;
  enum { LOGGERS = 4 };
  pthread_t t[LOGGERS];
  atomic_store(&stop_flag, 0);
  for (int i = 0; i < LOGGERS; i++) pthread_create(&t[i], NULL, logger_thread, c);
  for (int round = 0; round < 200; round++) {
    atomic_store(&retired, 0);
    fo_set_log_callback(slow_old, NULL, 5);
    sleep_ms(2);
    fo_set_log_callback(quiet_new, NULL, 5);
    /* From here slow_old must not be running, nor start again. */
    atomic_store(&retired, 1);
    int running = atomic_load(&old_running);
    CHECK(running == 0, "round %d: %d call(s) of the replaced callback still running", round,
          running);
  }
  sleep_ms(20);
  atomic_store(&stop_flag, 1);
  for (int i = 0; i < LOGGERS; i++) pthread_join(t[i], NULL);
  fo_set_log_callback(NULL, NULL, 0);
  CHECK(atomic_load(&old_calls) > 200, "the old callback was called (%d)", atomic_load(&old_calls));
  CHECK(atomic_load(&late_calls) == 0,
        "%d call(s) of a replaced callback ran after fo_set_log_callback returned",
        atomic_load(&late_calls));
  fo_client_close(c);
  return 0;
}

/* --------------------------------------------------------- close_in_callback */

static fo_client *closing_client = NULL;
static pthread_t main_thread;
static atomic_int closed_in_callback = 0;
static _Atomic double close_seconds = -1.0;

static void close_from_sync_thread(void *user_data, int level, const char *message) {
  (void)user_data;
  (void)level;
  (void)message;
  if (pthread_equal(pthread_self(), main_thread)) return;
  if (atomic_exchange(&closed_in_callback, 1)) return;
  double start = now_s();
  fo_client_close(closing_client);
  atomic_store(&close_seconds, now_s() - start);
}

static int close_in_callback(const char *dir) {
  make_config(dir, "cb.db", 0);
  main_thread = pthread_self();
  fo_client *c = NULL;
  EXPECT(fo_client_open(config, &c), FO_OK);
  if (c == NULL) return 1;
  closing_client = c;
  fo_set_log_callback(close_from_sync_thread, NULL, 5);
  /* Starts the sync thread, whose first line reaches the callback on that thread. */
  EXPECT(fo_sync_now(c), FO_OK);
  double start = now_s();
  while (atomic_load(&close_seconds) < 0 && now_s() - start < 60) sleep_ms(10);
  double took = atomic_load(&close_seconds);
  CHECK(took >= 0, "the callback closed the client");
  /* It must not wait for itself (it used to wait the full 8 s close timeout). */
  CHECK(took < 4.0, "fo_client_close from the sync thread took %.1f s", took);
  char *json = NULL;
  EXPECT(fo_status(c, &json), FO_CLOSED);
  fo_set_log_callback(NULL, NULL, 0);
  /* The worker stops once the callback returns and the database is released. */
  fo_client *again = NULL;
  fo_result r = FO_STORAGE;
  start = now_s();
  while (now_s() - start < 60) {
    r = fo_client_open(config, &again);
    if (r == FO_OK) break;
    sleep_ms(50);
  }
  CHECK(r == FO_OK, "reopen after close from the callback: %s %s", fo_result_name(r),
        fo_last_error_message());
  fo_client_close(again);
  return 0;
}

/* --------------------------------------------------------- flush_in_callback */

static fo_client *flushing_client = NULL;
static atomic_int flushed_in_callback = 0;
static _Atomic double flush_seconds = -1.0;
static atomic_int flush_result = -1;

static void flush_from_sync_thread(void *user_data, int level, const char *message) {
  (void)user_data;
  (void)level;
  (void)message;
  if (pthread_equal(pthread_self(), main_thread)) return;
  if (atomic_exchange(&flushed_in_callback, 1)) return;
  double start = now_s();
  /* Jobs are pending (Omnium is unreachable): waiting here would hold the sync thread, the
   * only one that delivers, for the whole 60 s. */
  atomic_store(&flush_result, (int)fo_flush(flushing_client, 60000));
  atomic_store(&flush_seconds, now_s() - start);
}

static int flush_in_callback(const char *dir) {
  make_config(dir, "flush.db", 0);
  main_thread = pthread_self();
  fo_client *c = NULL;
  EXPECT(fo_client_open(config, &c), FO_OK);
  if (c == NULL) return 1;
  flushing_client = c;
  char sale[1024];
  sale_json(sale, sizeof sale, "F", 1);
  EXPECT(fo_record_sale(c, sale), FO_OK);
  fo_set_log_callback(flush_from_sync_thread, NULL, 5);
  /* Starts the sync thread, whose first line reaches the callback on that thread. */
  EXPECT(fo_sync_now(c), FO_OK);
  double start = now_s();
  while (atomic_load(&flush_seconds) < 0 && now_s() - start < 90) sleep_ms(10);
  double took = atomic_load(&flush_seconds);
  CHECK(took >= 0, "the callback flushed");
  CHECK(took < 10.0, "fo_flush on the sync thread waited %.1f s for itself", took);
  CHECK(atomic_load(&flush_result) == FO_TIMEOUT, "fo_flush on the sync thread gave %s",
        fo_result_name((fo_result)atomic_load(&flush_result)));
  fo_set_log_callback(NULL, NULL, 0);
  /* From any other thread it waits as usual: the sale is still pending. */
  EXPECT(fo_flush(c, 200), FO_TIMEOUT);
  fo_client_close(c);
  EXPECT(fo_flush(c, 0), FO_CLOSED);
  return 0;
}

/* -------------------------------------------------- flush_in_fetch_callback */

/* Atomic: the sync thread starts inside fo_client_open, so its fetch thread can log before
 * the main thread stores the handle fo_client_open returned. */
static _Atomic(fo_client *) fetching_client = NULL;
static atomic_int fetch_flushed = 0;
static _Atomic double fetch_flush_seconds = -1.0;
static atomic_int fetch_flush_result = -1;
static atomic_int fetch_record_result = -1;

/* The harness makes Omnium answer the first request for a next scroll page 401: the line
 * about renewing the token comes from the thread that fetches that page while the sync
 * thread applies the page before it, and then waits for it. */
static void flush_from_fetch_thread(void *user_data, int level, const char *message) {
  (void)user_data;
  (void)level;
  if (strstr(message, "renewing the token once") == NULL) return;
  if (pthread_equal(pthread_self(), main_thread)) return;
  if (atomic_exchange(&fetch_flushed, 1)) return;
  /* The handle, once fo_client_open has returned it to the main thread. */
  fo_client *c = NULL;
  for (int i = 0; i < 10000 && (c = atomic_load(&fetching_client)) == NULL; i++) sleep_ms(1);
  char sale[1024];
  sale_json(sale, sizeof sale, "FF", 1);
  atomic_store(&fetch_record_result, (int)fo_record_sale(c, sale));
  double start = now_s();
  /* The sale is pending and the sync thread waits for this one: waiting here would hold
   * every delivery for the whole 30 s. */
  atomic_store(&fetch_flush_result, (int)fo_flush(c, 30000));
  atomic_store(&fetch_flush_seconds, now_s() - start);
}

static int flush_in_fetch_callback(const char *config_json) {
  main_thread = pthread_self();
  fo_set_log_callback(flush_from_fetch_thread, NULL, 3);
  fo_client *c = NULL;
  atomic_store(&fetching_client, NULL);
  EXPECT(fo_client_open(config_json, &c), FO_OK);
  if (c == NULL) return 1;
  atomic_store(&fetching_client, c);
  EXPECT(fo_sync_now(c), FO_OK);
  double start = now_s();
  while (atomic_load(&fetch_flush_seconds) < 0 && now_s() - start < 90) sleep_ms(10);
  double took = atomic_load(&fetch_flush_seconds);
  CHECK(took >= 0, "the callback flushed on the fetch thread");
  CHECK(took < 10.0, "fo_flush on the fetch thread waited %.1f s for the sync thread", took);
  CHECK(atomic_load(&fetch_record_result) == FO_OK, "record in the callback gave %s",
        fo_result_name((fo_result)atomic_load(&fetch_record_result)));
  CHECK(atomic_load(&fetch_flush_result) == FO_TIMEOUT, "fo_flush on the fetch thread gave %s",
        fo_result_name((fo_result)atomic_load(&fetch_flush_result)));
  fo_set_log_callback(NULL, NULL, 0);
  /* From the host's own thread it waits as usual, and the sale is delivered. */
  EXPECT(fo_flush(c, 60000), FO_OK);
  fo_client_close(c);
  return 0;
}

/* ------------------------------------------------------------ tls_destructor */

static pthread_key_t key;
static fo_client *tls_client = NULL;
static atomic_int destructor_ran = 0;

static void count_lines(void *user_data, int level, const char *message) {
  (void)level;
  (void)message;
  atomic_fetch_add((atomic_int *)user_data, 1);
}

static atomic_int lines_seen = 0;
static char side_config[8192];

static void destructor(void *value) {
  (void)value;
  /* Rust's thread-locals of this thread are gone by now; none of this may abort. */
  const char *m = fo_last_error_message();
  CHECK(m != NULL, "last error is never NULL, even on an exiting thread");
  CHECK(fo_result_name(FO_OK) != NULL, "result name");
  CHECK(fo_version() != NULL, "version");
  EXPECT(fo_record_sale(NULL, NULL), FO_NULL_ARGUMENT);
  CHECK(fo_last_error_message() != NULL, "last error after a failure");
  char *json = NULL;
  fo_result r = fo_status(tls_client, &json);
  CHECK(r == FO_OK, "status on an exiting thread: %s", fo_result_name(r));
  if (r == FO_OK) fo_string_free(json);
  char sale[1024];
  sale_json(sale, sizeof sale, "TLS", 1);
  EXPECT(fo_record_sale(tls_client, sale), FO_OK);
  r = fo_product_get(tls_client, "nope", &json);
  CHECK(r == FO_NOT_FOUND, "read on an exiting thread: %s", fo_result_name(r));
  /* With a running worker an event (sync state) may be waiting; either answer is fine. */
  json = NULL;
  r = fo_next_event(tls_client, 0, &json);
  CHECK(r == FO_TIMEOUT || r == FO_OK, "poll on an exiting thread: %s", fo_result_name(r));
  fo_string_free(json);
  fo_string_free(NULL);
  fo_set_log_callback(count_lines, &lines_seen, 5);
  EXPECT(fo_event_notify(tls_client, "{\"className\": \"Product\"}"), FO_OK);
  fo_client *other = NULL;
  EXPECT(fo_client_open("not json", &other), FO_INVALID_JSON);
  fo_client_close(tls_client);
  tls_client = NULL;
  fo_set_log_callback(NULL, NULL, 0);
  atomic_store(&destructor_ran, 1);
}

static void *exiting_thread(void *arg) {
  (void)arg;
  /* Touch the library's thread-locals first, so they exist and are destroyed at exit. */
  EXPECT(fo_record_sale(NULL, NULL), FO_NULL_ARGUMENT);
  char *json = NULL;
  EXPECT(fo_status(tls_client, &json), FO_OK);
  fo_string_free(json);
  if (side_config[0] != '\0') {
    /* Closing a client with a worker on this thread sets up Rust's idea of the current
       thread, which is gone again by the time the destructor closes tls_client. */
    fo_client *side = NULL;
    EXPECT(fo_client_open(side_config, &side), FO_OK);
    if (side != NULL) fo_client_close(side);
  }
  pthread_setspecific(key, (void *)1);
  return NULL;
}

static void *fresh_exiting_thread(void *arg) {
  (void)arg;
  /* No fo_ call before: the library's thread-locals are first touched while exiting. */
  pthread_setspecific(key, (void *)1);
  return NULL;
}

static int tls_destructor(const char *dir, int autostart) {
  if (autostart) {
    make_config(dir, "tls-side.db", 1);
    memcpy(side_config, config, sizeof side_config);
  }
  make_config(dir, "tls.db", autostart);
  pthread_key_create(&key, destructor);
  void *(*bodies[2])(void *) = {exiting_thread, fresh_exiting_thread};
  for (int i = 0; i < 2; i++) {
    EXPECT(fo_client_open(config, &tls_client), FO_OK);
    if (tls_client == NULL) return 1;
    atomic_store(&destructor_ran, 0);
    atomic_store(&lines_seen, 0);
    pthread_t t;
    pthread_create(&t, NULL, bodies[i], NULL);
    pthread_join(t, NULL);
    CHECK(atomic_load(&destructor_ran) == 1, "the destructor ran to its end (thread %d)", i);
    CHECK(atomic_load(&lines_seen) >= 1, "log lines from an exiting thread reach the callback");
    /* The close finished: worker joined, database lock released, so a reopen works now. */
    fo_client *again = NULL;
    EXPECT(fo_client_open(config, &again), FO_OK);
    if (again != NULL) fo_client_close(again);
  }
  return 0;
}

/* -------------------------------------------------------------------- inputs */

static int inputs(const char *dir) {
  fo_client *c = NULL;
  /* CONTRACT §9 rule 5: not a JSON object is FO_INVALID_JSON; a broken rule FO_CONFIG. */
  EXPECT(fo_client_open("not json", &c), FO_INVALID_JSON);
  EXPECT(fo_client_open("[1, 2]", &c), FO_INVALID_JSON);
  EXPECT(fo_client_open("\"a string\"", &c), FO_INVALID_JSON);
  EXPECT(fo_client_open("{\"database_path\": \"\xff\xfe\"}", &c), FO_INVALID_JSON);
  EXPECT(fo_client_open("{\"store_id\": \"x\"}", &c), FO_CONFIG);
  const char *m = fo_last_error_message();
  CHECK(strstr(m, "config: config") == NULL && strncmp(m, "config.", 7) == 0,
        "one prefix, the key first: %s", m);
  EXPECT(fo_client_open("{\"store_id\": 5}", &c), FO_CONFIG);
  EXPECT(fo_client_open("not json", &c), FO_INVALID_JSON);
  m = fo_last_error_message();
  CHECK(strstr(m, "config: config") == NULL, "one prefix: %s", m);
  CHECK(c == NULL, "no client from a bad config");

  make_config(dir, "inputs.db", 0);
  EXPECT(fo_client_open(config, &c), FO_OK);
  if (c == NULL) return 1;
  EXPECT(fo_record_sale(c, "{\"id\": \"S-1\", \"created_at\": \"2026-11-28T10:15:00+01:00\","
                           " \"lines\": [{\"line_id\": \"1\", \"sku\": \"A\", \"quantity\": 1, \"unit_price\": 100}],"
                           " \"payments\": [{\"method\": \"Card\", \"amount\": 100}]}"),
         FO_OK);

  /* A length no buffer can have is refused before any slice is made of it. */
  static const char pdf[] = "%PDF-1.4 tiny";
  const char *receipt = "{\"id\": \"RC-1\", \"sale_id\": \"S-1\", \"created_at\": \"2026-11-28T10:16:00+01:00\"}";
  EXPECT(fo_record_receipt(c, receipt, (const uint8_t *)pdf, SIZE_MAX), FO_INVALID_INPUT);
  EXPECT(fo_record_receipt(c, receipt, (const uint8_t *)pdf, (size_t)PTRDIFF_MAX + 1), FO_INVALID_INPUT);
  EXPECT(fo_record_receipt(c, receipt, (const uint8_t *)pdf, 10 * 1024 * 1024 + 1), FO_INVALID_INPUT);
  CHECK(strstr(fo_last_error_message(), "pdf") != NULL, "names the pdf: %s", fo_last_error_message());

  /* Ids over the documented 128 bytes are FO_INVALID_INPUT, and are not echoed whole. */
  size_t big = 1 << 20;
  char *long_id = malloc(big + 1);
  memset(long_id, 'A', big);
  long_id[big] = '\0';
  char *json = NULL;
  EXPECT(fo_product_get(c, long_id, &json), FO_INVALID_INPUT);
  CHECK(strlen(fo_last_error_message()) < 400, "message of %zu bytes", strlen(fo_last_error_message()));
  EXPECT(fo_stock_get(c, long_id, &json), FO_INVALID_INPUT);
  EXPECT(fo_store_get(c, long_id, &json), FO_INVALID_INPUT);
  EXPECT(fo_order_get(c, long_id, &json), FO_INVALID_INPUT);
  EXPECT(fo_customer_get(c, long_id, &json), FO_INVALID_INPUT);
  EXPECT(fo_job_retry(c, long_id), FO_INVALID_INPUT);
  EXPECT(fo_forget_customer(c, long_id), FO_INVALID_INPUT);
  CHECK(strlen(fo_last_error_message()) < 400, "message of %zu bytes", strlen(fo_last_error_message()));
  /* Exactly 128 bytes is an id (not known here); 129 is not. */
  long_id[128] = '\0';
  EXPECT(fo_product_get(c, long_id, &json), FO_NOT_FOUND);
  CHECK(strlen(fo_last_error_message()) < 400, "message of %zu bytes", strlen(fo_last_error_message()));
  long_id[128] = 'A';
  long_id[129] = '\0';
  EXPECT(fo_product_get(c, long_id, &json), FO_INVALID_INPUT);
  EXPECT(fo_product_get(c, "", &json), FO_INVALID_INPUT);
  CHECK(json == NULL, "out-pointer untouched");
  /* A long sale id in a record call is a field error with the length, not the text. */
  char *sale = malloc(big + 512);
  snprintf(sale, big + 512, "{\"id\": \"%s\"}", long_id);
  EXPECT(fo_record_sale(c, sale), FO_INVALID_INPUT);
  CHECK(strlen(fo_last_error_message()) < 400, "message of %zu bytes", strlen(fo_last_error_message()));
  free(sale);
  free(long_id);
  fo_client_close(c);
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 3 && argc != 4) {
    fprintf(stderr, "usage: %s <scenario> <dir> [config]\n", argv[0]);
    return 2;
  }
  alarm(120);
  const char *scenario = argv[1];
  const char *dir = argv[2];
  int rc;
  if (strcmp(scenario, "close_race") == 0)
    rc = close_race(dir);
  else if (strcmp(scenario, "log_reentry") == 0)
    rc = log_reentry(dir);
  else if (strcmp(scenario, "log_replace_waits") == 0)
    rc = log_replace_waits(dir);
  else if (strcmp(scenario, "close_in_callback") == 0)
    rc = close_in_callback(dir);
  else if (strcmp(scenario, "flush_in_callback") == 0)
    rc = flush_in_callback(dir);
  else if (strcmp(scenario, "flush_in_fetch_callback") == 0 && argc == 4)
    rc = flush_in_fetch_callback(argv[3]);
  else if (strcmp(scenario, "tls_destructor") == 0)
    rc = tls_destructor(dir, 0);
  else if (strcmp(scenario, "tls_destructor_autostart") == 0)
    rc = tls_destructor(dir, 1);
  else if (strcmp(scenario, "inputs") == 0)
    rc = inputs(dir);
  else {
    fprintf(stderr, "unknown scenario %s\n", scenario);
    return 2;
  }
  printf("%s: %d failed\n", scenario, failures);
  return rc != 0 || failures != 0;
}

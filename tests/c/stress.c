/*
 * A multi-threaded stress of the C ABI: 16 threads record, read, poll events, trigger
 * sync, swap the log callback and close, all on one client, for a few rounds. Every result
 * must be one the header documents for that call; nothing may crash, hang (alarm) or leak
 * a reference (run under AddressSanitizer and ThreadSanitizer by .ci/sanitizers.sh).
 *
 * Usage: stress <base_url> <dir> [rounds] [milliseconds per round]
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

enum { THREADS = 16 };

static atomic_int failures = 0;
static atomic_long calls = 0;
static atomic_long recorded = 0;
static atomic_long events = 0;
static atomic_long lines = 0;
/* Atomic: log callbacks on the library's threads read it while main sets the next round's. */
static _Atomic(fo_client *) client = NULL;
static long round_ms = 1000;
static int round_no = 0;

#define CHECK(cond, ...)                                                  \
  do {                                                                    \
    if (!(cond)) {                                                        \
      atomic_fetch_add(&failures, 1);                                     \
      fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                \
      fprintf(stderr, __VA_ARGS__);                                       \
      fprintf(stderr, "\n");                                              \
    }                                                                     \
  } while (0)

static void sleep_ms(long ms) {
  struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&t, NULL);
}

static void count_line(void *user_data, int level, const char *message) {
  (void)user_data;
  CHECK(level >= 1 && level <= 5 && message != NULL, "log line level %d", level);
  atomic_fetch_add(&lines, 1);
}

static void count_line_and_call_in(void *user_data, int level, const char *message) {
  count_line(user_data, level, message);
  /* A callback may call back in; the client may be closed by now (then FO_CLOSED). */
  char *json = NULL;
  fo_result r = fo_status(client, &json);
  CHECK(r == FO_OK || r == FO_CLOSED, "status from the callback: %s", fo_result_name(r));
  if (r == FO_OK) fo_string_free(json);
}

/* r must be FO_OK, FO_CLOSED or one of the listed codes. */
static int ok_or(fo_result r, int n, const fo_result *also) {
  if (r == FO_OK || r == FO_CLOSED) return 1;
  for (int i = 0; i < n; i++)
    if (r == also[i]) return 1;
  return 0;
}

#define EXPECT_ONE_OF(r, what, ...)                                                     \
  do {                                                                                  \
    const fo_result also_[] = {FO_OK, __VA_ARGS__};                                     \
    CHECK(ok_or((r), (int)(sizeof also_ / sizeof also_[0]), also_), "%s: %s (%s)", what, \
          fo_result_name(r), fo_last_error_message());                                  \
  } while (0)

static void *worker(void *arg) {
  long id = (long)(intptr_t)arg;
  char buf[1024];
  for (long i = 0;; i++) {
    char *json = NULL;
    fo_result r = FO_OK;
    atomic_fetch_add(&calls, 1);
    if (id < 6) {
      snprintf(buf, sizeof buf,
               "{\"id\": \"R%d-T%ld-%ld\", \"created_at\": \"2026-11-28T10:15:00+01:00\","
               " \"lines\": [{\"line_id\": \"1\", \"sku\": \"SKU-%ld\", \"quantity\": 1, \"unit_price\": 10000}],"
               " \"payments\": [{\"method\": \"Card\", \"amount\": 10000}]}",
               round_no, id, i, i % 7);
      r = fo_record_sale(client, buf);
      EXPECT_ONE_OF(r, "record_sale", FO_OK);
      if (r == FO_OK) atomic_fetch_add(&recorded, 1);
    } else if (id < 10) {
      switch (i % 7) {
        case 0: r = fo_status(client, &json); EXPECT_ONE_OF(r, "status", FO_OK); break;
        case 1: r = fo_product_get(client, "SKU-1", &json); EXPECT_ONE_OF(r, "product_get", FO_NOT_FOUND); break;
        case 2: r = fo_stock_get(client, "SKU-1", &json); EXPECT_ONE_OF(r, "stock_get", FO_NOT_FOUND); break;
        case 3: r = fo_product_search(client, "{\"text\": \"a\"}", &json); EXPECT_ONE_OF(r, "search", FO_OK); break;
        case 4: r = fo_orders_list(client, NULL, &json); EXPECT_ONE_OF(r, "orders_list", FO_OK); break;
        case 5: r = fo_dead_jobs(client, &json); EXPECT_ONE_OF(r, "dead_jobs", FO_OK); break;
        default: r = fo_categories_list(client, &json); EXPECT_ONE_OF(r, "categories", FO_OK); break;
      }
    } else if (id < 13) {
      r = fo_next_event(client, 50, &json);
      EXPECT_ONE_OF(r, "next_event", FO_TIMEOUT);
      if (r == FO_OK) atomic_fetch_add(&events, 1);
    } else if (id == 13) {
      r = (i % 2) ? fo_sync_now(client) : fo_flush(client, 10);
      EXPECT_ONE_OF(r, "sync_now/flush", FO_TIMEOUT);
      sleep_ms(5);
    } else if (id == 14) {
      switch (i % 3) {
        case 0: fo_set_log_callback(count_line, NULL, 5); break;
        case 1: fo_set_log_callback(count_line_and_call_in, NULL, 4); break;
        default: fo_set_log_callback(NULL, NULL, 0); break;
      }
      r = fo_status(client, &json);
      EXPECT_ONE_OF(r, "status", FO_OK);
      sleep_ms(1);
    } else {
      /* The closer: lets the others run, then closes under them, then again. */
      sleep_ms(round_ms);
      fo_client_close(client);
      fo_client_close(client);
      r = FO_CLOSED;
    }
    if (r == FO_OK && json != NULL) fo_string_free(json);
    if (r == FO_CLOSED) {
      /* After close, every call on the handle says so. */
      r = fo_status(client, &json);
      CHECK(r == FO_CLOSED, "after close: %s", fo_result_name(r));
      break;
    }
  }
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s <base_url> <dir> [rounds] [ms per round]\n", argv[0]);
    return 2;
  }
  int rounds = argc > 3 ? atoi(argv[3]) : 3;
  round_ms = argc > 4 ? atol(argv[4]) : 1000;
  alarm((unsigned)(60 + rounds * (round_ms / 1000 + 20)));
  for (round_no = 0; round_no < rounds; round_no++) {
    char config[8192];
    snprintf(config, sizeof config,
             "{\"database_path\": \"%s/stress.db\", \"store_id\": \"oslo-1\", \"market_id\": \"NOR\","
             " \"currency\": \"NOK\", \"omnium\": {\"base_url\": \"%s\", \"client_id\": \"sim-client\","
             " \"client_secret\": \"sim-secret\", \"timeout_ms\": 2000, \"max_concurrency\": 4},"
             " \"sync\": {\"retry_initial_ms\": 50, \"retry_max_ms\": 200}}",
             argv[2], argv[1]);
    fo_result r = FO_STORAGE;
    fo_client *opened = NULL;
    /* The previous round's worker may still hold the database for a moment. */
    for (int tries = 0; tries < 200; tries++) {
      r = fo_client_open(config, &opened);
      if (r != FO_STORAGE) break;
      sleep_ms(50);
    }
    client = opened;
    if (r != FO_OK) {
      fprintf(stderr, "open: %s %s\n", fo_result_name(r), fo_last_error_message());
      return 1;
    }
    pthread_t t[THREADS];
    for (long i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i);
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
  }
  fo_set_log_callback(NULL, NULL, 0);
  printf("stress: %d rounds, %ld calls, %ld sales recorded, %ld events, %ld log lines, %d failed\n",
         rounds, atomic_load(&calls), atomic_load(&recorded), atomic_load(&events),
         atomic_load(&lines), atomic_load(&failures));
  return atomic_load(&failures) != 0;
}

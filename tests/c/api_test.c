/*
 * The C API exercised from C, as a POS would call it: every export, NULL and hostile
 * arguments, ownership of returned strings, and a sale reaching the simulator.
 * Usage: api_test <base_url> <db_path>   (the Rust harness starts the simulator, with
 * order "S-POISON" rejected by it.)
 */
#define _POSIX_C_SOURCE 200809L /* before any header: clock_gettime, nanosleep */
#include "flow_omnium.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int passed = 0, failed = 0;

#define CHECK(cond, ...)                                                          \
  do {                                                                            \
    if (cond) {                                                                   \
      passed++;                                                                   \
    } else {                                                                      \
      failed++;                                                                   \
      fprintf(stderr, "FAIL %s:%d: %s -- ", __FILE__, __LINE__, #cond);           \
      fprintf(stderr, __VA_ARGS__);                                               \
      fprintf(stderr, " (last error: %s)\n", fo_last_error_message());            \
    }                                                                             \
  } while (0)

/* Frees a returned string and forgets it, so a later failed call cannot free it twice. */
#define FREE(s) (fo_string_free(s), (s) = NULL)

#define EXPECT(call, code) CHECK((call) == (code), "%s returned %s", #call, fo_result_name(call))

static const char *SALE =
    "{\"id\": \"S-1001\", \"created_at\": \"2026-11-28T10:15:00+01:00\", \"store_id\": \"oslo-1\","
    " \"currency\": \"NOK\", \"customer_id\": \"C-77\", \"salesperson_id\": \"emp-3\", \"rounding\": 0,"
    " \"lines\": [{\"line_id\": \"1\", \"sku\": \"SKU-1\", \"name\": \"T-shirt\", \"quantity\": 2,"
    " \"unit_price\": 19950, \"discount\": 0, \"tax_rate\": 25}],"
    " \"payments\": [{\"id\": \"P1\", \"method\": \"Card\", \"amount\": 39900, \"transaction_id\": \"tx-1\"}]}";

/* The same sale with keys in another order and other spacing. */
static const char *SALE_REORDERED =
    "{\"payments\":[{\"transaction_id\":\"tx-1\",\"amount\":39900,\"method\":\"Card\",\"id\":\"P1\"}],"
    "\"lines\":[{\"tax_rate\":25,\"discount\":0,\"unit_price\":19950,\"quantity\":2,\"name\":\"T-shirt\","
    "\"sku\":\"SKU-1\",\"line_id\":\"1\"}],\"rounding\":0,\"salesperson_id\":\"emp-3\",\"customer_id\":\"C-77\","
    "\"currency\":\"NOK\",\"store_id\":\"oslo-1\",\"created_at\":\"2026-11-28T10:15:00+01:00\",\"id\":\"S-1001\"}";

static const char *POISON =
    "{\"id\": \"S-POISON\", \"created_at\": \"2026-11-28T10:15:00+01:00\","
    " \"lines\": [{\"line_id\": \"1\", \"sku\": \"SKU-1\", \"quantity\": 1, \"unit_price\": 100}],"
    " \"payments\": [{\"method\": \"Cash\", \"amount\": 100}]}";

/* Atomic: the callback runs on the library's threads and the callers' at once. */
static atomic_int log_lines = 0;
static atomic_int secret_logged = 0;
static void on_log(void *user_data, int level, const char *message) {
  (void)level;
  atomic_fetch_add((atomic_int *)user_data, 1);
  if (strstr(message, "sim-secret") != NULL) atomic_store(&secret_logged, 1);
}

/* A POS's event thread: waits for events until the client is closed under it. */
struct waiter {
  fo_client *client;
  fo_result result;
  double seconds;
};

static double now_seconds(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void *wait_for_event(void *arg) {
  struct waiter *w = arg;
  double start = now_seconds();
  char *json = NULL;
  /* The worker may still queue an event (a pull, a delivery) before the close: take it and
     wait again. A call made after fo_client_close returned is answered FO_CLOSED (the handle
     stays a tombstone), so looping until something other than FO_OK is safe. */
  do {
    json = NULL;
    w->result = fo_next_event(w->client, 8000, &json);
    fo_string_free(json);
  } while (w->result == FO_OK && now_seconds() - start < 8.0);
  w->seconds = now_seconds() - start;
  return NULL;
}

static int contains(const char *haystack, const char *needle) {
  return haystack != NULL && strstr(haystack, needle) != NULL;
}

int main(int argc, char **argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: %s <base_url> <db_path> <a_catalog_sku> <an_order_event_json>\n", argv[0]);
    return 2;
  }
  const char *known_sku = argv[3];
  const char *order_event = argv[4];
  char config[1024];
  snprintf(config, sizeof config,
           "{\"database_path\": \"%s\", \"store_id\": \"oslo-1\", \"market_id\": \"NOR\","
           " \"currency\": \"NOK\", \"terminal_id\": \"t01\","
           " \"omnium\": {\"base_url\": \"%s\", \"client_id\": \"sim-client\", \"client_secret\": \"sim-secret\","
           " \"timeout_ms\": 2000},"
           " \"sync\": {\"retry_initial_ms\": 50, \"retry_max_ms\": 200}}",
           argv[2], argv[1]);

  fo_set_log_callback(on_log, &log_lines, 5);

  /* Static strings. */
  CHECK(strcmp(fo_result_name(FO_OK), "FO_OK") == 0, "name of FO_OK");
  CHECK(strcmp(fo_result_name(FO_STORAGE_FULL), "FO_STORAGE_FULL") == 0, "name of FO_STORAGE_FULL");
  CHECK(strcmp(fo_result_name(FO_PANIC), "FO_PANIC") == 0, "name of FO_PANIC");
  CHECK(strcmp(fo_result_name(42), "FO_UNKNOWN") == 0, "a number that is no code is safe to name");
  CHECK(strcmp(fo_result_name(-1), "FO_UNKNOWN") == 0, "negative too");
  CHECK(fo_version() != NULL && strlen(fo_version()) > 0, "version");
  CHECK(fo_last_error_message() != NULL, "last error is never NULL");
  fo_string_free(NULL);
  fo_client_close(NULL);

  /* Opening: NULLs and bad configs. */
  fo_client *c = NULL;
  EXPECT(fo_client_open(NULL, &c), FO_NULL_ARGUMENT);
  EXPECT(fo_client_open(config, NULL), FO_NULL_ARGUMENT);
  EXPECT(fo_client_open("not json", &c), FO_INVALID_JSON);
  EXPECT(fo_client_open("{\"store_id\": \"x\"}", &c), FO_CONFIG);
  CHECK(c == NULL, "out pointer untouched on failure");
  EXPECT(fo_client_open("{\"database_path\": \"/tmp/x.db\", \"store_id\": \"s\", \"market_id\": \"m\","
                        " \"currency\": \"NOK\", \"omnium\": {\"base_url\": \"http://api.omnium.no\","
                        " \"client_id\": \"i\", \"client_secret\": \"sim-secret\"}}", &c),
         FO_CONFIG);
  CHECK(contains(fo_last_error_message(), "https"), "message says why: %s", fo_last_error_message());
  CHECK(!contains(fo_last_error_message(), "sim-secret"), "secret not in the message");

  EXPECT(fo_client_open(config, &c), FO_OK);
  CHECK(c != NULL, "client opened");
  CHECK(strcmp(fo_last_error_message(), "") == 0, "last error is empty after success");

  /* Recording: NULLs, hostile input, rules, idempotency, conflicts. */
  EXPECT(fo_record_sale(NULL, SALE), FO_NULL_ARGUMENT);
  EXPECT(fo_record_sale(c, NULL), FO_NULL_ARGUMENT);
  EXPECT(fo_record_sale(c, ""), FO_INVALID_JSON);
  EXPECT(fo_record_sale(c, "[1, 2]"), FO_INVALID_JSON);
  EXPECT(fo_record_sale(c, "{\"id\": \"S-\xff\xfe\"}"), FO_INVALID_JSON);
  EXPECT(fo_record_sale(c, "{\"id\": \"S-2\", \"created_at\": \"2026-11-28T10:15:00+01:00\","
                           " \"lines\": [{\"line_id\": \"1\", \"sku\": \"A\", \"quantity\": 1, \"unit_price\": 100}],"
                           " \"payments\": [{\"method\": \"Card\", \"amount\": 99}]}"),
         FO_INVALID_INPUT);
  CHECK(contains(fo_last_error_message(), "sale.payments"), "names the field: %s", fo_last_error_message());
  EXPECT(fo_record_sale(c, "{\"id\": \"S-3\", \"created_at\": \"2026-11-28T10:15:00+01:00\","
                           " \"lines\": [{\"line_id\": \"1\", \"sku\": \"A\", \"quantity\": 1e999, \"unit_price\": 100}],"
                           " \"payments\": [{\"method\": \"Card\", \"amount\": 100}]}"),
         FO_INVALID_JSON);
  {
    /* A deeply nested document must not crash the parser or the process. */
    size_t depth = 100000;
    char *deep = malloc(depth * 2 + 1);
    memset(deep, '[', depth);
    memset(deep + depth, ']', depth);
    deep[depth * 2] = '\0';
    fo_result r = fo_record_sale(c, deep);
    CHECK(r == FO_INVALID_JSON, "deep nesting gives %s", fo_result_name(r));
    free(deep);
  }
  EXPECT(fo_record_sale(c, SALE), FO_OK);
  EXPECT(fo_record_sale(c, SALE), FO_OK);
  EXPECT(fo_record_sale(c, SALE_REORDERED), FO_OK);
  char conflicting[2048];
  snprintf(conflicting, sizeof conflicting, "%s", SALE);
  char *tx = strstr(conflicting, "tx-1");
  tx[3] = '9';
  EXPECT(fo_record_sale(c, conflicting), FO_CONFLICT);
  CHECK(contains(fo_last_error_message(), "S-1001"), "conflict names the id: %s", fo_last_error_message());

  EXPECT(fo_record_return(c, "{\"id\": \"R-2001\", \"sale_id\": \"S-1001\", \"created_at\": \"2026-11-28T11:00:00+01:00\","
                             " \"lines\": [{\"line_id\": \"1\", \"quantity\": 3, \"amount\": 59850}]}"),
         FO_INVALID_INPUT);
  CHECK(contains(fo_last_error_message(), "return.lines[0].quantity"), "%s", fo_last_error_message());
  EXPECT(fo_record_return(c, "{\"id\": \"R-2001\", \"sale_id\": \"S-1001\", \"created_at\": \"2026-11-28T11:00:00+01:00\","
                             " \"lines\": [{\"line_id\": \"1\", \"quantity\": 1, \"amount\": 19950, \"restock\": true,"
                             " \"reason\": \"Defect\"}],"
                             " \"refunds\": [{\"id\": \"P2\", \"method\": \"Card\", \"amount\": 19950, \"transaction_id\": \"tx-2\"}]}"),
         FO_OK);
  EXPECT(fo_record_return(NULL, "{}"), FO_NULL_ARGUMENT);
  EXPECT(fo_record_cancellation(c, NULL), FO_NULL_ARGUMENT);
  EXPECT(fo_record_cancellation(c, "{\"id\": \"X-1\"}"), FO_INVALID_INPUT);
  EXPECT(fo_record_sale(c, POISON), FO_OK);

  /* Sync control and reading. */
  EXPECT(fo_sync_now(NULL), FO_NULL_ARGUMENT);
  EXPECT(fo_sync_now(c), FO_OK);
  EXPECT(fo_flush(c, 20000), FO_OK);

  char *json = NULL;
  EXPECT(fo_status(c, NULL), FO_NULL_ARGUMENT);
  EXPECT(fo_status(NULL, &json), FO_NULL_ARGUMENT);
  EXPECT(fo_status(c, &json), FO_OK);
  CHECK(contains(json, "\"pending\":0") && contains(json, "\"dead\":1") && contains(json, "\"online\":true"),
        "status: %s", json);
  FREE(json);

  json = NULL;
  EXPECT(fo_dead_jobs(c, &json), FO_OK);
  CHECK(contains(json, "S-POISON") && contains(json, "\"kind\":\"sale\""), "dead jobs: %s", json);
  /* Pull the job id out of {"items":[{..."id":"N"...}]} to retry it. */
  char job_id[32] = "";
  const char *idp = strstr(json, "\"id\":\"");
  if (idp != NULL) sscanf(idp + 6, "%31[^\"]", job_id);
  FREE(json);
  CHECK(strlen(job_id) > 0, "dead job has an id");
  EXPECT(fo_job_retry(c, "424242"), FO_NOT_FOUND);
  EXPECT(fo_job_retry(c, job_id), FO_OK);

  int saw_dead = 0, saw_online = 0;
  for (int i = 0; i < 50 && !(saw_dead && saw_online); i++) {
    json = NULL;
    fo_result r = fo_next_event(c, 200, &json);
    if (r == FO_OK) {
      if (contains(json, "\"type\":\"job.dead\"")) saw_dead = 1;
      if (contains(json, "\"type\":\"sync.online\"")) saw_online = 1;
      FREE(json);
    } else {
      CHECK(r == FO_TIMEOUT && json == NULL, "no event: %s", fo_result_name(r));
    }
  }
  CHECK(saw_dead && saw_online, "events job.dead (%d) and sync.online (%d)", saw_dead, saw_online);
  EXPECT(fo_next_event(c, 0, NULL), FO_NULL_ARGUMENT);

  /* Offline reads. */
  json = NULL;
  fo_result got = FO_NOT_FOUND;
  for (int i = 0; i < 100 && got != FO_OK; i++) {
    got = fo_product_get(c, known_sku, &json);
    if (got != FO_OK) fo_next_event(c, 100, &json), FREE(json), json = NULL;
  }
  CHECK(got == FO_OK && contains(json, "\"sku\"") && contains(json, "\"price\""), "product: %s", json);
  FREE(json);
  EXPECT(fo_product_get(c, NULL, &json), FO_NULL_ARGUMENT);
  EXPECT(fo_product_get(c, known_sku, NULL), FO_NULL_ARGUMENT);
  json = NULL;
  EXPECT(fo_product_get(c, "NO-SUCH-SKU", &json), FO_NOT_FOUND);
  CHECK(json == NULL, "out pointer untouched when not found");
  EXPECT(fo_product_search(c, "{\"text\": \"a\", \"limit\": 5}", &json), FO_OK);
  CHECK(contains(json, "\"items\"") && contains(json, "\"total\""), "search: %s", json);
  FREE(json);
  EXPECT(fo_product_search(c, "{\"limit\": 0}", &json), FO_INVALID_INPUT);
  EXPECT(fo_product_search(c, "nope", &json), FO_INVALID_JSON);
  for (int i = 0; i < 100; i++) {
    char *status = NULL;
    if (fo_status(c, &status) == FO_OK && contains(status, "\"pulling\":false")) {
      fo_string_free(status);
      break;
    }
    fo_string_free(status);
    fo_next_event(c, 50, &json), FREE(json), json = NULL;
  }
  EXPECT(fo_stock_get(c, known_sku, &json), FO_OK);
  CHECK(contains(json, "\"available\""), "stock: %s", json);
  FREE(json);
  EXPECT(fo_store_get(c, "oslo-1", &json), FO_OK);
  CHECK(contains(json, "\"opening_hours\"") && contains(json, "\"warehouses\""), "store: %s", json);
  FREE(json);
  EXPECT(fo_store_get(c, "atlantis", &json), FO_NOT_FOUND);
  EXPECT(fo_categories_list(c, &json), FO_OK);
  CHECK(contains(json, "\"items\":[{"), "categories: %s", json);
  FREE(json);
  EXPECT(fo_brands_list(c, &json), FO_OK);
  CHECK(contains(json, "\"items\":[\""), "brands: %s", json);
  FREE(json);
  EXPECT(fo_categories_list(NULL, &json), FO_NULL_ARGUMENT);

  /* Receipts, customers, stock counts, goods receptions. */
  static const char PDF[] = "%PDF-1.4\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF\n";
  const char *receipt =
      "{\"id\": \"RC-1\", \"sale_id\": \"S-1001\", \"receipt_number\": \"12345\","
      " \"issued_at\": \"2026-11-28T10:15:00+01:00\", \"total\": 39900, \"tax_total\": 7980,"
      " \"currency\": \"NOK\", \"customer_id\": \"C-77\", \"file_name\": \"receipt-12345.pdf\"}";
  EXPECT(fo_record_receipt(c, receipt, NULL, 10), FO_NULL_ARGUMENT);
  EXPECT(fo_record_receipt(c, receipt, (const uint8_t *)"<html>", 6), FO_INVALID_INPUT);
  CHECK(contains(fo_last_error_message(), "%PDF-"), "%s", fo_last_error_message());
  EXPECT(fo_record_receipt(c, receipt, (const uint8_t *)PDF, sizeof PDF - 1), FO_OK);
  EXPECT(fo_record_receipt(c, receipt, (const uint8_t *)PDF, sizeof PDF - 1), FO_OK);
  EXPECT(fo_record_customer(c, "{\"id\": \"C-77\", \"type\": \"person\", \"first_name\": \"Kari\","
                               " \"last_name\": \"Nordmann\", \"email\": \"kari@example.no\", \"phone\": \"+4791234567\","
                               " \"address\": {\"line1\": \"Storgata 1\", \"postal_code\": \"0155\", \"city\": \"Oslo\","
                               " \"country_code\": \"NO\"}, \"loyalty_id\": \"L-555\"}"),
         FO_OK);
  EXPECT(fo_record_customer(c, "{\"id\": \"C-78\", \"type\": \"company\"}"), FO_INVALID_INPUT);
  CHECK(contains(fo_last_error_message(), "company_name"), "%s", fo_last_error_message());
  EXPECT(fo_customer_get(c, "C-77", &json), FO_OK);
  CHECK(contains(json, "Nordmann"), "customer: %s", json);
  FREE(json);
  EXPECT(fo_customer_get(c, "C-NOBODY", &json), FO_NOT_FOUND);
  EXPECT(fo_record_stock_count(c, "{\"warehouse_id\": \"oslo-1\", \"counted_at\": \"2026-11-28T08:00:00Z\","
                                  " \"items\": [{\"sku\": \"SKU-1\", \"quantity\": 12}]}"),
         FO_INVALID_INPUT);
  CHECK(contains(fo_last_error_message(), "stock master"), "%s", fo_last_error_message());
  EXPECT(fo_record_goods_reception(c, "{\"id\": \"GR-1\", \"received_at\": \"2026-11-28T08:00:00+01:00\","
                                      " \"lines\": [{\"sku\": \"SKU-1\", \"quantity\": 5}]}"),
         FO_OK);
  EXPECT(fo_record_goods_reception(c, "{\"id\": \"GR-2\", \"purchase_order_id\": \"PO-9\","
                                      " \"received_at\": \"2026-11-28T08:00:00+01:00\","
                                      " \"lines\": [{\"line_id\": \"PO-9-1\", \"sku\": \"SKU-1\", \"quantity\": 5}]}"),
         FO_INVALID_INPUT);
  CHECK(contains(fo_last_error_message(), "delivery_id"), "%s", fo_last_error_message());
  EXPECT(fo_purchase_orders_list(c, NULL, &json), FO_OK);
  CHECK(contains(json, "\"items\""), "purchase orders: %s", json);
  FREE(json);

  /* A click & collect order announced by Omnium's event, then handed over. */
  EXPECT(fo_event_notify(c, NULL), FO_NULL_ARGUMENT);
  EXPECT(fo_event_notify(c, "{\"className\": \"Order\"}"), FO_INVALID_INPUT);
  EXPECT(fo_event_notify(c, order_event), FO_OK);
  EXPECT(fo_event_notify(c, order_event), FO_OK);
  /* The order id is the event's objectId; the order may also have come by polling. */
  char order_id[64] = "";
  const char *oid = strstr(order_event, "\"objectId\":\"");
  if (oid != NULL) sscanf(oid + 12, "%63[^\"]", order_id);
  CHECK(strlen(order_id) > 0, "objectId in %s", order_event);
  fo_result have = FO_NOT_FOUND;
  for (int i = 0; i < 100 && have != FO_OK; i++) {
    have = fo_order_get(c, order_id, &json);
    if (have != FO_OK && fo_next_event(c, 100, &json) == FO_OK) FREE(json);
  }
  CHECK(have == FO_OK && contains(json, "\"order_type\":\"ClickAndCollect\""), "order: %s", json);
  FREE(json);
  EXPECT(fo_orders_list(c, NULL, &json), FO_OK);
  CHECK(contains(json, order_id), "orders: %s", json);
  FREE(json);
  EXPECT(fo_orders_list(c, "{\"status\": \"New\"}", &json), FO_OK);
  FREE(json);
  EXPECT(fo_orders_list(c, "{\"colour\": \"red\"}", &json), FO_INVALID_INPUT);
  EXPECT(fo_order_get(c, order_id, &json), FO_OK);
  FREE(json);
  char pickup[256];
  snprintf(pickup, sizeof pickup,
           "{\"id\": \"PU-1\", \"order_id\": \"%s\", \"status\": \"picked_up\", \"at\": \"2026-11-28T12:00:00Z\"}",
           order_id);
  EXPECT(fo_record_pickup(c, pickup), FO_OK);
  EXPECT(fo_order_get(c, order_id, &json), FO_OK);
  CHECK(contains(json, "\"status\":\"PickedUp\""), "picked up at once: %s", json);
  FREE(json);
  EXPECT(fo_record_pickup(c, "{\"id\": \"PU-2\", \"order_id\": \"X\", \"status\": \"gone\", \"at\": \"2026-11-28T12:00:00Z\"}"),
         FO_INVALID_INPUT);
  EXPECT(fo_flush(c, 20000), FO_OK);

  /* Closing while another thread waits for events: that thread gets FO_CLOSED at once. */
  while (fo_next_event(c, 0, &json) == FO_OK) FREE(json);
  struct waiter w = {c, FO_OK, 0};
  pthread_t thread;
  CHECK(pthread_create(&thread, NULL, wait_for_event, &w) == 0, "thread");
  struct timespec pause = {0, 200 * 1000 * 1000};
  nanosleep(&pause, NULL);
  fo_client_close(c);
  pthread_join(thread, NULL);
  CHECK(w.result == FO_CLOSED, "the waiting thread got %s", fo_result_name(w.result));
  CHECK(w.seconds < 3.0, "it waited %.1f s", w.seconds);
  CHECK(atomic_load(&log_lines) > 0, "the log callback was called");
  CHECK(!atomic_load(&secret_logged), "the client secret never reached the log");
  fo_set_log_callback(NULL, NULL, 0);

  printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}

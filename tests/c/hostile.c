/* Hostile input to every export, from C: NULL, empty, not UTF-8, an interior NUL, 16 MiB,
 * 10^6-deep nesting, SQL and path-traversal strings, RTL marks and emoji. Every call must
 * come back (no crash, no hang) with a code its documentation names, a message exactly when
 * it failed, its out-pointer untouched on failure; what is recorded with hostile strings
 * reads back byte for byte. Driven by tests/hostile.rs, which checks what reached Omnium.
 *
 * usage: hostile <omnium base url> <private directory> */
#include "flow_omnium.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int passed, failed;

#define M(code) (1u << (code))
#define OK M(FO_OK)
#define NUL_ARG M(FO_NULL_ARGUMENT)
#define BAD_JSON M(FO_INVALID_JSON)
#define BAD_INPUT M(FO_INVALID_INPUT)
#define NOT_FOUND M(FO_NOT_FOUND)
#define TIMEOUT M(FO_TIMEOUT)
#define CLOSED M(FO_CLOSED)
#define CONFIG M(FO_CONFIG)
#define STORAGE M(FO_STORAGE)

/* The longest message the library gives (capped at 1 KiB plus an ellipsis). */
#define MAX_MESSAGE 1100

/* Checks one call's outcome: the code is one of `allowed`, the message is "" exactly on
 * FO_OK, never NULL, never long. Returns the code. */
static int check(int code, unsigned allowed, const char *what, const char *input) {
  const char *msg = fo_last_error_message();
  int ok = code >= 0 && code < 32 && (allowed & M(code));
  if (!msg) {
    ok = 0;
    msg = "(NULL message)";
  } else if ((code == FO_OK) != (msg[0] == '\0')) {
    ok = 0;
  } else if (strlen(msg) > MAX_MESSAGE) {
    fprintf(stderr, "message of %zu bytes\n", strlen(msg));
    ok = 0;
  }
  if (ok) {
    passed++;
  } else {
    failed++;
    fprintf(stderr, "FAIL %s [%s]: %s (%d): %.300s\n", what, input, fo_result_name(code), code, msg);
  }
  return code;
}

/* The same for a call with an out-pointer: written (with JSON) only on FO_OK. */
static int check_out(int code, unsigned allowed, char *out, const char *what, const char *input) {
  check(code, allowed, what, input);
  if (code == FO_OK && (!out || (out[0] != '{' && out[0] != '['))) {
    failed++;
    fprintf(stderr, "FAIL %s [%s]: FO_OK without JSON\n", what, input);
  } else if (code != FO_OK && out) {
    failed++;
    fprintf(stderr, "FAIL %s [%s]: out written on %s\n", what, input, fo_result_name(code));
  }
  return code;
}

/* The call is made before `out` is read (a function's arguments have no set order). */
static int last_rc;
#define CHECK_OUT(call, allowed, what, input) \
  (last_rc = (call), check_out(last_rc, (allowed), out, (what), (input)))

#define EXPECT_TRUE(cond, ...)                 \
  do {                                         \
    if (cond) {                                \
      passed++;                                \
    } else {                                   \
      failed++;                                \
      fprintf(stderr, "FAIL line %d: ", __LINE__); \
      fprintf(stderr, __VA_ARGS__);            \
      fprintf(stderr, "\n");                   \
    }                                          \
  } while (0)

/* prefix + unit×n + suffix, malloc'd. */
static char *repeat(const char *prefix, const char *unit, size_t n, const char *suffix) {
  size_t p = strlen(prefix), u = strlen(unit), s = strlen(suffix);
  char *out = malloc(p + u * n + s + 1);
  if (!out) {
    perror("malloc");
    exit(2);
  }
  memcpy(out, prefix, p);
  for (size_t i = 0; i < n; i++) memcpy(out + p + i * u, unit, u);
  memcpy(out + p + u * n, suffix, s + 1);
  return out;
}

#define MIB16 (16u * 1024u * 1024u)

/* Strings a hostile or careless POS could put in an id or a name. None has a quote or a
 * backslash, so each appears in returned JSON exactly as given. */
static const char *const WILD[] = {
    "'; DROP TABLE outbox; --",
    "1' OR '1'='1",
    "../../../../etc/passwd",
    "%2e%2e%2f%00",
    "\xe2\x80\xae" "fdp.exe",                          /* RTL override */
    "\xe2\x80\x8f" "\xd7\xa9\xd7\x9c\xd7\x95\xd7\x9d", /* RLM + Hebrew */
    "\xf0\x9f\x98\x80\xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x91\xa7", /* emoji, ZWJ family */
    "Z\xcc\x8d\xcc\x91\xcd\x8a\xcd\x86" "a\xcc\x8e\xcc\x8dl\xcc\x8dgo", /* combining marks */
    "$(rm -rf /)`id`",
    "<script>alert(1)</script>",
};
#define N_WILD (sizeof WILD / sizeof WILD[0])

/* JSON arguments every JSON-taking export must refuse as FO_INVALID_JSON. */
struct bad {
  const char *name;
  const char *json;
};
static struct bad BAD[16];
static size_t n_bad;

static void add_bad(const char *name, const char *json) { BAD[n_bad++] = (struct bad){name, json}; }

typedef fo_result (*record_fn)(fo_client *, const char *);

struct recorder {
  const char *name;
  record_fn fn;
};

static fo_result record_receipt_with_pdf(fo_client *c, const char *json) {
  static const char PDF[] = "%PDF-1.4\n\0\0\0binary\xff\xfe\n%%EOF\n";
  return fo_record_receipt(c, json, (const uint8_t *)PDF, sizeof PDF - 1);
}

static const struct recorder RECORDERS[] = {
    {"fo_record_sale", fo_record_sale},
    {"fo_record_return", fo_record_return},
    {"fo_record_cancellation", fo_record_cancellation},
    {"fo_record_receipt", record_receipt_with_pdf},
    {"fo_record_customer", fo_record_customer},
    {"fo_record_goods_reception", fo_record_goods_reception},
    {"fo_record_stock_count", fo_record_stock_count},
    {"fo_record_pickup", fo_record_pickup},
    {"fo_event_notify", fo_event_notify},
};
#define N_RECORDERS (sizeof RECORDERS / sizeof RECORDERS[0])

typedef fo_result (*read_fn)(fo_client *, const char *, char **);

struct reader {
  const char *name;
  read_fn fn;
};

/* Exports reading by id. */
static const struct reader BY_ID[] = {
    {"fo_order_get", fo_order_get},
    {"fo_customer_get", fo_customer_get},
    {"fo_product_get", fo_product_get},
    {"fo_stock_get", fo_stock_get},
    {"fo_store_get", fo_store_get},
};
#define N_BY_ID (sizeof BY_ID / sizeof BY_ID[0])

/* Exports reading with a JSON query or filter. */
static const struct reader BY_JSON[] = {
    {"fo_product_search", fo_product_search},
    {"fo_orders_list", fo_orders_list},
    {"fo_purchase_orders_list", fo_purchase_orders_list},
};
#define N_BY_JSON (sizeof BY_JSON / sizeof BY_JSON[0])

static int log_calls;
static void on_log(void *user_data, int level, const char *message) {
  (void)user_data;
  if (level >= 1 && level <= 5 && message) log_calls++;
  /* Calling back in from the callback must be safe (rule 9.7). */
  (void)fo_last_error_message();
}

static char *config(const char *base_url, const char *db) {
  char *cfg = malloc(strlen(base_url) + strlen(db) + 512);
  sprintf(cfg,
          "{\"database_path\": \"%s\", \"store_id\": \"oslo-1\", \"market_id\": \"NOR\","
          " \"currency\": \"NOK\", \"terminal_id\": \"t01\", \"stock_master\": \"flow\","
          " \"omnium\": {\"base_url\": \"%s\", \"client_id\": \"sim-client\","
          " \"client_secret\": \"sim-secret\", \"timeout_ms\": 2000},"
          " \"sync\": {\"autostart\": false, \"retry_initial_ms\": 50, \"retry_max_ms\": 400}}",
          db, base_url);
  return cfg;
}

/* --- the client handle itself --------------------------------------------------------- */

static void every_export_refuses(fo_client *c, unsigned expect, const char *label) {
  char *out = NULL;
  static const char PDF[] = "%PDF-1.4";
  const char *sale = "{\"id\": \"S-X\"}";
  for (size_t i = 0; i < N_RECORDERS; i++) check(RECORDERS[i].fn(c, sale), expect, RECORDERS[i].name, label);
  check(fo_record_receipt(c, sale, (const uint8_t *)PDF, sizeof PDF - 1), expect, "fo_record_receipt", label);
  for (size_t i = 0; i < N_BY_ID; i++) {
    out = NULL;
    CHECK_OUT(BY_ID[i].fn(c, "X", &out), expect, BY_ID[i].name, label);
  }
  for (size_t i = 0; i < N_BY_JSON; i++) {
    out = NULL;
    CHECK_OUT(BY_JSON[i].fn(c, "{}", &out), expect, BY_JSON[i].name, label);
  }
  out = NULL;
  CHECK_OUT(fo_categories_list(c, &out), expect, "fo_categories_list", label);
  CHECK_OUT(fo_brands_list(c, &out), expect, "fo_brands_list", label);
  CHECK_OUT(fo_status(c, &out), expect, "fo_status", label);
  CHECK_OUT(fo_next_event(c, 0, &out), expect, "fo_next_event", label);
  CHECK_OUT(fo_dead_jobs(c, &out), expect, "fo_dead_jobs", label);
  check(fo_sync_now(c), expect, "fo_sync_now", label);
  check(fo_flush(c, 0), expect, "fo_flush", label);
  check(fo_job_retry(c, NULL), expect, "fo_job_retry", label);
  check(fo_forget_customer(c, "C-1"), expect, "fo_forget_customer", label);
}

/* --- JSON-taking exports ---------------------------------------------------------------- */

static void json_args(fo_client *c, const char *huge_string_json, const char *huge_space_json) {
  for (size_t i = 0; i < N_RECORDERS; i++) {
    const struct recorder *r = &RECORDERS[i];
    check(r->fn(c, NULL), NUL_ARG, r->name, "NULL");
    for (size_t b = 0; b < n_bad; b++) check(r->fn(c, BAD[b].json), BAD_JSON, r->name, BAD[b].name);
    /* Valid JSON, but a 16 MiB id or 16 MiB of whitespace around "{}": refused (or, for an
     * event of no class, ignored), never a crash. */
    check(r->fn(c, huge_string_json), BAD_INPUT | OK, r->name, "16 MiB id");
    check(r->fn(c, huge_space_json), BAD_INPUT | OK, r->name, "16 MiB of whitespace");
  }
  for (size_t i = 0; i < N_BY_JSON; i++) {
    const struct reader *r = &BY_JSON[i];
    char *out = NULL;
    /* The search query is required; the list filters may be NULL. */
    unsigned null_ok = r->fn == fo_product_search ? NUL_ARG : OK;
    CHECK_OUT(r->fn(c, NULL, &out), null_ok, r->name, "NULL");
    fo_string_free(out);
    for (size_t b = 0; b < n_bad; b++) {
      out = NULL;
      CHECK_OUT(r->fn(c, BAD[b].json, &out), BAD_JSON, r->name, BAD[b].name);
    }
    out = NULL;
    CHECK_OUT(r->fn(c, huge_string_json, &out), BAD_INPUT, r->name, "16 MiB field");
    out = NULL;
    CHECK_OUT(r->fn(c, huge_space_json, &out), OK, r->name, "16 MiB of whitespace");
    fo_string_free(out);
    check(r->fn(c, "{}", NULL), NUL_ARG, r->name, "NULL out");
    for (size_t w = 0; w < N_WILD; w++) {
      char q[512];
      if (r->fn == fo_product_search)
        snprintf(q, sizeof q, "{\"text\": \"%s\", \"brand\": \"%s\", \"category_id\": \"%s\"}", WILD[w], WILD[w], WILD[w]);
      else
        snprintf(q, sizeof q, "{\"status\": \"%s\"}", WILD[w]);
      out = NULL;
      CHECK_OUT(r->fn(c, q, &out), OK, r->name, WILD[w]);
      fo_string_free(out);
    }
  }
}

/* --- id-taking exports ------------------------------------------------------------------ */

static void id_args(fo_client *c, const char *huge_id) {
  char long_id[130];
  memset(long_id, 'x', 129);
  long_id[129] = '\0';
  const char *bad_ids[][2] = {
      {"empty", ""},
      {"not UTF-8", "SKU-\xff\xfe"},
      {"lone surrogate (CESU)", "\xed\xa0\x80"},
      {"overlong NUL", "\xc0\x80"},
      {"129 bytes", long_id},
      {"16 MiB", huge_id},
  };
  for (size_t i = 0; i < N_BY_ID; i++) {
    const struct reader *r = &BY_ID[i];
    char *out = NULL;
    CHECK_OUT(r->fn(c, NULL, &out), NUL_ARG, r->name, "NULL");
    check(r->fn(c, "X", NULL), NUL_ARG, r->name, "NULL out");
    for (size_t b = 0; b < sizeof bad_ids / sizeof bad_ids[0]; b++) {
      out = NULL;
      CHECK_OUT(r->fn(c, bad_ids[b][1], &out), BAD_INPUT, r->name, bad_ids[b][0]);
    }
    /* An interior NUL ends the id: "X" is looked up, and is not there. */
    out = NULL;
    CHECK_OUT(r->fn(c, "X\0/../../etc/passwd", &out), NOT_FOUND, r->name, "an interior NUL");
    for (size_t w = 0; w < N_WILD; w++) {
      out = NULL;
      /* Nothing of these names was recorded yet. */
      CHECK_OUT(r->fn(c, WILD[w], &out), NOT_FOUND, r->name, WILD[w]);
    }
  }
  for (size_t b = 0; b < sizeof bad_ids / sizeof bad_ids[0]; b++) {
    check(fo_forget_customer(c, bad_ids[b][1]), BAD_INPUT, "fo_forget_customer", bad_ids[b][0]);
    check(fo_job_retry(c, bad_ids[b][1]), BAD_INPUT | NOT_FOUND, "fo_job_retry", bad_ids[b][0]);
  }
  check(fo_forget_customer(c, NULL), NUL_ARG, "fo_forget_customer", "NULL");
  check(fo_forget_customer(c, "X\0Y"), NOT_FOUND, "fo_forget_customer", "an interior NUL");
  for (size_t w = 0; w < N_WILD; w++) {
    check(fo_forget_customer(c, WILD[w]), NOT_FOUND, "fo_forget_customer", WILD[w]);
    /* Job ids are numbers from fo_dead_jobs: anything else is not one. */
    check(fo_job_retry(c, WILD[w]), NOT_FOUND | BAD_INPUT, "fo_job_retry", WILD[w]);
  }
}

/* --- hostile strings recorded and read back --------------------------------------------- */

static int contains(const char *hay, const char *needle) { return hay && strstr(hay, needle) != NULL; }

static void round_trips(fo_client *c) {
  char json[4096];
  char *out = NULL;
  for (size_t w = 0; w < N_WILD; w++) {
    const char *s = WILD[w];
    /* A customer whose id and every text field is the hostile string. */
    snprintf(json, sizeof json,
             "{\"id\": \"%s\", \"type\": \"person\", \"first_name\": \"%s\", \"last_name\": \"%s\","
             " \"email\": \"%s\", \"phone\": \"%s\", \"address\": {\"line1\": \"%s\", \"city\": \"%s\"},"
             " \"loyalty_id\": \"%s\"}",
             s, s, s, s, s, s, s, s);
    int r = check(fo_record_customer(c, json), OK | BAD_INPUT, "fo_record_customer", s);
    if (r == FO_OK) {
      out = NULL;
      CHECK_OUT(fo_customer_get(c, s, &out), OK, "fo_customer_get", s);
      char field[600];
      snprintf(field, sizeof field, "\"last_name\":\"%s\"", s);
      EXPECT_TRUE(contains(out, field), "customer %s reads back unchanged: %.400s", s, out ? out : "(null)");
      fo_string_free(out);
    } else {
      /* Only the e-mail or phone may be refused as malformed: name and id alone must pass. */
      snprintf(json, sizeof json,
               "{\"id\": \"%s\", \"type\": \"person\", \"first_name\": \"%s\", \"last_name\": \"%s\"}", s, s, s);
      check(fo_record_customer(c, json), OK, "fo_record_customer (names only)", s);
      out = NULL;
      CHECK_OUT(fo_customer_get(c, s, &out), OK, "fo_customer_get", s);
      char field[600];
      snprintf(field, sizeof field, "\"first_name\":\"%s\"", s);
      EXPECT_TRUE(contains(out, field), "customer %s reads back unchanged: %.400s", s, out ? out : "(null)");
      fo_string_free(out);
    }

    /* A sale with the hostile string as its id, line id, SKU, name and payment ids; then a
     * return and a cancellation of it, a receipt, a stock count and a goods reception. */
    snprintf(json, sizeof json,
             "{\"id\": \"%s\", \"created_at\": \"2026-11-28T10:15:00+01:00\", \"customer_id\": \"%s\","
             " \"lines\": [{\"line_id\": \"%s\", \"sku\": \"%s\", \"name\": \"%s\", \"quantity\": 2,"
             " \"unit_price\": 10000, \"tax_rate\": 25}],"
             " \"payments\": [{\"id\": \"%s\", \"method\": \"%s\", \"amount\": 20000, \"transaction_id\": \"%s\"}]}",
             s, s, s, s, s, s, s, s);
    check(fo_record_sale(c, json), OK, "fo_record_sale", s);
    check(fo_record_sale(c, json), OK, "fo_record_sale again (same content)", s);
    snprintf(json, sizeof json,
             "{\"warehouse_id\": \"oslo-1\", \"counted_at\": \"2026-11-28T08:00:00Z\","
             " \"items\": [{\"sku\": \"%s\", \"quantity\": 7}]}",
             s);
    check(fo_record_stock_count(c, json), OK, "fo_record_stock_count", s);
    out = NULL;
    CHECK_OUT(fo_stock_get(c, s, &out), OK, "fo_stock_get", s);
    char sku[600];
    snprintf(sku, sizeof sku, "\"sku\":\"%s\"", s);
    EXPECT_TRUE(contains(out, sku), "stock of %s reads back under its SKU: %.400s", s, out ? out : "(null)");
    fo_string_free(out);
    snprintf(json, sizeof json,
             "{\"id\": \"R-%s\", \"sale_id\": \"%s\", \"created_at\": \"2026-11-28T11:00:00+01:00\","
             " \"lines\": [{\"line_id\": \"%s\", \"quantity\": 1, \"amount\": 10000, \"restock\": true, \"reason\": \"%s\"}],"
             " \"refunds\": [{\"id\": \"RF-%s\", \"method\": \"%s\", \"amount\": 10000}]}",
             s, s, s, s, s, s);
    check(fo_record_return(c, json), OK, "fo_record_return", s);
    snprintf(json, sizeof json,
             "{\"id\": \"RC-%s\", \"sale_id\": \"%s\", \"receipt_number\": \"%s\","
             " \"issued_at\": \"2026-11-28T10:15:00+01:00\", \"total\": 20000, \"tax_total\": 4000,"
             " \"currency\": \"NOK\", \"file_name\": \"%s.pdf\"}",
             s, s, s, s);
    check(record_receipt_with_pdf(c, json), OK | BAD_INPUT, "fo_record_receipt", s);
    snprintf(json, sizeof json,
             "{\"id\": \"GR-%s\", \"received_at\": \"2026-11-28T08:00:00+01:00\","
             " \"lines\": [{\"sku\": \"%s\", \"quantity\": 5}]}",
             s, s);
    check(fo_record_goods_reception(c, json), OK, "fo_record_goods_reception", s);
    snprintf(json, sizeof json,
             "{\"id\": \"PU-%s\", \"order_id\": \"%s\", \"status\": \"picked_up\", \"at\": \"2026-11-28T12:00:00Z\"}",
             s, s);
    check(fo_record_pickup(c, json), OK, "fo_record_pickup", s);
    snprintf(json, sizeof json, "{\"className\": \"Order\", \"objectId\": \"%s\", \"storeId\": \"oslo-1\"}", s);
    check(fo_event_notify(c, json), OK, "fo_event_notify", s);
    out = NULL;
    CHECK_OUT(fo_product_get(c, s, &out), NOT_FOUND, "fo_product_get", s);
  }
  /* Quotes, backslashes and an escaped NUL inside a value come back escaped, unchanged. */
  check(fo_record_customer(c, "{\"id\": \"C-esc\", \"type\": \"person\", \"first_name\": \"a\\\"b\\\\c\\u0000d\\ud83d\\ude00\"}"),
        OK | BAD_INPUT, "fo_record_customer", "escapes");
  if (strcmp(fo_result_name(fo_customer_get(c, "C-esc", &out)), "FO_OK") == 0) {
    EXPECT_TRUE(contains(out, "\"first_name\":\"a\\\"b\\\\c\\u0000d\xf0\x9f\x98\x80\""), "escapes read back: %.300s", out);
    fo_string_free(out);
  }
  /* A JSON-escaped control character in an id is refused, not stored. */
  check(fo_record_sale(c, "{\"id\": \"S-\\u0000\", \"created_at\": \"2026-11-28T10:15:00+01:00\", \"lines\": [],"
                          " \"payments\": []}"),
        BAD_INPUT, "fo_record_sale", "\\u0000 in the id");
  /* A PDF of an impossible length is refused before it is read. */
check(fo_record_receipt(c, "{}", (const uint8_t *)"%PDF-", SIZE_MAX), BAD_INPUT | BAD_JSON, "fo_record_receipt", "SIZE_MAX pdf_len");
check(fo_record_receipt(c, "{\"id\": \"RC-1\"}", (const uint8_t *)"%PDF-", SIZE_MAX), BAD_INPUT, "fo_record_receipt",
        "SIZE_MAX pdf_len");
  check(fo_record_receipt(c, "{\"id\": \"RC-1\"}", NULL, 0), NUL_ARG, "fo_record_receipt", "NULL pdf");
}

/* --- fo_client_open ------------------------------------------------------------------------ */

static void open_args(const char *base_url, const char *dir, const char *huge_string_json) {
  fo_client *c = NULL;
  check(fo_client_open(NULL, &c), NUL_ARG, "fo_client_open", "NULL");
  EXPECT_TRUE(c == NULL, "out untouched");
  char db[4096];
  snprintf(db, sizeof db, "%s/open.db", dir);
  char *cfg = config(base_url, db);
  check(fo_client_open(cfg, NULL), NUL_ARG, "fo_client_open", "NULL out");
  for (size_t b = 0; b < n_bad; b++) {
    c = NULL;
    check(fo_client_open(BAD[b].json, &c), BAD_JSON, "fo_client_open", BAD[b].name);
    EXPECT_TRUE(c == NULL, "out untouched");
  }
  c = NULL;
  check(fo_client_open(huge_string_json, &c), CONFIG, "fo_client_open", "16 MiB");
  free(cfg);

  /* Hostile database paths: a URI, the directory itself, a name full of hostile characters
   * (opened, and exactly that file created). */
  const char *uris[] = {"file:hostile.db?mode=memory", "file:///tmp/x.db"};
  for (size_t i = 0; i < 2; i++) {
    cfg = config(base_url, uris[i]);
    c = NULL;
    check(fo_client_open(cfg, &c), CONFIG, "fo_client_open", uris[i]);
    free(cfg);
  }
  cfg = config(base_url, dir);
  c = NULL;
  check(fo_client_open(cfg, &c), STORAGE, "fo_client_open", "a directory");
  free(cfg);
  for (size_t w = 0; w < N_WILD; w++) {
    if (strchr(WILD[w], '/') || strchr(WILD[w], '\\')) continue;
    snprintf(db, sizeof db, "%s/%s.db", dir, WILD[w]);
    cfg = config(base_url, db);
    c = NULL;
    if (check(fo_client_open(cfg, &c), OK, "fo_client_open", WILD[w]) == FO_OK) {
      struct stat st;
      EXPECT_TRUE(stat(db, &st) == 0 && S_ISREG(st.st_mode), "database created at %s", db);
      fo_client_close(c);
    }
    free(cfg);
  }
  /* A path through a directory that does not exist: refused, nothing created. */
  snprintf(db, sizeof db, "%s/no-such-dir/../x.db", dir);
  cfg = config(base_url, db);
  c = NULL;
  /* Resolved by the kernel (refused) or lexically (opened inside the directory): either
   * way nothing is created outside it, which the driver checks. */
  if (check(fo_client_open(cfg, &c), STORAGE | OK, "fo_client_open", "through a missing directory") == FO_OK)
    fo_client_close(c);
  free(cfg);
  /* Hostile values in config keys and values. */
  char bad_url[4096], rtl[4096];
  snprintf(bad_url, sizeof bad_url,
           "{\"database_path\": \"%s/url.db\", \"store_id\": \"s\", \"market_id\": \"m\", \"currency\": \"NOK\","
           " \"omnium\": {\"base_url\": \"javascript:alert(1)\", \"client_id\": \"a\", \"client_secret\": \"b\"}}",
           dir);
  snprintf(rtl, sizeof rtl,
           "{\"database_path\": \"%s/rtl.db\", \"store_id\": \"s\", \"market_id\": \"m\", \"currency\": \"N\xf0\x9f\x98\x80\","
           " \"omnium\": {\"base_url\": \"http://127.0.0.1:9\", \"client_id\": \"a\", \"client_secret\": \"b\"}}",
           dir);
  const char *configs[][2] = {
      {"unknown key", "{\"'; DROP TABLE outbox; --\": 1}"},
      {"base_url javascript:", bad_url},
      {"emoji currency", rtl},
  };
  for (size_t i = 0; i < sizeof configs / sizeof configs[0]; i++) {
    c = NULL;
    check(fo_client_open(configs[i][1], &c), CONFIG, "fo_client_open", configs[i][0]);
    EXPECT_TRUE(c == NULL, "out untouched");
  }
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s <omnium base url> <private directory>\n", argv[0]);
    return 2;
  }
  const char *base_url = argv[1];
  const char *dir = argv[2];

  /* 10^6-deep nesting, both kinds, closed and not. */
  char *deep_arrays = repeat("", "[", 1000000, "");
  char *deep_objects = repeat("", "{\"a\":", 1000000, "1");
  char *deep_in_object = malloc(2000000 + 64);
  strcpy(deep_in_object, "{\"id\": \"S-1\", \"x\": ");
  size_t at = strlen(deep_in_object);
  memset(deep_in_object + at, '[', 1000000);
  memset(deep_in_object + at + 1000000, ']', 1000000);
  strcpy(deep_in_object + at + 2000000, "}");
  add_bad("empty", "");
  add_bad("not UTF-8", "\xff\xfe{}");
  add_bad("not UTF-8 inside a string", "{\"id\": \"S-\xff\"}");
  add_bad("a truncated UTF-8 sequence", "{\"id\": \"S-\xe2\x80\"}");
  add_bad("an interior NUL", "{\"id\": \"S-1\0\"}");
  add_bad("an array", "[]");
  add_bad("null", "null");
  add_bad("a number", "42");
  add_bad("a string", "\"{}\"");
  add_bad("10^6-deep arrays", deep_arrays);
  add_bad("10^6-deep objects", deep_objects);
  add_bad("10^6-deep inside an object", deep_in_object);
  add_bad("trailing garbage", "{} {}");
  add_bad("a BOM", "\xef\xbb\xbf{}");
  char *huge_id = repeat("", "x", MIB16, "");
  char *huge_string_json = repeat("{\"id\": \"", "x", MIB16, "\", \"database_path\": \"/x.db\"}");
  char *huge_space_json = repeat("", " ", MIB16, "{}");

  /* Static exports: any int, any time. */
  const int codes[] = {INT_MIN, -1, 11, 97, 98, 99, 100, INT_MAX};
  for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
    const char *name = fo_result_name(codes[i]);
    EXPECT_TRUE(name && (strncmp(name, "FO_", 3) == 0), "fo_result_name(%d) = %s", codes[i], name ? name : "NULL");
  }
  EXPECT_TRUE(strcmp(fo_result_name(INT_MIN), "FO_UNKNOWN") == 0, "INT_MIN is unknown");
  EXPECT_TRUE(fo_version() && fo_version()[0], "fo_version");
  EXPECT_TRUE(fo_last_error_message() != NULL, "fo_last_error_message");
  fo_string_free(NULL);
  fo_client_close(NULL);
  fo_set_log_callback(on_log, NULL, INT_MAX);
  fo_set_log_callback(on_log, NULL, INT_MIN);
  fo_set_log_callback(NULL, (void *)1, 5);
  fo_set_log_callback(on_log, NULL, 5);

  every_export_refuses(NULL, NUL_ARG, "NULL client");
  open_args(base_url, dir, huge_string_json);

  char db[4096];
  snprintf(db, sizeof db, "%s/hostile.db", dir);
  char *cfg = config(base_url, db);
  fo_client *c = NULL;
  if (check(fo_client_open(cfg, &c), OK, "fo_client_open", "valid") != FO_OK) {
    printf("%d passed, %d failed\n", passed, failed + 1);
    return 1;
  }
  free(cfg);

  json_args(c, huge_string_json, huge_space_json);
  id_args(c, huge_id);
  round_trips(c);

  /* The worker delivers what was recorded; the driver checks what Omnium received. Jobs
   * Omnium must refuse (a pickup of an order it does not have) die; flush waits for the rest. */
  check(fo_sync_now(c), OK, "fo_sync_now", "");
  int flushed = check(fo_flush(c, 120000), OK | TIMEOUT, "fo_flush", "120 s");
  printf("flush: %s\n", fo_result_name(flushed));
  char *out = NULL;
  CHECK_OUT(fo_status(c, &out), OK, "fo_status", "");
  printf("status: %s\n", out ? out : "");
  fo_string_free(out);
  out = NULL;
  CHECK_OUT(fo_dead_jobs(c, &out), OK, "fo_dead_jobs", "");
  fo_string_free(out);
  out = NULL;
  CHECK_OUT(fo_categories_list(c, &out), OK, "fo_categories_list", "");
  fo_string_free(out);
  out = NULL;
  CHECK_OUT(fo_brands_list(c, &out), OK, "fo_brands_list", "");
  fo_string_free(out);
  while (fo_next_event(c, 0, &out) == FO_OK) {
    fo_string_free(out);
    out = NULL;
  }
  check(fo_job_retry(c, NULL), OK | NOT_FOUND, "fo_job_retry", "NULL: all");
  check(fo_status(c, NULL), NUL_ARG, "fo_status", "NULL out");
  check(fo_next_event(c, 0, NULL), NUL_ARG, "fo_next_event", "NULL out");
  check(fo_dead_jobs(c, NULL), NUL_ARG, "fo_dead_jobs", "NULL out");
  check(fo_categories_list(c, NULL), NUL_ARG, "fo_categories_list", "NULL out");
  check(fo_brands_list(c, NULL), NUL_ARG, "fo_brands_list", "NULL out");

  fo_client_close(c);
  /* After close the handle is a tombstone: every call is FO_CLOSED, a second close a no-op. */
every_export_refuses(c, CLOSED, "closed client");
fo_client_close(c);
  fo_set_log_callback(NULL, NULL, 0);

  EXPECT_TRUE(log_calls > 0, "the log callback was called");
  free(deep_arrays);
  free(deep_objects);
  free(deep_in_object);
  free(huge_id);
  free(huge_string_json);
  free(huge_space_json);
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}

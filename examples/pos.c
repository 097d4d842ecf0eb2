/*
 * pos.c: the flow-omnium C API used the way a POS does.
 *
 *   cargo build --features sim
 *   target/debug/omnium-sim --port 0 &        # prints "omnium-sim listening on http://127.0.0.1:PORT"
 *   cc -Wall -Wextra -Werror -std=c11 -Iinclude examples/pos.c -Ltarget/debug -lflow_omnium -o /tmp/pos
 *   mkdir -p -m 700 /tmp/pos-demo && LD_LIBRARY_PATH=target/debug /tmp/pos http://127.0.0.1:PORT /tmp/pos-demo/pos.db
 *
 * Records the contract's example sale, shows that recording is idempotent, that a changed sale
 * under the same id is refused, that an unbalanced sale is rejected with the field named, then
 * records a return, waits for delivery and prints the sync status. Exits 0 only if every call
 * returned what was expected.
 */

#include <stdio.h>
#include <string.h>

#include "flow_omnium.h"

/* S-1001 from CONTRACT.md: 2 T-shirts at 199.50, paid 399.00 by card. */
static const char *SALE =
    "{\"id\": \"S-1001\", \"created_at\": \"2026-11-28T10:15:00+01:00\", \"store_id\": \"oslo-1\","
    " \"currency\": \"NOK\", \"customer_id\": \"C-77\", \"salesperson_id\": \"emp-3\", \"rounding\": 0,"
    " \"lines\": [{\"line_id\": \"1\", \"sku\": \"SKU-1\", \"name\": \"T-shirt\", \"quantity\": 2,"
    "            \"unit_price\": 19950, \"discount\": 0, \"tax_rate\": 25}],"
    " \"payments\": [{\"id\": \"P1\", \"method\": \"Card\", \"amount\": 39900, \"transaction_id\": \"tx-1\"}]}";

/* The same id with other content (three T-shirts): a bug in the POS, or a reused id. */
static const char *SALE_CHANGED =
    "{\"id\": \"S-1001\", \"created_at\": \"2026-11-28T10:15:00+01:00\", \"store_id\": \"oslo-1\","
    " \"currency\": \"NOK\", \"customer_id\": \"C-77\", \"salesperson_id\": \"emp-3\", \"rounding\": 0,"
    " \"lines\": [{\"line_id\": \"1\", \"sku\": \"SKU-1\", \"name\": \"T-shirt\", \"quantity\": 3,"
    "            \"unit_price\": 19950, \"discount\": 0, \"tax_rate\": 25}],"
    " \"payments\": [{\"id\": \"P1\", \"method\": \"Card\", \"amount\": 59850, \"transaction_id\": \"tx-1\"}]}";

/* Lines come to 399.00 but only 390.00 was paid. */
static const char *SALE_UNBALANCED =
    "{\"id\": \"S-1002\", \"created_at\": \"2026-11-28T10:20:00+01:00\","
    " \"lines\": [{\"line_id\": \"1\", \"sku\": \"SKU-1\", \"name\": \"T-shirt\", \"quantity\": 2,"
    "            \"unit_price\": 19950, \"tax_rate\": 25}],"
    " \"payments\": [{\"id\": \"P1\", \"method\": \"Card\", \"amount\": 39000, \"transaction_id\": \"tx-9\"}]}";

/* One T-shirt comes back; the till refunds it to the card. */
static const char *RETURN =
    "{\"id\": \"R-2001\", \"sale_id\": \"S-1001\", \"created_at\": \"2026-11-28T11:02:00+01:00\","
    " \"lines\": [{\"line_id\": \"1\", \"quantity\": 1, \"amount\": 19950, \"restock\": true, \"reason\": \"Defect\"}],"
    " \"refunds\": [{\"id\": \"P2\", \"method\": \"Card\", \"amount\": 19950, \"transaction_id\": \"tx-2\"}]}";

static int failures = 0;

/* Prints a call's result and counts it as a failure unless it is the one expected. On a
 * non-OK result the library's message is printed too (it names the field or the id). */
static void expect(const char *what, fo_result got, fo_result want)
{
    /* Copy the message first: it is only valid until the next fo_ call on this thread. */
    char message[512];
    snprintf(message, sizeof message, "%s", fo_last_error_message());
    int ok = got == want;
    printf("%-4s %-38s %s", ok ? "ok" : "FAIL", what, fo_result_name(got));
    if (!ok)
        printf(" (expected %s)", fo_result_name(want));
    printf("\n");
    if (got != FO_OK)
        printf("       message: %s\n", message);
    failures += !ok;
}

/* Writes `in` as the inside of a JSON string (quotes, backslashes and control characters
 * escaped). Returns 0, or -1 if it does not fit. */
static int json_escape(const char *in, char *out, size_t cap)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
        char buf[8];
        if (*p == '"' || *p == '\\')
            snprintf(buf, sizeof buf, "\\%c", *p);
        else if (*p < 0x20)
            snprintf(buf, sizeof buf, "\\u%04x", *p);
        else
            snprintf(buf, sizeof buf, "%c", *p);
        size_t len = strlen(buf);
        if (n + len >= cap)
            return -1;
        memcpy(out + n, buf, len);
        n += len;
    }
    out[n] = '\0';
    return 0;
}

/* Prints every event the library queued (sync.online, job.dead, ...), freeing each. */
static void drain_events(fo_client *c)
{
    char *event = NULL;
    while (fo_next_event(c, 0, &event) == FO_OK) {
        printf("       event: %s\n", event);
        fo_string_free(event);
        event = NULL;
    }
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s <omnium_base_url> <db_path>\n", argv[0]);
        return 2;
    }
    printf("flow-omnium %s\n", fo_version());

    char url[512], db[1024], config[2048];
    if (json_escape(argv[1], url, sizeof url) != 0 || json_escape(argv[2], db, sizeof db) != 0) {
        fprintf(stderr, "pos: base_url or db_path is too long\n");
        return 2;
    }
    int len = snprintf(config, sizeof config,
                       "{\"database_path\": \"%s\", \"store_id\": \"oslo-1\", \"market_id\": \"NOR\","
                       " \"currency\": \"NOK\", \"terminal_id\": \"t01\","
                       " \"omnium\": {\"base_url\": \"%s\", \"client_id\": \"sim-client\","
                       "             \"client_secret\": \"sim-secret\"},"
                       " \"sync\": {\"retry_initial_ms\": 100}}",
                       db, url);
    if (len < 0 || (size_t)len >= sizeof config) {
        fprintf(stderr, "pos: config does not fit\n");
        return 2;
    }

    fo_client *c = NULL;
    fo_result r = fo_client_open(config, &c);
    expect("fo_client_open", r, FO_OK);
    if (r != FO_OK)
        return 1;

    expect("fo_record_sale S-1001", fo_record_sale(c, SALE), FO_OK);
    expect("fo_record_sale S-1001 again (same)", fo_record_sale(c, SALE), FO_OK);
    expect("fo_record_sale S-1001 changed", fo_record_sale(c, SALE_CHANGED), FO_CONFLICT);
    expect("fo_record_sale S-1002 unbalanced", fo_record_sale(c, SALE_UNBALANCED), FO_INVALID_INPUT);
    expect("fo_record_return R-2001", fo_record_return(c, RETURN), FO_OK);

    /* A POS would do this at closing time, or before shutting the terminal down. */
    expect("fo_flush (10 s)", fo_flush(c, 10000), FO_OK);

    char *status = NULL;
    r = fo_status(c, &status);
    expect("fo_status", r, FO_OK);
    if (r == FO_OK) {
        printf("       status: %s\n", status);
        fo_string_free(status);
    }
    drain_events(c);

    fo_client_close(c);
    printf("%s\n", failures == 0 ? "all calls returned what was expected" : "SOME CALLS FAILED");
    return failures == 0 ? 0 : 1;
}

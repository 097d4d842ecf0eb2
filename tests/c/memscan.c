/* After fo_client_close, neither the client secret nor any token Omnium issued nor the name
 * of a customer forgotten with fo_forget_customer is left in the process's memory
 * (tests/memory_scan.rs drives this program).
 *
 *   memscan <base_url> <database_path> <secret as hex>
 *
 * The secret arrives hex-encoded, so argv and environ never hold it; it is decoded straight
 * into the config buffer, which is wiped after fo_client_open. The program records a sale and
 * flushes, prints "flushed", reads the tokens the simulator issued (hex, one line), and scans
 * its own writable memory (/proc/self/maps + /proc/self/mem) while the client is open: both
 * must be found there, which shows the scan sees them. The customer's name, made up at run
 * time, is recorded, delivered, found by a scan, then forgotten. It then closes the client
 * and scans again: nothing may be found. Needles are kept XOR-masked, so the scan never plants the very
 * bytes it looks for. Prints "memscan: N passed, M failed". */
#define _GNU_SOURCE
#include "flow_omnium.h"
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MASK 0x5A
#define MAX_NEEDLES 64

struct needle {
    char label[32];
    unsigned char masked[256];
    size_t len;
};

static struct needle needles[MAX_NEEDLES];
static int n_needles;
static int passed, failed;

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decodes hex into `out` XOR-masked; returns the length or 0. */
static size_t unhex_masked(const char *hex, size_t hex_len, unsigned char *out, size_t cap) {
    if (hex_len % 2 || hex_len / 2 > cap) return 0;
    for (size_t i = 0; i < hex_len / 2; i++) {
        int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) return 0;
        out[i] = (unsigned char)((hi << 4 | lo) ^ MASK);
    }
    return hex_len / 2;
}

static void add_needle(const char *label, const char *hex, size_t hex_len) {
    if (n_needles == MAX_NEEDLES) return;
    struct needle *n = &needles[n_needles];
    snprintf(n->label, sizeof n->label, "%s", label);
    n->len = unhex_masked(hex, hex_len, n->masked, sizeof n->masked);
    if (n->len >= 8) n_needles++;
}

static void check(int ok, const char *what) {
    if (ok) {
        passed++;
    } else {
        failed++;
        printf("FAILED: %s\n", what);
    }
}

/* Occurrences of each needle in every readable and writable private or anonymous mapping. */
static void scan(long counts[MAX_NEEDLES]) {
    memset(counts, 0, sizeof(long) * MAX_NEEDLES);
    FILE *maps = fopen("/proc/self/maps", "r");
    int mem = open("/proc/self/mem", O_RDONLY);
    if (!maps || mem < 0) {
        printf("cannot open /proc/self/maps or mem\n");
        exit(2);
    }
    static unsigned char buf[1 << 20];
    char line[512];
    while (fgets(line, sizeof line, maps)) {
        unsigned long lo, hi;
        char perms[5] = {0};
        if (sscanf(line, "%lx-%lx %4s", &lo, &hi, perms) != 3) continue;
        if (perms[0] != 'r' || perms[1] != 'w') continue;
        if (strstr(line, "[vvar") || strstr(line, "[vsyscall]")) continue;
        /* Overlap chunks by the longest needle so nothing straddles a boundary unseen. */
        size_t overlap = 255;
        for (unsigned long at = lo; at < hi;) {
            size_t want = sizeof buf;
            if (hi - at < want) want = hi - at;
            ssize_t got = pread(mem, buf, want, (off_t)at);
            if (got <= 0) break;
            for (int k = 0; k < n_needles; k++) {
                const struct needle *n = &needles[k];
                if ((size_t)got < n->len) continue;
                unsigned char first = n->masked[0] ^ MASK;
                for (size_t i = 0; i + n->len <= (size_t)got; i++) {
                    if (buf[i] != first) continue;
                    size_t j = 1;
                    while (j < n->len && (buf[i + j] ^ MASK) == n->masked[j]) j++;
                    if (j == n->len) counts[k]++;
                }
            }
            if ((size_t)got < want || at + (unsigned long)got >= hi) break;
            at += (unsigned long)got - overlap;
        }
    }
    memset(buf, 0, sizeof buf);
    fclose(maps);
    close(mem);
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: memscan <base_url> <database_path> <secret hex>\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IONBF, 0);
    const char *secret_hex = argv[3];
    size_t secret_len = strlen(secret_hex) / 2;
    add_needle("client secret", secret_hex, strlen(secret_hex));

    /* The config, with the secret decoded straight into it. */
    const char *head_fmt =
        "{\"database_path\": \"%s\", \"store_id\": \"oslo-1\", \"market_id\": \"NOR\", "
        "\"currency\": \"NOK\", \"omnium\": {\"base_url\": \"%s\", \"client_id\": \"sim-client\", "
        "\"client_secret\": \"";
    const char *tail = "\"}, \"sync\": {\"retry_initial_ms\": 50, \"retry_max_ms\": 400}}";
    size_t cap = strlen(head_fmt) + strlen(argv[1]) + strlen(argv[2]) + secret_len + strlen(tail) + 1;
    char *config = malloc(cap);
    int head = snprintf(config, cap, head_fmt, argv[2], argv[1]);
    for (size_t i = 0; i < secret_len; i++) {
        config[head + i] = (char)(hexval(secret_hex[2 * i]) << 4 | hexval(secret_hex[2 * i + 1]));
    }
    strcpy(config + head + secret_len, tail);

    fo_client *c = NULL;
    int rc = fo_client_open(config, &c);
    explicit_bzero(config, cap);
    free(config);
    if (rc != FO_OK) {
        printf("fo_client_open: %d %s\n", rc, fo_last_error_message());
        return 1;
    }
    rc = fo_record_sale(c,
        "{\"id\": \"S-MEM-1\", \"created_at\": \"2026-11-28T10:15:00+01:00\", "
        "\"lines\": [{\"line_id\": \"1\", \"sku\": \"SKU-1\", \"name\": \"Item\", \"quantity\": 1, "
        "\"unit_price\": 10000, \"tax_rate\": 25}], \"payments\": [{\"id\": \"P1\", "
        "\"method\": \"Card\", \"amount\": 10000, \"transaction_id\": \"tx-1\"}]}");
    check(rc == FO_OK, "fo_record_sale");
    rc = fo_flush(c, 10000);
    check(rc == FO_OK, "fo_flush");
    printf("flushed\n");

    /* The tokens the simulator issued, hex, space-separated, one line. */
    static char tokens[8192];
    if (!fgets(tokens, sizeof tokens, stdin)) {
        printf("no token line\n");
        return 2;
    }
    for (char *t = strtok(tokens, " \n"); t; t = strtok(NULL, " \n")) {
        add_needle("token", t, strlen(t));
    }
    explicit_bzero(tokens, sizeof tokens);
    check(n_needles >= 2, "the secret and at least one token to look for");

    /* A customer whose last name exists nowhere else: made up now, kept masked. */
    char name[40];
    snprintf(name, sizeof name, "Qzmemscanova%08lx", (unsigned long)(getpid() * 2654435761u ^ (unsigned long)time(NULL)));
    char name_hex[2 * sizeof name + 1];
    for (size_t i = 0; name[i]; i++) snprintf(name_hex + 2 * i, 3, "%02x", (unsigned char)name[i]);
    int name_needle = n_needles;
    add_needle("forgotten customer's name", name_hex, strlen(name_hex));
    explicit_bzero(name_hex, sizeof name_hex);
    char *customer = malloc(512);
    snprintf(customer, 512,
             "{\"id\": \"C-MEM-1\", \"type\": \"person\", \"first_name\": \"Kari\","
             " \"last_name\": \"%s\", \"email\": \"kari@example.com\"}", name);
    explicit_bzero(name, sizeof name);
    rc = fo_record_customer(c, customer);
    explicit_bzero(customer, 512);
    free(customer);
    check(rc == FO_OK, "fo_record_customer");
    rc = fo_flush(c, 10000);
    check(rc == FO_OK, "fo_flush (customer)");

    long counts[MAX_NEEDLES];
    scan(counts);
    /* While the client is open it holds the secret and its token: the scan must see them. */
    check(counts[0] >= 1, "the scan finds the secret while the client is open");
    long live_tokens = 0;
    for (int k = 1; k < n_needles; k++) live_tokens += counts[k];
    check(live_tokens >= 1, "the scan finds the token while the client is open");
    check(counts[name_needle] >= 1, "the scan finds the customer's name while it is held");
    printf("open: secret %ld, tokens %ld, customer's name %ld\n", counts[0], live_tokens,
           counts[name_needle]);

    rc = fo_forget_customer(c, "C-MEM-1");
    check(rc == FO_OK, "fo_forget_customer");

    fo_client_close(c);
    scan(counts);
    for (int k = 0; k < n_needles; k++) {
        char what[96];
        snprintf(what, sizeof what, "no copy of the %s after close (found %ld)", needles[k].label,
                 counts[k]);
        check(counts[k] == 0, what);
    }
    printf("memscan: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

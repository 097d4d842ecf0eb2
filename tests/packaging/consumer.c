/* A POS-like program built against an installed flow-omnium (pkg-config, CMake, or the
 * static library beside the system SQLite). It records a sale offline and reads it back in
 * fo_status. With -DWITH_SYSTEM_SQLITE it also uses the system's libsqlite3 in the same
 * process: the static library's own SQLite must not replace it (its symbols are local). */
#include <flow_omnium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef WITH_SYSTEM_SQLITE
#include <sqlite3.h>
#endif

#if !defined(FO_VERSION_MAJOR) || !defined(FO_VERSION_MINOR) || !defined(FO_VERSION_PATCH)
#error "the header has no version macros"
#endif

static int fail(const char *what, enum fo_result r) {
  fprintf(stderr, "%s: %s: %s\n", what, fo_result_name((int)r), fo_last_error_message());
  return 1;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: consumer DIR (a private directory for the database)\n");
    return 2;
  }
  char version[32];
  snprintf(version, sizeof version, "%d.%d.%d", FO_VERSION_MAJOR, FO_VERSION_MINOR, FO_VERSION_PATCH);
  if (strcmp(version, fo_version()) != 0 || strcmp(FO_VERSION_STRING, fo_version()) != 0) {
    fprintf(stderr, "header says %s, library says %s\n", version, fo_version());
    return 1;
  }
#ifdef WITH_SYSTEM_SQLITE
  /* The system library answers, not the copy inside flow-omnium. */
  if (strcmp(sqlite3_libversion(), SQLITE_VERSION) != 0) {
    fprintf(stderr, "sqlite3_libversion() is %s, the system header says %s\n", sqlite3_libversion(),
            SQLITE_VERSION);
    return 1;
  }
  sqlite3 *db = NULL;
  char *err = NULL;
  if (sqlite3_open(":memory:", &db) != SQLITE_OK ||
      sqlite3_exec(db, "CREATE TABLE t (x); INSERT INTO t VALUES (1);", NULL, NULL, &err) != SQLITE_OK) {
    fprintf(stderr, "system sqlite: %s\n", err ? err : "open failed");
    return 1;
  }
#endif
  char config[1024];
  snprintf(config, sizeof config,
           "{\"database_path\": \"%s/pos.db\", \"store_id\": \"oslo-1\", \"market_id\": \"NOR\","
           " \"currency\": \"NOK\", \"omnium\": {\"base_url\": \"http://127.0.0.1:9\","
           " \"client_id\": \"c\", \"client_secret\": \"s\"}, \"sync\": {\"autostart\": false}}",
           argv[1]);
  fo_client *client = NULL;
  enum fo_result r = fo_client_open(config, &client);
  if (r != FO_OK) return fail("fo_client_open", r);
  r = fo_record_sale(client,
                     "{\"id\": \"S-1\", \"created_at\": \"2026-11-28T10:15:00+01:00\", \"lines\": [{\"line_id\": "
                     "\"1\", \"sku\": \"SKU-1\", \"name\": \"Item\", \"quantity\": 1, \"unit_price\": 10000, "
                     "\"tax_rate\": 25}], \"payments\": [{\"id\": \"P1\", \"method\": \"Card\", \"amount\": "
                     "10000, \"transaction_id\": \"tx-1\"}]}");
  if (r != FO_OK) return fail("fo_record_sale", r);
  char *status = NULL;
  r = fo_status(client, &status);
  if (r != FO_OK) return fail("fo_status", r);
  int ok = strstr(status, "\"pending\":1") != NULL;
  printf("flow-omnium %s: %s\n", fo_version(), status);
  fo_string_free(status);
  fo_client_close(client);
#ifdef WITH_SYSTEM_SQLITE
  sqlite3_close(db);
#endif
  return ok ? 0 : 1;
}

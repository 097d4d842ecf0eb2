/*
 * The storage rules through C: one client per database ("in use"), a file that is not a
 * database left alone, fo_forget_customer, and a forked child that does not keep the
 * database locked after the parent closes its client.
 * Usage: storage_files <db_path> <not_a_database_path>
 */
#define _POSIX_C_SOURCE 200809L
#include "flow_omnium.h"

#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int failures = 0;

#define EXPECT(call, want)                                                                  \
  do {                                                                                      \
    fo_result got_ = (call);                                                                \
    if (got_ != (want)) {                                                                   \
      fprintf(stderr, "%s:%d: %s gave %s, want %s (%s)\n", __FILE__, __LINE__, #call,       \
              fo_result_name(got_), fo_result_name(want), fo_last_error_message());         \
      failures++;                                                                           \
    }                                                                                       \
  } while (0)

#define CHECK(cond, what)                                                                   \
  do {                                                                                      \
    if (!(cond)) {                                                                          \
      fprintf(stderr, "%s:%d: %s (%s)\n", __FILE__, __LINE__, what, fo_last_error_message()); \
      failures++;                                                                           \
    }                                                                                       \
  } while (0)

static void config_for(char *out, size_t n, const char *db) {
  snprintf(out, n,
           "{\"database_path\": \"%s\", \"store_id\": \"oslo-1\", \"market_id\": \"NOR\", \"currency\": \"NOK\","
           " \"omnium\": {\"base_url\": \"http://127.0.0.1:9\", \"client_id\": \"sim-client\","
           " \"client_secret\": \"sim-secret\"}, \"sync\": {\"autostart\": false}}",
           db);
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s <db_path> <not_a_database_path>\n", argv[0]);
    return 2;
  }
  char config[2048];
  config_for(config, sizeof config, argv[1]);
  fo_client *c = NULL;
  EXPECT(fo_client_open(config, &c), FO_OK);
  if (c == NULL) return 1;

  /* A second client on the same database is refused while the first holds it. */
  fo_client *second = NULL;
  EXPECT(fo_client_open(config, &second), FO_STORAGE);
  CHECK(strstr(fo_last_error_message(), "in use") != NULL, "the message says \"in use\"");
  CHECK(second == NULL, "out pointer untouched on failure");

  /* Forgetting a customer. */
  EXPECT(fo_record_customer(c, "{\"id\": \"C-9\", \"type\": \"person\", \"first_name\": \"Kari\","
                               " \"last_name\": \"Nordmann\", \"email\": \"kari@example.no\"}"),
         FO_OK);
  EXPECT(fo_forget_customer(NULL, "C-9"), FO_NULL_ARGUMENT);
  EXPECT(fo_forget_customer(c, NULL), FO_NULL_ARGUMENT);
  EXPECT(fo_forget_customer(c, ""), FO_INVALID_INPUT);
  EXPECT(fo_forget_customer(c, "C-9"), FO_OK);
  char *json = NULL;
  EXPECT(fo_customer_get(c, "C-9", &json), FO_NOT_FOUND);
  fo_string_free(json);
  EXPECT(fo_forget_customer(c, "C-unknown"), FO_NOT_FOUND);

  /* A child forked while the client is open (a helper program the POS starts) outlives
   * it: closing the client still lets the next one open. The child only waits. */
  int go[2];
  CHECK(pipe(go) == 0, "pipe");
  pid_t child = fork();
  if (child == 0) {
    char b;
    close(go[1]);
    while (read(go[0], &b, 1) < 0) {
    }
    _exit(0);
  }
  CHECK(child > 0, "fork");
  close(go[0]);

  /* Closed: the next client opens, though the forked child is still alive. */
  fo_client_close(c);
  EXPECT(fo_client_open(config, &second), FO_OK);
  fo_client_close(second);
  close(go[1]);
  if (child > 0) waitpid(child, NULL, 0);

  /* Not a database: refused. */
  char other[2048];
  config_for(other, sizeof other, argv[2]);
  fo_client *none = NULL;
  EXPECT(fo_client_open(other, &none), FO_STORAGE);
  CHECK(strstr(fo_last_error_message(), "not a SQLite database") != NULL, "the message says why");

  printf("%s\n", failures == 0 ? "storage_files.c: all passed" : "storage_files.c: FAILED");
  return failures == 0 ? 0 : 1;
}

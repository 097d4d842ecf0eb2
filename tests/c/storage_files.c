/*
 * The storage rules through C: one client per database ("in use"), a file that is not a
 * database left alone, fo_forget_customer, a forked child that does not keep the
 * database locked after the parent closes its client, and the catalog's own file
 * (`<db>-catalog`): owner-only under umask 000, a symlink at its name refused, and the file
 * itself refused as a database_path.
 * Usage: storage_files <db_path> <not_a_database_path>
 */
#define _POSIX_C_SOURCE 200809L
#include "flow_omnium.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
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
  /* Every file the library makes is owner-only whatever the umask. */
  umask(0);
  fo_client *c = NULL;
  EXPECT(fo_client_open(config, &c), FO_OK);
  if (c == NULL) return 1;

  /* The catalog's own file beside the database, owner-only like the database. */
  char catalog[1100];
  snprintf(catalog, sizeof catalog, "%s-catalog", argv[1]);
  struct stat st;
  CHECK(stat(argv[1], &st) == 0 && (st.st_mode & 0777) == 0600, "the database is 0600");
  CHECK(stat(catalog, &st) == 0, "the catalog file exists beside the database");
  CHECK((st.st_mode & 0777) == 0600, "the catalog file is 0600 under umask 000");

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

  /* The catalog file named as a database: refused, not made into one. */
  char as_db[2048];
  config_for(as_db, sizeof as_db, catalog);
  EXPECT(fo_client_open(as_db, &none), FO_STORAGE);
  CHECK(strstr(fo_last_error_message(), "catalog file") != NULL, "the message says why");

  /* A symlink at another database's catalog name: refused, nothing created. */
  char linked_db[1100], linked_catalog[1200], target[1100];
  snprintf(linked_db, sizeof linked_db, "%s.linked", argv[1]);
  snprintf(linked_catalog, sizeof linked_catalog, "%s-catalog", linked_db);
  snprintf(target, sizeof target, "%s.elsewhere", argv[1]);
  CHECK(symlink(target, linked_catalog) == 0, "symlink");
  char linked[2048];
  config_for(linked, sizeof linked, linked_db);
  EXPECT(fo_client_open(linked, &none), FO_STORAGE);
  CHECK(strstr(fo_last_error_message(), "symbolic link") != NULL, "the message says why");
  CHECK(access(target, F_OK) != 0, "nothing created at the link's target");
  CHECK(access(linked_db, F_OK) != 0, "no database created");

  printf("%s\n", failures == 0 ? "storage_files.c: all passed" : "storage_files.c: FAILED");
  return failures == 0 ? 0 : 1;
}

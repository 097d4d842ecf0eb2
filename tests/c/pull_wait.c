/*
 * Opens a client and lets its sync thread pull until the process is killed.
 * Usage: pull_wait <base_url> <db_path>
 */
#define _POSIX_C_SOURCE 200809L
#include "flow_omnium.h"

#include <stdio.h>
#include <time.h>

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s <base_url> <db_path>\n", argv[0]);
    return 2;
  }
  char config[1024];
  snprintf(config, sizeof config,
           "{\"database_path\": \"%s\", \"store_id\": \"oslo-1\", \"market_id\": \"NOR\", \"currency\": \"NOK\","
           " \"omnium\": {\"base_url\": \"%s\", \"client_id\": \"sim-client\", \"client_secret\": \"sim-secret\"},"
           " \"sync\": {\"pull_overlap_ms\": 0}}",
           argv[2], argv[1]);
  fo_client *c = NULL;
  if (fo_client_open(config, &c) != FO_OK) {
    fprintf(stderr, "open: %s\n", fo_last_error_message());
    return 1;
  }
  puts("open");
  fflush(stdout);
  for (;;) {
    struct timespec t = {1, 0};
    nanosleep(&t, NULL);
  }
}

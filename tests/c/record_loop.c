/*
 * Records sales as fast as it can and prints each id once fo_record_sale returned FO_OK,
 * until it is killed. The durability tests kill it with SIGKILL at a random moment and
 * check that every printed id survived.
 * Usage: record_loop <db_path> <id_prefix> [threads]
 * With threads > 1, that many threads record at once on one client (their commits are
 * shared), each its own ids (<prefix>-<thread>-<n>).
 */
#define _POSIX_C_SOURCE 200809L
#include "flow_omnium.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static fo_client *c = NULL;
static const char *prefix = "";

static void *record(void *arg) {
  long t = (long)arg;
  for (long i = 0;; i++) {
    char id[256];
    if (t < 0) {
      snprintf(id, sizeof id, "%s-%ld", prefix, i);
    } else {
      snprintf(id, sizeof id, "%s-%ld-%ld", prefix, t, i);
    }
    char sale[1024];
    snprintf(sale, sizeof sale,
             "{\"id\": \"%s\", \"created_at\": \"2026-11-28T10:15:00+01:00\","
             " \"lines\": [{\"line_id\": \"1\", \"sku\": \"SKU-1\", \"quantity\": 1, \"unit_price\": 10000}],"
             " \"payments\": [{\"method\": \"Card\", \"amount\": 10000}]}",
             id);
    fo_result r = fo_record_sale(c, sale);
    if (r != FO_OK) {
      fprintf(stderr, "record %s: %s %s\n", id, fo_result_name(r), fo_last_error_message());
      exit(1);
    }
    flockfile(stdout);
    printf("%s\n", id);
    fflush(stdout);
    funlockfile(stdout);
  }
  return NULL;
}

int main(int argc, char **argv) {
  if (argc != 3 && argc != 4) {
    fprintf(stderr, "usage: %s <db_path> <id_prefix> [threads]\n", argv[0]);
    return 2;
  }
  prefix = argv[2];
  long threads = argc == 4 ? atol(argv[3]) : 1;
  char config[1024];
  snprintf(config, sizeof config,
           "{\"database_path\": \"%s\", \"store_id\": \"oslo-1\", \"market_id\": \"NOR\", \"currency\": \"NOK\","
           " \"omnium\": {\"base_url\": \"http://127.0.0.1:9\", \"client_id\": \"sim-client\","
           " \"client_secret\": \"sim-secret\"}, \"sync\": {\"autostart\": false}}",
           argv[1]);
  if (fo_client_open(config, &c) != FO_OK) {
    fprintf(stderr, "open: %s\n", fo_last_error_message());
    return 1;
  }
  if (threads <= 1) {
    record((void *)-1L);
  }
  pthread_t tid[64];
  if (threads > 64) {
    threads = 64;
  }
  for (long t = 0; t < threads; t++) {
    if (pthread_create(&tid[t], NULL, record, (void *)t) != 0) {
      fprintf(stderr, "pthread_create failed\n");
      return 1;
    }
  }
  for (long t = 0; t < threads; t++) {
    pthread_join(tid[t], NULL);
  }
  return 0;
}

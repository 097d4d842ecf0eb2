/*
 * Records sales as fast as it can and prints each id once fo_record_sale returned FO_OK,
 * until it is killed. The durability test kills it with SIGKILL at a random moment and
 * checks that every printed id survived.
 * Usage: record_loop <db_path> <id_prefix>
 */
#include "flow_omnium.h"

#include <stdio.h>

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s <db_path> <id_prefix>\n", argv[0]);
    return 2;
  }
  char config[1024];
  snprintf(config, sizeof config,
           "{\"database_path\": \"%s\", \"store_id\": \"oslo-1\", \"market_id\": \"NOR\", \"currency\": \"NOK\","
           " \"omnium\": {\"base_url\": \"http://127.0.0.1:9\", \"client_id\": \"sim-client\","
           " \"client_secret\": \"sim-secret\"}, \"sync\": {\"autostart\": false}}",
           argv[1]);
  fo_client *c = NULL;
  if (fo_client_open(config, &c) != FO_OK) {
    fprintf(stderr, "open: %s\n", fo_last_error_message());
    return 1;
  }
  for (long i = 0;; i++) {
    char sale[1024];
    snprintf(sale, sizeof sale,
             "{\"id\": \"%s-%ld\", \"created_at\": \"2026-11-28T10:15:00+01:00\","
             " \"lines\": [{\"line_id\": \"1\", \"sku\": \"SKU-1\", \"quantity\": 1, \"unit_price\": 10000}],"
             " \"payments\": [{\"method\": \"Card\", \"amount\": 10000}]}",
             argv[2], i);
    fo_result r = fo_record_sale(c, sale);
    if (r != FO_OK) {
      fprintf(stderr, "record %ld: %s %s\n", i, fo_result_name(r), fo_last_error_message());
      return 1;
    }
    printf("%s-%ld\n", argv[2], i);
    fflush(stdout);
  }
}

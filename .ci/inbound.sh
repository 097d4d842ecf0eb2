#!/usr/bin/env bash
# Issue 12: every inbound end-to-end test again against a less kind Omnium: its search index
# shows writes 800 ms late (with their original `modified`), and inventory is stamped apart
# from orders, once earlier and once later. Budget: about 5 minutes once built (the debug
# test binaries are those `cargo test --features sim` built; pull_e2e waits out the lag
# before the pulls that must see a write, about 1 to 1.5 minutes a round).
set -euo pipefail
cd "$(dirname "$0")/.."
export FO_SIM_INDEX_LAG_MS=800
for offset in -700 700; do
  echo "== inbound tests: index lag ${FO_SIM_INDEX_LAG_MS} ms, inventory stamps ${offset} ms from orders"
  FO_SIM_STOCK_STAMP_OFFSET_MS=$offset cargo test --features sim \
    --test orders_e2e --test inbound_e2e --test back_office_e2e --test pull_e2e
done

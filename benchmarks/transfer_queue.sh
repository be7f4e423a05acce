#!/usr/bin/env bash
# The transfer runs in the order they pay off, one at a time; each finished (category,
# system, share, seed) is cached, so rerunning this script continues where it stopped.
#   nohup bash benchmarks/transfer_queue.sh >/dev/null 2>&1 &      log: .mtrec/bench/transfer.log
set -u
cd "$(dirname "$0")/.."
mkdir -p .mtrec/bench
log=.mtrec/bench/transfer.log
for step in "amazon-office 0" "amazon-scientific 0" "amazon-office 1,2" "amazon-beauty 0" \
            "amazon-scientific 1,2" "amazon-beauty 1,2"; do
  set -- $step
  echo "$(date -u +%FT%TZ) start: transfer --held-out $1 --seeds $2" >> "$log"
  .venv/bin/python -m benchmarks transfer --held-out "$1" --seeds "$2" >> "$log" 2>&1
  echo "$(date -u +%FT%TZ) exit $?: transfer --held-out $1 --seeds $2" >> "$log"
done
.venv/bin/python -m benchmarks transfer --cached-only >> "$log" 2>&1

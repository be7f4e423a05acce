#!/usr/bin/env bash
# The multi-scenario runs in the order they pay off, one at a time; each finished
# (dataset, system, seed) is cached, so rerunning this script continues where it stopped.
#   nohup bash benchmarks/scenarios_queue.sh >/dev/null 2>&1 &      log: .mtrec/bench/scenarios.log
set -u
cd "$(dirname "$0")/.."
mkdir -p .mtrec/bench
log=.mtrec/bench/scenarios.log
for step in "amazon-phone-electronic 0" "amazon-phone-electronic 1,2" "amazon-sport-cloth 0" \
            "amazon-sport-cloth 1,2"; do
  set -- $step
  echo "$(date -u +%FT%TZ) start: scenarios --datasets $1 --seeds $2" >> "$log"
  .venv/bin/python -m benchmarks scenarios --datasets "$1" --seeds "$2" >> "$log" 2>&1
  echo "$(date -u +%FT%TZ) exit $?: scenarios --datasets $1 --seeds $2" >> "$log"
done
.venv/bin/python -m benchmarks scenarios --seeds 0,1,2 --cached-only >> "$log" 2>&1

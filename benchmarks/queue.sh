#!/usr/bin/env bash
# The at-convergence comparisons in the order they pay off, one heavy job at a time; every
# step resumes where a killed run stopped (benchmarks/runs.py), so rerunning this script
# after an interruption continues the queue.  Log: .mtrec/bench/queue.log
#   nohup bash benchmarks/queue.sh >/dev/null 2>&1 &
set -u
cd "$(dirname "$0")/.."
mkdir -p .mtrec/bench
log=.mtrec/bench/queue.log
# Office first: its peers are the quickest to converge (4,905 users, 2,420 items)
for step in "office --mtrec-only" office "beauty --mtrec-only" "scientific --mtrec-only" \
            scientific beauty; do
  echo "$(date -u +%FT%TZ) start: python -m benchmarks $step" >> "$log"
  # shellcheck disable=SC2086
  .venv/bin/python -m benchmarks $step >> "$log" 2>&1
  rc=$?  # (taken at once: the date substitution below would reset $?)
  echo "$(date -u +%FT%TZ) exit $rc: python -m benchmarks $step" >> "$log"
done

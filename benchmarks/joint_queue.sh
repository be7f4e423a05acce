#!/usr/bin/env bash
# The runs of the joint-training issue in the order they pay off, one at a time; each finished
# (dataset, system, seed) is cached, so rerunning this script continues where it stopped.
#   MTREC_RECBOLE_CDR_SRC=/path/to/RecBole-CDR nohup bash benchmarks/joint_queue.sh >/dev/null 2>&1 &
# log: .mtrec/bench/joint.log (RecBole-CDR steps fail fast, and are skipped, without the source)
set -u
cd "$(dirname "$0")/.."
mkdir -p .mtrec/bench
log=.mtrec/bench/joint.log
run() {
  echo "$(date -u +%FT%TZ) start: $*" >> "$log"
  .venv/bin/python -m benchmarks "$@" >> "$log" 2>&1
  local rc=$?
  echo "$(date -u +%FT%TZ) exit $rc: $*" >> "$log"
}
three=amazon-beauty+amazon-scientific+amazon-office
run scenarios --datasets $three --seeds 0 --layers plain
run scenarios --datasets amazon-phone-electronic --seeds 0 --layers plain
run scenarios --datasets $three --seeds 0
run scenarios --datasets amazon-phone-electronic --seeds 0 --cdr CMF
run remedies --datasets ml100k --seeds 0,1,2
run scenarios --datasets $three --seeds 0,1,2
run scenarios --datasets amazon-phone-electronic --seeds 0,1,2
run remedies --datasets jdata --seeds 0,1,2
run scenarios --datasets amazon-phone-electronic --seeds 0,1,2 --cdr CMF,DTCDR,CoNet
run scenarios --datasets amazon-sport-cloth --seeds 0
run scenarios --datasets amazon-sport-cloth --seeds 0,1,2 --cdr CMF,DTCDR,CoNet
run scenarios --seeds 0,1,2 --cdr CMF,DTCDR,CoNet --cached-only
run remedies --seeds 0,1,2 --cached-only

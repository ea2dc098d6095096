#!/bin/bash
# Interleaved A/B of two builds on the C path (rraft-bench counter: the
# examples-c/counter servers and client), rows 1/64/256 callers, a pthread
# per caller and --async, REPS runs each (default 3), medians per build.
# Each ROOT is a source tree with `cargo build --release` and
# `make -C examples-c/counter` done: its counter binaries link its own
# target/release/librraft.so. NEW_ROOT's rraft-bench drives both, so only
# the library and the example differ (an OLD_ROOT whose counter_client
# predates --warmup_s needs counter_client.c from NEW_ROOT compiled against
# its library).
# usage: src/bin/bench/ab_counter.sh NEW_ROOT OLD_ROOT [SECONDS] [REPS]
#        (writes target/benchruns/ab_counter.jsonl)
set -e
[ $# -ge 2 ] || { echo "usage: $0 NEW_ROOT OLD_ROOT [SECONDS] [REPS]" >&2; exit 2; }
NEW=$(cd "$1" && pwd); OLD=$(cd "$2" && pwd); SECS=${3:-5}; REPS=${4:-3}
mkdir -p target/benchruns
OUT=target/benchruns/ab_counter.jsonl
: > "$OUT"
for rep in $(seq "$REPS"); do
  for clients in 1 64 256; do
    for mode in threads async; do
      flag=""; [ $mode = async ] && flag="--async"
      for v in new old; do
        root=$NEW; [ $v = old ] && root=$OLD
        j=$("$NEW/target/release/rraft-bench" counter --example-dir "$root/examples-c/counter" \
              --clients "$clients" --seconds "$SECS" --warmup 2 --json $flag 2>/dev/null) || j='{}'
        echo "{\"v\":\"$v\",\"row\":\"$clients $mode\",\"load\":\"$(cut -d' ' -f 1 /proc/loadavg)\",\"r\":$j}" >> "$OUT"
      done
    done
  done
done
python3 "$(dirname "$0")/ab_median.py" "$OUT" ops_per_s mean_us p99_us cpu_us_per_op client_cpu_us_per_op \
    switches_per_op rss_max_bytes

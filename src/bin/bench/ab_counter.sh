#!/bin/bash
# Interleaved A/B of two builds on the C path (rraft-bench counter: the
# examples-c/counter servers and client), rows 1/64/256 callers, a pthread
# per caller and --async, REPS runs each (default 3), medians per build.
# Each ROOT is a source tree with `cargo build --release` and
# `make -C examples-c/counter` done (its counter binaries link its own
# target/release/librraft.so).
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
        j=$("$root/target/release/rraft-bench" counter --example-dir "$root/examples-c/counter" \
              --clients "$clients" --seconds "$SECS" --warmup 2 --json $flag 2>/dev/null) || j='{}'
        echo "{\"v\":\"$v\",\"row\":\"$clients $mode\",\"load\":\"$(cut -d' ' -f1 /proc/loadavg)\",\"r\":$j}" >> "$OUT"
      done
    done
  done
done
python3 - "$OUT" <<'PY'
import json, statistics as st, sys
rows = {}
for line in open(sys.argv[1]):
    d = json.loads(line)
    rows.setdefault((d['row'], d['v']), []).append(d['r'])
key = lambda k: (int(k[0].split()[0]), k[0].split()[1], k[1])
for (row, v), rs in sorted(rows.items(), key=lambda kv: key(kv[0])):
    m = lambda k: st.median([r.get(k, 0) for r in rs])
    print(f"{row:12} {v:3} ops/s {m('ops_per_s'):8.0f} mean {m('mean_us'):6.0f} p99 {m('p99_us'):6.0f} "
          f"cpu/op us {m('cpu_us_per_op'):6.1f} (client {m('client_cpu_us_per_op'):5.1f}) "
          f"switches/op {m('switches_per_op'):5.2f} rssMiB {m('rss_max_bytes')/1048576:5.1f} "
          f"runs {[round(r.get('ops_per_s', 0)) for r in rs]}")
PY

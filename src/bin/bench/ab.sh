#!/bin/bash
# Interleaved A/B of two rraft-bench binaries over the issue-6 rows, 3 runs
# each, medians per binary. Interleaving cancels the drift of a shared VM's
# disk and CPU, which moves a single build's figures by up to 2x over a day.
# usage: src/bin/bench/ab.sh NEW_BIN OLD_BIN   (writes target/benchruns/ab.jsonl)
set -e
[ $# -eq 2 ] || { echo "usage: $0 NEW_BIN OLD_BIN" >&2; exit 2; }
mkdir -p target/benchruns
OUT=target/benchruns/ab.jsonl
: > "$OUT"
for rep in 1 2 3; do
  for row in "1 128" "64 128" "256 128" "64 4096"; do
    set -- $row "$@"
    extra=""; [ "$2" = 4096 ] && extra="--raw-disk"
    for v in new old; do
      bin=$3; [ $v = old ] && bin=$4
      j=$("$bin" cluster --clients "$1" --payload "$2" --duration 5 --warmup 2 --json $extra 2>/dev/null)
      echo "{\"v\":\"$v\",\"row\":\"$1x$2\",\"load\":\"$(cut -d' ' -f1 /proc/loadavg)\",\"r\":$j}" >> "$OUT"
    done
    shift 2
  done
done
python3 - "$OUT" <<'PY'
import json, statistics as st, sys
rows = {}
for line in open(sys.argv[1]):
    d = json.loads(line)
    rows.setdefault((d['row'], d['v']), []).append(d['r'])
for (row, v), rs in sorted(rows.items()):
    m = lambda k: st.median([r.get(k, 0) for r in rs])
    print(f"{row:8} {v:3} ops/s {m('ops_per_s'):8.0f} mean {m('mean_us'):6.0f} p99 {m('p99_us'):6.0f} "
          f"MiB/s {m('mb_per_s'):6.1f} cpu/kop {m('cpu_s_per_kop'):.4f} rssMiB {m('rss_max_bytes')/1048576:4.1f} "
          f"runs {[round(r['ops_per_s']) for r in rs]}")
PY

#!/bin/bash
# Interleaved A/B of two rraft-bench binaries over the standard rows (1, 64, 256 clients of 128 B; 64 of 4 KiB), 3 runs
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
      echo "{\"v\":\"$v\",\"row\":\"$1x$2\",\"load\":\"$(cut -d' ' -f 1 /proc/loadavg)\",\"r\":$j}" >> "$OUT"
    done
    shift 2
  done
done
python3 "$(dirname "$0")/ab_median.py" "$OUT" ops_per_s mean_us p99_us mb_per_s cpu_s_per_kop rss_max_bytes

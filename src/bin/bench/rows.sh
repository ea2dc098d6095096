#!/bin/bash
# The standard rows (1, 64, 256 clients of 128 B; 64 of 4 KiB), 3 runs each, medians printed by rows_median.py.
# usage: src/bin/bench/rows.sh LABEL   (BIN= to pick another binary)
# Writes target/benchruns/LABEL.jsonl (one {"row","load","r":<--json>} per run).
set -e
HERE=$(cd "$(dirname "$0")" && pwd)
B=${BIN:-target/release/rraft-bench}
mkdir -p target/benchruns
OUT=target/benchruns/$1.jsonl
: > "$OUT"
for rep in 1 2 3; do
  for row in "1 128" "64 128" "256 128" "64 4096"; do
    set -- $row
    extra=""; [ "$2" = 4096 ] && extra="--raw-disk"
    j=$("$B" cluster --clients "$1" --payload "$2" --duration 5 --warmup 2 --json $extra 2>/dev/null)
    echo "{\"row\":\"$1x$2\",\"load\":\"$(cut -d' ' -f 1 /proc/loadavg)\",\"r\":$j}" >> "$OUT"
  done
done
python3 "$HERE/rows_median.py" "$OUT"

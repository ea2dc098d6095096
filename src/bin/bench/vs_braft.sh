#!/bin/bash
# The README's table in one command: braft's counter example
# (../shared/braft/bench.sh) interleaved with rraft's C counter (a pthread
# per caller, and --async) and `rraft-bench cluster` (Rust client, 128-byte
# payload), for 1, 64 and 256 clients, REPS runs each (default 2); prints
# the medians as a Markdown table with each rraft column's ratio to braft's.
# Needs `cargo build --release` and `make -C examples-c/counter` done.
# usage: src/bin/bench/vs_braft.sh [SECONDS] [REPS]
#        (BRAFT=dir of braft's bench.sh, default ../shared/braft;
#         writes target/benchruns/vs_braft.jsonl)
set -e
SECS=${1:-10}; REPS=${2:-2}
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
BRAFT=${BRAFT:-$ROOT/../shared/braft}
B=$ROOT/target/release/rraft-bench
mkdir -p "$ROOT/target/benchruns"
OUT=$ROOT/target/benchruns/vs_braft.jsonl
: > "$OUT"
rec() { echo "{\"sys\":\"$1\",\"clients\":$2,\"load\":\"$(cut -d' ' -f 1 /proc/loadavg)\",\"r\":$3}" >> "$OUT"; }
for rep in $(seq "$REPS"); do
  for c in 1 64 256; do
    line=$("$BRAFT/bench.sh" "$c" "$SECS" 2>/dev/null | tail -1)
    ops=$(sed -n 's/.*ops_per_s=\([0-9.]*\).*/\1/p' <<<"$line")
    lat=$(sed -n 's/.*mean_latency_us=\([0-9.]*\).*/\1/p' <<<"$line")
    rec braft "$c" "{\"ops_per_s\":${ops:-0},\"mean_us\":${lat:-0}}"
    rec c_threads "$c" "$("$B" counter --clients "$c" --seconds "$SECS" --json 2>/dev/null || echo '{}')"
    rec c_async "$c" "$("$B" counter --clients "$c" --seconds "$SECS" --async --json 2>/dev/null || echo '{}')"
    rec cluster "$c" "$("$B" cluster --clients "$c" --payload 128 --duration "$SECS" --warmup 2 --json 2>/dev/null || echo '{}')"
  done
done
python3 - "$OUT" <<'PY'
import json, statistics as st, sys
runs = {}
for line in open(sys.argv[1]):
    d = json.loads(line)
    runs.setdefault((d['sys'], d['clients']), []).append(d['r'])
med = lambda s, c, k: st.median([r.get(k, 0) for r in runs.get((s, c), [{}])])
def cell(s, c):
    ops, mean, p99 = med(s, c, 'ops_per_s'), med(s, c, 'mean_us'), med(s, c, 'p99_us')
    text = f"{ops:,.0f} ops/s, mean {mean / 1000:.2f} ms"
    return text + (f", p99 {p99 / 1000:.1f} ms" if p99 else "")
def ratio(s, c):
    b = med('braft', c, 'ops_per_s')
    return f"{med(s, c, 'ops_per_s') / b:.1f}×" if b else "-"
print("| clients | braft counter | rraft counter (C API, a pthread per caller) | ratio "
      "| rraft counter (C API, async) | ratio | `rraft-bench cluster` (Rust client) | ratio |")
print("|---|---|---|---|---|---|---|---|")
for c in sorted({k[1] for k in runs}):
    print(f"| {c} | {cell('braft', c)} | {cell('c_threads', c)} | {ratio('c_threads', c)} "
          f"| {cell('c_async', c)} | {ratio('c_async', c)} | {cell('cluster', c)} | {ratio('cluster', c)} |")
rss = max([r.get('rss_max_bytes', 0) for k, rs in runs.items() if k[0] != 'braft' for r in rs] or [0])
print(f"\nPeak RSS of any rraft replica: {rss / 1048576:.1f} MiB")
PY

# Medians per (row, build) of an A/B file: one {"v","row","load","r":<--json>}
# object a line, as ab.sh and ab_counter.sh write.
# usage: python3 ab_median.py FILE KEY...   (KEY: a key of --json; rss_max_bytes is shown in MiB)
import json, statistics as st, sys

rows = {}
for line in open(sys.argv[1]):
    d = json.loads(line)
    rows.setdefault((d['row'], d['v']), []).append(d['r'])
keys = sys.argv[2:]
for (row, v), rs in sorted(rows.items()):
    cells = []
    for k in keys:
        m = st.median([r.get(k, 0) for r in rs])
        cells.append(f"rssMiB {m / 1048576:5.1f}" if k == 'rss_max_bytes' else f"{k} {m:9.2f}")
    print(f"{row:12} {v:3} " + "  ".join(cells) + f"  runs {[round(r.get('ops_per_s', 0)) for r in rs]}")

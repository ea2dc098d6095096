# Medians per row of a rows.sh output file.
import json,sys,statistics as st
rows={}
for l in open(sys.argv[1]):
    d=json.loads(l); rows.setdefault(d['row'],[]).append(d)
for k,v in rows.items():
    m=lambda key: st.median([x['r'].get(key,0) for x in v])
    print(f"{k:9} ops/s {m('ops_per_s'):9.0f} mean {m('mean_us'):7.0f} p50 {m('p50_us'):6.0f} p99 {m('p99_us'):6.0f} p999 {m('p999_us'):6.0f} max {m('max_us'):6.0f} MiB/s {m('mb_per_s'):6.2f} cpu/kop {m('cpu_s_per_kop'):.3f} rssMiB {m('rss_max_bytes')/1048576:5.1f} fsync/s {m('fsyncs_per_s'):6.0f} switches/op {m('switches_per_op'):5.2f} raw% {100*m('of_raw_disk'):5.1f} allreplicas% {100*m('replicas_of_raw_disk'):5.1f} rawMiB {m('raw_disk_mb_per_s'):6.1f} loads {[x['load'] for x in v]} ops {[round(x['r']['ops_per_s']) for x in v]}")

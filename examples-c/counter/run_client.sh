#!/usr/bin/env bash
# Runs counter_client against the group started by run_server.sh.
#   ./run_client.sh [--server_num N] [--port 8100] [extra counter_client flags...]
# Two ways to run the --thread_num callers:
#   ./run_client.sh --thread_num 64 --duration_s 10
#       a pthread per caller, each blocking in raft_client_call;
#   ./run_client.sh --thread_num 256 --use_async --duration_s 10
#       no thread per caller: each keeps one raft_client_call_async in flight
#       and its completion callback (on the library's IO thread) starts the
#       caller's next call.
# Both print a line per second and a final "summary:" (qps, avg_us, p99_us);
# --warmup_s S leaves the first S seconds out of the summary.
set -euo pipefail
cd "$(dirname "$0")"

server_num=3
port=8100
extra=()
while [ $# -gt 0 ]; do
    case "$1" in
        --server_num) server_num="$2"; shift ;;
        --port) port="$2"; shift ;;
        *) extra+=("$1") ;;
    esac
    shift
done

make -s counter_client

conf=""
for ((i = 0; i < server_num; i++)); do
    conf+="127.0.0.1:$((port + i)):0,"
done
exec ./counter_client --conf "$conf" "${extra[@]}"

#!/usr/bin/env bash
# Runs counter_client against the group started by run_server.sh.
#   ./run_client.sh [--server_num N] [--port 8100] [extra counter_client flags...]
# e.g. ./run_client.sh --thread_num 64 --duration_s 10
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

#!/usr/bin/env bash
# Starts a 3-node counter group on 127.0.0.1:8100-8102 (braft's run_server.sh).
#   ./run_server.sh [--clean] [--server_num N] [--port 8100] [--runtime DIR] [extra counter_server flags...]
# Each server runs in DIR/<port>/ (data, stdout.log, pid; DIR defaults to
# runtime/). --clean wipes them first.
set -euo pipefail
cd "$(dirname "$0")"

clean=0
server_num=3
port=8100
runtime=runtime
extra=()
while [ $# -gt 0 ]; do
    case "$1" in
        --clean) clean=1 ;;
        --server_num) server_num="$2"; shift ;;
        --port) port="$2"; shift ;;
        --runtime) runtime="$2"; shift ;;
        *) extra+=("$1") ;;
    esac
    shift
done

make -s counter_server

conf=""
for ((i = 0; i < server_num; i++)); do
    conf+="127.0.0.1:$((port + i)):0,"
done

for ((i = 0; i < server_num; i++)); do
    p=$((port + i))
    dir="$runtime/$p"
    if [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
        echo "server on port $p already runs (pid $(cat "$dir/pid"))"
        continue
    fi
    if [ "$clean" = 1 ]; then
        rm -rf "$dir"
    fi
    mkdir -p "$dir"
    ./counter_server --port "$p" --conf "$conf" --data_path "$dir/data" "${extra[@]}" \
        > "$dir/stdout.log" 2>&1 &
    echo $! > "$dir/pid"
    echo "started counter_server on 127.0.0.1:$p (pid $!, log $dir/stdout.log)"
done

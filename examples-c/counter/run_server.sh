#!/usr/bin/env bash
# Starts a 3-node counter group on 127.0.0.1:8100-8102 (braft's run_server.sh).
#   ./run_server.sh [--clean] [--server_num N] [--port 8100] [--runtime DIR] [extra counter_server flags...]
# Each server runs in DIR/<port>/ (data, stdout.log, pid; DIR defaults to
# runtime/). --clean wipes them first.
set -euo pipefail
cd "$(dirname "$0")"

source ./group.sh
clean=0
parse_flags "server_num port runtime" "$@"

make -s counter_server

conf="$(group_conf)"

for ((i = 0; i < server_num; i++)); do
    p=$((port + i))
    dir="$runtime/$p"
    if server_runs "$dir"; then
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

#!/usr/bin/env bash
# Stops the servers run_server.sh started, by their pid files.
#   ./stop.sh [--wait_s 10] [--runtime DIR]   (DIR as given to run_server.sh)
# First waits (up to --wait_s) until every running server has applied the
# same index: a follower learns the last commit from the leader's next
# heartbeat, so one stopped at once could miss it. Each server prints
# "applied: value=V applied_index=I" on SIGUSR1. Then sends SIGTERM to all
# of them (SIGKILL after 10 s) and prints each server's final value.
set -uo pipefail
cd "$(dirname "$0")"

source ./group.sh
wait_s=10
parse_flags "wait_s runtime" "$@"
if [ ${#extra[@]} -gt 0 ] || [ -n "${clean:-}" ]; then
    echo "usage: $0 [--wait_s S] [--runtime DIR]" >&2
    exit 2
fi

dirs=()
for pidfile in "$runtime"/*/pid; do
    [ -f "$pidfile" ] || continue
    if server_runs "$(dirname "$pidfile")"; then
        dirs+=("$(dirname "$pidfile")")
    else
        rm -f "$pidfile"
    fi
done
if [ ${#dirs[@]} -eq 0 ]; then
    echo "no counter_server is running"
    exit 0
fi

# Asks every server for its applied index until they all report the same.
deadline=$((SECONDS + wait_s))
while :; do
    for dir in "${dirs[@]}"; do
        kill -USR1 "$(cat "$dir/pid")" 2>/dev/null
    done
    sleep 0.2
    same=1
    first=""
    for dir in "${dirs[@]}"; do
        line="$(grep '^applied: ' "$dir/stdout.log" 2>/dev/null | tail -n 1)"
        [ -n "$first" ] || first="$line"
        if [ -z "$line" ] || [ "$line" != "$first" ]; then
            same=0
        fi
    done
    [ "$same" = 1 ] && break
    if [ $SECONDS -ge $deadline ]; then
        echo "the servers did not reach the same applied index in $wait_s s; stopping them anyway"
        break
    fi
done

for dir in "${dirs[@]}"; do
    kill -TERM "$(cat "$dir/pid")" 2>/dev/null
done
values=()
for dir in "${dirs[@]}"; do
    pid="$(cat "$dir/pid")"
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "pid $pid did not stop in 10 s; killing it"
        kill -KILL "$pid"
    fi
    final="$(grep '^final: ' "$dir/stdout.log" 2>/dev/null | tail -n 1)"
    echo "stopped counter_server on 127.0.0.1:$(basename "$dir") (pid $pid): ${final:-no final line, see $dir/stdout.log}"
    values+=("$(echo "$final" | sed -n 's/^final: value=\([0-9-]*\).*/\1/p')")
    rm -f "$dir/pid"
done
if [ "$(printf '%s\n' "${values[@]}" | sort -u | wc -l)" = 1 ] && [ -n "${values[0]}" ]; then
    echo "all ${#dirs[@]} replicas stopped at value=${values[0]}"
else
    echo "the replicas stopped at different values: ${values[*]}"
    exit 1
fi

#!/usr/bin/env bash
# Stops the servers run_server.sh started, by their pid files (SIGTERM, so
# they shut down cleanly; SIGKILL after 10 s).
set -uo pipefail
cd "$(dirname "$0")"

for pidfile in runtime/*/pid; do
    [ -f "$pidfile" ] || continue
    pid="$(cat "$pidfile")"
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        for _ in $(seq 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "pid $pid did not stop in 10 s; killing it"
            kill -KILL "$pid"
        fi
        echo "stopped pid $pid ($(dirname "$pidfile"))"
    fi
    rm -f "$pidfile"
done

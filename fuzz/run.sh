#!/bin/sh
# Runs every fuzz target (or the ones named) for SECONDS each (default 60).
#   fuzz/run.sh                 # all targets, 60 s each
#   SECONDS_PER_TARGET=600 fuzz/run.sh frame_stream
# Not part of CI. Works on stable: `-s none` (no sanitizer) needs no nightly.
set -eu
cd "$(dirname "$0")"
secs="${SECONDS_PER_TARGET:-60}"
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz
fi
targets="$*"
[ -n "$targets" ] || targets=$(cargo fuzz list)
for t in $targets; do
    mkdir -p "corpus/$t" "artifacts/$t"
    echo "== $t ($secs s)"
    # The committed seeds are read from seeds/<target>; new inputs go to
    # corpus/<target> (not committed).
    cargo fuzz run -s none --release "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -max_len=65536 \
        -artifact_prefix="artifacts/$t/" 2>&1 | tee "artifacts/$t.log" | grep -E "^(#[0-9]+.*DONE|Done|==)|panicked|SUMMARY|ERROR" || true
done

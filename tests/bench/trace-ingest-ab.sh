#!/usr/bin/env bash
# Trace ingest, two server builds alternated (A B A B …) so both see the same load on a shared
# machine: each round starts a fresh server, sends SPANS generated spans over OTLP/gRPC with
# `strata-trace-load ingest` (4 connections, 1,000 spans per request, fsync on), reads the server's
# CPU time from /proc before stopping it, then stops it with SIGTERM, which cuts the whole head into
# a block. One line per round: client throughput, server CPU during ingest, server CPU including
# that cut (from /usr/bin/time), and bytes on disk. docs/benchmarks.md ("Trace store") has results.
#
#   cargo build --release --bin strata -p strata-api
#   cargo build --release -p strata-tests --bin strata-trace-load
#   cp target/release/strata /tmp/strata-old    # …switch branch, build again…
#   tests/bench/trace-ingest-ab.sh /tmp/strata-old target/release/strata
#
# Environment (defaults in brackets): SPANS [300000] per round, ROUNDS [2] pairs, WORK
# [/tmp/trace-ingest-ab] data directories, LOAD [target/release/strata-trace-load].
set -euo pipefail

A=$1
B=$2
SPANS=${SPANS:-300000}
ROUNDS=${ROUNDS:-2}
WORK=${WORK:-/tmp/trace-ingest-ab}
LOAD=${LOAD:-target/release/strata-trace-load}

round() {
    local bin=$1 tag=$2 port=$3
    local dir=$WORK/$tag
    rm -rf "$dir"
    mkdir -p "$dir"
    /usr/bin/time -f "%U %S" -o "$dir/time.txt" "$bin" up --data-dir "$dir/data" \
        --listen 127.0.0.1:$((19080 + port)) --otlp-grpc-listen 127.0.0.1:$((14317 + port)) \
        --otlp-http-listen 127.0.0.1:$((14318 + port)) --agent off >"$dir/server.log" 2>&1 &
    local timer=$!
    sleep 2
    local server
    server=$(pgrep -P $timer)
    "$LOAD" ingest --otlp http://127.0.0.1:$((14317 + port)) --spans "$SPANS" --connections 4 \
        --ids "$dir/ids.txt" 2>"$dir/load.txt" >/dev/null
    local ticks
    ticks=$(awk '{print $14 + $15}' "/proc/$server/stat")
    kill -TERM "$server"
    wait $timer || true
    local sent rate total disk
    sent=$(grep -o 'sent [0-9]*' "$dir/load.txt" | cut -d' ' -f2)
    rate=$(grep -o '[0-9]* spans/s' "$dir/load.txt")
    total=$(awk '{print $1 + $2}' "$dir/time.txt")
    disk=$(du -sb "$dir/data/default/traces" | cut -f1)
    awk -v tag="$tag" -v sent="$sent" -v rate="$rate" -v ticks="$ticks" -v total="$total" \
        -v disk="$disk" 'BEGIN {
            printf "%s: %d spans, %s; server CPU %.2f s during ingest (%.1f us/span), %.2f s with the final cut (%.1f us/span); %d bytes on disk (%.1f B/span)\n",
                tag, sent, rate, ticks / 100, ticks * 10000 / sent, total, total * 1e6 / sent,
                disk, disk / sent }'
}

for r in $(seq 1 "$ROUNDS"); do
    round "$A" "a$r" 0
    round "$B" "b$r" 1
done

#!/usr/bin/env bash
# Flow store, two builds compared in one run: servers of the directory $BASE and of $NEW take turns
# (base then new, ROUNDS times) so that both see the same load on a shared machine. The client is
# always $BASE/strata-flow-bench. One line per measurement on stdout: round, build, load average,
# the server's CPU seconds (utime + stime) and the client's JSON result. docs/benchmarks.md
# ("Flow store") gives the figures of a run.
#
#   cargo build --release -p strata-tests --bin strata-e2e --bin strata-flow-bench   # for each build,
#   cp target/release/{strata-e2e,strata-flow-bench} $BASE (then $NEW)              # from each checkout
#   BASE=… NEW=… tests/bench/flow-compare.sh ingest        # fresh server, RECORDS over OTLP/HTTP
#   BASE=… NEW=… DATA=… tests/bench/flow-compare.sh query  # a server on DATA, RUNS selective + 5 top-20
#   BASE=… NEW=… DATA_BASE=… DATA_NEW=… tests/bench/flow-compare.sh query  # each build on its own data
#
# Environment (defaults in brackets): ROUNDS [3], RECORDS [500000], RUNS [20], WORK [/tmp/flow-compare]
# (server data of the ingest rounds), ENCODE_FIRST [unset; when set, the sender encodes every request
# body before the clock starts, so the client's CPU goes to sending only, and the base's
# strata-flow-bench must know `--encode-first`], SPAN_SECS [21600: the ingested records' times span six
# hourly partitions; 300: the last five minutes, as live agents send], DATA (a data directory holding
# default/flows, written with `strata-flow-bench direct --dir $DATA/default/flows --records 10000000
# --t0 $T0`), T0 [now − SPAN_SECS; for `query`, the T0 that DATA was written with]. DATA_BASE and
# DATA_NEW (default DATA) give each build its own data directory, for when the two write different
# formats (each written by its own build's `strata-flow-bench direct`, with the same T0). Ingest lines
# also give the server's CPU per record (µs) from when it was ready to when the client finished.
set -euo pipefail
mode=${1:?usage: flow-compare.sh ingest|query}
: "${BASE:?directory of the base binaries}" "${NEW:?directory of the new binaries}"
ROUNDS=${ROUNDS:-3} RECORDS=${RECORDS:-500000} RUNS=${RUNS:-20} WORK=${WORK:-/tmp/flow-compare}
SPAN_SECS=${SPAN_SECS:-21600}
T0=${T0:-$(( $(date +%s) - SPAN_SECS ))}
API=127.0.0.1:39180
mkdir -p "$WORK"
for round in $(seq 1 "$ROUNDS"); do
  for v in base new; do
    bin=$BASE; [ "$v" = new ] && bin=$NEW
    if [ "$mode" = ingest ]; then
      dir=$WORK/srv-$v; rm -rf "$dir"
    elif [ "$v" = base ]; then
      dir=${DATA_BASE:-${DATA:?DATA or DATA_BASE}}
    else
      dir=${DATA_NEW:-${DATA:?DATA or DATA_NEW}}
    fi
    "$bin/strata-e2e" up --data-dir "$dir" --listen $API \
      --otlp-grpc-listen 127.0.0.1:34317 --otlp-http-listen 127.0.0.1:34318 --agent off > "$WORK/server-$v.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 300); do curl -sf http://$API/-/ready > /dev/null && break; sleep 0.2; done
    cpu0=$(awk '{print ($14 + $15) / 100}' /proc/$pid/stat)
    if [ "$mode" = ingest ]; then
      res=$("$BASE/strata-flow-bench" ingest --url http://127.0.0.1:34318/v1/logs --records "$RECORDS" \
        --t0 "$T0" --span-secs "$SPAN_SECS" --senders 2 --batch 5000 ${ENCODE_FIRST:+--encode-first})
    else
      res=$("$BASE/strata-flow-bench" query --url http://$API --records 10000000 --t0 "$T0" --runs "$RUNS")
    fi
    cpu=$(awk '{print ($14 + $15) / 100}' /proc/$pid/stat)
    per=""
    [ "$mode" = ingest ] && per=" server_us_per_record=$(awk -v c="$cpu" -v c0="$cpu0" -v n="$RECORDS" 'BEGIN {printf "%.2f", (c - c0) * 1e6 / n}')"
    echo "round=$round $v load=$(cut -d' ' -f1 /proc/loadavg) server_cpu=$cpu$per $res"
    kill -TERM $pid; wait $pid || true
  done
done

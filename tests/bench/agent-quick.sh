#!/usr/bin/env bash
# A quick look at the node agent's cost at one fixed request rate: the store, the HTTP server on
# CPU 1, the agent in a cgroup of its own, the load generator on CPU 0 (as tests/bench/agent-overhead.sh
# sets them up), then over 15 s either the agent's user CPU and each of its programs' run time per
# request (`stats`), or a system-wide perf profile (`perf`). For A/B comparisons of two agent builds,
# alternated; tests/bench/agent-overhead.sh is the full benchmark.
#
#   tests/bench/agent-quick.sh AGENT_BIN OUT [RATE=20000] [stats|perf]     # as root
#
# Environment: STRATA_BIN, LOAD_BIN [target/release/{strata,strata-http-load}]; TRACEPARENT=1 adds a
# traceparent to every request (TRACE_FLAGS its flags, 01 unless set); REQUEST_HEADERS header lines (one per line) added to every request;
# AGENT_CONFIG a TOML file for the agent. Ports as in agent-overhead.sh.
# Writes OUT (the figures, or perf data) and OUT.metrics (the agent's event and loss counters).
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
AGENT=$1
OUT=$2
RATE=${3:-20000}
MODE=${4:-stats}
STRATA_BIN=${STRATA_BIN:-$root/target/release/strata}
LOAD_BIN=${LOAD_BIN:-$root/target/release/strata-http-load}
CG=$(awk '$3=="cgroup2" { print $2; exit }' /proc/self/mounts)
WORK=$(mktemp -d /tmp/strata-agent-quick.XXXXXX)
mkdir -p "$CG/strata-agent-quick"

"$STRATA_BIN" up --data-dir "$WORK/store" --listen 127.0.0.1:19480 --otlp-grpc-listen 127.0.0.1:14417 \
  --otlp-http-listen 127.0.0.1:14418 --agent off >"$WORK/store.log" 2>&1 &
store=$!
taskset -c 1 "$LOAD_BIN" serve --listen 127.0.0.1:18080 >"$WORK/serve.log" 2>&1 &
server=$!
( echo "$BASHPID" >"$CG/strata-agent-quick/cgroup.procs" &&
  exec "$AGENT" --endpoint http://127.0.0.1:14417 --interval 10s --listen 127.0.0.1:19471 \
    --kubernetes disabled ${AGENT_CONFIG:+--config "$AGENT_CONFIG"} ) >"$WORK/agent.log" 2>&1 &
agent=$!
sleep 3
load_args=(--url http://127.0.0.1:18080/ --connections 16 --duration 25 --warmup 2 --rate "$RATE")
[ "${TRACEPARENT:-0}" = 1 ] && load_args+=(--traceparent --trace-flags "${TRACE_FLAGS:-01}")
while IFS= read -r line; do
  [ -n "$line" ] && load_args+=(--header "$line")
done <<<"${REQUEST_HEADERS:-}"
taskset -c 0 "$LOAD_BIN" load "${load_args[@]}" >"$WORK/load.json" &
load=$!
sleep 5

programs() {
  for f in /proc/"$agent"/fdinfo/*; do
    grep -q '^prog_type' "$f" 2>/dev/null || continue
    echo "$(awk '/^prog_id/ { print $2 }' "$f") $(awk '/^run_time_ns/ { print $2 }' "$f") $(awk '/^run_cnt/ { print $2 }' "$f")"
  done | sort
}
cpu_ticks() { awk '{ print $14 + $15 }' /proc/"$agent"/stat; }

if [ "$MODE" = perf ]; then
  perf record -a -g -e cpu-clock -F 2999 -o "$OUT" -- sleep 15 2>/dev/null
else
  sysctl -qw kernel.bpf_stats_enabled=1
  programs >"$WORK/p1"; t1=$(cpu_ticks)
  sleep 15
  programs >"$WORK/p2"; t2=$(cpu_ticks)
  sysctl -qw kernel.bpf_stats_enabled=0
  {
    join "$WORK/p1" "$WORK/p2" | awk -v rate="$RATE" '$5 > $3 {
      printf "program %s: %.2f runs per request, %.0f ns per run, %.0f ns per request\n",
        $1, ($5 - $3) / (rate * 15), ($4 - $2) / ($5 - $3), ($4 - $2) / (rate * 15) }'
    echo "agent user+system CPU: $((t2 - t1)) clock ticks over 15 s"
  } | tee "$OUT"
fi
wait "$load"
grep -E 'VmHWM|VmRSS' /proc/"$agent"/status | tee -a "$OUT"
curl -s http://127.0.0.1:19471/metrics | grep -E 'events_total|lost_total|kernel_counter|spans_total|export_' >"$OUT.metrics"
kill "$agent" "$server" "$store"
wait 2>/dev/null
rm -rf "$WORK"

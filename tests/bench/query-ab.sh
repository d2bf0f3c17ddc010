#!/usr/bin/env bash
# PromQL range-query latency of two server builds over the same stored data, alternated (A B A B …)
# so that both see the same load on a shared machine. Each round starts a fresh server of one build
# over DATA (the Strata data directory query-compare.sh leaves in $WORK/strata-data), sends every
# query of QUERIES once to warm up and REPS more times, and records the median. Ranges end at END,
# the corpus's newest sample, aligned down to the step as query-compare.sh does. Prints one Markdown row per query: the median of each build's round medians, and their
# ratio. docs/benchmarks.md ("PromQL range queries") has results.
#
#   WORK=/work/bench-data/query24 INSTANCES=24 STEPS=5760 SYSTEMS=strata \
#     QUERIES=tests/bench/queries-24h.txt tests/bench/query-compare.sh   # once, to load DATA
#   DATA=/work/bench-data/query24/strata-data QUERIES=tests/bench/queries-24h.txt \
#     END=$(jq '.max_t_ms / 1000 | floor' /work/bench-data/query24/corpus/q-24-5760.json) \
#     tests/bench/query-ab.sh /tmp/strata-old target/release/strata
#
# Environment (defaults in brackets): DATA and END (required), DATA_B [DATA] for B to read instead
# (the same build over two layouts: pass it twice), QUERIES [tests/bench/queries-24h.txt],
# ROUNDS [2] pairs, REPS [3], CPUS [1] for the server, CLIENT_CPUS [0] for curl.
set -euo pipefail

A=$1
B=$2
DATA=${DATA:?DATA: a Strata data directory}
END=${END:?END: the newest sample of the corpus, in seconds}
DATA_B=${DATA_B:-$DATA}
QUERIES=${QUERIES:-tests/bench/queries-24h.txt}
ROUNDS=${ROUNDS:-2}
REPS=${REPS:-3}
CPUS=${CPUS:-1}
CLIENT_CPUS=${CLIENT_CPUS:-0}
PORT=19482
out=$(mktemp -d /tmp/query-ab.XXXXXX)
trap 'kill "${pid:-}" 2>/dev/null || true; rm -rf "$out"' EXIT

wait_ready() {
  for _ in $(seq 1 300); do curl -fs -o /dev/null "http://127.0.0.1:$PORT/-/ready" && return 0; sleep 0.2; done
  echo "server did not start" >&2
  exit 1
}
mapfile -t lines < <(grep -v '^\s*#' "$QUERIES" | grep -v '^\s*$')

round() { # BIN TAG DATA
  STRATA_RETENTION=100y taskset -c "$CPUS" "$1" up --data-dir "$3" --listen "127.0.0.1:$PORT" \
    --otlp-grpc-listen "" --otlp-http-listen "" --agent off >"$out/server-$2.log" 2>&1 &
  pid=$!
  wait_ready
  local qi=0
  for line in "${lines[@]}"; do
    qi=$((qi + 1))
    read -r hours step expr <<<"$line"
    local end=$((END / step * step)) start
    start=$(((END - hours * 3600) / step * step))
    local times=()
    for rep in $(seq 0 "$REPS"); do
      t=$(taskset -c "$CLIENT_CPUS" curl -fsS -m 600 -o /dev/null -w '%{time_total}' \
        --data-urlencode "query=$expr" --data-urlencode "start=$start" --data-urlencode "end=$end" \
        --data-urlencode "step=$step" "http://127.0.0.1:$PORT/prometheus/api/v1/query_range")
      [ "$rep" -gt 0 ] && times+=("$t")
    done
    printf '%s %s %s\n' "$2" "$qi" "$(printf '%s\n' "${times[@]}" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')" >>"$out/medians"
  done
  kill "$pid"
  wait "$pid" 2>/dev/null || true
}

for r in $(seq 1 "$ROUNDS"); do
  echo "round $r: A" >&2
  round "$A" A "$DATA"
  echo "round $r: B" >&2
  round "$B" B "$DATA_B"
done

echo "| # | query | A ms | B ms | B/A |"
echo "|---|---|---|---|---|"
qi=0
ratios=()
for line in "${lines[@]}"; do
  qi=$((qi + 1))
  read -r hours step expr <<<"$line"
  med() { awk -v t="$1" -v q="$qi" '$1 == t && $2 == q { print $3 }' "$out/medians" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
  a=$(med A)
  b=$(med B)
  ratio=$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", b / a }')
  ratios+=("$ratio")
  printf '| %s | %s h `%s` | %.1f | %.1f | %s |\n' "$qi" "$hours" "$expr" "$(awk -v x="$a" 'BEGIN{print x*1000}')" \
    "$(awk -v x="$b" 'BEGIN{print x*1000}')" "$ratio"
done
echo
echo "median B/A over ${#ratios[@]} queries: $(printf '%s\n' "${ratios[@]}" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"

#!/usr/bin/env bash
# Side-by-side PromQL range-query latency: Strata vs Prometheus 2.42 vs VictoriaMetrics 1.79 (Debian
# packages `prometheus`, `victoria-metrics`), on one node_exporter-derived corpus loaded into each by the
# same remote-write sender, then a set of dashboard-style range queries, each run on every system in
# turn (the systems run at once, pinned to the same core). Results: $WORK/query-results.jsonl (one JSON object per query and system) and a
# Markdown summary on stdout. See docs/benchmarks.md.
#
#   tests/bench/query-compare.sh [STRATA_BIN]
#
# Environment (defaults in brackets):
#   WORK [/work/bench-data/query]   scratch directory (corpus, data dirs, logs)
#   SCRAPES [/work/bench-data/run/scrapes]  real node_exporter scrapes (see metrics-compare.sh); a
#                                   latency histogram family (3 handlers × 12 buckets) is added to each
#                                   scrape so that histogram_quantile has classic buckets to work on
#   INSTANCES [100] STEPS [480]     corpus size: targets × scrapes at 15 s (100 × 480 = 2 h, ~54k series)
#   QUERIES [tests/bench/queries-2h.txt]   one query per line: `<range hours> <step seconds> <PromQL>`
#   REPS [5]                        timed runs per query after one warm-up run; the median is reported
#   SYSTEMS [strata prom vm]        which systems to run
#   REUSE [unset]                   1: keep a system's data directory loaded by an earlier run with the
#                                   same corpus instead of loading it again
#   RECV_CPUS [1] SENDER_CPUS [0]   taskset CPU lists for the server and for the sender/client
#
# Each system is restarted after loading, so queries run in a fresh process over what it stored.
# Each query's timed runs rotate through the systems, so load drift on a shared machine tilts none. Peak
# query memory is the growth of the server's peak RSS while the queries run (VmHWM is reset through
# /proc/PID/clear_refs before the first query).
set -euo pipefail

if [ -z "${STRATA_BENCH_COPY:-}" ]; then
  copy=$(mktemp /tmp/query-compare.XXXXXX.sh)
  cp "$0" "$copy"
  STRATA_BENCH_COPY=$copy STRATA_BENCH_HERE=$(cd "$(dirname "$0")" && pwd) bash "$copy" "$@" && rc=0 || rc=$?
  rm -f "$copy"
  exit $rc
fi
here=$STRATA_BENCH_HERE
root=$(cd "$here/../.." && pwd)
WORK=${WORK:-/work/bench-data/query}
SCRAPES=${SCRAPES:-/work/bench-data/run/scrapes}
INSTANCES=${INSTANCES:-100}
STEPS=${STEPS:-480}
QUERIES=${QUERIES:-$here/queries-2h.txt}
REPS=${REPS:-5}
SYSTEMS=${SYSTEMS:-strata prom vm}
RECV_CPUS=${RECV_CPUS:-1}
SENDER_CPUS=${SENDER_CPUS:-0}
STRATA_BIN=${1:-${STRATA_BIN:-$root/target/release/strata}}
bin_dir=$root/target/release
corpus=$WORK/corpus
results=$WORK/query-results.jsonl
PORT=19480
mkdir -p "$WORK" "$corpus"

pids=()
cleanup() {
  for p in "${pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
die() { log "error: $*"; exit 1; }
wait_http() {
  for _ in $(seq 1 $(($2 * 5))); do curl -fs -o /dev/null "$1" && return 0; sleep 0.2; done
  return 1
}
proc_kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
stop_pid() {
  kill "$1" 2>/dev/null || return 0
  timeout 60 tail --pid="$1" -f /dev/null 2>/dev/null || kill -9 "$1" 2>/dev/null || true
}

[ -x "$bin_dir/strata-corpus" ] && [ -x "$bin_dir/strata-rw-load" ] ||
  (cd "$root" && cargo build --release -p strata-tests --bins)
ls "$SCRAPES"/*.prom >/dev/null 2>&1 || {
  mkdir -p "$SCRAPES"
  tar -xzf "$here/data/node-exporter-1.5.0-scrapes.tgz" -C "$SCRAPES" --strip-components=1
}

# Scrapes with a latency histogram added: counts grow by a fixed per-handler shape each scrape.
aug=$WORK/scrapes-hist
if [ ! -f "$aug/.done" ]; then
  rm -rf "$aug"
  mkdir -p "$aug"
  i=0
  for f in "$SCRAPES"/*.prom; do
    i=$((i + 1))
    {
      cat "$f"
      echo "# HELP http_request_duration_seconds Request latency."
      echo "# TYPE http_request_duration_seconds histogram"
      awk -v i="$i" 'BEGIN {
        split("0.005 0.01 0.025 0.05 0.1 0.25 0.5 1 2.5 5 10", le, " ");
        split("/api/orders /api/users /healthz", h, " "); split("40 15 120", rate, " "); split("0.08 0.3 0.004", med, " ");
        for (k = 1; k <= 3; k++) {
          n = rate[k] * i * 5; sum = 0;
          for (j = 1; j <= 11; j++) {
            # A log-normal-ish shape around the handler median.
            x = log(le[j] / med[k]) / 1.2; c = n / (1 + exp(-1.7 * x));
            printf "http_request_duration_seconds_bucket{handler=\"%s\",le=\"%s\"} %d\n", h[k], le[j], c;
          }
          printf "http_request_duration_seconds_bucket{handler=\"%s\",le=\"+Inf\"} %d\n", h[k], n;
          printf "http_request_duration_seconds_sum{handler=\"%s\"} %.3f\n", h[k], n * med[k] * 1.3;
          printf "http_request_duration_seconds_count{handler=\"%s\"} %d\n", h[k], n;
        }
      }'
    } >"$aug/$(basename "$f")"
  done
  touch "$aug/.done"
fi

name=q-$INSTANCES-$STEPS
key="gen=$(md5sum <"$bin_dir/strata-corpus" | cut -c1-12) scrapes=$(cat "$aug"/*.prom | md5sum | cut -c1-12) inst=$INSTANCES steps=$STEPS"
if [ ! -f "$corpus/$name.key" ] || [ "$(cat "$corpus/$name.key")" != "$key" ]; then
  log "generating corpus $name"
  "$bin_dir/strata-corpus" --scrapes "$aug" --instances "$INSTANCES" --steps "$STEPS" \
    --requests "$corpus/$name.rw" --summary "$corpus/$name.json"
  echo "$key" >"$corpus/$name.key"
fi
min_t=$(($(jq .min_t_ms "$corpus/$name.json") / 1000))
max_t=$(($(jq .max_t_ms "$corpus/$name.json") / 1000))
series=$(jq .series "$corpus/$name.json")
run_id=$(date -u +%FT%TZ)

load() { # URL
  taskset -c "$SENDER_CPUS" "$bin_dir/strata-rw-load" --file "$corpus/$name.rw" --url "$1" \
    --connections 8 --max-seconds 3600 >"$WORK/sender.json" 2>"$WORK/sender.log"
  log "loaded: $(jq -c '{samples_ok,samples_rejected,samples_per_second}' "$WORK/sender.json")"
}

start_system() { # SYSTEM DATA_DIR [keep] [PORT] → sets pid, base (query API base URL)
  local sys=$1 dir=$2 port=${4:-$PORT}
  if [ "${3:-}" != keep ]; then
    rm -rf "$dir"
    mkdir -p "$dir"
  fi
  case $sys in
    strata)
      STRATA_RETENTION=100y taskset -c "$RECV_CPUS" "$STRATA_BIN" up --data-dir "$dir" --listen "127.0.0.1:$port" \
        --otlp-grpc-listen "" --otlp-http-listen "" --agent off >"$WORK/$sys.log" 2>&1 &
      pid=$!
      base=http://127.0.0.1:$port/prometheus
      write=$base/api/v1/write
      ready=http://127.0.0.1:$port/-/ready
      ;;
    prom)
      printf 'global:\n  scrape_interval: 15s\n' >"$WORK/prometheus.yml"
      taskset -c "$RECV_CPUS" prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$dir" \
        --web.listen-address="127.0.0.1:$port" --web.enable-remote-write-receiver \
        --storage.tsdb.retention.time=100y --query.max-samples=500000000 --query.timeout=10m \
        --log.level=warn >"$WORK/$sys.log" 2>&1 &
      pid=$!
      base=http://127.0.0.1:$port
      write=$base/api/v1/write
      ready=$base/-/ready
      ;;
    vm)
      taskset -c "$RECV_CPUS" victoria-metrics -storageDataPath="$dir" -httpListenAddr="127.0.0.1:$port" \
        -retentionPeriod=100y -dedup.minScrapeInterval=0 -search.maxQueryDuration=10m \
        -search.disableCache -loggerLevel=WARN >"$WORK/$sys.log" 2>&1 &
      pid=$!
      base=http://127.0.0.1:$port
      write=$base/api/v1/write
      ready=$base/health
      ;;
  esac
  pids+=("$pid")
  wait_http "$ready" 120 || die "$sys did not start (see $WORK/$sys.log)"
}

settle() { # SYSTEM: make everything loaded queryable from its final on-disk form
  case $1 in
    strata)
      curl -fsS -m 1800 -X POST "http://127.0.0.1:$PORT/prometheus/api/v1/admin/tsdb/flush" >/dev/null
      curl -fsS -m 1800 -X POST "http://127.0.0.1:$PORT/prometheus/api/v1/admin/tsdb/compact" >/dev/null
      ;;
    vm)
      curl -fs "http://127.0.0.1:$PORT/internal/force_flush" >/dev/null
      sleep 5
      ;;
    prom) sleep 5 ;;
  esac
}

# Seconds for one range query; prints "<seconds> <series>" or fails.
query() { # BASE START END STEP EXPR
  local out
  out=$(taskset -c "$SENDER_CPUS" curl -fsS -m 600 -o "$WORK/answer.json" -w '%{time_total}' \
    --data-urlencode "query=$5" --data-urlencode "start=$2" --data-urlencode "end=$3" \
    --data-urlencode "step=$4" "$1/api/v1/query_range") || return 1
  echo "$out $(jq '.data.result | length' "$WORK/answer.json")"
}

mapfile -t lines < <(grep -v '^\s*#' "$QUERIES" | grep -v '^\s*$')
log "$series series, $(jq .samples "$corpus/$name.json") samples, $min_t..$max_t; ${#lines[@]} queries × $REPS runs"
# Load each system, then stop it. With REUSE=1 a system whose data directory holds this corpus
# from an earlier run is not loaded again.
for sys in $SYSTEMS; do
  if [ "${REUSE:-}" = 1 ] && [ "$(cat "$WORK/$sys-data.loaded" 2>/dev/null)" = "$key" ]; then
    log "$sys: reusing $WORK/$sys-data"
    continue
  fi
  rm -f "$WORK/$sys-data.loaded"
  start_system "$sys" "$WORK/$sys-data"
  log "$sys: loading"
  load "$write"
  settle "$sys"
  stop_pid "$pid"
  echo "$key" >"$WORK/$sys-data.loaded"
done

# Query fresh processes over what is on disk, so their memory is the queries' and not the load's.
# All systems run at once, pinned to the same core; each query's timed runs rotate through them
# (A B C, B C A, …), so a change in the machine's load while the run goes on falls on all alike.
declare -A base_of pid_of rss0_of
i=0
for sys in $SYSTEMS; do
  start_system "$sys" "$WORK/$sys-data" keep $((PORT + i))
  base_of[$sys]=$base
  pid_of[$sys]=$pid
  i=$((i + 1))
done
sleep 5
for sys in $SYSTEMS; do
  rss0_of[$sys]=$(proc_kib "${pid_of[$sys]}" VmRSS)
  echo 5 >"/proc/${pid_of[$sys]}/clear_refs"
done
read -r -a order <<<"$SYSTEMS"
qi=0
for line in "${lines[@]}"; do
  qi=$((qi + 1))
  read -r hours step expr <<<"$line"
  end=$max_t
  start=$((end - hours * 3600))
  [ "$start" -lt "$min_t" ] && start=$min_t
  # Grafana aligns start and end down to a multiple of the step.
  start=$((start / step * step))
  end=$((end / step * step))
  declare -A warm_of=() times_of=()
  for sys in "${order[@]}"; do
    if ! warm_of[$sys]=$(query "${base_of[$sys]}" "$start" "$end" "$step" "$expr"); then
      log "$sys: query $qi failed: $expr"
      echo "{\"run\":\"$run_id\",\"system\":\"$sys\",\"query\":$qi,\"expr\":$(jq -Rn --arg e "$expr" '$e'),\"error\":true}" >>"$results"
      unset "warm_of[$sys]"
    fi
  done
  for rep in $(seq 1 "$REPS"); do
    n=${#order[@]}
    for k in $(seq 0 $((n - 1))); do
      sys=${order[$(((rep + k) % n))]}
      [ -n "${warm_of[$sys]:-}" ] || continue
      r=$(query "${base_of[$sys]}" "$start" "$end" "$step" "$expr")
      times_of[$sys]="${times_of[$sys]:-} ${r%% *}"
    done
  done
  for sys in "${order[@]}"; do
    [ -n "${warm_of[$sys]:-}" ] || continue
    read -r -a times <<<"${times_of[$sys]}"
    median=$(printf '%s\n' "${times[@]}" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    warm=${warm_of[$sys]}
    echo "{\"run\":\"$run_id\",\"system\":\"$sys\",\"query\":$qi,\"hours\":$hours,\"step\":$step,\"expr\":$(jq -Rn --arg e "$expr" '$e'),\"series\":${warm#* },\"median_s\":$median,\"runs_s\":[$(IFS=,; echo "${times[*]}")],\"load\":\"$(cut -d' ' -f1-3 /proc/loadavg)\"}" >>"$results"
    log "$sys q$qi ${hours}h: ${median}s, ${warm#* } series"
  done
done
for sys in $SYSTEMS; do
  hwm=$(proc_kib "${pid_of[$sys]}" VmHWM)
  rss0=${rss0_of[$sys]}
  echo "{\"run\":\"$run_id\",\"system\":\"$sys\",\"figure\":\"query_memory\",\"rss_before_kib\":$rss0,\"peak_kib\":$hwm,\"peak_growth_kib\":$((hwm - rss0)),\"load\":\"$(cut -d' ' -f1-3 /proc/loadavg)\"}" >>"$results"
  log "$sys: peak RSS while querying $hwm KiB (+$((hwm - rss0)) KiB over $rss0 KiB)"
  stop_pid "${pid_of[$sys]}"
done

# Summary of this run: per query the median seconds of each system, then the median of per-query ratios.
jq -s -r --arg run "$run_id" '
  map(select(.run == $run and .median_s != null)) as $q
  | ($q | group_by(.query)) as $byq
  | "| # | range | query | series | strata s | prom s | vm s | strata/prom | strata/vm |",
    "|---|---|---|---|---|---|---|---|---|",
    ($byq[] | (map({(.system): .}) | add) as $s
      | "| \(.[0].query) | \(.[0].hours) h | `\(.[0].expr)` | \($s.strata.series // $s.prom.series) | \($s.strata.median_s // "-") | \($s.prom.median_s // "-") | \($s.vm.median_s // "-") | \(if $s.strata and $s.prom then ($s.strata.median_s / $s.prom.median_s * 100 | round / 100) else "-" end) | \(if $s.strata and $s.vm then ($s.strata.median_s / $s.vm.median_s * 100 | round / 100) else "-" end) |"),
    "",
    ( [ $byq[] | (map({(.system): .}) | add) | select(.strata and .prom) | .strata.median_s / .prom.median_s ] | sort
      | "median strata/prom ratio over \(length) queries: \(if length > 0 then .[(length - 1) / 2 | floor] * 100 | round / 100 else "-" end)"),
    ( [ $byq[] | (map({(.system): .}) | add) | select(.strata and .vm) | .strata.median_s / .vm.median_s ] | sort
      | "median strata/vm ratio over \(length) queries: \(if length > 0 then .[(length - 1) / 2 | floor] * 100 | round / 100 else "-" end)"),
    ( [ $byq[] | (map({(.system): .}) | add) | select(.strata) | .strata.median_s ] | sort
      | "median strata latency: \(if length > 0 then .[(length - 1) / 2 | floor] else "-" end) s")
' "$results"

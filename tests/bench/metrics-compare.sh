#!/usr/bin/env bash
# Side-by-side metrics-store benchmark: Strata vs VictoriaMetrics 1.79 vs Prometheus 2.42 (Debian
# packages `victoria-metrics`, `prometheus`), on the same node_exporter-derived corpus, same sender,
# same request bytes, same CPU pinning. Results: $WORK/results.jsonl (one JSON object per figure) and a
# Markdown summary on stdout. See docs/benchmarks.md for what each figure means.
#
#   tests/bench/metrics-compare.sh [STRATA_BIN]
#
# Environment (defaults in brackets):
#   WORK [/work/bench-data/run]     scratch directory (corpus files, data dirs, logs; wiped per system)
#   SCRAPES [$WORK/scrapes]         real scrapes; by default extracted from the committed
#                                   tests/bench/data/node-exporter-1.5.0-scrapes.tgz (48 scrapes, 5 s apart);
#                                   FRESH_SCRAPES=1 takes new ones with tests/bench/scrape-node-exporter.sh
#   INSTANCES [100] STEPS [480] SEED [1]   main corpus: 100 × ~507 series × 480 scrapes at 15 s = 2 h
#   MEM_INSTANCES [2000] MEM_STEPS [4]     memory corpus (≥ 1M active series); MEM_RUN=0 skips it
#   SYSTEMS [vm prom strata]        which systems to run
#   REPEAT [1]                      extra ingest-only replays of the main corpus per system, interleaved
#                                   (vm, prom, strata, vm, ...) after the first full pass
#   CONNS [8]                       sender connections (= corpus shards by default)
#   RECV_CPUS [1] SENDER_CPUS [0]   taskset CPU lists for the receiver and for the sender
#   SEND_TIMEOUT [900]              max seconds for one replay; MERGE_TIMEOUT [600] for VM's merge
#   STRATA_ARGS []                  extra arguments for `strata up`
#   STRATA_FLUSH_PATH [/prometheus/api/v1/admin/tsdb/flush]      admin endpoint: cut the head into blocks
#   STRATA_COMPACT_PATH [/prometheus/api/v1/admin/tsdb/compact]  admin endpoint: compact blocks now
#
# Ports (all 127.0.0.1): VictoriaMetrics 18428, Prometheus 19090, Strata 19080 (OTLP 14317/14318),
# node_exporter 19100.
set -euo pipefail

# Bash reads a script as it runs: run from a private copy so editing this file mid-run is harmless.
if [ -z "${STRATA_BENCH_COPY:-}" ]; then
  copy=$(mktemp /tmp/metrics-compare.XXXXXX.sh)
  cp "$0" "$copy"
  STRATA_BENCH_COPY=$copy STRATA_BENCH_HERE=$(cd "$(dirname "$0")" && pwd) bash "$copy" "$@" && rc=0 || rc=$?
  rm -f "$copy"
  exit $rc
fi
here=$STRATA_BENCH_HERE
root=$(cd "$here/../.." && pwd)
WORK=${WORK:-/work/bench-data/run}
SCRAPES=${SCRAPES:-$WORK/scrapes}
INSTANCES=${INSTANCES:-100}
STEPS=${STEPS:-480}
SEED=${SEED:-1}
MEM_RUN=${MEM_RUN:-1}
MEM_INSTANCES=${MEM_INSTANCES:-2000}
MEM_STEPS=${MEM_STEPS:-4}
SYSTEMS=${SYSTEMS:-vm prom strata}
REPEAT=${REPEAT:-1}
CONNS=${CONNS:-8}
RECV_CPUS=${RECV_CPUS:-1}
SENDER_CPUS=${SENDER_CPUS:-0}
SEND_TIMEOUT=${SEND_TIMEOUT:-900}
MERGE_TIMEOUT=${MERGE_TIMEOUT:-600}
STRATA_ARGS=${STRATA_ARGS:-}
STRATA_FLUSH_PATH=${STRATA_FLUSH_PATH:-/prometheus/api/v1/admin/tsdb/flush}
STRATA_COMPACT_PATH=${STRATA_COMPACT_PATH:-/prometheus/api/v1/admin/tsdb/compact}
STRATA_BIN=${1:-${STRATA_BIN:-$root/target/release/strata}}
VM_PORT=18428
PROM_PORT=19090
STRATA_PORT=19080

bin_dir=$root/target/release
corpus=$WORK/corpus
results=$WORK/results.jsonl
mkdir -p "$WORK" "$corpus"

pids=()
cleanup() {
  for p in "${pids[@]:-}"; do
    [ -n "$p" ] && kill "$p" 2>/dev/null || true
  done
  for p in "${pids[@]:-}"; do
    [ -n "$p" ] && timeout 30 tail --pid="$p" -f /dev/null 2>/dev/null || true
  done
}
trap cleanup EXIT

log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
die() { log "error: $*"; exit 1; }
record() { echo "$1" >>"$results"; }

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_http() { # URL, seconds
  for _ in $(seq 1 $(($2 * 5))); do
    curl -fs -o /dev/null "$1" && return 0
    sleep 0.2
  done
  return 1
}
proc_kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
stop_pid() { # PID: SIGTERM, wait up to 60 s, then SIGKILL
  kill "$1" 2>/dev/null || return 0
  timeout 60 tail --pid="$1" -f /dev/null 2>/dev/null || kill -9 "$1" 2>/dev/null || true
}

machine() {
  echo "$(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/ {print $2}') GiB RAM, $(. /etc/os-release && echo "$PRETTY_NAME"), kernel $(uname -r)"
}

# --- build and corpus ------------------------------------------------------------------------------
if [ -z "${SKIP_BUILD:-}" ]; then
  log "building strata-tests binaries"
  (cd "$root" && cargo build --release -p strata-tests --bins)
fi
[ -x "$bin_dir/strata-corpus" ] && [ -x "$bin_dir/strata-rw-load" ] || die "strata-corpus/strata-rw-load not built"

if ! ls "$SCRAPES"/*.prom >/dev/null 2>&1; then
  if [ -n "${FRESH_SCRAPES:-}" ]; then
    log "scraping node_exporter into $SCRAPES (48 scrapes, 5 s apart)"
    "$here/scrape-node-exporter.sh" "$SCRAPES" 48 5 19100
  else
    log "extracting the committed scrapes into $SCRAPES"
    mkdir -p "$SCRAPES"
    tar -xzf "$here/data/node-exporter-1.5.0-scrapes.tgz" -C "$SCRAPES" --strip-components=1
  fi
fi

gen() { # NAME INSTANCES STEPS OPENMETRICS(0/1)
  local name=$1 inst=$2 steps=$3 om=$4
  local key="scrapes=$(cat "$SCRAPES"/*.prom | md5sum | cut -c1-12) gen=$(md5sum <"$bin_dir/strata-corpus" | cut -c1-12) inst=$inst steps=$steps seed=$SEED shards=$CONNS om=$om"
  if [ -f "$corpus/$name.key" ] && [ "$(cat "$corpus/$name.key")" = "$key" ]; then
    log "corpus $name up to date ($key)"
    return
  fi
  log "generating corpus $name ($key)"
  local args=(--scrapes "$SCRAPES" --instances "$inst" --steps "$steps" --seed "$SEED" --shards "$CONNS"
    --requests "$corpus/$name.rw" --summary "$corpus/$name.json")
  [ "$om" = 1 ] && args+=(--openmetrics "$corpus/$name.om")
  "$bin_dir/strata-corpus" "${args[@]}"
  echo "$key" >"$corpus/$name.key"
}

gen main "$INSTANCES" "$STEPS" 1
[ "$MEM_RUN" = 1 ] && gen mem "$MEM_INSTANCES" "$MEM_STEPS" 0
main_samples=$(jq .samples "$corpus/main.json")
main_series=$(jq .series "$corpus/main.json")
partition=$(date -u -d "@$(($(jq .min_t_ms "$corpus/main.json") / 1000))" +%Y_%m)

echo "{\"run\":\"$(date -u +%FT%TZ)\",\"machine\":\"$(machine)\",\"corpus\":$(jq -c . "$corpus/main.json"),\"recv_cpus\":\"$RECV_CPUS\",\"sender_cpus\":\"$SENDER_CPUS\",\"load_before\":\"$(cut -d' ' -f1-3 /proc/loadavg)\"}" >>"$results"

send() { # SYSTEM CORPUS URL [extra sender args] → prints the sender's JSON
  local sys=$1 name=$2 url=$3
  shift 3
  taskset -c "$SENDER_CPUS" "$bin_dir/strata-rw-load" --file "$corpus/$name.rw" --url "$url" \
    --connections "$CONNS" --max-seconds "$SEND_TIMEOUT" "$@" 2>"$WORK/$sys-$name-sender.log"
}

# One remote-write replay with RSS before/after. Sets: sender_json rss_before_kib rss_after_kib hwm_kib.
ingest() { # SYSTEM CORPUS PID URL
  local sys=$1 name=$2 pid=$3 url=$4
  rss_before_kib=$(proc_kib "$pid" VmRSS)
  log "$sys: replaying $name to $url (load $(cut -d' ' -f1-3 /proc/loadavg))"
  sender_json=$(send "$sys" "$name" "$url")
  sleep 2
  rss_after_kib=$(proc_kib "$pid" VmRSS)
  hwm_kib=$(proc_kib "$pid" VmHWM)
  log "$sys: $(jq -c '{samples_ok,samples_per_second,samples_rejected,samples_failed,latency_ms_p50,latency_ms_p99}' <<<"$sender_json")"
  local series
  series=$(jq .series "$corpus/$name.json")
  record "$(jq -c -n --arg sys "$sys" --arg corpus "$name" --argjson s "$sender_json" --argjson series "$series" \
    --argjson before "$rss_before_kib" --argjson after "$rss_after_kib" --argjson hwm "$hwm_kib" \
    --arg load "$(cut -d' ' -f1-3 /proc/loadavg)" \
    '{system:$sys, figure:"ingest", corpus:$corpus, series:$series, sender:$s,
      samples_per_second:$s.samples_per_second, rss_before_kib:$before, rss_after_kib:$after, vmhwm_kib:$hwm,
      rss_bytes_per_series:($after*1024/$series), rss_delta_bytes_per_series:(($after-$before)*1024/$series),
      hwm_bytes_per_series:($hwm*1024/$series), load_after:$load}')"
}

dir_bytes() { du -sb "$1" 2>/dev/null | cut -f1; }

# --- VictoriaMetrics --------------------------------------------------------------------------------
vm_metric_sum() { # metric name regex → sum over series
  curl -fs "http://127.0.0.1:$VM_PORT/metrics" | awk -v re="^$1[{ ]" '$0 ~ re { s += $NF } END { printf "%.0f\n", s }'
}
run_vm() { # CORPUS MEASURE_DISK(0/1)
  local name=$1 disk=$2 dir=$WORK/vm-data
  command -v victoria-metrics >/dev/null || { log "victoria-metrics not installed: skipping"; return; }
  port_free $VM_PORT || die "port $VM_PORT busy"
  rm -rf "$dir"
  taskset -c "$RECV_CPUS" victoria-metrics -storageDataPath="$dir" -httpListenAddr="127.0.0.1:$VM_PORT" \
    -retentionPeriod=100y -dedup.minScrapeInterval=0 -loggerLevel=WARN >"$WORK/vm-$name.log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  wait_http "http://127.0.0.1:$VM_PORT/health" 60 || die "VictoriaMetrics did not start (see $WORK/vm-$name.log)"
  ingest vm "$name" "$pid" "http://127.0.0.1:$VM_PORT/api/v1/write"
  if [ "$disk" = 1 ]; then
    curl -fs "http://127.0.0.1:$VM_PORT/internal/force_flush" >/dev/null
    sleep 2
    # force_merge returns at once and merges in the background; parts flushed from memory meanwhile can
    # escape it, so repeat until one part is left (or the sizes stop changing), within MERGE_TIMEOUT.
    local t0=$SECONDS last=-1 stable=0 size nparts
    for attempt in 1 2 3 4 5; do
      log "vm: force_merge partition $partition (attempt $attempt)"
      curl -fs "http://127.0.0.1:$VM_PORT/internal/force_merge?partition_prefix=$partition" >/dev/null
      stable=0
      while [ $((SECONDS - t0)) -lt "$MERGE_TIMEOUT" ]; do
        sleep 5
        size=$(dir_bytes "$dir")
        if [ "$(vm_metric_sum vm_active_merges)" = 0 ] && [ "$size" = "$last" ]; then
          stable=$((stable + 1))
          [ $stable -ge 4 ] && break
        else
          stable=0
        fi
        last=$size
      done
      nparts=$(curl -fs "http://127.0.0.1:$VM_PORT/metrics" | awk '/^vm_parts\{type="storage\/(big|small)"\}/ { s += $NF } END { printf "%.0f\n", s }')
      [ "$nparts" -le 1 ] && break
      curl -fs "http://127.0.0.1:$VM_PORT/internal/force_flush" >/dev/null
    done
    local rows parts
    rows=$(curl -fs "http://127.0.0.1:$VM_PORT/metrics" | awk '/^vm_rows\{type="storage\/(big|small)"\}/ { s += $NF } END { printf "%.0f\n", s }')
    parts=$(curl -fs "http://127.0.0.1:$VM_PORT/metrics" | awk '/^vm_parts\{type="storage\/(big|small)"\}/ { s += $NF } END { printf "%.0f\n", s }')
    local total data idx
    total=$(dir_bytes "$dir")
    data=$(dir_bytes "$dir/data")
    idx=$(dir_bytes "$dir/indexdb")
    log "vm: $total bytes in $dir (data $data, indexdb $idx), $rows rows in $parts parts"
    record "$(jq -c -n --argjson total "$total" --argjson data "$data" --argjson idx "$idx" --argjson rows "$rows" \
      --argjson parts "$parts" --argjson samples "$main_samples" --arg merge_s "$((SECONDS - t0))" \
      '{system:"vm", figure:"disk", what:"whole -storageDataPath after force_flush + force_merge (data/ + indexdb/ + metadata)",
        bytes:$total, data_bytes:$data, indexdb_bytes:$idx, rows:$rows, parts:$parts, samples:$samples,
        bytes_per_sample:($total/$samples), data_bytes_per_sample:($data/$samples), merge_seconds:($merge_s|tonumber)}')"
  fi
  stop_pid "$pid"
}

# --- Prometheus -----------------------------------------------------------------------------------
run_prom_blocks() {
  command -v promtool >/dev/null || { log "promtool not installed: skipping"; return; }
  local out=$WORK/prom-blocks
  rm -rf "$out"
  log "prom: promtool tsdb create-blocks-from openmetrics (2 h blocks)"
  local t0=$SECONDS
  taskset -c "$RECV_CPUS" timeout 1800 promtool tsdb create-blocks-from openmetrics "$corpus/main.om" "$out" \
    >"$WORK/promtool.log" 2>&1 || die "promtool failed (see $WORK/promtool.log)"
  local secs=$((SECONDS - t0)) total chunks index samples blocks
  total=$(dir_bytes "$out")
  chunks=$(find "$out" -path '*/chunks/*' -type f -printf '%s\n' | awk '{s+=$1} END {print s+0}')
  index=$(find "$out" -name index -type f -printf '%s\n' | awk '{s+=$1} END {print s+0}')
  samples=$(jq -s 'map(.stats.numSamples) | add' "$out"/*/meta.json)
  blocks=$(ls -d "$out"/*/ | wc -l)
  log "prom: $total bytes in $blocks block(s) (chunks $chunks, index $index), $samples samples, ${secs}s"
  record "$(jq -c -n --argjson total "$total" --argjson chunks "$chunks" --argjson index "$index" \
    --argjson samples "$samples" --argjson blocks "$blocks" --argjson secs "$secs" \
    '{system:"prom", figure:"disk", what:"promtool create-blocks-from openmetrics output dir (chunks/ + index + meta.json + tombstones)",
      bytes:$total, chunks_bytes:$chunks, index_bytes:$index, samples:$samples, blocks:$blocks,
      bytes_per_sample:($total/$samples), chunks_bytes_per_sample:($chunks/$samples), seconds:$secs}')"
}

run_prom_rw() { # CORPUS
  local name=$1 dir=$WORK/prom-data
  command -v prometheus >/dev/null || { log "prometheus not installed: skipping"; return; }
  port_free $PROM_PORT || die "port $PROM_PORT busy"
  rm -rf "$dir"
  mkdir -p "$dir"
  printf 'global:\n  scrape_interval: 15s\n' >"$WORK/prometheus.yml"
  taskset -c "$RECV_CPUS" prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$dir" \
    --web.listen-address="127.0.0.1:$PROM_PORT" --web.enable-remote-write-receiver \
    --storage.tsdb.retention.time=100y --log.level=warn >"$WORK/prom-$name.log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  wait_http "http://127.0.0.1:$PROM_PORT/-/ready" 120 || die "Prometheus did not start (see $WORK/prom-$name.log)"
  ingest prom "$name" "$pid" "http://127.0.0.1:$PROM_PORT/api/v1/write"
  stop_pid "$pid"
}

# --- Strata ---------------------------------------------------------------------------------------
# Adapt here when the server's flags or admin endpoint change.
# Retention is 100 years because the corpus is dated 2026-01-01.
strata_start() { # DATA_DIR LOG → PID on stdout
  # shellcheck disable=SC2086
  STRATA_RETENTION=100y taskset -c "$RECV_CPUS" "$STRATA_BIN" up --data-dir "$1" --listen "127.0.0.1:$STRATA_PORT" \
    --otlp-grpc-listen 127.0.0.1:14317 --otlp-http-listen 127.0.0.1:14318 --agent off $STRATA_ARGS >"$2" 2>&1 &
  echo $!
}
strata_compact() {
  curl -fsS -m 1800 -X POST "http://127.0.0.1:$STRATA_PORT$STRATA_FLUSH_PATH" &&
    curl -fsS -m 1800 -X POST "http://127.0.0.1:$STRATA_PORT$STRATA_COMPACT_PATH"
}
strata_import() { # OPENMETRICS DATA_DIR LOG
  STRATA_RETENTION=100y taskset -c "$RECV_CPUS" timeout 1800 "$STRATA_BIN" import openmetrics "$1" --data-dir "$2" --quiet >"$3" 2>&1
}
# Bytes per first- and second-level entry of a data dir, as one string (what the total includes).
dir_breakdown() { (cd "$1" && du -sb -- * */* */*/* 2>/dev/null | awk '{printf "%s=%s ", $2, $1}'); }

run_strata() { # CORPUS MEASURE_DISK(0/1)
  local name=$1 disk=$2 dir=$WORK/strata-data
  if [ ! -x "$STRATA_BIN" ]; then
    log "strata binary not found at $STRATA_BIN: skipping Strata"
    return
  fi
  port_free $STRATA_PORT || die "port $STRATA_PORT busy"
  rm -rf "$dir"
  local pid
  pid=$(strata_start "$dir" "$WORK/strata-$name.log")
  pids+=("$pid")
  wait_http "http://127.0.0.1:$STRATA_PORT/-/ready" 60 || { log "strata did not start (see $WORK/strata-$name.log)"; stop_pid "$pid"; return; }
  ingest strata "$name" "$pid" "http://127.0.0.1:$STRATA_PORT/prometheus/api/v1/write"
  if [ "$disk" = 1 ]; then
    log "strata: cut + compact via $STRATA_COMPACT_PATH"
    if strata_compact >"$WORK/strata-compact.out" 2>&1; then
      sleep 2
      local total parts
      total=$(dir_bytes "$dir")
      parts=$(dir_breakdown "$dir")
      log "strata: $total bytes in $dir ($parts)"
      record "$(jq -c -n --argjson total "$total" --arg parts "$parts" --argjson samples "$main_samples" \
        --arg out "$(cat "$WORK/strata-compact.out")" \
        '{system:"strata", figure:"disk", what:"whole --data-dir after remote write + admin flush + compact (blocks, WAL, catalog)",
          bytes:$total, breakdown:$parts, admin:$out, samples:$samples, bytes_per_sample:($total/$samples)}')"
    else
      log "strata: compact endpoint failed (see $WORK/strata-compact.out): no disk figure"
    fi
  fi
  stop_pid "$pid"
  if [ "$disk" = 1 ]; then
    local total parts blocks
    total=$(dir_bytes "$dir")
    parts=$(dir_breakdown "$dir")
    blocks=$(find "$dir" -path '*/metrics/blocks/*' -type f -printf '%s\n' | awk '{s+=$1} END {print s+0}')
    log "strata: after stop: $total bytes in $dir ($parts); block files $blocks"
    record "$(jq -c -n --argjson total "$total" --arg parts "$parts" --argjson blocks "$blocks" --argjson samples "$main_samples" \
      '{system:"strata", figure:"disk_after_stop", what:"whole --data-dir after SIGTERM (blocks, WAL, catalog); blocks_bytes = files under */metrics/blocks",
        bytes:$total, blocks_bytes:$blocks, breakdown:$parts, samples:$samples,
        bytes_per_sample:($total/$samples), blocks_bytes_per_sample:($blocks/$samples)}')"
  fi
  if [ "$disk" = 1 ]; then
    local idir=$WORK/strata-import t0=$SECONDS
    rm -rf "$idir"
    log "strata: import openmetrics (the promtool backfill's counterpart)"
    if strata_import "$corpus/main.om" "$idir" "$WORK/strata-import.log"; then
      local total parts
      total=$(dir_bytes "$idir")
      parts=$(dir_breakdown "$idir")
      log "strata: import: $total bytes in $idir ($parts), $((SECONDS - t0))s"
      record "$(jq -c -n --argjson total "$total" --arg parts "$parts" --argjson samples "$main_samples" \
        --arg out "$(tail -1 "$WORK/strata-import.log")" --argjson secs "$((SECONDS - t0))" \
        '{system:"strata-import", figure:"disk", what:"whole --data-dir of `strata import openmetrics` (blocks, catalog)",
          bytes:$total, breakdown:$parts, import:$out, samples:$samples, bytes_per_sample:($total/$samples), seconds:$secs}')"
    else
      log "strata: import failed (see $WORK/strata-import.log)"
    fi
  fi
}

# --- runs -----------------------------------------------------------------------------------------
for sys in $SYSTEMS; do
  case $sys in
    vm) run_vm main 1 ;;
    prom) run_prom_blocks; run_prom_rw main ;;
    strata) run_strata main 1 ;;
    *) die "unknown system $sys" ;;
  esac
done
for _ in $(seq 2 "$REPEAT"); do
  for sys in $SYSTEMS; do
    case $sys in
      vm) run_vm main 0 ;;
      prom) run_prom_rw main ;;
      strata) run_strata main 0 ;;
    esac
  done
done
if [ "$MEM_RUN" = 1 ]; then
  for sys in $SYSTEMS; do
    case $sys in
      vm) run_vm mem 0 ;;
      prom) run_prom_rw mem ;;
      strata) run_strata mem 0 ;;
    esac
  done
fi

# --- summary --------------------------------------------------------------------------------------
run_start=$(grep -n '"run":' "$results" | tail -1 | cut -d: -f1)
tail -n +"$run_start" "$results" | jq -r -s '
  def r(x; n): (x * pow(10; n) | round) / pow(10; n);
  (.[0]) as $h
  | "run \($h.run) — \($h.machine); receiver CPUs \($h.recv_cpus), sender CPUs \($h.sender_cpus); load before \($h.load_before)",
    "corpus: \($h.corpus.series) series × \($h.corpus.steps) scrapes = \($h.corpus.samples) samples, \($h.corpus.requests) requests",
    "",
    "| system | figure | corpus | value |",
    "|---|---|---|---|",
    (.[1:][] |
      if .figure == "disk" then "| \(.system) | bytes/sample on disk | main | \(r(.bytes_per_sample; 3)) (\(.bytes) B) |"
      elif .figure == "disk_after_stop" then "| \(.system) | bytes/sample on disk after stop | main | \(r(.bytes_per_sample; 3)) (\(.bytes) B; block files only \(r(.blocks_bytes_per_sample; 3))) |"
      else "| \(.system) | remote-write ingest | \(.corpus) | \(r(.samples_per_second; 0)) samples/s, p50 \(r(.sender.latency_ms_p50; 1)) ms, p99 \(r(.sender.latency_ms_p99; 1)) ms, rejected \(.sender.samples_rejected), failed \(.sender.samples_failed) |",
           "| \(.system) | RSS per active series | \(.corpus) | \(r(.rss_bytes_per_series; 0)) B (VmHWM \(r(.hwm_bytes_per_series; 0)) B, delta \(r(.rss_delta_bytes_per_series; 0)) B; \(.series) series) |"
      end)'

#!/usr/bin/env bash
# Scrape a local Debian prometheus-node-exporter N times, INTERVAL seconds apart, into OUT_DIR.
# Each file NNNN.prom is the exposition text exactly as served, preceded by one comment line
# `# strata-scrape-time-ms <unix ms>` (the time the scrape started). Feed OUT_DIR to strata-corpus.
#
#   tests/bench/scrape-node-exporter.sh OUT_DIR [SCRAPES=40] [INTERVAL=5] [PORT=19100]
#
# Starts node_exporter on 127.0.0.1:PORT unless one already answers there, and stops it afterwards.
set -euo pipefail
out=${1:?usage: scrape-node-exporter.sh OUT_DIR [SCRAPES] [INTERVAL] [PORT]}
n=${2:-40}
interval=${3:-5}
port=${4:-19100}
mkdir -p "$out"
ne_pid=""
cleanup() { [ -n "$ne_pid" ] && kill "$ne_pid" 2>/dev/null && wait "$ne_pid" 2>/dev/null; true; }
trap cleanup EXIT
if ! curl -fs "http://127.0.0.1:$port/metrics" -o /dev/null; then
  prometheus-node-exporter --web.listen-address="127.0.0.1:$port" >"$out/node-exporter.log" 2>&1 &
  ne_pid=$!
  for _ in $(seq 1 50); do curl -fs "http://127.0.0.1:$port/metrics" -o /dev/null && break; sleep 0.2; done
fi
for i in $(seq 1 "$n"); do
  t0=$(date +%s%3N)
  f=$(printf '%s/%04d.prom' "$out" "$i")
  { echo "# strata-scrape-time-ms $t0"; curl -fsS --max-time 10 "http://127.0.0.1:$port/metrics"; } >"$f.tmp"
  mv "$f.tmp" "$f"
  [ "$i" -lt "$n" ] && sleep "$(awk -v i="$interval" -v d="$(( $(date +%s%3N) - t0 ))" 'BEGIN{s=i-d/1000; if(s<0)s=0; print s}')"
done
echo "$n scrapes in $out ($(grep -vc '^#' "$out/0001.prom") series in the first)"

#!/usr/bin/env bash
# Measures how far real Prometheus 2.42 scrape timestamps stray from the scrape interval on this
# machine, to calibrate strata-corpus's timestamp jitter. Runs Debian `prometheus` scraping a local
# `prometheus-node-exporter` and itself every INTERVAL for SECONDS, then prints the distribution of
# the gaps between consecutive `up` samples minus the interval (0 = Prometheus snapped the timestamp).
#
#   tests/bench/measure-scrape-jitter.sh [SECONDS=120] [INTERVAL=1s] [WORK=/tmp/strata-jitter]
#
# Ports: node_exporter 127.0.0.1:19101, Prometheus 127.0.0.1:19091. Everything is stopped afterwards.
set -euo pipefail
secs=${1:-120}
interval=${2:-1s}
work=${3:-/tmp/strata-jitter}
rm -rf "$work"
mkdir -p "$work"
pids=()
cleanup() { for p in "${pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null; done; true; }
trap cleanup EXIT
prometheus-node-exporter --web.listen-address=127.0.0.1:19101 >"$work/ne.log" 2>&1 &
pids+=($!)
cat >"$work/prometheus.yml" <<YML
global:
  scrape_interval: $interval
scrape_configs:
  - job_name: node
    static_configs: [{targets: ['127.0.0.1:19101']}]
  - job_name: prometheus
    static_configs: [{targets: ['127.0.0.1:19091']}]
YML
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/data" \
  --web.listen-address=127.0.0.1:19091 --log.level=warn >"$work/prom.log" 2>&1 &
pids+=($!)
sleep "$secs"
curl -fsS "http://127.0.0.1:19091/api/v1/query" --data-urlencode "query=up[${secs}s]" >"$work/up.json"
python3 - "$work/up.json" "$interval" <<'PY'
import json, sys, collections
iv = sys.argv[2]
ms = int(float(iv[:-2]) if iv.endswith("ms") else float(iv[:-1]) * {"s": 1000, "m": 60000}[iv[-1]])
devs = []
for r in json.load(open(sys.argv[1]))["data"]["result"]:
    ts = [round(float(t) * 1000) for t, _ in r["values"]]
    devs += [b - a - ms for a, b in zip(ts, ts[1:])]
n = len(devs)
c = collections.Counter(devs)
print(f"{n} gaps; exactly {ms} ms: {c[0] / n:.1%}")
for lo, hi in [(1, 2), (3, 10), (11, 50), (51, 10**9)]:
    k = sum(v for d, v in c.items() if lo <= abs(d) <= hi)
    print(f"|gap - interval| in [{lo}, {hi}] ms: {k / n:.1%}")
print("largest deviations (ms):", sorted(devs, key=abs)[-5:])
PY

#!/usr/bin/env bash
# Node agent overhead: loopback HTTP/1.1 load with and without `strata-agent` observing it, in
# alternating rounds (ABBA), plus the agent's CPU (user space from /proc, kernel programs from
# their run_time_ns), memory, and its event and loss counters at fixed request rates. Results: one
# JSON object per measurement in $OUT and a Markdown summary on stdout. docs/benchmarks.md ("Node
# agent overhead") says what each figure means.
#
#   cargo build --release -p strata-agent -p strata-api -p strata-tests \
#       --bin strata-agent --bin strata --bin strata-http-load
#   tests/bench/agent-overhead.sh                       # as root
#   TRACEPARENT=1 ROUNDS=2 RATES="10000 20000" tests/bench/agent-overhead.sh
#   tests/bench/agent-overhead.sh --summary tests/bench/results/agent-overhead-DATE.jsonl
#
# Needs root (the agent loads eBPF programs; the script toggles kernel.bpf_stats_enabled and makes
# a cgroup), a cgroup2 hierarchy, taskset, curl, jq and python3.
#
# Environment (defaults in brackets):
#   ROUNDS [5]                   rounds; odd rounds run agent then baseline, even rounds the reverse
#   RATES [10000 20000 40000]    fixed request rates (req/s, open loop) after the maximum-rate phase
#   DURATION [20] WARMUP [2]     seconds measured per phase, after seconds of warm-up
#   CONNECTIONS [16]             keep-alive connections of the load generator
#   SERVER_CPUS [1] LOAD_CPUS [0]  taskset CPU lists of the HTTP server and of the load generator
#   SERVER_WORK_US [0]           CPU the server spends per request before answering (µs, busy);
#                                0: it does almost nothing, the worst case for the agent's share
#   AGENT_CPUS [] STORE_CPUS []  taskset CPU lists of the agent and of the store; empty: unpinned
#   INTERVAL [10s]               the agent's --interval
#   SETTLE [12]                  seconds after a phase before its counters are read: more than
#                                INTERVAL, since the agent reads the kernel's per-socket counters,
#                                HTTP exchanges counted in the kernel included, once per interval
#   STORE [1]                    0: no store; the agent's exports then fail and are counted
#   TRACEPARENT [0]              1: every request carries a new W3C traceparent, so the agent also
#                                makes two spans per request
#   QUIET_WAIT [900]             seconds to wait, before each arm, for strata_* BPF programs that
#                                are not this agent's (another agent or a test) to go away; their
#                                count is recorded either way (needs bpftool)
#   WORK [/tmp/strata-agent-bench]  scratch directory, removed at the end unless KEEP=1
#   OUT [tests/bench/results/agent-overhead-DATE.jsonl]
#   STRATA_BIN AGENT_BIN LOAD_BIN  [target/release/{strata,strata-agent,strata-http-load}]
#
# Ports (127.0.0.1): HTTP server 18080, agent /metrics 19471, store 19480 (OTLP gRPC 14417,
# OTLP HTTP 14418).
set -euo pipefail

# Bash reads a script as it runs: run from a private copy so editing this file mid-run is harmless.
if [ -z "${STRATA_BENCH_COPY:-}" ]; then
  copy=$(mktemp /tmp/agent-overhead.XXXXXX.sh)
  cp "$0" "$copy"
  STRATA_BENCH_COPY=$copy STRATA_BENCH_HERE=$(cd "$(dirname "$0")" && pwd) bash "$copy" "$@" && rc=0 || rc=$?
  rm -f "$copy"
  exit $rc
fi
here=$STRATA_BENCH_HERE
root=$(cd "$here/../.." && pwd)
ROUNDS=${ROUNDS:-5}
RATES=${RATES:-10000 20000 40000}
DURATION=${DURATION:-20}
WARMUP=${WARMUP:-2}
CONNECTIONS=${CONNECTIONS:-16}
SERVER_CPUS=${SERVER_CPUS:-1}
SERVER_WORK_US=${SERVER_WORK_US:-0}
LOAD_CPUS=${LOAD_CPUS:-0}
AGENT_CPUS=${AGENT_CPUS:-}
STORE_CPUS=${STORE_CPUS:-}
INTERVAL=${INTERVAL:-10s}
SETTLE=${SETTLE:-12}
STORE=${STORE:-1}
TRACEPARENT=${TRACEPARENT:-0}
QUIET_WAIT=${QUIET_WAIT:-900}
WORK=${WORK:-/tmp/strata-agent-bench}
KEEP=${KEEP:-0}
suffix=''
[ "$TRACEPARENT" = 1 ] && suffix=-traceparent
OUT=${OUT:-$root/tests/bench/results/agent-overhead$suffix-$(date -u +%F).jsonl}
STRATA_BIN=${STRATA_BIN:-$root/target/release/strata}
AGENT_BIN=${AGENT_BIN:-$root/target/release/strata-agent}
LOAD_BIN=${LOAD_BIN:-$root/target/release/strata-http-load}
SERVER_ADDR=127.0.0.1:18080
AGENT_ADDR=127.0.0.1:19471
STORE_PORT=19480
GRPC_PORT=14417
HTTP_PORT=14418

# summarize FILE: the Markdown summary of a results file (medians over rounds).
summarize() {
  python3 - "$1" <<'PY'
import json, statistics, sys

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
run = next(r for r in rows if r["kind"] == "run")
end = next((r for r in rows if r["kind"] == "end"), {})
phases = [r for r in rows if r["kind"] == "phase"]
idle = [r for r in rows if r["kind"] == "idle"]
rounds = sorted({r["round"] for r in phases})

def pick(arm, phase):
    return {r["round"]: r for r in phases if r["arm"] == arm and r["phase"] == phase}

def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")

def pct(x):
    return f"{x:.2f} %"

print(f"Run {run['date']}, {run['ncpu']} CPUs ({run['cpu']}), kernel {run['kernel']}, commit {run['commit']}")
print(f"server on CPU {run['server_cpus']}, load on CPU {run['load_cpus']}, agent on "
      f"{run['agent_cpus'] or 'any CPU'}, store {'on ' + (run['store_cpus'] or 'any CPU') if run['store'] else 'off'}; "
      f"{run['connections']} connections, {run['duration_s']} s per phase after {run['warmup_s']} s warm-up, "
      f"{len(rounds)} rounds{', every request with a traceparent' if run.get('traceparent') else ''}"
      f"{', the server busy ' + str(run['server_work_us']) + ' µs per request' if run.get('server_work_us') else ''}")
disturbed = [r for r in phases if r.get("foreign_programs")]
if disturbed:
    print(f"WARNING: {len(disturbed)} phases ran while another process had strata_* BPF programs "
          f"loaded: {', '.join(str(r['round']) + ' ' + r['arm'] + ' ' + r['phase'] for r in disturbed)}")
if run.get("agent_sources_modified"):
    print(f"agent sources differing from the commit: {run['agent_sources_modified']}")
print(f"uptime at start: {run['uptime'].strip()}")
if end:
    print(f"uptime at end:   {end['uptime'].strip()}")
print()

base, agent = pick("baseline", "max"), pick("agent", "max")
print("Maximum rate (closed loop), req/s:\n")
def workload_us(r):
    return 1e6 * (r["server_cpu_s"] + r["load_cpu_s"]) / r["load"]["requests_total"]

print("| round | without agent | with agent | with/without | p99 without / with | "
      "server+load CPU µs/request without / with | agent user space | load avg (1 min) before |")
print("|---|---|---|---|---|---|---|---|")
ratios = []
for n in rounds:
    if n in base and n in agent:
        b, a = base[n], agent[n]
        ratios.append(a["load"]["rps"] / b["load"]["rps"])
        print(f"| {n} | {b['load']['rps']:,.0f} | {a['load']['rps']:,.0f} | {ratios[-1]:.3f} | "
              f"{b['load']['latency_us']['p99']} / {a['load']['latency_us']['p99']} µs | "
              f"{workload_us(b):.1f} / {workload_us(a):.1f} | "
              f"{pct(100 * a['agent_user_cpu_s'] / a['window_s'])} | "
              f"{b['loadavg_before'].split()[0]} / {a['loadavg_before'].split()[0]} |")
mb = median(r["load"]["rps"] for r in base.values())
ma = median(r["load"]["rps"] for r in agent.values())
print(f"| median | {mb:,.0f} | {ma:,.0f} | {median(ratios):.3f} (of medians {ma / mb:.3f}) | | "
      f"{median(workload_us(r) for r in base.values()):.1f} / {median(workload_us(r) for r in agent.values()):.1f} | | |")
loss_max = 100 * (1 - median(ratios))
print(f"\nreq/s lost to the agent at the maximum rate: median of per-round ratios {pct(loss_max)}, "
      f"of medians {pct(100 * (1 - ma / mb))}")
quiet = [n for n in rounds if n in base and n in agent
         and not base[n].get("foreign_programs") and not agent[n].get("foreign_programs")]
if len(quiet) < len(ratios):
    quiet_ratios = [agent[n]["load"]["rps"] / base[n]["load"]["rps"] for n in quiet]
    print(f"rounds without another process's strata_* programs loaded ({', '.join(map(str, quiet)) or 'none'}): "
          f"median ratio {median(quiet_ratios):.3f}, loss {pct(100 * (1 - median(quiet_ratios)))}")
print()

rates = [p for p in dict.fromkeys(r["phase"] for r in phases) if p.startswith("rate-")]
print("Fixed rates: agent CPU in % of one core (medians over rounds):\n")
print("| target req/s | req/s over the CPU window | user space | kernel programs | total | total per 10k req/s | "
      "program ns/run | program runs per request | server+load CPU µs/request without / with | p99 without / with |")
print("|---|---|---|---|---|---|---|---|---|---|")
per10k = []
for phase in rates:
    a, b = pick("agent", phase), pick("baseline", phase)
    rate = median(r["rate_over_window"] for r in a.values())
    user = median(100 * r["agent_user_cpu_s"] / r["window_s"] for r in a.values())
    prog = median(100 * r["agent_prog_cpu_s"] / r["window_s"] for r in a.values())
    total = median(100 * (r["agent_user_cpu_s"] + r["agent_prog_cpu_s"]) / r["window_s"] for r in a.values())
    ns_run = median(1e9 * r["agent_prog_cpu_s"] / r["agent_prog_runs"] for r in a.values() if r["agent_prog_runs"])
    runs = median(r["agent_prog_runs"] / r["load"]["requests_total"] for r in a.values())
    workload = (median(workload_us(r) for r in b.values()), median(workload_us(r) for r in a.values()))
    p99 = (median(r["load"]["latency_us"]["p99"] for r in b.values()),
           median(r["load"]["latency_us"]["p99"] for r in a.values()))
    per10k.append((phase, total / (rate / 1e4), user / (rate / 1e4), prog / (rate / 1e4)))
    print(f"| {phase[5:]} | {rate:,.0f} | {pct(user)} | {pct(prog)} | {pct(total)} | "
          f"{pct(total / (rate / 1e4))} (user {user / (rate / 1e4):.2f}, programs {prog / (rate / 1e4):.2f}) | "
          f"{ns_run:.0f} | {runs:.1f} | {workload[0]:.1f} / {workload[1]:.1f} | {p99[0]:.0f} / {p99[1]:.0f} µs |")

print("\nKernel programs per request at the fixed rates (medians over rounds):\n")
names = sorted({name for phase in rates for r in pick("agent", phase).values()
                for name in r.get("agent_programs", {})})
print("| program | " + " | ".join(f"{p[5:]} req/s: ns/request, runs/request" for p in rates) + " |")
print("|---|" + "---|" * len(rates))
for name in names:
    cells = []
    for phase in rates:
        rs = [r for r in pick("agent", phase).values() if name in r.get("agent_programs", {})]
        ns = median(r["agent_programs"][name]["run_time_ns"] / r["load"]["requests_total"] for r in rs)
        runs = median(r["agent_programs"][name]["run_cnt"] / r["load"]["requests_total"] for r in rs)
        cells.append(f"{ns:,.0f} ns, {runs:.2f}")
    print(f"| {name} | " + " | ".join(cells) + " |")

agent_rows = [r for r in phases if r["arm"] == "agent"]
rss = max(r["agent_rss_kib"] for r in agent_rows + idle)
hwm = max(r["agent_hwm_kib"] for r in agent_rows)
idle_cpu = median(100 * r["agent_user_cpu_s"] / r["window_s"] for r in idle)
print(f"\nAgent memory: VmRSS at most {rss / 1024:.1f} MiB, VmHWM at most {hwm / 1024:.1f} MiB; "
      f"idle CPU {pct(idle_cpu)} of one core\n")

print("Events and losses, per phase with the agent (counter deltas over the phase plus its settle time):\n")
print("| phase | round | requests sent | http events | events / (2 × requests) | lost_total | "
      "kernel counters | other counters that moved |")
print("|---|---|---|---|---|---|---|---|")
lost_at = {}
for phase in ["max"] + rates:
    for n, r in sorted(pick("agent", phase).items()):
        c = r["agent_counters"]
        http = c.get('strata_agent_events_total{kind="http"}', 0)
        lost = {k: v for k, v in c.items() if k.startswith("strata_agent_lost_total")}
        kernel = {k: v for k, v in c.items() if k.startswith("strata_agent_kernel_counter_total")}
        other = {k: v for k, v in c.items() if k not in lost and k not in kernel
                 and not k.startswith(("strata_agent_events_total", "strata_agent_export_items",
                                       "strata_agent_export_requests"))}
        def short(d):
            return ", ".join(f"{k.removeprefix('strata_agent_')} {v:,}" for k, v in sorted(d.items())) or "0"
        sent = r["load"]["requests_total"]
        lost_at.setdefault(phase, []).append((sum(lost.values()), sum(kernel.values()), http, sent))
        print(f"| {phase} | {n} | {sent:,} | {http:,} | {http / (2 * sent):.4f} | {short(lost)} | "
              f"{short(kernel)} | {short(other)} |")

print("\nGoals:\n")
print(f"- req/s lost at the maximum rate ≤ 5 %: {pct(loss_max)} → {'met' if loss_max <= 5 else 'NOT met'}")
worst = max(per10k, key=lambda x: x[1]) if per10k else None
if worst:
    print(f"- agent CPU ≤ 3 % of a core per 10k req/s: worst {pct(worst[1])} at {worst[0]} → "
          f"{'met' if worst[1] <= 3 else 'NOT met'}")
print(f"- agent RSS ≤ 64 MiB: peak {hwm / 1024:.1f} MiB → {'met' if hwm <= 64 * 1024 else 'NOT met'}")
for phase, entries in lost_at.items():
    lost = sum(e[0] for e in entries)
    missing = sum(2 * e[3] - e[2] for e in entries)
    print(f"- {phase}: lost_total {lost:,}, kernel counters {sum(e[1] for e in entries):,}, "
          f"http events short of 2 per request by {missing:,}")
PY
}

if [ "${1:-}" = --summary ]; then
  summarize "${2:?usage: agent-overhead.sh --summary RESULTS.jsonl}"
  exit 0
fi

for bin in "$AGENT_BIN" "$LOAD_BIN"; do
  [ -x "$bin" ] || { echo "missing $bin: see the build command at the top of $here/agent-overhead.sh" >&2; exit 1; }
done
[ "$STORE" = 0 ] || [ -x "$STRATA_BIN" ] || { echo "missing $STRATA_BIN (or STORE=0)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "run as root: the agent loads eBPF programs" >&2; exit 1; }
for tool in taskset curl jq python3; do
  command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
done
cgroup2=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/mounts)
[ -n "$cgroup2" ] || { echo "no cgroup2 hierarchy mounted" >&2; exit 1; }

rm -rf "$WORK"
mkdir -p "$WORK/bin" "$(dirname "$OUT")"
# Private copies: a build that replaces target/release mid-run must not change what is measured.
cp "$AGENT_BIN" "$WORK/bin/strata-agent"
cp "$LOAD_BIN" "$WORK/bin/strata-http-load"
AGENT_BIN=$WORK/bin/strata-agent
LOAD_BIN=$WORK/bin/strata-http-load
if [ "$STORE" != 0 ]; then
  cp "$STRATA_BIN" "$WORK/bin/strata"
  STRATA_BIN=$WORK/bin/strata
fi
: >"$OUT"
tck=$(getconf CLK_TCK)
ncpu=$(nproc)
bpf_stats_before=$(sysctl -n kernel.bpf_stats_enabled)
# The agent leaves out the traffic of its own cgroup: in a cgroup of its own it sees the load
# generator's and the server's, wherever those are.
agent_cgroup=$cgroup2/strata-agent-bench
server_pid='' store_pid='' agent_pid=''

exec_pinned() { # CPUS COMMAND...: becomes COMMAND, pinned to CPUS unless empty; only under `( ) &`
  local cpus=$1
  shift
  if [ -n "$cpus" ]; then exec taskset -c "$cpus" "$@"; else exec "$@"; fi
}

stop_pid() { # PID: SIGTERM, wait up to 10 s, then SIGKILL
  local pid=$1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  stop_pid "$agent_pid"
  stop_pid "$server_pid"
  stop_pid "$store_pid"
  rmdir "$agent_cgroup" 2>/dev/null || true
  sysctl -qw kernel.bpf_stats_enabled="$bpf_stats_before" || true
  [ "$KEEP" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT

wait_http() { # URL SECONDS
  for _ in $(seq $(($2 * 10))); do
    curl -sf -o /dev/null "$1" && return 0
    sleep 0.1
  done
  echo "no answer from $1 within $2 s" >&2
  return 1
}

cpu_ticks() { # PID: utime + stime of every thread, in clock ticks
  sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}

system_ticks() { # busy and total ticks of all CPUs
  awk '$1 == "cpu" { total = 0; for (i = 2; i <= NF; i++) total += $i; print total - $5 - $6, total }' /proc/stat
}

prog_stats() { # PID: {"ID": [run_time_ns, run_cnt]} of the BPF programs the process holds open
  local pid=$1
  if [ -z "$pid" ]; then echo '{}'; return; fi
  # Only a program fd's fdinfo has run_time_ns and run_cnt (counted while kernel.bpf_stats_enabled).
  for info in "/proc/$pid/fdinfo/"*; do
    awk '/^prog_id:/ { id = $2 } /^run_time_ns:/ { ns = $2 } /^run_cnt:/ { cnt = $2 }
         END { if (ns != "") printf "\"%s\": [%s, %s]\n", id, ns, cnt }' "$info" 2>/dev/null
  done | paste -sd, - | { read -r entries || true; echo "{${entries:-}}"; }
}

prog_names() { # PID: {"ID": "name"} of the process's BPF programs (needs bpftool; {} without)
  local pid=$1 ids
  command -v bpftool >/dev/null && [ -n "$pid" ] || { echo '{}'; return; }
  ids=$(prog_stats "$pid" | jq -c 'keys | map(tonumber)')
  bpftool prog show --json | jq -c --argjson ids "$ids" \
    'map(select(.id as $id | $ids | index($id))) | map({key: (.id | tostring), value: .name}) | from_entries'
}

foreign_programs() { # strata_* BPF programs loaded that are not the running agent's; null without bpftool
  command -v bpftool >/dev/null || { echo null; return; }
  local ours=''
  [ -n "$agent_pid" ] && ours=$(cat "/proc/$agent_pid/fdinfo/"* 2>/dev/null | awk '/^prog_id:/ { print $2 }' | sort -u | paste -sd, -)
  bpftool prog show --json | jq --arg ours "$ours" '
    ($ours | split(",") | map(select(. != "") | tonumber)) as $ours |
    [.[] | select(.name | startswith("strata_")) | select(.id as $id | $ours | index($id) | not)] | length'
}

wait_quiet() { # waits up to QUIET_WAIT s for foreign strata programs to be unloaded
  local waited=0 foreign
  while foreign=$(foreign_programs) && [ "$foreign" != null ] && [ "$foreign" -gt 0 ] && [ "$waited" -lt "$QUIET_WAIT" ]; do
    [ "$waited" = 0 ] && echo "waiting for $foreign strata_* BPF programs of another process to be unloaded" >&2
    sleep 10
    waited=$((waited + 10))
  done
}

status_kib() { # PID FIELD: VmRSS or VmHWM in KiB
  awk -v field="$2:" '$1 == field { print $2 }' "/proc/$1/status"
}

metrics_delta() { # BEFORE AFTER: the agent's counters that moved, as JSON
  python3 - "$1" "$2" <<'PY'
import json, sys

def parse(path):
    values = {}
    for line in open(path):
        if line.startswith("#") or not line.strip():
            continue
        name, _, value = line.rpartition(" ")
        values[name] = float(value)
    return values

before, after = parse(sys.argv[1]), parse(sys.argv[2])
delta = {}
for name, value in after.items():
    if name.startswith(("strata_agent_lost_total", "strata_agent_kernel_counter_total",
                        "strata_agent_events_total", "strata_agent_own_events_ignored_total",
                        "strata_agent_spans_total", "strata_agent_export_items_total",
                        "strata_agent_export_requests_total", "strata_agent_export_dropped_total",
                        "strata_agent_export_rejected_total", "strata_agent_export_errors_total")):
        moved = value - before.get(name, 0)
        if moved:
            delta[name] = int(moved)
print(json.dumps(delta, sort_keys=True))
PY
}

start_store() {
  [ "$STORE" = 0 ] && return
  (STRATA_LOG=warn exec_pinned "$STORE_CPUS" "$STRATA_BIN" up --data-dir "$WORK/store" \
    --listen 127.0.0.1:$STORE_PORT --otlp-grpc-listen 127.0.0.1:$GRPC_PORT \
    --otlp-http-listen 127.0.0.1:$HTTP_PORT --agent off >"$WORK/store.log" 2>&1) &
  store_pid=$!
  wait_http "http://127.0.0.1:$STORE_PORT/-/ready" 60 || wait_http "http://127.0.0.1:$STORE_PORT/-/healthy" 30
}

start_agent() {
  mkdir -p "$agent_cgroup"
  # The shell moves itself into the cgroup, then becomes the agent.
  (exec_pinned "$AGENT_CPUS" sh -c 'echo $$ >"$1/cgroup.procs" && shift && exec "$@"' sh "$agent_cgroup" \
    "$AGENT_BIN" --endpoint "http://127.0.0.1:$GRPC_PORT" --interval "$INTERVAL" \
    --listen "$AGENT_ADDR" --kubernetes disabled >>"$WORK/agent.log" 2>&1) &
  agent_pid=$!
  wait_http "http://$AGENT_ADDR/-/ready" 60
  sleep 3
  grep -qx "0::${agent_cgroup#"$cgroup2"}" "/proc/$agent_pid/cgroup" ||
    { echo "the agent (pid $agent_pid) is not in $agent_cgroup" >&2; exit 1; }
}

stop_agent() {
  stop_pid "$agent_pid"
  agent_pid=''
}

emit() { # JSON object: one line of $OUT
  jq -c . <<<"$1" >>"$OUT"
}

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# run_phase ROUND ARM PHASE RATE: one load run; RATE empty for the maximum (closed loop).
run_phase() {
  local round=$1 arm=$2 phase=$3 rate=$4
  local load_args=(load --url "http://$SERVER_ADDR/" --connections "$CONNECTIONS"
    --duration "$DURATION" --warmup "$WARMUP")
  [ -n "$rate" ] && load_args+=(--rate "$rate")
  [ "$TRACEPARENT" = 1 ] && load_args+=(--traceparent)
  [ -n "$agent_pid" ] && curl -sf "http://$AGENT_ADDR/metrics" >"$WORK/before.prom"
  local load_before t0 t1 agent0=0 agent1=0 sys0 sys1 server0 server1 store0=0 store1=0
  local prog0 prog1 result foreign foreign_end names='{}'
  load_before=$(loadavg)
  foreign=$(foreign_programs)
  [ -n "$agent_pid" ] && names=$(prog_names "$agent_pid")
  [ -n "$agent_pid" ] && agent0=$(cpu_ticks "$agent_pid")
  [ -n "$store_pid" ] && store0=$(cpu_ticks "$store_pid")
  prog0=$(prog_stats "$agent_pid")
  server0=$(cpu_ticks "$server_pid")
  sys0=$(system_ticks)
  t0=$(date +%s%N)
  result=$(taskset -c "$LOAD_CPUS" "$LOAD_BIN" "${load_args[@]}")
  # One more second for the agent to drain what the last requests produced (its ring reader
  # wakes at least every 50 ms); the CPU window runs from the start to here.
  sleep 1
  t1=$(date +%s%N)
  sys1=$(system_ticks)
  server1=$(cpu_ticks "$server_pid")
  prog1=$(prog_stats "$agent_pid")
  foreign_end=$(foreign_programs)
  [ -n "$store_pid" ] && store1=$(cpu_ticks "$store_pid")
  local delta='{}' rss=0 hwm=0
  if [ -n "$agent_pid" ]; then
    agent1=$(cpu_ticks "$agent_pid")
    sleep "$SETTLE"
    curl -sf "http://$AGENT_ADDR/metrics" >"$WORK/after.prom"
    delta=$(metrics_delta "$WORK/before.prom" "$WORK/after.prom")
    rss=$(status_kib "$agent_pid" VmRSS)
    hwm=$(status_kib "$agent_pid" VmHWM)
  fi
  emit "$(jq -n --argjson load "$result" --argjson delta "$delta" \
    --arg round "$round" --arg arm "$arm" --arg phase "$phase" --arg loadavg "$load_before" \
    --arg window_ns "$((t1 - t0))" --arg tck "$tck" --arg ncpu "$ncpu" \
    --arg agent_ticks "$((agent1 - agent0))" --arg server_ticks "$((server1 - server0))" \
    --arg store_ticks "$((store1 - store0))" \
    --argjson prog0 "$prog0" --argjson prog1 "$prog1" --argjson names "$names" \
    --arg sys0 "$sys0" --arg sys1 "$sys1" --argjson foreign_end "$foreign_end" \
    --arg bpf_stats "$(sysctl -n kernel.bpf_stats_enabled)" \
    --arg rss "$rss" --arg hwm "$hwm" --argjson foreign "$foreign" '
    ($prog1 | to_entries | map({key: ($names[.key] // .key),
      value: {run_time_ns: (.value[0] - ($prog0[.key][0] // 0)), run_cnt: (.value[1] - ($prog0[.key][1] // 0))}})
      | from_entries) as $programs |
    ($sys0 | split(" ") | map(tonumber)) as $s0 | ($sys1 | split(" ") | map(tonumber)) as $s1 |
    ($window_ns | tonumber / 1e9) as $window | ($tck | tonumber) as $hz |
    {kind: "phase", round: ($round | tonumber), arm: $arm, phase: $phase, loadavg_before: $loadavg,
     window_s: $window, bpf_stats_enabled: ($bpf_stats | tonumber),
     foreign_programs: (if $foreign == null then null else [$foreign, $foreign_end] | max end),
     rate_over_window: ($load.requests_total / $window),
     agent_user_cpu_s: ($agent_ticks | tonumber / $hz),
     agent_prog_cpu_s: ([$programs[].run_time_ns] | add // 0 | . / 1e9),
     agent_prog_runs: ([$programs[].run_cnt] | add // 0), agent_programs: $programs,
     server_cpu_s: ($server_ticks | tonumber / $hz), load_cpu_s: $load.cpu_s,
     store_cpu_s: ($store_ticks | tonumber / $hz),
     system_busy_cpu_s: (($s1[0] - $s0[0]) / $hz),
     system_busy_pct: (100 * ($s1[0] - $s0[0]) / ($s1[1] - $s0[1])),
     agent_rss_kib: ($rss | tonumber), agent_hwm_kib: ($hwm | tonumber),
     agent_counters: $delta, load: $load}')"
  jq -r 'select(.round == '"$round"' and .arm == "'"$arm"'" and .phase == "'"$phase"'") |
    "round \(.round) \(.arm) \(.phase): \(.load.rps) req/s, p99 \(.load.latency_us.p99) µs, agent cpu \(.agent_user_cpu_s) s user + \(.agent_prog_cpu_s) s programs"' \
    "$OUT" >&2
}

# run_arm ROUND ARM: the maximum-rate phase (BPF statistics off: they cost time in every program
# run), then each fixed rate (statistics on, to read the programs' own time).
run_arm() {
  local round=$1 arm=$2
  wait_quiet
  if [ "$arm" = agent ]; then
    start_agent
    local idle0 idle1
    idle0=$(cpu_ticks "$agent_pid")
    sleep 10
    idle1=$(cpu_ticks "$agent_pid")
    emit "$(jq -n --arg round "$round" --arg ticks "$((idle1 - idle0))" --arg tck "$tck" \
      --arg rss "$(status_kib "$agent_pid" VmRSS)" \
      '{kind: "idle", round: ($round | tonumber), arm: "agent", window_s: 10,
        agent_user_cpu_s: ($ticks | tonumber / ($tck | tonumber)), agent_rss_kib: ($rss | tonumber)}')"
  else
    sleep 3
  fi
  sysctl -qw kernel.bpf_stats_enabled=0
  run_phase "$round" "$arm" max ''
  sysctl -qw kernel.bpf_stats_enabled=1
  for rate in $RATES; do
    run_phase "$round" "$arm" "rate-$rate" "$rate"
  done
  sysctl -qw kernel.bpf_stats_enabled=0
  [ "$arm" = agent ] && stop_agent
  return 0
}

emit "$(jq -n --arg commit "$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
  --arg kernel "$(uname -r)" --arg cpu "$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)" \
  --arg ncpu "$ncpu" --arg mem "$(awk '/^MemTotal/ { print $2 }' /proc/meminfo)" \
  --arg date "$(date -u +%FT%TZ)" --arg uptime "$(uptime)" \
  --arg rounds "$ROUNDS" --arg rates "$RATES" --arg duration "$DURATION" --arg warmup "$WARMUP" \
  --arg connections "$CONNECTIONS" --arg server_cpus "$SERVER_CPUS" --arg load_cpus "$LOAD_CPUS" \
  --arg agent_cpus "$AGENT_CPUS" --arg store_cpus "$STORE_CPUS" --arg store "$STORE" \
  --arg interval "$INTERVAL" --arg traceparent "$TRACEPARENT" --arg work_us "$SERVER_WORK_US" \
  --arg tree "$(git -C "$root" status --porcelain -- ingest-agent ingest-ebpf 2>/dev/null | paste -sd' ' -)" \
  '{kind: "run", date: $date, commit: $commit, kernel: $kernel, cpu: $cpu, ncpu: ($ncpu | tonumber),
    mem_kib: ($mem | tonumber), uptime: $uptime, rounds: ($rounds | tonumber), rates: $rates,
    duration_s: ($duration | tonumber), warmup_s: ($warmup | tonumber),
    connections: ($connections | tonumber), server_cpus: $server_cpus, load_cpus: $load_cpus,
    agent_cpus: $agent_cpus, store_cpus: $store_cpus, store: ($store == "1"), interval: $interval,
    traceparent: ($traceparent == "1"), server_work_us: ($work_us | tonumber),
    agent_sources_modified: $tree}')"

for addr in "$SERVER_ADDR" "$AGENT_ADDR" "127.0.0.1:$STORE_PORT"; do
  ! curl -s -o /dev/null "http://$addr/" || { echo "$addr is already in use" >&2; exit 1; }
done
start_store
taskset -c "$SERVER_CPUS" "$LOAD_BIN" serve --listen "$SERVER_ADDR" --work-us "$SERVER_WORK_US" >"$WORK/server.out" 2>"$WORK/server.log" &
server_pid=$!
wait_http "http://$SERVER_ADDR/" 10
kill -0 "$server_pid" 2>/dev/null || { echo "the HTTP server did not start: $WORK/server.log" >&2; exit 1; }

for round in $(seq "$ROUNDS"); do
  if [ $((round % 2)) = 1 ]; then arms='agent baseline'; else arms='baseline agent'; fi
  for arm in $arms; do
    run_arm "$round" "$arm"
  done
done

emit "$(jq -n --arg uptime "$(uptime)" '{kind: "end", date: (now | todate), uptime: $uptime}')"
summarize "$OUT"

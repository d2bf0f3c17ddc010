#!/usr/bin/env bash
# The maximum-rate phase of tests/bench/agent-overhead.sh alone, for several arms alternated in
# short rounds: on a machine whose speed drifts over minutes, arms measured seconds apart compare
# better than whole runs. No store (an agent's exports fail and are counted).
#
#   tests/bench/agent-max-ab.sh ARM...        # as root; prints "round N ARM rps R" per phase
#
# ARM: `base` (nothing attached), `agent:BIN` (an agent binary, started fresh for the phase), or
# `bpf:OBJ` (an object whose programs `proto_ingress` and `proto_egress` are attached at the
# cgroup2 root with bpftool, e.g. a prototype of the packet programs).
# Environment: ROUNDS [6], DURATION [10] seconds after 2 s of warm-up, LOAD_BIN
# [target/release/strata-http-load], SERVER_WORK_US [0] (CPU the server spends per request, busy),
# SERVER [strata] (`strata`: strata-http-load serve; `nginx`: Debian's nginx, one worker, answering
# every request with a 2-byte body from its config), REQUEST_HEADERS [none] (header lines, one per
# line, added to every request: requests the size of a real client's). Server on CPU 1, load
# generator on CPU 0, 16 connections.
set -u
here=$(cd "$(dirname "$0")" && pwd)
LOAD_BIN=${LOAD_BIN:-$here/../../target/release/strata-http-load}
ROUNDS=${ROUNDS:-6}
DURATION=${DURATION:-10}
SERVER_WORK_US=${SERVER_WORK_US:-0}
SERVER=${SERVER:-strata}
NGINX_DIR=$(mktemp -d /tmp/strata-agent-max-ab.XXXXXX)
trap 'rm -rf "$NGINX_DIR"' EXIT
cat >"$NGINX_DIR/nginx.conf" <<'CONF'
worker_processes 1;
pid nginx.pid;
error_log stderr;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 1000000000;
  keepalive_timeout 300s;
  server {
    listen 127.0.0.1:18080;
    location / { return 200 "ok"; }
  }
}
CONF
header_args=()
while IFS= read -r line; do
  [ -n "$line" ] && header_args+=(--header "$line")
done <<<"${REQUEST_HEADERS:-}"
CG=$(awk '$3=="cgroup2" { print $2; exit }' /proc/self/mounts)
PIN=/sys/fs/bpf/strata-agent-max-ab
for round in $(seq 1 "$ROUNDS"); do
  for arm in "$@"; do
    if [ "$SERVER" = nginx ]; then
      taskset -c 1 nginx -p "$NGINX_DIR" -c nginx.conf -g 'daemon off;' >/dev/null 2>&1 &
    else
      taskset -c 1 "$LOAD_BIN" serve --listen 127.0.0.1:18080 --work-us "$SERVER_WORK_US" \
        >/dev/null 2>&1 &
    fi
    server=$!
    agent=
    case $arm in
      bpf:*)
        rm -rf "$PIN"
        bpftool prog loadall "${arm#bpf:}" "$PIN" >/dev/null || echo "loading ${arm#bpf:} failed" >&2
        bpftool cgroup attach "$CG" ingress pinned "$PIN/proto_ingress" multi
        bpftool cgroup attach "$CG" egress pinned "$PIN/proto_egress" multi ;;
      agent:*)
        "${arm#agent:}" --endpoint http://127.0.0.1:14999 --interval 10s \
          --listen 127.0.0.1:19471 --kubernetes disabled >/dev/null 2>&1 &
        agent=$! ;;
    esac
    sleep 3
    rps=$(taskset -c 0 "$LOAD_BIN" load --url http://127.0.0.1:18080/ --connections 16 \
      --duration "$DURATION" --warmup 2 "${header_args[@]}" | jq -r '.rps')
    echo "round $round $arm rps $rps"
    case $arm in
      bpf:*)
        bpftool cgroup detach "$CG" ingress pinned "$PIN/proto_ingress"
        bpftool cgroup detach "$CG" egress pinned "$PIN/proto_egress"
        rm -rf "$PIN" ;;
    esac
    if [ -n "$agent" ]; then kill "$agent"; wait "$agent" 2>/dev/null; fi
    kill "$server"; wait "$server" 2>/dev/null
    sleep 1
  done
done

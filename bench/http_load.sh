#!/usr/bin/env bash
# HTTP load on loopback: start `qa serve`, time start-up to ready, then POST /ask with wrk at
# 1, 4 and 16 concurrent connections; prints a markdown table.
#   usage: bench/http_load.sh [seconds per level (default 30)] [port (default 8765)]
# Needs wrk (Debian: apt-get install wrk) and the project installed in .venv (make index).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-30}
port=${2:-8765}
command -v wrk >/dev/null || { echo "error: wrk not found; install it (apt-get install wrk)" >&2; exit 1; }
[ -x .venv/bin/qa ] || { echo "error: .venv/bin/qa not found; run make index first" >&2; exit 1; }
log=$(mktemp)
t0=$(date +%s.%N)
.venv/bin/qa serve --host 127.0.0.1 --port "$port" >"$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -f "$log"' EXIT
until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null; do
  kill -0 $pid 2>/dev/null || { echo "error: qa serve exited:" >&2; cat "$log" >&2; exit 1; }
  sleep 0.1
done
ready=$(echo "$(date +%s.%N) - $t0" | bc)
echo "start-up to ready: ${ready} s ($(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))"
# Warm-up: every question once, so that the numbers are the warm service.
wrk -t1 -c1 -d5s -s bench/wrk_ask.lua "http://127.0.0.1:$port" >/dev/null
echo
echo "| clients | requests/s | p50 ms | p95 ms | p99 ms | requests | errors | of which non-2xx |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|"
for c in 1 4 16; do
  line=$(wrk -t"$(( c < 4 ? c : 4 ))" -c"$c" -d"${secs}s" --timeout 30s -s bench/wrk_ask.lua \
    "http://127.0.0.1:$port" | grep '^RESULT')
  eval "${line#RESULT }"
  echo "| $c | $rps | $p50_ms | $p95_ms | $p99_ms | $requests | $errors | $non2xx |"
done

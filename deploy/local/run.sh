#!/usr/bin/env bash
# Starts every process of the shop in the background (reusing what already runs), waits until
# each is ready, seeds the demo data once and prints the URLs. `run.sh stop` stops them.
# Configuration: the same environment variables as the services (see README "Configuration").
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STATE_DIR="${STATE_DIR:-$ROOT/.local}"
PIDS="$STATE_DIR/pids"
LOGS="$STATE_DIR/logs"
PY="$ROOT/.venv/bin/python"
mkdir -p "$PIDS" "$LOGS"
# A local run: the services accept the public local default secrets (JWT_SECRET,
# DATA_PLATFORM_SECRET), which they refuse anywhere else. Users are still confined to their data.
export SHOP_LOCAL_MODE="${SHOP_LOCAL_MODE:-true}"
# A local run traces into the local Zipkin (deploy/local/stack.sh starts it) with the services'
# default sampler: one request in a hundred, and every request sent with a sampled `traceparent`
# header (README "Follow an order"), so that measuring a local run measures the shop, not the
# tracing. OTEL_TRACES_SAMPLER_ARG=1 traces every request; ZIPKIN_ENABLED=false, none.
if [[ "${ZIPKIN_ENABLED:-true}" == true ]]; then
  export OTEL_TRACES_EXPORTER="${OTEL_TRACES_EXPORTER:-zipkin}"
  export OTEL_EXPORTER_ZIPKIN_ENDPOINT="${OTEL_EXPORTER_ZIPKIN_ENDPOINT:-http://localhost:${ZIPKIN_PORT:-9411}/api/v2/spans}"
  export SHOP_TRACES_UI="http://localhost:${ZIPKIN_PORT:-9411}/zipkin/"
fi

# name | python module | readiness URL ("-" when the process serves no HTTP)
# Two HTTP processes for the services whose requests come in rushes (the first also runs the
# service's consumers and outbox relay, the second only answers HTTP): on two cores they serve
# 1.5-1.9x the requests of one (benchmarks/PROFILE.md). The order service's capacity is the
# saga's, which an extra process does not add to.
for svc in POINT PRODUCT COUPON RANKING; do
  var="${svc}_HTTP_WORKERS"; export "$var=${!var:-2}"
done

PROCESSES=(
  "point|point|http://127.0.0.1:${POINT_HTTP_PORT:-8001}/readyz"
  "product|product|http://127.0.0.1:${PRODUCT_HTTP_PORT:-8002}/readyz"
  "coupon|coupon|http://127.0.0.1:${COUPON_HTTP_PORT:-8003}/readyz"
  "order|order|http://127.0.0.1:${ORDER_HTTP_PORT:-8004}/readyz"
)
[[ -f "$ROOT/deploy/local/processes.extra" ]] && mapfile -t -O "${#PROCESSES[@]}" PROCESSES < <(grep -v '^#' "$ROOT/deploy/local/processes.extra" | grep .)

log() { echo "[run] $*"; }

alive() { [[ -f "$PIDS/$1.pid" ]] && kill -0 "$(cat "$PIDS/$1.pid")" 2>/dev/null; }

wait_ready() {
  local name=$1 url=$2 deadline=$((SECONDS + 90))
  [[ "$url" == "-" ]] && return 0
  until curl -fs -o /dev/null "$url" 2>/dev/null; do
    if ! alive "$name"; then log "$name exited; last lines of $LOGS/$name.log:"; tail -n 30 "$LOGS/$name.log"; return 1; fi
    if (( SECONDS > deadline )); then log "$name not ready after 90s (see $LOGS/$name.log)"; return 1; fi
    sleep 0.3
  done
}

start() {
  for entry in "${PROCESSES[@]}"; do
    IFS='|' read -r name module url <<<"$entry"
    if alive "$name"; then log "$name already running (pid $(cat "$PIDS/$name.pid"))"; continue; fi
    log "starting $name"
    nohup "$PY" -m "$module" >>"$LOGS/$name.log" 2>&1 &
    echo $! >"$PIDS/$name.pid"
  done
  for entry in "${PROCESSES[@]}"; do
    IFS='|' read -r name module url <<<"$entry"
    wait_ready "$name" "$url"
  done
  "$PY" "$ROOT/deploy/local/seed.py"
}

stop() {
  shopt -s nullglob
  local pidfile pid
  for pidfile in "$PIDS"/*.pid; do
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
      log "stopping $(basename "$pidfile" .pid) (pid $pid)"
      kill -TERM "$pid" 2>/dev/null || true
    fi
  done
  for pidfile in "$PIDS"/*.pid; do
    pid=$(cat "$pidfile")
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -0 "$pid" 2>/dev/null && { log "killing $pid"; kill -KILL "$pid" 2>/dev/null || true; }
    rm -f "$pidfile"
  done
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 [start|stop]" >&2; exit 2 ;;
esac

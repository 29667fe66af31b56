#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR/stack
# Local infrastructure for the shop: Kafka (KRaft, single node), PostgreSQL, Redis and the
# Zipkin trace viewer, as plain local processes (no Docker).
#
#   deploy/local/stack.sh up       start what is missing, reuse what already answers
#   deploy/local/stack.sh down     stop only what `up` started
#   deploy/local/stack.sh status   show what is up
#   deploy/local/stack.sh restart kafka|postgres|redis|zipkin   stop and start one part (chaos tests)
#
# See deploy/local/README.md for the environment variables.
set -euo pipefail

# Each part lives in deploy/local/stack/<part>.sh (common.sh: what they share). The parts are
# sourced into this one shell, not run, because they share the lock, the markers and `die`.
STACK_LIB="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/stack"
source "$STACK_LIB/common.sh"
source "$STACK_LIB/java.sh"
source "$STACK_LIB/kafka.sh"
source "$STACK_LIB/postgres.sh"
source "$STACK_LIB/redis.sh"
source "$STACK_LIB/zipkin.sh"

# ---------------------------------------------------------------------------- main

cmd_up() {
  with_lock
  ensure_gitignore
  local t0; t0=$(now)
  log "up: state in $STATE_DIR, cache in $SHOP_CACHE"
  pg_up
  redis_up
  kafka_up
  zipkin_up
  log "up: done in $(( $(now) - t0 ))s"
}

cmd_down() {
  with_lock
  zipkin_down
  kafka_down
  redis_down
  pg_down
  log "down: done"
}
cmd_restart() {
  # One part of the stack, stopped and started again (fault injection: tests/chaos).
  with_lock
  case "${1:-}" in
    kafka) kafka_down; kafka_up ;;
    postgres) pg_down; pg_up ;;
    redis) redis_down; redis_up ;;
    zipkin) zipkin_down; zipkin_up ;;
    *) echo "usage: $0 restart kafka|postgres|redis|zipkin" >&2; exit 2 ;;
  esac
  log "restart $1: done"
}

cmd_status() {
  kafka_status
  pg_status
  redis_status
  zipkin_status
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  restart) cmd_restart "${2:-}" ;;
  *) echo "usage: $0 up|down|status|restart kafka|postgres|redis|zipkin" >&2; exit 2 ;;
esac

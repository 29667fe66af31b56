# shellcheck shell=bash
# Redis: our own redis-server, no persistence.
# Sourced by deploy/local/stack.sh after common.sh; not run on its own.

REDIS_URL="${REDIS_URL:-redis://localhost:6379/0}"
REDIS_MAXMEMORY="${REDIS_MAXMEMORY:-256mb}"
REDIS_START_TIMEOUT="${REDIS_START_TIMEOUT:-30}"

REDIS_PIDFILE="$STATE_DIR/redis.pid"
REDIS_LOG="$LOG_DIR/redis.log"

parse_redis() {
  local rest="${REDIS_URL#*://}"
  rest="${rest%%/*}"; rest="${rest%%\?*}"
  rest="${rest##*@}"
  if [[ "$rest" =~ ^\[(.*)\]:([0-9]+)$ ]]; then REDIS_HOST="${BASH_REMATCH[1]}"; REDIS_PORT="${BASH_REMATCH[2]}"
  elif [[ "$rest" =~ ^\[(.*)\]$ ]]; then REDIS_HOST="${BASH_REMATCH[1]}"; REDIS_PORT=6379
  elif [[ "$rest" =~ ^(.*):([0-9]+)$ ]]; then REDIS_HOST="${BASH_REMATCH[1]}"; REDIS_PORT="${BASH_REMATCH[2]}"
  else REDIS_HOST="${rest:-localhost}"; REDIS_PORT=6379; fi
}

redis_ping() {
  if command -v redis-cli >/dev/null 2>&1; then
    [ "$(timeout 3 redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]
  else
    port_open "$REDIS_HOST" "$REDIS_PORT"
  fi
}

redis_install() {
  log "redis: redis-server not installed, installing Debian's redis-server"
  apt_install_unstarted redis-server
  # We run our own redis-server; make sure the distro's service is not the one on the port.
  $SUDO service redis-server stop >/dev/null 2>&1 9>&- || true
  local i
  for ((i = 0; i < 25; i++)); do port_open 127.0.0.1 "$REDIS_PORT" || break; sleep 0.2; done
}

redis_up() {
  parse_redis
  if ! is_local_host "$REDIS_HOST"; then
    log "redis: external ($REDIS_HOST:$REDIS_PORT), not managed here"
    return 0
  fi
  reuse_listening redis "$REDIS_PIDFILE" redis-server "$REDIS_HOST" "$REDIS_PORT" "$REDIS_HOST:$REDIS_PORT" && return 0
  marker_clear redis; rm -f "$REDIS_PIDFILE"

  local t0; t0=$(now)
  command -v redis-server >/dev/null 2>&1 || redis_install
  if port_open "$REDIS_HOST" "$REDIS_PORT"; then
    log "redis: something answers on $REDIS_HOST:$REDIS_PORT after install, reusing it (not ours)"
    return 0
  fi
  mkdir -p "$STATE_DIR/redis"
  log "redis: starting redis-server on 127.0.0.1:$REDIS_PORT (no persistence, maxmemory $REDIS_MAXMEMORY), log $REDIS_LOG"
  if ! redis-server --port "$REDIS_PORT" --bind 127.0.0.1 -::1 --save '' --appendonly no \
        --daemonize yes --pidfile "$REDIS_PIDFILE" --logfile "$REDIS_LOG" --dir "$STATE_DIR/redis" \
        --maxmemory "$REDIS_MAXMEMORY" --maxmemory-policy noeviction 9>&-; then
    show_log_tail "$REDIS_LOG"
    die "redis: redis-server failed to start"
  fi
  local deadline=$(( $(now) + REDIS_START_TIMEOUT ))
  until [ -s "$REDIS_PIDFILE" ] && redis_ping; do
    if [ "$(now)" -ge "$deadline" ]; then
      show_log_tail "$REDIS_LOG"
      die "redis: no PONG after ${REDIS_START_TIMEOUT}s"
    fi
    sleep 0.2
  done
  local pid; pid="$(cat "$REDIS_PIDFILE")"
  marker_set redis "pid=$pid port=$REDIS_PORT"
  log "redis: ready (pid $pid) in $(( $(now) - t0 ))s"
}

redis_down() {
  if ! marker_exists redis; then
    parse_redis
    if is_local_host "$REDIS_HOST" && port_open "$REDIS_HOST" "$REDIS_PORT"; then log "redis: running but not started by us, leaving it"; fi
    return 0
  fi
  stop_ours redis "$REDIS_PIDFILE" redis-server 20
}

redis_status() {
  parse_redis
  if ! is_local_host "$REDIS_HOST"; then
    if port_open "$REDIS_HOST" "$REDIS_PORT"; then echo "redis      external  $REDIS_HOST:$REDIS_PORT  up"; else echo "redis      external  $REDIS_HOST:$REDIS_PORT  NOT REACHABLE"; fi
    return 0
  fi
  if redis_ping; then
    status_up redis "$REDIS_PIDFILE" redis-server "$REDIS_HOST:$REDIS_PORT"
  else
    echo "redis      down      $REDIS_HOST:$REDIS_PORT"
  fi
}

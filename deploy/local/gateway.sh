#!/usr/bin/env bash
# The API gateway of the local stack: our own nginx master on port 8000 (GATEWAY_HTTP_PORT),
# configured from deploy/gateway/gateway.conf.template, with its config, pid and temp files
# under .local/gateway/ and its logs in .local/logs/. The distribution's nginx service is never
# started or touched.
#
#   deploy/local/gateway.sh install   install Debian's nginx and njs (libnginx-mod-http-js)
#                                     packages when either is missing
#   deploy/local/gateway.sh up        render the config; start nginx, or reload it when it runs
#                                     (restart it when JWT_SECRET changed)
#   deploy/local/gateway.sh down      stop our nginx (graceful, then KILL after 15 s)
#   deploy/local/gateway.sh status
#
# Environment: GATEWAY_HTTP_PORT (8000), GATEWAY_ISSUE_RATE (20r/s), GATEWAY_ISSUE_BURST (40),
# GATEWAY_<SERVICE>_UPSTREAM (127.0.0.1:<SERVICE>_HTTP_PORT), STATE_DIR (.local), and JWT_SECRET,
# the services' key, with which the gateway verifies tokens to key its limits on the user
# (default: the services' local default, local-dev-secret).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STATE_DIR="${STATE_DIR:-$ROOT/.local}"
GATEWAY_DIR="$STATE_DIR/gateway"
LOG_DIR="$STATE_DIR/logs"
PID_FILE="$GATEWAY_DIR/nginx.pid"
PORT="${GATEWAY_HTTP_PORT:-8000}"
START_TIMEOUT="${GATEWAY_START_TIMEOUT:-30}"

log() { printf '[gateway] %s\n' "$*"; }
die() { printf '[gateway] ERROR: %s\n' "$*" >&2; exit 1; }

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

nginx_bin() {
  command -v nginx 2>/dev/null || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; } || true
}

# The same places as deploy/gateway/render.py's NJS_MODULES.
njs_module() {
  local m
  for m in /usr/lib/nginx/modules/ngx_http_js_module.so /usr/share/nginx/modules/ngx_http_js_module.so \
    /etc/nginx/modules/ngx_http_js_module.so /usr/lib64/nginx/modules/ngx_http_js_module.so; do
    [ -f "$m" ] && { echo "$m"; return 0; }
  done
  true
}

install_nginx() {
  [ -n "$(nginx_bin)" ] && [ -n "$(njs_module)" ] && return 0
  command -v apt-get >/dev/null 2>&1 ||
    die "nginx or its njs module not found and no apt-get: install nginx and njs yourself"
  local packages=()
  [ -n "$(nginx_bin)" ] || packages+=(nginx)
  [ -n "$(njs_module)" ] || packages+=(libnginx-mod-http-js)
  log "installing Debian's ${packages[*]} package(s)"
  # Keep dpkg from starting the distribution's nginx service on port 80: we run our own master.
  local had_policy=1
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    had_policy=0
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
  fi
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    "${packages[@]}" >/dev/null
  [ "$had_policy" = 1 ] || $SUDO rm -f /usr/sbin/policy-rc.d
  [ -n "$(nginx_bin)" ] || die "nginx still missing after apt-get install"
  [ -n "$(njs_module)" ] || die "njs (ngx_http_js_module.so) still missing after apt-get install"
}

our_pid() {
  local pid
  [ -f "$PID_FILE" ] || return 1
  pid="$(cat "$PID_FILE")"
  [ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$GATEWAY_DIR/nginx.conf" || return 1
  echo "$pid"
}

port_taken() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT" 2>/dev/null; }

python_bin() {
  if [ -x "$ROOT/.venv/bin/python" ]; then echo "$ROOT/.venv/bin/python"; else command -v python3; fi
}

# Which JWT_SECRET our nginx was started with (a hash, never the key): its workers keep the
# master's environment across reloads, and nginx overwrites its own /proc/<pid>/environ.
SECRET_MARK="$GATEWAY_DIR/jwt-secret.sha256"
secret_mark() { printf '%s' "$JWT_SECRET" | sha256sum | cut -d' ' -f1; }

render() {
  "$(python_bin)" "$ROOT/deploy/gateway/render.py" --state-dir "$GATEWAY_DIR" --log-dir "$LOG_DIR" >/dev/null
}

nginx_cmd() {
  "$(nginx_bin)" -p "$GATEWAY_DIR" -e "$LOG_DIR/gateway-error.log" -c "$GATEWAY_DIR/nginx.conf" "$@"
}

wait_healthy() {
  local deadline=$((SECONDS + START_TIMEOUT))
  until curl -fsS -o /dev/null "http://127.0.0.1:$PORT/healthz"; do
    if ! our_pid >/dev/null; then
      tail -n 20 "$LOG_DIR/gateway-error.log" >&2 || true
      die "nginx exited (see $LOG_DIR/gateway-error.log)"
    fi
    (( SECONDS > deadline )) && die "not healthy after ${START_TIMEOUT}s (see $LOG_DIR/gateway-error.log)"
    sleep 0.2
  done
}

up() {
  install_nginx
  # The services' key and its local default (their Settings, `make token`).
  export JWT_SECRET="${JWT_SECRET:-local-dev-secret}"
  mkdir -p "$GATEWAY_DIR" "$LOG_DIR"
  render
  nginx_cmd -t -q || die "invalid configuration (see above)"
  local pid
  if pid="$(our_pid)" && [ "$(cat "$SECRET_MARK" 2>/dev/null)" != "$(secret_mark)" ]; then
    log "running (pid $pid) with another JWT_SECRET: restarting"
    down
  fi
  if pid="$(our_pid)"; then
    log "running (pid $pid): reloading the configuration"
    nginx_cmd -s reload
  else
    port_taken && die "port $PORT is taken by another process (set GATEWAY_HTTP_PORT)"
    log "starting nginx on port $PORT"
    nginx_cmd
    secret_mark >"$SECRET_MARK"
  fi
  wait_healthy
  log "ready: http://localhost:$PORT (access log $LOG_DIR/gateway-access.log)"
}

down() {
  local pid i
  if ! pid="$(our_pid)"; then
    log "not running"
    rm -f "$PID_FILE"
    return 0
  fi
  log "stopping nginx (pid $pid)"
  kill -QUIT "$pid" 2>/dev/null || true
  for ((i = 0; i < 75; i++)); do
    [ -d "/proc/$pid" ] || break
    sleep 0.2
  done
  if [ -d "/proc/$pid" ]; then
    log "still running after 15s: KILL"
    pkill -KILL -P "$pid" 2>/dev/null || true  # its workers, by parent pid
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$PID_FILE"
  log "stopped"
}

status() {
  local pid
  if pid="$(our_pid)"; then
    log "running (pid $pid) on http://localhost:$PORT"
  else
    log "not running"
    return 3
  fi
}

case "${1:-}" in
  install) install_nginx ;;
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 install|up|down|status" >&2; exit 2 ;;
esac

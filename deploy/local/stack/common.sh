# shellcheck shell=bash
# Shared by every part of the local stack: where its state lives, logging, process and port
# checks, markers of what `up` started, apt, and the lock that serialises up/down.
# Sourced first by deploy/local/stack.sh; not run on its own.

# deploy/local, found from this file's own place (not the caller's working directory): the
# Kafka part reads its config under it and the Kafka JVM is started with it.
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"

STATE_DIR="${STATE_DIR:-$REPO_ROOT/.local}"
SHOP_CACHE="${SHOP_CACHE:-${HOME:-/root}/.cache/shop}"
LOG_DIR="$STATE_DIR/logs"
MARKER_DIR="$STATE_DIR/markers"

log()  { printf '[stack] %s\n' "$*"; }
warn() { printf '[stack] WARNING: %s\n' "$*" >&2; }
die()  { printf '[stack] ERROR: %s\n' "$*" >&2; exit 1; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || die "not root and no sudo: cannot install or manage system packages"
  SUDO="sudo"
fi

now() { date +%s; }

# True when $1 names this machine (so we manage the service ourselves).
is_local_host() {
  local h="${1#[}"; h="${h%]}"
  case "$h" in
    ""|localhost|localhost.localdomain|::1|0.0.0.0|127.*|/*) return 0 ;;
  esac
  [ "$h" = "$(hostname 2>/dev/null || true)" ] && return 0
  return 1
}

# port_open HOST PORT: something accepts TCP connections there.
port_open() {
  local h="${1#[}"; h="${h%]}"
  case "$h" in ""|/*) h=localhost ;; esac
  timeout 2 bash -c "exec 3<>/dev/tcp/$h/$2" 2>/dev/null
}

# pid_alive PID [PATTERN]: process exists (and its command line contains PATTERN).
pid_alive() {
  local pid="$1" pat="${2:-}"
  [ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
  [ -z "$pat" ] && return 0
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$pat"
}

# stop_pid NAME PID PATTERN TIMEOUT: TERM, wait, then KILL.
stop_pid() {
  local name="$1" pid="$2" pat="$3" t="$4" i
  pid_alive "$pid" "$pat" || return 0
  log "$name: stopping pid $pid"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < t * 5; i++)); do
    pid_alive "$pid" "$pat" || { log "$name: stopped"; return 0; }
    sleep 0.2
  done
  warn "$name: pid $pid still alive after ${t}s, sending KILL"
  kill -KILL "$pid" 2>/dev/null || true
  sleep 0.5
}

# pidfile_pid FILE: the pid recorded in FILE ("" when there is none).
pidfile_pid() { cat "$1" 2>/dev/null || true; }

# reuse_listening NAME PIDFILE PATTERN HOST PORT WHERE: true, after saying whose it is, when
# something already accepts connections on HOST:PORT (WHERE: how the messages name the place).
reuse_listening() {
  local name="$1" pid; pid="$(pidfile_pid "$2")"
  port_open "$4" "$5" || return 1
  if marker_exists "$name" && pid_alive "$pid" "$3"; then
    log "$name: already running (ours, pid $pid) on $6"
  else
    log "$name: something already listens on $6, reusing it (not ours)"
  fi
}

# start_detached NAME PORT PIDFILE LOGFILE COMMAND...: COMMAND in the background, in a session of
# its own, without the lock's fd 9, its output in LOGFILE (the previous one kept as LOGFILE.1).
# The shell that starts it writes its own pid to PIDFILE and then becomes COMMAND (exec), so the
# pid file is COMMAND's. Sets PID and the marker of NAME; dies when no pid file appears in 5s.
start_detached() {
  local name="$1" port="$2" pidfile="$3" logfile="$4" i; shift 4
  [ -f "$logfile" ] && mv -f "$logfile" "$logfile.1"
  # shellcheck disable=SC2016
  setsid nohup bash -c 'echo $$ >"$1"; shift; exec "$@"' bash "$pidfile" "$@" \
    </dev/null >"$logfile" 2>&1 9>&- &
  for ((i = 0; i < 50; i++)); do [ -s "$pidfile" ] && break; sleep 0.1; done
  PID="$(pidfile_pid "$pidfile")"
  [ -n "$PID" ] || die "$name: did not start (no pid file)"
  marker_set "$name" "pid=$PID port=$port"
}

# status_up NAME PIDFILE PATTERN WHERE [DETAIL]: the status line of NAME answering on WHERE, ours
# (`up` started it and its process runs; DETAIL follows its pid) or not.
status_up() {
  local pid; pid="$(pidfile_pid "$2")"
  if marker_exists "$1" && pid_alive "$pid" "$3"; then
    printf '%-10s up        %s  ours, pid %s%s\n' "$1" "$4" "$pid" "${5:-}"
  else
    printf '%-10s up        %s  not ours\n' "$1" "$4"
  fi
}

# stop_ours NAME PIDFILE PATTERN TIMEOUT: stops the process `up` started (stop_pid), then forgets
# its pid file and marker.
stop_ours() {
  stop_pid "$1" "$(pidfile_pid "$2")" "$3" "$4"
  rm -f "$2"
  marker_clear "$1"
}

show_log_tail() {
  local f="$1"
  if [ -f "$f" ]; then
    printf '[stack] ---- last 40 lines of %s ----\n' "$f" >&2
    tail -n 40 "$f" >&2 || true
    printf '[stack] ----\n' >&2
  fi
}

marker_set()    { mkdir -p "$MARKER_DIR"; printf '%s\n' "$2" >"$MARKER_DIR/$1"; }
marker_get()    { cat "$MARKER_DIR/$1" 2>/dev/null || true; }
marker_exists() { [ -f "$MARKER_DIR/$1" ]; }
marker_clear()  { rm -f "$MARKER_DIR/$1"; }

APT_UPDATED=0
apt_install() {
  command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install $* yourself (or point the env vars at external services)"
  if [ "$APT_UPDATED" = 0 ]; then
    log "apt-get update"
    $SUDO apt-get update -qq
    APT_UPDATED=1
  fi
  log "apt-get install $*"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@" >/dev/null 9>&-
}

# apt_install_unstarted PACKAGE...: apt_install, with a policy-rc.d that keeps the packages from
# starting their services meanwhile (we start our own); a policy-rc.d already there is left alone.
apt_install_unstarted() {
  local had_policy=1
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    had_policy=0
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
  fi
  apt_install "$@"
  [ "$had_policy" = 1 ] || $SUDO rm -f /usr/sbin/policy-rc.d
}

# Serialises concurrent up/down. Every long-lived process we start gets `9>&-`: a daemon that
# inherited fd 9 would hold the lock for its whole life.
with_lock() {
  mkdir -p "$STATE_DIR" "$LOG_DIR" "$MARKER_DIR"
  exec 9>"$STATE_DIR/.stack.lock"
  if command -v flock >/dev/null 2>&1; then
    flock -w 300 9 || die "another stack.sh up/down has held $STATE_DIR/.stack.lock for 300s"
  fi
}

ensure_gitignore() {
  # Only for the default state dir inside the repo.
  [ "$STATE_DIR" = "$REPO_ROOT/.local" ] || return 0
  [ -d "$REPO_ROOT/.git" ] || [ -f "$REPO_ROOT/.git" ] || return 0
  local gi="$REPO_ROOT/.gitignore"
  if [ -f "$gi" ] && grep -qxE '/?\.local/?' "$gi"; then return 0; fi
  if [ -s "$gi" ] && [ -n "$(tail -c 1 "$gi")" ]; then printf '\n' >>"$gi"; fi
  printf '.local/\n' >>"$gi"
  log "added .local/ to .gitignore"
}

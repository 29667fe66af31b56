#!/usr/bin/env bash
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

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"

STATE_DIR="${STATE_DIR:-$REPO_ROOT/.local}"
SHOP_CACHE="${SHOP_CACHE:-${HOME:-/root}/.cache/shop}"
LOG_DIR="$STATE_DIR/logs"
MARKER_DIR="$STATE_DIR/markers"

KAFKA_VERSION="${KAFKA_VERSION:-4.0.1}"
KAFKA_BOOTSTRAP_SERVERS="${KAFKA_BOOTSTRAP_SERVERS:-localhost:9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms256m -Xmx1g}"
KAFKA_START_TIMEOUT="${KAFKA_START_TIMEOUT:-120}"

PGHOST="${PGHOST:-localhost}"
PGPORT="${PGPORT:-5432}"
SHOP_PG_USER="${SHOP_PG_USER:-shop}"
SHOP_PG_PASSWORD="${SHOP_PG_PASSWORD:-shop}"
SHOP_PG_DATABASES="${SHOP_PG_DATABASES:-shop_point shop_product shop_coupon shop_order shop_ranking}"
PG_START_TIMEOUT="${PG_START_TIMEOUT:-60}"

REDIS_URL="${REDIS_URL:-redis://localhost:6379/0}"
REDIS_MAXMEMORY="${REDIS_MAXMEMORY:-256mb}"
REDIS_START_TIMEOUT="${REDIS_START_TIMEOUT:-30}"

# Zipkin's server (one jar with its UI, from Maven Central): traces of `make run` and of the tests.
# ZIPKIN_ENABLED=false leaves it out.
ZIPKIN_ENABLED="${ZIPKIN_ENABLED:-true}"
ZIPKIN_VERSION="${ZIPKIN_VERSION:-3.5.1}"
ZIPKIN_PORT="${ZIPKIN_PORT:-9411}"
ZIPKIN_HEAP_OPTS="${ZIPKIN_HEAP_OPTS:--Xms64m -Xmx384m}"
ZIPKIN_MAX_SPANS="${ZIPKIN_MAX_SPANS:-50000}"
ZIPKIN_START_TIMEOUT="${ZIPKIN_START_TIMEOUT:-120}"

# ---------------------------------------------------------------------------- helpers

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

# ---------------------------------------------------------------------------- Kafka

# First entry of KAFKA_BOOTSTRAP_SERVERS -> KAFKA_HOST / KAFKA_PORT.
parse_kafka() {
  local first="${KAFKA_BOOTSTRAP_SERVERS%%,*}"
  first="${first#*://}"
  first="${first// /}"
  if [[ "$first" =~ ^\[(.*)\]:([0-9]+)$ ]]; then
    KAFKA_HOST="${BASH_REMATCH[1]}"; KAFKA_PORT="${BASH_REMATCH[2]}"
  elif [[ "$first" =~ ^(.*):([0-9]+)$ ]]; then
    KAFKA_HOST="${BASH_REMATCH[1]}"; KAFKA_PORT="${BASH_REMATCH[2]}"
  else
    KAFKA_HOST="$first"; KAFKA_PORT=9092
  fi
}

KAFKA_HOME="$SHOP_CACHE/kafka-$KAFKA_VERSION"
KAFKA_LIBS="$KAFKA_HOME/libs"
KAFKA_STATE="$STATE_DIR/kafka"
KAFKA_DATA="$STATE_DIR/kafka-data"
KAFKA_PIDFILE="$STATE_DIR/kafka.pid"
KAFKA_LOG="$LOG_DIR/kafka.log"
KAFKA_MAIN="kafka.Kafka"

java_bin() {
  if [ -n "${JAVA_HOME:-}" ] && [ -x "$JAVA_HOME/bin/java" ]; then echo "$JAVA_HOME/bin/java"; else echo java; fi
}

ensure_java() {
  JAVA="$(java_bin)"
  if ! command -v "$JAVA" >/dev/null 2>&1; then
    apt_install openjdk-17-jre-headless
    JAVA=java
  fi
  local major
  major="$("$JAVA" -XshowSettings:properties -version 2>&1 | awk -F'= ' '/java.specification.version/ {print $2}')"
  major="${major%%.*}"
  if [ -n "$major" ] && [ "$major" -lt 17 ] 2>/dev/null; then
    die "Kafka $KAFKA_VERSION needs Java 17+, $JAVA is Java $major (set JAVA_HOME)"
  fi
}

ensure_kafka_libs() {
  local pom="$SCRIPT_DIR/kafka/pom.xml" stamp="$KAFKA_HOME/.resolved" want
  want="$(sha256sum "$pom" | cut -d' ' -f1) $KAFKA_VERSION"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -f "$KAFKA_LIBS/kafka_2.13-$KAFKA_VERSION.jar" ]; then
    return 0
  fi
  command -v mvn >/dev/null 2>&1 || apt_install maven
  log "kafka: resolving Kafka $KAFKA_VERSION jars from Maven Central into $KAFKA_LIBS"
  local t0 tmp; t0=$(now)
  mkdir -p "$KAFKA_HOME"
  tmp="$(mktemp -d "$KAFKA_HOME/libs.tmp.XXXXXX")"
  if ! mvn -q -B -f "$pom" -Dkafka.version="$KAFKA_VERSION" \
        dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp" \
        >"$LOG_DIR/kafka-maven.log" 2>&1; then
    show_log_tail "$LOG_DIR/kafka-maven.log"
    rm -rf "$tmp"
    die "kafka: maven could not resolve org.apache.kafka:kafka_2.13:$KAFKA_VERSION"
  fi
  [ -f "$tmp/kafka_2.13-$KAFKA_VERSION.jar" ] || { rm -rf "$tmp"; die "kafka: kafka_2.13-$KAFKA_VERSION.jar missing after resolve"; }
  rm -rf "$KAFKA_LIBS"
  mv "$tmp" "$KAFKA_LIBS"
  printf '%s\n' "$want" >"$stamp"
  log "kafka: $(ls "$KAFKA_LIBS" | wc -l) jars resolved in $(( $(now) - t0 ))s"
}

kafka_java() {
  # shellcheck disable=SC2086
  "$JAVA" $KAFKA_HEAP_OPTS -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
    -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$SCRIPT_DIR/kafka/log4j2.properties" -Dkafka.logs.dir="$LOG_DIR" \
    ${KAFKA_OPTS:-} -cp "$KAFKA_LIBS/*" "$@"
}

# A real Kafka request (Metadata v1) with the Python stdlib: true when a broker answers with
# at least one broker in its metadata. Returns 2 when python3 is not available.
kafka_probe() {
  command -v python3 >/dev/null 2>&1 || return 2
  python3 - "$1" "$2" <<'PY'
import socket, struct, sys
host, port = sys.argv[1], int(sys.argv[2])
try:
    s = socket.create_connection((host, port), timeout=3)
    s.settimeout(5)
    cid = b"stack-probe"
    # header: api_key=3 (Metadata), api_version=1, correlation_id=42, client_id; body: topics=[] (none)
    body = struct.pack(">hhih", 3, 1, 42, len(cid)) + cid + struct.pack(">i", 0)
    s.sendall(struct.pack(">i", len(body)) + body)
    def read(n):
        buf = b""
        while len(buf) < n:
            chunk = s.recv(n - len(buf))
            if not chunk:
                raise EOFError
            buf += chunk
        return buf
    size, = struct.unpack(">i", read(4))
    data = read(size)
    corr, nbrokers = struct.unpack(">ii", data[:8])
    sys.exit(0 if corr == 42 and nbrokers >= 1 else 1)
except Exception:
    sys.exit(1)
PY
}

kafka_up() {
  parse_kafka
  if ! is_local_host "$KAFKA_HOST"; then
    log "kafka: external ($KAFKA_BOOTSTRAP_SERVERS), not managed here"
    return 0
  fi
  local pid; pid="$(cat "$KAFKA_PIDFILE" 2>/dev/null || true)"
  if port_open "$KAFKA_HOST" "$KAFKA_PORT"; then
    if marker_exists kafka && pid_alive "$pid" "$KAFKA_MAIN"; then
      log "kafka: already running (ours, pid $pid) on $KAFKA_HOST:$KAFKA_PORT"
    else
      log "kafka: something already listens on $KAFKA_HOST:$KAFKA_PORT, reusing it (not ours)"
    fi
    return 0
  fi
  if marker_exists kafka && pid_alive "$pid" "$KAFKA_MAIN"; then
    log "kafka: ours (pid $pid) is running but not answering yet; waiting"
    kafka_wait "$pid"
    return 0
  fi
  marker_clear kafka; rm -f "$KAFKA_PIDFILE"

  local t0; t0=$(now)
  ensure_java
  ensure_kafka_libs

  mkdir -p "$KAFKA_STATE" "$KAFKA_DATA"
  sed -e "s|@KAFKA_PORT@|$KAFKA_PORT|g" \
      -e "s|@KAFKA_CONTROLLER_PORT@|$KAFKA_CONTROLLER_PORT|g" \
      -e "s|@KAFKA_DATA_DIR@|$KAFKA_DATA|g" \
      "$SCRIPT_DIR/kafka/server.properties.template" >"$KAFKA_STATE/server.properties"

  if [ ! -f "$KAFKA_DATA/meta.properties" ]; then
    local cluster_id
    cluster_id="$(cat "$KAFKA_STATE/cluster-id" 2>/dev/null || true)"
    if [ -z "$cluster_id" ]; then
      cluster_id="$(kafka_java kafka.tools.StorageTool random-uuid 2>>"$LOG_DIR/kafka-format.log" | tail -n 1)"
      [ -n "$cluster_id" ] || { show_log_tail "$LOG_DIR/kafka-format.log"; die "kafka: could not generate a cluster id"; }
      printf '%s\n' "$cluster_id" >"$KAFKA_STATE/cluster-id"
    fi
    log "kafka: formatting $KAFKA_DATA (cluster id $cluster_id, standalone KRaft controller)"
    if ! kafka_java kafka.tools.StorageTool format --standalone --ignore-formatted \
          -t "$cluster_id" -c "$KAFKA_STATE/server.properties" >>"$LOG_DIR/kafka-format.log" 2>&1; then
      show_log_tail "$LOG_DIR/kafka-format.log"
      die "kafka: storage format failed"
    fi
  fi

  [ -f "$KAFKA_LOG" ] && mv -f "$KAFKA_LOG" "$KAFKA_LOG.1"
  log "kafka: starting Kafka $KAFKA_VERSION on $KAFKA_HOST:$KAFKA_PORT (controller :$KAFKA_CONTROLLER_PORT), log $KAFKA_LOG"
  # The inner shell records its own pid, then becomes the JVM (exec), so the pid file is the JVM's.
  export JAVA KAFKA_HEAP_OPTS KAFKA_LIBS KAFKA_PIDFILE LOG_DIR SCRIPT_DIR KAFKA_STATE
  export KAFKA_OPTS="${KAFKA_OPTS:-}"
  setsid nohup bash -c '
    echo $$ >"$KAFKA_PIDFILE"
    exec "$JAVA" $KAFKA_HEAP_OPTS -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
      -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
      -Dlog4j2.configurationFile="$SCRIPT_DIR/kafka/log4j2.properties" -Dkafka.logs.dir="$LOG_DIR" \
      $KAFKA_OPTS -cp "$KAFKA_LIBS/*" kafka.Kafka "$KAFKA_STATE/server.properties"
  ' </dev/null >"$KAFKA_LOG" 2>&1 9>&- &
  local i
  for ((i = 0; i < 50; i++)); do [ -s "$KAFKA_PIDFILE" ] && break; sleep 0.1; done
  pid="$(cat "$KAFKA_PIDFILE" 2>/dev/null || true)"
  [ -n "$pid" ] || die "kafka: did not start (no pid file)"
  marker_set kafka "pid=$pid port=$KAFKA_PORT"
  kafka_wait "$pid"
  log "kafka: ready (pid $pid) in $(( $(now) - t0 ))s"
}

kafka_wait() {
  local pid="$1" deadline=$(( $(now) + KAFKA_START_TIMEOUT )) rc
  while :; do
    if ! pid_alive "$pid"; then
      show_log_tail "$KAFKA_LOG"
      marker_clear kafka; rm -f "$KAFKA_PIDFILE"
      die "kafka: the broker exited during startup (see $KAFKA_LOG)"
    fi
    if grep -q "Kafka Server started" "$KAFKA_LOG" 2>/dev/null && port_open "$KAFKA_HOST" "$KAFKA_PORT"; then
      rc=0; kafka_probe "$KAFKA_HOST" "$KAFKA_PORT" || rc=$?
      [ "$rc" = 0 ] || [ "$rc" = 2 ] && return 0
    fi
    if [ "$(now)" -ge "$deadline" ]; then
      show_log_tail "$KAFKA_LOG"
      stop_pid kafka "$pid" "$KAFKA_MAIN" 30
      marker_clear kafka; rm -f "$KAFKA_PIDFILE"
      die "kafka: not healthy after ${KAFKA_START_TIMEOUT}s, stopped it (see $KAFKA_LOG)"
    fi
    sleep 0.5
  done
}

kafka_down() {
  if ! marker_exists kafka; then
    parse_kafka
    if is_local_host "$KAFKA_HOST" && port_open "$KAFKA_HOST" "$KAFKA_PORT"; then
      log "kafka: running but not started by us, leaving it"
    fi
    return 0
  fi
  local pid; pid="$(cat "$KAFKA_PIDFILE" 2>/dev/null || true)"
  # Controlled shutdown of a single node takes a few seconds.
  stop_pid kafka "$pid" "$KAFKA_MAIN" 60
  rm -f "$KAFKA_PIDFILE"
  marker_clear kafka
}

kafka_status() {
  parse_kafka
  if ! is_local_host "$KAFKA_HOST"; then
    if port_open "$KAFKA_HOST" "$KAFKA_PORT"; then echo "kafka      external  $KAFKA_BOOTSTRAP_SERVERS  up"
    else echo "kafka      external  $KAFKA_BOOTSTRAP_SERVERS  NOT REACHABLE"; fi
    return 0
  fi
  local pid; pid="$(cat "$KAFKA_PIDFILE" 2>/dev/null || true)"
  if port_open "$KAFKA_HOST" "$KAFKA_PORT"; then
    if marker_exists kafka && pid_alive "$pid" "$KAFKA_MAIN"; then
      echo "kafka      up        $KAFKA_HOST:$KAFKA_PORT  ours, pid $pid, Kafka $KAFKA_VERSION, log $KAFKA_LOG"
    else
      echo "kafka      up        $KAFKA_HOST:$KAFKA_PORT  not ours"
    fi
  elif marker_exists kafka && pid_alive "$pid" "$KAFKA_MAIN"; then
    echo "kafka      starting  $KAFKA_HOST:$KAFKA_PORT  ours, pid $pid"
  else
    echo "kafka      down      $KAFKA_HOST:$KAFKA_PORT"
  fi
}

# ---------------------------------------------------------------------------- PostgreSQL

# Runs a command as the postgres OS user, without any PG* variables that would redirect it.
as_postgres() {
  local clean=(env -u PGHOST -u PGHOSTADDR -u PGPORT -u PGUSER -u PGPASSWORD -u PGDATABASE -u PGSERVICE -u PGPASSFILE)
  if [ "$(id -u)" -eq 0 ] && command -v runuser >/dev/null 2>&1; then
    (cd / && runuser -u postgres -- "${clean[@]}" "$@")
  else
    (cd / && $SUDO -u postgres "${clean[@]}" "$@")
  fi
}

pg_server_installed() {
  command -v pg_ctlcluster >/dev/null 2>&1 && compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null
}

# Sets PG_VER / PG_NAME to the Debian cluster listening on PGPORT ("" if none).
pg_find_cluster() {
  PG_VER=""; PG_NAME=""
  command -v pg_lsclusters >/dev/null 2>&1 || return 0
  local line
  line="$(pg_lsclusters -h 2>/dev/null | awk -v p="$PGPORT" '$3 == p {print $1, $2; exit}')"
  if [ -n "$line" ]; then PG_VER="${line%% *}"; PG_NAME="${line#* }"; fi
}

pg_ready() {
  if command -v pg_isready >/dev/null 2>&1; then
    pg_isready -q -h "$PGHOST" -p "$PGPORT" -t 2 >/dev/null 2>&1
  else
    port_open "$PGHOST" "$PGPORT"
  fi
}

pg_install() {
  log "postgres: server not installed, installing Debian's postgresql"
  local had_policy=1
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    # Keep the package from starting its service: we start the cluster ourselves.
    had_policy=0
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
  fi
  apt_install postgresql
  [ "$had_policy" = 1 ] || $SUDO rm -f /usr/sbin/policy-rc.d
  # If the install started a cluster anyway, stop it: it is nobody's yet.
  local v n st
  while read -r v n _ st _; do
    if [ "$st" = online ]; then
      log "postgres: stopping cluster $v/$n started by the package install"
      $SUDO pg_ctlcluster "$v" "$n" stop || true
    fi
  done < <(pg_lsclusters -h 2>/dev/null || true)
}

pg_provision() {
  command -v psql >/dev/null 2>&1 || { warn "postgres: psql not found, cannot create role/databases"; return 1; }
  id postgres >/dev/null 2>&1 || { warn "postgres: no postgres OS user, cannot create role/databases"; return 1; }
  local pw_sql="${SHOP_PG_PASSWORD//\'/\'\'}" db sql
  sql="DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$SHOP_PG_USER') THEN
    CREATE ROLE \"$SHOP_PG_USER\" LOGIN CREATEDB PASSWORD '$pw_sql';
  ELSE
    ALTER ROLE \"$SHOP_PG_USER\" LOGIN CREATEDB PASSWORD '$pw_sql';
  END IF;
END \$\$;
"
  for db in $SHOP_PG_DATABASES; do
    sql+="SELECT 'CREATE DATABASE \"$db\" OWNER \"$SHOP_PG_USER\"' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$db')
\\gexec
"
  done
  if ! printf '%s' "$sql" | as_postgres psql -X -q -v ON_ERROR_STOP=1 -p "$PGPORT" -d postgres >/dev/null; then
    warn "postgres: could not create role/databases as the postgres OS user"
    return 1
  fi
  log "postgres: role $SHOP_PG_USER and databases ($SHOP_PG_DATABASES) are in place"
}

pg_check_login() {
  command -v psql >/dev/null 2>&1 || return 0
  local first="${SHOP_PG_DATABASES%% *}" err
  if ! err="$(PGPASSWORD="$SHOP_PG_PASSWORD" PGCONNECT_TIMEOUT=5 psql -X -q -h "$PGHOST" -p "$PGPORT" \
        -U "$SHOP_PG_USER" -d "$first" -tAc 'select 1' 2>&1)"; then
    die "postgres: password login as $SHOP_PG_USER@$PGHOST:$PGPORT/$first failed: $err"
  fi
  log "postgres: password login as $SHOP_PG_USER over TCP works"
}

pg_up() {
  if ! is_local_host "$PGHOST"; then
    log "postgres: external ($PGHOST:$PGPORT), not managed here"
    return 0
  fi
  local t0; t0=$(now)
  if pg_ready; then
    pg_find_cluster
    if marker_exists postgres; then
      log "postgres: already running (ours, cluster $(marker_get postgres)) on $PGHOST:$PGPORT"
    else
      log "postgres: something already answers on $PGHOST:$PGPORT, reusing it (not ours)"
    fi
    pg_provision || true
    pg_check_login
    return 0
  fi
  marker_clear postgres

  pg_server_installed || pg_install
  pg_find_cluster
  if [ -z "$PG_VER" ]; then
    local ver name=main
    ver="$(ls /usr/lib/postgresql | sort -V | tail -n 1)"
    if pg_lsclusters -h 2>/dev/null | awk '{print $1, $2}' | grep -qx "$ver main"; then name=shop; fi
    log "postgres: creating cluster $ver/$name on port $PGPORT"
    $SUDO pg_createcluster -p "$PGPORT" "$ver" "$name" >/dev/null 9>&-
    pg_find_cluster
    [ -n "$PG_VER" ] || die "postgres: pg_createcluster did not produce a cluster on port $PGPORT"
  fi

  local confd="/etc/postgresql/$PG_VER/$PG_NAME/conf.d" want
  want="# Written by deploy/local/stack.sh (local dev/test stack).
max_connections = 400
shared_buffers = 128MB
# loopback only: TLS would cost ~20% CPU per statement for nothing
ssl = off
"
  if [ "$(cat "$confd/shop.conf" 2>/dev/null || true)" != "${want%$'\n'}" ]; then
    $SUDO mkdir -p "$confd"
    printf '%s' "$want" | $SUDO tee "$confd/shop.conf" >/dev/null
    log "postgres: wrote $confd/shop.conf (max_connections=400, shared_buffers=128MB)"
  fi
  grep -qE "^[[:space:]]*include_dir[[:space:]]*=[[:space:]]*'conf.d'" "/etc/postgresql/$PG_VER/$PG_NAME/postgresql.conf" \
    || warn "postgres: postgresql.conf has no include_dir = 'conf.d'; shop.conf is not applied"

  local pglog="/var/log/postgresql/postgresql-$PG_VER-$PG_NAME.log"
  log "postgres: starting cluster $PG_VER/$PG_NAME on port $PGPORT, log $pglog"
  if ! $SUDO pg_ctlcluster "$PG_VER" "$PG_NAME" start 9>&-; then
    show_log_tail "$pglog"
    die "postgres: pg_ctlcluster $PG_VER $PG_NAME start failed"
  fi
  marker_set postgres "$PG_VER $PG_NAME"
  local deadline=$(( $(now) + PG_START_TIMEOUT ))
  until pg_ready; do
    if [ "$(now)" -ge "$deadline" ]; then
      show_log_tail "$pglog"
      die "postgres: not ready after ${PG_START_TIMEOUT}s"
    fi
    sleep 0.3
  done
  pg_provision || die "postgres: provisioning failed"
  pg_check_login
  log "postgres: ready (cluster $PG_VER/$PG_NAME) in $(( $(now) - t0 ))s"
}

pg_down() {
  if ! marker_exists postgres; then
    if is_local_host "$PGHOST" && pg_ready; then log "postgres: running but not started by us, leaving it"; fi
    return 0
  fi
  local ver name
  read -r ver name <<<"$(marker_get postgres)"
  if [ -n "$ver" ] && [ -n "$name" ]; then
    log "postgres: stopping cluster $ver/$name"
    $SUDO pg_ctlcluster "$ver" "$name" stop -m fast 2>/dev/null || \
      $SUDO pg_ctlcluster "$ver" "$name" stop -m immediate 2>/dev/null || true
    log "postgres: stopped"
  fi
  marker_clear postgres
}

pg_status() {
  if ! is_local_host "$PGHOST"; then
    if pg_ready; then echo "postgres   external  $PGHOST:$PGPORT  up"; else echo "postgres   external  $PGHOST:$PGPORT  NOT REACHABLE"; fi
    return 0
  fi
  if pg_ready; then
    if marker_exists postgres; then
      echo "postgres   up        $PGHOST:$PGPORT  ours, cluster $(marker_get postgres | tr ' ' '/'), user $SHOP_PG_USER"
    else
      echo "postgres   up        $PGHOST:$PGPORT  not ours"
    fi
  else
    echo "postgres   down      $PGHOST:$PGPORT"
  fi
}

# ---------------------------------------------------------------------------- Redis

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
  local had_policy=1
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    had_policy=0
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
  fi
  apt_install redis-server
  [ "$had_policy" = 1 ] || $SUDO rm -f /usr/sbin/policy-rc.d
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
  local pid; pid="$(cat "$REDIS_PIDFILE" 2>/dev/null || true)"
  if port_open "$REDIS_HOST" "$REDIS_PORT"; then
    if marker_exists redis && pid_alive "$pid" redis-server; then
      log "redis: already running (ours, pid $pid) on $REDIS_HOST:$REDIS_PORT"
    else
      log "redis: something already listens on $REDIS_HOST:$REDIS_PORT, reusing it (not ours)"
    fi
    return 0
  fi
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
  pid="$(cat "$REDIS_PIDFILE")"
  marker_set redis "pid=$pid port=$REDIS_PORT"
  log "redis: ready (pid $pid) in $(( $(now) - t0 ))s"
}

redis_down() {
  if ! marker_exists redis; then
    parse_redis
    if is_local_host "$REDIS_HOST" && port_open "$REDIS_HOST" "$REDIS_PORT"; then log "redis: running but not started by us, leaving it"; fi
    return 0
  fi
  local pid; pid="$(cat "$REDIS_PIDFILE" 2>/dev/null || true)"
  stop_pid redis "$pid" redis-server 20
  rm -f "$REDIS_PIDFILE"
  marker_clear redis
}

redis_status() {
  parse_redis
  if ! is_local_host "$REDIS_HOST"; then
    if port_open "$REDIS_HOST" "$REDIS_PORT"; then echo "redis      external  $REDIS_HOST:$REDIS_PORT  up"; else echo "redis      external  $REDIS_HOST:$REDIS_PORT  NOT REACHABLE"; fi
    return 0
  fi
  local pid; pid="$(cat "$REDIS_PIDFILE" 2>/dev/null || true)"
  if redis_ping; then
    if marker_exists redis && pid_alive "$pid" redis-server; then
      echo "redis      up        $REDIS_HOST:$REDIS_PORT  ours, pid $pid"
    else
      echo "redis      up        $REDIS_HOST:$REDIS_PORT  not ours"
    fi
  else
    echo "redis      down      $REDIS_HOST:$REDIS_PORT"
  fi
}

# ---------------------------------------------------------------------------- Zipkin

ZIPKIN_HOME="$SHOP_CACHE/zipkin-$ZIPKIN_VERSION"
ZIPKIN_JAR="$ZIPKIN_HOME/zipkin-server-$ZIPKIN_VERSION-exec.jar"
ZIPKIN_PIDFILE="$STATE_DIR/zipkin.pid"
ZIPKIN_LOG="$LOG_DIR/zipkin.log"

zipkin_healthy() {
  python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
    "http://127.0.0.1:$ZIPKIN_PORT/health" >/dev/null 2>&1
}

ensure_zipkin_jar() {
  [ -s "$ZIPKIN_JAR" ] && return 0
  command -v mvn >/dev/null 2>&1 || apt_install maven
  log "zipkin: fetching io.zipkin:zipkin-server:$ZIPKIN_VERSION:exec from Maven Central into $ZIPKIN_HOME"
  local tmp; mkdir -p "$ZIPKIN_HOME"; tmp="$(mktemp -d "$ZIPKIN_HOME/tmp.XXXXXX")"
  if ! mvn -q -B dependency:copy -Dartifact="io.zipkin:zipkin-server:$ZIPKIN_VERSION:jar:exec" \
        -DoutputDirectory="$tmp" >"$LOG_DIR/zipkin-maven.log" 2>&1; then
    show_log_tail "$LOG_DIR/zipkin-maven.log"
    rm -rf "$tmp"
    die "zipkin: maven could not fetch io.zipkin:zipkin-server:$ZIPKIN_VERSION (ZIPKIN_ENABLED=false skips it)"
  fi
  mv "$tmp/zipkin-server-$ZIPKIN_VERSION-exec.jar" "$ZIPKIN_JAR"
  rm -rf "$tmp"
}

zipkin_up() {
  [ "$ZIPKIN_ENABLED" = true ] || { log "zipkin: ZIPKIN_ENABLED=$ZIPKIN_ENABLED, not started"; return 0; }
  local pid; pid="$(cat "$ZIPKIN_PIDFILE" 2>/dev/null || true)"
  if port_open 127.0.0.1 "$ZIPKIN_PORT"; then
    if marker_exists zipkin && pid_alive "$pid" zipkin-server; then
      log "zipkin: already running (ours, pid $pid) on :$ZIPKIN_PORT"
    else
      log "zipkin: something already listens on :$ZIPKIN_PORT, reusing it (not ours)"
    fi
    return 0
  fi
  marker_clear zipkin; rm -f "$ZIPKIN_PIDFILE"
  local t0; t0=$(now)
  ensure_java
  ensure_zipkin_jar
  [ -f "$ZIPKIN_LOG" ] && mv -f "$ZIPKIN_LOG" "$ZIPKIN_LOG.1"
  log "zipkin: starting Zipkin $ZIPKIN_VERSION on 127.0.0.1:$ZIPKIN_PORT (in memory, UI /zipkin/), log $ZIPKIN_LOG"
  export JAVA ZIPKIN_HEAP_OPTS ZIPKIN_JAR ZIPKIN_PIDFILE
  # Serial GC and the C1 compiler: a small, mostly idle JVM that should not compete for the cores.
  STORAGE_TYPE=mem MEM_MAX_SPANS="$ZIPKIN_MAX_SPANS" QUERY_PORT="$ZIPKIN_PORT" \
  setsid nohup bash -c '
    echo $$ >"$ZIPKIN_PIDFILE"
    exec "$JAVA" $ZIPKIN_HEAP_OPTS -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
      -jar "$ZIPKIN_JAR" --armeria.ports[0].ip=127.0.0.1 --armeria.ports[0].port="$QUERY_PORT" \
      --armeria.ports[0].protocols=http
  ' </dev/null >"$ZIPKIN_LOG" 2>&1 9>&- &
  local i
  for ((i = 0; i < 50; i++)); do [ -s "$ZIPKIN_PIDFILE" ] && break; sleep 0.1; done
  pid="$(cat "$ZIPKIN_PIDFILE" 2>/dev/null || true)"
  [ -n "$pid" ] || die "zipkin: did not start (no pid file)"
  marker_set zipkin "pid=$pid port=$ZIPKIN_PORT"
  local deadline=$(( $(now) + ZIPKIN_START_TIMEOUT ))
  until zipkin_healthy; do
    if ! pid_alive "$pid"; then
      show_log_tail "$ZIPKIN_LOG"; marker_clear zipkin; rm -f "$ZIPKIN_PIDFILE"
      die "zipkin: the server exited during startup (see $ZIPKIN_LOG; ZIPKIN_ENABLED=false skips it)"
    fi
    if [ "$(now)" -ge "$deadline" ]; then
      show_log_tail "$ZIPKIN_LOG"; stop_pid zipkin "$pid" zipkin-server 20
      marker_clear zipkin; rm -f "$ZIPKIN_PIDFILE"
      die "zipkin: not healthy after ${ZIPKIN_START_TIMEOUT}s, stopped it (see $ZIPKIN_LOG)"
    fi
    sleep 0.5
  done
  log "zipkin: ready (pid $pid) in $(( $(now) - t0 ))s: http://localhost:$ZIPKIN_PORT/zipkin/"
}

zipkin_down() {
  if ! marker_exists zipkin; then
    if port_open 127.0.0.1 "$ZIPKIN_PORT"; then log "zipkin: running but not started by us, leaving it"; fi
    return 0
  fi
  local pid; pid="$(cat "$ZIPKIN_PIDFILE" 2>/dev/null || true)"
  stop_pid zipkin "$pid" zipkin-server 20
  rm -f "$ZIPKIN_PIDFILE"
  marker_clear zipkin
}

zipkin_status() {
  local pid; pid="$(cat "$ZIPKIN_PIDFILE" 2>/dev/null || true)"
  if zipkin_healthy; then
    if marker_exists zipkin && pid_alive "$pid" zipkin-server; then
      echo "zipkin     up        localhost:$ZIPKIN_PORT  ours, pid $pid, UI http://localhost:$ZIPKIN_PORT/zipkin/"
    else
      echo "zipkin     up        localhost:$ZIPKIN_PORT  not ours"
    fi
  elif [ "$ZIPKIN_ENABLED" != true ]; then
    echo "zipkin     off       ZIPKIN_ENABLED=$ZIPKIN_ENABLED"
  else
    echo "zipkin     down      localhost:$ZIPKIN_PORT"
  fi
}

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

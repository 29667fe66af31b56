# shellcheck shell=bash
# Zipkin: the trace viewer.
# Sourced by deploy/local/stack.sh after common.sh; not run on its own.

# Zipkin's server (one jar with its UI, from Maven Central): traces of `make run` and of the tests.
# ZIPKIN_ENABLED=false leaves it out.
ZIPKIN_ENABLED="${ZIPKIN_ENABLED:-true}"
ZIPKIN_VERSION="${ZIPKIN_VERSION:-3.5.1}"
ZIPKIN_PORT="${ZIPKIN_PORT:-9411}"
ZIPKIN_HEAP_OPTS="${ZIPKIN_HEAP_OPTS:--Xms64m -Xmx384m}"
ZIPKIN_MAX_SPANS="${ZIPKIN_MAX_SPANS:-50000}"
ZIPKIN_START_TIMEOUT="${ZIPKIN_START_TIMEOUT:-120}"

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
  reuse_listening zipkin "$ZIPKIN_PIDFILE" zipkin-server 127.0.0.1 "$ZIPKIN_PORT" ":$ZIPKIN_PORT" && return 0
  marker_clear zipkin; rm -f "$ZIPKIN_PIDFILE"
  local t0; t0=$(now)
  ensure_java
  ensure_zipkin_jar
  log "zipkin: starting Zipkin $ZIPKIN_VERSION on 127.0.0.1:$ZIPKIN_PORT (in memory, UI /zipkin/), log $ZIPKIN_LOG"
  # Serial GC and the C1 compiler: a small, mostly idle JVM that should not compete for the cores.
  # shellcheck disable=SC2086
  start_detached zipkin "$ZIPKIN_PORT" "$ZIPKIN_PIDFILE" "$ZIPKIN_LOG" \
    env STORAGE_TYPE=mem MEM_MAX_SPANS="$ZIPKIN_MAX_SPANS" QUERY_PORT="$ZIPKIN_PORT" \
    "$JAVA" $ZIPKIN_HEAP_OPTS -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
    -jar "$ZIPKIN_JAR" '--armeria.ports[0].ip=127.0.0.1' "--armeria.ports[0].port=$ZIPKIN_PORT" \
    '--armeria.ports[0].protocols=http'
  local pid="$PID" deadline=$(( $(now) + ZIPKIN_START_TIMEOUT ))
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
  stop_ours zipkin "$ZIPKIN_PIDFILE" zipkin-server 20
}

zipkin_status() {
  if zipkin_healthy; then
    status_up zipkin "$ZIPKIN_PIDFILE" zipkin-server "localhost:$ZIPKIN_PORT" ", UI http://localhost:$ZIPKIN_PORT/zipkin/"
  elif [ "$ZIPKIN_ENABLED" != true ]; then
    echo "zipkin     off       ZIPKIN_ENABLED=$ZIPKIN_ENABLED"
  else
    echo "zipkin     down      localhost:$ZIPKIN_PORT"
  fi
}

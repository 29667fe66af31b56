# shellcheck shell=bash
# Kafka: a single KRaft node (broker + controller), its jars resolved from Maven Central.
# Sourced by deploy/local/stack.sh after common.sh; not run on its own.

KAFKA_VERSION="${KAFKA_VERSION:-4.0.1}"
KAFKA_BOOTSTRAP_SERVERS="${KAFKA_BOOTSTRAP_SERVERS:-localhost:9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms256m -Xmx1g}"
KAFKA_START_TIMEOUT="${KAFKA_START_TIMEOUT:-120}"

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

# Sets KAFKA_JVM: the JVM of the broker and of Kafka's tools, with its options and class path, to
# be followed by the main class and its arguments. After ensure_java.
kafka_jvm() {
  # shellcheck disable=SC2206  # the *_OPTS are lists of options
  KAFKA_JVM=("$JAVA" $KAFKA_HEAP_OPTS -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35
    -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true
    -Dlog4j2.configurationFile="$SCRIPT_DIR/kafka/log4j2.properties" -Dkafka.logs.dir="$LOG_DIR"
    ${KAFKA_OPTS:-} -cp "$KAFKA_LIBS/*")
}

kafka_java() { kafka_jvm; "${KAFKA_JVM[@]}" "$@"; }

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
  reuse_listening kafka "$KAFKA_PIDFILE" "$KAFKA_MAIN" "$KAFKA_HOST" "$KAFKA_PORT" "$KAFKA_HOST:$KAFKA_PORT" && return 0
  local pid; pid="$(pidfile_pid "$KAFKA_PIDFILE")"
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

  log "kafka: starting Kafka $KAFKA_VERSION on $KAFKA_HOST:$KAFKA_PORT (controller :$KAFKA_CONTROLLER_PORT), log $KAFKA_LOG"
  kafka_jvm
  start_detached kafka "$KAFKA_PORT" "$KAFKA_PIDFILE" "$KAFKA_LOG" \
    "${KAFKA_JVM[@]}" "$KAFKA_MAIN" "$KAFKA_STATE/server.properties"
  pid="$PID"
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
  # Controlled shutdown of a single node takes a few seconds.
  stop_ours kafka "$KAFKA_PIDFILE" "$KAFKA_MAIN" 60
}

kafka_status() {
  parse_kafka
  if ! is_local_host "$KAFKA_HOST"; then
    if port_open "$KAFKA_HOST" "$KAFKA_PORT"; then echo "kafka      external  $KAFKA_BOOTSTRAP_SERVERS  up"
    else echo "kafka      external  $KAFKA_BOOTSTRAP_SERVERS  NOT REACHABLE"; fi
    return 0
  fi
  local pid; pid="$(pidfile_pid "$KAFKA_PIDFILE")"
  if port_open "$KAFKA_HOST" "$KAFKA_PORT"; then
    status_up kafka "$KAFKA_PIDFILE" "$KAFKA_MAIN" "$KAFKA_HOST:$KAFKA_PORT" ", Kafka $KAFKA_VERSION, log $KAFKA_LOG"
  elif marker_exists kafka && pid_alive "$pid" "$KAFKA_MAIN"; then
    echo "kafka      starting  $KAFKA_HOST:$KAFKA_PORT  ours, pid $pid"
  else
    echo "kafka      down      $KAFKA_HOST:$KAFKA_PORT"
  fi
}

# shellcheck shell=bash
# The JVM that Kafka and Zipkin run on (Java 17+, Debian's when there is none).
# Sourced by deploy/local/stack.sh after common.sh; not run on its own.

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

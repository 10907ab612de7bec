#!/usr/bin/env bash
# A single Apache Cassandra 5.0 node on 127.0.0.1:9042 for the `cql://` store's tests and
# for local runs, from Maven Central jars: nothing to install but Java 17 and Maven.
#
#   scripts/cassandra.sh start    fetch (first time), configure, start, wait until CQL answers
#   scripts/cassandra.sh stop     stop the node started here (SIGTERM, SIGKILL after 60 s)
#   scripts/cassandra.sh status   say whether it runs and answers
#
# Environment:
#   CASSANDRA_DIR      state: jars, config, data, commitlog, logs (/var/tmp/chat-cassandra)
#   CASSANDRA_VERSION  5.0.x from Maven Central (5.0.9)
#   CASSANDRA_HEAP     JVM heap, -Xms = -Xmx (1g)
#   CASSANDRA_WAIT     seconds `start` waits for CQL (240)
#
# Data survives stop/start (the outage test relies on it); `rm -rf "$CASSANDRA_DIR/state"`
# forgets everything.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
DIR="${CASSANDRA_DIR:-/var/tmp/chat-cassandra}"
VERSION="${CASSANDRA_VERSION:-5.0.9}"
HEAP="${CASSANDRA_HEAP:-1g}"
WAIT="${CASSANDRA_WAIT:-240}"
HOST=127.0.0.1
PORT=9042
LIB="$DIR/lib-$VERSION"
STATE="$DIR/state"
PIDFILE="$DIR/cassandra.pid"
LOG="$DIR/cassandra.out"

say() { echo "cassandra.sh: $*" >&2; }

# A Java 17 runtime (Cassandra 5.0 runs on 11 or 17): JAVA_HOME, then `java`, then the
# Debian location; installs OpenJDK 17 with apt-get as a last resort when root.
find_java() {
  local c
  for c in "${JAVA_HOME:+$JAVA_HOME/bin/java}" "$(command -v java || true)" \
    /usr/lib/jvm/java-17-openjdk-amd64/bin/java /usr/lib/jvm/java-17-openjdk-arm64/bin/java; do
    [ -n "$c" ] && [ -x "$c" ] || continue
    if "$c" -version 2>&1 | grep -q 'version "17\.'; then
      echo "$c"
      return 0
    fi
  done
  return 1
}

ensure_tools() {
  if ! JAVA="$(find_java)" || ! command -v mvn >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      say "installing OpenJDK 17 and Maven with apt-get"
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless maven >/dev/null
    fi
    JAVA="$(find_java)" || { say "Java 17 not found (set JAVA_HOME)"; exit 1; }
    command -v mvn >/dev/null 2>&1 || { say "mvn not found"; exit 1; }
  fi
}

# cassandra-all and its runtime dependencies, once per version, into $LIB.
fetch() {
  if [ -f "$LIB/.complete" ]; then
    return 0
  fi
  say "fetching org.apache.cassandra:cassandra-all:$VERSION and its dependencies into $LIB"
  rm -rf "$LIB.tmp"
  mvn -q -B -f "$HERE/cassandra/pom.xml" \
    -Dcassandra.version="$VERSION" \
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$LIB.tmp"
  rm -rf "$LIB"
  mv "$LIB.tmp" "$LIB"
  touch "$LIB/.complete"
}

configure() {
  mkdir -p "$STATE"/{data,commitlog,saved_caches,hints,cdc_raw} "$DIR/conf" "$DIR/logs"
  sed "s#@DIR@#$STATE#g" "$HERE/cassandra/cassandra.yaml.in" >"$DIR/conf/cassandra.yaml"
  cp "$HERE/cassandra/logback.xml" "$DIR/conf/logback.xml"
}

running_pid() {
  local pid
  [ -f "$PIDFILE" ] || return 1
  pid="$(cat "$PIDFILE")"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  echo "$pid"
}

# One CQL request on the native port: an OPTIONS frame (protocol v4, stream 0) must come
# back as SUPPORTED (opcode 0x06). The native transport opens last during startup, so an
# answer means the node serves queries.
cql_answers() {
  local reply
  reply="$(timeout 5 bash -c "
    exec 3<>/dev/tcp/$HOST/$PORT || exit 1
    printf '\x04\x00\x00\x00\x05\x00\x00\x00\x00' >&3
    head -c 5 <&3 | od -An -tx1
  " 2>/dev/null)" || return 1
  [ "$(echo "$reply" | tr -d ' \n')" = "8400000006" ]
}

wait_ready() {
  local pid="$1" start=$SECONDS
  while ! cql_answers; do
    if ! kill -0 "$pid" 2>/dev/null; then
      say "Cassandra exited during startup; last lines of $LOG and $DIR/logs/system.log:"
      tail -n 30 "$LOG" >&2 || true
      tail -n 30 "$DIR/logs/system.log" >&2 || true
      rm -f "$PIDFILE"
      return 1
    fi
    if [ $((SECONDS - start)) -ge "$WAIT" ]; then
      say "no CQL answer on $HOST:$PORT after ${WAIT}s; see $DIR/logs/system.log"
      return 1
    fi
    sleep 1
  done
  say "Cassandra $VERSION answers CQL on $HOST:$PORT (pid $pid, ready after $((SECONDS - start))s)"
}

start() {
  local pid
  if pid="$(running_pid)"; then
    wait_ready "$pid"
    return
  fi
  if cql_answers; then
    say "something else already answers CQL on $HOST:$PORT; using it"
    return 0
  fi
  ensure_tools
  fetch
  configure
  # The JVM options of Cassandra's conf/jvm-server.options and conf/jvm17-server.options
  # that matter on Java 17: G1, and opening the JDK internals Cassandra reaches into.
  local opts=(
    -ea -Xss256k "-Xms$HEAP" "-Xmx$HEAP" -XX:+HeapDumpOnOutOfMemoryError
    -XX:HeapDumpPath="$DIR/logs" -XX:+UseG1GC -XX:+ParallelRefProcEnabled
    -XX:MaxTenuringThreshold=1 -XX:G1HeapRegionSize=16m -XX:MaxGCPauseMillis=300
    -XX:+UseTLAB -XX:+ResizeTLAB -XX:+PerfDisableSharedMem -XX:+AlwaysPreTouch
    -XX:MaxDirectMemorySize=512m
    "-javaagent:$LIB/jamm-0.4.0.jar"
    -Djdk.attach.allowAttachSelf=true
    --add-exports java.base/jdk.internal.misc=ALL-UNNAMED
    --add-exports java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED
    --add-exports java.rmi/sun.rmi.registry=ALL-UNNAMED
    --add-exports java.rmi/sun.rmi.server=ALL-UNNAMED
    --add-exports java.sql/java.sql=ALL-UNNAMED
    --add-exports java.base/java.lang.ref=ALL-UNNAMED
    --add-exports jdk.unsupported/sun.misc=ALL-UNNAMED
    --add-exports jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED
    --add-exports jdk.attach/sun.tools.attach=ALL-UNNAMED
    --add-opens java.base/java.lang.module=ALL-UNNAMED
    --add-opens java.base/jdk.internal.loader=ALL-UNNAMED
    --add-opens java.base/jdk.internal.ref=ALL-UNNAMED
    --add-opens java.base/jdk.internal.reflect=ALL-UNNAMED
    --add-opens java.base/jdk.internal.math=ALL-UNNAMED
    --add-opens java.base/jdk.internal.module=ALL-UNNAMED
    --add-opens java.base/jdk.internal.util.jar=ALL-UNNAMED
    --add-opens jdk.management/com.sun.management.internal=ALL-UNNAMED
    --add-opens java.base/sun.nio.ch=ALL-UNNAMED
    --add-opens java.base/java.io=ALL-UNNAMED
    --add-opens java.base/java.lang.reflect=ALL-UNNAMED
    --add-opens jdk.compiler/com.sun.tools.javac=ALL-UNNAMED
    --add-opens java.base/java.lang=ALL-UNNAMED
    --add-opens java.base/java.util=ALL-UNNAMED
    -Dio.netty.tryReflectionSetAccessible=true
    -Dio.netty.allocator.useCacheForAllThreads=true
    -Dio.netty.allocator.maxOrder=11
    "-Dcassandra.config=file://$DIR/conf/cassandra.yaml"
    "-Dlogback.configurationFile=file://$DIR/conf/logback.xml"
    "-Dcassandra.logdir=$DIR/logs"
    "-Dcassandra.storagedir=$STATE"
    -Dcassandra-foreground=yes
    # One node: no gossip to wait for, no ring delay.
    -Dcassandra.skip_wait_for_gossip_to_settle=0
    -Dcassandra.ring_delay_ms=1000
  )
  say "starting Cassandra $VERSION (heap $HEAP, state in $STATE, log $DIR/logs/system.log)"
  # setsid: the node is not in the caller's process group, so a test runner that ends its
  # group does not take the node with it.
  setsid "$JAVA" "${opts[@]}" -cp "$DIR/conf:$LIB/*" \
    org.apache.cassandra.service.CassandraDaemon >"$LOG" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$PIDFILE"
  wait_ready "$pid"
}

stop() {
  local pid i
  if ! pid="$(running_pid)"; then
    say "not running"
    rm -f "$PIDFILE"
    return 0
  fi
  kill -TERM "$pid"
  for i in $(seq 1 60); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 1
  done
  if kill -0 "$pid" 2>/dev/null; then
    say "still running after 60 s; SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
  fi
  rm -f "$PIDFILE"
  say "stopped (pid $pid)"
}

status() {
  local pid
  if pid="$(running_pid)"; then
    if cql_answers; then
      echo "running (pid $pid), CQL answers on $HOST:$PORT"
    else
      echo "running (pid $pid), CQL not answering yet on $HOST:$PORT"
    fi
  elif cql_answers; then
    echo "not started here, but CQL answers on $HOST:$PORT"
  else
    echo "stopped"
    return 3
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *)
    echo "usage: $0 {start|stop|status}" >&2
    exit 2
    ;;
esac

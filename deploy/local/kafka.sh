#!/usr/bin/env bash
# Real Apache Kafka 4.1 (KRaft, single node) on loopback, from Maven Central jars.
# usage: deploy/local/kafka.sh start|stop|status
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

KAFKA_PORT="${FLEET_KAFKA_PORT:-19092}"
CONTROLLER_PORT="${FLEET_KAFKA_CONTROLLER_PORT:-19093}"
KAFKA_HOME="$FLEET_HOME/kafka"
LIBS="$KAFKA_HOME/libs"
DATA="$KAFKA_HOME/data-$KAFKA_PORT"
CONF="$KAFKA_HOME/server-$KAFKA_PORT.properties"
PIDFILE="$FLEET_RUN_DIR/kafka-$KAFKA_PORT.pid"
LOG="$FLEET_LOG_DIR/kafka-$KAFKA_PORT.log"

install_jars() {
  [[ -f "$LIBS/.complete" ]] && return 0
  command -v java >/dev/null || die "Java is missing: install a JDK 17+ (Debian: apt-get install openjdk-17-jre-headless)"
  command -v mvn >/dev/null || die "Maven is missing: install it (Debian: apt-get install maven)"
  say "fetching Kafka jars from Maven Central into $LIBS (once)"
  rm -rf "$LIBS"; mkdir -p "$LIBS"
  mvn -q -B -f "$REPO_ROOT/deploy/local/pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$LIBS" -DincludeScope=runtime >"$FLEET_LOG_DIR/kafka-maven.log" 2>&1 \
    || { tail -n 30 "$FLEET_LOG_DIR/kafka-maven.log" >&2; die "Maven could not fetch the Kafka jars (log: $FLEET_LOG_DIR/kafka-maven.log)"; }
  touch "$LIBS/.complete"
}

write_config() {
  mkdir -p "$KAFKA_HOME"
  cat >"$CONF" <<CONF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$DATA
num.partitions=4
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
delete.topic.enable=true
CONF
  cat >"$KAFKA_HOME/log4j2.properties" <<'CONF'
rootLogger.level=WARN
rootLogger.appenderRef.stdout.ref=STDOUT
appender.stdout.type=Console
appender.stdout.name=STDOUT
appender.stdout.layout.type=PatternLayout
appender.stdout.layout.pattern=[%d] %p %m (%c)%n
logger.kafka.name=kafka.server.KafkaRaftServer
logger.kafka.level=INFO
CONF
}

start() {
  if pid_alive "$PIDFILE" && port_open "$KAFKA_PORT"; then
    say "Kafka already running on 127.0.0.1:$KAFKA_PORT (pid $(cat "$PIDFILE"))"; return 0
  fi
  port_open "$KAFKA_PORT" && die "port $KAFKA_PORT is taken by another process; set FLEET_KAFKA_PORT"
  install_jars
  write_config
  local java_opts=(-Xms256m -Xmx1g -Dlog4j2.configurationFile="$KAFKA_HOME/log4j2.properties")
  if [[ ! -f "$DATA/meta.properties" ]]; then
    local cluster_id
    cluster_id="$(java -cp "$LIBS/*" "${java_opts[@]}" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)"
    java -cp "$LIBS/*" "${java_opts[@]}" kafka.tools.StorageTool format -t "$cluster_id" -c "$CONF" >>"$LOG" 2>&1 \
      || { tail -n 20 "$LOG" >&2; die "formatting Kafka storage failed (log: $LOG)"; }
  fi
  say "starting Kafka on 127.0.0.1:$KAFKA_PORT (log: $LOG)"
  nohup java -cp "$LIBS/*" "${java_opts[@]}" kafka.Kafka "$CONF" >>"$LOG" 2>&1 &
  echo $! >"$PIDFILE"
  wait_for_port Kafka "$KAFKA_PORT" "${FLEET_KAFKA_START_TIMEOUT:-60}" "$PIDFILE" "$LOG"
  say "Kafka ready on 127.0.0.1:$KAFKA_PORT"
}

case "${1:-}" in
  start) start ;;
  stop) stop_pidfile Kafka "$PIDFILE" ;;
  status) if pid_alive "$PIDFILE" && port_open "$KAFKA_PORT"; then echo "running 127.0.0.1:$KAFKA_PORT"; else echo "stopped"; exit 1; fi ;;
  *) die "usage: $0 start|stop|status" ;;
esac

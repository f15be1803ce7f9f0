# Shared by kafka.sh (one broker) and kafka-cluster.sh (three): the jars, the log
# configuration, formatting a node's storage and launching it (sourced after common.sh).

KAFKA_HOME="$FLEET_HOME/kafka"
LIBS="$KAFKA_HOME/libs"
KAFKA_LOG4J="$KAFKA_HOME/log4j2.properties"
KAFKA_JAVA_OPTS=(-Xms256m -Xmx1g -Dlog4j2.configurationFile="$KAFKA_LOG4J")

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

kafka_java() { # kafka_java CLASS ARGS...: a Kafka tool or the broker itself, in the foreground
  java -cp "$LIBS/*" "${KAFKA_JAVA_OPTS[@]}" "$@"
}

write_log4j() {
  mkdir -p "$KAFKA_HOME"
  cat >"$KAFKA_LOG4J" <<'CONF'
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

# The settings every local broker shares; the caller's heredoc adds its node's own.
KAFKA_COMMON_CONFIG="controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
num.partitions=4
auto.create.topics.enable=false
offsets.topic.num.partitions=8
group.initial.rebalance.delay.ms=0
delete.topic.enable=true"

format_storage() { # format_storage CONF DATA LOG CLUSTER_ID: once per data directory
  local conf=$1 data=$2 log=$3 cluster_id=$4
  [[ -f "$data/meta.properties" ]] && return 0
  kafka_java kafka.tools.StorageTool format -t "$cluster_id" -c "$conf" >>"$log" 2>&1 \
    || { tail -n 20 "$log" >&2; die "formatting Kafka storage failed (log: $log)"; }
}

new_cluster_id() { # what `StorageTool random-uuid` prints, without starting a JVM (2 s each):
  # 16 random bytes in URL-safe base64, unpadded; Kafka's own never starts with '-' either.
  local id=""
  until [[ -n "$id" && "$id" != -* ]]; do
    id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')"
  done
  echo "$id"
}

launch_broker() { # launch_broker NAME CONF PIDFILE LOG PORT [HOST]: in the background, until it listens
  local name=$1 conf=$2 pidfile=$3 log=$4 port=$5 host=${6:-127.0.0.1}
  say "starting $name on $host:$port (log: $log)"
  nohup java -cp "$LIBS/*" "${KAFKA_JAVA_OPTS[@]}" kafka.Kafka "$conf" >>"$log" 2>&1 &
  echo $! >"$pidfile"
  wait_for_port "$name" "$port" "${FLEET_KAFKA_START_TIMEOUT:-60}" "$pidfile" "$log" "$host"
}

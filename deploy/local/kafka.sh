#!/usr/bin/env bash
# Real Apache Kafka 4.1 (KRaft, single node) on loopback, from Maven Central jars.
# Listeners: PLAINTEXT on FLEET_KAFKA_PORT (19092); SASL_SSL (PLAIN, SCRAM-SHA-256/512) on
# FLEET_KAFKA_SASL_PORT (port + 2) and SSL with client certificates on FLEET_KAFKA_SSL_PORT
# (port + 3), with a local CA, certificates and a SASL user made here once (kafka-tls.sh);
# what a client needs to use them is written to $FLEET_HOME/kafka/listeners-<port>.json.
# An empty FLEET_KAFKA_SASL_PORT leaves the secured listeners out. FLEET_KAFKA_HOST (127.0.0.1)
# is the address the PLAINTEXT listener binds and advertises: one other hosts can reach, for
# workers elsewhere (the controller and the secured listeners, whose certificate names only
# 127.0.0.1 and localhost, stay on loopback).
# usage: deploy/local/kafka.sh start|stop|status
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
source "$here/common.sh"
source "$here/kafka-common.sh"

KAFKA_PORT="${FLEET_KAFKA_PORT:-19092}"
KAFKA_HOST="${FLEET_KAFKA_HOST:-127.0.0.1}"
CONTROLLER_PORT="${FLEET_KAFKA_CONTROLLER_PORT:-19093}"
SASL_PORT="${FLEET_KAFKA_SASL_PORT-$((KAFKA_PORT + 2))}"
SSL_PORT="${FLEET_KAFKA_SSL_PORT-$((KAFKA_PORT + 3))}"
DATA="$KAFKA_HOME/data-$KAFKA_PORT"
CONF="$KAFKA_HOME/server-$KAFKA_PORT.properties"
PIDFILE="$FLEET_RUN_DIR/kafka-$KAFKA_PORT.pid"
LOG="$FLEET_LOG_DIR/kafka-$KAFKA_PORT.log"
LISTENERS_JSON="$KAFKA_HOME/listeners-$KAFKA_PORT.json"

write_config() {
  local listeners="PLAINTEXT://$KAFKA_HOST:$KAFKA_PORT"
  local protocols="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
  local secured=""
  if [[ -n "$SASL_PORT" ]]; then
    listeners+=",SASL_SSL://127.0.0.1:$SASL_PORT,SSL://127.0.0.1:$SSL_PORT"
    protocols+=",SASL_SSL:SASL_SSL,SSL:SSL"
    secured="$(tls_broker_config)"
  fi
  cat >"$CONF" <<CONF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CONTROLLER_PORT
listeners=$listeners,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=$listeners
listener.security.protocol.map=$protocols
log.dirs=$DATA
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
$KAFKA_COMMON_CONFIG
$secured
CONF
}

start() {
  if pid_alive "$PIDFILE" && port_open "$KAFKA_PORT" "$KAFKA_HOST"; then
    say "Kafka already running on $KAFKA_HOST:$KAFKA_PORT (pid $(cat "$PIDFILE"))"
  else
    port_open "$KAFKA_PORT" "$KAFKA_HOST" && die "port $KAFKA_PORT is taken by another process; set FLEET_KAFKA_PORT"
    install_jars
    write_log4j
    [[ -n "$SASL_PORT" ]] && make_tls
    write_config
    format_storage "$CONF" "$DATA" "$LOG" "$(new_cluster_id)"
    launch_broker Kafka "$CONF" "$PIDFILE" "$LOG" "$KAFKA_PORT" "$KAFKA_HOST"
    say "Kafka ready on $KAFKA_HOST:$KAFKA_PORT${SASL_PORT:+ (SASL_SSL $SASL_PORT, SSL $SSL_PORT)}"
  fi
  if [[ -n "$SASL_PORT" ]]; then
    add_scram_user "$KAFKA_HOST:$KAFKA_PORT" "$DATA" "$LOG"
    write_listeners_json "$LISTENERS_JSON" "127.0.0.1:$SASL_PORT" "127.0.0.1:$SSL_PORT"
  fi
}

source "$here/kafka-tls.sh"
case "${1:-}" in
  start) start ;;
  stop) stop_pidfile Kafka "$PIDFILE" ;;
  status) if pid_alive "$PIDFILE" && port_open "$KAFKA_PORT" "$KAFKA_HOST"; then echo "running $KAFKA_HOST:$KAFKA_PORT"; else echo "stopped"; exit 1; fi ;;
  *) die "usage: $0 start|stop|status" ;;
esac

#!/usr/bin/env bash
# Start, stop or show the local Kafka, Redis and PostgreSQL (pgvector) together.
# usage: deploy/local/services.sh start|stop|status
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
action="${1:-}"
case "$action" in
  start|stop) bash "$here/kafka.sh" "$action"; bash "$here/redis.sh" "$action"; bash "$here/postgres.sh" "$action" ;;
  status)
    rc=0
    k="$(bash "$here/kafka.sh" status)" || rc=1
    r="$(bash "$here/redis.sh" status)" || rc=1
    p="$(bash "$here/postgres.sh" status)" || rc=1
    echo "kafka: $k"; echo "redis: $r"; echo "postgres: $p"; exit $rc ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac

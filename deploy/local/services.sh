#!/usr/bin/env bash
# Start, stop or show the local services. `start` starts Kafka and Redis, which every worker
# needs; PostgreSQL (pgvector) and the Redis Cluster only when named (`start postgres`,
# `start redis-cluster`), or as the tests that use them do. `stop` stops all of them.
# usage: deploy/local/services.sh start [kafka redis postgres redis-cluster] | stop | status
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
action="${1:-}"
case "$action" in
  start)
    shift
    services=("$@"); (( ${#services[@]} )) || services=(kafka redis)
    for service in "${services[@]}"; do
      case "$service" in
        kafka|redis|postgres|redis-cluster) bash "$here/$service.sh" start ;;
        *) echo "unknown service $service: expected kafka, redis, postgres or redis-cluster" >&2; exit 2 ;;
      esac
    done ;;
  stop) for service in kafka redis postgres redis-cluster; do bash "$here/$service.sh" stop; done ;;
  status)
    # Kafka and Redis decide the exit code; PostgreSQL and the cluster run only when needed.
    rc=0
    k="$(bash "$here/kafka.sh" status)" || rc=1
    r="$(bash "$here/redis.sh" status)" || rc=1
    p="$(bash "$here/postgres.sh" status)" || true
    c="$(bash "$here/redis-cluster.sh" status)" || true
    echo "kafka: $k"; echo "redis: $r"; echo "postgres: $p"; echo "redis-cluster: $c"; exit $rc ;;
  *) echo "usage: $0 start [kafka redis postgres redis-cluster] | stop | status" >&2; exit 2 ;;
esac

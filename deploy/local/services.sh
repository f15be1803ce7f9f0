#!/usr/bin/env bash
# Start, stop or show the local services. `start` starts Kafka and Redis, which every worker
# needs; PostgreSQL (pgvector) only when named: `start postgres`, or as the pgvector tests do.
# usage: deploy/local/services.sh start [kafka redis postgres] | stop | status
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
action="${1:-}"
case "$action" in
  start)
    shift
    services=("$@"); (( ${#services[@]} )) || services=(kafka redis)
    for service in "${services[@]}"; do
      case "$service" in
        kafka|redis|postgres) bash "$here/$service.sh" start ;;
        *) echo "unknown service $service: expected kafka, redis or postgres" >&2; exit 2 ;;
      esac
    done ;;
  stop) for service in kafka redis postgres; do bash "$here/$service.sh" stop; done ;;
  status)
    # Kafka and Redis decide the exit code; PostgreSQL runs only when something needs it.
    rc=0
    k="$(bash "$here/kafka.sh" status)" || rc=1
    r="$(bash "$here/redis.sh" status)" || rc=1
    p="$(bash "$here/postgres.sh" status)" || true
    echo "kafka: $k"; echo "redis: $r"; echo "postgres: $p"; exit $rc ;;
  *) echo "usage: $0 start [kafka redis postgres] | stop | status" >&2; exit 2 ;;
esac

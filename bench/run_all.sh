#!/usr/bin/env bash
# Run every benchmark case (each with its baseline in the same run), then regenerate
# docs/benchmarks.md and docs/img/*.png. The round-trip cases run REPEAT times (default 3),
# so the report shows each number's median and min-max. About 15 minutes on a 2-core machine.
# usage: [REPEAT=N] [WORKERS=1,2,4] bash bench/run_all.sh [--quick]
#   --quick: smaller counts and one run of each, for trying it out
#   WORKERS: the worker processes of the scaling case (1,2,4,8,16 on a 16-core machine)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [[ ! -x .venv/bin/python ]]; then
  echo "no .venv: run deploy/setup.sh (or bash deploy/test.sh) first" >&2; exit 1
fi
.venv/bin/python -c "import celery, taskiq, taskiq_redis, matplotlib" 2>/dev/null \
  || bash deploy/setup.sh bench  # the locked bench extra, beside what is installed
bash deploy/local/services.sh start
py=.venv/bin/python
scale=1; sentences=50000; prose=10000; requests=300; repeat="${REPEAT:-3}"; workers="${WORKERS:-1,2,4}"
if [[ "${1:-}" == "--quick" ]]; then scale=0.2; sentences=3000; prose=1200; requests=100; repeat=1; fi
timeout $((300 * repeat)) "$py" -m bench.roundtrip --scale "$scale" --repeat "$repeat"
timeout $((300 * repeat)) "$py" -m bench.peers --scale "$scale" --repeat "$repeat"
timeout $((600 * repeat)) "$py" -m bench.scaling --scale "$scale" --repeat "$repeat" \
  --workers "$workers"
timeout 900 "$py" -m bench.embed_corpus --sentences "$prose"
timeout 1500 "$py" -m bench.batch_jobs --rows "$sentences"
timeout 900 "$py" -m bench.lanes --scale "$scale"
timeout $((300 * repeat)) "$py" -m bench.ttfc --requests "$requests" --repeat "$repeat"
timeout 600 "$py" -m bench.memory
timeout $((300 * repeat)) "$py" -m bench.connections --scale "$scale" --repeat "$repeat"
timeout $((600 * repeat)) "$py" -m bench.gateway_overhead --requests "$requests" --repeat "$repeat"
"$py" -m bench.report

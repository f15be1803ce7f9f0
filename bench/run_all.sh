#!/usr/bin/env bash
# Run every benchmark case (each with its baseline in the same run), then regenerate
# docs/benchmarks.md and docs/img/*.png. About 10-12 minutes on a 2-core machine.
# usage: bash bench/run_all.sh [--quick]   (--quick: smaller counts, for trying it out)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [[ ! -x .venv/bin/python ]]; then
  echo "no .venv: run deploy/setup.sh (or bash deploy/test.sh) first" >&2; exit 1
fi
.venv/bin/python -c "import celery, taskiq, taskiq_redis, matplotlib" 2>/dev/null \
  || .venv/bin/pip install -q -e '.[bench]'
bash deploy/local/services.sh start
py=.venv/bin/python
scale=1; sentences=50000; prose=10000; requests=300
if [[ "${1:-}" == "--quick" ]]; then scale=0.2; sentences=3000; prose=1200; requests=100; fi
timeout 300 "$py" -m bench.roundtrip --scale "$scale"
timeout 300 "$py" -m bench.peers --scale "$scale"
timeout 900 "$py" -m bench.embed_corpus --sentences "$prose"
timeout 1500 "$py" -m bench.batch_jobs --rows "$sentences"
timeout 900 "$py" -m bench.lanes --scale "$scale"
timeout 300 "$py" -m bench.ttfc --requests "$requests"
timeout 600 "$py" -m bench.memory
timeout 300 "$py" -m bench.connections --scale "$scale"
"$py" -m bench.report

#!/usr/bin/env bash
# Quick start 2: set everything up, then lint, type-check and run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "== ruff";   .venv/bin/ruff check src testing tests bench
echo "== mypy";   .venv/bin/mypy
# Serially: on 2 cores, two xdist workers (-n 2 --dist loadfile) starve the real-time tests
# (camera simulator, recorder) into flaky failures. The one exception is the `soak` tests:
# they wait on the wall clock for minutes at a few % of a core, so with no arguments they run
# in a second pytest beside the rest (their output follows the main run's).
if [ "$#" -gt 0 ]; then
  echo "== pytest"; exec .venv/bin/pytest --durations=25 "$@"
fi
mkdir -p artifacts
soak_log=artifacts/pytest-soak.log
echo "== pytest (soak tests beside the rest; output in $soak_log, shown at the end)"
.venv/bin/pytest -m soak -p no:cacheprovider --durations=5 >"$soak_log" 2>&1 &
soak_pid=$!
main_rc=0
.venv/bin/pytest -m "not soak" --durations=25 || main_rc=$?
soak_rc=0
wait "$soak_pid" || soak_rc=$?
echo "== pytest soak (exit $soak_rc)"
cat "$soak_log"
if [ "$main_rc" -ne 0 ]; then exit "$main_rc"; fi
exit "$soak_rc"

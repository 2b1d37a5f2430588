#!/usr/bin/env bash
# Quick start 2: set everything up, then lint, type-check and run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "== ruff";   .venv/bin/ruff check src testing tests bench
# Serially: on 2 cores, two xdist workers (-n 2 --dist loadfile) starve the real-time tests
# (camera simulator, recorder) into flaky failures. The exceptions are the tests that mostly wait:
# `soak` (minutes of wall clock at a few % of a core) and `beside` (timers, servers and cameras at
# under 0.6 of a core): with no arguments they run in a second process beside the rest, after mypy
# (their output follows the main run's).
if [ "$#" -gt 0 ]; then
  echo "== mypy"; .venv/bin/mypy
  echo "== pytest"; exec .venv/bin/pytest --durations=25 "$@"
fi
mkdir -p artifacts
beside_log=artifacts/pytest-beside.log
echo "== mypy, then the soak and beside tests, in a second process (output in $beside_log, shown at the end)"
(
  rc=0
  echo "== mypy"
  .venv/bin/mypy || rc=$?
  echo "== pytest soak and beside"
  .venv/bin/pytest -m "soak or beside" -p no:cacheprovider --durations=10 || rc=$?
  exit "$rc"
) >"$beside_log" 2>&1 &
beside_pid=$!
main_rc=0
.venv/bin/pytest -m "not soak and not beside" --durations=25 || main_rc=$?
beside_rc=0
wait "$beside_pid" || beside_rc=$?
echo "== mypy and pytest soak and beside (exit $beside_rc)"
cat "$beside_log"
if [ "$main_rc" -ne 0 ]; then exit "$main_rc"; fi
exit "$beside_rc"

#!/usr/bin/env bash
# Quick start 2: set everything up, then lint, type-check and run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "== ruff";   .venv/bin/ruff check src testing tests bench
echo "== mypy";   .venv/bin/mypy
# serially: on 2 cores, two xdist workers (-n 2 --dist loadfile) take ~10 instead of ~16 minutes
# but starve the real-time tests (camera simulator, recorder) into flaky failures
echo "== pytest"; exec .venv/bin/pytest --durations=25 "$@"

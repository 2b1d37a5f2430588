#!/usr/bin/env bash
# Quick start 2: set everything up, then lint, type-check and run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "== ruff";   .venv/bin/ruff check src testing tests bench
echo "== mypy";   .venv/bin/mypy
# two workers, whole files each (module-scoped nodes stay in one process); -n 0 runs serially
echo "== pytest"; exec .venv/bin/pytest -n 2 --dist loadfile --durations=25 "$@"

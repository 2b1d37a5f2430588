#!/usr/bin/env bash
# Quick start 1: set everything up, then run camfleet on its embedded default.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/camfleet run "$@"

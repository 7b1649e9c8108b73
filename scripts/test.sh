#!/usr/bin/env bash
# Sets up what is missing, checks formatting and lint, then runs the test suite: `scripts/test.sh [pytest args...]`.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/scripts/setup.sh" --cluster  # the cluster tests run too: Ray, submitit, the team tracking server
cd "$root"
.venv/bin/ruff format --check .
.venv/bin/ruff check .
exec .venv/bin/python -m pytest "$@"

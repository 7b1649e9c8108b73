#!/usr/bin/env bash
# Sets up what is missing, then runs one experiment: `scripts/run.sh [hydra overrides...]`.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/scripts/setup.sh"
exec "$root/.venv/bin/python" -m softmax_exp "$@"

#!/usr/bin/env bash
# Regenerates every published result from nothing: runs the named experiments (conf/experiment/, the teacher
# first) into a store of their own, then writes docs/results.md and docs/figures/ from the stored runs.
#   scripts/results.sh                    # full scale (see docs/results.md for how long it took)
#   scripts/results.sh --quick --out DIR  # fewer epochs, images and seeds, into DIR: a few minutes
# Options: python -m softmax_exp.results --help.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/scripts/setup.sh"
exec "$root/.venv/bin/python" -m softmax_exp.results "$@"

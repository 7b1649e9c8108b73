#!/usr/bin/env bash
# Sets up what is missing, checks formatting and lint, then runs the test suite: `scripts/test.sh [pytest args...]`.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/scripts/setup.sh" --cluster  # the cluster tests run too: Ray, submitit, the team tracking server
# The browser test drives Debian's chromium (Playwright's own browser download needs the network).
if [ ! -x /usr/bin/chromium ]; then
    echo "test: installing chromium (Debian), for tests/test_browser.py"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
cd "$root"
.venv/bin/ruff format --check .
.venv/bin/ruff check .
exec .venv/bin/python -m pytest "$@"

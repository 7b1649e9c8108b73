#!/usr/bin/env bash
# Sets up what is missing, checks formatting and lint, then runs the tests:
#   scripts/test.sh                  the full suite, as CI runs it (.ci/run): about 4-5 minutes on 2 cores
#   scripts/test.sh --fast           the everyday lane, the tests marked `fast`, at most 90 s on 2 cores: the
#                                    config, the losses and labels (noise, smoothing, a teacher), the thread rule,
#                                    training (lock-step equals alone, scratch equals torch), one CLI run and one
#                                    small vectorized sweep
#   scripts/test.sh -m load          the team server's load tests at full size (eight students of five jobs at
#                                    once, against PostgreSQL and SQLite); the full suite runs them smaller
#   scripts/test.sh [--fast] ARGS    any pytest arguments, e.g. tests/test_train.py -k lockstep
# A new test runs in the full suite; mark it `@pytest.mark.fast` too only if it is cheap and everyday work
# must have it. Any `-m` replaces the default one, which leaves out the `load` tests (pyproject.toml).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# The full suite in two worker processes (pytest-xdist): most of its time is other processes waiting (servers,
# clusters, CLIs starting), so two share the 2 cores well; work stealing evens out the long tests at the end.
lane=(-n 2 --dist worksteal)
if [ "${1:-}" = "--fast" ]; then
    lane=(-m fast)
    shift
fi
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
exec .venv/bin/python -m pytest "${lane[@]}" "$@"

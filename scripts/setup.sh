#!/usr/bin/env bash
# Installs what is missing, and nothing else: Debian's Fashion-MNIST, then a virtualenv (.venv) holding
# the project and its dependencies. Safe to run again; sourced by scripts/run.sh and scripts/test.sh.
# `setup.sh --cluster` adds the `cluster` extra (Ray, submitit, MLflow's accounts, PostgreSQL's driver) and
# Debian's PostgreSQL, for sweeps beyond one machine and the team tracking server (scripts/test.sh uses it).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
extras="dev"
[ "${1:-}" != "--cluster" ] || extras="dev,cluster"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

need_apt=()
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || need_apt+=(dataset-fashion-mnist)
python3 -c "import ensurepip, venv" 2>/dev/null || need_apt+=(python3-venv)
if [ "$extras" = "dev,cluster" ] && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    need_apt+=(postgresql)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "setup: installing ${need_apt[*]} (Debian)"
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# Reinstall only when pyproject.toml changed since the last install, or more extras are asked for (torch
# alone is ~6 GB: do it once). The stamp holds the extras installed.
stamp="$root/.venv/.installed"
if [ ! -f "$stamp" ] || [ "$root/pyproject.toml" -nt "$stamp" ] || ! grep -qx "$extras\|dev,cluster" "$stamp"; then
    echo "setup: creating $root/.venv with torch, hydra, mlflow (a few minutes the first time)"
    python3 -m venv "$root/.venv"
    "$root/.venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
    # compat: the checkout itself goes on sys.path, so that Hydra's plugin scan finds our launcher in
    # hydra_plugins/ (setuptools' default editable mode hides namespace packages from pkgutil).
    "$root/.venv/bin/python" -m pip install -q --disable-pip-version-check -e "$root[$extras]" \
        --config-settings editable_mode=compat
    echo "$extras" >"$stamp"
fi

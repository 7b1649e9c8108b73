"""MLflow's usage telemetry: off unless tracking.telemetry=true, in the suite's own processes."""

import subprocess
import sys

from softmax_exp.schema import PROJECT_ROOT

from .conftest import compose_config

# One process for every check: each one's cost is importing softmax_exp and MLflow.
CHECKS = """
import softmax_exp.main, mlflow
from pathlib import Path
from mlflow.telemetry import get_telemetry_client as client
mlflow.set_tracking_uri("sqlite:///{home}/m.db")
print(client() is None, (Path("{home}") / "mlflow" / "telemetry.json").exists(), flush=True)
from softmax_exp import telemetry
telemetry.apply(True)
print(client() is None)
telemetry.apply(False)
print(client() is None)
"""


def python(code: str, home) -> subprocess.CompletedProcess:
    """Python in a clean environment: MLflow turns telemetry off by itself under pytest and in CI (it looks
    for PYTEST_CURRENT_TEST, CI and the like), which would hide what the suite does for a student's run."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "XDG_CONFIG_HOME": str(home), "PYTHONPATH": str(PROJECT_ROOT)}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


def test_telemetry_is_off_by_default_writes_no_installation_id_and_the_setting_turns_it_on(tmp_path):
    result = python(CHECKS.format(home=tmp_path), tmp_path)
    by_default, *switched = result.stdout.splitlines() or [""]
    assert by_default == "True False", result.stderr  # no telemetry client, and no installation id written
    assert result.returncode == 0, result.stderr
    assert switched == ["False", "True"]  # tracking.telemetry=true turns it on, false off again
    assert compose_config().tracking.telemetry is False

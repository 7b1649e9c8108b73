"""MLflow's usage telemetry: off unless tracking.telemetry=true, in the suite's own processes."""

import subprocess
import sys

from softmax_exp.config import PROJECT_ROOT

from .conftest import compose_config

CLIENT = "from mlflow.telemetry import get_telemetry_client as client; "


def python(code: str, home) -> list[str]:
    """Python in a clean environment: MLflow turns telemetry off by itself under pytest and in CI (it looks
    for PYTEST_CURRENT_TEST, CI and the like), which would hide what the suite does for a student's run."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "XDG_CONFIG_HOME": str(home), "PYTHONPATH": str(PROJECT_ROOT)}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_telemetry_is_off_by_default_and_the_setting_turns_it_on(tmp_path):
    assert compose_config().tracking.telemetry is False
    code = "import softmax_exp.main; from softmax_exp import telemetry; " + CLIENT
    code += "print(client() is None); telemetry.apply(True); print(client() is None); "
    code += "telemetry.apply(False); print(client() is None)"
    assert python(code, tmp_path) == ["True", "False", "True"]


def test_with_telemetry_off_mlflow_writes_no_installation_id(tmp_path):
    python("import softmax_exp.main, mlflow; mlflow.set_tracking_uri('sqlite:///" + f"{tmp_path}/m.db')", tmp_path)
    assert not (tmp_path / "mlflow" / "telemetry.json").exists()

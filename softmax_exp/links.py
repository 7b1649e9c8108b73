"""Where to look: the address of a run, or of a sweep's runs, in MLflow's UI, printed as each one ends.

MLflow 3's UI opens an experiment on its GenAI overview (traces), a page this suite never fills;
`workflowType=machine_learning` opens the runs view instead. A local store has no UI running, so its
line also gives the one command that serves it. No address or command shows a password.
"""

import shlex
import sys
from pathlib import Path
from urllib.parse import urlsplit

from softmax_exp import store, telemetry

LOCAL_UI = "http://127.0.0.1:5000"  # where `mlflow ui` serves by default
RUNS_VIEW = "workflowType=machine_learning"
JOB_RUNNER_OFF = "MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false"  # `mlflow ui` is `mlflow server`: the same switch


def page(uri: str, experiment_id: str, run_id: str | None = None) -> str:
    """A run's page, or with no run the experiment's runs view, on the server or the local UI."""
    server = urlsplit(uri)
    if server.scheme in ("http", "https"):
        base = f"{server.scheme}://{server.hostname}{f':{server.port}' if server.port else ''}{server.path}"
    else:
        base = LOCAL_UI
    route = f"#/experiments/{experiment_id}/runs" + (f"/{run_id}" if run_id else "")
    return f"{base.rstrip('/')}/{route}?{RUNS_VIEW}"


def ui_command(uri: str) -> str:
    """`mlflow ui` over the store, from this environment, with telemetry as this process has it, and without
    MLflow's job runner (GenAI evaluation jobs: seven more processes, ~2 GB), which serves nothing this suite logs."""
    mlflow = Path(sys.executable).with_name("mlflow")
    program = shlex.quote(str(mlflow)) if mlflow.exists() else "mlflow"
    switches = [JOB_RUNNER_OFF] + ([] if telemetry.enabled() else [f"{telemetry.SWITCH}=true"])
    return f"{' '.join(switches)} {program} ui --backend-store-uri {shlex.quote(store.redacted(uri))}"


def where_to_look(uri: str, experiment_id: str, run_id: str | None = None) -> str:
    url = page(uri, experiment_id, run_id)
    if urlsplit(uri).scheme in ("http", "https"):
        return url
    return f"{url} once the UI runs: {ui_command(uri)}"

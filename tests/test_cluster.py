"""Sweeps that leave the launching process: on a Ray cluster the test starts, and through submitit.

Each job finds its sweep's parent run in the store (softmax_exp/nesting.py), not through the launching
process's environment, which Ray workers do not inherit: they inherit that of `ray start`.
"""

import importlib.util
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from softmax_exp.config import PROJECT_ROOT
from softmax_exp.tracking import SWEEP_TAG

from .conftest import run_cli
from .test_tracking import free_port, runs_of

pytestmark = pytest.mark.cluster

QUICK = ("epochs=1", "data.limit=2000")


@pytest.fixture(scope="module", autouse=True)
def cluster_extra():
    missing = [name for name in ("ray", "submitit", "hydra_plugins.hydra_ray_launcher") if not find(name)]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: install the `cluster` extra (scripts/test.sh does this)")


def find(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


@pytest.fixture(scope="module")
def ray_cluster():
    """A one-node Ray cluster on loopback, started as `ray start --head` and stopped with its process group."""
    temp_dir = tempfile.mkdtemp(prefix="ray-")  # short: Ray's socket paths must stay under 108 characters
    port = free_port()
    command = [
        str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
        f"--port={port}", "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats",
        f"--temp-dir={temp_dir}",
    ]  # fmt: skip
    # The workers inherit this environment, not the launching process's: the project on their path, no more.
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    head = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # fmt: skip
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    status = [str(Path(sys.executable).parent / "ray"), "status", f"--address={address}"]
    while subprocess.run(status, capture_output=True).returncode != 0:
        assert head.poll() is None and time.monotonic() < deadline, f"ray start failed: {head.stdout.read()}"
        time.sleep(1)
    yield address
    os.killpg(head.pid, signal.SIGTERM)  # --block: the head ends the processes it started
    head.wait(timeout=60)


def sweep_runs(uri: str):
    client, runs = runs_of(uri)
    (parent,) = [r for r in runs if r.data.tags.get(SWEEP_TAG) == "true"]
    children = [r for r in runs if r is not parent]
    return client, parent, children


def test_a_sweep_on_a_ray_cluster_is_one_parent_with_every_job_nested_and_finished(ray_cluster, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    ray = ("-m", "hydra/launcher=ray_cluster", f"hydra.launcher.ray.init.address={ray_cluster}")
    result = run_cli(tmp_path, *ray, "lr=0.05,0.1", "seed=0,1", *QUICK, f"tracking.uri={uri}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Ray Launcher is launching 4 jobs" in result.stdout
    client, parent, children = sweep_runs(uri)
    assert len(children) == 4 and parent.info.status == "FINISHED"
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent.info.run_id}
    assert {r.info.status for r in children} == {"FINISHED"}
    assert {(r.data.params["lr"], r.data.params["seed"]) for r in children} == {
        (lr, seed) for lr in ("0.05", "0.1") for seed in ("0", "1")
    }
    for run in children:  # trained and logged on a worker: history, figures and the job's own log
        assert len(client.get_metric_history(run.info.run_id, "test_acc")) == 1
        assert run.data.metrics["final_test_acc"] > 0.6
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"learning_curves.png", "confusion_matrix.csv", "softmax_exp.log"} <= artifacts
        assert run.data.tags["mlflow.user"] and "SOFTMAX_EXP" not in str(run.data.tags)


def test_a_job_failing_on_a_ray_worker_is_failed_with_its_reason(ray_cluster, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    ray = ("-m", "hydra/launcher=ray_cluster", f"hydra.launcher.ray.init.address={ray_cluster}")
    result = run_cli(tmp_path, *ray, "lr=1e38,0.1", *QUICK, f"tracking.uri={uri}")
    assert result.returncode == 1
    assert "1 of 2 jobs failed (lr=1e+38" in result.stdout
    _, parent, children = sweep_runs(uri)
    status = {r.data.params["lr"]: r.info.status for r in children}
    assert status == {"1e+38": "FAILED", "0.1": "FINISHED"} and parent.info.status == "FINISHED"
    failed = next(r for r in children if r.info.status == "FAILED")
    assert "training diverged at epoch 1" in failed.data.tags["error"]
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent.info.run_id}


def test_a_sweep_through_submitit_local_is_nested_and_finished(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    result = run_cli(tmp_path, "-m", "hydra/launcher=submitit_local", "lr=0.1,1e38", "seed=0,1", *QUICK,
                     f"tracking.uri={uri}")  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Submitit 'local' sweep output dir" in result.stdout and "2 of 4 jobs failed" in result.stdout
    _, parent, children = sweep_runs(uri)
    assert len(children) == 4 and {r.data.tags["mlflow.parentRunId"] for r in children} == {parent.info.run_id}
    status = {(r.data.params["lr"], r.data.params["seed"]): r.info.status for r in children}
    assert status == {(lr, seed): "FAILED" if lr == "1e+38" else "FINISHED"
                      for lr in ("0.1", "1e+38") for seed in ("0", "1")}  # fmt: skip
    # each job ran in a process of its own, in its own folder
    assert len(list((tmp_path / "sweep").glob("*/softmax_exp.log"))) == 4

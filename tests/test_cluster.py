"""Sweeps that leave the launching process: on a Ray cluster the test starts, and through submitit.

Each job finds its sweep's parent run in the store (softmax_exp/nesting.py), not through the launching
process's environment, which Ray workers do not inherit: they inherit that of `ray start`. One Ray cluster,
with token authentication, serves the session (tests/conftest.py); each sweep is as small as what it shows
allows (a few jobs, data.limit=2000, one epoch).
"""

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from mlflow.tracking import MlflowClient

from softmax_exp.run_keys import SWEEP_TAG
from softmax_exp.schema import PROJECT_ROOT

from .conftest import run_cli
from .test_tracking import runs_of

pytestmark = pytest.mark.cluster

QUICK = ("epochs=1", "data.limit=2000")


@pytest.fixture(scope="module", autouse=True)
def cluster_extra():
    missing = [name for name in ("ray", "submitit") if not find(name)]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: install the `cluster` extra (scripts/test.sh does this)")


def find(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def sweep_runs(uri: str):
    client, runs = runs_of(uri)
    (parent,) = [r for r in runs if r.data.tags.get(SWEEP_TAG) == "true"]
    children = [r for r in runs if r is not parent]
    return client, parent, children


def test_a_sweep_on_a_ray_cluster_is_one_parent_with_every_job_nested_and_a_failing_one_failed(
    ray_cluster, tmp_path, store
):
    uri = store
    ray = ("-m", "hydra/launcher=ray_cluster", f"hydra.launcher.ray.init.address={ray_cluster}")
    # Three jobs on two cores: one of Ray's two workers runs a second job after its first.
    result = run_cli(tmp_path, *ray, "lr=0.05,0.1,1e38", *QUICK, f"tracking.uri={uri}")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Ray Launcher is launching 3 jobs" in result.stdout
    assert "1 of 3 jobs failed (lr=1e+38" in result.stdout
    client, parent, children = sweep_runs(uri)
    assert len(children) == 3 and parent.info.status == "FINISHED"
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent.info.run_id}
    status = {r.data.params["lr"]: r.info.status for r in children}
    assert status == {"0.05": "FINISHED", "0.1": "FINISHED", "1e+38": "FAILED"}
    for run in children:  # trained and logged on a worker: history, figures and the job's own log
        assert run.data.tags["mlflow.user"] and "SOFTMAX_EXP" not in str(run.data.tags)
        if run.info.status == "FAILED":
            assert "training diverged at epoch 1" in run.data.tags["error"]
            continue
        assert len(client.get_metric_history(run.info.run_id, "test_acc")) == 1
        assert run.data.metrics["final_test_acc"] > 0.6
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"learning_curves.png", "confusion_matrix.csv", "softmax_exp.log"} <= artifacts


def training_run(uri: str, launcher: subprocess.Popen, timeout: float = 180):
    """The first child run of the sweep in `uri` to have logged an epoch: a job surely training, wherever."""
    client, deadline = MlflowClient(uri), time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert launcher.poll() is None, launcher.stdout.read()
        if experiment := client.get_experiment_by_name("softmax_exp"):
            training = "attributes.status = 'RUNNING' and metrics.test_acc > 0"
            if runs := client.search_runs([experiment.experiment_id], training, max_results=1):
                return runs[0]
        time.sleep(0.5)  # polling the store, not waiting for anything in particular
    raise AssertionError(f"no job trained within {timeout} s")


def ctrl_c_once_training(tmp_path: Path, uri: str, *args: str, ended_by_job: bool = True, launcher_only: bool = False):
    """Start a sweep of long jobs, and once one of them trains, press Ctrl-C: a terminal sends SIGINT to its
    foreground process group, here the launcher's own (with what it started itself). The sweep's runs after
    the launcher has exited. ended_by_job: the training job must have ended its run itself, rather than the
    launcher sweeping it to KILLED as it exits. launcher_only: `kill` the launcher alone instead (SIGTERM),
    as where the jobs run on other machines; every process it started must be gone once it has exited."""
    command = [sys.executable, "-m", "softmax_exp", "-m", *args, "epochs=2000", "data.limit=2000",
               f"tracking.uri={uri}", f"hydra.sweep.dir={tmp_path}/sweep"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    launcher = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)  # fmt: skip
    training = training_run(uri, launcher)
    started = psutil.Process(launcher.pid).children(recursive=True)  # the jobs' processes, where they are local
    if launcher_only:
        launcher.send_signal(signal.SIGTERM)
    else:
        os.killpg(launcher.pid, signal.SIGINT)
    output = launcher.communicate(timeout=120)[0]
    assert launcher.returncode == 130, output
    _, still_running = psutil.wait_procs(started, timeout=5)
    assert still_running == [], output
    _, parent, children = sweep_runs(uri)
    assert {r.info.status for r in [parent, *children]} == {"KILLED"}, output
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent.info.run_id}
    if ended_by_job:  # where it ran (a reason, its log), not swept up by the launcher afterwards
        killed = next(r for r in children if r.info.run_id == training.info.run_id)
        assert killed.data.tags["error"] == "interrupted (Ctrl-C or SIGTERM)"
    return children


def test_ctrl_c_on_a_ray_sweep_ends_every_run_killed(ray_cluster, tmp_path, store):
    # The jobs run in Ray's workers, children of `ray start`, out of the signal's reach: the launcher cancels them.
    ray = ("hydra/launcher=ray_cluster", f"hydra.launcher.ray.init.address={ray_cluster}")
    children = ctrl_c_once_training(tmp_path, store, *ray, "lr=0.01,0.05,0.1,0.2")
    assert 1 <= len(children) <= 2  # 2 cores: two jobs were running, two waiting, and those never started


def test_a_sweep_through_submitit_local_is_nested_and_finished(tmp_path, store):
    uri = store
    # Two jobs: submitit starts every job at once, each a process importing torch, on 2 cores.
    result = run_cli(tmp_path, "-m", "hydra/launcher=slurm_local", "lr=0.1,1e38", *QUICK, f"tracking.uri={uri}")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Submitit 'local' sweep output dir" in result.stdout and "1 of 2 jobs failed" in result.stdout
    _, parent, children = sweep_runs(uri)
    assert len(children) == 2 and {r.data.tags["mlflow.parentRunId"] for r in children} == {parent.info.run_id}
    assert {r.data.params["lr"]: r.info.status for r in children} == {"0.1": "FINISHED", "1e+38": "FAILED"}
    assert parent.info.status == "FINISHED"
    # each job ran in a process of its own, in its own folder
    assert len(list((tmp_path / "sweep").glob("*/softmax_exp.log"))) == 2


def test_kill_of_a_submitit_launcher_alone_cancels_its_jobs_and_ends_every_run_killed(tmp_path, store):
    # As on SLURM, where only the launcher hears Ctrl-C: the jobs' processes are out of the signal's reach, and
    # the launcher cancels them (SIGINT, then SIGKILL a second later). The job may end its run first, or the
    # launcher, which sweeps the runs still open to KILLED as it exits: either way, KILLED.
    args = ("hydra/launcher=slurm_local", "lr=0.01")
    children = ctrl_c_once_training(tmp_path, store, *args, ended_by_job=False, launcher_only=True)
    assert len(children) == 1

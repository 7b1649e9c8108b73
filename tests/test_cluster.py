"""Sweeps that leave the launching process, through submitit; and what the tests of every such launcher share.

Each job finds its sweep's parent run in the store (softmax_exp/nesting.py). The sweeps on a Ray cluster are in
tests/test_ray_launcher.py, which starts the cluster. Each sweep is as small as what it shows allows (a few jobs,
data.limit=2000, one epoch).
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

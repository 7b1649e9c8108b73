"""Resuming a sweep killed with `kill -9`: the same command with hydra.sweeper.resume=true runs what is missing,
and the sweep ends as one never interrupted would, each job once; another sweep's command is refused."""

import json
import signal
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from softmax_exp.run_keys import JOB_TAG, SWEEP_TAG

from .conftest import copy_of, run_cli, start_cli

SWEEP = ("-m", "lr=0.05,0.1", "seed=0,1", "epochs=3", "data.limit=3000")  # 4 jobs
RESUME = "hydra.sweeper.resume=true"


def sweep_runs(uri: str) -> tuple[list, list]:
    """The store's parent runs, and its jobs' runs."""
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("softmax_exp").experiment_id], max_results=100)
    return [run for run in runs if SWEEP_TAG in run.data.tags], [run for run in runs if SWEEP_TAG not in run.data.tags]


def finished_jobs(uri: str) -> dict[tuple, float]:
    """Each FINISHED job's final test accuracy, by its choices; a job finished twice fails the test."""
    finished = [run for run in sweep_runs(uri)[1] if run.info.status == "FINISHED"]
    accuracies = {tuple(json.loads(run.data.tags[JOB_TAG])): run.data.metrics["final_test_acc"] for run in finished}
    assert len(accuracies) == len(finished), "a job finished twice"
    return accuracies


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, empty_store) -> dict[tuple, float]:
    folder = tmp_path_factory.mktemp("uninterrupted")
    uri = copy_of(empty_store, folder)
    result = run_cli(folder, *SWEEP, "hydra/launcher=vectorized", f"tracking.uri={uri}")
    assert result.returncode == 0, result.stderr
    return finished_jobs(uri)


@pytest.mark.parametrize(
    "launcher, killed_after, jobs_finished_before",
    [("vectorized", ["epoch   2"], 0), ("basic", ["run FINISHED", "epoch   1"], 1)],  # in lock-step; one by one
)
def test_a_sweep_killed_by_kill_9_resumes_to_what_an_uninterrupted_sweep_gives(
    tmp_path: Path, empty_store, uninterrupted, launcher, killed_after, jobs_finished_before
):
    uri = copy_of(empty_store, tmp_path)
    command = (*SWEEP, f"hydra/launcher={launcher}", f"tracking.uri={uri}")
    process = start_cli(tmp_path, *command)
    waiting = list(killed_after)
    for line in process.stdout:  # killed once it has printed these lines, in this order
        if waiting[0] in line:
            waiting.pop(0)
            if not waiting:
                break
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    parents, jobs = sweep_runs(uri)
    assert [run.info.status for run in parents] == ["RUNNING"]
    running = [run for run in jobs if run.info.status == "RUNNING"]
    assert len(running) == len(jobs) - jobs_finished_before > 0
    folders_before = sorted(p.name for p in (tmp_path / "sweep").iterdir() if p.name.isdigit())

    resumed = run_cli(tmp_path, *command, RESUME)
    output = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, output
    assert f"resume: {len(running)} runs that a killed process left RUNNING are now KILLED" in output
    assert f"resume: {jobs_finished_before} of 4 jobs stand; running the other {4 - jobs_finished_before}" in output
    parents, jobs = sweep_runs(uri)
    assert [run.info.status for run in parents] == ["FINISHED"]  # the one parent, reopened
    assert "RUNNING" not in {run.info.status for run in jobs}
    assert finished_jobs(uri) == pytest.approx(uninterrupted, abs=1e-3)
    assert parents[0].data.metrics["best_config_n"] == 2  # each job counted once in the sweep's summary
    folders = sorted((p.name for p in (tmp_path / "sweep").iterdir() if p.name.isdigit()), key=int)
    assert folders == [str(n) for n in range(len(folders_before) + 4 - jobs_finished_before)]  # none overwritten

    if launcher == "vectorized":  # the same sweep again: nothing to do; another sweep: refused
        again = run_cli(tmp_path, *command, RESUME)
        assert again.returncode == 0 and "resume: all 4 jobs of" in again.stdout + again.stderr
        assert "Vectorized launcher" not in again.stdout + again.stderr
        other = run_cli(tmp_path, *command[:1], "lr=0.05,0.2", *command[2:], RESUME)
        lines = [line for line in (other.stdout + other.stderr).splitlines() if "error:" in line]
        assert other.returncode == 1 and "Traceback" not in other.stdout + other.stderr
        assert len(lines) == 1 and "asked for other jobs (lr=0.05,0.1 -> 0.05,0.2)" in lines[0]
        assert finished_jobs(uri) == pytest.approx(uninterrupted, abs=1e-3)  # nothing ran


def test_a_resume_of_a_folder_without_a_sweep_is_refused_in_one_line(tmp_path: Path, store):
    result = run_cli(tmp_path, *SWEEP, f"tracking.uri={store}", RESUME)
    output = result.stdout + result.stderr
    assert result.returncode == 1 and "Traceback" not in output
    assert (
        f"error: hydra.sweeper.resume=true, but {tmp_path / 'sweep'} holds no sweep (multirun.yaml is missing)"
        in output
    )
    assert MlflowClient(store).get_experiment_by_name("softmax_exp") is None  # nothing written

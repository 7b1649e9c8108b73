"""Faults a sweep must survive, with real processes and a real store: a worker killed, the launcher stopped."""

import re
import signal
import subprocess

import psutil
from mlflow.tracking import MlflowClient

from softmax_exp.tracking import SWEEP_TAG

from .test_store import start_cli


def runs_of(uri: str) -> list:
    client = MlflowClient(uri)
    return client.search_runs([client.get_experiment_by_name("softmax_exp").experiment_id], max_results=100)


def test_a_killed_worker_fails_its_job_alone_and_the_sweep_goes_on(tmp_path):
    """kill -9 of a worker: on main, joblib's pool broke, the sweep aborted, and two jobs ended FAILED, the rest
    never ran. Here job #0 (30 epochs) is killed at epoch 5; the two one-epoch jobs finish."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    sweep = ("-m", "hydra/launcher=two_at_a_time", "epochs=30,1,1", "data.limit=1000", f"tracking.uri={uri}")
    process = start_cli(tmp_path, *sweep)
    lines, worker = [], None
    for line in process.stdout:
        lines.append(line)
        if found := re.search(r"#0 : epochs=30 .*\(worker (\d+)\)", line):
            worker = int(found.group(1))
        if line.startswith("epoch   5") and worker is not None:  # only job #0 gets that far
            subprocess.run(["kill", "-9", str(worker)], check=True)
            break
    output = "".join(lines) + process.communicate(timeout=180)[0]
    assert worker is not None, output
    assert process.returncode == 1, output
    assert re.search(r"#0 epochs=30 .*: error: its worker process died \(killed by SIGKILL\)", output), output
    assert "error: 1 of 3 jobs failed (epochs=30,data.limit=1000)" in output
    assert "Traceback" not in output
    runs = runs_of(uri)
    (parent,) = [run for run in runs if run.data.tags.get(SWEEP_TAG)]
    status = sorted((run.info.run_name, run.info.status) for run in runs if run is not parent)
    assert status == [("epochs=1,data.limit=1000", "FINISHED")] * 2 + [("epochs=30,data.limit=1000", "FAILED")]
    (killed,) = [run for run in runs if run.info.status == "FAILED"]
    assert "its process died" in killed.data.tags["error"]
    assert parent.info.status == "FINISHED" and parent.data.metrics["jobs_failed"] == 1


def test_sigterm_of_the_launching_process_stops_the_workers_and_ends_every_open_run_killed(tmp_path):
    """(The vectorized launcher's Ctrl-C and SIGTERM: tests/test_vectorized.py; Ctrl-C here: test_tracking.py.)"""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    sweep = ("-m", "hydra/launcher=two_at_a_time", "lr=0.1,0.2", "epochs=500", "data.limit=1000")
    process = start_cli(tmp_path, *sweep, f"tracking.uri={uri}")
    for line in process.stdout:
        if line.startswith("epoch   1"):  # a job's run is open and training
            break
    workers = psutil.Process(process.pid).children(recursive=True)
    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=60)[0]
    assert process.returncode == 130, output
    statuses = [run.info.status for run in runs_of(uri)]
    assert len(statuses) >= 2 and set(statuses) == {"KILLED"}, statuses
    assert psutil.wait_procs(workers, timeout=10)[1] == []  # no worker left behind

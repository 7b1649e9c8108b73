"""Faults a sweep must survive, with real processes and a real store: a worker killed, the launcher stopped,
a full disk."""

import contextlib
import logging
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from hydra.utils import get_class
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from softmax_exp import interrupts
from softmax_exp.run_keys import SWEEP_TAG
from softmax_exp.schema import PROJECT_ROOT

from .conftest import copy_of, interrupt_a_job_that_drops_it, start_cli


def runs_of(uri: str) -> list:
    client = MlflowClient(uri)
    return client.search_runs([client.get_experiment_by_name("softmax_exp").experiment_id], max_results=100)


def worker_running(process: subprocess.Popen, job_log: Path) -> psutil.Process | None:
    """The launcher's worker process running a job: the one that holds the job's log file open."""
    for child in psutil.Process(process.pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if any(Path(file.path) == job_log for file in child.open_files()):
                return child
    return None


def test_a_job_that_drops_its_sigterm_is_sent_it_again_and_ends_before_its_launcher(tmp_path):
    interrupt_a_job_that_drops_it(tmp_path, "hydra/launcher=parallel", "hydra.launcher.n_jobs=1")


def test_a_killed_worker_fails_its_job_alone_and_the_sweep_goes_on(tmp_path, empty_store):
    """kill -9 of a worker: on main, joblib's pool broke, the sweep aborted, and two jobs ended FAILED, the rest
    never ran. Here job #0 (30 epochs) is killed at epoch 2; the one-epoch job beside it finishes."""
    uri = copy_of(empty_store, tmp_path)
    sweep = ("-m", "hydra/launcher=two_at_a_time", "epochs=30,1", "data.limit=1000", f"tracking.uri={uri}")
    process = start_cli(tmp_path, *sweep)
    lines, worker = [], None
    for line in process.stdout:
        lines.append(line)
        if line.startswith("epoch   2"):  # only job #0 gets that far
            worker = worker_running(process, tmp_path / "sweep" / "0" / "softmax_exp.log")
            assert worker is not None, "".join(lines)
            worker.kill()
            break
    output = "".join(lines) + process.communicate(timeout=180)[0]
    assert worker is not None, output
    assert process.returncode == 1, output
    assert "Parallel launcher: 2 jobs in 2 worker processes of 1 thread(s)" in output
    assert re.search(r"#0 epochs=30 .*: error: its worker process died \(killed by SIGKILL\)", output), output
    assert "error: 1 of 2 jobs failed (epochs=30,data.limit=1000)" in output
    assert "Traceback" not in output
    runs = runs_of(uri)
    (parent,) = [run for run in runs if run.data.tags.get(SWEEP_TAG)]
    status = sorted((run.info.run_name, run.info.status) for run in runs if run is not parent)
    assert status == [("epochs=1,data.limit=1000", "FINISHED"), ("epochs=30,data.limit=1000", "FAILED")]
    (killed,) = [run for run in runs if run.info.status == "FAILED"]
    assert "its process died" in killed.data.tags["error"]
    assert parent.info.status == "FINISHED" and parent.data.metrics["jobs_failed"] == 1


def test_sigterm_of_the_launching_process_stops_the_workers_and_ends_every_open_run_killed(tmp_path, empty_store):
    """(Ctrl-C of the vectorized launcher: tests/test_vectorized.py; both signals end in the same handler.)"""
    uri = copy_of(empty_store, tmp_path)
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


def test_sigterm_of_a_sweep_on_the_basic_launcher_and_ctrl_c_of_a_single_run_end_every_open_run_killed(
    tmp_path, empty_store
):
    """Hydra's basic launcher runs the jobs in the launching process: the open job's run and the sweep's."""
    started = {}
    cases = {"sweep": (signal.SIGTERM, ("-m", "lr=0.1,0.2")), "single run": (signal.SIGINT, ())}
    for case, (stop, mode) in cases.items():  # both at once: each spends its first seconds importing
        folder = tmp_path / case.replace(" ", "_")
        folder.mkdir()
        uri = copy_of(empty_store, folder)
        started[case] = (stop, uri, start_cli(folder, *mode, "epochs=500", "data.limit=1000", f"tracking.uri={uri}"))
    for case, (stop, uri, process) in started.items():
        for line in process.stdout:
            if line.startswith("epoch   1"):  # the first job's run is open and training
                break
        process.send_signal(stop)
        output = process.communicate(timeout=60)[0]
        assert process.returncode == 130, f"{case}: {output}"
        statuses = sorted((bool(run.data.tags.get(SWEEP_TAG)), run.info.status) for run in runs_of(uri))
        expected = [(False, "KILLED"), (True, "KILLED")] if case == "sweep" else [(False, "KILLED")]
        assert statuses == expected, f"{case}: {statuses}"


def test_a_signal_during_a_write_to_a_run_is_raised_once_the_write_is_done(tmp_path, empty_store):
    """The cause of runs once left RUNNING by a SIGTERM: it landed inside MLflow's write, whose lock then
    stayed held. Now the write completes, the KeyboardInterrupt follows, and the store takes the next write."""
    uri = copy_of(empty_store, tmp_path)
    client = MlflowClient(uri)
    run_id = client.create_run(client.get_experiment_by_name("Default").experiment_id).info.run_id
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    interrupts.install(signal.SIGINT, signal.SIGTERM)
    written = False
    try:
        with pytest.raises(KeyboardInterrupt), interrupts.whole():
            os.kill(os.getpid(), signal.SIGTERM)  # its handler runs in this thread, at once: held
            client.log_metric(run_id, "written", 1.0)
            written = True
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    assert written and interrupts.held is None
    client.set_terminated(run_id, "KILLED")
    run = client.get_run(run_id)
    assert run.info.status == "KILLED" and run.data.metrics == {"written": 1.0}


@pytest.fixture
def small_disk(tmp_path) -> Iterator[Path]:
    """A real 4 MB filesystem (tmpfs), mounted for the test: as full as the test makes it. A copy of the empty store
    takes 1.1 MB of it, and less than 1 MB free is full (softmax_exp/disk.py): 2 MB left it full before the run
    it was to fill during."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small filesystem here (needs root): {mounted.stderr.decode().strip()}")
    yield disk
    subprocess.run(["umount", "--lazy", str(disk)], check=True)


def fill(disk: Path, leave_kb: int = 0) -> None:
    """Write to the disk until it refuses (ENOSPC), then give `leave_kb` back: a disk really full."""
    filler = disk / "filler"
    descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT)
    with pytest.raises(OSError, match="No space left on device"):
        while True:
            os.write(descriptor, bytes(1 << 16))
    os.close(descriptor)
    os.truncate(filler, max(0, filler.stat().st_size - leave_kb * 1024))


def finished_run(uri: str) -> str:
    """A run already finished in the store, with a metric: it must come through a full disk intact."""
    client = MlflowClient(uri)
    artifacts = Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts"  # where the suite puts them
    run = client.create_run(client.create_experiment("softmax_exp", artifact_location=artifacts.as_uri()))
    client.log_metric(run.info.run_id, "final_test_acc", 0.8125)
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


def assert_intact(uri: str, finished: str) -> list:
    """The finished run as it was, and no run left RUNNING; returns the store's runs."""
    runs = runs_of(uri)
    before = [run for run in runs if run.info.run_id == finished]
    assert [(run.info.status, run.data.metrics) for run in before] == [("FINISHED", {"final_test_acc": 0.8125})]
    assert "RUNNING" not in {run.info.status for run in runs}
    return runs


def test_a_full_disk_under_the_store_and_the_outputs_is_said_in_one_line_before_any_work(small_disk, empty_store):
    """Both on one disk, as by default. On main: a traceback from Hydra writing .hydra/ (ENOSPC), or with the
    outputs elsewhere, from SQLite ("database or disk is full")."""
    uri = copy_of(empty_store, small_disk)
    finished = finished_run(uri)
    fill(small_disk)
    process = start_cli(small_disk, "epochs=1", "data.limit=1000", f"tracking.uri={uri}")  # outputs: small_disk/run
    output = process.communicate(timeout=120)[0]
    assert process.returncode == 1, output
    store = f"error: the disk holding the tracking store {small_disk} is full (0.0 MB free): free space there, or"
    outputs = f"; the disk holding the outputs {small_disk}/run is full (0.0 MB free): free space there, or"
    assert store in output and outputs in output, output
    assert "Traceback" not in output and "epoch" not in output, output
    assert_intact(uri, finished)


def test_a_disk_that_fills_during_a_run_fails_the_run_in_one_line(small_disk, empty_store):
    """The store's and the outputs' disk fills while the job trains, with 16 kB left: room for SQLite to close
    the run, none for the model. On main: a wall of tracebacks, and the run left RUNNING."""
    uri = copy_of(empty_store, small_disk)
    finished = finished_run(uri)
    process = start_cli(small_disk, "epochs=4", "data.limit=1000", f"tracking.uri={uri}")
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith("epoch   1"):  # the job's run is open, and three epochs are still to come
            fill(small_disk, leave_kb=16)
            break
    output = "".join(lines) + process.communicate(timeout=120)[0]
    assert process.returncode == 1, output
    assert f"error: the disk holding the tracking store {small_disk} is full" in output, output
    assert "Traceback" not in output, output
    runs = assert_intact(uri, finished)
    assert sorted(run.info.status for run in runs) == ["FAILED", "FINISHED"]


def test_a_job_log_whose_disk_fills_says_so_once(small_disk, capsys):
    """On main, Python's logging printed a traceback for each line it could not write."""
    handler = OmegaConf.load(PROJECT_ROOT / "conf" / "hydra" / "job_logging" / "console_and_file.yaml").handlers.file
    log = logging.getLogger("test_faults.job")
    log.setLevel(logging.INFO)  # as Hydra's job logging sets it: importing mlflow.pytorch sets the root's to ERROR
    log.addHandler(get_class(handler["class"])(small_disk / "job.log"))  # the job log's handler, as Hydra makes it
    log.warning("written")
    fill(small_disk)
    for _ in range(3):
        log.warning("x" * 5000)  # more than the page the file has begun
    log.handlers[0].close()
    log.removeHandler(log.handlers[0])
    errors = capsys.readouterr().err
    assert errors == (
        f"error: the disk holding the log {small_disk}/job.log is full (0.0 MB free): the log stops here, the "
        "terminal shows the rest; free space there, or write the outputs to another disk\n"
    )
    assert (small_disk / "job.log").read_text().startswith("written\n")

"""A class's tracking server (scripts/tracking-server.sh): PostgreSQL behind `mlflow server`, MLflow's accounts.

Started once for the module on a loopback port, with eight students; every test talks to it over HTTP.
"""

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from softmax_exp.config import PROJECT_ROOT
from softmax_exp.tracking import SWEEP_TAG

from .conftest import run_cli
from .test_tracking import free_port

pytestmark = pytest.mark.cluster

STUDENTS = [f"student{i}" for i in range(1, 9)]
QUICK = ("epochs=2", "data.limit=2000")
LOAD_GRID = "lr=0.01,0.02,0.05,0.1,0.2"  # five jobs a student, forty in all


@pytest.fixture(scope="module")
def server():
    """The script itself, as a teacher runs it; SIGTERM stops the server and its PostgreSQL."""
    data = Path(tempfile.mkdtemp(prefix="mls-"))  # short: PostgreSQL's socket path must stay under 108 characters
    passwords = {name: secrets.token_urlsafe(12) for name in STUDENTS}
    (data / "students.txt").write_text("".join(f"{name} {password}\n" for name, password in passwords.items()))
    admin = secrets.token_urlsafe(16)
    port = free_port()
    env = {**os.environ, "MLFLOW_ADMIN_PASSWORD": admin, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    command = ["bash", str(PROJECT_ROOT / "scripts/tracking-server.sh"), "--data", str(data), "--port", str(port)]
    command += ["--students", str(data / "students.txt")]
    script = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in script.stdout:
        lines.append(line)
        if line.startswith("tracking-server: MLflow on"):
            break
    assert script.poll() is None, "".join(lines) + (data / "server.log").read_text(errors="replace")
    yield SimpleNamespace(uri=f"http://127.0.0.1:{port}", admin=admin, passwords=passwords, data=data, lines=lines)
    script.send_signal(signal.SIGTERM)
    script.wait(timeout=60)
    shutil.rmtree(data, ignore_errors=True)


def as_user(monkeypatch, name: str | None, password: str | None) -> None:
    """MLflow's own environment variables: the only place the suite takes credentials from."""
    for key, value in (("MLFLOW_TRACKING_USERNAME", name), ("MLFLOW_TRACKING_PASSWORD", password)):
        if value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            monkeypatch.setenv(key, value)


def admin_runs(server, monkeypatch, experiment: str):
    as_user(monkeypatch, "admin", server.admin)
    client = MlflowClient(server.uri)
    found = client.get_experiment_by_name(experiment)
    return client, client.search_runs([found.experiment_id], max_results=1000) if found else []


def test_the_script_starts_postgresql_and_mlflow_on_loopback_only(server):
    assert any(f"MLflow on {server.uri}" in line for line in server.lines)
    auth = (server.data / "basic-auth.ini").read_text()
    assert "default_permission = READ" in auth and "postgresql+psycopg2://" in auth and "password1234" not in auth
    assert oct((server.data / "basic-auth.ini").stat().st_mode)[-3:] == "600"
    postgres_log = (server.data / "postgres.log").read_text()
    assert "listening on Unix socket" in postgres_log and "IPv4" not in postgres_log and "IPv6" not in postgres_log


@pytest.mark.parametrize(
    ("account", "said"),
    [((None, None), "refused a request without an account"), (("student1", "wrong"), "the password of 'student1'")],
)
def test_no_or_wrong_credentials_are_one_line_before_any_work(server, tmp_path, monkeypatch, account, said):
    as_user(monkeypatch, *account)
    result = run_cli(tmp_path, *QUICK, f"tracking.uri={server.uri}", "tracking.experiment=student1", timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 1 and said in output and "MLFLOW_TRACKING_PASSWORD" in output
    assert "epoch" not in output and "Traceback" not in output
    assert "wrong" not in output  # the password itself is never repeated
    _, runs = admin_runs(server, monkeypatch, "student1")
    assert runs == []


def test_a_student_cannot_write_into_anothers_experiment_but_can_read_it(server, tmp_path, monkeypatch):
    (tmp_path / "own").mkdir()
    (tmp_path / "other").mkdir()
    as_user(monkeypatch, "student2", server.passwords["student2"])
    result = run_cli(tmp_path / "own", *QUICK, f"tracking.uri={server.uri}", "tracking.experiment=student2")
    assert result.returncode == 0, result.stdout + result.stderr
    as_user(monkeypatch, "student3", server.passwords["student3"])
    result = run_cli(tmp_path / "other", "-m", "lr=0.1,0.2", *QUICK, f"tracking.uri={server.uri}",
                     "tracking.experiment=student2")  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 1 and "Traceback" not in output and "epoch" not in output
    assert "'student3' may not write to MLflow experiment 'student2'" in output
    assert "tracking.experiment=student3" in output
    # what the server itself enforces, whatever the client: no run created in another's experiment
    client = MlflowClient(server.uri)
    theirs = client.get_experiment_by_name("student2")
    with pytest.raises(MlflowException, match="Permission denied"):
        client.create_run(theirs.experiment_id)
    (run,) = client.search_runs([theirs.experiment_id])  # readable: student2's one run, nothing of student3's
    assert run.info.status == "FINISHED" and len(client.get_metric_history(run.info.run_id, "test_acc")) == 2
    assert "MLFLOW_TRACKING_PASSWORD" not in str(run.data.params) + str(run.data.tags)
    assert server.passwords["student2"] not in str(run.data.params) + str(run.data.tags)


@pytest.mark.load  # on 2 cores the server's workers take >10 minutes for 40 runs: not in the default run
def test_eight_students_sweeping_at_once_lose_no_run(server, tmp_path, monkeypatch):
    """The load test: eight sweeps of five jobs, each a student's own process, all against the server at once."""
    students = STUDENTS
    processes = {}
    for name in students:
        folder = tmp_path / name
        folder.mkdir()
        # Eight students' machines on these few cores: one thread each, or torch's spinning threads stall them all.
        env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "MLFLOW_TRACKING_USERNAME": name,
               "MLFLOW_TRACKING_PASSWORD": server.passwords[name], "OMP_NUM_THREADS": "1"}  # fmt: skip
        command = [sys.executable, "-m", "softmax_exp", "-m", "hydra/launcher=vectorized", LOAD_GRID, *QUICK]
        command += [f"tracking.uri={server.uri}", f"tracking.experiment={name}", f"hydra.sweep.dir={folder}/sweep"]
        processes[name] = subprocess.Popen(command, cwd=folder, env=env, stdout=subprocess.PIPE,
                                           stderr=subprocess.STDOUT, text=True)  # fmt: skip
    start = time.monotonic()
    try:
        outputs = {name: process.communicate(timeout=600)[0] for name, process in processes.items()}
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()  # SIGTERM would have it close its runs on a server about to stop, for minutes
                process.wait()
    seconds = time.monotonic() - start
    sent = stored = 0
    for name in students:
        assert processes[name].returncode == 0, outputs[name]
        client, runs = admin_runs(server, monkeypatch, name)
        children = [r for r in runs if SWEEP_TAG not in r.data.tags]
        sent += 5
        stored += len(children)
        assert {r.info.status for r in runs} == {"FINISHED"}
        for run in children:
            for metric in ("train_loss", "train_acc", "test_acc"):
                assert [m.step for m in client.get_metric_history(run.info.run_id, metric)] == [1, 2]
            artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
            assert {"learning_curves.png", "confusion_matrix.csv", "hydra"} <= artifacts
    print(f"\nload test: {len(students)} students at once, runs sent {sent}, stored {stored}, {seconds:.0f} s")
    assert stored == sent == 40

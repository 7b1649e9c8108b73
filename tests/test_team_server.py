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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from softmax_exp.nesting import SWEEP_DIR_TAG
from softmax_exp.schema import PROJECT_ROOT

from .conftest import free_port, plain_mlflow_server, run_cli, start_cli

pytestmark = pytest.mark.cluster

STUDENTS = [f"student{i}" for i in range(1, 9)]
QUICK = ("epochs=2", "data.limit=2000")
LEARNING_RATES = ("0.01", "0.02", "0.05", "0.1", "0.2")  # a student's sweep: its first N, one job each
# Jobs per student: the suite sends one each (8 runs and 8 sweeps, still eight writers at once); `-m load` the full
# five (40).
SIZES = [pytest.param(1, id="1_job_each"), pytest.param(5, id="5_jobs_each", marks=pytest.mark.load)]
LOAD_METRICS = ("train_loss", "train_acc", "test_acc")
LOAD_ARTIFACTS = {"learning_curves.png", "confusion_matrix.csv", "hydra", "softmax_exp.log"}
LOAD_SECONDS = 600  # for all eight sweeps, which take about 45 s on 2 cores at full size: only a hung one meets it
WORKERS = 2  # the server's processes: one per core here; each more only adds its start-up (~6 s of CPU)


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
    command += ["--students", str(data / "students.txt"), "--workers", str(WORKERS)]
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


def test_the_report_without_an_account_is_one_line(server, tmp_path, monkeypatch):
    """The report signs in as a run does (access.check_signed_in), before it reads anything."""
    as_user(monkeypatch, None, None)
    result = run_cli(tmp_path, "--uri", server.uri, "--experiment", "student1", module="softmax_exp.report")
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == (
        f"error: MLflow tracking server {server.uri} refused a request without an account: "
        "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD to your account on it\n"
    )


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


def sweeps_at_once(uri: str, folder: Path, passwords: dict[str, str | None], jobs: int) -> tuple[dict[str, str], float]:
    """Each student's sweep of `jobs` jobs in a process of its own, all started at once against the server at
    `uri` (forked, as every CLI run of the tests: the load falls on the server, not on eight interpreters
    starting up): the end of the output of each one that failed, and the seconds until the last one ended."""
    grid = f"lr={','.join(LEARNING_RATES[:jobs])}"
    # Eight students' machines on these few cores: one thread each, or torch's spinning threads stall them all.
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_TRACKING_")}
    env |= {"PYTHONPATH": str(PROJECT_ROOT), "OMP_NUM_THREADS": "1"}
    start, students = time.monotonic(), {}
    for name, password in passwords.items():
        (folder / name).mkdir()
        credentials = {"MLFLOW_TRACKING_USERNAME": name, "MLFLOW_TRACKING_PASSWORD": password} if password else {}
        args = ("-m", "hydra/launcher=vectorized", grid, *QUICK, f"tracking.uri={uri}", f"tracking.experiment={name}")
        students[name] = start_cli(folder / name, *args, env=env | credentials)
    outputs, deadline = {}, start + LOAD_SECONDS
    try:
        for name, process in students.items():
            outputs[name] = process.communicate(timeout=max(0, deadline - time.monotonic()))[0]
    finally:
        for process in students.values():
            # SIGKILL: SIGTERM would have them close their runs on a server about to stop, for minutes
            process.send_signal(signal.SIGKILL)
    seconds = time.monotonic() - start
    return {name: outputs[name][-2000:] for name, process in students.items() if process.returncode}, seconds


def stored_in_full(client: MlflowClient, runs: list) -> list:
    """The jobs' runs that arrived whole: FINISHED, every epoch of every metric, the figures, the job's record
    and its model (a logged model of MLflow 3, READY once every file of it is stored)."""
    experiments = list({run.info.experiment_id for run in runs})
    models = client.search_logged_models(experiments, max_results=1000) if runs else []
    modelled = {model.source_run_id for model in models if str(model.status) == "READY"}

    def whole(run) -> bool:
        if run.info.status != "FINISHED" or run.info.run_id not in modelled:
            return False
        history = {m: [p.step for p in client.get_metric_history(run.info.run_id, m)] for m in LOAD_METRICS}
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        return all(steps == [1, 2] for steps in history.values()) and LOAD_ARTIFACTS <= artifacts

    with ThreadPoolExecutor(4) as pool:  # four runs' questions at once: the server's workers answer in parallel
        return [run for run, arrived in zip(runs, pool.map(whole, runs), strict=True) if arrived]


@pytest.mark.parametrize("jobs", SIZES)
def test_eight_students_sweeping_at_once_lose_no_run(server, tmp_path, monkeypatch, jobs):
    """The load test: eight sweeps, each a student's own process, all against the server at once."""
    failed, seconds = sweeps_at_once(server.uri, tmp_path, server.passwords, jobs)
    parents, children = {}, []
    for name in STUDENTS:
        client, runs = admin_runs(server, monkeypatch, name)
        # this sweep's, by its folder (student2's experiment holds a run of an earlier test)
        (parents[name],) = [r for r in runs if r.data.tags.get(SWEEP_DIR_TAG) == str(tmp_path / name / "sweep")]
        children += [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[name].info.run_id]
    sent, stored = jobs * len(STUDENTS), len(stored_in_full(client, children))
    print(f"\nload test: {len(STUDENTS)} students at once, runs sent {sent}, stored in full {stored}, {seconds:.0f} s")
    assert failed == {}
    assert {parent.info.status for parent in parents.values()} == {"FINISHED"}
    assert stored == sent == 8 * jobs


@pytest.mark.parametrize("jobs", SIZES)
def test_the_same_load_on_a_plain_sqlite_server_loses_no_run(tmp_path, jobs):
    """The comparison: the same eight sweeps against a plain `mlflow server` on SQLite (no accounts), as many
    workers as the class's server."""
    with plain_mlflow_server(tmp_path, workers=WORKERS) as uri:
        failed, seconds = sweeps_at_once(uri, tmp_path, dict.fromkeys(STUDENTS), jobs)
        client = MlflowClient(uri)
        runs = client.search_runs([e.experiment_id for e in client.search_experiments()], max_results=1000)
        children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
        stored = len(stored_in_full(client, children))
    sent = jobs * len(STUDENTS)
    print(f"\nSQLite: {len(STUDENTS)} students at once, runs sent {sent}, stored in full {stored}, {seconds:.0f} s")
    assert failed == {}
    assert stored == sent and len(runs) == sent + len(STUDENTS) and {r.info.status for r in runs} == {"FINISHED"}

"""Shared fixtures: the real Fashion-MNIST (Debian's copy), Hydra composition, and the real CLI."""

import atexit
import contextlib
import functools
import json
import os
import select
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

# Test workers side by side (scripts/test.sh runs two on 2 cores) each train on their share of the cores, as the
# parallel launcher's workers do: torch's threads spin at every barrier, so two workers of two threads each on 2
# cores slow each other down (docs/performance.md). Set before torch is imported; every CLI a test starts inherits it.
if (workers := int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))) > 1 and "OMP_NUM_THREADS" not in os.environ:
    os.environ["OMP_NUM_THREADS"] = str(max(1, len(os.sched_getaffinity(0)) // workers))

import torch
from hydra import compose, initialize
from hydra.version import VersionBase
from mlflow.tracking import MlflowClient
from packaging.version import Version

from softmax_exp import data
from softmax_exp.prepare import prepare_group
from softmax_exp.schema import PROJECT_ROOT
from softmax_exp.train import TrainResult, train

# A process started in the background by a non-interactive shell ignores SIGINT, and so would every CLI the
# tests start (exec keeps an ignored signal ignored): the Ctrl-C tests need the CLI to hear it.
signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def fashion_mnist() -> data.FashionMNIST:
    if not data.DEBIAN_ROOT.is_dir():
        pytest.fail(f"Fashion-MNIST is missing: {data.HOW_TO_GET} (scripts/test.sh does this)")
    return data.load(str(data.DEBIAN_ROOT))


@pytest.fixture
def hydra_suite_app(hydra_restore_singletons) -> None:
    """For Hydra's launcher suites, whose apps run in this process: as each would in a fresh process, with no
    version_base (1.1's defaults: each job in its own folder), where an earlier test's initialize(version_base=
    "1.3") stays in Hydra's globals."""
    VersionBase.instance().setbase(Version("1.1"))


def compose_config(*overrides: str):
    with initialize(version_base="1.3", config_path="../conf"):
        return compose(config_name="config", overrides=list(overrides))


def train_all(cfgs, fashion_mnist: data.FashionMNIST, **callbacks) -> list[TrainResult]:
    """The trainer on composed configs, on the CPU, without tracking."""
    group, prepared = prepare_group(cfgs, fashion_mnist, torch.device("cpu"))
    return train([job.learner for job in prepared], group, **callbacks)


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory) -> Path:
    """A store with MLflow's tables made and nothing in them. Tests start from a copy: making the tables
    costs each new store 1-2 s of CPU in the process that opens it first, and few tests are about a new
    store (those make their own: tests/test_store.py, the WAL test in tests/test_tracking.py)."""
    database = tmp_path_factory.mktemp("empty_store") / "mlflow.db"
    MlflowClient(f"sqlite:///{database}").search_experiments()
    return database


def copy_of(empty_store: Path, folder: Path) -> str:
    """A copy made by SQLite's backup API: the store is in WAL mode, and its file alone may lack the last commits."""
    with (
        contextlib.closing(sqlite3.connect(empty_store)) as source,
        contextlib.closing(sqlite3.connect(folder / "mlflow.db")) as copy,
    ):
        source.backup(copy)
    return f"sqlite:///{folder}/mlflow.db"


@pytest.fixture
def store(tmp_path: Path, empty_store: Path) -> str:
    """A local MLflow store (SQLite) in the test's own folder, with nothing in it yet."""
    return copy_of(empty_store, tmp_path)


class ForkedCli:
    """tests/forked_cli.py, started once per test process: the CLI's runs forked from it."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="forked_cli-"))  # each run's output, read back
        self.runs = 0
        self.ended: dict[int, int] = {}  # pid -> exit status, as the server says
        self.unread = ""  # what the server said that is not yet read as a line
        self.server = subprocess.Popen(
            [sys.executable, "-m", "tests.forked_cli"], cwd=PROJECT_ROOT, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
        )  # fmt: skip

    def answer(self, timeout: float | None) -> dict:
        """The server's next line, or {} if it says nothing within `timeout` s; an end is noted as it comes.
        Read from the pipe itself: a buffered reader could hold a second line that select() never sees."""
        while "\n" not in self.unread:
            ready, _, _ = select.select([self.server.stdout], [], [], timeout)
            if not ready:
                return {}
            read = os.read(self.server.stdout.fileno(), 1 << 16).decode()
            assert read, "tests/forked_cli.py has ended"
            self.unread += read
        line, self.unread = self.unread.split("\n", 1)
        said = json.loads(line)
        if "ended" in said:
            self.ended[said["ended"]] = said["returncode"]
        return said

    def start(self, command: list[str], cwd: Path, env: dict[str, str], merged: bool) -> tuple[int, Path, Path]:
        """A run of `python -m MODULE ARGS` (command), started: its pid, and its output's two files (one, merged)."""
        self.runs += 1
        stdout = self.folder / f"{self.runs}.out"
        stderr = stdout if merged else self.folder / f"{self.runs}.err"
        for output in (stdout, stderr):
            output.write_text("")  # there to be read from at once; the run writes over it
        request = {"module": command[2], "args": command[3:], "cwd": str(cwd), "env": env}
        self.server.stdin.write(json.dumps({**request, "stdout": str(stdout), "stderr": str(stderr)}) + "\n")
        self.server.stdin.flush()
        while "pid" not in (said := self.answer(60)):  # the server answers at once, unless it died
            assert said, "tests/forked_cli.py does not answer"
        return said["pid"], stdout, stderr

    def wait(self, pid: int, timeout: float | None) -> int | None:
        """The run's exit status, or None if it still runs after `timeout` s."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while pid not in self.ended:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not self.answer(left):  # nothing said in the time left; with none left, what was said is still read
                break
        return self.ended.get(pid)

    def run(self, command: list[str], cwd: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
        pid, stdout, stderr = self.start(command, cwd, env, merged=False)
        returncode = self.wait(pid, timeout)
        if returncode is None:
            os.kill(pid, signal.SIGKILL)
            self.wait(pid, None)
            raise subprocess.TimeoutExpired(command, timeout)
        return subprocess.CompletedProcess(command, returncode, stdout.read_text(), stderr.read_text())


class ForkedProcess:
    """A CLI run started in the background, used as a subprocess.Popen(text=True, stdout=PIPE, stderr=STDOUT)
    is: its output read line by line as it comes (`stdout`), signals, `wait`, `communicate`."""

    def __init__(self, cli: ForkedCli, command: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.cli, self.args = cli, command
        self.pid, output, _ = cli.start(command, cwd, env, merged=True)
        self.output = open(output)  # noqa: SIM115  read as it grows, closed once read to the end
        self.returncode: int | None = None

    @property
    def stdout(self) -> Iterator[str]:
        """Each line as the run writes it, until it ends."""
        pending = ""  # a line not yet whole
        while True:
            read = self.output.readline()
            pending += read
            if pending.endswith("\n"):
                yield pending
                pending = ""
            elif read:
                continue
            elif self.poll() is not None:
                if rest := pending + self.output.read():
                    yield rest
                return
            else:
                time.sleep(0.05)  # polling the file the run writes to, as a pipe's reader would wait

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self.cli.wait(self.pid, 0)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)

    def wait(self, timeout: float | None = None) -> int:
        self.returncode = self.cli.wait(self.pid, timeout)
        if self.returncode is None:
            raise subprocess.TimeoutExpired(self.args, timeout)
        return self.returncode

    def communicate(self, timeout: float | None = None) -> tuple[str, None]:
        self.wait(timeout)
        rest = self.output.read()
        self.output.close()
        return rest, None


@functools.cache  # one per test process, started at its first run of the CLI
def forked_cli() -> ForkedCli:
    cli = ForkedCli()
    atexit.register(cli.server.stdin.close)  # its loop ends with its input
    return cli


def cli_command(tmp_path: Path, module: str, args: tuple[str, ...]) -> tuple[list[str], dict[str, str]]:
    hydra_dirs = [f"hydra.run.dir={tmp_path}/run", f"hydra.sweep.dir={tmp_path}/sweep"]
    command = [sys.executable, "-m", module, *args, *(hydra_dirs if module == "softmax_exp" else [])]
    return command, {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}


def run_cli(
    tmp_path: Path, *args: str, module: str = "softmax_exp", timeout: float = 240
) -> subprocess.CompletedProcess:
    """`python -m softmax_exp ARGS` in a process of its own, from a foreign working directory, writing under
    tmp_path; forked from one that has imported torch, MLflow and Hydra already (tests/forked_cli.py)."""
    command, env = cli_command(tmp_path, module, args)
    return forked_cli().run(command, cwd=tmp_path, env=env, timeout=timeout)


def start_cli(folder: Path, *args: str, env: dict[str, str] | None = None) -> ForkedProcess:
    """`python -m softmax_exp ARGS` started in the background, as run_cli runs it, its output (stderr with
    stdout) read as it comes: for the tests that stop it midway, or run several at once. `env`: its whole
    environment, instead of this process's."""
    command, own_env = cli_command(folder, "softmax_exp", args)
    return ForkedProcess(forked_cli(), command, cwd=folder, env=env or own_env)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def plain_mlflow_server(folder: Path, workers: int = 1) -> Iterator[str]:
    """A real `mlflow server` on a loopback port with a SQLite store and served artifacts; yields its address."""
    port = free_port()
    command = [
        sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
        "--workers", str(workers), "--backend-store-uri", f"sqlite:///{folder}/server.db",
        "--artifacts-destination", str(folder / "artifacts"),
    ]  # fmt: skip
    # MLflow's job runner (GenAI jobs) would start eight more processes (15 to 45 s of CPU here) no test uses.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    server = subprocess.Popen(command, cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            urllib.request.urlopen(f"{uri}/health", timeout=1)
            break
        except OSError:
            assert server.poll() is None and time.monotonic() < deadline, "mlflow server did not start"
            time.sleep(0.5)
    try:
        yield uri
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture(scope="session")  # one server for every module that needs one
def mlflow_server(tmp_path_factory):
    with plain_mlflow_server(tmp_path_factory.mktemp("server")) as uri:
        yield uri


# A job that drops its first interrupt, as Python drops a KeyboardInterrupt raised inside a weakref callback
# that the garbage collector happens to be running. SIGTERM is a KeyboardInterrupt, as in softmax_exp's jobs.
# Its waits are short: Ray's simulated Ctrl-C does not wake a long sleep.
DROPS_ITS_FIRST_INTERRUPT = """
import signal
import time
from pathlib import Path

import hydra

from softmax_exp import interrupts


@hydra.main(version_base="1.3", config_path=None)
def main(cfg):
    interrupts.install(signal.SIGINT, signal.SIGTERM)
    folder = Path(cfg.folder)
    (folder / "started").touch()
    try:
        for _ in range(6000):
            time.sleep(0.1)
    except KeyboardInterrupt:
        (folder / "dropped").touch()
    try:
        for _ in range(6000):
            time.sleep(0.1)
    finally:
        (folder / "ended").touch()


if __name__ == "__main__":
    main()
"""


def interrupt_a_job_that_drops_it(tmp_path: Path, *launcher: str) -> str:
    """A one-job sweep of DROPS_ITS_FIRST_INTERRUPT on `launcher`, Ctrl-C once the job runs: the launcher must stop
    the job, though it drops its first interrupt, before the launcher's minute for that is up. Its output."""
    app = tmp_path / "app.py"
    app.write_text(DROPS_ITS_FIRST_INTERRUPT)
    command = [sys.executable, str(app), "-m", *launcher, f"+folder={tmp_path}", f"hydra.sweep.dir={tmp_path}/sweep"]
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    piped = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True}
    sweep = subprocess.Popen(command, cwd=tmp_path, env=env, start_new_session=True, **piped)
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "started").exists():
            assert sweep.poll() is None and time.monotonic() < deadline, sweep.stdout.read()
            time.sleep(0.2)  # polling for the job's first file, not waiting for anything in particular
        os.killpg(sweep.pid, signal.SIGINT)
        output = sweep.communicate(timeout=50)[0]
    finally:
        with contextlib.suppress(ProcessLookupError):  # what is left of it, where the launcher did not stop
            os.killpg(sweep.pid, signal.SIGKILL)
    assert (tmp_path / "dropped").exists() and (tmp_path / "ended").exists(), output
    return output

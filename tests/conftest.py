"""Shared fixtures: the real Fashion-MNIST (Debian's copy), Hydra composition, and the real CLI."""

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize
from mlflow.tracking import MlflowClient

from softmax_exp import data
from softmax_exp.config import PROJECT_ROOT
from softmax_exp.prepare import prepare_group
from softmax_exp.train import TrainResult, train

# A process started in the background by a non-interactive shell ignores SIGINT, and so would every CLI the
# tests start (exec keeps an ignored signal ignored): the Ctrl-C tests need the CLI to hear it.
signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def fashion_mnist() -> data.FashionMNIST:
    if not data.DEBIAN_ROOT.is_dir():
        pytest.fail(f"Fashion-MNIST is missing: {data.HOW_TO_GET} (scripts/test.sh does this)")
    return data.load(str(data.DEBIAN_ROOT))


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


def run_cli(
    tmp_path: Path, *args: str, module: str = "softmax_exp", timeout: float = 240
) -> subprocess.CompletedProcess:
    """`python -m softmax_exp ARGS` in a subprocess, from a foreign working directory, writing under tmp_path."""
    hydra_dirs = [f"hydra.run.dir={tmp_path}/run", f"hydra.sweep.dir={tmp_path}/sweep"]
    command = [sys.executable, "-m", module, *args, *(hydra_dirs if module == "softmax_exp" else [])]
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)


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

"""The vectorized launcher through the real CLI: every job of a sweep in one process, trained in lock-step,
each still its own Hydra job and MLflow run, with the numbers the one-by-one launcher gives it."""

import os
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import mlflow.pytorch
import pytest
import torch
from mlflow.tracking import MlflowClient

from softmax_exp.data import to_unit_interval
from softmax_exp.run_keys import SWEEP_TAG

from .conftest import copy_of, run_cli, start_cli

SMALL = ("epochs=2", "data.limit=3000")
# Each loss x labels combination and two seeds, with the hand-written optimizer (the other sweeps here use
# torch's): 8 jobs. All 16 loss x optimizer x labels x seed combinations, trained in lock-step and each
# alone, are compared in tests/test_train.py, in this process: here, what the launcher adds.
GRID = ("loss=scratch,torch", "optimizer=scratch", "labels=hard,soft", "seed=0,1", "lr=0.05")
HISTORY_KEYS = ("train_loss", "train_acc", "test_acc", "epoch_seconds")


def sweep(folder: Path, empty_store: Path, launcher: str, *overrides: str) -> SimpleNamespace:
    uri = copy_of(empty_store, folder)
    result = run_cli(folder, "-m", f"hydra/launcher={launcher}", *overrides, *SMALL, f"tracking.uri={uri}")
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("softmax_exp").experiment_id], max_results=100)
    children = {r.info.run_name: r for r in runs if SWEEP_TAG not in r.data.tags}
    return SimpleNamespace(result=result, client=client, runs=runs, children=children, dir=folder / "sweep")


def histories(run_sweep: SimpleNamespace) -> dict[str, dict[str, list[float]]]:
    return {
        name: {
            key: [m.value for m in run_sweep.client.get_metric_history(run.info.run_id, key)] for key in HISTORY_KEYS
        }
        for name, run in run_sweep.children.items()
    }


@pytest.fixture(scope="module")
def vectorized(tmp_path_factory, empty_store):
    return sweep(tmp_path_factory.mktemp("vectorized"), empty_store, "vectorized", *GRID)


def test_the_launcher_is_found_by_hydras_plugin_scan_from_the_installed_package(tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}  # the install, not the checkout
    result = subprocess.run(
        [sys.executable, "-m", "softmax_exp", "--info", "plugins"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert "VectorizedLauncher" in result.stdout, result.stdout + result.stderr


@pytest.mark.fast
def test_the_terminal_shows_one_line_per_epoch_for_the_group(vectorized):
    lines = vectorized.result.stdout.splitlines()
    group_lines = [line for line in lines if "jobs training=8" in line]
    assert len(group_lines) == 2 and "test_acc lowest=" in group_lines[0] and "median=" in group_lines[0]
    assert not any("train_loss=" in line for line in lines)  # each job's own lines went to its log
    assert "Vectorized launcher: 8 jobs" in vectorized.result.stdout


@pytest.mark.fast
def test_each_job_is_a_complete_child_run(vectorized, fashion_mnist, tmp_path):
    client = vectorized.client
    parent = next(r for r in vectorized.runs if r.data.tags.get(SWEEP_TAG) == "true")
    assert {r.info.status for r in vectorized.runs} == {"FINISHED"} and len(vectorized.runs) == 9
    for run in vectorized.children.values():
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert {"lr", "seed", "loss", "labels", "optimizer", "batch_size", "data.limit"} <= run.data.params.keys()
        assert {f"final_{key}" for key in ("train_loss", "train_acc", "test_acc")} <= run.data.metrics.keys()
    run = vectorized.children["loss=scratch,optimizer=scratch,labels=soft,seed=1,lr=0.05,epochs=2,data.limit=3000"]
    assert run.data.params["seed"] == "1" and run.data.params["labels.smoothing"] == "0.1"
    paths = {a.path for a in client.list_artifacts(run.info.run_id)}
    paths |= {a.path for a in client.list_artifacts(run.info.run_id, "hydra")}
    expected = {"hydra/config.yaml", "hydra/hydra.yaml", "hydra/overrides.yaml", "softmax_exp.log"}
    assert expected | {"learning_curves.png", "confusion_matrix.png", "confusion_matrix.csv"} <= paths
    folder = Path(client.download_artifacts(run.info.run_id, "", str(tmp_path)))
    log_lines = (folder / "softmax_exp.log").read_text().splitlines()
    assert [line.split("]")[-1].split()[:2] for line in log_lines if "epoch" in line] == [
        ["epoch", "1"],
        ["epoch", "2"],
    ]
    assert f"test_acc={run.data.metrics['final_test_acc']:.4f}" in log_lines[-1]
    assert (folder / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"
    mlflow.set_tracking_uri(client.tracking_uri)
    model = mlflow.pytorch.load_model(f"runs:/{run.info.run_id}/model")
    with torch.no_grad():
        predicted = model(to_unit_interval(fashion_mnist.test.images)).argmax(dim=1)
    accuracy = (predicted == fashion_mnist.test.labels).float().mean().item()
    assert accuracy == pytest.approx(run.data.metrics["final_test_acc"], abs=1e-4)


def test_every_job_gets_the_numbers_and_the_folder_the_one_by_one_launcher_gives_it(
    vectorized, tmp_path_factory, empty_store
):
    """The same sweep on Hydra's basic launcher, one job after another: in one test, so that it runs once."""
    one_by_one = sweep(tmp_path_factory.mktemp("basic"), empty_store, "basic", *GRID)
    assert vectorized.result.returncode == 0, vectorized.result.stdout + vectorized.result.stderr
    assert one_by_one.result.returncode == 0, one_by_one.result.stdout + one_by_one.result.stderr
    together, alone = histories(vectorized), histories(one_by_one)
    assert len(together) == 8 and together.keys() == alone.keys()
    for name, history in together.items():
        assert len(history["test_acc"]) == 2, name
        assert history["train_loss"] == pytest.approx(alone[name]["train_loss"], abs=1e-4), name
        for key in ("train_acc", "test_acc"):
            assert history[key] == pytest.approx(alone[name][key], abs=1e-3), (name, key)
    # the grid really is 8 different jobs: labels and seeds change the numbers
    assert len({history["train_loss"][-1] for history in together.values()}) >= 4

    def files(root: Path) -> set[str]:
        return {str(path.relative_to(root)) for path in root.rglob("*") if path.is_file()}

    assert files(vectorized.dir) == files(one_by_one.dir)
    assert "7/.hydra/overrides.yaml" in files(vectorized.dir) and "7/softmax_exp.log" in files(vectorized.dir)
    for job in ("0", "7"):
        for record in ("config.yaml", "overrides.yaml"):
            path = Path(job, ".hydra", record)
            assert (vectorized.dir / path).read_text() == (one_by_one.dir / path).read_text().replace(
                "basic", "vectorized"
            )
        hydra_yaml = (vectorized.dir / job / ".hydra" / "hydra.yaml").read_text()
        assert f"num: {job}\n" in hydra_yaml and f"output_dir: {vectorized.dir / job}\n" in hydra_yaml


def test_an_invalid_job_and_a_diverging_job_fail_alone(tmp_path, empty_store):
    failing = sweep(tmp_path, empty_store, "vectorized", "lr=0.1,-1,1e38", "seed=0,1")
    output = failing.result.stdout + failing.result.stderr
    assert failing.result.returncode == 1 and "Traceback" not in output
    status = {name: run.info.status for name, run in failing.children.items()}
    assert sorted(status.values()) == ["FAILED"] * 4 + ["FINISHED"] * 2
    for seed in (0, 1):
        invalid = failing.children[f"lr=-1,seed={seed},epochs=2,data.limit=3000"]
        assert invalid.data.tags["error"] == "lr=-1.0: the learning rate must be a positive number"
        diverged = failing.children[f"lr=1e+38,seed={seed},epochs=2,data.limit=3000"]
        assert diverged.data.tags["error"].startswith("training diverged at epoch 1: train_loss=nan")
        nan_loss = failing.client.get_metric_history(diverged.info.run_id, "train_loss")  # the failing epoch
        assert [m.step for m in nan_loss] == [1] and nan_loss[0].value != nan_loss[0].value
        trained = failing.children[f"lr=0.1,seed={seed},epochs=2,data.limit=3000"]
        assert len(failing.client.get_metric_history(trained.info.run_id, "test_acc")) == 2
    assert "error: lr=-1.0: the learning rate must be a positive number" in output
    assert "error: 4 of 6 jobs failed" in output
    assert "RUNNING" not in {r.info.status for r in failing.runs}


def test_ctrl_c_ends_every_run_killed(tmp_path, store):
    """(SIGTERM ends in the same handler: tests/test_faults.py sends it to the other launchers.)"""
    uri = store
    long_sweep = ("-m", "hydra/launcher=vectorized", "lr=0.1,0.05,0.01", "epochs=500", "data.limit=3000")
    process = start_cli(tmp_path, *long_sweep, f"tracking.uri={uri}")
    for line in process.stdout:
        if "jobs training=3" in line:  # the group is training: every job's run is open
            break
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 130
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("softmax_exp").experiment_id])
    assert len(runs) == 4 and {r.info.status for r in runs} == {"KILLED"}

"""Runs and sweeps through the real CLI, tracked in a real MLflow store (SQLite, and an `mlflow server`)."""

import csv
import hashlib
import json
import math
import shutil
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path
from types import SimpleNamespace

import mlflow.pyfunc
import mlflow.pytorch
import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from softmax_exp import tracking
from softmax_exp.data import DEBIAN_ROOT, to_unit_interval
from softmax_exp.job import Job
from softmax_exp.jobs import run_jobs
from softmax_exp.run_keys import SWEEP_TAG
from softmax_exp.schema import PROJECT_ROOT

from .conftest import compose_config, copy_of, free_port, run_cli

QUICK = ("epochs=2", "data.limit=5000")


def runs_of(uri: str, experiment: str = "softmax_exp"):
    client = MlflowClient(uri)
    return client, client.search_runs([client.get_experiment_by_name(experiment).experiment_id], max_results=100)


@pytest.fixture(scope="module")
def single_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("single")
    uri = f"sqlite:///{folder}/mlflow.db"
    result = run_cli(folder, *QUICK, f"tracking.uri={uri}")
    assert result.returncode == 0, result.stdout + result.stderr
    shutil.copy(folder / "mlflow.db", folder / "copied.db")  # the file alone, as the process left it
    client, runs = runs_of(uri)
    assert len(runs) == 1
    return SimpleNamespace(folder=folder, uri=uri, client=client, run=runs[0], stdout=result.stdout)


@pytest.mark.fast
def test_the_local_store_commits_through_a_write_ahead_log_and_the_database_file_alone_holds_every_run(single_run):
    with closing(sqlite3.connect(single_run.folder / "mlflow.db")) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    _, (copied,) = runs_of(f"sqlite:///{single_run.folder}/copied.db")  # checkpointed as the process ended
    assert copied.info.status == "FINISHED" and copied.data.metrics == single_run.run.data.metrics


@pytest.mark.fast
def test_each_epoch_prints_one_line_of_named_metrics(single_run):
    lines = [line for line in single_run.stdout.splitlines() if line.startswith("epoch")]
    assert len(lines) == 2
    for name in ("train_loss=", "train_acc=", "test_acc=", "seconds=", "max_abs_logit="):
        assert name in lines[0]
    assert "val_acc" not in single_run.stdout  # data.validation=0: the textbook recipe, and its lines


@pytest.mark.fast
def test_a_run_carries_its_name_params_and_tags(single_run):
    run = single_run.run
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "epochs=2,data.limit=5000"
    params = run.data.params
    expected = {"lr": "0.1", "batch_size": "256", "epochs": "2", "seed": "0", "device": "auto", "data.limit": "5000"}
    assert expected.items() <= params.items()
    assert {"loss": "torch", "labels": "hard", "optimizer": "torch", "labels.name": "hard"}.items() <= params.items()
    assert {"data.root", "tracking.uri", "tracking.experiment", "loss.name", "optimizer.name"} <= params.keys()
    tags = run.data.tags
    assert tags["device"] == "cpu" and tags["torch_version"] == torch.__version__ and tags["hydra_version"]
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True)
    if head.returncode == 0:
        assert tags["git_commit"] == head.stdout.strip() and tags["git_dirty"] in ("True", "False")
    else:  # not a git checkout, or no commit yet
        assert "git_commit" not in tags


@pytest.mark.fast
def test_a_run_ends_by_printing_where_to_see_it(single_run):
    run = single_run.run
    url = f"http://127.0.0.1:5000/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
    mlflow_ui = f"{Path(sys.executable).with_name('mlflow')} ui --backend-store-uri {single_run.uri}"
    ui = f"MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false MLFLOW_DISABLE_TELEMETRY=true {mlflow_ui}"
    assert f"run FINISHED: {url}?workflowType=machine_learning once the UI runs: {ui}\n" in single_run.stdout


@pytest.mark.fast
def test_a_run_logs_the_data_it_read_as_dataset_inputs(single_run, fashion_mnist):
    inputs = {i.tags[0].value: i.dataset for i in single_run.run.inputs.dataset_inputs}
    assert [tag.key for i in single_run.run.inputs.dataset_inputs for tag in i.tags] == ["mlflow.data.context"] * 2
    train, test = inputs["train"], inputs["test"]
    assert (train.name, test.name) == ("fashion-mnist train (first 5000)", "fashion-mnist test")
    read = hashlib.sha256(fashion_mnist.test.images.numpy().data)  # the bytes of the files, as read
    read.update(fashion_mnist.test.labels.numpy().data)
    assert test.digest == read.hexdigest()[:16]
    assert len(train.digest) == 16 and train.digest != test.digest
    assert json.loads(train.source)["uri"] in (str(DEBIAN_ROOT), str(PROJECT_ROOT / "data"))


@pytest.mark.fast
def test_a_run_has_a_metric_history_per_epoch(single_run):
    client, run = single_run.client, single_run.run
    for key in ("train_loss", "train_acc", "test_acc", "epoch_seconds", "max_abs_logit"):
        history = client.get_metric_history(run.info.run_id, key)
        assert [m.step for m in history] == [1, 2]
    assert run.data.metrics["labels_changed"] == 0
    assert client.get_metric_history(run.info.run_id, "val_acc") == [] and "final_val_acc" not in run.data.metrics
    test_acc = [m.value for m in client.get_metric_history(run.info.run_id, "test_acc")]
    assert run.data.metrics["final_test_acc"] == test_acc[-1] > 0.65
    assert f"test_acc={test_acc[-1]:.4f}" in single_run.stdout


@pytest.mark.fast
def test_a_run_keeps_config_log_plots_and_confusion_matrix(single_run, tmp_path):
    client, run = single_run.client, single_run.run
    run_id = run.info.run_id
    names = {a.path for a in client.list_artifacts(run_id)} | {a.path for a in client.list_artifacts(run_id, "hydra")}
    expected = {"hydra/config.yaml", "hydra/overrides.yaml", "hydra/hydra.yaml", "softmax_exp.log"}
    assert expected | {"learning_curves.png", "confusion_matrix.png", "confusion_matrix.csv"} <= names
    folder = Path(client.download_artifacts(run_id, "", str(tmp_path)))
    assert "epochs: 2" in (folder / "hydra" / "config.yaml").read_text()
    assert "epoch   2" in (folder / "softmax_exp.log").read_text()
    assert (folder / "learning_curves.png").read_bytes()[:4] == b"\x89PNG"
    rows = list(csv.reader((folder / "confusion_matrix.csv").open()))
    assert rows[0][-1] == "class_accuracy" and len(rows) == 11
    counts = [[int(c) for c in row[1:-1]] for row in rows[1:]]
    assert sum(map(sum, counts)) == 10_000 and all(sum(row) == 1000 for row in counts)
    correct = sum(counts[i][i] for i in range(10))
    assert correct / 10_000 == pytest.approx(run.data.metrics["final_test_acc"])
    assert float(rows[1][-1]) == pytest.approx(counts[0][0] / 1000, abs=1e-4)


@pytest.mark.fast
def test_the_logged_model_loads_and_predicts(single_run, fashion_mnist):
    mlflow.set_tracking_uri(single_run.uri)  # runs:/ URIs resolve against the current store
    model = mlflow.pytorch.load_model(f"runs:/{single_run.run.info.run_id}/model")
    batch = to_unit_interval(fashion_mnist.test.images[:1000])
    with torch.no_grad():
        logits = model(batch)
    assert logits.shape == (1000, 10)
    accuracy = (logits.argmax(1) == fashion_mnist.test.labels[:1000]).float().mean().item()
    assert accuracy > 0.65
    # The generic pyfunc flavor too, which checks its input against the model's signature: 784 float32 pixels.
    pyfunc = mlflow.pyfunc.load_model(f"runs:/{single_run.run.info.run_id}/model")
    assert pyfunc.metadata.get_input_schema().inputs[0].shape == (-1, 784)
    assert np.allclose(pyfunc.predict(batch[:5].numpy()), logits[:5].numpy())


@pytest.fixture(scope="module")
def overflow_sweep(tmp_path_factory, empty_store):
    """experiment=overflow on Hydra's basic launcher, a sweep's default: the naive job diverges, two finish."""
    folder = tmp_path_factory.mktemp("overflow")
    uri = copy_of(empty_store, folder)
    quick = ("hydra/launcher=basic", "epochs=2", "data.limit=3000")
    result = run_cli(folder, "-m", "experiment=overflow", *quick, f"tracking.uri={uri}")
    client, runs = runs_of(uri)
    (parent,) = [r for r in runs if r.data.tags.get(SWEEP_TAG) == "true"]
    jobs = {r.data.params["loss"]: r for r in runs if r is not parent}
    return SimpleNamespace(folder=folder, uri=uri, result=result, client=client, parent=parent, jobs=jobs)


def test_the_overflow_experiment_fails_the_naive_job_alone_naming_exp_overflow(overflow_sweep):
    result, client, parent, jobs = (
        overflow_sweep.result,
        overflow_sweep.client,
        overflow_sweep.parent,
        overflow_sweep.jobs,
    )
    assert result.returncode == 1
    assert "error: training diverged at epoch 1: train_loss=nan, from exp overflow in the unshifted softmax" in (
        result.stdout
    )
    assert "1 of 3 jobs failed (loss=naive,data.pixel_scale=255" in result.stdout and "Joblib" not in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    assert (parent.info.run_name, parent.info.status) == ("experiment=overflow", "FINISHED")
    assert {r.data.tags["mlflow.parentRunId"] for r in jobs.values()} == {parent.info.run_id}
    assert {loss: r.info.status for loss, r in jobs.items()} == {
        "naive": "FAILED", "scratch": "FINISHED", "torch": "FINISHED"
    }  # fmt: skip
    assert "exp overflow in the unshifted softmax of loss=naive" in jobs["naive"].data.tags["error"]
    # The failing epoch is logged: the UI shows the naive job's logits past exp's range, and its loss NaN.
    (crossed,) = client.get_metric_history(jobs["naive"].info.run_id, "max_abs_logit")
    assert crossed.step == 1 and crossed.value > 88.73
    assert math.isnan(client.get_metric_history(jobs["naive"].info.run_id, "train_loss")[0].value)
    for loss in ("scratch", "torch"):
        losses = client.get_metric_history(jobs[loss].info.run_id, "train_loss")
        assert len(losses) == 2 and all(math.isfinite(m.value) for m in losses)


def test_a_sweeps_parent_run_sums_up_its_jobs_and_the_report_prints_them(overflow_sweep, tmp_path):
    client, parent, jobs = overflow_sweep.client, overflow_sweep.parent, overflow_sweep.jobs
    assert parent.data.params["loss"] == "naive,scratch,torch" and parent.data.params["data.pixel_scale"] == "255"
    assert parent.data.params["epochs"] == "2" and parent.data.metrics["jobs_failed"] == 1
    finished = (jobs["scratch"], jobs["torch"])  # the two may tie: the stable softmaxes train alike
    (best,) = [r for r in finished if r.info.run_name == parent.data.tags["best_job"]]
    best_test_acc = max(r.data.metrics["final_test_acc"] for r in finished)
    assert parent.data.metrics["best_test_acc"] == best.data.metrics["final_test_acc"] == best_test_acc
    folder = Path(client.download_artifacts(parent.info.run_id, "", str(tmp_path / "parent")))
    rows = list(csv.DictReader((folder / "sweep_results.csv").open()))
    assert [row["run_name"] for row in rows][0] == best.info.run_name and len(rows) == 3
    assert rows[-1]["status"] == "FAILED" and rows[-1]["run_name"] == jobs["naive"].info.run_name
    assert (folder / "test_acc_vs_lr.png").read_bytes()[:4] == b"\x89PNG"
    runs_view = f"http://127.0.0.1:5000/#/experiments/{parent.info.experiment_id}/runs?workflowType=machine_learning"
    assert f"sweep's runs: {runs_view} once the UI runs: " in overflow_sweep.result.stdout

    report = run_cli(tmp_path, "--uri", overflow_sweep.uri, module="softmax_exp.report")
    assert report.returncode == 0, report.stderr
    table = report.stdout.splitlines()
    assert table[0].startswith(f"sweep experiment=overflow ({parent.info.run_id})")
    assert table[1].split()[0] == "run_name"
    assert table[2].startswith(best.info.run_name) and f"{best.data.metrics['final_test_acc']:.4f}" in table[2]
    assert table[4].startswith(jobs["naive"].info.run_name) and "FAILED" in table[4] and len(table) == 6
    assert table[-1].startswith("n = 1 for every configuration")


def test_a_run_with_a_validation_set_logs_its_accuracy_each_epoch(tmp_path, store):
    result = run_cli(tmp_path, *QUICK, "data.validation=1000", f"tracking.uri={store}")
    assert result.returncode == 0, result.stdout + result.stderr
    client, (run,) = runs_of(store)
    history = sorted(client.get_metric_history(run.info.run_id, "val_acc"), key=lambda metric: metric.step)
    assert [m.step for m in history] == [1, 2] and run.data.metrics["final_val_acc"] == history[-1].value > 0.65
    test_acc = run.data.metrics["final_test_acc"]
    assert f"train_acc={run.data.metrics['final_train_acc']:.4f}  val_acc={history[-1].value:.4f}  " in result.stdout
    assert f"  val_acc={history[-1].value:.4f}  test_acc={test_acc:.4f}  " in result.stdout
    inputs = {i.tags[0].value: i.dataset for i in run.inputs.dataset_inputs}
    assert inputs["train"].name == "fashion-mnist train (less the 1000 held out, first 5000)"
    assert inputs["validation"].name == "fashion-mnist train (the 1000 held out)"
    assert len({dataset.digest for dataset in inputs.values()}) == 3
    assert run.data.params["data.validation"] == "1000"


def test_bad_data_fails_the_run_with_the_reason(tmp_path, store):
    data_root = tmp_path / "broken"
    data_root.mkdir()
    (data_root / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    shutil.copy(DEBIAN_ROOT / "train-labels-idx1-ubyte.gz", data_root)
    result = run_cli(tmp_path, f"data.root={data_root}", f"tracking.uri={store}")
    assert result.returncode == 1
    assert f"error: cannot read {data_root}/train-images-idx3-ubyte.gz" in result.stdout
    assert "apt-get install -y dataset-fashion-mnist" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    _, runs = runs_of(store)
    assert [r.info.status for r in runs] == ["FAILED"]
    assert "train-images-idx3-ubyte.gz" in runs[0].data.tags["error"]


def test_a_dying_sweep_ends_the_runs_its_workers_left_open(store):
    client = MlflowClient(store)
    experiment = client.create_experiment("dying")
    parent = client.create_run(experiment).info.run_id
    nested = {"mlflow.parentRunId": parent}
    running, finished = (client.create_run(experiment, tags=nested).info.run_id for _ in range(2))
    client.set_terminated(finished, "FINISHED")
    tracking.open_runs[parent] = store
    tracking.end_open_runs("KILLED")
    assert parent not in tracking.open_runs
    status = {run_id: client.get_run(run_id).info.status for run_id in (parent, running, finished)}
    assert status == {parent: "KILLED", running: "KILLED", finished: "FINISHED"}


def test_a_run_tracked_on_an_mlflow_server(mlflow_server, tmp_path, fashion_mnist):
    result = run_cli(tmp_path, *QUICK, f"tracking.uri={mlflow_server}", "tracking.experiment=remote")
    assert result.returncode == 0, result.stdout + result.stderr
    client, runs = runs_of(mlflow_server, "remote")
    assert [r.info.status for r in runs] == ["FINISHED"]
    run_id = runs[0].info.run_id
    run_page = f"{mlflow_server}/#/experiments/{runs[0].info.experiment_id}/runs/{run_id}"
    assert f"run FINISHED: {run_page}?workflowType=machine_learning\n" in result.stdout
    assert len(client.get_metric_history(run_id, "test_acc")) == 2
    assert {"learning_curves.png", "confusion_matrix.csv"} <= {a.path for a in client.list_artifacts(run_id)}
    mlflow.set_tracking_uri(mlflow_server)
    model = mlflow.pytorch.load_model(f"runs:/{run_id}/model")
    assert model(to_unit_interval(fashion_mnist.test.images[:8])).shape == (8, 10)


@pytest.mark.parametrize("mode", [[], ["-m", "lr=0.1,0.2"]])
def test_an_unreachable_tracking_server_fails_fast_before_any_work(tmp_path, mode):
    start = time.monotonic()
    result = run_cli(tmp_path, *mode, f"tracking.uri=http://127.0.0.1:{free_port()}", timeout=60)
    assert result.returncode == 1
    output = result.stdout + result.stderr
    assert "MLflow tracking server http://127.0.0.1:" in output and "is unreachable" in output
    assert "epoch" not in output and "Launching" not in output and "Traceback" not in output
    assert time.monotonic() - start < 30


def test_run_jobs_works_without_hydra_and_returns_its_final_metrics(store, fashion_mnist):
    """The job function alone, as a notebook or another tool would call it: no Hydra run, no output folder."""
    cfg = compose_config("epochs=1", "data.limit=3000", f"tracking.uri={store}")
    (metrics,) = run_jobs([Job(cfg)])
    client, runs = runs_of(store)
    assert [(r.info.run_name, r.info.status) for r in runs] == [("defaults", "FINISHED")]
    assert metrics["status"] == "FINISHED" and metrics["epoch"] == 1
    assert metrics["test_acc"] == runs[0].data.metrics["final_test_acc"] > 0.5
    assert "confusion_matrix.csv" in {a.path for a in client.list_artifacts(runs[0].info.run_id)}

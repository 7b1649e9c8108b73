"""Soft labels from a real teacher: a model trained by the job function into a real MLflow store, loaded by URI."""

import re
from pathlib import Path
from types import SimpleNamespace

import mlflow
import mlflow.pytorch
import pytest
import torch
from mlflow.tracking import MlflowClient
from torch import nn

from softmax_exp.errors import TeacherError
from softmax_exp.job import Job
from softmax_exp.jobs import run_jobs
from softmax_exp.labels import build_targets, smooth
from softmax_exp.teacher import load_teacher

from .conftest import compose_config, copy_of, run_cli

CPU = torch.device("cpu")
QUICK = ("epochs=1", "data.limit=3000")


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory, empty_store):
    """A teacher trained as `python -m softmax_exp` trains it, in this process (2 epochs), logged at
    runs:/<id>/model. The CLI's own run: tests/test_tracking.py."""
    uri = copy_of(empty_store, tmp_path_factory.mktemp("teacher"))
    (result,) = run_jobs([job("epochs=2", "data.limit=5000", f"tracking.uri={uri}", "tracking.experiment=teachers")])
    assert result["status"] == "FINISHED", result
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("teachers").experiment_id])
    return SimpleNamespace(uri=uri, run=run, model_uri=f"runs:/{run.info.run_id}/model")


def job(*overrides: str) -> Job:
    return Job(compose_config(*overrides), overrides=list(overrides))


def teacher_cfg(model_uri: str, *overrides: str):
    return compose_config("labels=teacher", f"labels.teacher={model_uri}", *overrides)


@pytest.mark.fast
def test_teacher_targets_are_distributions_equal_to_the_formula(teacher_run, fashion_mnist):
    cfg = teacher_cfg(teacher_run.model_uri, "labels.temperature=3", "labels.alpha=0.7")
    teacher = load_teacher(teacher_run.model_uri, teacher_run.uri, fashion_mnist.test, CPU)
    images, labels = fashion_mnist.train.images[:2000], fashion_mnist.train.labels[:2000]
    targets = build_targets(cfg.labels, labels, images, teacher)
    torch.testing.assert_close(targets.sum(dim=1), torch.ones(2000))
    # The formula, computed apart with torch's own softmax on the logged model, loaded on its own.
    mlflow.set_tracking_uri(teacher_run.uri)
    model = mlflow.pytorch.load_model(teacher_run.model_uri)
    with torch.no_grad():
        logits = model(images.float() / 255)
    expected = 0.7 * torch.softmax(logits / 3, dim=1) + 0.3 * nn.functional.one_hot(labels, 10).float()
    torch.testing.assert_close(targets, expected)
    assert (targets.argmax(dim=1) == labels).float().mean() > 0.7  # the teacher mostly agrees with the labels


def test_the_teacher_is_measured_and_traced_to_its_run(teacher_run, fashion_mnist):
    teacher = load_teacher(teacher_run.model_uri, teacher_run.uri, fashion_mnist.test, CPU)
    assert teacher.run_id == teacher_run.run.info.run_id
    assert teacher.test_acc == pytest.approx(teacher_run.run.data.metrics["final_test_acc"], abs=1e-9)


@pytest.mark.fast
def test_an_infinite_temperature_is_label_smoothing_with_eps_alpha(teacher_run, fashion_mnist):
    cfg = teacher_cfg(teacher_run.model_uri, "labels.temperature=inf", "labels.alpha=0.1")
    teacher = load_teacher(teacher_run.model_uri, teacher_run.uri, fashion_mnist.test, CPU)
    labels = fashion_mnist.train.labels[:500]
    targets = build_targets(cfg.labels, labels, fashion_mnist.train.images[:500], teacher)
    torch.testing.assert_close(targets, smooth(labels, 0.1))


def test_a_registered_model_teaches_too(teacher_run, fashion_mnist):
    mlflow.set_tracking_uri(teacher_run.uri)  # the registry lives in the tracking store
    version = mlflow.register_model(teacher_run.model_uri, "fashion-teacher")
    teacher = load_teacher(f"models:/fashion-teacher/{version.version}", teacher_run.uri, fashion_mnist.test, CPU)
    assert teacher.run_id == teacher_run.run.info.run_id


@pytest.fixture(scope="module")
def misfits(teacher_run):
    """Models of the wrong shapes, logged in the teacher's store: (URI, what the error must say)."""
    mlflow.set_tracking_uri(teacher_run.uri)
    models = {
        "five_classes": (nn.Linear(784, 5), "must give 10 logits per image, but maps (2, 784) to (2, 5)"),
        "small_images": (nn.Linear(100, 10), "the model does not take rows of 784 pixels"),
    }
    uris = []
    with mlflow.start_run(experiment_id=teacher_run.run.info.experiment_id) as run:
        for name, (model, message) in models.items():
            mlflow.pytorch.log_model(model, name=name, serialization_format="pickle", pip_requirements=[])
            uris.append((f"runs:/{run.info.run_id}/{name}", message))
    return uris


def test_a_teacher_of_the_wrong_shape_is_refused(teacher_run, misfits, fashion_mnist):
    for uri, message in misfits:
        with pytest.raises(TeacherError, match=re.escape(message)) as error:
            load_teacher(uri, teacher_run.uri, fashion_mnist.test, CPU)
        assert str(error.value).startswith(f"labels.teacher={uri}: ") and "\n" not in str(error.value)


@pytest.mark.parametrize(
    "uri", ["runs:/0123456789abcdef0123456789abcdef/model", "models:/no-such-model/1", "not a uri at all"]
)
def test_an_unloadable_teacher_is_one_line(teacher_run, fashion_mnist, uri):
    with pytest.raises(TeacherError, match="cannot load a PyTorch model from it") as error:
        load_teacher(uri, teacher_run.uri, fashion_mnist.test, CPU)
    assert "\n" not in str(error.value)


def test_a_student_run_records_its_teacher_and_its_noise(teacher_run):
    uri = teacher_run.uri
    (result,) = run_jobs([job(
        *QUICK, "labels=teacher", f"labels.teacher={teacher_run.model_uri}", "data.label_noise=0.2",
        f"tracking.uri={uri}", "tracking.experiment=students",
    )])  # fmt: skip
    assert result["status"] == "FINISHED", result
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("students").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["labels.teacher"] == teacher_run.model_uri
    assert run.data.params["labels.temperature"] == "2.0" and run.data.params["labels.alpha"] == "0.5"
    assert run.data.tags["teacher_run_id"] == teacher_run.run.info.run_id
    assert run.data.metrics["teacher_test_acc"] == teacher_run.run.data.metrics["final_test_acc"]
    assert run.data.metrics["labels_changed"] == 600


def test_a_bad_teacher_fails_the_run_before_any_training(tmp_path: Path, store):
    uri = store
    bad = "runs:/0123456789abcdef0123456789abcdef/model"
    result = run_cli(tmp_path, *QUICK, "labels=teacher", f"labels.teacher={bad}", f"tracking.uri={uri}")
    assert result.returncode == 1
    output = result.stdout + result.stderr
    assert f"error: labels.teacher={bad}: cannot load a PyTorch model from it" in output
    assert "epoch" not in output and "Traceback" not in output
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("softmax_exp").experiment_id])
    assert run.info.status == "FAILED" and run.data.tags["error"].startswith(f"labels.teacher={bad}: ")
    assert not client.get_metric_history(run.info.run_id, "train_loss")


def test_a_lockstep_group_with_a_good_a_missing_and_a_misfit_teacher_fails_only_the_bad_two(
    tmp_path: Path, teacher_run, misfits
):
    """Each job is prepared on its own: a teacher that cannot teach ends its job alone, before the group trains."""
    missing = "runs:/0123456789abcdef0123456789abcdef/model"
    (misfit, misfit_message), _ = misfits
    teachers = [teacher_run.model_uri, missing, misfit]
    result = run_cli(
        tmp_path, "-m", "hydra/launcher=vectorized", *QUICK, "labels=teacher", f"labels.teacher={','.join(teachers)}",
        f"tracking.uri={teacher_run.uri}", "tracking.experiment=lockstep_students",
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 1 and "Traceback" not in output  # a sweep with failed jobs says so, and exits 1
    assert "error: 2 of 3 jobs failed" in output
    client = MlflowClient(teacher_run.uri)
    experiment = client.get_experiment_by_name("lockstep_students").experiment_id
    runs = {run.data.params["labels.teacher"]: run for run in client.search_runs([experiment], "params.seed = '0'")}
    good = runs[teacher_run.model_uri]
    assert good.info.status == "FINISHED" and "error" not in good.data.tags
    assert good.data.tags["teacher_run_id"] == teacher_run.run.info.run_id
    assert len(client.get_metric_history(good.info.run_id, "train_loss")) == 1
    for uri, message in ((missing, "cannot load a PyTorch model from it"), (misfit, misfit_message)):
        run = runs[uri]
        assert run.info.status == "FAILED" and run.data.tags["error"].startswith(f"labels.teacher={uri}: ")
        assert message in run.data.tags["error"] and not client.get_metric_history(run.info.run_id, "train_loss")

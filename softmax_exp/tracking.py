"""MLflow tracking: one run per job, with its config, per-epoch metrics, plots and model.

In a sweep, sweep.py creates the parent run in the launching process and passes its id to the jobs
through PARENT_RUN_ENV, so each job's run is nested under it, whichever launcher runs the jobs.
"""

import csv
import functools
import io
import logging
import os
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import hydra
import mlflow
import torch
from mlflow.entities import RunStatus
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

from softmax_exp import plots
from softmax_exp.config import PROJECT_ROOT
from softmax_exp.data import CLASSES, Split, to_unit_interval
from softmax_exp.errors import TrackingError
from softmax_exp.train import EpochMetrics, TrainResult, predict

PARENT_RUN_ENV = "SOFTMAX_EXP_PARENT_RUN_ID"
SWEEP_TAG = "softmax_exp.sweep"  # marks parent runs, so the report can find the latest sweep
GROUPS = ("loss", "labels", "optimizer")
FINAL_KEYS = ("train_loss", "train_acc", "test_acc")
NOT_CHOICES = ("experiment=", "tracking.", "data.root=")  # the sweep's name, and where data and runs live

# Our own model in our own store: MLflow's warning that pickles can run code would only be noise here.
logging.getLogger("mlflow.pytorch").setLevel(logging.ERROR)

# Runs this process opened and must close if it dies: run id -> tracking uri.
open_runs: dict[str, str] = {}


@dataclass
class JobInfo:
    """What Hydra knows about the running job; empty when a job is run without Hydra (tests, notebooks)."""

    overrides: list[str] = field(default_factory=list)
    output_dir: Path | None = None

    @property
    def run_name(self) -> str:
        """The job's choices, e.g. `loss=scratch,labels=soft,lr=0.05`."""
        return ",".join(choices(self.overrides)) or "defaults"


def choices(overrides: list[str]) -> list[str]:
    """The overrides that change the experiment, less where data and runs live and the sweep's name."""
    return [o for o in overrides if not o.lstrip("+~").startswith(NOT_CHOICES)]


def check_reachable(uri: str) -> None:
    """Fail in seconds, not after MLflow's minutes of retries, when a tracking server does not answer."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=5):
            pass
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise TrackingError(
            f"MLflow tracking server {uri} is unreachable ({reason}): start it with "
            "`mlflow server --host 127.0.0.1 --port 5000`, or drop tracking.uri to use the local store"
        ) from None


def experiment_id(uri: str, name: str) -> str:
    """The experiment's id, creating it on first use; a local store keeps its artifacts beside the database."""
    check_reachable(uri)
    client = MlflowClient(uri)
    artifact_location = None
    if uri.startswith("sqlite:///"):
        database = Path(uri.removeprefix("sqlite:///"))
        database.parent.mkdir(parents=True, exist_ok=True)
        artifact_location = (database.parent / "mlartifacts").as_uri()
    try:
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            try:
                return client.create_experiment(name, artifact_location=artifact_location)
            except MlflowException:  # a parallel job created it first
                experiment = client.get_experiment_by_name(name)
    except MlflowException as error:
        raise TrackingError(f"MLflow tracking store {uri} failed: {error.message}") from None
    if experiment.lifecycle_stage == "deleted":
        raise TrackingError(
            f"MLflow experiment {name!r} is deleted: restore it in the UI, or choose tracking.experiment=NEW_NAME"
        )
    return experiment.experiment_id


@functools.cache  # the code that runs is the code this process imported: read its git state once
def git_tags() -> dict[str, str]:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True).stdout

    try:
        return {"git_commit": git("rev-parse", "HEAD").strip(), "git_dirty": str(bool(git("status", "--porcelain")))}
    except (OSError, subprocess.CalledProcessError):  # not a git checkout, or no git installed
        return {}


def flat_params(cfg: DictConfig) -> dict[str, str]:
    """The resolved config as `a.b=value` pairs, plus the option chosen in each config group."""

    def flatten(node: dict, prefix: str = "") -> Iterator[tuple[str, str]]:
        for key, value in node.items():
            if isinstance(value, dict):
                yield from flatten(value, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}", str(value)

    params = dict(flatten(OmegaConf.to_container(cfg, resolve=True)))
    params.update({group: cfg[group].name for group in GROUPS})
    return params


def confusion_counts(model: torch.nn.Module, test: Split, device: torch.device, scale: float = 1.0) -> list[list[int]]:
    """counts[true][predicted] over the test set, pixels fed in [0, scale]."""
    predicted = predict(model, test.images.to(device), scale).cpu()
    return (
        torch.bincount(test.labels * len(CLASSES) + predicted, minlength=len(CLASSES) ** 2)
        .view(len(CLASSES), -1)
        .tolist()
    )


def csv_text(rows: list[list]) -> str:
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows(rows)
    return text.getvalue()


def confusion_csv(counts: list[list[int]]) -> str:
    """The confusion matrix with each true class's accuracy (recall) in the last column."""
    header = ["true \\ predicted", *CLASSES, "class_accuracy"]
    return csv_text(
        [header] + [[CLASSES[true], *row, f"{row[true] / sum(row):.4f}"] for true, row in enumerate(counts)]
    )


class JobRun:
    """The MLflow run of one job, open while the job trains."""

    def __init__(self, run_id: str, job: JobInfo):
        self.run_id = run_id
        self.job = job

    def log_epoch(self, metrics: EpochMetrics) -> None:
        values = asdict(metrics)
        mlflow.log_metrics({k: v for k, v in values.items() if k != "epoch"}, step=values["epoch"])

    def log_result(self, result: TrainResult, test: Split) -> None:
        """Final metrics, learning curves, test confusion matrix and the model."""
        mlflow.log_metrics({f"final_{key}": result.final[key] for key in FINAL_KEYS})
        mlflow.log_metric("labels_changed", result.labels_changed)
        if result.teacher is not None:
            mlflow.log_metric("teacher_test_acc", result.teacher.test_acc)
            mlflow.set_tag("teacher_run_id", result.teacher.run_id or "none (a model saved outside any run)")
        mlflow.log_figure(plots.learning_curves([asdict(m) for m in result.history]), "learning_curves.png")
        counts = confusion_counts(result.model, test, result.device, result.pixel_scale)
        mlflow.log_figure(plots.confusion_matrix(counts, CLASSES), "confusion_matrix.png")
        mlflow.log_text(confusion_csv(counts), "confusion_matrix.csv")
        five_rows = to_unit_interval(test.images[:5], scale=result.pixel_scale).numpy()  # 784 pixels: the signature
        mlflow.pytorch.log_model(
            result.model.cpu(),
            name="model",
            input_example=five_rows,
            serialization_format="pickle",  # the default, torch.export, adds seconds for a one-layer model
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],  # skips MLflow's slow inference
        )

    def log_job_files(self) -> None:
        """Hydra's record of the job (.hydra/: config, overrides) and its log, as they stand now."""
        folder = self.job.output_dir
        if folder is None:
            return
        if (folder / ".hydra").is_dir():
            mlflow.log_artifacts(str(folder / ".hydra"), "hydra")
        for log_file in folder.glob("*.log"):
            mlflow.log_artifact(str(log_file))


@contextmanager
def job_run(cfg: DictConfig, job: JobInfo, device: torch.device) -> Iterator[JobRun]:
    """An MLflow run around one job: FINISHED, FAILED (with the reason) or KILLED, never left RUNNING."""
    experiment = experiment_id(cfg.tracking.uri, cfg.tracking.experiment)
    mlflow.set_tracking_uri(cfg.tracking.uri)
    tags = {"torch_version": torch.__version__, "hydra_version": hydra.__version__, "device": str(device), **git_tags()}
    run = mlflow.start_run(
        experiment_id=experiment, run_name=job.run_name, parent_run_id=os.environ.get(PARENT_RUN_ENV), tags=tags
    )
    open_runs[run.info.run_id] = cfg.tracking.uri
    tracker = JobRun(run.info.run_id, job)
    status = RunStatus.to_string(RunStatus.FAILED)
    try:
        mlflow.log_params(flat_params(cfg))
        yield tracker
        status = RunStatus.to_string(RunStatus.FINISHED)
    except KeyboardInterrupt:
        status = RunStatus.to_string(RunStatus.KILLED)
        mlflow.set_tag("error", "interrupted (Ctrl-C or SIGTERM)")
        raise
    except BaseException as error:
        mlflow.set_tag("error", str(error) or type(error).__name__)
        raise
    finally:
        try:
            tracker.log_job_files()
        finally:
            mlflow.end_run(status)
            open_runs.pop(run.info.run_id, None)


def end_open_runs(status: str) -> None:
    """Close what a dying process still has open, so nothing stays RUNNING: a sweep's parent run, and the
    runs of its jobs that a parallel launcher's workers were stopped before closing."""
    for run_id, uri in list(open_runs.items()):
        client = MlflowClient(uri)
        experiment = client.get_run(run_id).info.experiment_id
        unfinished = f"tags.mlflow.parentRunId = '{run_id}' and attributes.status = 'RUNNING'"
        for child in client.search_runs([experiment], unfinished, max_results=10_000):
            client.set_terminated(child.info.run_id, status)
        client.set_terminated(run_id, status)
        open_runs.pop(run_id)

"""MLflow tracking: one run per job, with its config, per-epoch metrics, plots and model.

In a sweep, sweep.py creates the parent run in the launching process, and each job finds it in the store
(nesting.py), so each job's run is nested under it, whichever launcher runs the jobs and wherever.
"""

import csv
import functools
import io
import json
import logging
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import hydra
import mlflow
import numpy as np
import torch
from mlflow.entities import DatasetInput, Metric, Param, RunStatus, RunTag
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.tracking.context.registry import resolve_tags
from mlflow.types import Schema, TensorSpec
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
from mlflow.utils.validation import MAX_METRICS_PER_BATCH
from omegaconf import DictConfig, OmegaConf

import softmax_exp.sqlite_wal  # noqa: F401  puts every SQLite store this process opens in WAL mode
from softmax_exp import disk, interrupts, links, nesting, replicates, store
from softmax_exp.data import CLASSES
from softmax_exp.errors import JobError
from softmax_exp.job import Job
from softmax_exp.model import PIXELS
from softmax_exp.prepare import PreparedJob
from softmax_exp.run_keys import FINAL_KEYS, GROUPS, JOB_TAG, OWN_FAILURE_TAG, PRUNED_TAG, TRIAL_TAG
from softmax_exp.schema import PROJECT_ROOT
from softmax_exp.train import EpochMetrics, TrainResult

METRICS_EVERY = 1.0  # seconds: a run's per-epoch metrics are written at most this often, and as it ends

log = logging.getLogger(__name__)

# Our own model in our own store: MLflow's warning that pickles can run code would only be noise here.
logging.getLogger("mlflow.pytorch").setLevel(logging.ERROR)
# MLflow logs each failed write to the store with its traceback, then raises it (or hands it to wait()). The
# raised error is what the suite says, in one line when the disk is full (disk.py): the log would bury it.
for name in ("mlflow.store.db.utils", "mlflow.utils.async_logging.async_logging_queue"):
    logging.getLogger(name).setLevel(logging.CRITICAL)

# Runs this process opened and must close if it dies: run id -> tracking uri.
open_runs: dict[str, str] = {}


@functools.cache  # one look-up per process, not one per job of a sweep
def experiment_id(uri: str, name: str) -> str:
    """The experiment's id, creating it on first use, once the settings are accepted (store.check_for_writing);
    a local store keeps its artifacts beside the database."""
    store.check_for_writing(uri, name)
    artifact_location = None
    if database := store.sqlite_path(uri):
        artifact_location = (database.parent / "mlartifacts").as_uri()
    try:
        with store.creating(uri):
            client = MlflowClient(uri)  # opens the store: for a new one, MLflow creates its tables here
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                try:
                    return client.create_experiment(name, artifact_location=artifact_location)
                except MlflowException:  # a parallel job created it first
                    experiment = client.get_experiment_by_name(name)
    except MlflowException as error:
        raise disk.said(error, uri) or store.failed(uri, error) from None
    store.check_not_deleted(experiment)
    return experiment.experiment_id


@functools.cache  # MLflow's own run context (user, source): the same for every run of this process
def context_tags() -> dict[str, str]:
    return resolve_tags()


@functools.cache  # the code that runs is the code this process imported: read its git state once
def git_tags() -> dict[str, str]:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True).stdout

    try:
        return {"git_commit": git("rev-parse", "HEAD").strip(), "git_dirty": str(bool(git("status", "--porcelain")))}
    except (OSError, subprocess.CalledProcessError):  # not a git checkout, or no git installed
        return {}


@functools.cache
def model_signature() -> ModelSignature:
    """What every logged model takes and gives: rows of 784 float32 pixels, 10 float32 logits each."""
    pixels, logits = (
        TensorSpec(np.dtype(np.float32), (-1, PIXELS)),
        TensorSpec(np.dtype(np.float32), (-1, len(CLASSES))),
    )
    return ModelSignature(inputs=Schema([pixels]), outputs=Schema([logits]))


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
    params["tracking.uri"] = store.redacted(params["tracking.uri"])  # a password belongs in the environment
    return params


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


def log_files(client: MlflowClient, run_id: str, files: dict[str, bytes]) -> None:
    """Files made in memory (figures drawn by another process, as PNG) as the run's artifacts, by name."""
    with tempfile.TemporaryDirectory() as folder:
        for name, content in files.items():
            (Path(folder) / name).write_bytes(content)
            client.log_artifact(run_id, str(Path(folder) / name))


class JobRun:
    """The MLflow run of one job: opened before it trains, written to as it trains, ended once.

    Written through MlflowClient with the run's id, not MLflow's "active run", so that one process can
    keep the runs of a whole lock-step group open at once. Ctrl-C waits for a write to end (interrupts.py).
    """

    @interrupts.whole()
    def __init__(self, job: Job, device: str, parent_run_id: str | None):
        cfg = job.cfg
        self.uri, self.job = cfg.tracking.uri, job
        self.experiment_id = experiment_id(self.uri, cfg.tracking.experiment)
        self.client = MlflowClient(self.uri)
        tags = {**context_tags(), "torch_version": torch.__version__, "hydra_version": hydra.__version__}
        tags |= {"device": device, **git_tags(), replicates.TAG: job.group, JOB_TAG: json.dumps(job.choices)}
        if parent_run_id is not None:
            tags[MLFLOW_PARENT_RUN_ID] = parent_run_id
        if cfg.pruning.trial is not None:
            tags[TRIAL_TAG] = str(cfg.pruning.trial)
        self.run_id = self.client.create_run(self.experiment_id, run_name=job.name, tags=tags).info.run_id
        open_runs[self.run_id] = self.uri
        self.unsent, self.sent_at = [], time.monotonic()  # per-epoch metrics not yet written, and when last
        self.client.log_batch(self.run_id, params=[Param(key, value) for key, value in flat_params(cfg).items()])

    @interrupts.whole()
    def log_inputs(self, datasets: list[DatasetInput]) -> None:
        """The data the job trained and was tested on (the runs table's Dataset column)."""
        self.client.log_inputs(self.run_id, datasets=datasets)

    def log_epoch(self, metrics: EpochMetrics) -> None:
        """Kept, and written from this thread between epochs in one batch, at most once per METRICS_EVERY and as
        the run ends. Not with MLflow's asynchronous logging: its thread contends with training for the
        interpreter (a 12-job sweep took 13% longer). Nor a write per epoch: epochs of milliseconds (the tests')
        made that hundreds of SQLite transactions a second, and a stopped sweep's launcher once timed out
        waiting for the lock."""
        values = {key: value for key, value in asdict(metrics).items() if value is not None}  # val_acc, if any
        now = int(time.time() * 1000)
        step = values.pop("epoch")
        self.unsent += [Metric(key, value, now, step) for key, value in values.items()]
        if time.monotonic() - self.sent_at >= METRICS_EVERY or len(self.unsent) + len(values) > MAX_METRICS_PER_BATCH:
            self.send_metrics()

    @interrupts.whole()
    def send_metrics(self) -> None:
        if self.unsent:
            self.client.log_batch(self.run_id, metrics=self.unsent)
        self.unsent, self.sent_at = [], time.monotonic()

    @interrupts.whole()
    def log_finals(self, result: TrainResult, prepared: PreparedJob) -> None:
        """Final metrics, with what the job's labels were made of; a pruned trial's runs get these alone."""
        now = int(time.time() * 1000)
        finals = [Metric(f"final_{key}", result.final[key], now, 0) for key in FINAL_KEYS if key in result.final]
        finals.append(Metric("labels_changed", prepared.labels_changed, now, 0))
        tags = []
        if prepared.teacher is not None:
            finals.append(Metric("teacher_test_acc", prepared.teacher.test_acc, now, 0))
            tags.append(RunTag("teacher_run_id", prepared.teacher.run_id or "none (a model saved outside any run)"))
        if result.stopped_at is not None:  # FINISHED all the same: a pruned trial trained well, only not long
            tags.append(RunTag(PRUNED_TAG, str(result.stopped_at)))
        self.client.log_batch(self.run_id, metrics=finals, tags=tags)

    @interrupts.whole()
    def log_result(
        self, result: TrainResult, prepared: PreparedJob, confusion: list[list[int]], figures: dict[str, bytes]
    ) -> None:
        """Final metrics, learning curves, the test confusion matrix (figures as PNG files) and the model."""
        self.log_finals(result, prepared)
        log_files(self.client, self.run_id, figures)
        self.client.log_text(self.run_id, confusion_csv(confusion), "confusion_matrix.csv")
        # log_model finds the store, and the experiment it files the model under, in MLflow's global state.
        mlflow.set_tracking_uri(self.uri)
        mlflow.set_experiment(experiment_id=self.experiment_id)
        mlflow.pytorch.log_model(
            result.model.cpu(),
            name="model",
            run_id=self.run_id,
            # Given, not inferred from an input example: inferring it, and checking the example for serving,
            # reloads and runs every model (a quarter of a sweep's logging time per job).
            signature=model_signature(),
            serialization_format="pickle",  # the default, torch.export, adds seconds for a one-layer model
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],  # skips MLflow's slow inference
        )

    def log_job_files(self) -> None:
        """Hydra's record of the job (.hydra/: config, overrides) and its log, as they stand now."""
        folder = self.job.output_dir
        if folder is None:
            return
        if (folder / ".hydra").is_dir():
            self.client.log_artifacts(self.run_id, str(folder / ".hydra"), "hydra")
        for log_file in folder.glob("*.log"):
            self.client.log_artifact(self.run_id, str(log_file))

    @interrupts.whole()
    def end(self, error: BaseException | None = None) -> None:
        """FINISHED, FAILED (with the reason in tag `error`) or KILLED (Ctrl-C, SIGTERM); once, never RUNNING."""
        if self.run_id not in open_runs:
            return
        status = RunStatus.FINISHED
        if isinstance(error, KeyboardInterrupt):
            status, reason = RunStatus.KILLED, "interrupted (Ctrl-C or SIGTERM)"
        elif error is not None:
            status, reason = RunStatus.FAILED, str(error) or type(error).__name__
        try:
            self.send_metrics()
            if error is not None:
                self.client.set_tag(self.run_id, "error", reason)
            if isinstance(error, JobError):
                self.client.set_tag(self.run_id, OWN_FAILURE_TAG, "true")
            self.log_job_files()
        except Exception as failure:
            if error is None:
                raise  # its last writes failed: still open, job_runs ends it FAILED with this as the reason
            if not disk.is_full(failure):  # on a full disk, what could not be written is lost; the run still ends
                self.close(status)
                raise
        self.close(status)

    def close(self, status: int) -> None:
        """Set the run's status, unless its disk is too full even for that (SQLite needs room for its journal):
        then it stays in open_runs, and end_open_runs tries again as the process exits."""
        try:
            self.client.set_terminated(self.run_id, RunStatus.to_string(status))
        except MlflowException as error:
            if disk.is_full(error):
                return
            raise
        open_runs.pop(self.run_id, None)
        self.job.log.info(
            f"run {RunStatus.to_string(status)}: {links.where_to_look(self.uri, self.experiment_id, self.run_id)}"
        )


@contextmanager
def job_runs(jobs: list[Job], device: str) -> Iterator[list[JobRun]]:
    """Open one run per job, nested under its sweep's parent run if it has one; if anything escapes, end every
    run still open with it (FAILED or KILLED).

    A write refused for want of room escapes as one line that names the full disk (disk.py)."""
    runs, parents = [], {}  # one look-up per sweep, not one per job
    uri, first = jobs[0].cfg.tracking.uri, jobs[0]  # a group's jobs share a store and an outputs folder
    outputs = (first.output_dir, "hydra.run.dir" if first.sweep_dir is None else "hydra.sweep.dir")
    try:
        for job in jobs:
            cfg = job.cfg
            sweep = (cfg.tracking.uri, cfg.tracking.experiment, job.sweep_dir)
            if sweep not in parents:
                experiment = experiment_id(cfg.tracking.uri, cfg.tracking.experiment)
                parents[sweep] = nesting.parent_run_id(MlflowClient(cfg.tracking.uri), experiment, job.sweep_dir)
            runs.append(JobRun(job, device, parents[sweep]))
        yield runs
    except BaseException as error:
        full = disk.said(error, uri, *outputs)
        for run in runs:
            run.end(full or error)
        if full is not None:
            raise full from None
        raise


def end_open_runs(status: str) -> None:
    """Close what a dying process still has open, so nothing stays RUNNING: a sweep's parent run, and the
    runs of its jobs that a parallel launcher's workers were stopped before closing."""
    for run_id, uri in list(open_runs.items()):
        client = MlflowClient(uri)
        try:
            experiment = client.get_run(run_id).info.experiment_id
            unfinished = f"tags.mlflow.parentRunId = '{run_id}' and attributes.status = 'RUNNING'"
            for child in client.search_runs([experiment], unfinished, max_results=10_000):
                client.set_terminated(child.info.run_id, status)
            client.set_terminated(run_id, status)
        except MlflowException as error:
            if not disk.is_full(error):
                raise
            log.error(f"error: run {run_id} stays RUNNING: the disk of its store is too full even to close it")
        open_runs.pop(run_id)

"""A Hydra callback that makes each multirun one MLflow parent run, with the jobs nested under it.

Hydra calls it in the launching process: the parent is created once, before any job, and summed up
(best job, a CSV table, test accuracy vs lr) after the last one, however the jobs were launched.
"""

import logging
import sys
from typing import Any

from hydra.experimental.callback import Callback
from mlflow.entities import Param, RunStatus
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from softmax_exp import nesting, plots, tracking
from softmax_exp.errors import SoftmaxExpError

log = logging.getLogger(__name__)

TABLE_COLUMNS = ("run_name", "status", "loss", "labels", "optimizer", "lr", "train_loss", "train_acc", "test_acc")


def sweep_overrides(config: DictConfig) -> dict[str, str]:
    """What the sweep varies or sets: the sweeper's params (named experiments) and the command line's."""
    params = {str(key): str(value) for key, value in (config.hydra.sweeper.params or {}).items()}
    for override in config.hydra.overrides.task:
        key, _, value = override.partition("=")
        params[key.lstrip("+~")] = value
    return params


def sweep_name(config: DictConfig) -> str:
    experiment = config.hydra.runtime.choices.get("experiment")
    if experiment not in (None, "null"):
        return f"experiment={experiment}"
    return " ".join(tracking.choices(list(config.hydra.overrides.task))) or "sweep"


def job_table(client: MlflowClient, parent_run_id: str) -> list[dict[str, Any]]:
    """One row per job of a sweep: its choices, status and final metrics (None where it failed)."""
    parent = client.get_run(parent_run_id)
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent_run_id}'", max_results=10_000
    )
    rows = []
    for run in children:
        params, metrics = run.data.params, run.data.metrics
        row = {"run_name": run.info.run_name, "status": run.info.status}
        row.update({group: params.get(group) for group in tracking.GROUPS})
        row["lr"] = float(params["lr"]) if "lr" in params else None
        row.update({key: metrics.get(f"final_{key}") for key in tracking.FINAL_KEYS})
        rows.append(row)
    return sorted(rows, key=lambda row: -1 if row["test_acc"] is None else row["test_acc"], reverse=True)


class MlflowSweepCallback(Callback):
    def __init__(self) -> None:
        self.parent_run_id: str | None = None

    # Hydra turns an exception raised in a callback into a warning and carries on, so these log the one
    # clear message themselves and end the process with sys.exit, which Hydra lets through.

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        uri = config.tracking.uri
        try:
            experiment = tracking.experiment_id(uri, config.tracking.experiment)
        except SoftmaxExpError as error:
            log.error(f"error: {error}")
            sys.exit(1)  # before any job starts
        client = MlflowClient(uri)
        run = client.create_run(
            experiment,
            run_name=sweep_name(config),
            tags={tracking.SWEEP_TAG: "true", **nesting.sweep_dir_tag(config.hydra.sweep.dir), **tracking.git_tags()},
        )
        self.parent_run_id = run.info.run_id
        tracking.open_runs[self.parent_run_id] = uri
        client.log_batch(self.parent_run_id, params=[Param(k, v) for k, v in sweep_overrides(config).items()])
        log.info(f"MLflow sweep run {run.info.run_name!r} ({self.parent_run_id}) in {uri}")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        client = MlflowClient(config.tracking.uri)
        rows = job_table(client, self.parent_run_id)
        finished = [row for row in rows if row["status"] == "FINISHED"]
        failed = [row for row in rows if row["status"] != "FINISHED"]
        self.log_summary(client, rows, finished, len(failed))
        client.set_terminated(self.parent_run_id, RunStatus.to_string(RunStatus.FINISHED))
        tracking.open_runs.pop(self.parent_run_id, None)
        if finished:
            best = finished[0]
            log.info(f"best job: {best['run_name']}  test_acc={best['test_acc']:.4f}")
        if failed:
            names = "; ".join(row["run_name"] for row in failed)
            log.error(f"error: {len(failed)} of {len(rows)} jobs failed ({names}); each job's log says why")
            sys.exit(1)

    def log_summary(self, client: MlflowClient, rows: list[dict], finished: list[dict], failed: int) -> None:
        run_id = self.parent_run_id
        client.log_metric(run_id, "jobs_failed", failed)
        if finished:
            best = finished[0]
            client.set_tag(run_id, "best_job", best["run_name"])
            for key in tracking.FINAL_KEYS:
                client.log_metric(run_id, f"best_{key}", best[key])
            client.log_metric(run_id, "best_lr", best["lr"])
        table = [list(TABLE_COLUMNS)] + [[row[column] for column in TABLE_COLUMNS] for row in rows]
        client.log_text(run_id, tracking.csv_text(table), "sweep_results.csv")
        if finished:
            client.log_figure(run_id, plots.accuracy_vs_lr(finished), "test_acc_vs_lr.png")

"""A Hydra callback that makes each multirun one MLflow parent run, with the jobs nested under it.

Hydra calls it in the launching process: the parent is created once, before any job, and summed up after
the last one, however the jobs were launched: the per-job table and best job, and with seeds as replicates
(replicates.py) the per-configuration means with confidence intervals, the contrasts and their plots.
"""

import logging
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from hydra.experimental.callback import Callback
from mlflow.entities import Param, RunStatus
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from softmax_exp import disk, job, links, nesting, plots, replicates, store, telemetry, tracking
from softmax_exp.config import unknown_key_message, unknown_keys
from softmax_exp.errors import ConfigError, SoftmaxExpError

log = logging.getLogger(__name__)

TABLE_COLUMNS = (
    "run_name",
    "status",
    "loss",
    "labels",
    "optimizer",
    "lr",
    "seed",
    "train_loss",
    "train_acc",
    "test_acc",
)


def sweep_overrides(config: DictConfig) -> dict[str, str]:
    """What the sweep varies or sets: the sweeper's params (named experiments) and the command line's."""
    params = {str(key): str(value) for key, value in (config.hydra.sweeper.params or {}).items()}
    for override in config.hydra.overrides.task:
        key, _, value = override.partition("=")
        params[key.lstrip("+~")] = store.redacted(value) if key.endswith("tracking.uri") else value
    return params


def sweep_name(config: DictConfig) -> str:
    experiment = config.hydra.runtime.choices.get("experiment")
    if experiment not in (None, "null"):
        return f"experiment={experiment}"
    return " ".join(job.choices(list(config.hydra.overrides.task))) or "sweep"


def job_table(client: MlflowClient, parent_run_id: str) -> list[dict[str, Any]]:
    """One row per job of a sweep: its choices, status and final metrics (None where it failed)."""
    parent = client.get_run(parent_run_id)
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent_run_id}'", max_results=10_000
    )
    rows = []
    for run in children:
        params, metrics = run.data.params, run.data.metrics
        row = {"run_name": run.info.run_name, "status": run.info.status, "run_id": run.info.run_id}
        row.update({group: params.get(group) for group in tracking.GROUPS})
        row["lr"] = float(params["lr"]) if "lr" in params else None
        row["seed"] = int(params["seed"]) if "seed" in params else None
        row.update({key: metrics.get(f"final_{key}") for key in tracking.FINAL_KEYS})
        row["group"] = run.data.tags.get(replicates.TAG, run.info.run_name)
        row["params"] = params
        rows.append(row)
    return sorted(rows, key=lambda row: -1 if row["test_acc"] is None else row["test_acc"], reverse=True)


class MlflowSweepCallback(Callback):
    def __init__(self) -> None:
        self.parent_run_id: str | None = None
        self.experiment_id: str | None = None

    # Hydra turns an exception raised in a callback into a warning and carries on, so these log the one
    # clear message themselves and end the process with sys.exit, which Hydra lets through.

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        uri = config.tracking.uri
        try:
            if unknown := unknown_keys(config):  # a `+typo=value` set for every job
                raise ConfigError(unknown_key_message(unknown[0]))
            telemetry.apply(config.tracking.telemetry)
            experiment = self.experiment_id = tracking.experiment_id(uri, config.tracking.experiment)
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
        try:
            self.sum_up(config)
        except Exception as error:  # a full disk said in one line; the parent ends FAILED as the process exits
            full = disk.said(error, config.tracking.uri, Path(config.hydra.sweep.dir), "hydra.sweep.dir")
            if full is None:
                raise
            log.error(f"error: {full}")
            sys.exit(1)

    def sum_up(self, config: DictConfig) -> None:
        """The jobs' table, the best job and configuration, the plots; then the parent run ends FINISHED."""
        client = MlflowClient(config.tracking.uri)
        self.end_orphans(client)
        rows = job_table(client, self.parent_run_id)
        finished = [row for row in rows if row["status"] == "FINISHED"]
        failed = [row for row in rows if row["status"] != "FINISHED"]
        client.log_metric(self.parent_run_id, "jobs_failed", len(failed))
        table = [list(TABLE_COLUMNS)] + [[row[column] for column in TABLE_COLUMNS] for row in rows]
        client.log_text(self.parent_run_id, tracking.csv_text(table), "sweep_results.csv")
        if finished:
            self.log_best_job(client, finished[0])
            self.log_groups(client, pd.DataFrame(rows))
        client.set_terminated(self.parent_run_id, RunStatus.to_string(RunStatus.FINISHED))
        tracking.open_runs.pop(self.parent_run_id, None)
        log.info(f"sweep's runs: {links.where_to_look(config.tracking.uri, self.experiment_id)}")
        if failed:
            names = "; ".join(row["run_name"] for row in failed)
            log.error(f"error: {len(failed)} of {len(rows)} jobs failed ({names}); each job's log says why")
            sys.exit(1)

    def end_orphans(self, client: MlflowClient) -> None:
        """Every job has ended, so a run still RUNNING lost its process (killed, out of memory): FAILED."""
        running = f"tags.mlflow.parentRunId = '{self.parent_run_id}' and attributes.status = 'RUNNING'"
        for run in client.search_runs([self.experiment_id], running, max_results=10_000):
            client.set_tag(run.info.run_id, "error", "its process died before the job ended (killed, or out of memory)")
            client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.FAILED))

    def log_best_job(self, client: MlflowClient, best: dict) -> None:
        run_id = self.parent_run_id
        client.set_tag(run_id, "best_job", best["run_name"])
        for key in tracking.FINAL_KEYS:
            client.log_metric(run_id, f"best_{key}", best[key])
        client.log_metric(run_id, "best_lr", best["lr"])
        log.info(f"best job: {best['run_name']}  test_acc={best['test_acc']:.4f}")

    def log_groups(self, client: MlflowClient, jobs: pd.DataFrame) -> None:
        """Per configuration (its jobs less the seed): n, mean, spread and 95% CI; the best by mean test
        accuracy; the contrasts; and the plots with error bars and bands over seeds."""
        run_id = self.parent_run_id
        curves = {
            group: {key: histories(client, members["run_id"], key) for key in ("train_acc", "test_acc")}
            for group, members in jobs[jobs["status"] == "FINISHED"].groupby("group")
        }
        # A panel per configuration takes a second or more to draw: another core draws them meanwhile.
        with plots.drawing(workers=1) as draw:
            curves_png = draw(plots.png_of, [plots.group_learning_curves], [curves])  # next() waits for it
            groups, contrasts = replicates.group_summary(jobs), replicates.contrasts(jobs)
            client.log_text(run_id, groups.to_csv(index=False), "sweep_groups.csv")
            client.log_text(run_id, contrasts.to_csv(index=False), "contrasts.csv")
            best = groups.iloc[0]
            client.set_tag(run_id, "best_config", best["group"])
            summary = {"best_config_n": best["n"], "best_config_test_acc_mean": best["test_acc_mean"]}
            for end in ("ci95_low", "ci95_high"):
                summary[f"best_config_test_acc_{end}"] = best[f"test_acc_{end}"]
            for key, value in summary.items():
                if not math.isnan(value):  # one seed: no interval
                    client.log_metric(run_id, key, value)
            client.log_figure(run_id, plots.accuracy_vs_lr(groups), "test_acc_vs_lr.png")
            tracking.log_files(client, run_id, {"learning_curves_by_group.png": next(curves_png)})
        if replicates.has_replicates(groups):
            interval = f"(95% CI {best['test_acc_ci95_low']:.4f} … {best['test_acc_ci95_high']:.4f})"
            log.info(
                f"best configuration: {best['group']}  test_acc={best['test_acc_mean']:.4f} {interval}, n={best['n']}"
            )
            for contrast in contrasts.to_dict("records"):
                log.info(f"contrast: {replicates.describe(contrast)}")


def histories(client: MlflowClient, run_ids: pd.Series, key: str) -> np.ndarray:
    """One row per run: the metric's value at each epoch (runs of a group share their number of epochs)."""
    return np.array(
        [[m.value for m in sorted(client.get_metric_history(i, key), key=lambda m: m.step)] for i in run_ids]
    )

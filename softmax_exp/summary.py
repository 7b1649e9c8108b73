"""A sweep summed up, in one place: per job, per configuration, the contrasts, the best job and configuration.

Read from the store after the last job: the sweep's end writes it to the parent run (sweep.py), and
`python -m softmax_exp.report` prints it (report.py), so the two never disagree. With seeds as
replicates, a configuration is a job's choices less the seed (job.Job.group).

The best is chosen here, and only here (chosen_on): on validation accuracy when the jobs held images out
(data.validation), and their test accuracy is reported beside it; without a validation set, on test accuracy.
"""

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient

from softmax_exp import replicates, run_keys

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
    "val_acc",  # only where the jobs have one
    "test_acc",
)
CHOSEN_ON = {"val_acc": " (chosen on validation accuracy)", "test_acc": ""}  # what the best lines say of it


def chosen_on(jobs: list[dict[str, Any]]) -> str:
    """The final metric that chooses a sweep's best job and configuration: the validation accuracy where its jobs
    have one, so that choosing never looks at the test set; else, as a sweep without one can, the test accuracy."""
    return "val_acc" if any(pd.notna(row.get("val_acc")) for row in jobs) else "test_acc"


@dataclass
class SweepSummary:
    jobs: list[dict[str, Any]]  # a row per job (job_table), best first (chosen_on), failed jobs last
    groups: pd.DataFrame | None  # a row per configuration (replicates.group_summary); None for a sweep of no jobs
    contrasts: pd.DataFrame | None  # replicates.contrasts; None for a sweep of no jobs

    @property
    def finished(self) -> list[dict[str, Any]]:
        return [row for row in self.jobs if row["status"] == "FINISHED"]

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [row for row in self.jobs if row["status"] not in ("FINISHED", "PRUNED")]

    @property
    def chosen_on(self) -> str:
        return chosen_on(self.jobs)

    @property
    def reported(self) -> tuple[str, ...]:
        """The metrics the best is given with: the one it was chosen on, and the test accuracy."""
        return tuple(dict.fromkeys((self.chosen_on, "test_acc")))

    @property
    def best_job(self) -> dict[str, Any] | None:
        """The finished job with the best final accuracy (chosen_on)."""
        return next(iter(self.finished), None)

    @property
    def best_config(self) -> pd.Series | None:
        """The configuration with the best mean final accuracy (chosen_on) over its finished jobs."""
        return self.groups.iloc[0] if self.finished else None

    def best_job_line(self) -> str:
        """E.g. `best job (chosen on validation accuracy): lr=0.05  val_acc=0.8420  test_acc=0.8311`."""
        best = self.best_job
        values = "  ".join(f"{metric}={best[metric]:.4f}" for metric in self.reported)
        return f"best job{CHOSEN_ON[self.chosen_on]}: {best['run_name']}  {values}"

    def best_config_line(self) -> str:
        """The best configuration's mean of each reported metric over its seeds, with its 95% CI."""
        best = self.best_config
        values = "  ".join(
            f"{metric}={best[f'{metric}_mean']:.4f} (95% CI {best[f'{metric}_ci95_low']:.4f} … "
            f"{best[f'{metric}_ci95_high']:.4f})"
            for metric in self.reported
        )
        return f"best configuration{CHOSEN_ON[self.chosen_on]}: {best['group']}  {values}, n={best['n']}"

    @property
    def has_replicates(self) -> bool:
        return self.groups is not None and replicates.has_replicates(self.groups)

    def table(self) -> list[list]:
        """The job table: a header (TABLE_COLUMNS, val_acc where the jobs have one), then a row per job."""
        columns = [column for column in TABLE_COLUMNS if column != "val_acc" or self.chosen_on == "val_acc"]
        return [columns] + [[row[column] for column in columns] for row in self.jobs]


def summarize(client: MlflowClient, parent_run_id: str) -> SweepSummary:
    """The sweep whose parent run is `parent_run_id`, as its jobs' runs in the store say."""
    jobs = job_table(client, parent_run_id)
    if not jobs:
        return SweepSummary(jobs, None, None)
    frame = pd.DataFrame(jobs)
    return SweepSummary(jobs, replicates.group_summary(frame, chosen_on(jobs)), replicates.contrasts(frame))


def job_table(client: MlflowClient, parent_run_id: str) -> list[dict[str, Any]]:
    """One row per job of a sweep: its choices, status and final metrics (None where it failed, or a job has no
    validation set), best first (chosen_on). A job run again by a resume counts once, as its latest run."""
    parent = client.get_run(parent_run_id)
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent_run_id}'", max_results=10_000
    )  # newest first

    def job(run) -> str:
        return run.data.tags.get(run_keys.JOB_TAG, run.info.run_id)

    latest = {job(run): run for run in reversed(children)}
    rows = []
    for run in (run for run in children if latest[job(run)] is run):
        params, metrics = run.data.params, run.data.metrics
        status = "PRUNED" if run_keys.PRUNED_TAG in run.data.tags else run.info.status  # a FINISHED run, stopped early
        row = {"run_name": run.info.run_name, "status": status, "run_id": run.info.run_id}
        row.update({group: params.get(group) for group in run_keys.GROUPS})
        row["lr"] = float(params["lr"]) if "lr" in params else None
        row["seed"] = int(params["seed"]) if "seed" in params else None
        row.update({key: metrics.get(f"final_{key}") for key in run_keys.FINAL_KEYS})
        row["group"] = run.data.tags.get(replicates.TAG, run.info.run_name)
        row["trial"] = int(run.data.tags[run_keys.TRIAL_TAG]) if run_keys.TRIAL_TAG in run.data.tags else None
        row["params"] = params
        rows.append(row)
    return ranked(rows)


def ranked(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Jobs best first, by the metric chosen_on picks; those without it (failed) last."""
    metric = chosen_on(jobs)
    return sorted(jobs, key=lambda row: -1 if pd.isna(row[metric]) else row[metric], reverse=True)


def group_curves(client: MlflowClient, summary: SweepSummary) -> dict[str, dict[str, np.ndarray]]:
    """Per configuration, its finished jobs' train (validation) and test accuracy at each epoch: a row per job."""
    finished = pd.DataFrame(summary.finished)
    return {
        group: {key: histories(client, members["run_id"], key) for key in ("train_acc", *summary.reported)}
        for group, members in finished.groupby("group")
    }


def histories(client: MlflowClient, run_ids: pd.Series, key: str) -> np.ndarray:
    """One row per run: the metric's value at each epoch (runs of a group share their number of epochs)."""
    return np.array(
        [[m.value for m in sorted(client.get_metric_history(i, key), key=lambda m: m.step)] for i in run_ids]
    )
